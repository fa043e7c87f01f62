"""Cast, CastLike and BitCast against onnxruntime (and numpy where onnxruntime lacks the op)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper

import webinfer
from webinfer.errors import ShapeInferenceError

from .util import assert_close, check_node, make_model, run_both

RNG = np.random.default_rng(7)


def _session(model: bytes | object) -> webinfer.InferenceSession:
    data = model if isinstance(model, bytes) else model.SerializeToString()  # type: ignore[union-attr]
    return webinfer.InferenceSession(data, webinfer.SessionOptions(strict_shape_checks=True))


@pytest.mark.parametrize("x,to", [
    (RNG.standard_normal((3, 4)).astype(np.float32) * 50, T.FLOAT16),
    (RNG.standard_normal((3, 4)).astype(np.float32) * 50, T.INT32),
    (RNG.standard_normal((3, 4)).astype(np.float32) * 50, T.DOUBLE),
    (RNG.standard_normal((3, 4)).astype(np.float32), T.BOOL),
    (RNG.integers(-1000, 1000, (2, 5)).astype(np.int64), T.FLOAT),
    (RNG.integers(-1000, 1000, (2, 5)).astype(np.int32), T.UINT8),
    (RNG.integers(-1000, 1000, (2, 5)).astype(np.int32), T.INT8),
    (RNG.standard_normal(7).astype(np.float16), T.DOUBLE),
    (RNG.integers(0, 2, 6).astype(bool), T.FLOAT),
])
def test_numeric_casts(x: np.ndarray, to: int) -> None:
    check_node("Cast", {"x": x}, to=to)


@pytest.mark.parametrize("to", [T.BFLOAT16, T.FLOAT8E4M3FN, T.FLOAT8E4M3FNUZ, T.FLOAT8E5M2, T.FLOAT8E5M2FNUZ])
@pytest.mark.parametrize("saturate", [1, 0])
def test_small_float_round_trip(to: int, saturate: int) -> None:
    """Cast to the small type and back: rounding, overflow and saturation as onnxruntime."""
    x = np.concatenate([RNG.standard_normal(64) * 3, RNG.standard_normal(64) * 3e4, [0.0, -0.0, np.inf, -np.inf]])
    x = x.astype(np.float32)
    if to == T.FLOAT8E5M2 and not saturate:
        x = x[np.abs(x) < _E5M2_INF_FROM]  # onnxruntime deviates there: see test_e5m2_overflow_is_inf
    attrs = {"saturate": saturate} if to != T.BFLOAT16 else {}
    nodes = [helper.make_node("Cast", ["x"], ["m"], to=to, **attrs), helper.make_node("Cast", ["m"], ["y"], to=T.FLOAT)]
    ours, ref = run_both(make_model(nodes, {"x": x}, ["y"]), {"x": x})
    np.testing.assert_array_equal(ours[0], ref[0])


#: float8e5m2's largest finite value is 57344; from half an ulp above it, round-to-nearest gives inf.
_E5M2_INF_FROM = 61440.0


def test_e5m2_overflow_is_inf_without_saturation() -> None:
    """Cast's table: with saturate=0, |x| rounding above FLT_MAX becomes +-inf for float8e5m2
    (ml_dtypes agrees); onnxruntime 1.32 returns NaN for finite x in that range."""
    x = np.array([60000.0, 61439.0, 61440.0, 63508.2, -70000.0, np.inf, -np.inf], np.float32)
    nodes = [helper.make_node("Cast", ["x"], ["m"], to=T.FLOAT8E5M2, saturate=0),
             helper.make_node("Cast", ["m"], ["y"], to=T.FLOAT)]
    model = make_model(nodes, {"x": x}, ["y"])
    (y,) = webinfer.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    assert y.tolist() == [57344.0, 57344.0, np.inf, np.inf, -np.inf, np.inf, -np.inf]


@pytest.mark.parametrize("to", [T.INT4, T.UINT4])
def test_int4_round_trip(to: int) -> None:
    x = RNG.integers(-40, 40, (4, 9)).astype(np.float32)
    nodes = [helper.make_node("Cast", ["x"], ["m"], to=to), helper.make_node("Cast", ["m"], ["y"], to=T.FLOAT)]
    ours, ref = run_both(make_model(nodes, {"x": x}, ["y"]), {"x": x})
    assert_close(ours, ref)


def test_float8_storage_bits_match() -> None:
    """float8e4m3fn leaves onnxruntime as its bit patterns (uint8): compare those directly."""
    x = (RNG.standard_normal((5, 6)) * 100).astype(np.float32)
    model = make_model([helper.make_node("Cast", ["x"], ["y"], to=T.FLOAT8E4M3FN)], {"x": x}, ["y"])
    ours, ref = run_both(model, {"x": x})
    np.testing.assert_array_equal(ours[0].view(np.uint8), ref[0])


def test_numbers_to_strings() -> None:
    x = np.concatenate([RNG.standard_normal(20) * 10.0 ** RNG.integers(-8, 9, 20),
                        [0.0, -0.0, np.inf, -np.inf, np.nan, 1e15, 16777216, 0.1]]).astype(np.float32)
    with np.errstate(over="ignore"):
        half = x.astype(np.float16)
    for feed in (x, x.astype(np.float64), half, RNG.integers(-10**12, 10**12, 9).astype(np.int64), x > 0):
        model = make_model([helper.make_node("Cast", ["x"], ["y"], to=T.STRING)], {"x": feed}, ["y"])
        ours, ref = run_both(model, {"x": feed})
        assert ours[0].dtype == object
        np.testing.assert_array_equal(ours[0], ref[0])


@pytest.mark.parametrize("to", [T.FLOAT, T.DOUBLE, T.INT64, T.INT32, T.UINT8, T.INT8])
def test_strings_to_numbers(to: int) -> None:
    ints = [str(v) for v in RNG.integers(-100, 100, 6)] + ["+5", " 7", "127"]
    floats = ["1.5", "-2.25e3", "INF", "-inf", "+Inf", "NaN", "1e-5", "3.14159"]
    x = np.array(ints + (floats if to in (T.FLOAT, T.DOUBLE) else []), dtype=object)
    check_node("Cast", {"x": x}, to=to)


def test_unparseable_string_names_node() -> None:
    x = np.array(["1", "hello"], dtype=object)
    model = make_model([helper.make_node("Cast", ["x"], ["y"], to=T.FLOAT, name="parse")], {"x": x}, ["y"])
    with pytest.raises(webinfer.errors.NodeExecutionError, match="Cast node 'parse'.*'hello'"):
        _session(model).run(None, {"x": x})


def test_cast_like() -> None:
    x = (RNG.standard_normal((4, 3)) * 1e3).astype(np.float32)
    check_node("CastLike", {"x": x, "like": np.zeros(1, np.float16)})
    check_node("CastLike", {"x": x, "like": np.zeros(1, np.int32)})


def test_cast_opset1_string_attribute() -> None:
    """Cast-1 names the target type with a string."""
    x = RNG.standard_normal((2, 3)).astype(np.float32) * 10
    model = make_model([helper.make_node("Cast", ["x"], ["y"], to="INT32")], {"x": x}, ["y"], opset=1)
    (y,) = _session(model).run(None, {"x": x})
    np.testing.assert_array_equal(y, x.astype(np.int32))


def test_bitcast() -> None:
    x = RNG.standard_normal((3, 5)).astype(np.float32)
    model = make_model([helper.make_node("BitCast", ["x"], ["y"], to=T.INT32)], {"x": x}, ["y"], opset=26)
    (y,) = _session(model).run(None, {"x": x})
    np.testing.assert_array_equal(y, x.view(np.int32))


def test_cast_keeps_shape_values_for_reshape() -> None:
    """Shape -> Cast(int32) -> Cast(int64) still resolves Reshape's target at load, symbolically."""
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Cast", ["s"], ["s32"], to=T.INT32),
             helper.make_node("Cast", ["s32"], ["s64"], to=T.INT64),
             helper.make_node("Reshape", ["x", "s64"], ["y"])]
    model = make_model(nodes, {"x": x}, ["y"])
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    sess = _session(model)
    assert sess.get_outputs()[0].shape == ["batch", 3, 4]
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], x)


@pytest.mark.parametrize("node,match", [
    (helper.make_node("Cast", ["x"], ["y"], to=99, name="bad_to"), "Cast node 'bad_to'.*'to' = 99"),
    (helper.make_node("Cast", ["x"], ["y"], to=T.FLOAT8E8M0, round_mode="sideways", name="bad_mode"),
     "Cast node 'bad_mode'.*round_mode"),
    (helper.make_node("BitCast", ["x"], ["y"], to=T.INT64, name="widths"),
     "BitCast node 'widths'.*float \\(32 bits\\) as int64 \\(64 bits\\)"),
])
def test_bad_attributes_name_the_node(node: object, match: str) -> None:
    x = np.ones((2, 2), np.float32)
    with pytest.raises(ShapeInferenceError, match=match):
        _session(make_model([node], {"x": x}, ["y"], opset=26))
