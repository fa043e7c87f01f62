"""webinfer: an ONNX inference runtime in Python, for the desktop and the browser (Pyodide + WebGPU).

    import webinfer
    sess = webinfer.InferenceSession("model.onnx", providers=["cpu"])
    outputs = sess.run(None, {"input": array})

The module mirrors onnxruntime's Python surface (the names below, and the
`webinfer.capi` submodules), so `import webinfer as onnxruntime` ports code
written for it; the README's compatibility table lists what differs.
"""

from .devices.gpu import init_webgpu
from .gemm import init_wasm
from .environment import (disable_telemetry_events, enable_telemetry_events, get_build_info, get_device,
                          get_version_string, set_seed)
from .errors import (DeviceError, InputError, InputTypeError, ModelLoadError, ModelNotFoundError,
                     NodeExecutionError, RunTerminatedError, ShapeInferenceError, UnsupportedOpError,
                     WebinferError)
from .log import set_default_logger_severity, set_default_logger_verbosity
from .options import ExecutionMode, ExecutionOrder, GraphOptimizationLevel, RunOptions, SessionOptions
from .ortvalue import IOBinding, OrtValue
from .providers import get_all_providers, get_available_providers
from .session import InferenceSession, ModelMetadata, NodeArg
from .version import __version__
from . import capi  # last: its modules re-export the names above

#: onnxruntime's name for its package version string.
version = __version__

__all__ = [
    "InferenceSession", "SessionOptions", "RunOptions", "GraphOptimizationLevel", "ExecutionMode",
    "ExecutionOrder", "NodeArg", "ModelMetadata", "OrtValue", "IOBinding",
    "get_available_providers", "get_all_providers", "get_device", "get_version_string", "get_build_info",
    "set_default_logger_severity", "set_default_logger_verbosity", "disable_telemetry_events",
    "enable_telemetry_events", "set_seed", "init_webgpu", "init_wasm", "capi",
    "WebinferError", "ModelLoadError", "ModelNotFoundError", "UnsupportedOpError", "ShapeInferenceError",
    "InputError", "InputTypeError", "NodeExecutionError", "RunTerminatedError", "DeviceError",
    "__version__", "version",
]
