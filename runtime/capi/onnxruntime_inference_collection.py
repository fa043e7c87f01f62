"""onnxruntime's `capi.onnxruntime_inference_collection`: where its Python session classes live."""

from ..ortvalue import IOBinding, OrtValue
from ..session import InferenceSession, ModelMetadata, NodeArg

__all__ = ["InferenceSession", "IOBinding", "OrtValue", "ModelMetadata", "NodeArg"]
