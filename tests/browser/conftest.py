"""Fixtures for the browser and edge tests: the bundle, the server, one Chromium page per session.

Loading Pyodide takes seconds, so the demo page is opened once per test
session (pytest-playwright's `page` is per test) and the tests share it;
each test sets the page up the way it needs (provider, loaded model) rather
than relying on order.  Tests needing Chromium skip when it is absent,
the Node test when node is absent; a bundle that cannot be built fails.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from .harness import ROOT, DemoServer, chromium_path, launch_options

ARTIFACTS = ROOT / "test-artifacts"


def _import_path(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


build_wasm = _import_path("build_wasm", ROOT / "build_wasm.py")
demo_py = _import_path("webinfer_demo", ROOT / "web" / "src" / "webinfer_demo.py")


@pytest.fixture(scope="session")
def dist() -> Path:
    """web/dist, built or refreshed (seconds when nothing changed; the build locks its cache)."""
    try:
        build_wasm.build()
    except build_wasm.BuildError as e:
        pytest.fail(f"cannot build web/dist: {e}")
    return ROOT / "web" / "dist"


#: Test-only pages, served at /tests/ beside the bundle.
PAGES = Path(__file__).resolve().parent / "pages"


@pytest.fixture(scope="session")
def server_url(dist: Path) -> Iterator[str]:
    with DemoServer(dist, mounts={"/tests": PAGES}) as server:
        yield server.url


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright's launch arguments with Debian's chromium and the closed-network flags."""
    if chromium_path() is None:
        pytest.skip("chromium is not installed (tools/dev.sh installs Debian's chromium)")
    opts = launch_options()
    return {**browser_type_launch_args, **opts, "args": opts["args"] + browser_type_launch_args.get("args", [])}


class DemoPage:
    """The shared demo page and what it logged."""

    def __init__(self, page: Any, url: str):
        self.page = page
        self.url = url
        self.console: list[str] = []
        self.page_errors: list[str] = []
        page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: self.page_errors.append(str(e)))

    def wait_detection(self, timeout_ms: int = 180_000) -> dict:
        self.page.wait_for_function(
            "() => ['done', 'error'].includes(document.getElementById('det-stats').dataset.state)", timeout=timeout_ms)
        state = self.page.get_attribute("#det-stats", "data-state")
        assert state == "done", f"detection ended in state {state}: {self.page.inner_text('#error')}"
        return self.detection()

    def detection(self) -> dict:
        """The last detection result, the probability map as a base64 string of float32."""
        return self.page.evaluate("""() => {
            const d = window.webinferDemo.state.lastDetection;
            const bytes = new Uint8Array(d.prob.buffer, d.prob.byteOffset, d.prob.byteLength);
            let s = "";
            for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
            return {...d, prob: btoa(s)};
        }""")


@pytest.fixture(scope="session")
def demo(browser: Any, server_url: str) -> Iterator[DemoPage]:
    """One page, one Pyodide load for the whole session; the bundled model has run once when this returns."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)
    dp = DemoPage(page, server_url)
    page.goto(server_url)
    page.wait_for_function("() => ['ready', 'failed'].includes(document.body.dataset.state)", timeout=240_000)
    assert page.get_attribute("body", "data-state") == "ready", page.inner_text("#error")
    yield dp
    context.close()


@pytest.fixture(scope="session")
def node_path() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.skip("node is not installed (tools/dev.sh installs Node.js)")
    return path


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
