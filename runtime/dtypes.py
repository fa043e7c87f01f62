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
from types import ModuleType

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
    """A float format of at most 8 bits: few enough codes to tabulate them all.

    `nan` says which codes are NaN: "fn" only S.1111.111; "uz" only 0x80
    (the would-be negative zero, so these formats have no -0); "ieee" an
    all-ones exponent with a nonzero mantissa (a zero mantissa is infinity);
    "e8m0" only 0xFF; "none" no NaN at all.
    """

    bits: int
    exp_bits: int
    man_bits: int
    bias: int
    nan: str
    signed: bool = True

    @property
    def sign_bit(self) -> int:
        return 1 << (self.bits - 1) if self.signed else 0


SMALL_FLOAT_FORMATS: dict[int, SmallFloat] = {
    FLOAT8E4M3FN: SmallFloat(8, 4, 3, 7, "fn"),
    FLOAT8E4M3FNUZ: SmallFloat(8, 4, 3, 8, "uz"),
    FLOAT8E5M2: SmallFloat(8, 5, 2, 15, "ieee"),
    FLOAT8E5M2FNUZ: SmallFloat(8, 5, 2, 16, "uz"),
    FLOAT8E8M0: SmallFloat(8, 8, 0, 127, "e8m0", signed=False),
    FLOAT4E2M1: SmallFloat(4, 2, 1, 1, "none"),
    FLOAT6E2M3: SmallFloat(6, 2, 3, 1, "none"),
    FLOAT6E3M2: SmallFloat(6, 3, 2, 3, "none"),
}

#: The positive NaN code written for a NaN input (ml_dtypes' choice: the quiet
#: NaN for e5m2).  Formats without NaN map NaN to zero, as onnx's reference
#: implementation and its conformance data do.
_NAN_CODE = {"fn": 0x7F, "uz": 0x80, "ieee": 0x7E, "none": 0}

E8M0_ROUND_MODES = ("up", "down", "nearest")


@lru_cache(maxsize=None)
def decode_table(code: int) -> np.ndarray:
    """float32 value of every bit pattern of a small float format (a LUT)."""
    f = SMALL_FLOAT_FORMATS[code]
    c = np.arange(1 << f.bits)
    if f.nan == "e8m0":
        out = np.ldexp(1.0, c - 127)
        out[0xFF] = np.nan
        return out.astype(np.float32)
    mag = c & ((1 << (f.bits - 1)) - 1) if f.signed else c
    e = mag >> f.man_bits
    m = mag & ((1 << f.man_bits) - 1)
    sub = np.ldexp(m.astype(np.float64), 1 - f.bias - f.man_bits)
    norm = np.ldexp(1.0 + m / (1 << f.man_bits), e - f.bias)
    out = np.where(e == 0, sub, norm)
    out = np.where(c & f.sign_bit, -out, out)
    top = e == (1 << f.exp_bits) - 1
    if f.nan == "fn":
        out[top & (m == (1 << f.man_bits) - 1)] = np.nan
    elif f.nan == "uz":
        out[0x80] = np.nan
    elif f.nan == "ieee":
        out[top] = np.where(m[top] == 0, np.copysign(np.inf, out[top]), np.nan)
    return out.astype(np.float32)


@lru_cache(maxsize=None)
def _encode_table(code: int) -> tuple[np.ndarray, np.ndarray]:
    """The non-negative finite values of a format, increasing, then the value one
    ulp past the largest; and their codes.

    That extra entry is where rounding overflows: its code is max+1, whose
    parity decides ties at the top, and which is exactly the format's
    overflow code when it does not saturate (inf for e5m2, NaN otherwise).
    """
    f = SMALL_FLOAT_FORMATS[code]
    table = decode_table(code).astype(np.float64)
    codes = np.arange(len(table))
    keep = np.isfinite(table) & ((codes & f.sign_bit) == 0)
    vals, cds = table[keep], codes[keep]
    return np.append(vals, 2 * vals[-1] - vals[-2]), np.append(cds, cds[-1] + 1)


def small_float_to_float32(bits: np.ndarray, code: int) -> np.ndarray:
    """Decode bit patterns (uint8/uint16 storage) of a small float type."""
    if code == BFLOAT16:
        return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
    return decode_table(code).take(np.asarray(bits, dtype=np.uint8))


def float32_to_bfloat16(x: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 bits, round-to-nearest-even, NaN kept quiet."""
    f = np.asarray(x, dtype=np.float32)
    u = f.view(np.uint32)
    rounded = ((u + (((u >> 16) & 1) + 0x7FFF)) >> 16).astype(np.uint16)
    return np.where(np.isnan(f), ((u >> 16) | 0x40).astype(np.uint16), rounded)


def float_to_small_float(x: np.ndarray, code: int, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """Round numbers to a small float format with ONNX Cast's rules.

    Round-to-nearest-even among representable values.  With `saturate`,
    results beyond the largest finite value (infinities included) become
    +-max; without it they become inf where the format has one, NaN
    otherwise.  float4/float6 have neither, so they always saturate.
    `round_mode` only matters for float8e8m0.
    """
    if code == BFLOAT16:
        with np.errstate(over="ignore"):
            return float32_to_bfloat16(np.asarray(x, dtype=np.float32))
    if code == FLOAT8E8M0:
        return float_to_e8m0(x, saturate, round_mode)
    f = SMALL_FLOAT_FORMATS[code]
    x = np.asarray(x)
    _, codes = _encode_table(code)
    top, past = int(codes[-2]), int(codes[-1])
    fast = x.dtype in (np.float32, np.float16)
    out = _round_float32(x, f) if fast else _round_exact(x, code)
    if saturate or f.nan == "none":
        np.minimum(out, top, out=out)
    else:
        out = np.where(out > top, past, out).astype(out.dtype, copy=False)
    if f.signed:
        neg = (((x.view(np.uint16) if x.dtype == np.float16 else x.view(np.uint32)) >> (x.dtype.itemsize * 8 - 1))
               .astype(out.dtype) if fast else np.signbit(x).astype(out.dtype))
        if f.nan == "uz":
            neg &= out != 0
        out |= neg << (f.bits - 1)
    nan = np.isnan(x)
    if nan.any():
        nan_code = _NAN_CODE[f.nan]
        out = np.where(nan, np.where(np.signbit(x) & (f.nan in ("fn", "ieee")), nan_code | f.sign_bit, nan_code),
                       out)
    return out.astype(np.uint8)


def _round_float32(x: np.ndarray, f: SmallFloat) -> np.ndarray:
    """|x| (float32 or float16) rounded to the nearest-even code of format `f` (uint32), on the
    float32 bit pattern; codes past the largest finite value mean overflow.

    In the format's normal range the rounding is integer arithmetic on the
    bits (a carry out of the mantissa correctly bumps the exponent); below
    it, |x| scaled by a power of two (exact) is rounded by `rint`, which
    yields the subnormal codes and, at the top, the smallest normal one.
    """
    mag = np.abs(x.astype(np.float32, copy=False))
    u = mag.view(np.uint32)
    shift = 23 - f.man_bits
    normal = (u >> shift) & 1
    normal += u
    normal += (1 << (shift - 1)) - 1
    normal >>= shift
    normal -= np.uint32((127 - f.bias) << f.man_bits)  # wraps below the normal range, which takes `sub`
    with np.errstate(invalid="ignore", over="ignore"):
        sub = np.rint(mag * np.float32(2.0 ** (f.bias + f.man_bits - 1))).astype(np.uint32)
    return np.where(u < np.uint32((128 - f.bias) << 23), sub, normal)


def _round_exact(x: np.ndarray, code: int) -> np.ndarray:
    """|x| of any real dtype rounded to the nearest-even code by search in the value table
    (one rounding from float64 or integers); codes past the largest finite value mean overflow."""
    vals, codes = _encode_table(code)
    with np.errstate(invalid="ignore"):  # signalling NaNs; inf - inf
        mag = np.abs(np.asarray(x, dtype=np.float64))  # exact for every float input, and for ints below 2**53
        idx = np.searchsorted(vals, mag)
        np.clip(idx, 1, len(vals) - 1, out=idx)
        lo = idx - 1
        below = mag - vals[lo]
        above = vals[idx] - mag
        return codes[lo + ((above < below) | ((above == below) & ((codes[lo] & 1) == 1)))]


def float_to_e8m0(x: np.ndarray, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """Round to float8e8m0 (a bare power-of-two exponent) as ONNX's Cast defines it.

    The code is the float32 exponent field, incremented when the mantissa
    rounds it up: `up` for any nonzero mantissa, `nearest` from half way
    (ties up), `down` never.  NaN and infinities give the NaN code 0xFF;
    with `saturate` rounding never passes the largest code 0xFE.  The sign
    is ignored (negative inputs are undefined in ONNX).
    """
    if round_mode not in E8M0_ROUND_MODES:
        raise ValueError(f"round_mode must be one of {', '.join(E8M0_ROUND_MODES)}, got {round_mode!r}")
    with np.errstate(over="ignore"):
        u = np.asarray(x, dtype=np.float32).view(np.uint32)
    exp = ((u >> 23) & 0xFF).astype(np.int32)
    man = u & 0x7FFFFF
    if round_mode == "up":
        inc = man != 0
    elif round_mode == "nearest":
        inc = ((man & 0x400000) != 0) & (((man & 0x3FFFFF) != 0) | (exp > 0))
    else:
        inc = np.zeros(exp.shape, dtype=bool)
    if saturate:
        inc &= exp < 0xFE
    return np.where(exp == 0xFF, 0xFF, exp + inc).astype(np.uint8)


def to_float32(storage: np.ndarray, code: int) -> np.ndarray:
    """Values of a non-native element type as float32 (or int for sub-byte ints)."""
    if code in SMALL_FLOATS:
        return small_float_to_float32(storage, code)
    return np.asarray(storage)


def convert(x: np.ndarray, src: int, dst: int, saturate: bool = True, round_mode: str = "up") -> np.ndarray:
    """Cast storage `x` of element type `src` to storage of `dst` (any non-string types).

    Floats to ints truncate toward zero and ints wrap to the destination
    width: C semantics, as onnx's reference implementation (ml_dtypes) has
    for every int type, int4 and int2 included (onnxruntime rounds to
    nearest for those two).  NaN and out-of-range floats give whatever that
    produces (ONNX leaves them undefined).  Small floats round with
    `float_to_small_float`.
    """
    if src == dst:
        return x
    vals = small_float_to_float32(x, src) if src in SMALL_FLOATS else np.asarray(x)
    if dst in SMALL_FLOATS:
        return float_to_small_float(vals, dst, saturate, round_mode)
    with np.errstate(invalid="ignore", over="ignore"):
        if dst in SUB_BYTE_INTS:
            return wrap_sub_byte(vals, dst)
        return vals.astype(storage_dtype(dst))


def from_float(x: np.ndarray, code: int, saturate: bool = True) -> np.ndarray:
    """Storage for element type `code` of the values `x` (a native numpy array), by Cast's rules."""
    x = np.asarray(x)
    return convert(x, from_numpy(x.dtype), code, saturate)


def wrap_sub_byte(x: np.ndarray, code: int) -> np.ndarray:
    """Integers truncated to a sub-byte int type (two's complement wrap, as C casts do)."""
    bits = ELEM_TYPES[code].bits
    lo, _ = SUB_BYTE_INTS[code]
    u = np.asarray(x).astype(np.int64) & ((1 << bits) - 1)
    if lo < 0:
        u = np.where(u >= (1 << (bits - 1)), u - (1 << bits), u)
    return u.astype(storage_dtype(code))


def reinterpret(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    """BitCast: the same bit patterns read as another type of the same width.

    Native and small-float storage are numpy views; sub-byte ints are held
    as values, so they go through their raw bits (masked, then sign-extended
    for signed destinations).
    """
    if src == dst:
        return x
    if src in SUB_BYTE_INTS:
        x = x.astype(np.uint8) & ((1 << ELEM_TYPES[src].bits) - 1)
    if dst in SUB_BYTE_INTS:
        return wrap_sub_byte(x, dst)
    return x.view(storage_dtype(dst))


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

_ml: ModuleType | None
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
