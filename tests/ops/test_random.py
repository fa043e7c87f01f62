"""Random ops: seeding, distributions, dtypes; Dropout against onnxruntime and onnx's reference."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper
from onnx.reference import ReferenceEvaluator

import webinfer
from webinfer.errors import ShapeInferenceError

from .util import check_node, make_model

RNG = np.random.default_rng(5)


def _run(nodes: list, feeds: dict, outputs: list[str], opset: int = 22, seed: int | None = None) -> list:
    model = make_model(nodes, feeds, outputs, opset)
    options = webinfer.SessionOptions(strict_shape_checks=True, random_seed=seed)
    return webinfer.InferenceSession(model.SerializeToString(), options).run(None, feeds)


def test_seeded_generators_match_onnx_reference() -> None:
    nodes = [helper.make_node("RandomNormal", [], ["n"], shape=[3, 4], mean=1.0, scale=2.0, seed=3.0),
             helper.make_node("RandomUniform", [], ["u"], shape=[5], low=-1.0, high=4.0, seed=9.0)]
    model = make_model(nodes, {}, ["n", "u"], 22)
    ours = _run(nodes, {}, ["n", "u"])
    ref = ReferenceEvaluator(model).run(None, {})
    for a, b in zip(ours, ref):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_distributions_and_dtypes() -> None:
    x = np.zeros((200, 500), np.float16)
    nodes = [helper.make_node("RandomNormalLike", ["x"], ["n"], mean=3.0, scale=0.5),
             helper.make_node("RandomUniformLike", ["x"], ["u"], low=2.0, high=5.0, dtype=T.DOUBLE),
             helper.make_node("RandomNormal", [], ["b"], shape=[1000], dtype=T.BFLOAT16)]
    n, u, b = _run(nodes, {"x": x}, ["n", "u", "b"], seed=1)
    assert n.dtype == np.float16 and n.shape == x.shape and u.dtype == np.float64 and b.dtype.name == "bfloat16"
    assert abs(float(n.astype(np.float32).mean()) - 3.0) < 0.01 and abs(float(n.astype(np.float32).std()) - 0.5) < 0.01
    assert u.min() >= 2.0 and u.max() < 5.0 and abs(u.mean() - 3.5) < 0.02
    assert abs(float(b.astype(np.float32).std()) - 1.0) < 0.1


def test_session_seed_is_reproducible_and_per_node() -> None:
    nodes = [helper.make_node("RandomUniform", [], [name], shape=[16]) for name in ("a", "b")]
    a1, b1 = _run(nodes, {}, ["a", "b"], seed=42)
    a2, b2 = _run(nodes, {}, ["a", "b"], seed=42)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(b1, b2)
    assert not np.array_equal(a1, b1)


def test_bernoulli() -> None:
    p = RNG.random((100, 300)).astype(np.float32)
    (y,) = _run([helper.make_node("Bernoulli", ["p"], ["y"], dtype=T.INT32)], {"p": p}, ["y"], seed=0)
    assert y.dtype == np.int32 and set(np.unique(y)) <= {0, 1}
    assert abs(float((y - p).mean())) < 0.01


def test_multinomial_frequencies() -> None:
    logits = np.log(np.array([[0.1, 0.6, 0.3], [0.5, 0.0, 0.5]], np.float32) + 1e-30)
    (y,) = _run([helper.make_node("Multinomial", ["x"], ["y"], sample_size=20000, dtype=T.INT64)], {"x": logits},
                ["y"], seed=0)
    assert y.dtype == np.int64 and y.shape == (2, 20000)
    freq = np.stack([np.bincount(row, minlength=3) / row.size for row in y])
    np.testing.assert_allclose(freq, np.exp(logits), atol=0.015)


def test_dropout_inference_is_identity() -> None:
    x = RNG.standard_normal((3, 7)).astype(np.float32)
    check_node("Dropout", {"x": x}, n_outputs=2, opset=13, initializers={"r": np.float32(0.3)})
    check_node("Dropout", {"x": x}, n_outputs=1, opset=7, ratio=0.2)


def test_training_dropout_matches_onnx_reference() -> None:
    x = RNG.standard_normal((4, 5, 6)).astype(np.float32)
    node = helper.make_node("Dropout", ["x", "r", "t"], ["y", "mask"], seed=5)
    model = make_model([node], {"x": x}, ["y", "mask"], 13, {"r": np.float32(0.4), "t": np.array(True)})
    ours = webinfer.InferenceSession(model.SerializeToString(), webinfer.SessionOptions(strict_shape_checks=True)).run(
        None, {"x": x})
    ref = ReferenceEvaluator(model).run(None, {"x": x})
    np.testing.assert_array_equal(ours[1], ref[1])
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-6)
    assert 0.3 < 1 - ours[1].mean() < 0.5


def test_bad_dtype_names_node() -> None:
    node = helper.make_node("Multinomial", ["x"], ["y"], dtype=T.FLOAT, name="draw")
    model = make_model([node], {"x": np.zeros((1, 3), np.float32)}, ["y"], 22)
    with pytest.raises(ShapeInferenceError, match="Multinomial node 'draw'.*int32 or int64"):
        webinfer.InferenceSession(model.SerializeToString())
