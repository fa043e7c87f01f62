"""onnx's backend node suite on the `webgpu` provider.

Restricted to the node cases whose every op has a WGSL kernel
(devices/gpu/kernels.py GPU_OPS); each must pass with *every* node placed on
the GPU (a CPU fallback fails the case: fallbacks are not GPU passes).  Cases
that cannot, by design or for a known reason, are listed with the reason in
GPU_KNOWN_FAILURES and run as expected failures.  The summary line is the
GPU conformance count: passed = cases passing entirely on the GPU.
"""

from __future__ import annotations

import re
from typing import Any

import onnx
import onnx.backend.test
import pytest
from onnx.backend.test.loader import load_model_tests

import webinfer
from webinfer.devices.gpu.kernels import GPU_OPS

from ..conformance.backend import WebinferRep, make_backend, runnable_cases
from ..conformance.known_failures import KNOWN_FAILURES
from .conftest import adapter_error
from .known_failures import GPU_KNOWN_FAILURES

pytestmark = pytest.mark.gpu

_reason = adapter_error()
if _reason is not None:
    pytest.skip(f"no WebGPU adapter: {_reason}", allow_module_level=True)


def gpu_case_names() -> list[str]:
    """Node cases whose ops all have a WGSL kernel."""
    names = []
    for case in load_model_tests(kind="node"):
        ops = {n.op_type for n in case.model.graph.node}
        if ops and ops <= GPU_OPS:
            names.append(case.name)
    return names


_Base = make_backend(["webgpu", "cpu"])


class GpuBackend(_Base):  # type: ignore[misc, valid-type]
    """`make_backend(["webgpu", "cpu"])`'s sessions (strict shape checks), with integer nodes allowed on
    the GPU even when fed from the host (provider option integer_ops="always": the suite feeds int and
    bool tensors straight from the host, where the default policy would keep them on the CPU), and a
    case runs only if every node was placed on the GPU: otherwise it fails naming the fallbacks."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> Any:
        options = webinfer.SessionOptions(strict_shape_checks=True, random_seed=0,
                                          provider_options={"webgpu": {"integer_ops": "always"}})
        sess = webinfer.InferenceSession(model.SerializeToString(), options, providers=["webgpu", "cpu"])
        off = [n for n, d in sess.get_placement().items() if d != "webgpu"]
        if off:
            reasons = sess.device_stats()["fallback_reasons"]
            raise AssertionError("nodes not on the GPU: " + "; ".join(f"{n}: {reasons.get(n, 'webgpu unavailable')}"
                                                                     for n in off))
        return WebinferRep(sess)


backend_test = onnx.backend.test.BackendTest(GpuBackend, __name__)
backend_test.include("^(" + "|".join(re.escape(n) for n in gpu_case_names()) + ")_cpu$")
for pattern in {**KNOWN_FAILURES, **GPU_KNOWN_FAILURES}:
    backend_test.xfail(pattern)

globals().update(runnable_cases(backend_test))
