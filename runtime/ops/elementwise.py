"""Elementwise ops, generated from tables.

Each row gives the numpy kernel and the WGSL expression of one op (the GPU
backend compiles the same table into shaders), so an elementwise op is
added by adding a row.  Attributes are read once when the node is built.
Transcendental functions on float16 compute in float32 and round back, as
onnxruntime does, so half-precision models keep their accuracy.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .. import dtypes, wasm_kernels, wasm_ops
from ..ir import AttrMixin, Dim, Type
from ..shapes import (InferContext, SymInts, broadcast_rule, broadcast_shapes, dim_add, dim_div, dim_mul, dim_sub,
                      same_as_input, tensor)
from .registry import OpContext, register

Fn = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------ erf / gelu

_ERF_ALPHA = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
              -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)
_ERF_BETA = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
             -1.42647390514189e-02)
_erf_exact = np.frompyfunc(math.erf, 1, 1)


#: Elements per block of the float32 erf/GELU: the temporaries of a block stay in L2.
_BLOCK = 32768
_scratch = threading.local()


def _blocks(n: int) -> list[np.ndarray]:
    """Three float32 work buffers of one block (per thread: sessions may run concurrently)."""
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None:
        bufs = _scratch.bufs = [np.empty(_BLOCK, np.float32) for _ in range(3)]
    return [b[:n] for b in bufs]


def _erf_block(x: np.ndarray, out: np.ndarray) -> None:
    """out = erf(x) for one float32 block, in the thread's scratch buffers.

    The rational approximation takes ~25 passes; made over a whole
    activation they stream from memory and allocate a temporary each, so
    they run block by block in cache instead (3-5x faster on BERT-sized
    tensors).
    """
    xs, x2, q = _blocks(x.size)
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
    for i in range(0, src.size, _BLOCK):
        _erf_block(src[i:i + _BLOCK], out[i:i + _BLOCK])
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
        for i in range(0, flat.size, _BLOCK):
            v = flat[i:i + _BLOCK]
            x2, p = _blocks(v.size)[:2]
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
    call); far negative inputs give 0 or ~6e-39 (`_logistic_of_negated_`).

    A single value (a classifier's score) is computed in Python's float64
    and rounded once: six numpy calls on one element cost ~4 us, this ~1 us.
    """
    if x.size == 1 and x.dtype.kind == "f":
        v = -float(x.reshape(-1)[0])
        return np.full(x.shape, 0.0 if v > _PY_EXP_MAX else 1.0 / (1.0 + math.exp(v)), x.dtype)
    y = np.negative(x, out=np.empty(x.shape, x.dtype))
    _logistic_of_negated_(y)
    return y


def softplus(x: np.ndarray) -> np.ndarray:
    return (np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))).astype(x.dtype, copy=False)


# ------------------------------------------------------------------ fused activations

#: An activation applied in place to a kernel's fresh output (the epilogue of Conv, ConvTranspose and
#: FusedMatMul), so it costs no extra tensor.  What it returns is ignored (numpy's `out=` calls return `y`).
Activation = Callable[[np.ndarray], object]


#: Float arrays from this size up are rectified by a clip (see `_relu_`).
_RELU_CLIP_MIN_SIZE = 8192


def _relu_(y: np.ndarray) -> None:
    """max(y, 0) in place; on big float arrays as a clip, which numpy vectorises where its maximum is not
    (3x faster on a CNN's feature maps), with the same values (NaN stays NaN).  np.clip's Python wrapper
    costs ~1.5 us more per call, which small arrays (per-chunk audio models) do not win back."""
    if y.dtype.kind == "f" and y.size >= _RELU_CLIP_MIN_SIZE:
        np.clip(y, 0, np.inf, out=y)
    else:
        np.maximum(y, 0, out=y)


def _tanh_(y: np.ndarray) -> None:
    np.tanh(y, out=y)


def _sigmoid_(y: np.ndarray) -> None:
    """1 / (1 + exp(-y)) in place (see `_logistic_of_negated_` for far negative y)."""
    np.negative(y, out=y)
    _logistic_of_negated_(y)


#: Above this, math.exp overflows (OverflowError); the logistic of its negation is 0 in float64.
_PY_EXP_MAX = 709.0
#: Arrays up to this size are clamped below exp's overflow instead of running exp inside np.errstate:
#: entering and leaving it costs more than the clamp's pass on the tiny tensors of per-chunk audio models.
_CLAMP_MAX_SIZE = 1 << 14
#: Just below where exp overflows, per dtype: exp(88) = 1.7e38 < float32's 3.4e38.
_EXP_LIMIT = {np.dtype(np.float32): 88.0, np.dtype(np.float64): 709.0}


def _logistic_of_negated_(y: np.ndarray) -> None:
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


def _hardswish_(y: np.ndarray) -> None:
    """y * clip(y / 6 + 0.5, 0, 1) in place, block by block through the thread's float32 work buffer.

    No temporary the size of y (a MobileNet stem's 800 KB): the block
    stays in cache, and no allocation can fault its pages in again when
    glibc has handed them back to the OS (which made a stem conv called in
    a loop 2.5x slower; within a model run the gain is ~1%).
    """
    if y.dtype != np.float32 or not y.flags.c_contiguous:
        t = y * (1.0 / 6.0)
        t += 0.5
        np.clip(t, 0, 1, out=t)
        y *= t
        return
    flat = y.reshape(-1)
    for start in range(0, flat.size, _BLOCK):
        part = flat[start:start + _BLOCK]
        t = _blocks(part.size)[0]
        np.multiply(part, np.float32(1.0 / 6.0), out=t)
        t += np.float32(0.5)
        np.clip(t, 0, 1, out=t)
        part *= t


def _clip_(lo: float, hi: float) -> Activation:
    return lambda y: np.clip(y, lo, hi, out=y)


def _quantize_grid_(lo: float, hi: float) -> Activation:
    """Saturate to [lo, hi] and round half to even: a requantisation landing on the integer grid
    (passes/quant_fusion.py), done on the output block while it is in cache."""
    def run(y: np.ndarray) -> None:
        np.clip(y, lo, hi, out=y)
        np.rint(y, out=y)

    return run


def _quantize_grid_scaled_(lo: float, hi: float, scale: float) -> Activation:
    """QuantizeGrid, then back to real values (* scale): a QDQ graph's Q -> DQ after a product whose
    real values something else (a residual Add) reads (passes/quant_fusion.py)."""
    grid, s = _quantize_grid_(lo, hi), np.float32(scale)

    def run(y: np.ndarray) -> None:
        grid(y)
        y *= s

    return run


def _quantize_grid_then_(ctx: AttrMixin) -> Activation:
    """QuantizeGrid, then back to real values (* scale), an activation (HardSwish, HardSigmoid or Relu,
    computed as those ops compute), and requantisation onto the next grid (/ out_scale, round half to
    even, saturate): a QDQ graph's Q -> DQ -> activation -> Q chain after a product
    (passes/quant_fusion.py), applied to the output block in cache, with the ops' own roundings."""
    grid = _quantize_grid_(float(ctx.attr("activation_min")), float(ctx.attr("activation_max")))
    scale, out_scale = np.float32(ctx.attr("activation_scale")), np.float32(ctx.attr("activation_out_scale"))
    lo, hi = float(ctx.attr("activation_out_min")), float(ctx.attr("activation_out_max"))
    then = ctx.attr("activation_then")
    alpha, beta = np.float32(ctx.attr("activation_alpha", 0.2)), np.float32(ctx.attr("activation_beta", 0.5))
    if then not in ("HardSwish", "HardSigmoid", "Relu"):
        raise ctx.error(f"activation_then {then!r} is not HardSwish, HardSigmoid or Relu")

    def run(y: np.ndarray) -> None:
        grid(y)
        y *= scale
        if then == "HardSwish":
            t = y / 6
            t += 0.5
            np.clip(t, 0, 1, out=t)
            y *= t
        elif then == "HardSigmoid":
            y *= alpha
            y += beta
            np.clip(y, 0, 1, out=y)
        else:
            np.maximum(y, 0, out=y)
        np.divide(y, out_scale, out=y)
        np.rint(y, out=y)
        np.clip(y, lo, hi, out=y)

    return run


def _leaky_relu_(alpha: float) -> Activation:
    if 0.0 <= alpha <= 1.0:
        return lambda y: np.maximum(y, y * alpha, out=y)
    return lambda y: np.multiply(y, alpha, out=y, where=y < 0)


def _hard_sigmoid_(alpha: float, beta: float) -> Activation:
    def run(y: np.ndarray) -> None:
        y *= alpha
        y += beta
        np.clip(y, 0, 1, out=y)

    return run


@dataclass(frozen=True)
class FusedActivation:
    """A fused activation: applied in place by calling it (numpy), and known by name and parameters, so
    that kernels which take it into their own store (the WebAssembly ones, runtime/wasm_ops.py) can."""

    name: str
    run: Activation
    #: The ONNX op's parameters: Clip's min and max, HardSigmoid's alpha and beta, LeakyRelu's alpha.
    p0: float = 0.0
    p1: float = 0.0

    def __call__(self, y: np.ndarray) -> None:
        self.run(y)


def _fused(ctx: AttrMixin, name: str) -> FusedActivation:
    """The `activation` a fusion pass attached (passes/fuse.py), from the node's `activation_*` parameters,
    whose defaults are those of the ONNX op that was fused."""
    if name == "Clip":
        lo, hi = float(ctx.attr("activation_min", -math.inf)), float(ctx.attr("activation_max", math.inf))
        return FusedActivation(name, _clip_(lo, hi), lo, hi)
    if name == "QuantizeGrid":
        lo, hi = float(ctx.attr("activation_min")), float(ctx.attr("activation_max"))
        return FusedActivation(name, _quantize_grid_(lo, hi), lo, hi)
    if name == "QuantizeGridScaled":
        lo, hi = float(ctx.attr("activation_min")), float(ctx.attr("activation_max"))
        return FusedActivation(name, _quantize_grid_scaled_(lo, hi, float(ctx.attr("activation_scale"))), lo, hi)
    if name == "QuantizeGridThen":
        return FusedActivation(name, _quantize_grid_then_(ctx))
    if name == "HardSigmoid":
        alpha, beta = float(ctx.attr("activation_alpha", 0.2)), float(ctx.attr("activation_beta", 0.5))
        return FusedActivation(name, _hard_sigmoid_(alpha, beta), alpha, beta)
    if name == "LeakyRelu":
        alpha = float(ctx.attr("activation_alpha", 0.01))
        return FusedActivation(name, _leaky_relu_(alpha), alpha)
    return FusedActivation(name, _PLAIN_ACTIVATIONS[name])


#: The parameterless activations fusion passes attach.
_PLAIN_ACTIVATIONS: dict[str, Activation] = {"Relu": _relu_, "Tanh": _tanh_, "Sigmoid": _sigmoid_, "Gelu": gelu_,
                                             "HardSwish": _hardswish_}
_FUSED_NAMES = frozenset(_PLAIN_ACTIVATIONS) | {"Clip", "HardSigmoid", "LeakyRelu", "QuantizeGrid",
                                                "QuantizeGridScaled", "QuantizeGridThen"}


def fused_activation(ctx: AttrMixin, allowed: Sequence[str]) -> FusedActivation | None:
    """The in-place activation a fusion pass attached to this node (its `activation` attribute), or None.

    `allowed` names the activations the op's fusion produces; any other name is an error naming the node.
    """
    name = ctx.attr("activation", None)
    if name is None:
        return None
    if name not in allowed or name not in _FUSED_NAMES:
        raise ctx.error(f"fused activation {name!r} is not one of {', '.join(allowed)}")
    return _fused(ctx, name)


# ------------------------------------------------------------------ unary table

@dataclass(frozen=True)
class Unary:
    """One unary op: `make(ctx)` returns the numpy function for a node.

    `wgsl` is the shader expression over `x` (attributes as `{name}`), None
    when the op has no GPU kernel. `upcast16` computes float16 in float32.
    """

    make: Callable[[OpContext], Fn]
    wgsl: str | None
    since: int = 1
    upcast16: bool = False
    out_elem: int | None = None


def _plain(fn: Fn) -> Callable[[OpContext], Fn]:
    return lambda ctx: fn


def _with(build: Callable[[Any], Fn], **defaults: float) -> Callable[[OpContext], Fn]:
    """A function of x whose parameters come from attributes with defaults."""

    def make(ctx: OpContext) -> Fn:
        params = {k: ctx.attr(k, v) for k, v in defaults.items()}
        return build(type("P", (), params))

    return make


def _isinf(ctx: OpContext) -> Fn:
    pos, neg = ctx.attr("detect_positive", 1), ctx.attr("detect_negative", 1)
    return lambda x: np.isinf(x) & ((x > 0) if pos else False) | np.isinf(x) & ((x < 0) if neg else False)


def _gelu(ctx: OpContext) -> Fn:
    approx = ctx.attr("approximate", "none")
    return lambda x: gelu(x, approx)


def _shrink(p: Any) -> Fn:
    return lambda x: np.where(x < -p.lambd, x + p.bias, np.where(x > p.lambd, x - p.bias, 0)).astype(x.dtype)


UNARY: dict[str, Unary] = {
    "Abs": Unary(_plain(np.abs), "abs(x)"),
    "Neg": Unary(_plain(np.negative), "-x"),
    "Exp": Unary(_plain(np.exp), "exp(x)", upcast16=True),
    "Log": Unary(_plain(np.log), "wi_log(x)", upcast16=True),
    "Sqrt": Unary(_plain(np.sqrt), "sqrt(x)"),
    "Reciprocal": Unary(_plain(np.reciprocal), "1.0 / x"),
    "Floor": Unary(_plain(np.floor), "floor(x)"),
    "Ceil": Unary(_plain(np.ceil), "ceil(x)"),
    "Round": Unary(_plain(np.round), "round(x)", since=11),
    "Sign": Unary(_plain(np.sign), "sign(x)", since=9),
    "Sin": Unary(_plain(np.sin), "sin(x)", since=7, upcast16=True),
    "Cos": Unary(_plain(np.cos), "cos(x)", since=7, upcast16=True),
    "Tan": Unary(_plain(np.tan), "tan(x)", since=7, upcast16=True),
    "Asin": Unary(_plain(np.arcsin), "asin(x)", since=7, upcast16=True),
    "Acos": Unary(_plain(np.arccos), "acos(x)", since=7, upcast16=True),
    "Atan": Unary(_plain(np.arctan), "atan(x)", since=7, upcast16=True),
    "Sinh": Unary(_plain(np.sinh), "sinh(x)", since=9, upcast16=True),
    "Cosh": Unary(_plain(np.cosh), "cosh(x)", since=9, upcast16=True),
    "Asinh": Unary(_plain(np.arcsinh), "asinh(x)", since=9, upcast16=True),
    "Acosh": Unary(_plain(np.arccosh), "acosh(x)", since=9, upcast16=True),
    "Atanh": Unary(_plain(np.arctanh), "atanh(x)", since=9, upcast16=True),
    "Erf": Unary(_plain(erf), "erf(x)", since=9, upcast16=True),
    "Sigmoid": Unary(_plain(sigmoid), "1.0 / (1.0 + exp(-x))", upcast16=True),
    "Tanh": Unary(_plain(np.tanh), "tanh(x)", upcast16=True),
    "Relu": Unary(_plain(lambda x: np.maximum(x, 0)), "max(x, 0.0)"),
    "Softplus": Unary(_plain(softplus), "select(log(1.0 + exp(x)), x, x > 20.0)", upcast16=True),
    "Softsign": Unary(_plain(lambda x: x / (1 + np.abs(x))), "x / (1.0 + abs(x))"),
    "Mish": Unary(_plain(lambda x: x * np.tanh(softplus(x))), "x * tanh(log(1.0 + exp(x)))", since=18,
                  upcast16=True),
    "Gelu": Unary(_gelu, None, since=20, upcast16=True),
    "Swish": Unary(_with(lambda p: lambda x: x * sigmoid(x * x.dtype.type(p.alpha)), alpha=1.0),
                   "x / (1.0 + exp(-{alpha} * x))", since=24, upcast16=True),
    "HardSwish": Unary(_plain(lambda x: x * np.clip(x / 6 + 0.5, 0, 1)), "x * clamp(x / 6.0 + 0.5, 0.0, 1.0)",
                       since=14),
    "LeakyRelu": Unary(_with(lambda p: lambda x: np.where(x >= 0, x, x * x.dtype.type(p.alpha)), alpha=0.01),
                       "select(x * {alpha}, x, x >= 0.0)"),
    "Elu": Unary(_with(lambda p: lambda x: np.where(x > 0, x, p.alpha * np.expm1(np.minimum(x, 0)))
                       .astype(x.dtype), alpha=1.0), "select({alpha} * (exp(x) - 1.0), x, x > 0.0)",
                 upcast16=True),
    "Selu": Unary(_with(lambda p: lambda x: (p.gamma * np.where(x > 0, x, p.alpha * np.expm1(np.minimum(x, 0))))
                        .astype(x.dtype), alpha=1.67326319217681884765625, gamma=1.05070102214813232421875),
                  "{gamma} * select({alpha} * (exp(x) - 1.0), x, x > 0.0)", upcast16=True),
    "Celu": Unary(_with(lambda p: lambda x: (np.maximum(x, 0) + np.minimum(0, p.alpha * np.expm1(x / p.alpha)))
                        .astype(x.dtype), alpha=1.0), "max(x, 0.0) + min(0.0, {alpha} * (exp(x / {alpha}) - 1.0))",
                  since=12, upcast16=True),
    "HardSigmoid": Unary(_with(lambda p: lambda x: np.clip(x * x.dtype.type(p.alpha) + x.dtype.type(p.beta), 0, 1),
                               alpha=0.2, beta=0.5), "clamp(x * {alpha} + {beta}, 0.0, 1.0)"),
    "ThresholdedRelu": Unary(_with(lambda p: lambda x: np.where(x > p.alpha, x, 0).astype(x.dtype), alpha=1.0),
                             "select(0.0, x, x > {alpha})", since=10),
    "Shrink": Unary(_with(_shrink, bias=0.0, lambd=0.5), None, since=9),
    "Not": Unary(_plain(np.logical_not), None),
    "BitwiseNot": Unary(_plain(np.invert), None, since=18),
    "IsNaN": Unary(_plain(np.isnan), None, since=9, out_elem=dtypes.BOOL),
    "IsInf": Unary(_isinf, None, since=10, out_elem=dtypes.BOOL),
}


def _unary_kernel(spec: Unary) -> Callable[[OpContext], Any]:
    def build(ctx: OpContext) -> Any:
        fn = spec.make(ctx)
        if spec.upcast16:
            def run16(x: np.ndarray) -> tuple[np.ndarray]:
                if x.dtype == np.float16:
                    return (np.asarray(fn(x.astype(np.float32))).astype(np.float16),)
                return (np.asarray(fn(x)),)
            return run16
        # numpy ufuncs turn 0-d inputs into scalars: outputs must stay arrays
        return lambda x: (np.asarray(fn(x)),)

    return build


def _unary_rule(out_elem: int | None) -> Callable[[InferContext], list[Type | None]]:
    if out_elem is None:
        return same_as_input

    def rule(ctx: InferContext) -> list[Type | None]:
        return [tensor(out_elem, ctx.shape(0))]

    return rule


for _name, _spec in UNARY.items():
    register(_name, _unary_kernel(_spec), since=_spec.since, infer=_unary_rule(_spec.out_elem))

# The fusion pass rewrites exporters' decomposed GELU and hard-swish into these, whatever the model's opset.
register("Gelu", _unary_kernel(UNARY["Gelu"]), domain="webinfer", infer=same_as_input)
register("HardSwish", _unary_kernel(UNARY["HardSwish"]), domain="webinfer", infer=same_as_input)


# ----------------------------------------------------------------- binary table

def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division truncates toward zero (C semantics, as onnxruntime)."""
    if a.dtype.kind in "iu":
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.floor_divide(a, b)
            if a.dtype.kind == "i":
                q = np.where((q < 0) & (q * b != a), q + 1, q)
        return q.astype(a.dtype, copy=False)
    return np.divide(a, b)


def _pow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pow keeps the base's dtype whatever the exponent's."""
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.power(a, b.astype(a.dtype)).astype(a.dtype, copy=False)
    if a.dtype.kind in "iu":
        return np.power(a.astype(np.float64), b).astype(a.dtype)
    if a.dtype == np.float16:
        return np.power(a.astype(np.float32), b.astype(np.float32)).astype(np.float16)
    return np.power(a, b.astype(a.dtype, copy=False))


def _mod(ctx: OpContext) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if ctx.attr("fmod", 0):
        return np.fmod
    return np.mod


def _bitshift(ctx: OpContext) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    direction = ctx.attr("direction")
    if direction == "LEFT":
        return lambda a, b: np.left_shift(a, b.astype(a.dtype))
    if direction == "RIGHT":
        return lambda a, b: np.right_shift(a, b.astype(a.dtype))
    raise ctx.error(f"direction must be LEFT or RIGHT, got {direction!r}")


def _prelu(a: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """With finite slopes, arithmetic instead of np.where's mask and select, which is 3-25x slower on a
    per-channel slope (MediaPipe's models have a PRelu after most convs): max(x, slope * x) when every
    slope is at most 1 (it picks x for x >= 0 and slope * x below), else min(x, 0) * slope + max(x, 0)."""
    if slope.size and np.isfinite(slope).all():
        if slope.max() <= 1:
            y = np.multiply(a, slope, dtype=a.dtype)
            return np.maximum(y, a, out=y)
        y = np.minimum(a, 0)
        np.multiply(y, slope, out=y, casting="same_kind")
        y += np.maximum(a, 0)
        return y
    return np.where(a >= 0, a, a * slope).astype(a.dtype, copy=False)


def _prelu_build(ctx: OpContext) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Before opset 7 a 1-D slope of C values applies per channel (axis 1), not numpy-style."""
    if ctx.opset >= 7:
        return _prelu

    def legacy(a: np.ndarray, slope: np.ndarray) -> np.ndarray:
        if slope.ndim == 1 and slope.size > 1 and a.ndim > 2:
            slope = slope.reshape((-1,) + (1,) * (a.ndim - 2))
        return _prelu(a, slope)

    return legacy


@dataclass(frozen=True)
class Binary:
    make: Callable[[OpContext], Callable[[np.ndarray, np.ndarray], np.ndarray]]
    wgsl: str | None
    since: int = 1
    out_elem: int | None = None


def _bin(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[[OpContext], Any]:
    return lambda ctx: fn


BINARY: dict[str, Binary] = {
    "Add": Binary(_bin(np.add), "a + b"),
    "Sub": Binary(_bin(np.subtract), "a - b"),
    "Mul": Binary(_bin(np.multiply), "a * b"),
    "Div": Binary(_bin(_div), "a / b"),
    "Pow": Binary(_bin(_pow), "pow(a, b)"),
    "Mod": Binary(_mod, None, since=10),
    "PRelu": Binary(_prelu_build, "select(a * b, a, a >= 0.0)"),
    "And": Binary(_bin(np.logical_and), None, out_elem=dtypes.BOOL),
    "Or": Binary(_bin(np.logical_or), None, out_elem=dtypes.BOOL),
    "Xor": Binary(_bin(np.logical_xor), None, out_elem=dtypes.BOOL),
    "Equal": Binary(_bin(np.equal), None, out_elem=dtypes.BOOL),
    "Less": Binary(_bin(np.less), None, out_elem=dtypes.BOOL),
    "Greater": Binary(_bin(np.greater), None, out_elem=dtypes.BOOL),
    "LessOrEqual": Binary(_bin(np.less_equal), None, since=12, out_elem=dtypes.BOOL),
    "GreaterOrEqual": Binary(_bin(np.greater_equal), None, since=12, out_elem=dtypes.BOOL),
    "BitShift": Binary(_bitshift, None, since=11),
    "BitwiseAnd": Binary(_bin(np.bitwise_and), None, since=18),
    "BitwiseOr": Binary(_bin(np.bitwise_or), None, since=18),
    "BitwiseXor": Binary(_bin(np.bitwise_xor), None, since=18),
}


def _binary_kernel(ctx: OpContext, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], legacy: bool) -> Any:
    if legacy and ctx.attr("broadcast", 0):
        # opset < 7: B broadcasts onto A from `axis`
        axis = ctx.attr("axis", None)

        def run_legacy(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
            if axis is not None and b.ndim:
                ax = axis % a.ndim
                b = b.reshape(b.shape + (1,) * (a.ndim - ax - b.ndim))
            return (np.asarray(fn(a, b)),)

        return run_legacy
    name = _WASM_BINARY.get(fn)
    if name is not None:
        def run_wasm(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray]:
            """Pyodide: float32 Add/Sub/Mul in one SIMD pass (numpy there runs scalar loops)."""
            y = wasm_ops.binary(name, a, b)
            return (np.asarray(fn(a, b)) if y is None else y,)

        return run_wasm
    return lambda a, b: (np.asarray(fn(a, b)),)


#: The binary ops the wasm `binary` kernel runs, by numpy function.
_WASM_BINARY: dict[Any, str] = {np.add: "Add", np.subtract: "Sub", np.multiply: "Mul"}


def _binary_build(spec: Binary) -> Callable[[OpContext], Any]:
    def build(ctx: OpContext) -> Any:
        return _binary_kernel(ctx, spec.make(ctx), ctx.opset < 7)

    return build


# ------------------------------------------- shape arithmetic at load (SymInts)
#
# Exporters compute Reshape/Expand targets with Add/Sub/Mul/Div/Equal/Where on
# int64 shape vectors; doing that arithmetic on SymInts lets such targets
# resolve at load (exactly, or symbolically as 'seq+1', 'batch*12', ...).

_INT_SHAPE_TYPES = (dtypes.INT64, dtypes.INT32)


def _sym_div(a: Dim, b: Dim) -> Dim:
    """Div on ints truncates toward zero like the kernel; symbolic dims are non-negative, so floor is right."""
    if isinstance(a, int) and isinstance(b, int):
        if b == 0:
            return None
        q = abs(a) // abs(b)
        return -q if (a < 0) != (b < 0) else q
    return dim_div(a, b)


def _sym_equal(a: Dim, b: Dim) -> Dim:
    """1/0 when decidable: equal ints or symbols; a symbolic size never equals a negative int."""
    if a is None or b is None:
        return None
    if a == b:
        return 1
    if isinstance(a, int) and isinstance(b, int):
        return 0
    other = a if isinstance(a, int) else b
    return 0 if isinstance(other, int) and other < 0 else None


_SYM_BINARY: dict[str, Callable[[Dim, Dim], Dim]] = {
    "Add": dim_add, "Sub": dim_sub, "Mul": dim_mul, "Div": _sym_div, "Equal": _sym_equal}


def _set_sym(ctx: InferContext, dims: tuple[Dim, ...], scalar: bool, elem: int | None) -> None:
    """Record the result unless an int element overflows the tensor's type (the kernel would wrap)."""
    bits = 64 if elem == dtypes.INT64 else 32
    if all(not isinstance(d, int) or -(1 << (bits - 1)) <= d < 1 << (bits - 1) for d in dims):
        ctx.set_value(0, SymInts(dims, scalar))


def _sym_broadcast(values: list[SymInts]) -> tuple[list[tuple[Dim, ...]], bool] | None:
    """Element lists of rank <= 1 SymInts broadcast to one length, and whether the result is a scalar."""
    n = max(len(v.dims) for v in values)
    if any(len(v.dims) not in (1, n) for v in values):
        return None
    return [v.dims if len(v.dims) == n else v.dims * n for v in values], all(v.scalar for v in values)


def _sym_binary_rule(name: str, out_elem: int | None) -> Callable[[InferContext], list[Type | None]]:
    base, fn = broadcast_rule(out_elem), _SYM_BINARY[name]

    def rule(ctx: InferContext) -> list:
        out = base(ctx)
        a, b = ctx.sym(0), ctx.sym(1)
        if a is not None and b is not None and ctx.elem(0) in _INT_SHAPE_TYPES:
            spread = _sym_broadcast([a, b])
            if spread is not None:
                (xs, ys), scalar = spread
                _set_sym(ctx, tuple(fn(x, y) for x, y in zip(xs, ys)), scalar, ctx.elem(0))
        return out

    return rule


for _name, _bspec in BINARY.items():
    _rule: Callable[[InferContext], list[Type | None]]
    if _name == "PRelu":  # the slope broadcasts onto X (unidirectionally): Y has X's shape
        _rule = same_as_input
    elif _name in _SYM_BINARY:
        _rule = _sym_binary_rule(_name, _bspec.out_elem)
    else:
        _rule = broadcast_rule(_bspec.out_elem)
    register(_name, _binary_build(_bspec), since=_bspec.since, infer=_rule)


# --------------------------------------------------------------- variadic ops

def _variadic(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], mean: bool = False) -> Callable[[OpContext], Any]:
    def build(ctx: OpContext) -> Any:
        def run(*xs: np.ndarray) -> tuple[np.ndarray]:
            out = xs[0]
            for x in xs[1:]:
                out = fn(out, x)
            if mean:
                out = out / len(xs)
                out = out.astype(xs[0].dtype, copy=False)
            return (np.asarray(out),)

        return run

    return build


register("Max", _variadic(np.maximum), infer=broadcast_rule())
register("Min", _variadic(np.minimum), infer=broadcast_rule())
register("Sum", _variadic(np.add), infer=broadcast_rule())
register("Mean", _variadic(np.add, mean=True), infer=broadcast_rule())


# ------------------------------------------------------------------ ternary

def _where(ctx: OpContext) -> Any:
    return lambda c, a, b: (np.where(c, a, b),)


def _where_cond(ctx: InferContext) -> SymInts | None:
    """The condition as 0/1 SymInts: from Equal on shapes, or a constant bool vector."""
    sym = ctx.sym(0)
    if sym is not None:
        return sym
    value = ctx.value(0)
    if isinstance(value, np.ndarray) and value.dtype == np.bool_ and value.ndim <= 1 and value.size <= 64:
        return SymInts(tuple(int(v) for v in value.reshape(-1)), value.ndim == 0)
    return None


def _where_rule(ctx: InferContext) -> list:
    out = [tensor(ctx.elem(1), broadcast_shapes([ctx.shape(0), ctx.shape(1), ctx.shape(2)], ctx.node))]
    cond, a, b = _where_cond(ctx), ctx.sym(1), ctx.sym(2)
    if cond is not None and a is not None and b is not None and ctx.elem(1) in _INT_SHAPE_TYPES:
        spread = _sym_broadcast([cond, a, b])
        if spread is not None:
            (cs, xs, ys), scalar = spread
            picked = tuple(x if c == 1 else y if c == 0 else None for c, x, y in zip(cs, xs, ys))
            _set_sym(ctx, picked, scalar, ctx.elem(1))
    return out


register("Where", _where, since=9, infer=_where_rule)


def _clip(ctx: OpContext) -> Any:
    if ctx.opset < 11:
        lo, hi = ctx.attr("min", -3.4028234663852886e38), ctx.attr("max", 3.4028234663852886e38)

        def run_attr(x: np.ndarray) -> tuple[np.ndarray]:
            return (np.asarray(np.clip(x, x.dtype.type(lo), x.dtype.type(hi))),)

        return run_attr

    def run(x: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> tuple[np.ndarray]:
        out = x
        if lo is not None:
            out = np.maximum(out, lo.astype(x.dtype, copy=False))
        if hi is not None:
            out = np.minimum(out, hi.astype(x.dtype, copy=False))
        return (np.asarray(out),)

    return run


register("Clip", _clip, infer=same_as_input)
