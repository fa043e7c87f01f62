"""The strided test mode (SessionOptions.strided_test_inputs): kernels get read-only non-contiguous
views holding their inputs' values, and a kernel writing into an input raises."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import helper

import webinfer
from webinfer.devices import cpu
from webinfer.errors import NodeExecutionError
from webinfer.ir import Node
from webinfer.ops import REGISTRY
from webinfer.ops.registry import OpContext, OpDef, consuming, offer_consuming
from tests.ops.util import make_model

rng = np.random.default_rng(3)


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.bool_, np.str_])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)])
@pytest.mark.parametrize("layout", cpu._LAYOUTS)
def test_views_hold_the_values_in_their_layout(layout: str, shape: tuple, dtype: type) -> None:
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    v = cpu._strided_view(x, layout)
    np.testing.assert_array_equal(v, x)
    assert v.dtype == x.dtype and not v.flags.writeable and not np.may_share_memory(v, x)
    assert not v.flags.c_contiguous
    if layout == "transposed" and len(shape) > 1:
        assert v.flags.f_contiguous
    elif layout == "reversed":
        assert all(s < 0 for s in v.strides)
    else:
        assert v.strides[-1] == 2 * x.itemsize


def test_step_gaps_are_poisoned() -> None:
    v = cpu._strided_view(np.ones((2, 3), np.float32), "step")
    assert np.isnan(v.base).sum() == v.size


@pytest.mark.parametrize("x", [np.array(2.0, np.float32), np.empty((3, 0), np.float32)])
def test_scalars_and_empty_arrays_keep_their_layout(x: np.ndarray) -> None:
    v = cpu._strided_view(x, "step")
    assert v.shape == x.shape and v.strides == x.strides and not v.flags.writeable
    np.testing.assert_array_equal(v, x)


def _recording(seen: list[list[Any]]) -> Any:
    def kernel(*args: Any) -> tuple[Any, ...]:
        seen.append(list(args))
        return (args[0],)
    return kernel


def test_every_layout_reaches_an_input_over_calls_and_sequences_are_viewed() -> None:
    seen: list[list[Any]] = []
    run = cpu._strided_inputs(_recording(seen))
    x, seq = rng.standard_normal((3, 4)), [rng.standard_normal((2, 2)), rng.standard_normal((2, 5))]
    for _ in range(3):
        run(x, seq, None)
    firsts = [args[0] for args in seen]
    assert {a.flags.f_contiguous for a in firsts} == {True, False}
    assert {a.strides[-1] for a in firsts} >= {2 * x.itemsize, -x.itemsize}
    for args in seen:
        np.testing.assert_array_equal(args[0], x)
        assert args[2] is None and isinstance(args[1], list)
        for got, want in zip(args[1], seq):
            np.testing.assert_array_equal(got, want)
            assert not got.flags.c_contiguous and not got.flags.writeable


def test_a_consuming_variant_gets_its_consumed_input_as_it_is() -> None:
    """The executor hands a consuming variant a dying buffer it may overwrite: that one input is
    passed through, the others are strided."""
    seen: list[list[Any]] = []

    def build(ctx: OpContext) -> Any:
        return offer_consuming(_recording([]), 1, _recording(seen))

    opdef = OpDef("Probe", "", 1, build)
    ctx = OpContext(Node("Probe", ["a", "b"], ["y"], {}), 1, [None, None], [None], [None, None],
                    options=webinfer.SessionOptions(strided_test_inputs=True))
    kernel = cpu.build_kernel(opdef, ctx)
    offered = consuming(kernel)
    assert offered is not None and offered[0] == 1
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    offered[1](a, b)
    assert seen[0][1] is b and seen[0][0] is not a and not seen[0][0].flags.c_contiguous


def test_a_kernel_writing_into_its_input_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the mode a Relu that clips its input in place corrupts the caller's feed unseen."""

    def clip_in_place(ctx: OpContext) -> Any:
        return lambda x: (np.maximum(x, 0, out=x),)

    monkeypatch.setattr(REGISTRY.lookup(Node("Relu", ["x"], ["y"], {}), 21), "build", clip_in_place)
    x = np.arange(-6, 6, dtype=np.float32).reshape(3, 4)
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], {"x": x}, ["y"]).SerializeToString()
    feed = x.copy()
    webinfer.InferenceSession(model, webinfer.SessionOptions(strided_test_inputs=False)).run(None, {"x": feed})
    assert (feed >= 0).all()
    with pytest.raises(NodeExecutionError, match="read-only"):
        webinfer.InferenceSession(model, webinfer.SessionOptions(strided_test_inputs=True)).run(None, {"x": x})
