"""The GPU device layer: placement policy, views, readbacks, buffer reuse, int64 narrowing, errors, CLI."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import webinfer
from webinfer import cli
from webinfer.devices import gpu as gpu_pkg
from webinfer.errors import DeviceError, NodeExecutionError

pytestmark = pytest.mark.gpu

F = TensorProto.FLOAT
I64 = TensorProto.INT64


def model(nodes: list[Any], inputs: list[Any], outputs: list[str], inits: list[Any] = (), opset: int = 17) -> bytes:
    outs = [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outputs]
    g = helper.make_graph(nodes, "g", inputs, outs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def gpu_session(data: bytes, **options: Any) -> webinfer.InferenceSession:
    opts = webinfer.SessionOptions()
    if options:
        opts.provider_options["webgpu"] = options
    return webinfer.InferenceSession(data, opts, providers=["webgpu", "cpu"])


def chain_model() -> bytes:
    """x -> Relu -> Reshape -> Unsqueeze -> Mul(2) -> Shape(y) and Softmax(y): views, a metadata op, kernels.

    x's first dim is symbolic, so Shape cannot be folded at load."""
    x = helper.make_tensor_value_info("x", F, ["rows", 6])
    inits = [numpy_helper.from_array(np.array([-1, 12], np.int64), "shape"),
             numpy_helper.from_array(np.array([0], np.int64), "axes"),
             numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Reshape", ["r", "shape"], ["v"]),
             helper.make_node("Unsqueeze", ["v", "axes"], ["u"]), helper.make_node("Mul", ["u", "two"], ["y"]),
             helper.make_node("Shape", ["y"], ["s"]), helper.make_node("Softmax", ["y"], ["z"])]
    return model(nodes, [x], ["z", "s"], inits)


def test_views_and_metadata_cost_no_dispatch_or_readback(gpu_device: Any) -> None:
    sess = gpu_session(chain_model())
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    z, s = sess.run(None, {"x": x})
    y = (np.maximum(x, 0).reshape(1, 2, 12) * 2).astype(np.float32)
    e = np.exp(y - y.max(-1, keepdims=True))
    np.testing.assert_allclose(z, e / e.sum(-1, keepdims=True), rtol=1e-6)
    assert s.tolist() == [1, 2, 12] and s.dtype == np.int64
    stats = sess.device_stats()
    assert stats["nodes_on_gpu"] == stats["nodes_total"] == 6
    assert stats["dispatches_per_run"] == 3  # Relu, Mul, Softmax: Reshape/Unsqueeze are views, Shape is metadata
    assert stats["readbacks_per_run"] == 1  # z only: the shape never left the host


def test_buffers_are_reused_across_runs(gpu_device: Any) -> None:
    sess = gpu_session(chain_model())
    device = next(d for d in sess._devices if d.name == "webgpu")
    x = np.ones((4, 6), np.float32)
    sess.run(None, {"x": x})
    created = device.pool.created
    for _ in range(3):
        sess.run(None, {"x": x})
    assert device.pool.created == created
    assert device.pool.in_use_bytes == 0  # every intermediate went back to the pool


def test_integer_shape_arithmetic_stays_on_cpu_unless_asked(gpu_device: Any) -> None:
    a = helper.make_tensor_value_info("a", I64, [3])
    data = model([helper.make_node("Add", ["a", "a"], ["b"])], [a], ["b"])
    assert set(gpu_session(data).get_placement().values()) == {"cpu"}
    sess = gpu_session(data, integer_ops="always")
    assert set(sess.get_placement().values()) == {"webgpu"}
    assert sess.run(None, {"a": np.array([1, -2, 3], np.int64)})[0].tolist() == [2, -4, 6]


def test_int64_out_of_int32_range_is_a_clear_error(gpu_device: Any) -> None:
    t = helper.make_tensor_value_info("t", F, [5, 2])
    i = helper.make_tensor_value_info("i", I64, [3])
    sess = gpu_session(model([helper.make_node("Gather", ["t", "i"], ["g"])], [t, i], ["g"]))
    table = np.arange(10, dtype=np.float32).reshape(5, 2)
    assert sess.run(None, {"t": table, "i": np.array([4, -1, 0], np.int64)})[0].tolist() == [[8, 9], [8, 9], [0, 1]]
    with pytest.raises(NodeExecutionError, match=r"int64 values in \[0, 4294967296\] do not fit"):
        sess.run(None, {"t": table, "i": np.array([0, 2**32, 1], np.int64)})


def test_strict_shape_checks_accept_gpu_tensors(gpu_device: Any) -> None:
    opts = webinfer.SessionOptions(strict_shape_checks=True)
    sess = webinfer.InferenceSession(chain_model(), opts, providers=["webgpu"])
    assert sess.run(None, {"x": np.ones((4, 6), np.float32)})[1].tolist() == [1, 2, 12]


def test_no_adapter(monkeypatch: pytest.MonkeyPatch) -> None:
    """As onnxruntime: without an adapter the session falls back to the CPU (implicit or listed) with one
    warning; with the CPU fallback disabled in the session config, it raises."""
    def fail(options: Any) -> Any:
        raise DeviceError("no WebGPU adapter (test)")

    monkeypatch.setattr(gpu_pkg, "_BACKENDS", {})
    monkeypatch.setattr("webinfer.devices.gpu.native.NativeBackend", fail)
    data = chain_model()
    strict = webinfer.SessionOptions()
    strict.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    with pytest.raises(DeviceError, match="no WebGPU adapter"):
        webinfer.InferenceSession(data, strict, providers=["webgpu"])
    for providers in (["webgpu"], ["webgpu", "cpu"]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sess = webinfer.InferenceSession(data, providers=providers)
        assert len([w for w in caught if "webgpu provider unavailable" in str(w.message)]) == 1
        assert sess.get_providers() == ["CPUExecutionProvider"]
        assert set(sess.get_placement().values()) == {"cpu"}


def test_cli_bench_json_and_info_placement(gpu_device: Any, tmp_path: Any, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(chain_model())
    assert cli.main(["bench", str(path), "--provider", "webgpu,cpu", "--dim", "rows=4", "--runs", "2", "--warmup", "1",
                     "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("nodes_total", "nodes_on_gpu", "dispatches_per_run", "readbacks_per_run", "fallback_ops"):
        assert key in result
    assert result["readbacks_per_run"] == 1 and result["fallback_ops"] == {}
    a = helper.make_tensor_value_info("a", I64, [3])
    path.write_bytes(model([helper.make_node("Add", ["a", "a"], ["b"])], [a], ["b"]))
    assert cli.main(["info", str(path), "--provider", "webgpu,cpu"]) == 0
    out = capsys.readouterr().out
    assert "falls back to cpu:" in out and "shape arithmetic stays on cpu" in out


def test_shape_computed_on_gpu_makes_the_consumer_fall_back(gpu_device: Any) -> None:
    """A Reshape whose target the GPU computes would need a readback mid-kernel: it runs on the cpu instead."""
    x = helper.make_tensor_value_info("x", F, [2, 6])
    t = helper.make_tensor_value_info("t", F, [2])
    nodes = [helper.make_node("Cast", ["t"], ["ti"], to=I64), helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Reshape", ["r", "ti"], ["y"])]
    sess = gpu_session(model(nodes, [x, t], ["y"]))
    placement = sess.get_placement()
    assert placement["ti"] == "webgpu" and placement["r"] == "webgpu" and placement["y"] == "cpu"
    assert "computed on the GPU" in sess.device_stats()["fallback_reasons"]["y"]
    xv = np.arange(12, dtype=np.float32).reshape(2, 6) - 5
    y = sess.run(None, {"x": xv, "t": np.array([3, 4], np.float32)})[0]
    np.testing.assert_array_equal(y, np.maximum(xv, 0).reshape(3, 4))
