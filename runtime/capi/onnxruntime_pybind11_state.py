"""onnxruntime's native-module names: its exception classes and the session-level classes."""

from ..errors import (EngineError, EPFail, Fail, InvalidArgument, InvalidGraph, InvalidProtobuf, ModelLoaded,
                      NoModel, NoSuchFile, NotImplemented, RuntimeException)
from ..environment import get_build_info, get_device, get_version_string, set_seed
from ..log import set_default_logger_severity, set_default_logger_verbosity
from ..options import ExecutionMode, ExecutionOrder, GraphOptimizationLevel, RunOptions, SessionOptions
from ..ortvalue import OrtValue
from ..providers import get_all_providers, get_available_providers
from ..session import ModelMetadata, NodeArg

__all__ = [
    "EngineError", "EPFail", "Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "ModelLoaded",
    "NoModel", "NoSuchFile", "NotImplemented", "RuntimeException",
    "get_build_info", "get_device", "get_version_string", "set_seed", "set_default_logger_severity",
    "set_default_logger_verbosity", "ExecutionMode", "ExecutionOrder", "GraphOptimizationLevel", "RunOptions",
    "SessionOptions", "OrtValue", "get_all_providers", "get_available_providers", "ModelMetadata", "NodeArg",
]
