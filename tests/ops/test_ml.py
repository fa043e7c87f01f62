"""The ai.onnx.ml ops against onnxruntime."""

from __future__ import annotations

import math

from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import webinfer
from tests.ops.util import assert_close, run_both

rng = np.random.default_rng(0)


def ml_model(node: onnx.NodeProto, inputs: dict[str, np.ndarray], ml_opset: int = 5) -> onnx.ModelProto:
    ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
           for n, a in inputs.items()]
    outs = [helper.make_empty_tensor_value_info(o) for o in node.output]
    graph = helper.make_graph([node], "test", ins, outs)
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 21),
                                                                  helper.make_opsetid("ai.onnx.ml", ml_opset)])


def check_ml(op_type: str, inputs: dict[str, np.ndarray], ml_opset: int = 5, n_out: int = 1,
             **attrs: Any) -> list[np.ndarray]:
    node = helper.make_node(op_type, list(inputs), [f"y{i}" for i in range(n_out)], domain="ai.onnx.ml", **attrs)
    ours, ref = run_both(ml_model(node, inputs, ml_opset), inputs)
    for a, b in zip(ours, ref):
        if b.dtype == object:
            assert a.dtype == object and a.shape == b.shape and a.tolist() == b.tolist()
        else:
            assert_close([a], [b], rtol=1e-5, atol=1e-5)
    return ours


def test_binarizer() -> None:
    check_ml("Binarizer", {"x": rng.standard_normal((4, 5)).astype(np.float32)}, threshold=0.3)


@pytest.mark.parametrize("x_shape, idx", [((3, 4), [0, 3, 1]), ((2, 3, 5), [[4, 0]]), ((6,), [5, 2])])
def test_array_feature_extractor(x_shape: tuple[int, ...], idx: list) -> None:
    x = rng.standard_normal(x_shape).astype(np.float32)
    check_ml("ArrayFeatureExtractor", {"x": x, "i": np.array(idx, dtype=np.int64)})


@pytest.mark.parametrize("ml_opset, attrs, x", [
    (2, {"keys_strings": ["a", "b", "c"], "values_int64s": [5, 6, 7], "default_int64": -9},
     np.array(["a", "z", "c", "b", "a"], dtype=object)),
    (2, {"keys_int64s": [3, 1, 3], "values_strings": ["x", "y", "z"]}, np.array([[3, 1], [0, 2]], dtype=np.int64)),
    (2, {"keys_floats": [0.5, 2.0, -1.0], "values_floats": [1.0, 2.0, 3.0], "default_float": 7.0},
     np.array([0.5, np.nan, -1.0, 4.0], dtype=np.float32)),
    (4, {"keys_floats": [0.5, np.nan], "values_floats": [1.0, 2.0]}, np.array([0.5, np.nan, 3.0], dtype=np.float32)),
    (4, {"keys_tensor": numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "k"),
         "values_tensor": numpy_helper.from_array(np.array([1.5, 2.5]), "v"),
         "default_tensor": numpy_helper.from_array(np.array([-3.0]), "d")},
     np.array([2, 0, 1], dtype=np.int64)),
    (4, {"keys_strings": ["a", "b"], "values_tensor": numpy_helper.from_array(np.array([10, 20], np.int16), "v")},
     np.array(["b", "c", "a"], dtype=object)),
])
def test_label_encoder(ml_opset: int, attrs: dict[str, Any], x: np.ndarray) -> None:
    check_ml("LabelEncoder", {"x": x}, ml_opset=ml_opset, **attrs)


def test_label_encoder_opset4_last_repeated_key_wins() -> None:
    """Opset 4's spec: the last of repeated keys wins (onnxruntime keeps the first, as opset 2 does)."""
    node = helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml", keys_int64s=[3, 1, 3],
                            values_strings=["x", "y", "z"])
    feed = {"x": np.array([3, 1, 0], dtype=np.int64)}
    out = webinfer.InferenceSession(ml_model(node, feed, 4).SerializeToString()).run(None, feed)[0]
    assert out.tolist() == ["z", "y", "_Unused"]


def test_label_encoder_opset1_both_directions() -> None:
    classes = ["cat", "dog", "eel"]
    check_ml("LabelEncoder", {"x": np.array(["dog", "fox", "cat"], dtype=object)}, ml_opset=1,
             classes_strings=classes, default_int64=-5)
    check_ml("LabelEncoder", {"x": np.array([2, 7, 0, -1], dtype=np.int64)}, ml_opset=1,
             classes_strings=classes, default_string="?")


def random_forest(n_trees: int, depth: int, n_features: int, n_targets: int, dtype: type,
                  member: bool) -> dict[str, Any]:
    """TreeEnsemble attributes for full binary trees of `depth` with random splits and modes."""
    feats, modes, splits, t_ids, f_ids, t_leaf, f_leaf, roots, members = [], [], [], [], [], [], [], [], []
    n_leaves = 0
    for _ in range(n_trees):
        roots.append(len(feats))
        base = len(feats)
        n_inner = 2 ** depth - 1
        for k in range(n_inner):
            mode = int(rng.integers(0, 7 if member else 6))
            feats.append(int(rng.integers(0, n_features)))
            modes.append(mode)
            splits.append(float(rng.standard_normal()) if mode not in (4, 5) else 0.0)
            if mode == 6:
                members += [0.0, float(rng.integers(-2, 3)), np.nan]
            for child, ids, leafs in ((2 * k + 1, t_ids, t_leaf), (2 * k + 2, f_ids, f_leaf)):
                if child < n_inner:
                    ids.append(base + child)
                    leafs.append(0)
                else:
                    ids.append(n_leaves)
                    leafs.append(1)
                    n_leaves += 1
    attrs = dict(
        tree_roots=roots, nodes_featureids=feats, nodes_truenodeids=t_ids, nodes_falsenodeids=f_ids,
        nodes_trueleafs=t_leaf, nodes_falseleafs=f_leaf, n_targets=n_targets,
        nodes_modes=numpy_helper.from_array(np.array(modes, dtype=np.uint8), "modes"),
        nodes_splits=numpy_helper.from_array(np.array(splits, dtype=dtype), "splits"),
        leaf_targetids=rng.integers(0, n_targets, n_leaves).tolist(),
        leaf_weights=numpy_helper.from_array(rng.standard_normal(n_leaves).astype(dtype), "weights"),
        nodes_missing_value_tracks_true=rng.integers(0, 2, len(feats)).tolist(),
    )
    if members:
        attrs["membership_values"] = numpy_helper.from_array(np.array(members, dtype=dtype), "members")
    return attrs


@pytest.mark.parametrize("aggregate", [0, 1, 2, 3])
@pytest.mark.parametrize("post", [0, 3])
def test_tree_ensemble(aggregate: int, post: int) -> None:
    attrs = random_forest(5, 3, 4, 3, np.float32, member=False)
    x = rng.standard_normal((20, 4)).astype(np.float32)
    x[x > 1.5] = np.nan
    x[::7, 1] = 0.0
    check_ml("TreeEnsemble", {"x": x}, aggregate_function=aggregate, post_transform=post, **attrs)


def test_tree_ensemble_softmax_and_logistic() -> None:
    """post_transform 1 is SOFTMAX and 2 LOGISTIC in the spec; onnxruntime swaps them, so
    these compare with the untransformed scores instead."""
    attrs = random_forest(4, 3, 4, 3, np.float32, member=False)
    x = rng.standard_normal((10, 4)).astype(np.float32)
    raw = check_ml("TreeEnsemble", {"x": x}, **attrs)[0].astype(np.float64)
    outs = {}
    for post in (1, 2):
        node = helper.make_node("TreeEnsemble", ["x"], ["y"], domain="ai.onnx.ml", post_transform=post, **attrs)
        outs[post] = webinfer.InferenceSession(ml_model(node, {"x": x}).SerializeToString()).run(None, {"x": x})[0]
    e = np.exp(raw - raw.max(axis=1, keepdims=True))
    np.testing.assert_allclose(outs[1], e / e.sum(axis=1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(outs[2], 1 / (1 + np.exp(-raw)), rtol=1e-5)


def _exact_probit(p: float) -> float:
    """The standard normal quantile by bisection on math.erf (NaN outside (0, 1))."""
    if not 0 < p < 1:
        return math.inf if p == 1 else -math.inf if p == 0 else math.nan
    lo, hi = -40.0, 40.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < p else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("aggregate", [0, 1, 2, 3])
def test_tree_ensemble_probit_is_exact(aggregate: int) -> None:
    """post_transform 4 (PROBIT) is the exact normal quantile of the scores; onnxruntime evaluates
    Winitzki's approximation in float32 (off by up to 2e-3), so the raw scores are compared with it
    and the transform with the exact quantile."""
    attrs = random_forest(5, 3, 4, 3, np.float32, member=False)
    x = rng.standard_normal((20, 4)).astype(np.float32)
    x[x > 1.5] = np.nan
    raw = check_ml("TreeEnsemble", {"x": x}, aggregate_function=aggregate, **attrs)[0]
    node = helper.make_node("TreeEnsemble", ["x"], ["y"], domain="ai.onnx.ml", aggregate_function=aggregate,
                            post_transform=4, **attrs)
    probit = webinfer.InferenceSession(ml_model(node, {"x": x}).SerializeToString()).run(None, {"x": x})[0]
    expected = np.vectorize(_exact_probit)(raw.astype(np.float64))
    np.testing.assert_allclose(probit, expected, rtol=1e-5, atol=1e-6)


def test_tree_ensemble_membership_double() -> None:
    attrs = random_forest(3, 4, 3, 2, np.float64, member=True)
    x = rng.integers(-2, 3, (30, 3)).astype(np.float64)
    check_ml("TreeEnsemble", {"x": x}, **attrs)


def test_tree_ensemble_bad_root_names_node() -> None:
    attrs = random_forest(1, 2, 2, 1, np.float32, member=False)
    attrs["tree_roots"] = [99]
    x = rng.standard_normal((2, 2)).astype(np.float32)
    node = helper.make_node("TreeEnsemble", ["x"], ["y"], domain="ai.onnx.ml", name="forest", **attrs)
    with pytest.raises(webinfer.ShapeInferenceError, match=r"TreeEnsemble node 'forest'.*tree_roots \[99\]"):
        webinfer.InferenceSession(ml_model(node, {"x": x}).SerializeToString())


def test_array_feature_extractor_bad_index_names_node() -> None:
    node = helper.make_node("ArrayFeatureExtractor", ["x", "i"], ["y"], domain="ai.onnx.ml", name="pick")
    feed = {"x": rng.standard_normal((2, 3)).astype(np.float32), "i": np.array([1, 3], dtype=np.int64)}
    sess = webinfer.InferenceSession(ml_model(node, feed).SerializeToString())
    with pytest.raises(webinfer.NodeExecutionError, match=r"ArrayFeatureExtractor node 'pick'.*out of range"):
        sess.run(None, feed)


def test_label_encoder_key_type_mismatch_names_node() -> None:
    node = helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml", name="enc",
                            keys_strings=["a"], values_int64s=[1])
    model = ml_model(node, {"x": np.array([1, 2], dtype=np.int64)}, ml_opset=2)
    with pytest.raises(webinfer.ShapeInferenceError, match=r"LabelEncoder node 'enc'.*int64 but the keys are string"):
        webinfer.InferenceSession(model.SerializeToString())


def test_label_encoder_string_output_type() -> None:
    node = helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml", keys_int64s=[1], values_strings=["a"])
    sess = webinfer.InferenceSession(ml_model(node, {"x": np.array([1], np.int64)}, 2).SerializeToString())
    assert sess.get_outputs()[0].type == "tensor(string)"
    assert TensorProto.STRING == 8
