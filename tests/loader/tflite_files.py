"""Small hand-made .tflite files for the loader tests, built with LiteRT's generated schema classes.

`build(...)` writes one subgraph: graph inputs (float32 or int8 tensors fed
at run time), constant tensors (numpy arrays stored in buffers), and a list
of operators naming their inputs/outputs by tensor name.  The schema module
is ai-edge-litert's (`schema_py_generated`, the object API over the
`flatbuffers` package), so the files are what LiteRT itself reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import flatbuffers
import numpy as np

schema: Any = __import__("ai_edge_litert.schema_py_generated", fromlist=["schema_py_generated"])

TYPES = {np.dtype(np.float32): schema.TensorType.FLOAT32, np.dtype(np.float16): schema.TensorType.FLOAT16,
         np.dtype(np.int32): schema.TensorType.INT32, np.dtype(np.int8): schema.TensorType.INT8,
         np.dtype(np.uint8): schema.TensorType.UINT8, np.dtype(np.int64): schema.TensorType.INT64}


@dataclass
class Quant:
    scale: list[float]
    zero_point: list[int]
    axis: int = 0


@dataclass
class Op:
    """One operator: a builtin name (or `custom`), tensor names in and out, an options object."""

    name: str
    inputs: list[str]
    outputs: list[str]
    options: Any = None
    custom: str = ""
    custom_options: bytes = b""


@dataclass
class Spec:
    inputs: dict[str, tuple[list[int], Any]]
    outputs: dict[str, tuple[list[int], Any]]
    ops: list[Op]
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    intermediates: dict[str, tuple[list[int], Any]] = field(default_factory=dict)
    quant: dict[str, Quant] = field(default_factory=dict)


def build(spec: Spec) -> bytes:
    """The .tflite bytes of `spec`."""
    tensors: list[Any] = []
    buffers = [schema.BufferT()]
    index: dict[str, int] = {}

    def add(name: str, shape: list[int], dtype: Any, data: np.ndarray | None = None) -> None:
        t = schema.TensorT()
        t.name, t.shape, t.type = name, list(shape), TYPES[np.dtype(dtype)]
        t.buffer = 0
        if data is not None:
            b = schema.BufferT()
            b.data = list(np.ascontiguousarray(data).astype(np.dtype(dtype).newbyteorder("<")).tobytes())
            buffers.append(b)
            t.buffer = len(buffers) - 1
        if name in spec.quant:
            q = spec.quant[name]
            t.quantization = schema.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = list(q.scale), list(q.zero_point)
            t.quantization.quantizedDimension = q.axis
        index[name] = len(tensors)
        tensors.append(t)

    for name, (shape, dtype) in {**spec.inputs, **spec.intermediates, **spec.outputs}.items():
        add(name, shape, dtype)
    for name, arr in spec.consts.items():
        add(name, list(arr.shape), arr.dtype, arr)

    codes: list[Any] = []
    code_index: dict[tuple[str, str], int] = {}
    operators = []
    for op in spec.ops:
        key = (op.name, op.custom)
        if key not in code_index:
            c = schema.OperatorCodeT()
            builtin = schema.BuiltinOperator.CUSTOM if op.custom else getattr(schema.BuiltinOperator, op.name)
            c.builtinCode, c.deprecatedBuiltinCode, c.version = builtin, min(builtin, 127), 1
            if op.custom:
                c.customCode = op.custom
            code_index[key] = len(codes)
            codes.append(c)
        o = schema.OperatorT()
        o.opcodeIndex = code_index[key]
        o.inputs = [index[n] if n else -1 for n in op.inputs]
        o.outputs = [index[n] for n in op.outputs]
        if op.options is not None:
            kind = type(op.options).__name__[:-1]  # Conv2DOptionsT -> Conv2DOptions
            o.builtinOptionsType = getattr(schema.BuiltinOptions, kind)
            o.builtinOptions = op.options
        if op.custom_options:
            o.customOptions = list(op.custom_options)
        operators.append(o)

    sub = schema.SubGraphT()
    sub.tensors, sub.operators = tensors, operators
    sub.inputs = [index[n] for n in spec.inputs]
    sub.outputs = [index[n] for n in spec.outputs]
    sub.name = "main"
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, codes, [sub], buffers
    model.description = "webinfer test"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def options(kind: str, **fields: Any) -> Any:
    """An options object, e.g. options("Conv2DOptions", padding=0, strideW=2)."""
    obj = getattr(schema, kind + "T")()
    for k, v in fields.items():
        assert hasattr(obj, k), f"{kind} has no field {k}"
        setattr(obj, k, v)
    return obj
