"""onnx's backend conformance suite on the `cpu` provider.

Node cases, plus the simple, pytorch-converted, pytorch-operator and real
model collections. Known failures (with reasons) are in known_failures.py
and run as expected failures, never skipped.
"""

from __future__ import annotations

import onnx.backend.test

from .backend import make_backend
from .known_failures import KNOWN_FAILURES

backend_test = onnx.backend.test.BackendTest(make_backend(["cpu"]), __name__)
for pattern in KNOWN_FAILURES:
    backend_test.xfail(pattern)

globals().update(backend_test.enable_report().test_cases)
