"""MatMul, Gemm, Einsum, Det and webinfer.FusedMatMul against onnxruntime (or numpy for the fused op)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import pytest
from onnx import helper

import webinfer
from webinfer.errors import WebinferError

from webinfer.ops import matmul as matmul_ops

from .util import LAYOUTS, assert_close, check_node, make_model, run_both, strided

RNG = np.random.default_rng(7)


def rand(*shape: int, dtype: type = np.float32) -> np.ndarray:
    if np.dtype(dtype).kind in "iu":
        return RNG.integers(-5 if np.dtype(dtype).kind == "i" else 0, 6, size=shape).astype(dtype)
    return RNG.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("a_shape,b_shape", [
    ((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (2, 4, 3)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4,)),
    ((2, 3, 4), (4,)),
])
def test_matmul_shapes(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> None:
    check_node("MatMul", {"a": rand(*a_shape), "b": rand(*b_shape)}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float64])
def test_matmul_dtypes(dtype: type) -> None:
    check_node("MatMul", {"a": rand(2, 3, 4, dtype=dtype), "b": rand(4, 3, dtype=dtype)})


def test_matmul_float16_and_constant_weight() -> None:
    check_node("MatMul", {"a": rand(2, 5, 16, dtype=np.float16)}, rtol=2e-3, atol=2e-3,
               initializers={"w": rand(16, 8, dtype=np.float16)})
    check_node("MatMul", {"a": rand(2, 5, 16)}, rtol=1e-5, atol=1e-5, initializers={"w": rand(16, 8)})


def test_matmul_bfloat16_constant_weight() -> None:
    """onnxruntime has no bfloat16 MatMul on CPU: compare with float32 numpy rounded to bfloat16."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    a, w = rand(2, 3, 8).astype(ml_dtypes.bfloat16), rand(8, 4).astype(ml_dtypes.bfloat16)
    model = make_model([helper.make_node("MatMul", ["a", "w"], ["y"])], {"a": a}, ["y"], initializers={"w": w})
    got = webinfer.InferenceSession(model.SerializeToString()).run(None, {"a": a})[0]
    want = (a.astype(np.float32) @ w.astype(np.float32)).astype(ml_dtypes.bfloat16)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=1e-2)


@pytest.mark.parametrize("attrs,c_shape", [
    ({}, (3, 5)), ({"transA": 1}, (5,)), ({"transB": 1, "alpha": 0.5}, (1, 5)),
    ({"transA": 1, "transB": 1, "alpha": 2.0, "beta": -0.5}, (3, 1)), ({"beta": 3.0}, ()), ({}, None),
])
def test_gemm(attrs: dict, c_shape: tuple[int, ...] | None) -> None:
    a = rand(4, 3) if attrs.get("transA") else rand(3, 4)
    b = rand(5, 4) if attrs.get("transB") else rand(4, 5)
    inputs = {"a": a, "b": b}
    if c_shape is not None:
        inputs["c"] = rand(*c_shape)
    check_node("Gemm", inputs, rtol=1e-5, atol=1e-5, **attrs)


def test_gemm_constant_weight_and_bias() -> None:
    check_node("Gemm", {"a": rand(6, 8)}, rtol=1e-5, atol=1e-5,
               initializers={"w": rand(3, 8), "bias": rand(3)}, transB=1, alpha=0.7, beta=1.5)


@pytest.mark.parametrize("k, n, trans_b, c_shape, beta", [
    (1536, 128, 1, (128,), 1.0),  # a wake-word head's first layer
    (7, 5, 0, (1, 5), -0.5),
    (9, 1, 1, (1,), 2.0),
    (576, 1024, 1, None, 1.0),  # MobileNetV3-small's classifier
    (3, 4, 0, (), 1.0),
])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_one_row_constant_weight(k: int, n: int, trans_b: int, c_shape: tuple | None, beta: float,
                                      layout: str, dtype: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """One row times a constant B (and constant C) is one np.dot, on any layout of A; other row counts,
    alpha != 1 and C fed at run time take the general path."""
    calls = []
    product = matmul_ops._product
    monkeypatch.setattr(matmul_ops, "_product", lambda *a: calls.append(1) or product(*a))
    inits = {"w": rand(*((n, k) if trans_b else (k, n)), dtype=dtype)}
    if c_shape is not None:
        inits["c"] = rand(*c_shape, dtype=dtype)
    a = strided(rand(1, k, dtype=dtype), layout)
    check_node("Gemm", {"a": a}, rtol=1e-4, atol=1e-4, initializers=inits, transB=trans_b, beta=beta)
    assert not calls
    check_node("Gemm", {"a": strided(rand(3, k, dtype=dtype), layout)}, rtol=1e-4, atol=1e-4, initializers=inits,
               transB=trans_b, beta=beta)
    check_node("Gemm", {"a": a}, rtol=1e-4, atol=1e-4, initializers=inits, transB=trans_b, alpha=0.5)
    assert len(calls) == 2
    if c_shape is not None:
        node = helper.make_node("Gemm", ["a", "w", "c"], ["y"], transB=trans_b)
        feed = {"a": a, "c": inits["c"]}
        ours, ref = run_both(make_model([node], feed, ["y"], initializers={"w": inits["w"]}), feed)
        assert_close(ours, ref, rtol=1e-4, atol=1e-4)
        assert len(calls) == 3


def test_gemm_opset6_broadcast() -> None:
    """onnxruntime has no Gemm-6 kernel: compare with numpy, and check that
    without broadcast=1 a smaller C is rejected."""
    a, b, c = rand(3, 4), rand(4, 5), rand(5)
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], broadcast=1, beta=2.0)
    got = _session(node, {"a": a, "b": b, "c": c}, opset=6).run(None, {"a": a, "b": b, "c": c})[0]
    np.testing.assert_allclose(got, a @ b + 2 * c, rtol=1e-5, atol=1e-5)
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="g6")
    with pytest.raises(WebinferError, match=r"Gemm node 'g6'.*\[1,5\].*broadcast=1"):
        _session(node, {"a": a, "b": b, "c": c.reshape(1, 5)}, opset=6)


@pytest.mark.parametrize("equation,shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ii->i", [(4, 4)]),
    ("...ij->...ji", [(2, 3, 4)]), ("ij,kj", [(3, 4), (5, 4)]), ("i,i", [(5,), (5,)]),
    ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
])
def test_einsum(equation: str, shapes: list[tuple[int, ...]]) -> None:
    inputs = {f"x{i}": rand(*s) for i, s in enumerate(shapes)}
    check_node("Einsum", inputs, rtol=1e-5, atol=1e-5, equation=equation)


def test_einsum_int() -> None:
    check_node("Einsum", {"a": rand(3, 4, dtype=np.int64), "b": rand(4, dtype=np.int64)}, equation="ij,j->i")


def test_det() -> None:
    check_node("Det", {"x": rand(3, 3)}, rtol=1e-4, atol=1e-5)
    check_node("Det", {"x": rand(2, 4, 5, 5)}, rtol=1e-4, atol=1e-5)


def _weight_model(node: object, k: int, weights: dict[str, np.ndarray], rows_only: bool = False) -> bytes:
    """A one-node model over input a [batch, rows, K] (or x [rows, K]; symbolic dims) and constant weights."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["rows", k]) if rows_only else \
        helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, ["batch", "rows", k])
    graph = helper.make_graph(
        [node], "g", [x],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(v, n) for n, v in weights.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


@pytest.mark.parametrize("n", [40, 48, 7])
@pytest.mark.parametrize("threads", [1, 2])
def test_constant_weight_products_of_few_and_many_rows(n: int, threads: int) -> None:
    """One session, fed products of 1 to 64 rows: on one thread the few-rows path (blocks of 16
    columns of B^T, plus the columns left over), else one GEMM, must agree with onnxruntime; for
    MatMul and for Gemm transB=1 (whose B already is B^T)."""
    k = 24
    w, bias = rand(k, n), rand(n)
    matmul = _weight_model(helper.make_node("MatMul", ["a", "w"], ["y"]), k, {"w": w})
    options = webinfer.SessionOptions(strict_shape_checks=True, intra_op_num_threads=threads)
    ours = webinfer.InferenceSession(matmul, options)
    ref = ort.InferenceSession(matmul, providers=["CPUExecutionProvider"])
    for batch, rows in [(1, 16), (2, 5), (1, 1), (1, 28), (1, 64), (3, 9)]:
        a = rand(batch, rows, k)
        got, want = ours.run(None, {"a": a})[0], ref.run(None, {"a": a})[0]
        assert got.shape == want.shape and got.flags.c_contiguous
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{batch}x{rows} rows")
    gemm = _weight_model(helper.make_node("Gemm", ["x", "w", "bias"], ["y"], transB=1), k,
                         {"w": np.ascontiguousarray(w.T), "bias": bias}, rows_only=True)
    ours = webinfer.InferenceSession(gemm, options)
    ref = ort.InferenceSession(gemm, providers=["CPUExecutionProvider"])
    for rows in (3, 20, 50):
        x = rand(rows, k)
        np.testing.assert_allclose(ours.run(None, {"x": x})[0], ref.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k, n", [(128, 512), (7, 1), (1, 9), (33, 65)])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_one_row_constant_weight(k: int, n: int, layout: str, dtype: type,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """One row times a constant 2-D B is one np.dot (MatMul, and FusedMatMul with a constant bias and no
    activation), on any layout of A; a batched or 1-D A takes the general path."""
    calls = []
    product = matmul_ops._product
    monkeypatch.setattr(matmul_ops, "_product", lambda *a: calls.append(1) or product(*a))
    w, bias = rand(k, n, dtype=dtype), rand(n, dtype=dtype)
    a = strided(rand(1, k, dtype=dtype), layout)
    check_node("MatMul", {"a": a}, rtol=1e-5, atol=1e-5, initializers={"w": w})
    np.testing.assert_allclose(_run_fused(a, w, bias), a @ w + bias, rtol=1e-5, atol=1e-5)
    assert not calls
    check_node("MatMul", {"a": strided(rand(2, 1, k, dtype=dtype), layout)}, rtol=1e-5, atol=1e-5,
               initializers={"w": w})
    check_node("MatMul", {"a": rand(k, dtype=dtype)}, rtol=1e-5, atol=1e-5, initializers={"w": w})
    np.testing.assert_allclose(_run_fused(a, w, bias, activation="Relu"), np.maximum(a @ w + bias, 0),
                               rtol=1e-5, atol=1e-5)
    assert len(calls) == 3


def _run_fused(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None, **attrs: object) -> np.ndarray:
    inits = {"b": b} | ({"bias": bias} if bias is not None else {})
    node = helper.make_node("FusedMatMul", ["a"] + list(inits), ["y"], domain="webinfer", **attrs)
    model = make_model([node], {"a": a}, ["y"], initializers=inits)
    model.opset_import.append(helper.make_opsetid("webinfer", 1))
    options = webinfer.SessionOptions(strict_shape_checks=True)
    return webinfer.InferenceSession(model.SerializeToString(), options).run(None, {"a": a})[0]


_REFERENCE_ACTS = {
    None: lambda y: y,
    "Relu": lambda y: np.maximum(y, 0),
    "Tanh": np.tanh,
    "Sigmoid": lambda y: 1 / (1 + np.exp(-y)),
    "Gelu": lambda y: 0.5 * y * (1 + np.vectorize(math.erf)(y / math.sqrt(2))),
}


@pytest.mark.parametrize("activation", list(_REFERENCE_ACTS))
def test_fused_matmul(activation: str | None) -> None:
    a, b, bias = rand(2, 5, 8), rand(8, 6), rand(6)
    attrs = {"activation": activation} if activation else {}
    got = _run_fused(a, b, bias, **attrs)
    want = _REFERENCE_ACTS[activation]((a.astype(np.float64) @ b + bias))
    assert got.dtype == np.float32 and got.shape == (2, 5, 6)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fused_matmul_transposes_alpha_float16() -> None:
    a, b = rand(3, 8, 5, dtype=np.float16), rand(6, 8, dtype=np.float16)
    got = _run_fused(a, b, None, transA=1, transB=1, alpha=0.25)
    want = 0.25 * np.swapaxes(a.astype(np.float32), -1, -2) @ b.astype(np.float32).T
    assert got.dtype == np.float16 and got.shape == (3, 5, 6)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)


def _session(node: object, inputs: dict[str, np.ndarray], opset: int = 21) -> webinfer.InferenceSession:
    model = make_model([node], inputs, ["y"], opset)
    return webinfer.InferenceSession(model.SerializeToString(), webinfer.SessionOptions(strict_shape_checks=True))


def test_bad_inputs_name_the_node() -> None:
    node = helper.make_node("MatMul", ["a", "b"], ["y"], name="mm1")
    with pytest.raises(WebinferError, match=r"MatMul node 'mm1'.*\[2,3\].*\[4,5\]"):
        _session(node, {"a": rand(2, 3), "b": rand(4, 5)})
    node = helper.make_node("Gemm", ["a", "b", "c"], ["y"], name="g1")
    with pytest.raises(WebinferError, match=r"Gemm node 'g1'.*C of shape \[4\]"):
        _session(node, {"a": rand(2, 3), "b": rand(3, 5), "c": rand(4)})
    node = helper.make_node("Einsum", ["a"], ["y"], name="e1", equation="ij,jk->ik")
    with pytest.raises(WebinferError, match=r"Einsum node 'e1'.*2 operand terms"):
        _session(node, {"a": rand(2, 3)})
    node = helper.make_node("FusedMatMul", ["a", "b"], ["y"], name="f1", domain="webinfer", activation="Swish")
    model = make_model([node], {"a": rand(2, 3), "b": rand(3, 4)}, ["y"])
    model.opset_import.append(helper.make_opsetid("webinfer", 1))
    with pytest.raises(WebinferError, match=r"FusedMatMul node 'f1'.*Swish"):
        webinfer.InferenceSession(model.SerializeToString())
