"""`webinfer serve`: the browser bundle (web/dist) and a models directory over HTTP.

Starlette + uvicorn (the `serve` extra).  What a Pyodide page needs from its
server, beyond files:

- MIME types browsers insist on: `application/wasm` (streaming compilation
  refuses anything else) and `text/javascript` for `.mjs` (module scripts and
  module workers refuse `application/octet-stream`).  Python's `mimetypes`
  does not know `.mjs` before 3.12 and reads the system's tables, so the
  types are set here rather than trusted.
- Cross-origin isolation (COOP `same-origin` + COEP `require-corp`): it
  enables SharedArrayBuffer (onnxruntime-web's threads need it) and precise
  timers; CORP `same-origin` lets the page's own resources load under it.
- `Cache-Control: no-cache`: files are revalidated (ETag), so a rebuild shows
  up on reload while unchanged multi-MB files still come from the cache.

`/models/` serves `--models DIR` first and the bundle's own models/ after it
(so the demo's default model is found either way); `/api/models` lists the
`.onnx` and `.tflite` files of both.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Content types by extension; everything else goes through `mimetypes`.
CONTENT_TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".py": "text/x-python; charset=utf-8",
    ".whl": "application/zip",
    ".zip": "application/zip",
    ".onnx": "application/octet-stream",
    ".tflite": "application/octet-stream",
    ".npy": "application/octet-stream",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".map": "application/json",
}

ISOLATION_HEADERS = [
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    (b"cross-origin-resource-policy", b"same-origin"),
]

def default_dist() -> Path:
    """$WEBINFER_WEB_DIST, else web/dist of the checkout this package is installed from (editable)."""
    env = os.environ.get("WEBINFER_WEB_DIST")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "web" / "dist"


class BrowserHeaders:
    """ASGI middleware: isolation headers on every response, the right Content-Type for known extensions."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ext = os.path.splitext(scope.get("path", ""))[1].lower()
        forced = CONTENT_TYPES.get(ext)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if not (forced and k.lower() == b"content-type")
                           and k.lower() not in (b"cache-control",)]
                if forced and message.get("status", 200) < 300:
                    headers.append((b"content-type", forced.encode()))
                elif forced:  # an error page for a .wasm URL is still text, not wasm
                    headers += [(k, v) for k, v in message.get("headers", []) if k.lower() == b"content-type"]
                headers += ISOLATION_HEADERS
                headers.append((b"cache-control", b"no-cache"))
                message = dict(message, headers=headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(dist: str | os.PathLike | None = None, models: str | os.PathLike | None = None,
               mounts: dict[str, str | os.PathLike] | None = None) -> ASGIApp:
    """The ASGI app: `/` -> dist (index.html at the root), `/models/` -> models, `/api/models` -> their list.

    `mounts` adds more static directories by URL prefix (the browser benchmark
    serves onnxruntime-web's files beside the bundle this way).
    """
    dist_dir = Path(dist) if dist else default_dist()
    if not (dist_dir / "index.html").is_file():
        raise FileNotFoundError(f"{dist_dir} has no index.html: build the bundle first with `python build_wasm.py`")
    model_dirs = [Path(models)] if models else []
    model_dirs.append(dist_dir / "models")
    for d in model_dirs:
        if not d.is_dir():
            raise FileNotFoundError(f"models directory {d} does not exist")
    model_files = StaticFiles(directory=model_dirs[0])
    # StaticFiles looks a path up in each of `all_directories` in turn.
    model_files.all_directories = [str(d) for d in model_dirs]

    async def list_models(request: Request) -> JSONResponse:
        files: dict[str, Path] = {}
        for d in model_dirs:
            for p in sorted(q for q in d.iterdir() if q.suffix in (".onnx", ".tflite")):
                if p.is_file():
                    files.setdefault(p.name, p)
        return JSONResponse([{"name": n, "url": f"/models/{n}", "bytes": p.stat().st_size} for n, p in files.items()])

    routes = [
        Route("/api/models", list_models),
        Mount("/models", app=model_files, name="models"),
        *(Mount(prefix, app=StaticFiles(directory=d)) for prefix, d in (mounts or {}).items()),
        Mount("/", app=StaticFiles(directory=dist_dir, html=True), name="dist"),
    ]
    return BrowserHeaders(Starlette(routes=routes))


def serve(host: str = "127.0.0.1", port: int = 8000, dist: str | os.PathLike | None = None,
          models: str | os.PathLike | None = None, log_level: str = "warning") -> None:
    """Serve until interrupted; prints the URL to open."""
    import uvicorn

    app = create_app(dist, models)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"webinfer demo: http://{shown}:{port}/   (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
