"""webinfer: an ONNX inference runtime in Python, for the desktop and the browser (Pyodide + WebGPU).

    import webinfer
    sess = webinfer.InferenceSession("model.onnx", providers=["cpu"])
    outputs = sess.run(None, {"input": array})
"""

from .errors import (DeviceError, InputError, InputTypeError, ModelLoadError, NodeExecutionError,
                     ShapeInferenceError, UnsupportedOpError, WebinferError)
from .devices.gpu import init_webgpu
from .session import (GraphOptimizationLevel, InferenceSession, NodeArg, SessionOptions,
                      get_available_providers)

__version__ = "0.1.0"

__all__ = [
    "InferenceSession", "SessionOptions", "GraphOptimizationLevel", "NodeArg", "get_available_providers",
    "init_webgpu",
    "WebinferError", "ModelLoadError", "UnsupportedOpError", "ShapeInferenceError", "InputError",
    "InputTypeError", "NodeExecutionError", "DeviceError", "__version__",
]
