"""A real `webinfer serve` on a free loopback port, over a repository of small generated models."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Iterator

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

pytest.importorskip("starlette", reason="the serve extra is not installed")


def _save(model: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def pair_model(opset: int = 17) -> Any:
    """sum = x + y, prod = x * y over [N, 4] float32: two inputs, two outputs, a batch dim."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    s = helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 4])
    p = helper.make_tensor_value_info("prod", TensorProto.FLOAT, ["N", 4])
    g = helper.make_graph([helper.make_node("Add", ["x", "y"], ["sum"]), helper.make_node("Mul", ["x", "y"], ["prod"])],
                          "pair", [x, y], [s, p])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def mixed_model() -> Any:
    """BYTES, BOOL and FP16 through: s -> Identity, b -> Not, h -> h + h."""
    ins = [helper.make_tensor_value_info("s", TensorProto.STRING, ["N"]),
           helper.make_tensor_value_info("b", TensorProto.BOOL, ["N", 3]),
           helper.make_tensor_value_info("h", TensorProto.FLOAT16, ["N", 2])]
    outs = [helper.make_tensor_value_info("s_out", TensorProto.STRING, ["N"]),
            helper.make_tensor_value_info("b_out", TensorProto.BOOL, ["N", 3]),
            helper.make_tensor_value_info("h_out", TensorProto.FLOAT16, ["N", 2])]
    g = helper.make_graph([helper.make_node("Identity", ["s"], ["s_out"]), helper.make_node("Not", ["b"], ["b_out"]),
                           helper.make_node("Add", ["h", "h"], ["h_out"])], "mixed", ins, outs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def lookup_model() -> Any:
    """rows = table[idx]: an index past the 10-row table makes the run raise (a model failing mid-batch)."""
    table = helper.make_tensor("table", TensorProto.FLOAT, [10, 3], np.arange(30, dtype=np.float32).tolist())
    idx = helper.make_tensor_value_info("idx", TensorProto.INT64, ["N"])
    rows = helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["N", 3])
    g = helper.make_graph([helper.make_node("Gather", ["table", "idx"], ["rows"])], "lookup", [idx], [rows],
                          initializer=[table])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def build_repository(root: Path) -> Path:
    """pair (no config: max_batch_size 0), pair_batched (dynamic batching), pair2 (two instances), mixed,
    lookup, and two that fail to load (a corrupt file, a bad config)."""
    _save(pair_model(), root / "pair.onnx")
    _save(pair_model(), root / "pair_batched" / "model.onnx")
    (root / "pair_batched" / "config.json").write_text(json.dumps({
        "max_batch_size": 8, "instances": 1,
        "dynamic_batching": {"max_queue_delay_microseconds": 20000, "preferred_batch_size": [8]}}))
    _save(mixed_model(), root / "mixed.onnx")
    _save(lookup_model(), root / "lookup" / "1" / "model.onnx")
    (root / "lookup" / "config.json").write_text(json.dumps({
        "max_batch_size": 16, "dynamic_batching": {"max_queue_delay_microseconds": 20000}, "max_queue_size": 4}))
    _save(pair_model(), root / "pair_two" / "model.onnx")
    (root / "pair_two" / "config.json").write_text(json.dumps({"instances": 2, "name": "pair2"}))
    (root / "broken.onnx").write_bytes(b"not an onnx model")
    (root / "badconfig").mkdir()
    _save(pair_model(), root / "badconfig" / "model.onnx")
    (root / "badconfig" / "config.json").write_text(json.dumps({"max_batch_size": "eight"}))
    return root


class ServerThread:
    """`webinfer serve` (the same app) in a thread on a socket bound here, on 127.0.0.1:<free port>."""

    def __init__(self, models: Path, grpc: bool = False, **settings: Any):
        import uvicorn

        from webinfer.serving import ServerConfig, create_app

        config = ServerConfig(models=models, grpc_port=0 if grpc else None, **settings)
        self.app = create_app(config)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", timeout_keep_alive=5))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.app.state.server.grpc_port}"

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 60
        while True:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start (or did not load its models) within 60 s")
            if self.server.started and self.status("/v2/health/ready") == 200:
                return self
            time.sleep(0.05)

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://{self.url}{path}", timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repository(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[ServerThread]:
    with ServerThread(repository, grpc=True) as s:
        yield s


@pytest.fixture(scope="module")
def reference(repository: Path) -> Any:
    """In-process sessions of the same files: what every served answer must equal."""
    import webinfer

    paths = {"pair": repository / "pair.onnx", "pair_batched": repository / "pair_batched" / "model.onnx",
             "mixed": repository / "mixed.onnx", "lookup": repository / "lookup" / "1" / "model.onnx"}
    return {k: webinfer.InferenceSession(str(p)) for k, p in paths.items()}
