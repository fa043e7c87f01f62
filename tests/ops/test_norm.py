"""Normalization ops against onnxruntime on random data."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import webinfer
from webinfer.errors import WebinferError
from webinfer.ops import norm as norm_ops

from .util import LAYOUTS, check_node, load_node, make_model, strided

RNG = np.random.default_rng(5)


def rand(*shape: int, dtype: type = np.float32) -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


def bn_params(c: int, dtype: type = np.float32) -> dict[str, np.ndarray]:
    return {"s": rand(c, dtype=dtype), "b": rand(c, dtype=dtype), "m": rand(c, dtype=dtype),
            "v": (RNG.random(c) + 0.5).astype(dtype)}


@pytest.mark.parametrize("opset", [7, 9, 14, 15])
def test_batchnorm_inference(opset: int) -> None:
    check_node("BatchNormalization", {"x": rand(2, 4, 5, 6)}, opset=opset, initializers=bn_params(4),
               epsilon=1e-3, rtol=1e-4, atol=1e-5)
    # parameters fed at run time (not folded at load), rank 2 and rank 3 inputs
    check_node("BatchNormalization", {"x": rand(3, 4)} | bn_params(4), opset=opset, rtol=1e-4, atol=1e-5)
    check_node("BatchNormalization", {"x": rand(2, 4, 7)} | bn_params(4), opset=opset, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype, tol", [(np.float16, 1e-2), (np.float64, 1e-7)])
def test_batchnorm_other_floats(dtype: type, tol: float) -> None:
    check_node("BatchNormalization", {"x": rand(2, 3, 4, 5, dtype=dtype)}, opset=15,
               initializers=bn_params(3, dtype), rtol=tol, atol=tol)


def test_batchnorm_training_mode_returns_running_stats() -> None:
    check_node("BatchNormalization", {"x": rand(3, 4, 5, 2)}, n_outputs=3, opset=15, initializers=bn_params(4),
               training_mode=1, momentum=0.7, rtol=1e-4, atol=1e-5)


def test_instance_normalization() -> None:
    check_node("InstanceNormalization", {"x": rand(2, 4, 5, 6), "s": rand(4), "b": rand(4)}, epsilon=1e-3,
               rtol=1e-4, atol=1e-5)
    check_node("InstanceNormalization", {"x": rand(2, 3, 9), "s": rand(3), "b": rand(3)}, rtol=1e-4, atol=1e-5)
    check_node("InstanceNormalization", {"x": rand(2, 3, 9, dtype=np.float16), "s": rand(3, dtype=np.float16),
                                         "b": rand(3, dtype=np.float16)}, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("axis", [-1, -2, 0, 1, 2])
def test_layer_normalization_axes_and_stats(axis: int) -> None:
    x = rand(2, 3, 8)
    norm_shape = x.shape[axis:]
    check_node("LayerNormalization", {"x": x, "s": rand(*norm_shape), "b": rand(*norm_shape)}, n_outputs=3,
               opset=17, axis=axis, epsilon=1e-3, rtol=1e-4, atol=1e-5)


def test_layer_normalization_variants() -> None:
    check_node("LayerNormalization", {"x": rand(2, 3, 8), "s": rand(8)}, opset=17, rtol=1e-4, atol=1e-5)
    check_node("LayerNormalization", {"x": rand(2, 3, 8), "s": rand(1, 8), "b": rand(8)}, opset=17, axis=1,
               rtol=1e-4, atol=1e-5)
    # float16 computes in float32; statistics come back in the stash type (float)
    check_node("LayerNormalization", {"x": rand(4, 16, dtype=np.float16), "s": rand(16, dtype=np.float16),
                                      "b": rand(16, dtype=np.float16)}, n_outputs=3, opset=17, rtol=1e-2, atol=1e-2)
    check_node("LayerNormalization", {"x": rand(4, 16, dtype=np.float64), "s": rand(16, dtype=np.float64)},
               n_outputs=3, opset=17, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("opset, n_params", [(18, 3), (21, 6)])
def test_group_normalization_params_per_group_then_per_channel(opset: int, n_params: int) -> None:
    check_node("GroupNormalization", {"x": rand(2, 6, 4, 5), "s": rand(n_params), "b": rand(n_params)},
               opset=opset, num_groups=3, epsilon=1e-3, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_rms_normalization(axis: int) -> None:
    x = rand(2, 3, 8)
    check_node("RMSNormalization", {"x": x, "s": rand(*x.shape[axis:])}, opset=23, axis=axis, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [1, 3, 5, 9])
def test_lrn(size: int) -> None:
    check_node("LRN", {"x": rand(2, 7, 4, 5)}, size=size, alpha=0.01, beta=0.8, bias=1.5, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_lp_normalization(p: int, axis: int) -> None:
    check_node("LpNormalization", {"x": rand(3, 4, 5)}, p=p, axis=axis, opset=21, rtol=1e-4, atol=1e-5)


def test_lp_normalization_zero_norm_gives_zero() -> None:
    x = rand(3, 4)
    x[1] = 0
    model = make_model([helper.make_node("LpNormalization", ["x"], ["y"], axis=1)], {"x": x}, ["y"], 22)
    y = webinfer.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    assert np.all(y[1] == 0) and np.allclose(np.linalg.norm(y[[0, 2]], axis=1), 1, rtol=1e-5)


def test_mean_variance_normalization() -> None:
    check_node("MeanVarianceNormalization", {"x": rand(2, 3, 4, 5)}, rtol=1e-4, atol=1e-5)
    check_node("MeanVarianceNormalization", {"x": rand(2, 3, 4, 5)}, axes=[1, 3], rtol=1e-4, atol=1e-5)


def test_bad_inputs_name_the_node() -> None:
    x = rand(2, 3, 4, 5)
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn1")
    with pytest.raises(WebinferError, match=r"BatchNormalization node 'bn1'.*scale has shape \[4\].*\[2,3,4,5\]"):
        load_node(node, {"x": x}, 15, bn_params(4))
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y"], name="ln1", axis=4)
    with pytest.raises(WebinferError, match=r"LayerNormalization node 'ln1'.*axis 4.*rank 4"):
        load_node(node, {"x": x, "s": rand(5)}, 17)
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y"], name="ln2")
    with pytest.raises(WebinferError, match=r"LayerNormalization node 'ln2'.*scale of shape \[4\].*\[2,3,4,5\]"):
        load_node(node, {"x": x, "s": rand(4)}, 17)
    node = helper.make_node("GroupNormalization", ["x", "s", "b"], ["y"], name="gn1", num_groups=2)
    with pytest.raises(WebinferError, match=r"GroupNormalization node 'gn1'.*num_groups=2.*\[2,3,4,5\]"):
        load_node(node, {"x": x}, 21, {"s": rand(3), "b": rand(3)})
    node = helper.make_node("LpNormalization", ["x"], ["y"], name="lp1", p=3)
    with pytest.raises(WebinferError, match=r"LpNormalization node 'lp1'.*p must be 1 or 2, got 3"):
        load_node(node, {"x": x}, 22)
    # shapes only known at run time: the kernel checks them
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], name="in1")
    model = make_model([node], {"x": x, "s": rand(2), "b": rand(3)}, ["y"], 22)
    model.graph.input[1].type.tensor_type.shape.dim[0].dim_param = "c"
    sess = webinfer.InferenceSession(model.SerializeToString())
    with pytest.raises(WebinferError, match=r"InstanceNormalization node 'in1'.*scale has shape \[2\].*\[2, 3, 4, 5\]"):
        sess.run(None, {"x": x, "s": rand(2), "b": rand(3)})


@pytest.mark.parametrize("x_shape, axis, s_shape", [
    ((1, 128), -1, (128,)),  # a classifier head's hidden layer
    ((1, 3, 41), 1, (3, 41)),  # one row over two axes
    ((1, 3, 41), 1, (41,)),  # scale broadcast over the first normalized axis
    ((1, 1, 7), -1, (1, 7)),
    ((5,), 0, (5,)),
    ((2, 3, 4), 0, (3, 4)),  # axis 0: the whole tensor is one row
])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_normalization_one_row(x_shape: tuple, axis: int, s_shape: tuple, layout: str, dtype: type,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """X that is one row (leading dims all 1) normalizes without the per-row statistics helper, on any layout."""
    calls = []
    row_stats = norm_ops._row_stats
    monkeypatch.setattr(norm_ops, "_row_stats", lambda *a, **k: calls.append(1) or row_stats(*a, **k))
    x = strided(rand(*x_shape, dtype=dtype), layout)
    check_node("LayerNormalization", {"x": x, "s": rand(*s_shape, dtype=dtype), "b": rand(*s_shape, dtype=dtype)},
               opset=17, axis=axis, rtol=1e-5, atol=1e-5)
    check_node("LayerNormalization", {"x": x, "s": rand(*s_shape, dtype=dtype)}, opset=17, axis=axis,
               rtol=1e-5, atol=1e-5)
    assert not calls
    # with the statistics asked for, or several rows, the general path runs
    check_node("LayerNormalization", {"x": x, "s": rand(*s_shape, dtype=dtype)}, n_outputs=3, opset=17, axis=axis,
               rtol=1e-5, atol=1e-5)
    assert calls
