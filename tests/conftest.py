"""Shared fixtures: model cache dir, ONNX_HOME for onnx's suite, the strided test mode."""

from __future__ import annotations

import dataclasses
import os
import tempfile

import pytest

import webinfer
from webinfer import options, session

pytest_plugins = ["onnx.backend.test.report"]

os.environ.setdefault("ONNX_HOME", os.path.join(tempfile.gettempdir(), "webinfer-onnx-home"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--strided", action="store_true", default=False,
                     help="run every CPU kernel on read-only non-contiguous views of its inputs "
                          "(SessionOptions.strided_test_inputs); the same as WEBINFER_STRIDED=1")


@dataclasses.dataclass(slots=True)
class StridedSessionOptions(options.SessionOptions):
    """SessionOptions whose strided test mode is on unless a test turns it off."""

    strided_test_inputs: bool = True


def pytest_configure(config: pytest.Config) -> None:
    """In strided mode every session a test opens, with options of its own or the defaults, runs
    its CPU kernels on strided inputs: the class is swapped where tests and InferenceSession find
    it, so the op tests and the conformance backend need no mode of their own."""
    if config.getoption("--strided") or os.environ.get("WEBINFER_STRIDED") == "1":
        os.environ["WEBINFER_STRIDED"] = "1"  # xdist workers and subprocesses see the mode too
        webinfer.SessionOptions = session.SessionOptions = StridedSessionOptions  # type: ignore[misc]


def pytest_report_header(config: pytest.Config) -> str | None:
    return "strided test mode: kernels get non-contiguous read-only inputs" \
        if webinfer.SessionOptions is StridedSessionOptions else None
