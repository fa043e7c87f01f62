"""`webinfer serve`: the v2 API (HTTP and, with a port, gRPC), metrics, and the demo as one app.

Models load at start-up in a thread, after the socket is listening (the
demo page answers at once); until every model has been tried,
`/v2/health/ready` says 400 and requests for not yet loaded models get 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Mount

from .datatypes import CONFIG_TYPE
from .errors import NotFound, Unavailable
from .http import routes
from .metrics import ServerMetrics
from .repository import Model, Repository
from .scheduler import Scheduler

log = logging.getLogger("webinfer.serving")

#: Triton's default HTTP body limit (HTTP_DEFAULT_MAX_INPUT_SIZE), also the gRPC message limit here.
DEFAULT_MAX_BODY = 64 << 20


@dataclass
class ServerConfig:
    """What `webinfer serve` was asked for."""

    models: Path | None = None
    grpc_port: int | None = None
    host: str = "127.0.0.1"
    max_body_bytes: int = DEFAULT_MAX_BODY
    #: How long a request body may take to arrive (its queue slot is held meanwhile).
    body_timeout_s: float = 30.0
    #: The browser bundle to mount at `/` (None: web/dist of this checkout when it is built).
    dist: Path | None = None
    #: Serve `models` as this one model (a file or a model folder), as KServe's runtimes are started.
    model_name: str | None = None


class Server:
    """State shared by the HTTP and gRPC front ends: the repository, one scheduler per model, metrics."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.repository = Repository()
        self.schedulers: dict[str, Scheduler] = {}
        self.metrics = ServerMetrics(lambda: list(self.repository.models.values()))
        self.grpc_port: int | None = None

    def ready(self) -> bool:
        return self.repository.loaded

    def model(self, name: str, version: str = "") -> Model:
        """The loaded model called `name` (404 when there is none; 503 while models are still loading)."""
        m = self.repository.models.get(name)
        if m is None:
            if not self.repository.loaded:
                raise Unavailable(f"model '{name}' is not loaded yet: the server is still loading models")
            raise NotFound(f"unknown model '{name}'")
        if version and version != m.version:
            raise NotFound(f"model '{name}' has no version '{version}' (it has '{m.version}')")
        return m

    def scheduler(self, model: Model) -> Scheduler:
        s = self.schedulers.get(model.name)
        if s is None:
            s = self.schedulers[model.name] = Scheduler(model, self.metrics)
        return s

    @staticmethod
    def metadata(model: Model) -> dict[str, Any]:
        """v2 model metadata: -1 for dynamic dims, the batch dim included (first) when batching."""
        def tensors(specs: Any) -> list[dict[str, Any]]:
            return [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in specs]
        return {"name": model.name, "versions": [model.version], "platform": "onnx_onnxv1",
                "inputs": tensors(model.inputs), "outputs": tensors(model.outputs)}

    @staticmethod
    def model_config(model: Model) -> dict[str, Any]:
        """Triton's ModelConfig as JSON: `dims` without the batch dim when max_batch_size > 0."""
        cfg = model.config
        skip = 1 if cfg.max_batch_size else 0

        def tensors(specs: Any) -> list[dict[str, Any]]:
            return [{"name": s.name, "data_type": CONFIG_TYPE[s.datatype], "dims": list(s.shape[skip:])}
                    for s in specs]
        out: dict[str, Any] = {
            "name": model.name, "platform": "onnx_onnxv1", "backend": "webinfer",
            "max_batch_size": cfg.max_batch_size, "input": tensors(model.inputs), "output": tensors(model.outputs),
            "instance_group": [{"count": cfg.instances,
                                "kind": "KIND_GPU" if cfg.provider.startswith("webgpu") else "KIND_CPU"}],
        }
        if cfg.batching is not None:
            out["dynamic_batching"] = {
                "preferred_batch_size": list(cfg.batching.preferred_sizes),
                "max_queue_delay_microseconds": int(round(cfg.batching.max_queue_delay_s * 1e6))}
        return out

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        grpc_server = None
        if self.config.grpc_port is not None:
            from .grpc_service import start_grpc
            grpc_server, self.grpc_port = await start_grpc(self, self.config.host, self.config.grpc_port)
        loading = None
        if self.config.models is not None:
            loading = asyncio.get_running_loop().run_in_executor(None, self.repository.load_all, self.config.models,
                                                                  self.config.model_name)
        else:
            self.repository.loaded = True
        try:
            yield
        finally:
            if loading is not None:
                with contextlib.suppress(Exception):
                    await loading
            if grpc_server is not None:
                await grpc_server.stop(grace=1)
            for s in self.schedulers.values():
                await s.close()


def _demo(config: ServerConfig) -> Any | None:
    """The browser demo (webinfer.server), when its bundle is built."""
    from ..server import create_app as demo_app, default_dist

    dist = config.dist or default_dist()
    if not (Path(dist) / "index.html").is_file():
        if config.dist is not None:
            raise FileNotFoundError(f"{dist} has no index.html: build the bundle first with `python build_wasm.py`")
        return None
    models = config.models if config.models is not None and config.models.is_dir() else None
    return demo_app(dist, models)


def create_app(config: ServerConfig) -> Starlette:
    """The ASGI app; `app.state.server` is the `Server` (tests read its gRPC port there)."""
    if config.models is not None and not config.models.exists():
        raise FileNotFoundError(f"models path {config.models} does not exist")
    server = Server(config)
    mounts = routes(server)
    demo = _demo(config)
    if demo is not None:
        mounts.append(Mount("/", app=demo))
    app = Starlette(routes=mounts, lifespan=server.lifespan)
    app.state.server = server
    return app


def serve(config: ServerConfig, port: int = 8000, log_level: str = "warning") -> None:
    """Serve until interrupted."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="webinfer serve: %(message)s")
    app = create_app(config)
    shown = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    has_demo = any(isinstance(r, Mount) for r in app.routes)
    print(f"webinfer serve: v2 API at http://{shown}:{port}/v2"
          + (f", gRPC on port {config.grpc_port}" if config.grpc_port is not None else "")
          + (f", demo at http://{shown}:{port}/" if has_demo else " (demo bundle not built: no demo page)")
          + "   (Ctrl+C to stop)", flush=True)
    uvicorn.run(app, host=config.host, port=port, log_level=log_level, timeout_keep_alive=5)
