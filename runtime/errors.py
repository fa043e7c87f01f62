"""Exceptions raised by webinfer.

Every error a user can provoke (a malformed model, an unsupported op, a bad
feed) is one of these, and names what it is about: the node, its op, the
shapes and dtypes involved.  They subclass the builtin exception a Python
user would expect (ValueError, TypeError, ...), so `except ValueError` code
written against onnxruntime keeps working.
"""

from __future__ import annotations


class WebinferError(Exception):
    """Base class of all webinfer errors."""


class ModelLoadError(WebinferError, ValueError):
    """The bytes are not a valid ONNX model (truncated, corrupt, inconsistent)."""


class UnsupportedOpError(WebinferError, NotImplementedError):
    """The model uses an op, opset or dtype that webinfer does not implement."""


class ShapeInferenceError(WebinferError, ValueError):
    """Shapes or types in the graph are inconsistent (found at load time)."""


class InputError(WebinferError, ValueError):
    """A feed has a wrong name, rank or shape."""


class InputTypeError(WebinferError, TypeError):
    """A feed has the wrong dtype."""


class NodeExecutionError(WebinferError, RuntimeError):
    """An op failed while running; the message names the node and its inputs."""


class DeviceError(WebinferError, RuntimeError):
    """A requested device (e.g. a WebGPU adapter) is not available or failed."""
