"""Conv family against onnxruntime on random data: every engine (im2col, 1x1, Winograd, depthwise),
weights as constants and as inputs, ConvTranspose, ConvInteger, DeformConv, Col2Im, the fused activation.

Tolerances: rtol = atol = 1e-4 on outputs of magnitude ~10 (standard normal data, sums of up to a
thousand products), i.e. float32 accumulation-order noise; the Winograd path is also checked against
a float64 conv, at 1e-6 of the output's range."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

import webinfer
from webinfer.ops import conv as conv_ops
from tests.ops.util import assert_close, check_node, make_model, run_both, strided_mode

rng = np.random.default_rng(7)


def rand(*shape: int, dtype: type = np.float32) -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((2, 6, 11, 9), (8, 6, 3, 3), dict(pads=[1, 0, 2, 1], strides=[2, 1])),
    ((1, 4, 12, 12), (6, 2, 3, 3), dict(group=2, dilations=[2, 1], pads=[1, 1, 1, 1])),
    ((1, 5, 9, 10), (7, 5, 1, 1), {}),  # 1x1: one matmul, no im2col
    ((1, 5, 9, 10), (7, 5, 1, 1), dict(strides=[2, 2])),
    ((2, 8, 6, 5), (3, 8, 1, 1), {}),
    ((2, 6, 5, 5), (8, 3, 1, 1), dict(group=2)),
    ((1, 3, 10, 10), (4, 3, 4, 4), dict(auto_pad="SAME_UPPER", strides=[3, 3])),
    ((1, 3, 10, 10), (4, 3, 4, 4), dict(auto_pad="SAME_LOWER", strides=[2, 2])),
    ((1, 3, 10, 10), (4, 3, 3, 2), dict(auto_pad="VALID", strides=[2, 3])),
    ((2, 3, 17), (5, 3, 4), dict(strides=[2], pads=[2, 1], dilations=[2])),
    ((1, 4, 6, 7, 5), (2, 2, 3, 2, 3), dict(group=2, pads=[1, 0, 1, 1, 1, 0], strides=[1, 2, 1])),
])
def test_conv_matches_onnxruntime(x_shape: tuple, w_shape: tuple, attrs: dict) -> None:
    x, w, b = rand(*x_shape), rand(*w_shape), rand(w_shape[0])
    check_node("Conv", {"x": x}, initializers={"w": w, "b": b}, rtol=1e-4, atol=1e-4, **attrs)
    check_node("Conv", {"x": x, "w": w}, rtol=1e-4, atol=1e-4, **attrs)  # weights known only at run time


@pytest.mark.parametrize("c, k, attrs", [
    (8, 3, dict(pads=[1, 1, 1, 1])),
    (8, 3, dict(pads=[1, 1, 1, 1], strides=[2, 2])),
    (6, 5, dict(pads=[2, 1, 2, 2], strides=[2, 1], dilations=[1, 2])),
    (5, 3, dict(auto_pad="SAME_UPPER", strides=[3, 3])),
])
def test_depthwise_matches_onnxruntime(c: int, k: int, attrs: dict) -> None:
    x, w, b = rand(2, c, 13, 11), rand(c, 1, k, k), rand(c)
    check_node("Conv", {"x": x}, initializers={"w": w, "b": b}, group=c, rtol=1e-4, atol=1e-4, **attrs)


@pytest.mark.parametrize("x_shape, k, attrs", [
    ((1, 3, 600, 28), 5, dict(pads=[2, 2, 2, 2], dilations=[1, 2])),  # short rows, chunked by rows
    ((1, 3, 150, 150), 3, dict(pads=[1, 0, 1, 2])),  # long rows, chunked by rows
    ((2, 5, 9, 40), 3, dict(pads=[0, 1, 2, 1], dilations=[2, 1])),
    ((1, 64, 20, 20), 5, dict(pads=[2, 2, 2, 2])),  # many channels per block
    ((1, 6, 12, 10), 3, dict(pads=[1, 1, 1, 1], strides=[1, 2])),  # strided along one axis only
])
@pytest.mark.parametrize("bias", [True, False])  # stride 1 folds a bias into its matmul as a ones row
def test_depthwise_block_shapes(x_shape: tuple, k: int, attrs: dict, bias: bool) -> None:
    c = x_shape[1]
    weights = {"w": rand(c, 1, k, k), **({"b": rand(c)} if bias else {})}
    check_node("Conv", {"x": rand(*x_shape)}, initializers=weights, group=c, rtol=1e-4, atol=1e-4, **attrs)


def test_depthwise_1d_and_3d() -> None:
    check_node("Conv", {"x": rand(1, 4, 20)}, initializers={"w": rand(4, 1, 3)}, group=4, strides=[2], pads=[1, 1])
    check_node("Conv", {"x": rand(2, 4, 30)}, initializers={"w": rand(4, 1, 5), "b": rand(4)}, group=4,
               pads=[2, 1], dilations=[2], rtol=1e-4, atol=1e-5)
    check_node("Conv", {"x": rand(1, 3, 5, 6, 7)}, initializers={"w": rand(3, 1, 3, 3, 3)}, group=3,
               pads=[1] * 6, strides=[1, 2, 2], rtol=1e-4, atol=1e-5)
    check_node("Conv", {"x": rand(1, 3, 5, 6, 7)}, initializers={"w": rand(3, 1, 3, 2, 3), "b": rand(3)}, group=3,
               pads=[1, 0, 1, 1, 1, 1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 32, 28, 28), (48, 32, 3, 3), dict(pads=[1, 1, 1, 1])),
    ((2, 24, 27, 33), (40, 24, 3, 3), dict(pads=[0, 2, 1, 0])),  # odd output width, two images
    ((1, 96, 80, 80), (24, 96, 3, 3), dict(pads=[1, 1, 1, 1])),  # several chunks of tile rows
    ((1, 32, 30, 29), (32, 32, 3, 3), dict(auto_pad="VALID")),
    ((1, 32, 28, 31), (48, 32, 3, 3), dict(auto_pad="SAME_LOWER")),
])
def test_winograd_matches_onnxruntime(x_shape: tuple, w_shape: tuple, attrs: dict) -> None:
    """3x3 stride-1 convs with enough channels run as Winograd F(2x2, 3x3), also with a fused activation."""
    x, w, b = rand(*x_shape), rand(*w_shape), rand(w_shape[0])
    y = check_node("Conv", {"x": x}, initializers={"w": w, "b": b}, rtol=1e-4, atol=1e-4, **attrs)[0]
    assert conv_ops.winograd_pays(x_shape[1], w_shape[0], y.shape[2:])  # the path under test is taken
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs), helper.make_node("Relu", ["c"], ["y"])]
    ours, ref = run_both(make_model(nodes, {"x": x}, ["y"], initializers={"w": w, "b": b}), {"x": x})
    assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_winograd_error_stays_at_float32_rounding() -> None:
    """Winograd's transforms cost no accuracy to speak of: against a float64 conv, its error is at im2col's
    float32 level (~3e-7 of the output's range here), far below the 1e-4 the model tests allow."""
    x, w, b = rand(2, 64, 30, 26), rand(48, 64, 3, 3) / 24, rand(48)
    g = conv_ops.Window(None, None, None, (1, 1, 1, 1), "NOTSET", False, True).geometry(None, (30, 26), (3, 3))
    packed = conv_ops.pack_weights(w, 1, np.dtype(np.float32), b, winograd=True)
    assert packed.winograd is not None and conv_ops.winograd_pays(64, 48, g.out)
    ref = conv_ops.conv_compute(x.astype(np.float64), conv_ops.pack_weights(
        w.astype(np.float64), 1, np.dtype(np.float64), b.astype(np.float64)), g)
    plain = conv_ops.conv_compute(x, conv_ops.pack_weights(w, 1, np.dtype(np.float32), b), g)
    for y in (conv_ops.conv_compute(x, packed, g), plain):
        assert np.abs(y - ref).max() / np.abs(ref).max() < 1e-6


@pytest.mark.parametrize("x_shape, w_shape", [
    ((1, 16, 128, 128), (48, 16, 1, 1)),  # bias folded as a ones row on the input blocks
    ((2, 64, 120, 120), (40, 64, 1, 1)),  # bias added to the output blocks
])
def test_pointwise_blocks_match_onnxruntime(x_shape: tuple, w_shape: tuple) -> None:
    """1x1 convs with big outputs run in blocks of output cells, each finished (here HardSwish) in cache."""
    x, w, b = rand(*x_shape), rand(*w_shape), rand(w_shape[0])
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"]), helper.make_node("HardSwish", ["c"], ["y"])]
    ours, ref = run_both(make_model(nodes, {"x": x}, ["y"], initializers={"w": w, "b": b}), {"x": x})
    assert_close(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cin, cout, group", [(8, 24, 1), (24, 8, 1), (8, 12, 2), (12, 8, 4)])
@pytest.mark.parametrize("bias", ["constant", "input"])
@pytest.mark.parametrize("residual", [False, True])
def test_pointwise_accumulated_matches_onnxruntime(cin: int, cout: int, group: int, bias: str, residual: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """1x1 convs accumulate into an output holding the bias, or into their dying residual (blas.py).

    The residual is an intermediate (Sigmoid's output), so the Conv consumes
    it; both ways of adding the bias (ones row where the output has more
    channels than the input, one pass otherwise) are covered, per group.
    Without a residual, an expansion with a constant (folded) bias takes the
    bias as a ones row on its input in numpy's matmul instead: no accumulate.
    (The size below which outputs skip accumulating is lifted here.)
    """
    monkeypatch.setattr(conv_ops, "_ACCUMULATE_MIN_BYTES", 0)
    calls = []
    accumulate = conv_ops.blas.accumulate
    monkeypatch.setattr(conv_ops.blas, "accumulate", lambda *a: calls.append(1) or accumulate(*a))
    x, t = rand(2, cin, 6, 7), rand(2, cout, 6, 7)
    w, b = rand(cout, cin // group, 1, 1), rand(cout)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], group=group)]
    if residual:
        nodes = [helper.make_node("Sigmoid", ["t"], ["r"])] + nodes + [helper.make_node("Add", ["c", "r"], ["s"])]
    nodes.append(helper.make_node("Relu", ["s" if residual else "c"], ["y"]))
    feed = {"x": x, "t": t} if residual else {"x": x}
    inits = {"w": w, "b": b}
    if bias == "input":
        feed["b"] = inits.pop("b")
    ours, ref = run_both(make_model(nodes, feed, ["y"], initializers=inits), feed)
    assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    if not residual and bias == "constant" and cout > cin:
        assert not calls
    elif not (residual and strided_mode()):  # a strided Sigmoid input may give it a residual BLAS cannot hold
        assert len(calls) == 2 * group  # per image and group


@pytest.mark.parametrize("cin, cout", [(24, 8), (8, 8)])
@pytest.mark.parametrize("bias", ["constant", "input"])
@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced", "reversed"])
def test_small_pointwise_conv_skips_accumulate(cin: int, cout: int, bias: str, residual: bool, layout: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1x1 conv whose output stays in cache (up to _ACCUMULATE_MIN_BYTES) runs through numpy's matmul,
    then its bias and (a consumed, fused) residual in passes, not a BLAS accumulate, on any input layout."""
    calls = []
    accumulate = conv_ops.blas.accumulate
    monkeypatch.setattr(conv_ops.blas, "accumulate", lambda *a: calls.append(1) or accumulate(*a))
    x, t, w, b = rand(2, cin, 9, 11), rand(2, cout, 9, 11), rand(cout, cin, 1, 1), rand(cout)
    feed = {"x": x if layout == "contiguous" else _strided(x, layout)}
    inits = {"w": w, "b": b}
    if bias == "input":
        feed["b"] = inits.pop("b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"])]
    if residual:
        feed["t"] = t
        nodes = [helper.make_node("Sigmoid", ["t"], ["r"])] + nodes + [helper.make_node("Add", ["c", "r"], ["s"])]
    nodes.append(helper.make_node("Relu", ["s" if residual else "c"], ["y"]))
    ours, ref = run_both(make_model(nodes, {**feed, "x": x}, ["y"], initializers=inits), feed)
    assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    assert not calls


@pytest.mark.parametrize("cin, cout", [(16, 24), (24, 16)])
@pytest.mark.parametrize("group", [1, 2])
@pytest.mark.parametrize("residual", [False, True])
def test_pointwise_conv_of_a_transpose_matches_onnxruntime(cin: int, cout: int, group: int, residual: bool) -> None:
    """A 1x1 conv with bias whose input is a Transpose (NHWC -> NCHW): a view with the channels
    innermost, which BLAS takes as a column-major matrix per image and group (issue 9: it raised
    "rows must be contiguous").  With a residual Add (fused into the conv, which consumes it; with
    more output than input channels the bias comes in as a ones row on a copy of the input)."""
    x, t = rand(2, 5, 86, cin), rand(2, cout, 5, 86)
    w, b = rand(cout, cin // group, 1, 1), rand(cout)
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["xt", "w", "b"], ["c"], group=group)]
    if residual:
        nodes += [helper.make_node("Sigmoid", ["t"], ["r"]), helper.make_node("Add", ["c", "r"], ["s"])]
    nodes.append(helper.make_node("Relu", ["s" if residual else "c"], ["y"]))
    feed = {"x": x, "t": t} if residual else {"x": x}
    ours, ref = run_both(make_model(nodes, feed, ["y"], initializers={"w": w, "b": b}), feed)
    assert_close(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 3, 57, 61), (16, 3, 7, 7), dict(strides=[2, 2], pads=[3, 3, 3, 3])),  # a CNN stem
    ((2, 4, 23, 19), (6, 2, 5, 5), dict(strides=[2, 2], pads=[2, 1, 0, 2], group=2)),
    ((1, 3, 40, 36), (8, 3, 11, 11), dict(strides=[4, 4], pads=[2, 2, 2, 2])),  # AlexNet's
])
def test_phase_split_im2col_matches_onnxruntime(x_shape: tuple, w_shape: tuple, attrs: dict) -> None:
    """Strided convs with big kernels copy their columns from the stride phases of the input."""
    x, w, b = rand(*x_shape), rand(*w_shape), rand(w_shape[0])
    check_node("Conv", {"x": x}, initializers={"w": w, "b": b}, rtol=1e-4, atol=1e-4, **attrs)


def test_conv_float16_and_double() -> None:
    x, w = rand(1, 3, 8, 8), rand(4, 3, 3, 3)
    check_node("Conv", {"x": x.astype(np.float16)}, initializers={"w": w.astype(np.float16)}, rtol=1e-2,
               atol=1e-2, pads=[1, 1, 1, 1])
    ref = check_node("Conv", {"x": x, "w": w})[0]  # onnxruntime has no float64 Conv: compare with float32
    node = helper.make_node("Conv", ["x", "w"], ["y"])
    model = make_model([node], {"x": x.astype(np.float64), "w": w.astype(np.float64)}, ["y"])
    ours = webinfer.InferenceSession(model.SerializeToString()).run(None, {"x": x.astype(np.float64),
                                                                          "w": w.astype(np.float64)})[0]
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def _fused_conv_model(node: onnx.NodeProto, feed: dict[str, np.ndarray], inits: dict[str, np.ndarray]) -> bytes:
    model = make_model([node], feed, ["y"], initializers=inits)
    model.opset_import.append(helper.make_opsetid("webinfer", 1))
    return model.SerializeToString()


def _webinfer_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray, **attrs: object) -> np.ndarray:
    node = helper.make_node("FusedConv", ["x", "w", "b"], ["y"], domain="webinfer", pads=[1, 1, 1, 1], **attrs)
    model = _fused_conv_model(node, {"x": x}, {"w": w, "b": b})
    options = webinfer.SessionOptions(strict_shape_checks=True)
    return webinfer.InferenceSession(model, options).run(None, {"x": x})[0]


@pytest.mark.parametrize("attrs, fn", [
    (dict(activation="Relu"), lambda y: np.maximum(y, 0)),
    (dict(activation="Clip", activation_min=-0.5, activation_max=0.75), lambda y: np.clip(y, -0.5, 0.75)),
    (dict(activation="HardSigmoid", activation_alpha=0.3, activation_beta=0.4), lambda y: np.clip(0.3 * y + 0.4, 0, 1)),
    (dict(activation="Sigmoid"), lambda y: 1 / (1 + np.exp(-y))),
    (dict(activation="HardSwish"), lambda y: y * np.clip(y / 6 + 0.5, 0, 1)),
    (dict(activation="LeakyRelu", activation_alpha=0.1), lambda y: np.where(y >= 0, y, 0.1 * y)),
    (dict(activation="LeakyRelu"), lambda y: np.where(y >= 0, y, 0.01 * y)),  # the table's default alpha
    (dict(activation="Tanh"), np.tanh),
])
@pytest.mark.parametrize("group", [1, 4])
def test_fused_activation(attrs: dict, fn, group: int) -> None:
    x, w, b = rand(1, 4, 9, 9) * 3, rand(4, 4 // group, 3, 3), rand(4)
    ref = check_node("Conv", {"x": x}, initializers={"w": w, "b": b}, pads=[1, 1, 1, 1], group=group,
                     rtol=1e-4, atol=1e-4)[0]
    ours = _webinfer_conv(x, w, b, group=group, **attrs)
    np.testing.assert_allclose(ours, fn(ref.astype(np.float64)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((2, 16, 80, 64), (8, 16, 3, 3), dict(pads=[1, 1, 1, 1])),  # big enough for chunked im2col
    ((1, 6, 9, 9), (12, 6, 1, 1), {}),
    ((1, 6, 9, 9), (6, 1, 3, 3), dict(group=6, pads=[1, 1, 1, 1])),
    ((1, 6, 9, 9), (4, 3, 3, 3), dict(group=2, strides=[2, 2])),
    ((2, 32, 28, 28), (48, 32, 3, 3), dict(pads=[1, 1, 1, 1])),  # Winograd
    ((1, 16, 128, 128), (48, 16, 1, 1), {}),  # pointwise, in blocks
])
def test_fused_residual(x_shape: tuple, w_shape: tuple, attrs: dict) -> None:
    """webinfer.FusedConv(X, W, B, Z) with a Relu activation computes relu(conv + B + Z)."""
    x, w, b = rand(*x_shape), rand(*w_shape), rand(w_shape[0])
    ref = check_node("Conv", {"x": x}, initializers={"w": w, "b": b}, rtol=1e-4, atol=1e-4, **attrs)[0]
    z = rand(*ref.shape)
    node = helper.make_node("FusedConv", ["x", "w", "b", "z"], ["y"], domain="webinfer", activation="Relu", **attrs)
    model = _fused_conv_model(node, {"x": x, "z": z}, {"w": w, "b": b})
    options = webinfer.SessionOptions(strict_shape_checks=True)
    ours = webinfer.InferenceSession(model, options).run(None, {"x": x, "z": z})[0]
    np.testing.assert_allclose(ours, np.maximum(ref + z, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("inputs, attrs", [(["x", "w", "b", "z"], {}), (["x", "w", "b"], dict(activation="Relu"))])
def test_onnx_conv_refuses_the_fused_extras(inputs: list[str], attrs: dict) -> None:
    """The residual input and the activation are webinfer.FusedConv's: an ONNX Conv carrying them is an
    error naming the node, not a silently different result."""
    x, w, b = rand(1, 2, 5, 5), rand(3, 2, 3, 3), rand(3)
    node = helper.make_node("Conv", inputs, ["y"], name="conv_extra", **attrs)
    feed = {"x": x, "z": rand(1, 3, 3, 3)} if "z" in inputs else {"x": x}
    model = make_model([node], feed, ["y"], initializers={"w": w, "b": b})
    with pytest.raises(webinfer.errors.ShapeInferenceError, match="Conv node 'conv_extra'.*at most 3 inputs"):
        webinfer.InferenceSession(model.SerializeToString())


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 3, 4, 5), (3, 2, 3, 3), dict(strides=[2, 3], pads=[1, 0, 0, 1], output_padding=[1, 2])),
    ((2, 4, 3, 3), (4, 3, 2, 3), dict(group=2, dilations=[2, 1], strides=[2, 2])),
    ((1, 2, 5, 4), (2, 3, 3, 3), dict(strides=[2, 2], output_shape=[10, 9])),
    ((1, 2, 5, 4), (2, 3, 3, 3), dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    ((1, 2, 5, 4), (2, 3, 3, 3), dict(strides=[2, 2], auto_pad="SAME_LOWER")),
    ((1, 2, 7), (2, 2, 4), dict(strides=[3], pads=[1, 2])),
    # taps that cannot overlap: plain strided assignment
    ((2, 4, 5, 6), (4, 3, 2, 2), dict(strides=[2, 2])),
    ((1, 4, 5, 6), (4, 3, 2, 2), dict(strides=[3, 2], pads=[1, 0, 0, 1], output_padding=[2, 1])),
    ((1, 4, 5, 6), (4, 2, 2, 2), dict(strides=[3, 3], dilations=[2, 1], group=2)),
])
def test_conv_transpose_matches_onnxruntime(x_shape: tuple, w_shape: tuple, attrs: dict) -> None:
    x, w = rand(*x_shape), rand(*w_shape)
    b = rand(w_shape[1] * attrs.get("group", 1))
    check_node("ConvTranspose", {"x": x}, initializers={"w": w, "b": b}, rtol=1e-4, atol=1e-4, **attrs)
    check_node("ConvTranspose", {"x": x, "w": w}, rtol=1e-4, atol=1e-4, **attrs)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_conv_integer_matches_onnxruntime(dtype: type) -> None:
    info = np.iinfo(dtype)
    x = rng.integers(info.min, info.max, (1, 4, 7, 6)).astype(dtype)
    w = rng.integers(info.min, info.max, (6, 2, 3, 3)).astype(dtype)
    check_node("ConvInteger", {"x": x, "w": w, "xz": np.array(3, dtype)}, group=2, pads=[1, 1, 0, 1], opset=10)
    per_tensor = [check_node("ConvInteger", {"x": x, "w": w, "xz": np.array(3, dtype), "wz": np.array(m, dtype)},
                             group=2, strides=[2, 1], opset=10)[0] for m in range(6)]
    # onnxruntime lacks per-channel w_zero_point: channel m must match the per-tensor run with zero point m
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], group=2, strides=[2, 1])
    feed = {"x": x, "w": w, "xz": np.array(3, dtype), "wz": np.arange(6).astype(dtype)}
    ours = webinfer.InferenceSession(make_model([node], feed, ["y"], opset=10).SerializeToString()).run(None, feed)[0]
    np.testing.assert_array_equal(ours, np.stack([per_tensor[m][:, m] for m in range(6)], axis=1))


@pytest.mark.parametrize("attrs", [dict(pads=[1, 1, 1, 1]), dict(strides=[2, 1], dilations=[1, 2], group=2,
                                                                   offset_group=2)])
def test_deform_conv_matches_onnxruntime(attrs: dict) -> None:
    x, w = rand(1, 4, 7, 8), rand(6, 4 // attrs.get("group", 1), 3, 3)
    y = check_node("Conv", {"x": x, "w": w}, rtol=1e-4, atol=1e-4, **{k: v for k, v in attrs.items()
                                                                      if k != "offset_group"})[0]
    og = attrs.get("offset_group", 1)
    offset = rand(1, og * 18, *y.shape[2:]) * 2
    mask = rng.random((1, og * 9, *y.shape[2:])).astype(np.float32)
    check_node("DeformConv", {"x": x, "w": w, "offset": offset, "b": rand(6), "mask": mask}, opset=22,
               rtol=1e-4, atol=1e-4, **attrs)


def test_col2im_matches_onnxruntime() -> None:
    x = rand(2, 3 * 6, 12)
    check_node("Col2Im", {"x": x}, initializers={"img": np.array([7, 6]), "blk": np.array([2, 3])},
               strides=[2, 1], pads=[1, 0, 0, 1], dilations=[1, 2], opset=18)


def test_bad_conv_inputs_name_the_node() -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv_bad")
    model = make_model([node], {"x": rand(1, 3, 8, 8), "w": rand(4, 2, 3, 3)}, ["y"])
    with pytest.raises(webinfer.errors.ShapeInferenceError, match="Conv node 'conv_bad'.*3 channels"):
        webinfer.InferenceSession(model.SerializeToString())
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv_small", pads=[0, 0, 0, 0])
    model = make_model([node], {"x": rand(1, 3, 2, 8), "w": rand(4, 3, 3, 3)}, ["y"])
    with pytest.raises(webinfer.errors.ShapeInferenceError, match="Conv node 'conv_small'.*smaller than the kernel"):
        webinfer.InferenceSession(model.SerializeToString())
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv_pads", pads=[1, 1])
    model = make_model([node], {"x": rand(1, 3, 8, 8), "w": rand(4, 3, 3, 3)}, ["y"])
    with pytest.raises(webinfer.errors.ShapeInferenceError, match="Conv node 'conv_pads'.*pads \\[1, 1\\]"):
        webinfer.InferenceSession(model.SerializeToString())


def test_dynamic_spatial_dims_are_symbolic() -> None:
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, ["n", 3, "h", "w"])],
                              [helper.make_empty_tensor_value_info("y")],
                              [helper.make_tensor("w", 1, (4, 3, 3, 3), rand(4, 3, 3, 3).ravel())])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    sess = webinfer.InferenceSession(model.SerializeToString(), webinfer.SessionOptions(strict_shape_checks=True))
    assert sess.get_outputs()[0].shape == ["n", 4, "(h-1)/2+1", "(w-1)/2+1"]
    x = rand(1, 3, 9, 6)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], ref[0], rtol=1e-4, atol=1e-5)


def _strided(x: np.ndarray, how: str) -> np.ndarray:
    """`x`'s values in a non-contiguous layout: a transposed copy seen back, a slice, or reversed axes."""
    if how == "transposed":
        return np.ascontiguousarray(x.swapaxes(1, -1)).swapaxes(1, -1)
    if how == "sliced":
        wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1] + 1,), x.dtype)
        wide[..., 1::2] = x
        return wide[..., 1::2]
    return np.ascontiguousarray(x[:, ::-1, ..., ::-1])[:, ::-1, ..., ::-1]


@pytest.mark.parametrize("x_shape, w_shape, attrs", [
    ((1, 129, 4), (128, 129, 3), dict(pads=[1, 1])),  # a VAD encoder layer: 4 frames
    ((1, 64, 2), (64, 64, 3), dict(pads=[1, 1], strides=[2])),
    ((1, 1, 577), (66, 1, 64), dict(strides=[32])),  # an STFT as a strided Conv1d
    ((2, 6, 7), (8, 3, 3), dict(pads=[2, 0], dilations=[2], group=2)),
    ((1, 5, 7, 6), (4, 5, 3, 2), dict(pads=[1, 0, 1, 1], strides=[2, 1])),
    ((1, 4, 3, 4, 5), (6, 2, 2, 2, 3), dict(pads=[1, 0, 1, 0, 1, 1], group=2)),
    ((2, 96, 1, 1), (24, 96, 1, 1), {}),  # squeeze-excitation's 1x1 conv on a 1x1 map
    ((1, 128, 3), (1, 128, 1), {}),
])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced", "reversed"])
def test_small_conv_gathers_its_columns(x_shape: tuple, w_shape: tuple, attrs: dict, layout: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Small convs (column buffer under _GATHER_MAX_CELLS) take their columns in one gather; any input
    layout, groups, dilations, asymmetric pads, the bias folded as a ones row or given at run time.
    With constant weights the gather is prepared once per input shape (SmallConv)."""
    calls, prepared = [], []
    gather = conv_ops._gather_conv
    monkeypatch.setattr(conv_ops, "_gather_conv", lambda *a: calls.append(1) or gather(*a))
    small = conv_ops.SmallConv.__call__
    monkeypatch.setattr(conv_ops.SmallConv, "__call__", lambda self, x: prepared.append(1) or small(self, x))
    x, w, b = rand(*x_shape), rand(*w_shape), rand(w_shape[0])
    feed = {"x": x if layout == "contiguous" else _strided(x, layout)}
    moot = 1 in (x_shape[1], x_shape[-1])  # swapping a size-1 axis leaves the array contiguous
    assert feed["x"].flags.c_contiguous == (layout == "contiguous") or moot
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs), helper.make_node("Relu", ["c"], ["y"])]
    ours, ref = run_both(make_model(nodes, {"x": x}, ["y"], initializers={"w": w, "b": b}), feed)
    assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    assert prepared and not calls  # constant W and b: the prepared gather
    check_node("Conv", {"x": feed["x"], "w": w, "b": b}, rtol=1e-4, atol=1e-4, **attrs)
    assert len(calls) == 1  # W and b fed at run time: the gather engine


@pytest.mark.parametrize("x_shape, k, attrs", [
    ((1, 16, 112, 112), 3, dict(pads=[1, 1, 1, 1], strides=[2, 2])),  # MobileNetV3's first block: 4 column blocks
    ((2, 6, 13, 11), 5, dict(pads=[2, 1, 2, 2], strides=[2, 1], dilations=[1, 2])),
    ((1, 7, 9, 31), 3, dict(pads=[0, 2, 1, 0], strides=[1, 3])),  # uneven blocks: surplus columns cropped
    ((1, 5, 6, 7), 5, dict(auto_pad="SAME_UPPER")),
])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced", "reversed"])
@pytest.mark.parametrize("bias", ["constant", "input", "none"])
def test_depthwise_band_matches_onnxruntime(x_shape: tuple, k: int, attrs: dict, layout: str, bias: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """2-D depthwise convs up to _BAND_MAX_WIDTH wide run as banded matmuls over column blocks, on any input
    layout, with the bias packed (a ones column), given at run time, or absent, and a fused activation."""
    calls = []
    band = conv_ops._depthwise_band
    monkeypatch.setattr(conv_ops, "_depthwise_band", lambda *a: calls.append(1) or band(*a))
    _check_depthwise_hardswish(x_shape, k, attrs, layout, bias)
    assert calls


def _check_depthwise_hardswish(x_shape: tuple, k: int, attrs: dict, layout: str, bias: str) -> None:
    """A depthwise Conv + HardSwish on an input of `layout`, its bias a constant, a feed or absent, against
    onnxruntime (tolerance 1e-4: the engines sum the taps in another order)."""
    c = x_shape[1]
    x, w, b = rand(*x_shape), rand(c, 1, k, k), rand(c)
    feed = {"x": x if layout == "contiguous" else _strided(x, layout)}
    inits = {"w": w}
    names = ["x", "w"]
    if bias != "none":
        names.append("b")
        (inits if bias == "constant" else feed)["b"] = b
    nodes = [helper.make_node("Conv", names, ["c"], group=c, **attrs), helper.make_node("HardSwish", ["c"], ["y"])]
    ours, ref = run_both(make_model(nodes, {**feed, "x": x}, ["y"], initializers=inits), feed)
    assert_close(ours, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced", "reversed"])
def test_small_conv_with_constant_weight_and_fed_bias(layout: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A constant W with the bias fed at run time (so not folded into W) is not prepared: the bias counts."""
    prepared = []
    small = conv_ops.SmallConv.__call__
    monkeypatch.setattr(conv_ops.SmallConv, "__call__", lambda self, x: prepared.append(1) or small(self, x))
    x, w, b = rand(1, 9, 5), rand(6, 9, 3), rand(6)
    feed = {"x": _strided(x, layout), "b": b}
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 0])
    ours, ref = run_both(make_model([node], {"x": x, "b": b}, ["y"], initializers={"w": w}), feed)
    assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    assert not prepared
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 0])
    feed = {"x": _strided(x, layout)}
    ours, ref = run_both(make_model([node], {"x": x}, ["y"], initializers={"w": w}), feed)
    assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    assert prepared


@pytest.mark.parametrize("x_shape, k, attrs, einsum", [
    ((1, 576, 7, 7), 5, dict(pads=[2, 2, 2, 2]), True),  # MobileNetV3-small's last depthwise convs
    ((1, 288, 14, 14), 5, dict(pads=[2, 2, 2, 2], strides=[2, 2]), True),
    ((2, 256, 9, 13), 5, dict(pads=[2, 1, 0, 2], strides=[1, 3], dilations=[2, 1]), True),
    ((1, 300, 6, 5), 5, dict(auto_pad="SAME_UPPER"), True),
    ((1, 256, 7, 7), 3, dict(pads=[1, 1, 1, 1]), False),  # 3x3: too few taps, the band engine's
    ((1, 256, 14, 14), 5, dict(pads=[2, 2, 2, 2]), False),  # 196 output cells: the band engine's
])
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "sliced", "reversed"])
@pytest.mark.parametrize("bias", ["constant", "input", "none"])
def test_depthwise_einsum_matches_onnxruntime(x_shape: tuple, k: int, attrs: dict, einsum: bool, layout: str,
                                              bias: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """2-D depthwise convs with many channels and taps on small maps run as one einsum over a channels-last
    window view, on any input layout, with the bias packed, given at run time, or absent, and a fused
    activation; the others keep the band engine."""
    calls = []
    engine = conv_ops._depthwise_einsum
    monkeypatch.setattr(conv_ops, "_depthwise_einsum", lambda *a: calls.append(1) or engine(*a))
    _check_depthwise_hardswish(x_shape, k, attrs, layout, bias)
    assert bool(calls) == einsum
