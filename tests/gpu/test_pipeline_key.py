"""Which shape changes compile a new pipeline (devices/gpu/device.py `GpuDevice.program`).

A pipeline's key is its WGSL file and entry point, the template values fixed
for a node, and the values its builder derives from shapes (`by_shape`).
Shapes themselves are uniforms, so a new shape recompiles only through a
`by_shape` value: MatMul's vec4 loads and stores need N % 4 == 0, so
N = 8 -> 20 reuses the pipeline and N = 8 -> 13 compiles its scalar form;
a new sequence length in attention or a broadcasting Add compiles nothing.
Each test records the keys a run asks for (a pipeline already in the cache
is not compiled again), against onnxruntime's results on random data
(1e-4: float32 on lavapipe).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import webinfer
from webinfer.devices.gpu.device import GpuDevice


@pytest.fixture
def requested(gpu_device: Any, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The programs the GPU device is asked for, in order (cleared by the test between runs)."""
    asked: list[Any] = []
    program = GpuDevice.program

    def record(self: GpuDevice, *args: Any, **kwargs: Any) -> Any:
        prog = program(self, *args, **kwargs)
        asked.append(prog)
        return prog

    monkeypatch.setattr(GpuDevice, "program", record)
    return asked


def _model(node: Any, inputs: dict[str, list[Any]], opset: int = 17, domain: str = "") -> bytes:
    vis = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in inputs.items()]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return helper.make_model(helper.make_graph([node], "g", vis, [out]), opset_imports=opsets).SerializeToString()


def _programs_of_run(sess: webinfer.InferenceSession, feed: dict[str, np.ndarray], asked: list[Any],
                     ref: bytes | None = None) -> dict[tuple, Any]:
    """The programs one run asks for, by key (checking the result against onnxruntime when `ref`)."""
    asked.clear()
    got = sess.run(None, feed)[0]
    if ref is not None:
        want = ort.InferenceSession(ref, providers=["CPUExecutionProvider"]).run(None, feed)[0]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    return {p.key: p for p in asked}


def _fixed_part(prog: Any) -> tuple:
    """The key without the values derived from shapes."""
    return tuple(k for k in prog.key if k not in prog.by_shape)


def test_matmul_recompiles_only_when_n_mod_4_changes(requested: list[Any]) -> None:
    data = _model(helper.make_node("MatMul", ["a", "b"], ["y"]), {"a": ["S", 16], "b": [16, "S"]})
    sess = webinfer.InferenceSession(data, providers=["webgpu"])
    assert set(sess.get_placement().values()) == {"webgpu"}
    rng = np.random.default_rng(0)

    def feed(s: int) -> dict[str, np.ndarray]:
        return {"a": rng.standard_normal((s, 16)).astype(np.float32),
                "b": rng.standard_normal((16, s)).astype(np.float32)}

    p8 = _programs_of_run(sess, feed(8), requested, data)
    p20 = _programs_of_run(sess, feed(20), requested, data)
    assert p20.keys() == p8.keys()  # 8 -> 20: both multiples of 4, the same pipeline
    p13 = _programs_of_run(sess, feed(13), requested, data)
    new = [p for k, p in p13.items() if k not in p8]
    assert len(new) == 1, "8 -> 13 needs the scalar-store form of the product"
    (old,) = p8.values()
    # what changed is only shape-derived: the same key once the by_shape values are set aside
    assert _fixed_part(new[0]) == _fixed_part(old) and new[0].by_shape != old.by_shape


def test_attention_new_sequence_length_compiles_nothing(requested: list[Any]) -> None:
    heads, d = 2, 8
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["y"], domain="webinfer", num_heads=heads,
                            scale=0.25)
    shape = ["B", "S", heads * d]
    data = _model(node, {"q": shape, "k": shape, "v": shape}, domain="webinfer")
    sess = webinfer.InferenceSession(data, providers=["webgpu"])
    assert set(sess.get_placement().values()) == {"webgpu"}
    rng = np.random.default_rng(1)

    def feed(s: int) -> dict[str, np.ndarray]:
        return {n: rng.standard_normal((2, s, heads * d)).astype(np.float32) for n in "qkv"}

    first = _programs_of_run(sess, feed(8), requested).keys()
    assert first, "the attention kernel asked for no pipeline"
    for s in (13, 20, 1):
        assert _programs_of_run(sess, feed(s), requested).keys() <= first, f"sequence length {s} compiled a pipeline"


def test_broadcast_add_new_length_compiles_nothing(requested: list[Any]) -> None:
    data = _model(helper.make_node("Add", ["a", "b"], ["y"]), {"a": ["S", 16], "b": [16]})
    sess = webinfer.InferenceSession(data, providers=["webgpu"])
    assert set(sess.get_placement().values()) == {"webgpu"}
    rng = np.random.default_rng(2)
    b = rng.standard_normal(16).astype(np.float32)
    first = _programs_of_run(sess, {"a": rng.standard_normal((8, 16)).astype(np.float32), "b": b}, requested,
                             data).keys()
    for s in (13, 3):
        feed = {"a": rng.standard_normal((s, 16)).astype(np.float32), "b": b}
        assert _programs_of_run(sess, feed, requested, data).keys() == first
