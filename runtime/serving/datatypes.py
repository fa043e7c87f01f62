"""v2 datatypes: names, numpy dtypes, ONNX type strings, and the BYTES wire encoding.

BYTES tensors travel as `<uint32 little-endian length><bytes>` per element
(the binary extension, and gRPC's raw_*_contents); in numpy they are object
arrays of `bytes`, as tritonclient builds them.
"""

from __future__ import annotations

import struct

import numpy as np

from .errors import BadRequest

#: v2 datatype -> numpy dtype (BYTES: object arrays of bytes).
NUMPY = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

#: ONNX tensor element type (as in a NodeArg's "tensor(float)") -> v2 datatype.
FROM_ONNX = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64", "float16": "FP16",
    "float": "FP32", "double": "FP64", "string": "BYTES",
}

#: Triton model_config.proto DataType names, for the config endpoint.
CONFIG_TYPE = {dt: "TYPE_STRING" if dt == "BYTES" else f"TYPE_{dt}" for dt in NUMPY}


def from_onnx_type(type_string: str) -> str | None:
    """'tensor(float)' -> 'FP32'; None for what v2 cannot carry (sequences, maps, bfloat16, float8...)."""
    if not (type_string.startswith("tensor(") and type_string.endswith(")")):
        return None
    return FROM_ONNX.get(type_string[7:-1])


def from_numpy(dtype: np.dtype) -> str:
    """The v2 datatype of an output array; unicode and bytes strings go as BYTES."""
    if dtype.kind in "OUS":
        return "BYTES"
    for name, dt in NUMPY.items():
        if dt == dtype:
            return name
    raise TypeError(f"numpy dtype {dtype} has no v2 datatype")


def encode_bytes(arr: np.ndarray) -> bytes:
    """An object/str/bytes array as length-prefixed elements, row-major."""
    parts = []
    for v in arr.reshape(-1):
        b = v.encode("utf-8") if isinstance(v, str) else bytes(v)
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def decode_bytes(buf: bytes | memoryview, count: int, name: str) -> np.ndarray:
    """`count` length-prefixed elements filling `buf` exactly -> object array of bytes.

    Every prefix is checked against what is left before it is used, so a
    lying length cannot read past the tensor or allocate more than it holds.
    """
    view = memoryview(buf)
    out = np.empty(count, dtype=object)
    pos, end = 0, len(view)
    for i in range(count):
        if end - pos < 4:
            raise BadRequest(f"input '{name}': BYTES data ends inside the length of element {i} of {count}")
        (n,) = struct.unpack_from("<I", view, pos)
        pos += 4
        if n > end - pos:
            raise BadRequest(f"input '{name}': BYTES element {i} claims {n} bytes, only {end - pos} remain")
        out[i] = bytes(view[pos:pos + n])
        pos += n
    if pos != end:
        raise BadRequest(f"input '{name}': {end - pos} bytes left after its {count} BYTES elements")
    return out
