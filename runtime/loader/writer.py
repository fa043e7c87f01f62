"""A minimal protobuf wire-format encoder for the ONNX messages a model rewrite adds.

`webinfer quantize` (runtime/quantize.py) must run where neither `onnx` nor `protobuf`
exists (Pyodide), so it edits files at the wire level: the fields it does not change
are copied byte for byte (`raw_field`), and the few messages it adds (tensors, nodes,
attributes, opset ids) are encoded here.  Field numbers are onnx.proto's.
"""

from __future__ import annotations

import struct
from typing import Any, Mapping, Sequence

import numpy as np

from . import protobuf


def varint(value: int) -> bytes:
    """An unsigned varint; negative ints as their 64-bit two's complement, as protobuf writes int64."""
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def key(field: int, wire: int) -> bytes:
    return varint((field << 3) | wire)


def len_field(field: int, payload: bytes | memoryview) -> bytes:
    """A length-delimited field (bytes, string, sub-message, packed scalars)."""
    return key(field, protobuf.LEN) + varint(len(payload)) + bytes(payload)


def int_field(field: int, value: int) -> bytes:
    return key(field, protobuf.VARINT) + varint(value)


def str_field(field: int, text: str) -> bytes:
    return len_field(field, text.encode())


def raw_field(field: int, wire: int, value: Any) -> bytes:
    """Re-encode one field exactly as `protobuf.iter_fields` yielded it (an int for varints, else bytes)."""
    if wire == protobuf.VARINT:
        return int_field(field, int(value))
    if wire == protobuf.LEN:
        return len_field(field, value)
    return key(field, wire) + bytes(value)


def tensor(name: str, array: np.ndarray, elem: int) -> bytes:
    """TensorProto: dims (1, packed), data_type (2), name (8), raw_data (9, little-endian)."""
    dims = b"".join(varint(int(d)) for d in array.shape)
    data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return (len_field(1, dims) if array.ndim else b"") + int_field(2, elem) + str_field(8, name) + len_field(9, data)


def attribute(name: str, value: int | float | Sequence[int]) -> bytes:
    """AttributeProto of kind INT (2), FLOAT (1) or INTS (7): name (1), f (2), i (3), ints (8), type (20)."""
    if isinstance(value, bool) or isinstance(value, (int, np.integer)):
        return str_field(1, name) + int_field(3, int(value)) + int_field(20, 2)
    if isinstance(value, float):
        return str_field(1, name) + key(2, protobuf.FIXED32) + struct.pack("<f", value) + int_field(20, 1)
    return str_field(1, name) + len_field(8, b"".join(varint(int(v)) for v in value)) + int_field(20, 7)


def node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str = "", domain: str = "",
         attrs: Mapping[str, int | float | Sequence[int]] | None = None) -> bytes:
    """NodeProto: input (1), output (2), name (3), op_type (4), attribute (5), domain (7)."""
    out = b"".join(str_field(1, i) for i in inputs) + b"".join(str_field(2, o) for o in outputs)
    out += (str_field(3, name) if name else b"") + str_field(4, op_type)
    out += b"".join(len_field(5, attribute(k, v)) for k, v in (attrs or {}).items())
    return out + (str_field(7, domain) if domain else b"")


def opset_id(domain: str, version: int) -> bytes:
    """OperatorSetIdProto: domain (1), version (2)."""
    return (str_field(1, domain) if domain else b"") + int_field(2, version)
