"""Shared fixtures: model cache dir, ONNX_HOME for onnx's suite."""

from __future__ import annotations

import os
import tempfile


pytest_plugins = ["onnx.backend.test.report"]

os.environ.setdefault("ONNX_HOME", os.path.join(tempfile.gettempdir(), "webinfer-onnx-home"))
