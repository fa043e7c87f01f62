"""Shape and data-movement ops against onnxruntime, and load-time shape reasoning through SymInts."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import webinfer
from webinfer.errors import WebinferError
from webinfer.ops import shape as shape_ops

from .util import LAYOUTS, check_node, make_model, run_both, strided

RNG = np.random.default_rng(7)


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def test_reshape_zero_minus_one_and_allowzero() -> None:
    x = rand(2, 3, 4)
    check_node("Reshape", {"x": x}, initializers={"s": i64(0, -1, 2)})
    check_node("Reshape", {"x": x, "s": i64(4, 0, -1)})
    check_node("Reshape", {"x": np.zeros((0, 3), np.float32)}, initializers={"s": i64(3, 0)}, allowzero=1)


def test_shape_size_flatten() -> None:
    x = rand(2, 3, 4, 5)
    check_node("Shape", {"x": x}, start=1, end=-1)
    check_node("Shape", {"x": x}, start=-10, end=10)
    check_node("Size", {"x": x})
    for axis in (0, 2, -1, 4):
        check_node("Flatten", {"x": x}, axis=axis)


def test_squeeze_unsqueeze_both_opsets() -> None:
    x = rand(1, 3, 1, 2)
    check_node("Squeeze", {"x": x}, opset=11, axes=[0, -2])
    check_node("Squeeze", {"x": x}, opset=13)
    check_node("Squeeze", {"x": x}, initializers={"a": i64(2)})
    check_node("Unsqueeze", {"x": rand(3, 2)}, opset=11, axes=[0, 3])
    check_node("Unsqueeze", {"x": rand(3, 2), "a": i64(-1, 1)})


def test_transpose_concat_split() -> None:
    x = rand(2, 3, 4)
    check_node("Transpose", {"x": x})
    check_node("Transpose", {"x": x}, perm=[1, 2, 0])
    check_node("Concat", {"a": x, "b": rand(2, 1, 4), "c": rand(2, 5, 4)}, axis=-2)
    check_node("Split", {"x": rand(7, 2)}, n_outputs=3, opset=18, num_outputs=3)
    check_node("Split", {"x": rand(2, 6)}, n_outputs=2, opset=13, axis=1, initializers={"s": i64(2, 4)})
    check_node("Split", {"x": rand(2, 6)}, n_outputs=3, opset=11, axis=-1)


@pytest.mark.parametrize("opset, axes", [(13, [-1]), (13, [0, 2]), (11, [0, -2])])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_squeeze_constant_axes_symbolic_shape(opset: int, axes: list, layout: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant axes on an input of symbolic shape (no static output): normalised once, checked and
    reshaped per call without the general `squeeze_array`."""
    calls = []
    general = shape_ops.squeeze_array
    monkeypatch.setattr(shape_ops, "squeeze_array", lambda *a: calls.append(1) or general(*a))
    if opset >= 13:
        node = helper.make_node("Squeeze", ["x", "a"], ["y"])
        inits = [helper.make_tensor("a", TensorProto.INT64, [len(axes)], axes)]
    else:
        node = helper.make_node("Squeeze", ["x"], ["y"], axes=axes)
        inits = []
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "c", 1, "t"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()
    sess = webinfer.InferenceSession(model, webinfer.SessionOptions(strict_shape_checks=True))
    ref = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    last = 1 if axes == [-1] else 5
    for c in (3, 128):
        x = rand(1, c, 1, last)
        np.testing.assert_array_equal(sess.run(None, {"x": strided(x, layout)})[0], ref.run(None, {"x": x})[0])
    if axes == [-1]:
        with pytest.raises(WebinferError, match="cannot squeeze axis 3"):
            sess.run(None, {"x": rand(1, 3, 1, 2)})
    assert not calls


def test_slice_steps_and_bounds() -> None:
    x = rand(5, 6, 7)
    check_node("Slice", {"x": x}, initializers={"s": i64(4, -1), "e": i64(-100, 1), "a": i64(0, 2),
                                                 "st": i64(-2, -3)})
    check_node("Slice", {"x": x, "s": i64(1, -3), "e": i64(2**62, 5), "a": i64(-1, 1)})
    check_node("Slice", {"x": x}, opset=9, starts=[1, 0], ends=[3, 1000], axes=[1, 2])
    # a negative step clamps start to [0, dim-1]: -7 on a dim of 6 starts at 0 (Python's slicing gives nothing)
    check_node("Slice", {"x": x, "s": i64(-7), "e": i64(-9), "a": i64(1), "st": i64(-3)})


@pytest.mark.parametrize("bounds", [
    dict(s=i64(4, -1), e=i64(-100, 1), a=i64(0, 2), st=i64(-2, -3)),
    dict(s=i64(1, -3), e=i64(2**62, 5), a=i64(-1, 1)),
    dict(s=i64(256), e=i64(384), a=i64(1)),  # an LSTM cell's gate
    dict(s=i64(-7), e=i64(-9), a=i64(1), st=i64(-3)),
    dict(s=i64(0, 0, 0), e=i64(1, 1, 1)),  # no axes: the leading ones
])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_slice_constant_bounds_index_once_per_shape(bounds: dict, layout: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant starts/ends/axes/steps: the index is worked out once per input shape, on any layout."""
    calls = []
    index = shape_ops.slice_index
    monkeypatch.setattr(shape_ops, "slice_index", lambda *a: calls.append(1) or index(*a))
    names = ["x"] + list(bounds)
    if "st" in bounds and "a" not in bounds:
        names.insert(3, "")
    node = helper.make_node("Slice", names, ["y"])
    for shape in [(5, 513, 7), (3, 5, 11)]:
        x = rand(*shape)
        model = make_model([node], {"x": x}, ["y"], initializers=bounds).SerializeToString()
        sess = webinfer.InferenceSession(model)
        want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        for _ in range(3):
            np.testing.assert_array_equal(sess.run(None, {"x": strided(x, layout)})[0], want)
        assert len(calls) == 1
        calls.clear()


@pytest.mark.parametrize("mode, pads, axes", [
    ("reflect", (0, 0, 64, 0, 0, 64), None),  # an STFT's reflection pad of (1, 1, 512)
    ("edge", (1, 2, 0, 3), (2, 0)),
    ("wrap", (0, 2, 1, 1, 3, 0), None),
    ("constant", (2, 0, 1, 0, 1, 3), None),
    ("constant", (-1, 0, 2, 1, 0, -2), None),  # crops and pads
    ("reflect", (0, 0, 0, 0, 0, 0), None),
])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_pad_constant_pads_prepared_per_shape(mode: str, pads: tuple, axes: tuple | None, layout: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant pads (and value, axes) are worked out once per input shape, on any layout of X."""
    calls = []
    prepare = shape_ops._prepared_pad
    monkeypatch.setattr(shape_ops, "_prepared_pad", lambda *a: calls.append(1) or prepare(*a))
    inits = {"p": i64(*pads)}
    if mode == "constant":
        inits["v"] = np.array(1.5, np.float32)
    if axes is not None:
        inits["a"] = i64(*axes)
    names = ["x", "p", "v" if "v" in inits else "", "a" if axes is not None else ""]
    while names[-1] == "":
        names.pop()
    x = rand(3, 5, 67)
    node = helper.make_node("Pad", names, ["y"], mode=mode)
    model = make_model([node], {"x": x}, ["y"], opset=19, initializers=inits).SerializeToString()
    sess = webinfer.InferenceSession(model, webinfer.SessionOptions(strict_shape_checks=True))
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for _ in range(3):
        np.testing.assert_array_equal(sess.run(None, {"x": strided(x, layout)})[0], want)
    assert len(calls) == 1


def test_expand_tile_pad() -> None:
    check_node("Expand", {"x": rand(3, 1)}, initializers={"s": i64(2, 1, 4)})
    check_node("Tile", {"x": rand(2, 3)}, initializers={"r": i64(2, 3)})
    x = rand(3, 4)
    for mode in ("constant", "reflect", "edge", "wrap"):
        check_node("Pad", {"x": x}, opset=19, mode=mode, initializers={"p": i64(1, 2, 2, 1)})
    check_node("Pad", {"x": x}, initializers={"p": i64(-1, 2, 1, -2), "v": np.array(1.5, np.float32)})
    check_node("Pad", {"x": x}, opset=18, initializers={"p": i64(1, 3), "v": np.array(2.0, np.float32),
                                                         "a": i64(-1)})
    check_node("Pad", {"x": x}, opset=2, pads=[0, 1, 1, 0], value=3.0)


def test_constants_range_eyelike_trilu_onehot() -> None:
    check_node("ConstantOfShape", {"s": i64(2, 3)}, value=helper.make_tensor("v", TensorProto.INT32, [1], [7]))
    check_node("Range", {"a": np.array(1.5, np.float32), "b": np.array(9.1, np.float32),
                         "c": np.array(0.7, np.float32)})
    check_node("Range", {"a": np.array(10, np.int64), "b": np.array(-3, np.int64), "c": np.array(-4, np.int64)})
    check_node("EyeLike", {"x": rand(3, 5)}, k=-1, dtype=TensorProto.INT32)
    check_node("Trilu", {"x": rand(2, 4, 5), "k": np.array(1, np.int64)}, upper=0)
    check_node("Trilu", {"x": rand(4, 3)})
    indices = np.array([[0, 3, -1], [5, 2, -4]], np.int64)
    check_node("OneHot", {"i": indices, "d": np.array(4, np.int64), "v": np.array([0.5, 2.0], np.float32)},
               axis=1)


@pytest.mark.parametrize("mode", ["DCR", "CRD"])
def test_depth_space_round_trip(mode: str) -> None:
    x = rand(2, 8, 3, 5)
    y = check_node("DepthToSpace", {"x": x}, blocksize=2, mode=mode)[0]
    check_node("SpaceToDepth", {"x": y}, blocksize=2)
    if mode == "DCR":
        back = check_node("SpaceToDepth", {"x": y}, blocksize=2)[0]
        np.testing.assert_array_equal(back, x)


def test_center_crop_pad() -> None:
    """onnxruntime has no CenterCropPad kernel: compare with the definition."""
    x = rand(5, 4, 3)
    node = helper.make_node("CenterCropPad", ["x", "s"], ["y"], axes=[0, 1])
    model = make_model([node], {"x": x}, ["y"], opset=18, initializers={"s": i64(2, 7)})
    ours, _ = run_both(model, {"x": x})
    expected = np.zeros((2, 7, 3), np.float32)
    expected[:, 1:5] = x[1:3]
    np.testing.assert_array_equal(ours[0], expected)


def test_bfloat16_moves_storage_untouched() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = rand(2, 3).astype(ml_dtypes.bfloat16)
    nodes = [helper.make_node("Transpose", ["x"], ["t"]),
             helper.make_node("Pad", ["t", "p", "v"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2, 3])]
    inits = [helper.make_tensor("p", TensorProto.INT64, [4], [1, 0, 0, 1]),
             helper.make_tensor("v", TensorProto.BFLOAT16, [], [1.5])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_empty_tensor_value_info("y")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    sess = webinfer.InferenceSession(model.SerializeToString(), webinfer.SessionOptions(strict_shape_checks=True))
    y = sess.run(None, {"x": x})[0]
    expected = np.pad(x.astype(np.float32).T, [(1, 0), (0, 1)], constant_values=1.5)
    np.testing.assert_array_equal(y.astype(np.float32), expected)


def _symbolic_session(nodes: list, extra: list | None = None) -> webinfer.InferenceSession:
    """A model over x: float['batch', 'seq', 384] with the constants the shape chains use."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 384])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    inits = [helper.make_tensor("i0", TensorProto.INT64, [], [0]), helper.make_tensor("i1", TensorProto.INT64, [], [1]),
             helper.make_tensor("heads", TensorProto.INT64, [2], [12, -1]),
             helper.make_tensor("ax", TensorProto.INT64, [1], [0])] + (extra or [])
    graph = helper.make_graph(nodes, "chain", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return webinfer.InferenceSession(model.SerializeToString(), webinfer.SessionOptions(strict_shape_checks=True))


def test_exporter_shape_chain_resolves_symbolically_at_load() -> None:
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape (with -1) gives ('batch', 'seq', 12, 32) at load."""
    nodes = [helper.make_node("Shape", ["x"], ["shp"]),
             helper.make_node("Gather", ["shp", "i0"], ["b"], axis=0),
             helper.make_node("Gather", ["shp", "i1"], ["s"], axis=0),
             helper.make_node("Unsqueeze", ["b", "ax"], ["bu"]),
             helper.make_node("Unsqueeze", ["s", "ax"], ["su"]),
             helper.make_node("Concat", ["bu", "su", "heads"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["r"]),
             helper.make_node("Transpose", ["r"], ["y"], perm=[0, 2, 1, 3])]
    sess = _symbolic_session(nodes)
    assert sess.get_outputs()[0].shape == ["batch", 12, "seq", 32]
    x = rand(2, 5, 384)
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], x.reshape(2, 5, 12, 32).transpose(0, 2, 1, 3))


def test_shape_arithmetic_and_slice_resolve_at_load() -> None:
    """Mul on gathered dims and a Slice of the shape vector keep exact symbolic dims."""
    nodes = [helper.make_node("Shape", ["x"], ["shp"]),
             helper.make_node("Gather", ["shp", "i0"], ["b"], axis=0),
             helper.make_node("Gather", ["shp", "i1"], ["s"], axis=0),
             helper.make_node("Mul", ["b", "s"], ["rows0"]),
             helper.make_node("Unsqueeze", ["rows0", "ax"], ["rows"]),
             helper.make_node("Slice", ["shp", "last", "end"], ["width"]),
             helper.make_node("Concat", ["rows", "width"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["y"])]
    extra = [helper.make_tensor("last", TensorProto.INT64, [1], [-1]),
             helper.make_tensor("end", TensorProto.INT64, [1], [2**63 - 1])]
    sess = _symbolic_session(nodes, extra)
    assert sess.get_outputs()[0].shape == ["batch*seq", 384]
    x = rand(3, 4, 384)
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], x.reshape(12, 384))


def test_equal_where_expand_and_range_resolve_at_load() -> None:
    """The exporters' Expand pattern Where(Equal(shape, -1), 1, shape) and Range(0, seq + 1) stay symbolic."""
    nodes = [helper.make_node("Shape", ["x"], ["shp"]),
             helper.make_node("Gather", ["shp", "i0"], ["b"], axis=0),
             helper.make_node("Gather", ["shp", "i1"], ["s"], axis=0),
             helper.make_node("Unsqueeze", ["b", "ax"], ["bu"]),
             helper.make_node("Concat", ["bu", "one_width"], ["want"], axis=0),
             helper.make_node("Equal", ["want", "minus_ones"], ["is_free"]),
             helper.make_node("ConstantOfShape", ["three"], ["ones"],
                              value=helper.make_tensor("v", TensorProto.INT64, [1], [1])),
             helper.make_node("Where", ["is_free", "ones", "want"], ["target"]),
             helper.make_node("Expand", ["bias", "target"], ["wide"]),
             helper.make_node("Add", ["s", "i1"], ["s1"]),
             helper.make_node("Range", ["i0", "s1", "i1"], ["pos"]),
             helper.make_node("Cast", ["pos"], ["posf"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["posf", "ax"], ["pos2"]),
             helper.make_node("Unsqueeze", ["pos2", "minus_one"], ["pos3"]),
             helper.make_node("Mul", ["wide", "pos3"], ["y"])]
    extra = [helper.make_tensor("one_width", TensorProto.INT64, [2], [1, 384]),
             helper.make_tensor("minus_ones", TensorProto.INT64, [3], [-1, -1, -1]),
             helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1]),
             helper.make_tensor("three", TensorProto.INT64, [1], [3]),
             helper.make_tensor("bias", TensorProto.FLOAT, [1, 1, 384], np.linspace(0, 1, 384).tolist())]
    sess = _symbolic_session(nodes, extra)
    assert sess.get_outputs()[0].shape == ["batch", "seq+1", 384]
    x = rand(2, 5, 384)
    expected = np.linspace(0, 1, 384, dtype=np.float32)[None, None, :] * np.arange(6, dtype=np.float32)[None, :, None]
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], np.broadcast_to(expected, (2, 6, 384)), rtol=1e-6)


def test_bad_reshape_and_pad_are_load_errors_naming_the_node() -> None:
    x = rand(2, 3)
    node = helper.make_node("Reshape", ["x", "s"], ["y"], name="bad_reshape")
    model = make_model([node], {"x": x}, ["y"], initializers={"s": i64(4, 2)})
    with pytest.raises(WebinferError, match=r"Reshape node 'bad_reshape'.*\[2,3\].*\[4, 2\]"):
        webinfer.InferenceSession(model.SerializeToString())
    node = helper.make_node("Pad", ["x", "p"], ["y"], name="bad_pad", mode="mirror")
    model = make_model([node], {"x": x}, ["y"], initializers={"p": i64(0, 0, 0, 0)})
    with pytest.raises(WebinferError, match=r"Pad node 'bad_pad'.*'mirror'"):
        webinfer.InferenceSession(model.SerializeToString())


def test_bad_runtime_shape_names_the_node() -> None:
    node = helper.make_node("Reshape", ["x", "s"], ["y"], name="late")
    model = make_model([node], {"x": rand(2, 3), "s": i64(5)}, ["y"])
    sess = webinfer.InferenceSession(model.SerializeToString())
    with pytest.raises(WebinferError, match=r"Reshape node 'late'.*cannot reshape \[2, 3\]"):
        sess.run(None, {"x": rand(2, 3), "s": i64(5)})


@pytest.mark.parametrize("mode", ["reflect", "edge", "wrap"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced", "reversed"])
def test_pad_modes_gather_by_index(mode: str, layout: str) -> None:
    """reflect/edge/wrap pad as one take per padded axis (an audio model's reflection pad of its chunk),
    on any input layout and odd sizes, against onnxruntime and np.pad (reflection folding back past
    the far edge, as np.pad does)."""
    from webinfer.ops.shape import pad_array

    base = rand(2, 5, 7)
    x = {"contiguous": base, "transposed": np.ascontiguousarray(base.transpose(2, 1, 0)).transpose(2, 1, 0),
         "sliced": np.repeat(base, 2, axis=2)[:, :, ::2], "reversed": base[::-1, :, ::-1].copy()[::-1, :, ::-1]}[layout]
    assert x.flags.c_contiguous == (layout == "contiguous")
    check_node("Pad", {"x": x}, opset=19, mode=mode, initializers={"p": i64(0, 1, 3, 1, 2, 4)})
    if mode != "reflect":  # onnxruntime refuses to reflect a length-1 axis (np.pad repeats it: below)
        check_node("Pad", {"x": x[:, :, :1]}, opset=19, mode=mode, initializers={"p": i64(0, 0, 1, 0, 0, 2)})
    np.testing.assert_array_equal(pad_array(x[:, :, :1], [(0, 0), (0, 0), (1, 2)], mode, 0),
                                  np.pad(x[:, :, :1], [(0, 0), (0, 0), (1, 2)], mode=mode))
    for widths in ([(0, 0), (4, 9), (6, 0)], [(1, 1), (0, 0), (13, 1)]):
        np.testing.assert_array_equal(pad_array(x, widths, mode, 0), np.pad(x, widths, mode=mode))
