"""Sequence and optional ops against onnxruntime on random data."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import webinfer
from webinfer.errors import NodeExecutionError, ShapeInferenceError

from .util import assert_close, make_model, run_both

RNG = np.random.default_rng(11)
F = TensorProto.FLOAT


def _rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def test_construct_insert_erase_at_length() -> None:
    n = helper.make_node
    nodes = [
        n("SequenceConstruct", ["a", "b"], ["s1"]),
        n("SequenceInsert", ["s1", "c", "pos"], ["s2"]),
        n("SequenceInsert", ["s2", "a"], ["s3"]),
        n("SequenceErase", ["s3", "neg"], ["s4"]),
        n("SequenceAt", ["s4", "neg"], ["last"]),
        n("SequenceLength", ["s4"], ["len"]),
        n("ConcatFromSequence", ["s4"], ["cat"], axis=1),
        n("ConcatFromSequence", ["s2"], ["stacked"], axis=-1, new_axis=1),
    ]
    ins = {"a": _rand(2, 3), "b": _rand(2, 3), "c": _rand(2, 3), "pos": np.array(1, dtype=np.int64),
           "neg": np.array(-2, dtype=np.int32)}
    assert_close(*run_both(make_model(nodes, ins, ["last", "len", "cat", "stacked"]), ins))


@pytest.mark.parametrize("split, attrs", [
    (None, {"axis": 1, "keepdims": 0}),
    (None, {"axis": -2}),
    (np.array(2, dtype=np.int64), {"axis": 1}),
    (np.array([1, 3, 1], dtype=np.int64), {"axis": 1}),
])
def test_split_to_sequence_round_trip(split: np.ndarray | None, attrs: dict) -> None:
    ins = {"x": _rand(3, 5)}
    if split is not None:
        ins["split"] = split
    nodes = [helper.make_node("SplitToSequence", list(ins), ["seq"], **attrs),
             helper.make_node("SequenceLength", ["seq"], ["n"]),
             helper.make_node("SequenceAt", ["seq", "i"], ["first"]),
             helper.make_node("ConcatFromSequence", ["seq"], ["back"], axis=attrs["axis"],
                              new_axis=0 if attrs.get("keepdims", 1) else 1)]
    model = make_model(nodes, ins, ["n", "first", "back"], initializers={"i": np.array(0, dtype=np.int64)})
    assert_close(*run_both(model, ins))


def test_sequence_map_two_sequences_and_a_tensor() -> None:
    body = helper.make_graph(
        [helper.make_node("Mul", ["p", "q"], ["pq"]), helper.make_node("Add", ["pq", "t"], ["o"]),
         helper.make_node("Shape", ["p"], ["shp"])],
        "body", [helper.make_tensor_value_info(k, F, None) for k in ("p", "q", "t")],
        [helper.make_tensor_value_info("o", F, None), helper.make_tensor_value_info("shp", TensorProto.INT64, [2])])
    n = helper.make_node
    nodes = [n("SplitToSequence", ["x", "sizes"], ["sx"], axis=0), n("SplitToSequence", ["y", "sizes"], ["sy"], axis=0),
             n("SequenceMap", ["sx", "sy", "t"], ["so", "shapes"], body=body),
             n("ConcatFromSequence", ["so"], ["out"], axis=0),
             n("ConcatFromSequence", ["shapes"], ["all_shapes"], axis=0, new_axis=1)]
    ins = {"x": _rand(5, 3), "y": _rand(5, 3), "t": _rand(3), "sizes": np.array([2, 3], dtype=np.int64)}
    assert_close(*run_both(make_model(nodes, ins, ["out", "all_shapes"], opset=18), ins))


def test_optional_wrap_and_unwrap() -> None:
    n = helper.make_node
    nodes = [n("Optional", ["x"], ["opt"]), n("OptionalHasElement", ["opt"], ["has"]),
             n("OptionalGetElement", ["opt"], ["x2"]), n("Neg", ["x2"], ["y"]),
             n("Optional", [], ["none"], type=helper.make_tensor_type_proto(F, [2])),
             n("OptionalHasElement", ["none"], ["has_none"])]
    ins = {"x": _rand(2, 2)}
    assert_close(*run_both(make_model(nodes, ins, ["has", "y", "has_none"], opset=18), ins))


def test_sequence_at_out_of_range_is_a_clear_error() -> None:
    nodes = [helper.make_node("SequenceConstruct", ["a", "a"], ["s"]),
             helper.make_node("SequenceAt", ["s", "i"], ["o"], name="at")]
    ins = {"a": _rand(2), "i": np.array(5, dtype=np.int64)}
    sess = webinfer.InferenceSession(make_model(nodes, ins, ["o"]).SerializeToString())
    with pytest.raises(NodeExecutionError, match=r"SequenceAt node 'at'.*position 5 is out of range .* length 2"):
        sess.run(None, ins)


def test_concat_axis_out_of_range_is_a_clear_error() -> None:
    nodes = [helper.make_node("SequenceConstruct", ["a", "a"], ["s"]),
             helper.make_node("ConcatFromSequence", ["s"], ["o"], axis=2, name="cat")]
    ins = {"a": _rand(2, 3)}
    with pytest.raises(ShapeInferenceError, match=r"ConcatFromSequence node 'cat': axis 2 is out of range .*\[2,3\]"):
        webinfer.InferenceSession(make_model(nodes, ins, ["o"]).SerializeToString())
