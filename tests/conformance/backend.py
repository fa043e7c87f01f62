"""webinfer as an `onnx.backend` backend, for onnx's conformance suite."""

from __future__ import annotations

from typing import Any

import onnx
import onnx.backend.test
from onnx.backend.base import Backend, BackendRep

import webinfer


class WebinferRep(BackendRep):
    def __init__(self, session: webinfer.InferenceSession):
        self.session = session

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        if isinstance(inputs, dict):
            feed = inputs
        else:
            names = [i.name for i in self.session.get_inputs()]
            feed = dict(zip(names, inputs))
        return tuple(self.session.run(None, feed))


def make_backend(providers: list[str]) -> type[Backend]:
    """A Backend class running on `providers`, in strict mode (every node's
    outputs are checked against the shapes and types inferred at load)."""

    class WebinferBackend(Backend):
        @classmethod
        def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> WebinferRep:
            options = webinfer.SessionOptions(strict_shape_checks=True, random_seed=0)
            return WebinferRep(webinfer.InferenceSession(model.SerializeToString(), options, providers=providers))

        @classmethod
        def supports_device(cls, device: str) -> bool:
            return device == "CPU"

    return WebinferBackend


def runnable_cases(backend_test: onnx.backend.test.BackendTest) -> dict[str, type]:
    """The suite's test classes without the cases it would only skip.

    BackendTest generates every case once per device (CPU and CUDA) and
    marks the ones for devices the backend lacks, or outside its include
    patterns, as skipped; they test nothing here, so they are dropped and
    the summary counts only cases that ran.
    """
    cases = backend_test.enable_report().test_cases
    for cls in cases.values():
        for name, fn in list(vars(cls).items()):
            if name.startswith("test_") and getattr(fn, "__unittest_skip__", False):
                delattr(cls, name)
    return cases
