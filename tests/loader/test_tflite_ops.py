"""Single-op .tflite files (tests/loader/tflite_files.py) on webinfer cpu against LiteRT's reference kernels.

Each case covers op forms the MediaPipe models do not (strides, dilation,
SAME/VALID, masks, coordinate modes, fused activations, quantised tensors).
Inputs are seeded random normals; float results agree to 1e-5 relative to
the output's largest magnitude (float32 rounding: LiteRT's reference kernels
and numpy sum in different orders), quantised ones to 1 step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import webinfer
from webinfer.errors import ModelLoadError, UnsupportedOpError

interpreter = pytest.importorskip("ai_edge_litert.interpreter",
                                  reason="ai-edge-litert is the reference (the test extra installs it)")
from tests.loader.tflite_files import Op, Quant, Spec, build, options  # noqa: E402

F32 = np.float32
SAME, VALID = 0, 1
RELU, RELU_N1_TO_1, RELU6 = 1, 2, 3


def run_both(data: bytes, feed: dict[str, np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    session = webinfer.InferenceSession(data)
    ours = session.run(None, feed)
    it = interpreter.Interpreter(model_content=data, num_threads=1,
                                 experimental_op_resolver_type=interpreter.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], feed[d["name"]])
    it.invoke()
    by_name = {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()}
    return ours, [by_name[o.name] for o in session.get_outputs()]


def check(spec: Spec, seed: int = 0, rtol: float = 1e-5) -> None:
    rng = np.random.default_rng(seed)
    feed = {name: rng.standard_normal(shape).astype(dtype) for name, (shape, dtype) in spec.inputs.items()}
    ours, ref = run_both(build(spec), feed)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and a.dtype == b.dtype
        scale = float(np.abs(b).max()) or 1.0
        np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


def weights(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(F32)


def one_op(name: str, x_shape: list[int], y_shape: list[int], consts: dict[str, np.ndarray] | None = None,
           opts: Any = None, extra_inputs: list[str] | None = None) -> Spec:
    consts = consts or {}
    return Spec({"x": (x_shape, F32)}, {"y": (y_shape, F32)},
                [Op(name, ["x", *(extra_inputs if extra_inputs is not None else consts)], ["y"], opts)], consts)


RNG = np.random.default_rng(7)


@pytest.mark.parametrize("padding,stride,dilation,act,out_hw", [
    (SAME, 1, 1, 0, (9, 9)), (SAME, 2, 1, RELU6, (5, 5)), (VALID, 2, 1, RELU, (4, 4)),
    (SAME, 1, 2, RELU_N1_TO_1, (9, 9)), (VALID, 1, 2, 0, (5, 5))])
def test_conv2d(padding: int, stride: int, dilation: int, act: int, out_hw: tuple[int, int]) -> None:
    consts = {"w": weights(RNG, 6, 3, 3, 4), "b": weights(RNG, 6)}
    opts = options("Conv2DOptions", padding=padding, strideW=stride, strideH=stride, fusedActivationFunction=act,
                   dilationWFactor=dilation, dilationHFactor=dilation)
    check(one_op("CONV_2D", [1, 9, 9, 4], [1, *out_hw, 6], consts, opts))


@pytest.mark.parametrize("padding,stride,dilation,multiplier", [(SAME, 1, 1, 1), (SAME, 2, 1, 2), (VALID, 1, 2, 1)])
def test_depthwise_conv2d(padding: int, stride: int, dilation: int, multiplier: int) -> None:
    consts = {"w": weights(RNG, 1, 3, 3, 4 * multiplier), "b": weights(RNG, 4 * multiplier)}
    span = (3 - 1) * dilation + 1
    out = -(-10 // stride) if padding == SAME else (10 - span) // stride + 1
    opts = options("DepthwiseConv2DOptions", padding=padding, strideW=stride, strideH=stride,
                   depthMultiplier=multiplier, fusedActivationFunction=RELU, dilationWFactor=dilation,
                   dilationHFactor=dilation)
    check(one_op("DEPTHWISE_CONV_2D", [1, 10, 10, 4], [1, out, out, 4 * multiplier], consts, opts))


@pytest.mark.parametrize("padding,out", [(SAME, 12), (VALID, 13)])
def test_transpose_conv(padding: int, out: int) -> None:
    consts = {"shape": np.array([1, out, out, 5], np.int32), "w": weights(RNG, 5, 3, 3, 4), "b": weights(RNG, 5)}
    spec = Spec({"x": ([1, 6, 6, 4], F32)}, {"y": ([1, out, out, 5], F32)},
                [Op("TRANSPOSE_CONV", ["shape", "w", "x", "b"], ["y"],
                    options("TransposeConvOptions", padding=padding, strideW=2, strideH=2))], consts)
    check(spec)


def test_fully_connected_keep_num_dims() -> None:
    consts = {"w": weights(RNG, 7, 5), "b": weights(RNG, 7)}
    opts = options("FullyConnectedOptions", fusedActivationFunction=RELU, keepNumDims=True)
    check(one_op("FULLY_CONNECTED", [2, 3, 5], [2, 3, 7], consts, opts))
    check(one_op("FULLY_CONNECTED", [2, 3, 5], [6, 7], consts, options("FullyConnectedOptions")))


@pytest.mark.parametrize("op", ["ADD", "MUL", "SUB"])
def test_binary_with_fused_activation(op: str) -> None:
    kind = {"ADD": "AddOptions", "MUL": "MulOptions", "SUB": "SubOptions"}[op]
    spec = Spec({"a": ([1, 4, 4, 3], F32), "b": ([1, 1, 4, 3], F32)}, {"y": ([1, 4, 4, 3], F32)},
                [Op(op, ["a", "b"], ["y"], options(kind, fusedActivationFunction=RELU6))])
    check(spec)


@pytest.mark.parametrize("op,padding,stride,out", [("MAX_POOL_2D", SAME, 2, 4), ("AVERAGE_POOL_2D", SAME, 2, 4),
                                                   ("AVERAGE_POOL_2D", VALID, 1, 5), ("MAX_POOL_2D", VALID, 2, 3)])
def test_pools(op: str, padding: int, stride: int, out: int) -> None:
    opts = options("Pool2DOptions", padding=padding, strideW=stride, strideH=stride, filterWidth=3, filterHeight=3)
    check(one_op(op, [1, 7, 7, 3], [1, out, out, 3], opts=opts))


@pytest.mark.parametrize("op,keep", [("MEAN", True), ("MEAN", False), ("SUM", False), ("REDUCE_MAX", True)])
def test_reductions(op: str, keep: bool) -> None:
    out = [1, 1, 1, 3] if keep else [1, 3]
    check(one_op(op, [1, 4, 5, 3], out, {"axes": np.array([1, 2], np.int32)},
                 options("ReducerOptions", keepDims=keep)))


@pytest.mark.parametrize("begin,end,strides,masks,out", [
    ([0, 1, 0, 0], [1, 5, 6, 2], [1, 2, 1, 1], {}, [1, 2, 6, 2]),
    ([0, 0, 4, 1], [0, 0, 0, 3], [1, 1, -1, 1], {"beginMask": 3, "endMask": 7}, [1, 6, 5, 2]),
    ([0, 2, 0, 0], [1, 3, 6, 3], [1, 1, 2, 1], {"shrinkAxisMask": 2}, [1, 3, 3]),
])
def test_strided_slice(begin: list[int], end: list[int], strides: list[int], masks: dict[str, int],
                       out: list[int]) -> None:
    consts = {"begin": np.array(begin, np.int32), "end": np.array(end, np.int32),
              "strides": np.array(strides, np.int32)}
    check(one_op("STRIDED_SLICE", [1, 6, 6, 3], out, consts, options("StridedSliceOptions", **masks)))


@pytest.mark.parametrize("op,align,half", [("RESIZE_BILINEAR", False, False), ("RESIZE_BILINEAR", True, False),
                                           ("RESIZE_BILINEAR", False, True), ("RESIZE_NEAREST_NEIGHBOR", False, False),
                                           ("RESIZE_NEAREST_NEIGHBOR", True, False),
                                           ("RESIZE_NEAREST_NEIGHBOR", False, True)])
def test_resize(op: str, align: bool, half: bool) -> None:
    kind = "ResizeBilinearOptions" if op == "RESIZE_BILINEAR" else "ResizeNearestNeighborOptions"
    opts = options(kind, alignCorners=align, halfPixelCenters=half)
    check(one_op(op, [1, 5, 7, 2], [1, 11, 9, 2], {"size": np.array([11, 9], np.int32)}, opts))


def test_depth_to_space_and_back() -> None:
    check(one_op("DEPTH_TO_SPACE", [1, 3, 4, 8], [1, 6, 8, 2], opts=options("DepthToSpaceOptions", blockSize=2)))
    check(one_op("SPACE_TO_DEPTH", [1, 6, 8, 2], [1, 3, 4, 8], opts=options("SpaceToDepthOptions", blockSize=2)))


@pytest.mark.parametrize("op", ["LOGISTIC", "HARD_SWISH", "RELU", "RELU6", "RELU_N1_TO_1", "TANH", "EXP"])
def test_activations(op: str) -> None:
    check(one_op(op, [1, 4, 4, 3], [1, 4, 4, 3]))


def test_prelu_leaky_relu_softmax() -> None:
    check(one_op("PRELU", [1, 4, 4, 3], [1, 4, 4, 3], {"alpha": weights(RNG, 1, 1, 3)}))
    check(one_op("LEAKY_RELU", [1, 4, 4, 3], [1, 4, 4, 3], opts=options("LeakyReluOptions", alpha=0.3)))
    check(one_op("SOFTMAX", [2, 3, 10], [2, 3, 10], opts=options("SoftmaxOptions", beta=0.7)))


def test_pad_concat_reshape_transpose() -> None:
    check(one_op("PAD", [1, 3, 3, 2], [1, 4, 6, 5], {"pads": np.array([[0, 0], [1, 0], [2, 1], [0, 3]], np.int32)}))
    check(one_op("PADV2", [1, 3, 3, 2], [1, 5, 3, 2], {"pads": np.array([[0, 0], [1, 1], [0, 0], [0, 0]], np.int32),
                                                        "value": np.array([1.5], F32)}))
    spec = Spec({"a": ([1, 3, 3, 2], F32), "b": ([1, 3, 3, 5], F32)}, {"y": ([1, 3, 3, 7], F32)},
                [Op("CONCATENATION", ["a", "b"], ["y"], options("ConcatenationOptions", axis=-1))])
    check(spec)
    check(one_op("RESHAPE", [1, 3, 4, 2], [1, 24], {"shape": np.array([1, -1], np.int32)}))
    check(one_op("TRANSPOSE", [2, 3, 4], [4, 2, 3], {"perm": np.array([2, 0, 1], np.int32)}))


def test_float16_weights_behind_dequantize() -> None:
    """MediaPipe's form: float16 weights, DEQUANTIZE to float32, then the conv (converted once at load)."""
    w16 = weights(RNG, 4, 3, 3, 2).astype(np.float16)
    spec = Spec({"x": ([1, 6, 6, 2], F32)}, {"y": ([1, 6, 6, 4], F32)},
                [Op("DEQUANTIZE", ["w16"], ["w"]),
                 Op("CONV_2D", ["x", "w", "b"], ["y"], options("Conv2DOptions", padding=SAME, strideW=1, strideH=1))],
                {"w16": w16, "b": weights(RNG, 4)}, intermediates={"w": ([4, 3, 3, 2], F32)})
    check(spec)
    model = webinfer.InferenceSession(build(spec))
    assert [i.name for i in model.get_inputs()] == ["x"]


def test_int8_per_channel_conv_and_quantize_ops() -> None:
    """QUANTIZE -> per-channel int8 CONV_2D -> int8 ADD -> int8 MAX_POOL -> DEQUANTIZE, each int8 op run
    as DequantizeLinear, the float op and QuantizeLinear: within 1 quantisation step of LiteRT."""
    rng = np.random.default_rng(3)
    w_scale = (np.abs(rng.standard_normal(4)) * 0.02 + 0.01).astype(F32)
    wq = rng.integers(-127, 128, (4, 3, 3, 2)).astype(np.int8)
    bias = rng.integers(-300, 300, 4).astype(np.int32)
    quant = {"xq": Quant([0.03], [5]), "wq": Quant(list(w_scale), [0] * 4, 0),
             "bq": Quant(list(w_scale * 0.03), [0] * 4, 0), "yq": Quant([0.05], [-3]),
             "sq": Quant([0.06], [2]), "pq": Quant([0.06], [2])}
    spec = Spec({"x": ([1, 6, 6, 2], F32)}, {"y": ([1, 3, 3, 4], F32)},
                [Op("QUANTIZE", ["x"], ["xq"]),
                 Op("CONV_2D", ["xq", "wq", "bq"], ["yq"], options("Conv2DOptions", padding=SAME, strideW=1,
                                                                    strideH=1, fusedActivationFunction=RELU)),
                 Op("ADD", ["yq", "yq"], ["sq"], options("AddOptions")),
                 Op("MAX_POOL_2D", ["sq"], ["pq"], options("Pool2DOptions", padding=SAME, strideW=2, strideH=2,
                                                            filterWidth=2, filterHeight=2)),
                 Op("DEQUANTIZE", ["pq"], ["y"])],
                {"wq": wq, "bq": bias},
                intermediates={"xq": ([1, 6, 6, 2], np.int8), "yq": ([1, 6, 6, 4], np.int8),
                               "sq": ([1, 6, 6, 4], np.int8), "pq": ([1, 3, 3, 4], np.int8)}, quant=quant)
    feed = {"x": rng.standard_normal((1, 6, 6, 2)).astype(F32)}
    ours, ref = run_both(build(spec), feed)
    np.testing.assert_allclose(ours[0], ref[0], rtol=0, atol=0.06 * 1.01)


def test_int8_graph_interface() -> None:
    """An int8-in, int8-out file reports and takes int8 tensors."""
    quant = {"x": Quant([0.1], [3]), "y": Quant([0.1], [3])}
    spec = Spec({"x": ([1, 4, 4, 3], np.int8)}, {"y": ([1, 4, 4, 3], np.int8)},
                [Op("RELU", ["x"], ["y"])], quant=quant)
    session = webinfer.InferenceSession(build(spec))
    assert session.get_inputs()[0].type == "tensor(int8)" and session.get_outputs()[0].type == "tensor(int8)"
    x = np.random.default_rng(0).integers(-128, 128, (1, 4, 4, 3)).astype(np.int8)
    ours, ref = run_both(build(spec), {"x": x})
    np.testing.assert_array_equal(ours[0], ref[0])


def test_convolution2d_transpose_bias_custom_op() -> None:
    """MediaPipe's custom op: options are (padding 1=SAME, stride_w, stride_h) as int32; same as TRANSPOSE_CONV
    with a bias, checked against the builtin op run by LiteRT."""
    import struct
    consts = {"w": weights(RNG, 5, 4, 4, 3), "b": weights(RNG, 5)}
    custom = Spec({"x": ([1, 5, 5, 3], F32)}, {"y": ([1, 10, 10, 5], F32)},
                  [Op("CUSTOM", ["x", "w", "b"], ["y"], custom="Convolution2DTransposeBias",
                      custom_options=struct.pack("<iii", 1, 2, 2))], consts)
    builtin = Spec({"x": ([1, 5, 5, 3], F32)}, {"y": ([1, 10, 10, 5], F32)},
                   [Op("TRANSPOSE_CONV", ["shape", "w", "x", "b"], ["y"],
                       options("TransposeConvOptions", padding=SAME, strideW=2, strideH=2))],
                   {"shape": np.array([1, 10, 10, 5], np.int32), **consts})
    x = np.random.default_rng(1).standard_normal((1, 5, 5, 3)).astype(F32)
    ours = webinfer.InferenceSession(build(custom)).run(None, {"x": x})[0]
    _, ref = run_both(build(builtin), {"x": x})
    np.testing.assert_allclose(ours, ref[0], rtol=0, atol=1e-5 * float(np.abs(ref[0]).max()))


def test_unknown_custom_op_raises_naming_it() -> None:
    spec = Spec({"x": ([1, 4], F32)}, {"y": ([1, 4], F32)}, [Op("CUSTOM", ["x"], ["y"], custom="MyFancyOp")])
    with pytest.raises(UnsupportedOpError, match="custom op 'MyFancyOp'"):
        webinfer.InferenceSession(build(spec))


def test_unsupported_builtin_raises_naming_it() -> None:
    spec = Spec({"x": ([4, 4], F32)}, {"y": ([4, 4], F32)}, [Op("MATRIX_DIAG", ["x"], ["y"])])
    with pytest.raises(UnsupportedOpError, match="MATRIX_DIAG.*output 'y'.*not supported.*FLOAT32\\[4, 4\\]"):
        webinfer.InferenceSession(build(spec))


def test_too_few_inputs_is_a_load_error() -> None:
    spec = Spec({"x": ([1, 4, 4, 2], F32)}, {"y": ([1, 4, 4, 2], F32)}, [Op("ADD", ["x"], ["y"])])
    with pytest.raises(ModelLoadError, match="ADD.*too few inputs"):
        webinfer.InferenceSession(build(spec))


def test_detected_by_content_not_extension(tmp_path: Any) -> None:
    data = build(one_op("RELU", [1, 4], [1, 4]))
    path = tmp_path / "model.onnx"  # the wrong extension on purpose
    path.write_bytes(data)
    session = webinfer.InferenceSession(str(path))
    x = np.array([[-1, 2, -3, 4]], F32)
    np.testing.assert_array_equal(session.run(None, {"x": x})[0], np.maximum(x, 0))


def test_cli_info_reads_tflite(tmp_path: Any, capsys: Any) -> None:
    """`webinfer info` describes a .tflite file: its own NHWC interface and the ONNX ops it maps onto."""
    import json

    from webinfer.cli import main
    consts = {"w": weights(RNG, 6, 3, 3, 4), "b": weights(RNG, 6)}
    path = tmp_path / "conv.tflite"
    path.write_bytes(build(one_op("CONV_2D", [1, 9, 9, 4], [1, 9, 9, 6], consts,
                                  options("Conv2DOptions", padding=SAME, strideW=1, strideH=1,
                                          fusedActivationFunction=RELU))))
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["inputs"][0]["shape"] == [1, 9, 9, 4] and info["outputs"][0]["shape"] == [1, 9, 9, 6]
    assert info["op_histogram"] == {"Transpose": 2, "Conv": 1, "Relu": 1}
    assert info["parameters"] == 6 * 3 * 3 * 4 + 6


def test_more_mobile_ops() -> None:
    """Ops of mobile classification/detection models beyond MediaPipe's set."""
    check(one_op("SQUEEZE", [1, 4, 1, 3], [4, 3], opts=options("SqueezeOptions", squeezeDims=[0, 2])))
    check(one_op("EXPAND_DIMS", [4, 3], [4, 1, 3], {"axis": np.array([1], np.int32)}))
    check(one_op("SLICE", [3, 5, 4], [2, 3, 4], {"begin": np.array([1, 2, 0], np.int32),
                                                 "size": np.array([-1, 3, -1], np.int32)}))
    check(one_op("GATHER", [5, 4], [3, 4], {"idx": np.array([4, 0, 2], np.int32)}, options("GatherOptions", axis=0)))
    check(one_op("ABS", [2, 3], [2, 3]))
    check(one_op("MAXIMUM", [2, 3, 4], [2, 3, 4], {"m": np.float32([0.1, -0.2, 0.3, 0.0])}))
    check(one_op("DIV", [2, 3, 4], [2, 3, 4], {"d": np.float32([1.5, -2.0, 3.0, 0.5])}, options("DivOptions")))
    check(one_op("SQUARED_DIFFERENCE", [2, 3, 4], [2, 3, 4], {"m": np.float32([0.1, -0.2, 0.3, 0.0])}))
    spec = Spec({"a": ([2, 3], F32), "b": ([2, 3], F32)}, {"y": ([2, 2, 3], F32)},
                [Op("PACK", ["a", "b"], ["y"], options("PackOptions", valuesCount=2, axis=1))])
    check(spec)
    argmax = Spec({"x": ([2, 5], F32)}, {"y": ([2], np.int32)},
                  [Op("ARG_MAX", ["x", "axis"], ["y"], options("ArgMaxOptions", outputType=2))],
                  {"axis": np.array([1], np.int32)})
    check(argmax)


def test_rsqrt_on_positive_inputs() -> None:
    spec = Spec({"x": ([2, 3], F32)}, {"y": ([2, 3], F32)},
                [Op("ABS", ["x"], ["p"]), Op("RSQRT", ["p"], ["y"])], intermediates={"p": ([2, 3], F32)})
    check(spec)


def test_int8_fully_connected_and_average_pool() -> None:
    """QUANTIZE -> int8 AVERAGE_POOL_2D -> RESHAPE -> per-channel int8 FULLY_CONNECTED -> DEQUANTIZE:
    within 2 quantisation steps of LiteRT's integer kernels.  LiteRT's int8 average rounds half away
    from zero, QuantizeLinear half to even: a pooled value may differ by 1 step, which the 12-input
    product can carry to 2 output steps (measured: 2)."""
    rng = np.random.default_rng(4)
    w_scale = (np.abs(rng.standard_normal(5)) * 0.01 + 0.005).astype(F32)
    quant = {"xq": Quant([0.02], [-4]), "pq": Quant([0.02], [-4]), "rq": Quant([0.02], [-4]),
             "wq": Quant(list(w_scale), [0] * 5, 0), "bq": Quant(list(w_scale * 0.02), [0] * 5, 0),
             "yq": Quant([0.04], [7])}
    spec = Spec({"x": ([1, 4, 4, 3], F32)}, {"y": ([1, 5], F32)},
                [Op("QUANTIZE", ["x"], ["xq"]),
                 Op("AVERAGE_POOL_2D", ["xq"], ["pq"], options("Pool2DOptions", padding=VALID, strideW=2, strideH=2,
                                                               filterWidth=2, filterHeight=2)),
                 Op("RESHAPE", ["pq", "shape"], ["rq"]),
                 Op("FULLY_CONNECTED", ["rq", "wq", "bq"], ["yq"], options("FullyConnectedOptions")),
                 Op("DEQUANTIZE", ["yq"], ["y"])],
                {"shape": np.array([1, 12], np.int32), "wq": rng.integers(-127, 128, (5, 12)).astype(np.int8),
                 "bq": rng.integers(-200, 200, 5).astype(np.int32)},
                intermediates={"xq": ([1, 4, 4, 3], np.int8), "pq": ([1, 2, 2, 3], np.int8),
                               "rq": ([1, 12], np.int8), "yq": ([1, 5], np.int8)}, quant=quant)
    feed = {"x": rng.standard_normal((1, 4, 4, 3)).astype(F32)}
    ours, ref = run_both(build(spec), feed)
    np.testing.assert_allclose(ours[0], ref[0], rtol=0, atol=2 * 0.04 * 1.01)


def test_interface_keeps_names_that_helper_values_would_take() -> None:
    """Tensors named like the constants the loader adds ('pads', 'shape') keep their names."""
    spec = Spec({"shape": ([1, 3, 3, 2], F32)}, {"pads": ([1, 36], F32)},
                [Op("PAD", ["shape", "p"], ["padded"]), Op("RESHAPE", ["padded", "s"], ["pads"])],
                {"p": np.array([[0, 0], [0, 0], [1, 2], [0, 0]], np.int32), "s": np.array([1, 36], np.int32)},
                intermediates={"padded": ([1, 3, 6, 2], F32)})
    session = webinfer.InferenceSession(build(spec))
    assert [i.name for i in session.get_inputs()] == ["shape"]
    assert [o.name for o in session.get_outputs()] == ["pads"]
    check(spec)


@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
def test_whole_image_pool_is_a_reduction(op: str) -> None:
    """A pool whose one window is the whole image (squeeze-excite) loads as ReduceMean/ReduceMax."""
    opts = options("Pool2DOptions", padding=VALID, strideW=6, strideH=5, filterWidth=6, filterHeight=5,
                   fusedActivationFunction=RELU)
    spec = one_op(op, [1, 5, 6, 3], [1, 1, 1, 3], opts=opts)
    check(spec)
    graph = webinfer.InferenceSession(build(spec)).graph
    assert {n.op_type for n in graph.nodes} & {"AveragePool", "MaxPool"} == set()
