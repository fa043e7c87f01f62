"""IOBinding and OrtValues on the webgpu provider: state that stays on the GPU between runs.

The recurrence y = 0.5 x + 1 is run with its output bound to the GPU and fed
back as the next input: no readback may happen in between (device_stats),
and the values must equal numpy's (exact: both ops are exact in float32 for
these inputs, tolerance 1e-6 stated anyway).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import webinfer

pytestmark = pytest.mark.gpu


def _affine() -> bytes:
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "half"], ["m"]), helper.make_node("Add", ["m", "one"], ["y"])], "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])],
        [numpy_helper.from_array(np.full((1,), 0.5, np.float32), "half"),
         numpy_helper.from_array(np.ones((1,), np.float32), "one")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_outputs_stay_on_the_gpu_between_runs(gpu_device: Any) -> None:
    sess = webinfer.InferenceSession(_affine(), providers=["WebGpuExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    binding = sess.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_output("y", "webgpu")
    sess.run_with_iobinding(binding)
    value = binding.get_outputs()[0]
    assert value.device_name() == "webgpu" and value.shape() == [4, 8]
    assert sess.device_stats()["readbacks_per_run"] == 0
    expected = x * 0.5 + 1
    for _ in range(3):
        binding.bind_ortvalue_input("x", value)
        sess.run_with_iobinding(binding)
        assert sess.device_stats()["readbacks_per_run"] == 0
        value = binding.get_outputs()[0]
        expected = expected * 0.5 + 1
    np.testing.assert_allclose(value.numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(binding.copy_outputs_to_cpu()[0], expected, rtol=1e-6, atol=1e-6)


def test_gpu_ortvalues(gpu_device: Any) -> None:
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    on_gpu = webinfer.OrtValue.ortvalue_from_numpy(x, "webgpu")
    assert on_gpu.device_name() == "webgpu" and on_gpu.data_type() == "tensor(float)"
    np.testing.assert_array_equal(on_gpu.numpy(), x)
    sess = webinfer.InferenceSession(_affine(), providers=["webgpu", "cpu"])
    (out,) = sess.run_with_ort_values(None, {"x": on_gpu})
    assert out.device_name() == "cpu"
    np.testing.assert_allclose(out.numpy(), x * 0.5 + 1, rtol=1e-6, atol=1e-6)
    target = webinfer.OrtValue.ortvalue_from_shape_and_type([4, 8], np.float32, "webgpu")
    binding = sess.io_binding()
    binding.bind_ortvalue_input("x", on_gpu)
    binding.bind_ortvalue_output("y", target)
    sess.run_with_iobinding(binding)
    assert target.device_name() == "webgpu"
    np.testing.assert_allclose(target.numpy(), x * 0.5 + 1, rtol=1e-6, atol=1e-6)
    with pytest.raises(webinfer.InputTypeError, match="GPU"):
        target.update_inplace(x)
    with pytest.raises(webinfer.InputError, match="'x' is bound to webgpu"):
        cpu_sess = webinfer.InferenceSession(_affine(), providers=["cpu"])
        cpu_binding = cpu_sess.io_binding()
        cpu_binding.bind_ortvalue_input("x", on_gpu)
        cpu_sess.run_with_iobinding(cpu_binding)
    wrong = webinfer.OrtValue.ortvalue_from_numpy(np.ones((2, 8), np.float32), "webgpu")
    with pytest.raises(webinfer.InputError, match="GPU tensor of shape"):
        sess.run_with_ort_values(None, {"x": wrong})
