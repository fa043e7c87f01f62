"""Exceptions raised by webinfer.

Every error a user can provoke (a malformed model, an unsupported op, a bad
feed) is one of these, and names what it is about: the node, its op, the
shapes and dtypes involved.  They subclass the builtin exception a Python
user would expect (ValueError, TypeError, ...) and the exception classes
onnxruntime raises in the same situation (`Fail`, `InvalidArgument`, ...,
importable from `webinfer.capi.onnxruntime_pybind11_state` as from
onnxruntime's), so `except` clauses written against onnxruntime keep
working when the import is swapped.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Fail(Exception):
    """onnxruntime's generic failure status (FAIL)."""


class InvalidArgument(Exception):
    """onnxruntime's INVALID_ARGUMENT: a wrong feed, output name or option."""


class NoSuchFile(Exception):
    """onnxruntime's NO_SUCHFILE: the model path does not exist."""


class NoModel(Exception):
    """onnxruntime's NO_MODEL."""


class EngineError(Exception):
    """onnxruntime's ENGINE_ERROR."""


class RuntimeException(Exception):
    """onnxruntime's RUNTIME_EXCEPTION: an op failed while running."""


class InvalidProtobuf(Exception):
    """onnxruntime's INVALID_PROTOBUF: the bytes are not an ONNX model."""


class ModelLoaded(Exception):
    """onnxruntime's MODEL_LOADED."""


class NotImplemented(Exception):  # noqa: A001 - onnxruntime's name, which user code catches
    """onnxruntime's NOT_IMPLEMENTED: an op or type the runtime does not implement."""


class InvalidGraph(Exception):
    """onnxruntime's INVALID_GRAPH: the graph is inconsistent."""


class EPFail(Exception):
    """onnxruntime's EP_FAIL: an execution provider failed."""


class WebinferError(Exception):
    """Base class of all webinfer errors."""


class ModelLoadError(WebinferError, ValueError, InvalidProtobuf, InvalidGraph):
    """The bytes are not a valid ONNX model (truncated, corrupt, inconsistent)."""


class ModelNotFoundError(ModelLoadError, NoSuchFile, FileNotFoundError):
    """The model path does not exist."""


class UnsupportedOpError(WebinferError, NotImplementedError, NotImplemented):
    """The model uses an op, opset or dtype that webinfer does not implement."""


class ShapeInferenceError(WebinferError, ValueError, Fail, InvalidGraph):
    """Shapes or types in the graph are inconsistent (found at load time)."""


class InputError(WebinferError, ValueError, InvalidArgument):
    """A feed has a wrong name, rank or shape."""


class InputTypeError(WebinferError, TypeError, InvalidArgument):
    """A feed has the wrong dtype."""


class NodeExecutionError(WebinferError, RuntimeError, Fail, RuntimeException):
    """An op failed while running; the message names the node and its inputs."""


class RunTerminatedError(WebinferError, RuntimeError, Fail):
    """A run stopped early because its `RunOptions.terminate` was set."""


def describe_value(v: Any) -> str:
    """A value as error messages name it: dtype and shape, a sequence's length, or its type."""
    if v is None:
        return "None"
    if isinstance(v, np.ndarray):
        return f"{v.dtype}{list(v.shape)}"
    if isinstance(v, list):
        return f"seq[{len(v)}]"
    shape = getattr(v, "shape", None)
    dtype = getattr(v, "dtype", None)
    if shape is not None:
        return f"{dtype}{list(shape)}@{type(v).__name__}"
    return type(v).__name__


class DeviceError(WebinferError, RuntimeError, EPFail):
    """A requested device (e.g. a WebGPU adapter) is not available or failed."""
