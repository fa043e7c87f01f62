"""ONNX element types: the enum, their numpy storage, and conversion rules.

numpy has no bfloat16, float8, float6, float4, int4 or int2.  Inside webinfer
such tensors are held in a plain numpy *storage* dtype and their ONNX type is
tracked by the graph (every value's element type is known at load):

- bfloat16: uint16 holding the bit pattern
- float8 (e4m3fn, e4m3fnuz, e5m2, e5m2fnuz, e8m0), float6, float4: uint8
  holding the bit pattern, one value per byte
- int4 / int2: int8 holding the value (sign-extended); uint4 / uint2: uint8

Ops that compute on them convert to float32 (exact: every such value is a
float32) and round back with the rules ONNX's Cast defines.  At the session
boundary, arrays of ml_dtypes types (what the onnx package produces) are
accepted and returned when ml_dtypes is importable; without it the storage
arrays are exchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import ModelLoadError

UNDEFINED = 0
FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, STRING, BOOL = 1, 2, 3, 4, 5, 6, 7, 8, 9
FLOAT16, DOUBLE, UINT32, UINT64, COMPLEX64, COMPLEX128, BFLOAT16 = 10, 11, 12, 13, 14, 15, 16
FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2, FLOAT8E5M2FNUZ = 17, 18, 19, 20
UINT4, INT4, FLOAT4E2M1, FLOAT8E8M0, UINT2, INT2, FLOAT6E2M3, FLOAT6E3M2 = 21, 22, 23, 24, 25, 26, 27, 28


@dataclass(frozen=True)
class ElemType:
    """One ONNX element type.

    `storage` is the numpy dtype webinfer holds it in; `native` is true when
    that dtype *is* the type (no conversion needed to compute on it);
    `bits` < 8 means the wire format packs several values per byte.
    """

    code: int
    name: str
    onnx_name: str
    storage: np.dtype
    native: bool
    bits: int


def _t(code: int, name: str, onnx_name: str, storage: str, native: bool, bits: int) -> ElemType:
    return ElemType(code, name, onnx_name, np.dtype(storage), native, bits)


ELEM_TYPES: dict[int, ElemType] = {t.code: t for t in [
    _t(FLOAT, "float", "FLOAT", "float32", True, 32),
    _t(UINT8, "uint8", "UINT8", "uint8", True, 8),
    _t(INT8, "int8", "INT8", "int8", True, 8),
    _t(UINT16, "uint16", "UINT16", "uint16", True, 16),
    _t(INT16, "int16", "INT16", "int16", True, 16),
    _t(INT32, "int32", "INT32", "int32", True, 32),
    _t(INT64, "int64", "INT64", "int64", True, 64),
    _t(STRING, "string", "STRING", "object", True, 0),
    _t(BOOL, "bool", "BOOL", "bool", True, 8),
    _t(FLOAT16, "float16", "FLOAT16", "float16", True, 16),
    _t(DOUBLE, "double", "DOUBLE", "float64", True, 64),
    _t(UINT32, "uint32", "UINT32", "uint32", True, 32),
    _t(UINT64, "uint64", "UINT64", "uint64", True, 64),
    _t(COMPLEX64, "complex64", "COMPLEX64", "complex64", True, 64),
    _t(COMPLEX128, "complex128", "COMPLEX128", "complex128", True, 128),
    _t(BFLOAT16, "bfloat16", "BFLOAT16", "uint16", False, 16),
    _t(FLOAT8E4M3FN, "float8e4m3fn", "FLOAT8E4M3FN", "uint8", False, 8),
    _t(FLOAT8E4M3FNUZ, "float8e4m3fnuz", "FLOAT8E4M3FNUZ", "uint8", False, 8),
    _t(FLOAT8E5M2, "float8e5m2", "FLOAT8E5M2", "uint8", False, 8),
    _t(FLOAT8E5M2FNUZ, "float8e5m2fnuz", "FLOAT8E5M2FNUZ", "uint8", False, 8),
    _t(UINT4, "uint4", "UINT4", "uint8", False, 4),
    _t(INT4, "int4", "INT4", "int8", False, 4),
    _t(FLOAT4E2M1, "float4e2m1", "FLOAT4E2M1", "uint8", False, 4),
    _t(FLOAT8E8M0, "float8e8m0", "FLOAT8E8M0", "uint8", False, 8),
    _t(UINT2, "uint2", "UINT2", "uint8", False, 2),
    _t(INT2, "int2", "INT2", "int8", False, 2),
    _t(FLOAT6E2M3, "float6e2m3", "FLOAT6E2M3", "uint8", False, 6),
    _t(FLOAT6E3M2, "float6e3m2", "FLOAT6E3M2", "uint8", False, 6),
]}

_BY_NUMPY: dict[np.dtype, int] = {t.storage: t.code for t in ELEM_TYPES.values() if t.native}

#: Element types whose values are small integers held in a wider numpy int.
SUB_BYTE_INTS = {UINT4: (0, 15), INT4: (-8, 7), UINT2: (0, 3), INT2: (-2, 1)}

#: Element types held as bit patterns of a small float format.
SMALL_FLOATS = {BFLOAT16, FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2, FLOAT8E5M2FNUZ,
                FLOAT8E8M0, FLOAT4E2M1, FLOAT6E2M3, FLOAT6E3M2}

FLOAT_TYPES = {FLOAT, FLOAT16, DOUBLE} | SMALL_FLOATS


def elem_type(code: int) -> ElemType:
    """Look up an ONNX element type; unknown codes are a load error."""
    t = ELEM_TYPES.get(code)
    if t is None:
        raise ModelLoadError(f"unknown ONNX element type {code}")
    return t


def type_name(code: int | None) -> str:
    """The name onnxruntime prints for an element type, e.g. `float`."""
    if code is None:
        return "unknown"
    t = ELEM_TYPES.get(code)
    return t.name if t else f"type{code}"


def from_numpy(dtype: np.dtype) -> int:
    """ONNX element type of a native numpy dtype (or of an ml_dtypes dtype)."""
    dtype = np.dtype(dtype)
    code = _BY_NUMPY.get(dtype)
    if code is not None:
        return code
    if dtype.kind in "US":
        return STRING
    code = _ML_DTYPE_CODES.get(dtype.name)
    if code is not None:
        return code
    raise TypeError(f"numpy dtype {dtype} has no ONNX element type")


def storage_dtype(code: int) -> np.dtype:
    """The numpy dtype webinfer holds an element type in."""
    return elem_type(code).storage


# --------------------------------------------------------------------------
# small float formats: described by exponent/mantissa widths and specials

@dataclass(frozen=True)
class SmallFloat:
    """A float format of at most 16 bits, enough to enumerate every code."""

    bits: int
    exp_bits: int
    man_bits: int
    bias: int
    has_inf: bool
    nan_codes: str  # "ieee" (all-ones exponent), "fn" (only S.1111.111), "uz" (only 0x80), "e8m0", "none"
    signed: bool = True


SMALL_FLOAT_FORMATS: dict[int, SmallFloat] = {
    FLOAT8E4M3FN: SmallFloat(8, 4, 3, 7, False, "fn"),
    FLOAT8E4M3FNUZ: SmallFloat(8, 4, 3, 8, False, "uz"),
    FLOAT8E5M2: SmallFloat(8, 5, 2, 15, True, "ieee"),
    FLOAT8E5M2FNUZ: SmallFloat(8, 5, 2, 16, False, "uz"),
    FLOAT8E8M0: SmallFloat(8, 8, 0, 127, False, "e8m0", signed=False),
    FLOAT4E2M1: SmallFloat(4, 2, 1, 1, False, "none"),
    FLOAT6E2M3: SmallFloat(6, 2, 3, 1, False, "none"),
    FLOAT6E3M2: SmallFloat(6, 3, 2, 3, False, "none"),
}


@lru_cache(maxsize=None)
def decode_table(code: int) -> np.ndarray:
    """float32 value of every bit pattern of a small float format (a LUT)."""
    f = SMALL_FLOAT_FORMATS[code]
    n = 1 << f.bits
    out = np.empty(n, dtype=np.float64)
    sign_bit = 1 << (f.bits - 1) if f.signed else 0
    for c in range(n):
        neg = bool(c & sign_bit) if f.signed else False
        mag = c & (sign_bit - 1) if f.signed else c
        e = mag >> f.man_bits
        m = mag & ((1 << f.man_bits) - 1)
        if f.nan_codes == "e8m0":
            out[c] = np.nan if c == 0xFF else 2.0 ** (c - 127)
            continue
        if f.nan_codes == "uz" and c == 0x80:
            out[c] = np.nan
            continue
        all_ones = e == (1 << f.exp_bits) - 1
        if f.nan_codes == "fn" and all_ones and m == (1 << f.man_bits) - 1:
            out[c] = np.nan
            continue
        if f.nan_codes == "ieee" and all_ones:
            out[c] = np.nan if m else np.inf
            if not m and neg:
                out[c] = -np.inf
            continue
        if e == 0:
            v = m * 2.0 ** (1 - f.bias - f.man_bits)
        else:
            v = (1 + m / (1 << f.man_bits)) * 2.0 ** (e - f.bias)
        out[c] = -v if neg else v
    return out.astype(np.float32)


@lru_cache(maxsize=None)
def _encode_tables(code: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Sorted non-negative finite values with their codes, and the max finite value."""
    table = decode_table(code).astype(np.float64)
    f = SMALL_FLOAT_FORMATS[code]
    sign_bit = 1 << (f.bits - 1) if f.signed else 1 << f.bits
    codes = np.arange(len(table))
    keep = np.isfinite(table) & (table >= 0) & ((codes & sign_bit) == 0)
    vals, cds = table[keep], codes[keep]
    order = np.argsort(vals, kind="stable")
    return vals[order], cds[order], float(vals.max())


def _nan_code(f: SmallFloat) -> int:
    return {"fn": 0x7F, "uz": 0x80, "ieee": 0x7F if f.bits == 8 else 0, "e8m0": 0xFF}[f.nan_codes]


def small_float_to_float32(bits: np.ndarray, code: int) -> np.ndarray:
    """Decode bit patterns (uint8/uint16 storage) of a small float type."""
    if code == BFLOAT16:
        return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return decode_table(code)[np.asarray(bits, dtype=np.uint8)]


def float32_to_bfloat16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 bits, round-to-nearest-even, NaN kept quiet."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32)
    rounded = (u + (((u >> 16) & 1) + 0x7FFF)) >> 16
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    out = rounded.astype(np.uint16)
    if nan.any():
        out[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return out


def float_to_small_float(x: np.ndarray, code: int, saturate: bool = True) -> np.ndarray:
    """Round floats to a small float format with ONNX Cast's rules.

    Round-to-nearest-even among representable values.  With `saturate`,
    magnitudes beyond the largest finite value (and infinities, for formats
    without them) become +-max; without it they become inf where the format
    has one, NaN otherwise.
    """
    if code == BFLOAT16:
        return float32_to_bfloat16(np.asarray(x, dtype=np.float32))
    f = SMALL_FLOAT_FORMATS[code]
    x = np.asarray(x, dtype=np.float64)
    vals, codes, vmax = _encode_tables(code)
    mag = np.abs(x)
    idx = np.clip(np.searchsorted(vals, mag), 1, len(vals) - 1)
    lo, hi = vals[idx - 1], vals[idx]
    pick_hi = (mag - lo > hi - mag) | ((mag - lo == hi - mag) & (codes[idx - 1] & 1 == 1))
    out = np.where(pick_hi, codes[idx], codes[idx - 1]).astype(np.int64)
    below = mag <= vals[0]
    out[below] = codes[0]
    too_big = mag > vmax
    if not saturate or f.nan_codes in ("none",):
        # rounding above max: values within half an ulp of max round to max
        top_ulp = vals[-1] - vals[-2]
        too_big = mag >= vmax + top_ulp / 2 if f.nan_codes != "none" else np.zeros_like(too_big)
    sign_bit = 1 << (f.bits - 1)
    if f.signed:
        neg = np.signbit(x)
        if f.nan_codes == "uz":
            neg &= out != 0  # no negative zero in fnuz formats
        out = np.where(neg, out | sign_bit, out)
    max_code = codes[-1]
    inf = np.isinf(x)
    if saturate or f.nan_codes == "none":
        sat = too_big | inf
        if f.nan_codes == "uz" and saturate:
            sat = too_big & ~inf
            out[inf] = 0x80
        out = np.where(sat, max_code | (np.signbit(x) * sign_bit if f.signed else 0), out)
    else:
        if f.has_inf:
            inf_code = sign_bit - (1 << f.man_bits)  # exponent all ones, mantissa 0
            out = np.where(too_big | inf, inf_code | (np.signbit(x) * sign_bit), out)
        else:
            over = too_big | inf
            nan_code = _nan_code(f)
            out = np.where(over, nan_code | (np.signbit(x) * sign_bit if f.nan_codes == "fn" else 0), out)
    out = np.where(np.isnan(x), _nan_code(f), out)
    return out.astype(np.uint8)


def to_float32(storage: np.ndarray, code: int) -> np.ndarray:
    """Values of a non-native element type as float32 (or int for sub-byte ints)."""
    if code in SMALL_FLOATS:
        return small_float_to_float32(storage, code)
    return np.asarray(storage)


def from_float(x: np.ndarray, code: int, saturate: bool = True) -> np.ndarray:
    """Storage for element type `code` of float values `x` (Cast's rules)."""
    if code in SMALL_FLOATS:
        return float_to_small_float(x, code, saturate)
    if code in SUB_BYTE_INTS:
        return wrap_sub_byte(np.asarray(x).astype(np.int64), code)
    return np.asarray(x).astype(storage_dtype(code))


def wrap_sub_byte(x: np.ndarray, code: int) -> np.ndarray:
    """Integers truncated to a sub-byte int type (two's complement wrap, as C casts do)."""
    bits = ELEM_TYPES[code].bits
    lo, _ = SUB_BYTE_INTS[code]
    mask = (1 << bits) - 1
    u = np.asarray(x, dtype=np.int64) & mask
    if lo < 0:
        u = np.where(u >= (1 << (bits - 1)), u - (1 << bits), u)
    return u.astype(storage_dtype(code))


# --------------------------------------------------------------------------
# packing used by the wire format (raw_data of 4- and 2-bit types)

def unpack_bits(data: np.ndarray, count: int, code: int) -> np.ndarray:
    """Unpack `count` values of a 2/4/6-bit type from packed bytes, low bits first."""
    t = ELEM_TYPES[code]
    bits = t.bits
    data = np.asarray(data, dtype=np.uint8)
    if bits in (2, 4):
        per = 8 // bits
        shifts = np.arange(per, dtype=np.uint8) * bits
        vals = ((data[:, None] >> shifts[None, :]) & ((1 << bits) - 1)).reshape(-1)
    else:
        bitarr = np.unpackbits(data, bitorder="little")
        usable = (len(bitarr) // bits) * bits
        groups = bitarr[:usable].reshape(-1, bits)
        vals = (groups * (1 << np.arange(bits, dtype=np.uint16))).sum(axis=1).astype(np.uint8)
    if vals.size < count:
        raise ModelLoadError(f"packed {t.name} data holds {vals.size} values, tensor needs {count}")
    vals = vals[:count]
    if code in SUB_BYTE_INTS and SUB_BYTE_INTS[code][0] < 0:
        return wrap_sub_byte(vals, code)
    return vals.astype(t.storage)


# --------------------------------------------------------------------------
# exchange with ml_dtypes (the onnx package's representation), when present

try:
    import ml_dtypes as _ml
except ImportError:  # inside Pyodide: storage arrays are exchanged as they are
    _ml = None

_ML_NAMES = {
    BFLOAT16: "bfloat16", FLOAT8E4M3FN: "float8_e4m3fn", FLOAT8E4M3FNUZ: "float8_e4m3fnuz",
    FLOAT8E5M2: "float8_e5m2", FLOAT8E5M2FNUZ: "float8_e5m2fnuz", FLOAT8E8M0: "float8_e8m0fnu",
    UINT4: "uint4", INT4: "int4", FLOAT4E2M1: "float4_e2m1fn", UINT2: "uint2", INT2: "int2",
    FLOAT6E2M3: "float6_e2m3fn", FLOAT6E3M2: "float6_e3m2fn",
}
_ML_DTYPE_CODES = {name: code for code, name in _ML_NAMES.items()}


def ml_dtype(code: int) -> np.dtype | None:
    """The ml_dtypes dtype for an element type, if ml_dtypes is installed and has it."""
    if _ml is None or code not in _ML_NAMES:
        return None
    t = getattr(_ml, _ML_NAMES[code], None)
    return np.dtype(t) if t is not None else None


def import_array(arr: np.ndarray, code: int) -> np.ndarray:
    """Convert a user array of element type `code` to webinfer storage."""
    if ELEM_TYPES[code].native:
        return arr
    name = arr.dtype.name
    if name == _ML_NAMES.get(code):
        if code in SUB_BYTE_INTS:
            return arr.astype(storage_dtype(code))
        return arr.view(storage_dtype(code))
    return arr


def export_array(arr: np.ndarray, code: int) -> np.ndarray:
    """Convert webinfer storage of element type `code` to the user-facing array."""
    t = ELEM_TYPES.get(code)
    if t is None or t.native:
        return arr
    ml = ml_dtype(code)
    if ml is None:
        return arr
    if code in SUB_BYTE_INTS:
        return np.asarray(arr).astype(ml)
    return np.asarray(arr).view(ml)
