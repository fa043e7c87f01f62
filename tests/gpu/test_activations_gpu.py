"""The activation table's GPU kernels: each standalone op and its fused Conv form (the same table expression)
against onnxruntime on random data, 1e-5 relative and absolute (float32; the GPU's exp/tanh/erf are a few ulp)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import helper

from ..ops.test_activations import ATTRS, ONNX_ROWS, QUANTIZED_ROWS, RNG, act_node, check, check_quantized, model


@pytest.mark.parametrize("domain, op", ONNX_ROWS)
def test_standalone_activation_on_the_gpu(gpu_device: Any, domain: str, op: str) -> None:
    """The standalone op and its fused form (the same table expression) on the GPU."""
    x = (RNG.standard_normal((2, 4, 7, 7)) * 3).astype(np.float32)
    check(model([act_node(domain, op, "x", ATTRS.get(op, {}))], x.shape, {}), x, None, ["webgpu"])
    w = RNG.standard_normal((6, 4, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             act_node(domain, op, "c", ATTRS.get(op, {}))]
    check(model(nodes, x.shape, {"w": w}), x, "FusedConv", ["webgpu"])


@pytest.mark.parametrize("name, inner", QUANTIZED_ROWS)
def test_quantized_rows_on_the_gpu(gpu_device: Any, name: str, inner: str | None) -> None:
    """The quantised rows' WGSL (for QuantizeGridThen, nested from the rows it is built from) in a FusedMatMul
    epilogue, against onnxruntime's QDQ chain: the same grid values but for one step on at most 5%."""
    check_quantized(name, inner, ["webgpu"])
