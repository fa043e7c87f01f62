"""Special functions numpy lacks, written for float32 speed: erf, GELU, the logistic, softplus.

They live apart from the op tables because both the elementwise ops
(ops/elementwise.py) and the fused activations (activations.py) compute
with them; scipy is not available in Pyodide.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from . import wasm_kernels

_ERF_ALPHA = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
              -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_BETA = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
             -1.42647390514189e-02)
_erf_exact = np.frompyfunc(math.erf, 1, 1)


#: Elements per block of the float32 erf/GELU: the temporaries of a block stay in L2.
BLOCK = 32768
_scratch = threading.local()


def work_blocks(n: int) -> list[np.ndarray]:
    """Three float32 work buffers of one block (per thread: sessions may run concurrently)."""
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None:
        bufs = _scratch.bufs = [np.empty(BLOCK, np.float32) for _ in range(3)]
    return [b[:n] for b in bufs]


def _erf_block(x: np.ndarray, out: np.ndarray) -> None:
    """out = erf(x) for one float32 block, in the thread's scratch buffers.

    The rational approximation takes ~25 passes; made over a whole
    activation they stream from memory and allocate a temporary each, so
    they run block by block in cache instead (3-5x faster on BERT-sized
    tensors).
    """
    xs, x2, q = work_blocks(x.size)
    np.clip(x, -4.0, 4.0, out=xs)
    np.multiply(xs, xs, out=x2)
    np.multiply(x2, _ALPHA32[0], out=out)
    out += _ALPHA32[1]
    for a in _ALPHA32[2:]:
        out *= x2
        out += a
    out *= xs
    np.multiply(x2, _BETA32[0], out=q)
    q += _BETA32[1]
    for b in _BETA32[2:]:
        q *= x2
        q += b
    out /= q


_ALPHA32 = tuple(np.float32(a) for a in _ERF_ALPHA)
_BETA32 = tuple(np.float32(b) for b in _ERF_BETA)
_ONE32, _HALF32 = np.float32(1), np.float32(0.5)


def erf(x: np.ndarray) -> np.ndarray:
    """erf for float arrays: a float32 rational approximation (a few ulp), exact math.erf for float64.

    numpy has no erf and scipy is not available in Pyodide.
    """
    if x.dtype == np.float64:
        return _erf_exact(x).astype(np.float64)
    src = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    out = np.empty(src.size, np.float32)
    for i in range(0, src.size, BLOCK):
        _erf_block(src[i:i + BLOCK], out[i:i + BLOCK])
    return out.reshape(x.shape).astype(x.dtype, copy=False)


#: GELU's Phi(x) = (1 + erf(x / sqrt 2)) / 2 is evaluated as (1 + tanh(x * Q(x^2))) / 2, Q of degree 6
#: fitted (weighted least squares toward minimax) to atanh(erf(x / sqrt 2)) / x on [0, 4 sqrt 2]:
#: erf within 2.8e-7 relative there, and x * Q(x^2) rises monotonically past 9.45 beyond it, where
#: tanh is 1 in float32 (no clipping needed; huge |x| overflow to +-inf, whose tanh is +-1).
#: numpy's tanh is vectorised, so this takes about 18 passes over a block to the rational erf's 28:
#: 30% faster per GELU (MiniLM at 128 tokens: 6 GELUs, 5.0 -> 3.5 ms), and closer to the exact GELU
#: (largest error on [-12, 12]: 6.6e-7, against 1.0e-6 through the rational erf).
_PHI_Q = tuple(np.float32(c) for c in (
    0.7978846366648688, 0.036334347455289226, -3.3910018096431274e-05, -5.4782430107014306e-05,
    3.873218311875667e-06, -1.2527203059233346e-07, 1.5677569168955756e-09))


def gelu_(y: np.ndarray) -> None:
    """Exact (erf) GELU in place on a float32 or float64 array: y *= 0.5 * (1 + erf(y / sqrt 2))."""
    if y.flags.f_contiguous and not y.flags.c_contiguous:
        y = y.T  # a transposed product (see matmul._product): same elements, C order
    if y.dtype != np.float32 or not y.flags.c_contiguous:
        y *= 0.5 * (1.0 + erf(y * y.dtype.type(1.0 / math.sqrt(2.0))))
        return
    kernels = wasm_kernels.exports("elementwise")
    if kernels is not None:  # Pyodide: the same Q in one SIMD pass (wasm/elementwise.c), about 30x faster
        kernels.gelu(y.__array_interface__["data"][0], y.size)
        return
    flat = y.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(0, flat.size, BLOCK):
            v = flat[i:i + BLOCK]
            x2, p = work_blocks(v.size)[:2]
            np.multiply(v, v, out=x2)
            np.multiply(x2, _PHI_Q[-1], out=p)
            for c in _PHI_Q[-2:0:-1]:
                p += c
                p *= x2
            p += _PHI_Q[0]
            p *= v
            np.tanh(p, out=p)
            p += _ONE32
            p *= _HALF32
            v *= p


def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    if approximate == "tanh":
        c = x.dtype.type(math.sqrt(2.0 / math.pi))
        return 0.5 * x * (1.0 + np.tanh(c * (x + x.dtype.type(0.044715) * x * x * x)))
    y = np.array(x, dtype=x.dtype, order="C")
    gelu_(y)
    return y


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic in a few passes over one new array (the tiny tensors of audio models pay per numpy
    call); far negative inputs give 0 or ~6e-39 (`logistic_of_negated_`).

    A single value (a classifier's score) is computed in Python's float64
    and rounded once: six numpy calls on one element cost ~4 us, this ~1 us.
    """
    if x.size == 1 and x.dtype.kind == "f":
        v = -float(x.reshape(-1)[0])
        return np.full(x.shape, 0.0 if v > _PY_EXP_MAX else 1.0 / (1.0 + math.exp(v)), x.dtype)
    y = np.negative(x, out=np.empty(x.shape, x.dtype))
    logistic_of_negated_(y)
    return y


def softplus(x: np.ndarray) -> np.ndarray:
    return (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype, copy=False)



#: Above this, math.exp overflows (OverflowError); the logistic of its negation is 0 in float64.
_PY_EXP_MAX = 709.0
#: Arrays up to this size are clamped below exp's overflow instead of running exp inside np.errstate:
#: entering and leaving it costs more than the clamp's pass on the tiny tensors of per-chunk audio models.
_CLAMP_MAX_SIZE = 1 << 14
#: Just below where exp overflows, per dtype: exp(88) = 1.7e38 < float32's 3.4e38.
_EXP_LIMIT = {np.dtype(np.float32): 88.0, np.dtype(np.float64): 709.0}


def logistic_of_negated_(y: np.ndarray) -> None:
    """1 / (1 + exp(y)) in place: the logistic of -y.

    Where exp would overflow, the exact result is below 1e-38 (float32):
    the clamp gives 1/(1 + exp(88)) ~ 6e-39 there, errstate's route the 0
    of 1/inf; both are 0 to any tolerance (onnxruntime gives 0 from -20).
    """
    limit = _EXP_LIMIT.get(y.dtype) if y.size <= _CLAMP_MAX_SIZE else None
    if limit is not None:
        np.minimum(y, limit, out=y)
        np.exp(y, out=y)
    else:
        with np.errstate(over="ignore"):
            np.exp(y, out=y)
    y += 1
    np.reciprocal(y, out=y)
