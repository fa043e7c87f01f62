"""Chromium on a closed network and the demo server in a thread: shared by tests/browser and benchmarks/.

Debian's chromium is driven through Playwright's `executable_path` (Playwright
cannot download its own browsers here, so `playwright install` is never run).
The flags keep Chromium off the network (see /work/shared/FACTS.md) and turn
on WebGPU, which headless Chromium otherwise hides.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[2]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-breakpad",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--enable-unsafe-webgpu",
]


def chromium_path() -> str | None:
    """$WEBINFER_CHROMIUM, else Debian's /usr/bin/chromium, else `chromium` on PATH."""
    for candidate in (os.environ.get("WEBINFER_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def launch_options() -> dict:
    """Keyword arguments for `playwright.chromium.launch` (headless unless the caller overrides it)."""
    path = chromium_path()
    if path is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium, or set WEBINFER_CHROMIUM)")
    return {"executable_path": path, "args": list(CHROMIUM_ARGS)}


class DemoServer:
    """`webinfer serve` in a background thread, on a free loopback port picked by the OS.

    The socket is bound here and handed to uvicorn, so no other process can
    take the port between choosing and listening.
    """

    def __init__(self, dist: Path | None = None, models: Path | None = None, mounts: dict[str, Path] | None = None):
        import uvicorn

        from webinfer.server import create_app

        app = create_app(dist, models, mounts)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> "DemoServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
