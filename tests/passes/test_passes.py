"""Each graph pass on its own: the rewrite happens, and the numbers stay onnxruntime's."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import webinfer
from webinfer.loader import read_model
from webinfer.ops import REGISTRY
from webinfer.passes.cleanup import remove_dead, remove_identities
from webinfer.passes.fuse import fuse
from webinfer.passes.inline import inline_functions
from webinfer.shapes import infer_graph

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits=(), opset=17, functions=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)] +
                             [helper.make_opsetid(f.domain, 1) for f in functions], functions=list(functions))


def _ops_after_session(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in webinfer.InferenceSession(model.SerializeToString()).graph.nodes]


def _same_as_ort(model: onnx.ModelProto, feed: dict, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    data = model.SerializeToString()
    ours = webinfer.InferenceSession(data).run(None, feed)
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feed)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def _f(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(arr.astype(np.float32) if arr.dtype == np.float64 else arr, name)


def test_conv_batchnorm_relu_become_one_conv() -> None:
    c = 8
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-3),
             helper.make_node("Relu", ["n"], ["y"])]
    inits = [_init("w", RNG.standard_normal((c, 3, 3, 3))), _init("b", RNG.standard_normal(c)),
             _init("s", RNG.uniform(0.5, 1.5, c)), _init("bb", RNG.standard_normal(c)),
             _init("m", RNG.standard_normal(c)), _init("v", RNG.uniform(0.5, 1.5, c))]
    model = _model(nodes, [_f("x", [1, 3, 10, 10])], [_f("y", None)], inits)
    assert _ops_after_session(model) == ["FusedConv"]
    _same_as_ort(model, {"x": RNG.standard_normal((1, 3, 10, 10)).astype(np.float32)}, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("act", [
    helper.make_node("Clip", ["c", "lo", "hi"], ["y"]),
    helper.make_node("HardSigmoid", ["c"], ["y"], alpha=0.3, beta=0.4),
    helper.make_node("LeakyRelu", ["c"], ["y"], alpha=0.2),
    helper.make_node("Sigmoid", ["c"], ["y"]),
    helper.make_node("HardSwish", ["c"], ["y"]),
    helper.make_node("LeakyRelu", ["c"], ["y"]),  # alpha from the table's default
    helper.make_node("Tanh", ["c"], ["y"]),
    helper.make_node("Clip", ["c", "", "hi"], ["y"]),  # no min: the table's -inf
])
def test_conv_activation_fusion(act: onnx.NodeProto) -> None:
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], strides=[2, 2]), act]
    inits = [_init("w", RNG.standard_normal((4, 2, 3, 3))), _init("lo", np.array(-0.5)), _init("hi", np.array(0.7))]
    model = _model(nodes, [_f("x", [2, 2, 9, 9])], [_f("y", None)], inits)
    assert _ops_after_session(model) == ["FusedConv"]
    _same_as_ort(model, {"x": RNG.standard_normal((2, 2, 9, 9)).astype(np.float32)})


@pytest.mark.parametrize("act", [
    helper.make_node("Relu", ["c"], ["a"]),
    helper.make_node("LeakyRelu", ["c"], ["a"], alpha=0.2),
    helper.make_node("Clip", ["c", "lo", "hi"], ["a"]),
    helper.make_node("HardSigmoid", ["c"], ["a"], alpha=0.3, beta=0.4),
])
def test_activation_moves_after_max_pool(act: onnx.NodeProto) -> None:
    """Conv -> act -> MaxPool 3x3/2 (a CNN stem) runs as Conv -> MaxPool -> act: the same values, 4x fewer cells."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[2, 2], pads=[3, 3, 3, 3]), act,
             helper.make_node("MaxPool", ["a"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])]
    inits = [_init("w", RNG.standard_normal((8, 3, 7, 7))), _init("b", RNG.standard_normal(8)),
             _init("lo", np.array(-0.5)), _init("hi", np.array(0.7))]
    model = _model(nodes, [_f("x", [2, 3, 29, 31])], [_f("y", None)], inits)
    assert _ops_after_session(model) == ["Conv", "MaxPool", act.op_type]
    data = model.SerializeToString()
    x = RNG.standard_normal((2, 3, 29, 31)).astype(np.float32)
    ours = webinfer.InferenceSession(data).run(None, {"x": x})[0]
    ref = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool_attrs, outputs, extra", [
    (dict(ceil_mode=1), ["y"], []),  # the extra window may lie in the padding
    (dict(pads=[0, 0, 3, 3]), ["y"], []),  # all-padding windows
    (dict(), ["y", "idx"], []),  # Indices are positions of the activated tensor's maxima
    (dict(), ["y"], [helper.make_node("Neg", ["a"], ["z"])]),  # the activation's output is read elsewhere
])
def test_activation_stays_before_max_pool_where_it_could_differ(pool_attrs: dict, outputs: list, extra: list) -> None:
    attrs = dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]) | pool_attrs
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("MaxPool", ["a"], outputs, **attrs), *extra]
    outs = [_f("y", None)] + [_f(o, None) for o in [n.output[0] for n in extra]]
    if len(outputs) > 1:
        outs.append(helper.make_tensor_value_info("idx", TensorProto.INT64, None))
    model = _model(nodes, [_f("x", [1, 2, 8, 8])], outs)
    assert _ops_after_session(model)[:2] == ["Relu", "MaxPool"]
    x = RNG.standard_normal((1, 2, 8, 8)).astype(np.float32)
    if "pads" not in pool_attrs:  # onnxruntime rejects pads as big as the kernel
        _same_as_ort(model, {"x": x})


def _gelu_nodes(x: str, y: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    nodes = [helper.make_node("Div", [x, "sqrt2"], ["d"]), helper.make_node("Erf", ["d"], ["e"]),
             helper.make_node("Add", ["e", "one"], ["p"]), helper.make_node("Mul", [x, "p"], ["m"]),
             helper.make_node("Mul", ["m", "half"], [y])]
    inits = [_init("sqrt2", np.array(math.sqrt(2))), _init("one", np.array(1.0)), _init("half", np.array(0.5))]
    return nodes, inits


def test_matmul_bias_gelu_becomes_fused_matmul() -> None:
    gelu, gelu_inits = _gelu_nodes("a", "y")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["mm"]), helper.make_node("Add", ["bias", "mm"], ["a"]), *gelu]
    inits = [_init("w", RNG.standard_normal((16, 32))), _init("bias", RNG.standard_normal(32)), *gelu_inits]
    model = _model(nodes, [_f("x", ["b", 5, 16])], [_f("y", None)], inits)
    assert _ops_after_session(model) == ["FusedMatMul"]
    _same_as_ort(model, {"x": RNG.standard_normal((2, 5, 16)).astype(np.float32)})


def _attention_model(seq: int = 6, heads: int = 2, dim: int = 4) -> onnx.ModelProto:
    hidden = heads * dim
    shape4 = np.array([0, 0, heads, dim], np.int64)
    nodes = []
    for name, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        nodes += [helper.make_node("Reshape", [name, "shape4"], [f"{name}4"]),
                  helper.make_node("Transpose", [f"{name}4"], [f"{name}t"], perm=perm)]
    nodes += [helper.make_node("MatMul", ["qt", "kt"], ["s"]), helper.make_node("Div", ["s", "scale"], ["sd"]),
              helper.make_node("Add", ["sd", "mask"], ["sm"]), helper.make_node("Softmax", ["sm"], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "vt"], ["o"]),
              helper.make_node("Transpose", ["o"], ["ot"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["ot", "shape3"], ["y"])]
    inits = [_init("shape4", shape4), _init("shape3", np.array([0, 0, hidden], np.int64)),
             _init("scale", np.array(math.sqrt(dim)))]
    inputs = [_f(n, ["batch", seq, hidden]) for n in "qkv"] + [_f("mask", ["batch", 1, 1, seq])]
    return _model(nodes, inputs, [_f("y", None)], inits)


def test_attention_block_becomes_multi_head_attention() -> None:
    model = _attention_model()
    assert _ops_after_session(model) == ["MultiHeadAttention"]
    feed = {n: RNG.standard_normal((2, 6, 8)).astype(np.float32) for n in "qkv"}
    feed["mask"] = np.where(RNG.random((2, 1, 1, 6)) < 0.3, -1e4, 0).astype(np.float32)
    _same_as_ort(model, feed)


def test_fusion_skips_values_read_elsewhere() -> None:
    """A Conv output also read by another node must survive: no fusion."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"]),
             helper.make_node("Neg", ["c"], ["z"])]
    model = _model(nodes, [_f("x", [1, 1, 4, 4])], [_f("y", None), _f("z", None)],
                   [_init("w", RNG.standard_normal((1, 1, 1, 1)))])
    assert sorted(_ops_after_session(model)) == ["Conv", "Neg", "Relu"]


def test_static_shape_chain_folds_to_a_constant_reshape() -> None:
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "i0"], ["g"], axis=0),
             helper.make_node("Unsqueeze", ["g", "ax"], ["u"]), helper.make_node("Concat", ["u", "m1"], ["t"], axis=0),
             helper.make_node("Reshape", ["x", "t"], ["y"])]
    inits = [_init("i0", np.array(0, np.int64)), _init("ax", np.array([0], np.int64)),
             _init("m1", np.array([-1], np.int64))]
    model = _model(nodes, [_f("x", [3, 4, 5])], [_f("y", None)], inits)
    sess = webinfer.InferenceSession(model.SerializeToString())
    assert [n.op_type for n in sess.graph.nodes] == ["Reshape"]
    assert sess.get_outputs()[0].shape == [3, 20]
    _same_as_ort(model, {"x": RNG.standard_normal((3, 4, 5)).astype(np.float32)})


def test_cleanup_bypasses_identity_and_drops_dead_nodes() -> None:
    nodes = [helper.make_node("Identity", ["x"], ["i"]), helper.make_node("Relu", ["i"], ["y"]),
             helper.make_node("Neg", ["x"], ["unused"])]
    model = read_model(_model(nodes, [_f("x", [2])], [_f("y", [2])]).SerializeToString())
    graph = remove_dead(remove_identities(model.graph))
    assert [(n.op_type, n.inputs) for n in graph.nodes] == [("Relu", ["x"])]


def test_local_functions_are_inlined() -> None:
    fn = helper.make_function("custom", "Scaled", ["a"], ["b"],
                              [helper.make_node("Constant", [], ["k"], value_float=3.0),
                               helper.make_node("Mul", ["a", "k"], ["b"])],
                              [helper.make_opsetid("", 17)])
    node = helper.make_node("Scaled", ["x"], ["y"], domain="custom")
    model = _model([node], [_f("x", [4])], [_f("y", None)], functions=[fn])
    inlined = inline_functions(read_model(model.SerializeToString()))
    assert [n.op_type for n in inlined.graph.nodes] == ["Constant", "Mul"]
    x = RNG.standard_normal(4).astype(np.float32)
    np.testing.assert_allclose(webinfer.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0], x * 3)


def test_fuse_is_a_pure_graph_rewrite() -> None:
    """The pass alone, without a session: it returns the webinfer domain it uses, leaving the model's opsets
    as the file declared them."""
    model = read_model(_attention_model().SerializeToString())
    declared = dict(model.opsets)
    types = infer_graph(model.graph, model.opsets, REGISTRY)
    graph, added = fuse(model.graph, types)
    assert [n.op_type for n in graph.nodes] == ["MultiHeadAttention"]
    assert graph.nodes[0].attrs == {"num_heads": 2, "scale": pytest.approx(0.5)}
    assert added == {"webinfer": 1}
    assert model.opsets == declared
