"""The element-type rules of dtypes.py, checked exhaustively against ml_dtypes and onnx's helpers.

ml_dtypes is what the onnx package (and its conformance data) uses for
bfloat16, float8, float4/6 and the sub-byte ints, so webinfer's storage
conversions must agree with it code for code.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import numpy_helper

from webinfer import dtypes

SMALL = [dtypes.FLOAT8E4M3FN, dtypes.FLOAT8E4M3FNUZ, dtypes.FLOAT8E5M2, dtypes.FLOAT8E5M2FNUZ,
         dtypes.FLOAT4E2M1, dtypes.FLOAT6E2M3, dtypes.FLOAT6E3M2]


def _samples() -> np.ndarray:
    """Every float16 value, random float32 bit patterns, values around each format's range, specials."""
    rng = np.random.default_rng(0)
    return np.concatenate([
        np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32),
        np.frombuffer(rng.bytes(1 << 16), dtype=np.float32),
        np.arange(-70000, 70000, 1.75, dtype=np.float32),
        rng.standard_normal(20000).astype(np.float32) * np.float32(300),
        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 464, -464, 248, 61440, 7, 6.5, 30], np.float32),
    ])


@pytest.mark.parametrize("code", SMALL + [dtypes.FLOAT8E8M0])
def test_decode_matches_ml_dtypes(code: int) -> None:
    codes = np.arange(1 << dtypes.ELEM_TYPES[code].bits, dtype=np.uint8)
    ours = dtypes.small_float_to_float32(codes, code)
    ref = codes.view(dtypes.ml_dtype(code)).astype(np.float32)
    np.testing.assert_array_equal(ours, ref)
    finite = ~np.isnan(ref)
    assert np.array_equal(np.signbit(ours[finite]), np.signbit(ref[finite]))


@pytest.mark.parametrize("saturate", [True, False])
@pytest.mark.parametrize("code", SMALL)
def test_encode_matches_ml_dtypes(code: int, saturate: bool) -> None:
    """Round to nearest even, overflow and signed zeros as ml_dtypes (saturating: clip first, as
    onnx's saturate_cast does).  NaN has no code in float4/float6: it becomes +0 (ml_dtypes gives
    a zero too, with the sign flipped)."""
    x = _samples()
    ml = dtypes.ml_dtype(code)
    info = ml_dtypes.finfo(ml)
    ref_in = np.clip(x, float(info.min), float(info.max)) if saturate else x
    with np.errstate(invalid="ignore", over="ignore"):
        ref = ref_in.astype(ml).view(np.uint8)
    ours = dtypes.float_to_small_float(x, code, saturate)
    with np.errstate(invalid="ignore", over="ignore"):
        wide, half = x.astype(np.float64), x.astype(np.float16)
    np.testing.assert_array_equal(dtypes.float_to_small_float(wide, code, saturate), ours)  # the float64 path
    np.testing.assert_array_equal(dtypes.float_to_small_float(half, code, saturate),
                                  dtypes.float_to_small_float(half.astype(np.float64), code, saturate))
    if dtypes.SMALL_FLOAT_FORMATS[code].nan == "none":
        nan = np.isnan(x)
        assert (ours[nan] == 0).all()
        ours, ref = ours[~nan], ref[~nan]
    np.testing.assert_array_equal(ours, ref)


def test_bfloat16_rounds_to_nearest_even() -> None:
    x = _samples()
    ours = dtypes.float_to_small_float(x, dtypes.BFLOAT16)
    with np.errstate(invalid="ignore"):
        ref = x.astype(ml_dtypes.bfloat16).view(np.uint16)
    finite = ~np.isnan(x)
    np.testing.assert_array_equal(ours[finite], ref[finite])
    assert np.isnan(dtypes.small_float_to_float32(ours[~finite], dtypes.BFLOAT16)).all()


@pytest.mark.parametrize("mode", ["up", "down", "nearest"])
@pytest.mark.parametrize("saturate", [True, False])
def test_e8m0_matches_onnx(mode: str, saturate: bool) -> None:
    x = np.abs(_samples())
    ours = dtypes.float_to_small_float(x, dtypes.FLOAT8E8M0, saturate, mode)
    np.testing.assert_array_equal(ours, numpy_helper.to_float8e8m0(x, saturate, mode).view(np.uint8))


def test_e8m0_rejects_unknown_round_mode() -> None:
    with pytest.raises(ValueError, match="round_mode"):
        dtypes.float_to_e8m0(np.ones(2, np.float32), round_mode="even")


@pytest.mark.parametrize("code", list(dtypes.SUB_BYTE_INTS))
def test_sub_byte_ints_truncate_and_wrap(code: int) -> None:
    """Floats truncate toward zero, ints wrap to the width (C casts, as ml_dtypes)."""
    ml = dtypes.ml_dtype(code)
    f = np.arange(-40, 40, 0.75, dtype=np.float32)
    i = np.arange(-300, 300, dtype=np.int32)
    np.testing.assert_array_equal(dtypes.convert(f, dtypes.FLOAT, code), f.astype(ml).astype(np.int64))
    np.testing.assert_array_equal(dtypes.convert(i, dtypes.INT32, code), i.astype(ml).astype(np.int64))
    assert dtypes.convert(f, dtypes.FLOAT, code).dtype == dtypes.storage_dtype(code)


def test_convert_between_storages() -> None:
    x = np.array([-3.5, -1, 0, 0.3, 2.5, 250], np.float32)
    f8 = dtypes.convert(x, dtypes.FLOAT, dtypes.FLOAT8E4M3FN)
    bf = dtypes.convert(f8, dtypes.FLOAT8E4M3FN, dtypes.BFLOAT16)
    np.testing.assert_array_equal(dtypes.to_float32(bf, dtypes.BFLOAT16), dtypes.to_float32(f8, dtypes.FLOAT8E4M3FN))
    np.testing.assert_array_equal(dtypes.convert(f8, dtypes.FLOAT8E4M3FN, dtypes.INT4), [-3, -1, 0, 0, 2, 0])
    assert dtypes.convert(x, dtypes.FLOAT, dtypes.FLOAT) is x


@pytest.mark.parametrize("code", sorted(dtypes._ML_NAMES))
def test_import_export_round_trip(code: int) -> None:
    ml = dtypes.ml_dtype(code)
    bits = dtypes.ELEM_TYPES[code].bits
    if code in dtypes.SUB_BYTE_INTS:
        lo, hi = dtypes.SUB_BYTE_INTS[code]
        arr = np.arange(lo, hi + 1).astype(ml)
    elif bits == 16:
        arr = np.arange(0, 1 << 16, 7, dtype=np.uint16).view(ml)
    else:
        arr = np.arange(1 << bits, dtype=np.uint8).view(ml)
    stored = dtypes.import_array(arr, code)
    assert stored.dtype == dtypes.storage_dtype(code)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(dtypes.to_float32(stored, code).astype(np.float64), arr.astype(np.float64))
    back = dtypes.export_array(stored, code)
    assert back.dtype == ml
    np.testing.assert_array_equal(back.view(np.uint8), arr.view(np.uint8))


def test_reinterpret_sub_byte_and_native() -> None:
    i4 = np.array([-8, -1, 0, 7], np.int8)
    u4 = dtypes.reinterpret(i4, dtypes.INT4, dtypes.UINT4)
    np.testing.assert_array_equal(u4, [8, 15, 0, 7])
    np.testing.assert_array_equal(dtypes.reinterpret(u4, dtypes.UINT4, dtypes.INT4), i4)
    fp4 = dtypes.reinterpret(i4, dtypes.INT4, dtypes.FLOAT4E2M1)
    np.testing.assert_array_equal(dtypes.to_float32(fp4, dtypes.FLOAT4E2M1), [-0.0, -6, 0, 6])
    f = np.array([1.5, -2.0], np.float32)
    np.testing.assert_array_equal(dtypes.reinterpret(f, dtypes.FLOAT, dtypes.INT32), f.view(np.int32))
    bf = dtypes.reinterpret(np.array([0x3FC0], np.uint16), dtypes.UINT16, dtypes.BFLOAT16)
    assert dtypes.to_float32(bf, dtypes.BFLOAT16)[0] == 1.5
