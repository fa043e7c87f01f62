"""Hostile models found by fuzzing (issue 9): each fails with a documented error,
fast and without exhausting memory, or loads and runs within bounds."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import webinfer
from tests.fuzz.mutate import _if_graph, msg
from webinfer.errors import ModelLoadError


def _model(nodes: list, inputs: list, outputs: list, inits: list = (), opset: int = 18) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _vi(name: str, shape: list | None, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _peak(fn: object) -> int:
    """Peak bytes Python and numpy allocate while calling `fn`."""
    tracemalloc.start()
    try:
        fn()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_symbolic_dims_stop_doubling() -> None:
    # Shape values added to themselves: each node doubled the dim expression ("n+n", ...),
    # 60 nodes asked for 2**60 characters.  Past MAX_SYMBOL_LEN a dim becomes unknown.
    nodes = [helper.make_node("Shape", ["x"], ["s0"])]
    nodes += [helper.make_node("Add" if i % 2 else "Mul", [f"s{i}", f"s{i}"], [f"s{i + 1}"]) for i in range(60)]
    nodes.append(helper.make_node("ConstantOfShape", ["s60"], ["y"]))
    data = _model(nodes, [_vi("x", ["n", "m"])], [_vi("y", None)])
    sessions = []
    assert _peak(lambda: sessions.append(webinfer.InferenceSession(data))) < 16 << 20
    (y,) = sessions[0].run(None, {"x": np.zeros((0, 0), np.float32)})
    assert y.shape == (0, 0)


def test_constant_of_shape_past_the_fold_cap_is_not_computed_at_load() -> None:
    # 65536 x 65536 float32 is 16 GiB: folding used to compute it before checking the 64 MiB cap
    data = _model([helper.make_node("ConstantOfShape", ["s"], ["y"])], [], [_vi("y", None)],
                  [helper.make_tensor("s", TensorProto.INT64, [2], [65536, 65536])])
    assert len(data) < 101
    t0 = time.perf_counter()
    sessions = []
    assert _peak(lambda: sessions.append(webinfer.InferenceSession(data))) < 1 << 20
    assert time.perf_counter() - t0 < 1.0
    assert [n.op_type for n in sessions[0].graph.nodes] == ["ConstantOfShape"]


@pytest.mark.parametrize("nodes,inputs,inits,name", [
    ([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])], ["x"], [], "y"),
    ([helper.make_node("Relu", ["x"], ["x"]), helper.make_node("Neg", ["x"], ["y"])], ["x"], [], "x"),
    ([helper.make_node("Relu", ["x"], ["w"]), helper.make_node("Add", ["x", "w"], ["y"])], ["x"],
     [helper.make_tensor("w", TensorProto.FLOAT, [2], [1, 2])], "w"),
])
def test_duplicate_definitions_are_refused_like_onnxruntime(nodes: list, inputs: list, inits: list,
                                                            name: str) -> None:
    data = _model(nodes, [_vi(i, [2]) for i in inputs], [_vi("y", [2])], inits)
    with pytest.raises(Exception, match=f"Duplicate definition of name \\({name}\\)"):
        ort.InferenceSession(data)
    with pytest.raises(ModelLoadError, match=f"output '{name}' is already defined by .*duplicate definition"):
        webinfer.InferenceSession(data)


def test_missing_required_input_is_refused_before_fusion() -> None:
    # MatMul + Add(bias) with MatMul's second input left out crashed the fusion pass (IndexError)
    data = _model([helper.make_node("MatMul", ["x"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])],
                  [_vi("x", [2, 2])], [_vi("y", None)], [helper.make_tensor("b", TensorProto.FLOAT, [2], [1, 2])])
    with pytest.raises(ModelLoadError, match=r"MatMul node 'm': MatMul \(opset 18\) requires input\(s\) \[1\]; the node has \['x'\]"):
        webinfer.InferenceSession(data)
    with pytest.raises(ModelLoadError, match=r"Reshape \(opset 18\) requires input\(s\) \[1\]; the node has \['x', '\(missing\)'\]"):
        webinfer.InferenceSession(_model([helper.make_node("Reshape", ["x", ""], ["y"])],
                                         [_vi("x", [2])], [_vi("y", None)]))


@pytest.mark.parametrize("op,attr,value,expected,inputs", [
    ("Softmax", "axis", 1.5, "attribute 'axis' must be int, got float 1.5", 1),
    ("Transpose", "perm", "0,1", "attribute 'perm' must be ints, got string '0,1'", 1),
    ("LeakyRelu", "alpha", [0.1, 0.2], "attribute 'alpha' must be float, got floats", 1),
    ("Concat", "axis", [0], "attribute 'axis' must be int, got ints [0]", 2),
])
def test_attribute_of_the_wrong_kind_names_node_attribute_and_kinds(op: str, attr: str, value: object,
                                                                    expected: str, inputs: int) -> None:
    names = ["x", "x2"][:inputs]
    node = helper.make_node(op, names, ["y"], name="n", **{attr: value})
    data = _model([node], [_vi(n, [2, 2]) for n in names], [_vi("y", None)])
    with pytest.raises(ModelLoadError, match=re.escape(f"{op} node 'n': {expected}")):
        webinfer.InferenceSession(data)


def test_old_cast_takes_its_string_to() -> None:
    # Cast-1 declared `to` a string: kinds are checked against every version of the op
    node = helper.make_node("Cast", ["x"], ["y"], to="INT32")
    data = _model([node], [_vi("x", [2])], [_vi("y", None, TensorProto.INT32)], opset=1)
    (y,) = webinfer.InferenceSession(data).run(None, {"x": np.array([1.7, -2.2], np.float32)})
    assert y.tolist() == [1, -2]


def test_deep_if_nesting_is_refused_with_a_clear_error() -> None:
    cond = msg((1, "c"), (2, msg((1, msg((1, TensorProto.BOOL), (2, b""))))))

    def model(depth: int) -> bytes:
        return msg((1, 8), (7, _if_graph(depth) + msg((11, cond))), (8, msg((2, 18))))

    with pytest.raises(ModelLoadError, match="nested more than 100 deep"):
        webinfer.InferenceSession(model(2000))
    (y,) = webinfer.InferenceSession(model(5)).run(None, {"c": np.array(True)})
    assert y == 1.0


def test_unknown_element_type_in_a_declaration() -> None:
    data = _model([helper.make_node("Identity", ["x"], ["y"])], [_vi("x", [2], elem=99)], [_vi("y", None)])
    with pytest.raises(ModelLoadError, match="value 'x': unknown ONNX element type 99"):
        webinfer.InferenceSession(data)


def test_lrn_with_a_huge_window_runs_at_once() -> None:
    # size 2**63-1 looped over every tap; taps beyond the channel count add nothing
    x = np.random.default_rng(0).random((1, 5, 3, 3), dtype=np.float32)

    def lrn(size: int, alpha: float) -> np.ndarray:
        node = helper.make_node("LRN", ["x"], ["y"], size=size, alpha=alpha)
        sess = webinfer.InferenceSession(_model([node], [_vi("x", [1, 5, 3, 3])], [_vi("y", None)]))
        return sess.run(None, {"x": x})[0]

    t0 = time.perf_counter()
    huge = lrn(2**63 - 1, 1e-4 * (2**63 - 1) / 11)
    assert time.perf_counter() - t0 < 1.0
    np.testing.assert_allclose(huge, lrn(11, 1e-4), rtol=1e-5)
    with pytest.raises(webinfer.WebinferError, match="LRN node 'y': size must be positive, got 0"):
        lrn(0, 1e-4)


def test_schema_table_is_generated_from_the_installed_onnx() -> None:
    tool = Path(__file__).resolve().parent.parent / "tools" / "onnx_schemas.py"
    assert subprocess.run([sys.executable, str(tool), "--check"]).returncode == 0


def test_average_pool_with_a_huge_kernel_only_visits_taps_inside_the_input() -> None:
    # 2**31 - 1 taps with SAME_UPPER padding looped over every tap (a hang)
    node = helper.make_node("AveragePool", ["x"], ["y"], auto_pad="SAME_UPPER", kernel_shape=[2**31 - 1, 3],
                            strides=[2**32, 10**9])
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    sess = webinfer.InferenceSession(_model([node], [_vi("x", [1, 1, 5, 5])], [_vi("y", None)]))
    t0 = time.perf_counter()
    (y,) = sess.run(None, {"x": x})
    assert time.perf_counter() - t0 < 1.0
    np.testing.assert_allclose(y, x[..., :, 0:3].mean(axis=(2, 3), keepdims=True))


def test_shape_input_declared_longer_than_any_rank() -> None:
    # rules built a tuple of that many unknown dims: [2**40] asked for 8 TiB
    data = _model([helper.make_node("Reshape", ["x", "s"], ["y"])],
                  [_vi("x", [2]), _vi("s", [2**40], TensorProto.INT64)], [_vi("y", None)])
    with pytest.raises(webinfer.ShapeInferenceError,
                       match="input 1 \\(s\\) has 1099511627776 elements, but it lists dims or axes"):
        webinfer.InferenceSession(data)


def test_split_of_an_optional_input_has_no_tensor_element_type() -> None:
    # the optional's inner TensorType was taken for an element type (KeyError in cpu._is_exotic)
    opt = helper.make_value_info("o", helper.make_optional_type_proto(
        helper.make_tensor_type_proto(TensorProto.FLOAT, [4])))
    data = _model([helper.make_node("Split", ["o"], ["y"], num_outputs=1)], [opt], [_vi("y", None)])
    assert [o.name for o in webinfer.InferenceSession(data).get_outputs()] == ["y"]


def test_tfidf_with_huge_gram_length_and_skip_runs_at_once() -> None:
    # max_gram_length built that many trie levels at load; max_skip_count looped that many skips per run
    def tfidf(max_n: int, max_skip: int) -> np.ndarray:
        node = helper.make_node("TfIdfVectorizer", ["x"], ["y"], mode="TF", min_gram_length=1,
                                max_gram_length=max_n, max_skip_count=max_skip, ngram_counts=[0, 2],
                                ngram_indexes=[0, 1, 2], pool_int64s=[2, 3, 2, 3])
        sess = webinfer.InferenceSession(_model([node], [_vi("x", [6], TensorProto.INT64)], [_vi("y", None)],
                                                opset=9))
        return sess.run(None, {"x": np.array([2, 3, 5, 2, 7, 3], np.int64)})[0]

    t0 = time.perf_counter()
    huge = tfidf(2**62, 2**62)
    assert time.perf_counter() - t0 < 1.0
    np.testing.assert_array_equal(huge, tfidf(2, 5))


def test_random_op_with_a_nan_seed() -> None:
    node = helper.make_node("Bernoulli", ["x"], ["y"], seed=float("nan"))
    data = _model([node], [_vi("x", [2])], [_vi("y", None)])
    with pytest.raises(webinfer.ShapeInferenceError, match="Bernoulli node 'y': attribute 'seed' must be a finite"):
        webinfer.InferenceSession(data)


def test_tfidf_with_negative_ngram_counts() -> None:
    # a start of -2**62 walked the pool from there, one n-gram at a time (a hang)
    node = helper.make_node("TfIdfVectorizer", ["x"], ["y"], mode="TF", min_gram_length=2, max_gram_length=2,
                            max_skip_count=0, ngram_counts=[-(2**62), 0], ngram_indexes=[0, 1],
                            pool_int64s=[2, 3, 5, 4])
    data = _model([node], [_vi("x", [6], TensorProto.INT64)], [_vi("y", None)], opset=9)
    with pytest.raises(webinfer.ShapeInferenceError, match="ngram_counts .* do not split the pool"):
        webinfer.InferenceSession(data)
