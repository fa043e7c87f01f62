"""If, Loop and Scan against onnxruntime on random data."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import webinfer
from webinfer.errors import ShapeInferenceError

from .util import assert_close, check_node, make_model, run_both

RNG = np.random.default_rng(3)
F = TensorProto.FLOAT


def _graph(nodes: list, name: str, ins: list, outs: list):
    return helper.make_graph(nodes, name, ins, outs)


def _vi(name: str, elem: int = F, shape: list | None = None):
    return helper.make_tensor_value_info(name, elem, shape)


@pytest.mark.parametrize("cond", [True, False])
def test_if_branches_capture_outer_values(cond: bool) -> None:
    then_g = _graph([helper.make_node("Add", ["x", "y"], ["t"])], "then", [], [_vi("t", F, [3, 4])])
    else_g = _graph([helper.make_node("Mul", ["x", "y"], ["e"]), helper.make_node("Relu", ["e"], ["e2"])], "else",
                    [], [_vi("e2", F, [3, 4])])
    ins = {"c": np.array(cond), "x": RNG.standard_normal((3, 4)).astype(np.float32),
           "y": RNG.standard_normal((3, 4)).astype(np.float32)}
    node = helper.make_node("If", ["c"], ["out"], then_branch=then_g, else_branch=else_g)
    model = make_model([node], ins, ["out"])
    assert_close(*run_both(model, ins))


def test_loop_carried_value_grows_and_scan_outputs_stack() -> None:
    """A carried tensor that gains a row per iteration: the body must be typed for every iteration."""
    body = _graph([
        helper.make_node("Concat", ["acc_in", "row"], ["acc_out"], axis=0),
        helper.make_node("Add", ["s_in", "row"], ["s_out"]),
        helper.make_node("Mul", ["s_out", "row"], ["scan"]),
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
    ], "body", [_vi("i", TensorProto.INT64, []), _vi("cond_in", TensorProto.BOOL, []), _vi("acc_in"),
                _vi("s_in")], [_vi("cond_out", TensorProto.BOOL), _vi("acc_out"), _vi("s_out"), _vi("scan")])
    ins = {"m": np.array(4, dtype=np.int64), "cond": np.array(True),
           "acc": RNG.standard_normal((1, 3)).astype(np.float32),
           "s": RNG.standard_normal((1, 3)).astype(np.float32), "row": RNG.standard_normal((1, 3)).astype(np.float32)}
    node = helper.make_node("Loop", ["m", "cond", "acc", "s"], ["acc_f", "s_f", "scans"], body=body)
    model = make_model([node], ins, ["acc_f", "s_f", "scans"], opset=16)
    ours, ref = run_both(model, ins)
    assert ours[0].shape == (5, 3) and ours[2].shape == (4, 1, 3)
    assert_close(ours, ref)


def test_loop_for_without_condition_carries_a_sequence() -> None:
    """Only M given; the carried value is a sequence that gains a tensor per iteration (opset 13)."""
    body = _graph([
        helper.make_node("Cast", ["i"], ["fi"], to=F),
        helper.make_node("Mul", ["x", "fi"], ["xi"]),
        helper.make_node("SequenceInsert", ["seq_in", "xi"], ["seq_out"]),
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
    ], "body", [_vi("i", TensorProto.INT64, []), _vi("cond_in", TensorProto.BOOL, []),
                helper.make_tensor_sequence_value_info("seq_in", F, None)],
        [_vi("cond_out", TensorProto.BOOL, []), helper.make_tensor_sequence_value_info("seq_out", F, None)])
    ins = {"m": np.array(3, dtype=np.int64), "x": RNG.standard_normal((2, 2)).astype(np.float32)}
    nodes = [helper.make_node("SequenceEmpty", [], ["empty"], dtype=F),
             helper.make_node("Loop", ["m", "", "empty"], ["seq"], body=body),
             helper.make_node("ConcatFromSequence", ["seq"], ["out"], axis=0, new_axis=1)]
    assert_close(*run_both(make_model(nodes, ins, ["out"], opset=13), ins))


def test_loop_while_condition_without_trip_count() -> None:
    """No M: runs until the body's condition turns false (here, the running product exceeds 50)."""
    limit = helper.make_tensor("limit", F, [], [50.0])
    body = _graph([
        helper.make_node("Mul", ["x_in", "k"], ["x_out"]),
        helper.make_node("ReduceSum", ["x_out"], ["total"], keepdims=0),
        helper.make_node("Constant", [], ["lim"], value=limit),
        helper.make_node("Less", ["total", "lim"], ["cond_out"]),
    ], "body", [_vi("i", TensorProto.INT64, []), _vi("c", TensorProto.BOOL, []), _vi("x_in", F, [2])],
        [_vi("cond_out", TensorProto.BOOL, []), _vi("x_out", F, [2])])
    ins = {"cond": np.array(True), "x": RNG.uniform(0.5, 1.0, 2).astype(np.float32),
           "k": RNG.uniform(1.5, 2.0, 2).astype(np.float32)}
    node = helper.make_node("Loop", ["", "cond", "x"], ["x_f"], body=body)
    model = make_model([node], ins, ["x_f"], opset=13)
    assert_close(*run_both(model, ins))


def test_scan9_axes_and_directions() -> None:
    body = _graph([
        helper.make_node("Add", ["st", "a"], ["st2"]),
        helper.make_node("Mul", ["st2", "b"], ["o1"]),
        helper.make_node("Sub", ["a", "b"], ["o2"]),
    ], "body", [_vi("st", F, [2]), _vi("a", F, [2]), _vi("b", F, [2])],
        [_vi("st2", F, [2]), _vi("o1", F, [2]), _vi("o2", F, [2])])
    ins = {"s0": RNG.standard_normal(2).astype(np.float32), "xa": RNG.standard_normal((2, 5)).astype(np.float32),
           "xb": RNG.standard_normal((5, 2)).astype(np.float32)}
    check_node("Scan", ins, n_outputs=3, opset=16, body=body, num_scan_inputs=2, scan_input_axes=[1, 0],
               scan_input_directions=[1, 0], scan_output_axes=[-1, 0], scan_output_directions=[0, 1])


def test_scan8_batch_and_sequence_lens() -> None:
    body = _graph([helper.make_node("Add", ["st", "x"], ["st2"]), helper.make_node("Identity", ["st2"], ["o"])],
                  "body", [_vi("st", F, [3]), _vi("x", F, [3])], [_vi("st2", F, [3]), _vi("o", F, [3])])
    ins = {"lens": np.array([4, 2], dtype=np.int64), "s0": RNG.standard_normal((2, 3)).astype(np.float32),
           "x": RNG.standard_normal((2, 4, 3)).astype(np.float32)}
    check_node("Scan", ins, n_outputs=2, opset=8, body=body, num_scan_inputs=1, directions=[1])


def test_if_branches_with_different_output_counts_is_a_clear_error() -> None:
    then_g = _graph([helper.make_node("Neg", ["x"], ["t"])], "then", [], [_vi("t")])
    else_g = _graph([helper.make_node("Neg", ["x"], ["e"]), helper.make_node("Abs", ["x"], ["e2"])], "else", [],
                    [_vi("e"), _vi("e2")])
    ins = {"c": np.array(True), "x": RNG.standard_normal(3).astype(np.float32)}
    model = make_model([helper.make_node("If", ["c"], ["o"], then_branch=then_g, else_branch=else_g, name="if1")],
                       ins, ["o"])
    with pytest.raises(ShapeInferenceError, match="If node 'if1': then_branch has 1 outputs and else_branch 2"):
        webinfer.InferenceSession(model.SerializeToString())


def test_scan_with_too_few_inputs_is_a_clear_error() -> None:
    body = _graph([helper.make_node("Identity", ["a"], ["b"])], "body", [_vi("a", F, [2])], [_vi("b", F, [2])])
    ins = {"x": RNG.standard_normal((3, 2)).astype(np.float32)}
    model = make_model([helper.make_node("Scan", ["x"], ["y"], body=body, num_scan_inputs=2, name="sc")], ins,
                       ["y"], opset=16)
    with pytest.raises(ShapeInferenceError, match="Scan node 'sc': num_scan_inputs=2 does not fit its 1 inputs"):
        webinfer.InferenceSession(model.SerializeToString())


@pytest.mark.parametrize("cond", [True, False])
def test_if_branches_are_optimized_like_the_main_graph(cond: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A branch run once per call (silero VAD's `if sr == 16000` holds the whole network) is folded and
    fused like the main graph: its Constant/Unsqueeze-of-constant steps and the Shape arithmetic on
    static dims are gone from the compiled branch, and the results are unchanged."""
    from webinfer.plan import Planner

    compiled = []
    compile_subgraph = Planner.compile_subgraph
    monkeypatch.setattr(Planner, "compile_subgraph",
                        lambda self, *a: compiled.append(compile_subgraph(self, *a)) or compiled[-1])
    i64 = TensorProto.INT64
    then_g = _graph([
        helper.make_node("Constant", [], ["ax"], value=helper.make_tensor("axv", i64, [], [0])),
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("zv", i64, [1], [0])),
        helper.make_node("Unsqueeze", ["ax", "zero"], ["ax1"]),
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "ax1"], ["rows"]),
        helper.make_node("Constant", [], ["two"], value=helper.make_tensor("twov", i64, [1], [2])),
        helper.make_node("Concat", ["rows", "two"], ["target2"], axis=0),
        helper.make_node("Reshape", ["x", "target2"], ["r"]),
        helper.make_node("Relu", ["r"], ["t"]),
    ], "then", [], [_vi("t", F, [3, 2])])
    else_g = _graph([helper.make_node("Sigmoid", ["x"], ["e"]),
                     helper.make_node("Flatten", ["e"], ["e2"], axis=1)], "else", [], [_vi("e2", F, [3, 2])])
    x = RNG.standard_normal((3, 1, 2)).astype(np.float32)
    strided = np.ascontiguousarray(x.transpose(2, 1, 0)).transpose(2, 1, 0)[:, :, ::-1]
    for feed_x in (x, strided):
        ins = {"c": np.array(cond), "x": feed_x}
        node = helper.make_node("If", ["c"], ["out"], then_branch=then_g, else_branch=else_g)
        assert_close(*run_both(make_model([node], {"c": ins["c"], "x": x}, ["out"]), ins))
    then_ops = [s.node.op_type for s in compiled[0].plan.steps]
    assert then_ops == ["Reshape", "Relu"] or then_ops == ["Relu"], then_ops
    assert [n.op_type for n in then_g.node][0] == "Constant"  # the model's own graph is left as it was


@pytest.mark.parametrize("cond", [True, False])
def test_branches_take_outer_constants_as_their_own(cond: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """An outer initializer a branch reads (silero VAD's LSTM weights, read inside its `if sr`) becomes
    the branch's own constant: the kernel is built knowing it (weights prepared once) instead of
    receiving it on every call, and the Unsqueeze of it folds away.  An initializer the caller may
    override (listed as a graph input) stays a captured value."""
    from onnx import numpy_helper
    from webinfer.plan import Planner

    compiled = []
    compile_subgraph = Planner.compile_subgraph
    monkeypatch.setattr(Planner, "compile_subgraph",
                        lambda self, *a: compiled.append(compile_subgraph(self, *a)) or compiled[-1])
    i64 = TensorProto.INT64
    w = RNG.standard_normal((4, 5)).astype(np.float32)
    b = RNG.standard_normal((5,)).astype(np.float32)
    then_g = _graph([
        helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("zv", i64, [1], [0])),
        helper.make_node("Unsqueeze", ["w", "zero"], ["w3"]),
        helper.make_node("MatMul", ["x", "w3"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["t"]),
    ], "then", [], [_vi("t", F, [1, 3, 5])])
    else_g = _graph([helper.make_node("MatMul", ["x", "w"], ["e"])], "else", [], [_vi("e", F, [3, 5])])
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    ins = {"c": np.array(cond), "x": x}
    node = helper.make_node("If", ["c"], ["out"], then_branch=then_g, else_branch=else_g)
    graph = helper.make_graph([node], "g", [_vi("c", TensorProto.BOOL, []), _vi("x", F, [3, 4]), _vi("b", F, [5])],
                              [_vi("out", F, None)], [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    import onnxruntime as ort
    ours = webinfer.InferenceSession(model.SerializeToString()).run(None, ins)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, ins)
    assert_close(ours, ref)
    then_plan = compiled[0]
    assert "w" not in then_plan.captured and "b" in then_plan.captured
    assert [s.node.op_type for s in then_plan.plan.steps if s.node.op_type != "Identity"] in (
        ["MatMul", "Add"], ["FusedMatMul"], ["MatMul"]), [s.node.op_type for s in then_plan.plan.steps]
