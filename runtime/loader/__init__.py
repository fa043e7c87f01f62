"""Reading ONNX files without the `onnx` package (see model.py, protobuf.py, dtypes.py)."""

from .model import load_model, read_model

__all__ = ["load_model", "read_model"]
