"""Signal processing: DFT, STFT, window functions, MelWeightMatrix.

ONNX holds complex tensors as real ones with a trailing dimension of 2
(real, imaginary); a real signal has a trailing dimension of 1.  Kernels
convert to numpy complex arrays, call numpy's FFT (which computes float32
inputs in single precision since numpy 2) and convert back.  float16 is
computed in float32 (numpy's FFT has no half precision); bfloat16 arrives as
float32 already (see devices/cpu.py).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .. import dtypes
from ..errors import ShapeInferenceError
from ..ir import Dim, Shape, Type
from ..shapes import InferContext, dim_add, dim_div, dim_mul, dim_sub, shape_str, tensor
from .registry import OpContext, op

_SIGNAL_ELEMS = {dtypes.FLOAT, dtypes.FLOAT16, dtypes.DOUBLE, dtypes.BFLOAT16}


# ------------------------------------------------------------------ helpers

def _scalar_int(x: np.ndarray | None, what: str, where: str = "") -> int | None:
    """An int from a scalar (or one-element) int tensor; None when absent."""
    if x is None:
        return None
    a = np.asarray(x)
    if a.size != 1:
        raise ShapeInferenceError(f"{where}{what} must be a scalar, got shape {list(a.shape)}")
    return int(a.reshape(()))


def _known_scalar(ctx: InferContext, i: int, what: str) -> int | None:
    """Input i's value when it is a constant known at load (a scalar), else None."""
    if not ctx.has(i):
        return None
    v = ctx.value(i)
    if v is None:
        return None
    return _scalar_int(v, what, f"{ctx.node.label()}: ")


def _to_complex(x: np.ndarray) -> tuple[np.ndarray, bool]:
    """A [..., 1|2] real tensor as (signal without the last dim, is_real)."""
    if x.dtype == np.float16:
        x = x.astype(np.float32)
    if x.shape[-1] == 1:
        return x[..., 0], True
    return x[..., 0] + 1j * x[..., 1], False


def _from_complex(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Complex values as a [..., 2] tensor of `dtype` (real, imaginary)."""
    out = np.empty(y.shape + (2,), dtype=dtype)
    out[..., 0] = y.real
    out[..., 1] = y.imag
    return out


def _check_last_dim(shape: Shape | None, where: str) -> None:
    if shape is None:
        return
    if not shape:
        raise ShapeInferenceError(f"{where}input must have rank >= 2 (signal dims then 1 or 2), got a scalar")
    last = shape[-1]
    if isinstance(last, int) and last not in (1, 2):
        raise ShapeInferenceError(
            f"{where}the last dimension of input {shape_str(shape)} must be 1 (real) or 2 (complex), got {last}")


# ------------------------------------------------------------------ DFT

def _dft_axis(axis: int, rank: int, where: str) -> int:
    """Normalise a DFT axis: the last dim holds (re, im) and cannot be transformed."""
    if not (-rank <= axis <= -2 or 0 <= axis <= rank - 2):
        raise ShapeInferenceError(
            f"{where}axis {axis} is out of range for input rank {rank} "
            f"(accepted: [{-rank}, -2] or [0, {rank - 2}]; the last dim holds real/imaginary parts)")
    return axis % rank


def _dft_out_dim(n_in: Dim, length: Dim, inverse: int, onesided: int) -> Dim:
    """Size of the transformed axis: dft_length, or dft_length // 2 + 1 for a one-sided forward DFT."""
    if length is None:
        length = dim_mul(2, dim_sub(n_in, 1)) if inverse and onesided else n_in
    if onesided and not inverse:
        return dim_add(dim_div(length, 2), 1)
    return length


def _dft_rule(ctx: InferContext) -> list[Type | None]:
    elem = ctx.elem(0)
    if elem is not None and elem not in _SIGNAL_ELEMS:
        raise ctx.error(f"input must be float, float16, double or bfloat16, got {dtypes.type_name(elem)}")
    inverse, onesided = ctx.attr("inverse", 0), ctx.attr("onesided", 0)
    if onesided not in (0, 1) or inverse not in (0, 1):
        raise ctx.error(f"inverse and onesided must be 0 or 1, got inverse={inverse}, onesided={onesided}")
    shape = ctx.shape(0)
    _check_last_dim(shape, f"{ctx.node.label()}: ")
    if shape is None:
        return [tensor(elem)]
    rank = len(shape)
    if ctx.opset >= 20:
        axis = _known_scalar(ctx, 2, "axis") if ctx.has(2) else -2
    else:
        axis = ctx.attr("axis", 1)
    length = _known_scalar(ctx, 1, "dft_length")
    if length is not None and length <= 0:
        raise ctx.error(f"dft_length must be positive, got {length}")
    last = 1 if inverse and onesided else 2
    if axis is None:
        return [tensor(elem, [None] * (rank - 1) + [last])]
    axis = _dft_axis(axis, rank, f"{ctx.node.label()}: ")
    out: list[Dim] = list(shape)
    unknown_length = ctx.has(1) and length is None
    out[axis] = None if unknown_length else _dft_out_dim(shape[axis], length, inverse, onesided)
    if onesided and not inverse and shape[-1] == 2:
        raise ctx.error(f"onesided=1 (RFFT) needs a real input, got a complex one {shape_str(shape)}")
    out[-1] = last
    return [tensor(elem, out)]


def _dft(x: np.ndarray, length: int | None, axis: int, inverse: bool, onesided: bool) -> np.ndarray:
    axis = _dft_axis(axis, x.ndim, "")
    if x.shape[-1] not in (1, 2):
        raise ShapeInferenceError(
            f"the last dimension of input {list(x.shape)} must be 1 (real) or 2 (complex)")
    n_in = x.shape[axis]
    if length is None:
        length = 2 * (n_in - 1) if inverse and onesided else n_in
    if length <= 0:
        raise ShapeInferenceError(f"dft_length must be positive, got {length} (input {list(x.shape)})")
    sig, is_real = _to_complex(x)
    if inverse and onesided:
        return np.fft.irfft(sig, n=length, axis=axis)[..., None].astype(x.dtype, copy=False)
    if inverse:
        y = np.fft.ifft(sig, n=length, axis=axis)
    elif onesided and is_real:
        y = np.fft.rfft(sig, n=length, axis=axis)
    elif onesided:
        raise ShapeInferenceError(f"onesided=1 (RFFT) needs a real input, got {list(x.shape)}")
    else:
        y = np.fft.fft(sig, n=length, axis=axis)
    return _from_complex(y, x.dtype)


@op("DFT", since=17, infer=_dft_rule)
def dft17(ctx: OpContext) -> Callable[..., tuple[np.ndarray]]:
    """Opset 17: the axis is an attribute (default 1, the first dim after the batch)."""
    axis = ctx.attr("axis", 1)
    inverse, onesided = bool(ctx.attr("inverse", 0)), bool(ctx.attr("onesided", 0))

    def run(x: np.ndarray, dft_length: np.ndarray | None = None) -> tuple[np.ndarray]:
        return (_dft(x, _scalar_int(dft_length, "dft_length"), axis, inverse, onesided),)

    return run


@op("DFT", since=20, infer=_dft_rule)
def dft20(ctx: OpContext) -> Callable[..., tuple[np.ndarray]]:
    """Opset 20: the axis is an optional scalar input (default -2, the last signal dim)."""
    inverse, onesided = bool(ctx.attr("inverse", 0)), bool(ctx.attr("onesided", 0))

    def run(x: np.ndarray, dft_length: np.ndarray | None = None,
            axis: np.ndarray | None = None) -> tuple[np.ndarray]:
        ax = _scalar_int(axis, "axis")
        return (_dft(x, _scalar_int(dft_length, "dft_length"), -2 if ax is None else ax, inverse, onesided),)

    return run


# ------------------------------------------------------------------ STFT

def _stft_rule(ctx: InferContext) -> list[Type | None]:
    elem = ctx.elem(0)
    if elem is not None and elem not in _SIGNAL_ELEMS:
        raise ctx.error(f"signal must be float, float16, double or bfloat16, got {dtypes.type_name(elem)}")
    shape = ctx.shape(0)
    onesided = ctx.attr("onesided", 1)
    if shape is not None and len(shape) != 3:
        raise ctx.error(f"signal must have rank 3 [batch, length, 1|2], got {shape_str(shape)}")
    _check_last_dim(shape, f"{ctx.node.label()}: ")
    step = _known_scalar(ctx, 1, "frame_step")
    if step is not None and step <= 0:
        raise ctx.error(f"frame_step must be positive, got {step}")
    win_shape = ctx.shape(2) if ctx.has(2) else None
    if win_shape is not None and len(win_shape) != 1:
        raise ctx.error(f"window must be 1-D, got {shape_str(win_shape)}")
    frame: Dim = None
    if ctx.has(3):
        frame = _known_scalar(ctx, 3, "frame_length")
        win_len = win_shape[0] if win_shape is not None else None
        if isinstance(frame, int) and isinstance(win_len, int) and frame != win_len:
            raise ctx.error(f"window has length {win_len} but frame_length is {frame}")
    elif ctx.has(2):
        frame = win_shape[0] if win_shape is not None else None
    elif shape is not None:
        frame = shape[1]
    if shape is None:
        return [tensor(elem, [None, None, None, 2])]
    if isinstance(frame, int) and isinstance(shape[1], int) and frame > shape[1]:
        raise ctx.error(f"frame_length {frame} is longer than the signal {shape_str(shape)}")
    if onesided and shape[2] == 2:
        raise ctx.error(f"onesided=1 needs a real signal, got a complex one {shape_str(shape)}")
    frames = dim_add(dim_div(dim_sub(shape[1], frame), step), 1) if step is not None and frame is not None else None
    bins = dim_add(dim_div(frame, 2), 1) if onesided else frame
    return [tensor(elem, [shape[0], frames, bins, 2])]


@op("STFT", since=17, infer=_stft_rule)
def stft(ctx: OpContext) -> Callable[..., tuple[np.ndarray]]:
    """Frames are strided views of the signal (no copies) until the window multiplies them."""
    onesided = bool(ctx.attr("onesided", 1))

    def run(signal: np.ndarray, frame_step: np.ndarray, window: np.ndarray | None = None,
            frame_length: np.ndarray | None = None) -> tuple[np.ndarray]:
        if signal.ndim != 3 or signal.shape[-1] not in (1, 2):
            raise ShapeInferenceError(f"signal must be [batch, length, 1|2], got {list(signal.shape)}")
        step = _scalar_int(frame_step, "frame_step")
        n = _scalar_int(frame_length, "frame_length")
        if n is None:
            n = window.shape[0] if window is not None else signal.shape[1]
        if window is not None and (window.ndim != 1 or window.shape[0] != n):
            raise ShapeInferenceError(f"window {list(window.shape)} must be 1-D of frame_length {n}")
        if step is None or step <= 0 or not 0 < n <= signal.shape[1]:
            raise ShapeInferenceError(
                f"need frame_step > 0 and 0 < frame_length <= signal length; got frame_step {step}, "
                f"frame_length {n}, signal {list(signal.shape)}")
        sig, is_real = _to_complex(signal)
        if onesided and not is_real:
            raise ShapeInferenceError(f"onesided=1 needs a real signal, got {list(signal.shape)}")
        frames = np.lib.stride_tricks.sliding_window_view(sig, n, axis=1)[:, ::step]
        if window is not None:
            frames = frames * window.astype(frames.real.dtype, copy=False)
        y = np.fft.rfft(frames, axis=-1) if onesided else np.fft.fft(frames, axis=-1)
        return (_from_complex(y, signal.dtype),)

    return run


# ------------------------------------------------------------------ windows

def _out_dtype(code: int, where: str) -> np.dtype:
    """The dtype a kernel returns for `output_datatype` (small floats come back as float32, see cpu.py)."""
    if code in dtypes.SMALL_FLOATS:
        return np.dtype(np.float32)
    if code not in dtypes.ELEM_TYPES or code in (dtypes.STRING, dtypes.BOOL, dtypes.COMPLEX64, dtypes.COMPLEX128) \
            or code in dtypes.SUB_BYTE_INTS:
        raise ShapeInferenceError(f"{where}output_datatype {code} ({dtypes.type_name(code)}) is not allowed")
    return dtypes.storage_dtype(code)


def _window_rule(ctx: InferContext) -> list[Type | None]:
    code = ctx.attr("output_datatype", dtypes.FLOAT)
    _out_dtype(code, f"{ctx.node.label()}: ")
    size = _known_scalar(ctx, 0, "size")
    if size is not None and size < 0:
        raise ctx.error(f"size must be >= 0, got {size}")
    return [tensor(code, [size])]


def _window(cosines: tuple[float, ...]) -> Callable[[OpContext], Callable[[np.ndarray], tuple[np.ndarray]]]:
    """A generalised cosine window sum_k (-1)^k a_k cos(2 pi k n / N); N = size (periodic) or size - 1."""

    def build(ctx: OpContext) -> Callable[[np.ndarray], tuple[np.ndarray]]:
        periodic = ctx.attr("periodic", 1)
        dtype = _out_dtype(ctx.attr("output_datatype", dtypes.FLOAT), f"{ctx.node.label()}: ")

        def run(size: np.ndarray) -> tuple[np.ndarray]:
            n = _scalar_int(size, "size")
            if n is None or n < 0:
                raise ShapeInferenceError(f"size must be >= 0, got {n}")
            denom = n if periodic else n - 1
            if denom <= 0:
                return (np.ones(n, dtype=dtype),)
            phase = np.arange(n, dtype=np.float64) * (2.0 * math.pi / denom)
            w = np.full(n, cosines[0])
            for k, a in enumerate(cosines[1:], start=1):
                w += (-1) ** k * a * np.cos(k * phase)
            return (w.astype(dtype),)

        return run

    return build


_HAMMING_ALPHA = 25.0 / 46.0
op("HannWindow", since=17, infer=_window_rule)(_window((0.5, 0.5)))
op("HammingWindow", since=17, infer=_window_rule)(_window((_HAMMING_ALPHA, 1.0 - _HAMMING_ALPHA)))
op("BlackmanWindow", since=17, infer=_window_rule)(_window((0.42, 0.5, 0.08)))


# ------------------------------------------------------------------ MelWeightMatrix

def _mel_rule(ctx: InferContext) -> list[Type | None]:
    code = ctx.attr("output_datatype", dtypes.FLOAT)
    _out_dtype(code, f"{ctx.node.label()}: ")
    mels = _known_scalar(ctx, 0, "num_mel_bins")
    length = _known_scalar(ctx, 1, "dft_length")
    return [tensor(code, [None if length is None else length // 2 + 1, mels])]


@op("MelWeightMatrix", since=17, infer=_mel_rule)
def mel_weight_matrix(ctx: OpContext) -> Callable[..., tuple[np.ndarray]]:
    """Triangular filters peaking at 1 between mel-spaced bin edges (computed in float64)."""
    dtype = _out_dtype(ctx.attr("output_datatype", dtypes.FLOAT), f"{ctx.node.label()}: ")

    def run(num_mel_bins: np.ndarray, dft_length: np.ndarray, sample_rate: np.ndarray,
            lower_edge_hertz: np.ndarray, upper_edge_hertz: np.ndarray) -> tuple[np.ndarray]:
        mels = _scalar_int(num_mel_bins, "num_mel_bins")
        length = _scalar_int(dft_length, "dft_length")
        rate = _scalar_int(sample_rate, "sample_rate")
        lo_hz, hi_hz = float(np.asarray(lower_edge_hertz).reshape(())), float(np.asarray(upper_edge_hertz).reshape(()))
        if not (mels and mels > 0 and length and length > 0 and rate and rate > 0 and 0 <= lo_hz < hi_hz):
            raise ShapeInferenceError(
                f"need num_mel_bins > 0, dft_length > 0, sample_rate > 0 and 0 <= lower_edge_hertz < "
                f"upper_edge_hertz; got {mels}, {length}, {rate}, {lo_hz}, {hi_hz}")
        lo_mel, hi_mel = (2595.0 * math.log10(1.0 + f / 700.0) for f in (lo_hz, hi_hz))
        edges_mel = np.arange(mels + 2) * ((hi_mel - lo_mel) / (mels + 2)) + lo_mel
        edges_hz = 700.0 * (10.0 ** (edges_mel / 2595.0) - 1.0)
        edges = ((length + 1) * edges_hz // rate).astype(np.int64)
        left, center, right = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
        j = np.arange(length // 2 + 1)[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            rise = np.where(center > left, (j - left) / (center - left), 1.0)
            fall = (right - j) / (right - center)
        out = np.where((j >= left) & (j <= center) & ((center > left) | (j == center)), rise, 0.0)
        out = np.where((j >= center) & (j < right), fall, out)
        return (out.astype(dtype),)

    return run

