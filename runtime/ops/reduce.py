"""Reductions and softmax: Reduce*, ArgMax/ArgMin, Softmax, LogSoftmax, Hardmax, losses.

The ten Reduce ops share one builder driven by a table: each row gives the
numpy reduction over a tuple of axes.  Reducing over `axes=()` (what
`noop_with_empty_axes` asks for) is numpy's identity reduction, so a
composite op such as ReduceSumSquare still squares, as the spec requires.
Empty reductions yield each op's identity (0, 1, -inf, the type's minimum).
Sums of float16 accumulate in float32, as onnxruntime does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .. import wasm_ops
from ..errors import ShapeInferenceError
from ..ir import Dim, Shape, Type
from ..shapes import (InferContext, SymInts, static_len, dim_add, dims_compatible, dims_product, normalize_axis,
                      shape_str, tensor)
from .. import dtypes
from .registry import Kernel, OpContext, register

Axes = tuple[int, ...]


def _wide(x: np.ndarray) -> np.ndarray:
    """float16 computes in float32 (then rounds back once)."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _axes_error(node_label: str, axes: Sequence[int], shape: Sequence[Any]) -> ShapeInferenceError:
    return ShapeInferenceError(f"{node_label}: axes {list(axes)} are out of range or repeated for an input "
                               f"of shape {shape_str(tuple(shape))}")


def _normalize_axes(axes: Sequence[int], rank: int, node_label: str, shape: Sequence[Any]) -> Axes:
    out = []
    for a in axes:
        a = int(a)
        if not -rank <= a < max(rank, 1) or (rank == 0 and a not in (0, -1)):
            raise _axes_error(node_label, axes, shape)
        out.append(a % rank if rank else 0)
    if len(set(out)) != len(out):
        raise _axes_error(node_label, axes, shape)
    return tuple(out) if rank else ()


# ------------------------------------------------------------- reductions

def _identity_max(dtype: np.dtype) -> Any:
    """ReduceMax of nothing: -inf for floats, the smallest value otherwise."""
    if dtype.kind == "f":
        return -np.inf
    return False if dtype.kind == "b" else np.iinfo(dtype).min


def _identity_min(dtype: np.dtype) -> Any:
    if dtype.kind == "f":
        return np.inf
    return True if dtype.kind == "b" else np.iinfo(dtype).max


def _sum(x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
    w = _wide(x)
    return np.sum(w, axis=axes, keepdims=keep, dtype=w.dtype)


def _mean(x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
    """Sum then divide by the count; integers truncate toward zero like C."""
    s = np.asarray(_sum(x, axes, keep))
    count = math.prod(x.shape[a] for a in axes)
    if s.dtype.kind in "iu":
        if count == 0:
            return np.zeros_like(s)
        return (np.abs(s) // count * np.sign(s)).astype(s.dtype) if s.dtype.kind == "i" else s // count
    with np.errstate(invalid="ignore", divide="ignore"):
        s /= s.dtype.type(count)
    return s


def _max(x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
    extra = {"initial": _identity_max(x.dtype)} if x.size == 0 else {}
    return np.max(x, axis=axes, keepdims=keep, **extra)


def _min(x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
    extra = {"initial": _identity_min(x.dtype)} if x.size == 0 else {}
    return np.min(x, axis=axes, keepdims=keep, **extra)


def _prod(x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
    w = _wide(x)
    return np.prod(w, axis=axes, keepdims=keep, dtype=w.dtype)


def _l1(x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
    return _sum(np.abs(x), axes, keep)


def _sum_square(x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
    w = _wide(x)
    return np.sum(w * w, axis=axes, keepdims=keep)


def _float_of(x: np.ndarray) -> np.ndarray:
    """Integer inputs of Log/Sqrt-based reductions compute in float64."""
    return x.astype(np.float64) if x.dtype.kind in "iub" else _wide(x)


def _l2(x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
    return np.sqrt(_sum_square(_float_of(x), axes, keep))


def _log_sum(x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(_sum(_float_of(x), axes, keep))


def _log_sum_exp(x: np.ndarray, axes: Axes, keep: bool) -> np.ndarray:
    """max + log(sum(exp(x - max))): no overflow; infinite maxima shift by 0."""
    f = _float_of(x)
    m = np.asarray(np.max(f, axis=axes, keepdims=True, initial=-np.inf))
    m[~np.isfinite(m)] = 0
    e = np.subtract(f, m)
    np.exp(e, out=e)
    s = np.sum(e, axis=axes, keepdims=True)
    with np.errstate(divide="ignore"):
        np.log(s, out=s)
    s += m
    return s if keep else s.reshape([d for i, d in enumerate(s.shape) if i not in axes])


@dataclass(frozen=True)
class Reduction:
    """One Reduce op: its numpy function over an axes tuple, and the opset
    from which `axes` is an input rather than an attribute."""

    fn: Callable[[np.ndarray, Axes, bool], np.ndarray]
    axes_input_since: int = 18
    #: Combines a rank-1 shape vector (SymInts) into one dim, for shape arithmetic.
    sym: Callable[[Sequence[Dim]], Dim] | None = None


def _sym_sum(dims: Sequence[Dim]) -> Dim:
    out: Dim = 0
    for d in dims:
        out = dim_add(out, d)
    return out


REDUCTIONS: dict[str, Reduction] = {
    "ReduceSum": Reduction(_sum, axes_input_since=13, sym=_sym_sum),
    "ReduceMean": Reduction(_mean),
    "ReduceMax": Reduction(_max),
    "ReduceMin": Reduction(_min),
    "ReduceProd": Reduction(_prod, sym=dims_product),
    "ReduceL1": Reduction(_l1),
    "ReduceL2": Reduction(_l2),
    "ReduceLogSum": Reduction(_log_sum),
    "ReduceLogSumExp": Reduction(_log_sum_exp),
    "ReduceSumSquare": Reduction(_sum_square),
}


def _static_axes(ctx: InferContext | OpContext, spec: Reduction, axes_value: Any) -> list[int] | None:
    """The axes as written (attribute, or constant input), [] for none, None when only known at run."""
    if ctx.opset < spec.axes_input_since:
        return [int(a) for a in ctx.attr("axes", [])]
    if len(ctx.node.inputs) < 2 or not ctx.node.inputs[1]:
        return []
    if isinstance(axes_value, np.ndarray):
        return [int(a) for a in axes_value.reshape(-1)]
    return None


def _resolve(axes: Sequence[int], noop: bool, rank: int, label: str, shape: Sequence[Any]) -> Axes:
    """Axes to reduce: none given means all, or none at all with noop_with_empty_axes."""
    if not len(axes):
        return () if noop else tuple(range(rank))
    return _normalize_axes(axes, rank, label, shape)


def _reduced_shape(shape: Shape, axes: Axes, keep: bool) -> Shape:
    if keep:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce_rule(spec: Reduction) -> Callable[[InferContext], list[Type | None]]:
    def rule(ctx: InferContext) -> list[Type | None]:
        elem = ctx.elem(0)
        shape = ctx.shape(0)
        keep = bool(ctx.attr("keepdims", 1))
        noop = bool(ctx.attr("noop_with_empty_axes", 0))
        axes = _static_axes(ctx, spec, ctx.value(1) if ctx.has(1) else None)
        if shape is None:
            return [tensor(elem)]
        if axes is None:
            return [tensor(elem, _unknown_axes_shape(ctx, shape, keep, noop))]
        resolved = _resolve(axes, noop, len(shape), ctx.node.label(), shape)
        out = _reduced_shape(shape, resolved, keep)
        sym = ctx.sym(0)
        if spec.sym is not None and sym is not None and not sym.scalar and resolved == (0,):
            ctx.set_value(0, SymInts((spec.sym(sym.dims),), scalar=not keep))
        return [tensor(elem, out)]

    return rule


def _unknown_axes_shape(ctx: InferContext, shape: Shape, keep: bool, noop: bool) -> Shape | None:
    """Output shape when the axes input is only known at run time."""
    if keep:
        return tuple(d if d == 1 else None for d in shape)
    n_axes = static_len(ctx, 1)
    if n_axes is None:
        return None
    if n_axes == 0:
        return shape if noop else ()
    if n_axes > len(shape):
        raise ctx.error(f"axes has {n_axes} elements but the input {shape_str(shape)} has rank {len(shape)}")
    return (None,) * (len(shape) - n_axes)


def _reduce_build(spec: Reduction) -> Callable[[OpContext], Kernel]:
    def build(ctx: OpContext) -> Kernel:
        keep = bool(ctx.attr("keepdims", 1))
        noop = bool(ctx.attr("noop_with_empty_axes", 0))
        fixed = _static_axes(ctx, spec, ctx.const(1))
        label = ctx.node.label()

        def run(x: np.ndarray, axes: np.ndarray | None = None) -> tuple[np.ndarray]:
            given = fixed if fixed is not None else ([] if axes is None else axes.reshape(-1).tolist())
            resolved = _resolve(given, noop, x.ndim, label, x.shape)
            return (np.asarray(spec.fn(x, resolved, keep)).astype(x.dtype, copy=False),)

        return run

    return build


for _name, _spec in REDUCTIONS.items():
    register(_name, _reduce_build(_spec), since=1, infer=_reduce_rule(_spec))


# ----------------------------------------------------------- ArgMax/ArgMin

def _arg_rule(ctx: InferContext) -> list[Type | None]:
    shape = ctx.shape(0)
    if shape is None:
        return [tensor(dtypes.INT64)]
    if not shape:
        raise ctx.error("input must have rank >= 1, got a scalar")
    axis = normalize_axis(ctx.attr("axis", 0), len(shape), ctx.node)
    if shape[axis] == 0:
        raise ctx.error(f"cannot take the index of an extreme along the empty axis {axis} of shape {shape_str(shape)}")
    return [tensor(dtypes.INT64, _reduced_shape(shape, (axis,), bool(ctx.attr("keepdims", 1))))]


def _arg_build(fn: Callable[..., np.ndarray]) -> Callable[[OpContext], Kernel]:
    def build(ctx: OpContext) -> Kernel:
        axis_attr = int(ctx.attr("axis", 0))
        keep = bool(ctx.attr("keepdims", 1))
        last = bool(ctx.attr("select_last_index", 0))
        label = ctx.node.label()

        def run(x: np.ndarray) -> tuple[np.ndarray]:
            if x.ndim == 0 or not -x.ndim <= axis_attr < x.ndim or x.shape[axis_attr] == 0:
                raise ShapeInferenceError(f"{label}: axis {axis_attr} is invalid or empty for shape {list(x.shape)}")
            axis = axis_attr % x.ndim
            if last:
                idx = fn(np.flip(x, axis), axis=axis, keepdims=keep)
                idx = (x.shape[axis] - 1) - idx
            else:
                idx = fn(x, axis=axis, keepdims=keep)
            return (np.asarray(idx, dtype=np.int64),)

        return run

    return build


register("ArgMax", _arg_build(np.argmax), since=1, infer=_arg_rule)
register("ArgMin", _arg_build(np.argmin), since=1, infer=_arg_rule)


# ------------------------------------------------------- Softmax and kin

def _row_max(x: np.ndarray, axis: int) -> np.ndarray:
    """Max along `axis` (kept). fmax skips numpy's NaN bookkeeping and is about
    twice as fast; a NaN it skips still turns its whole row NaN after exp."""
    return np.fmax.reduce(x, axis=axis, keepdims=True)


def _row_sum(x: np.ndarray, axis: int) -> np.ndarray:
    """Sum along `axis` (kept); along a contiguous last axis einsum's unrolled
    loop is about three times faster than numpy.sum's short inner reductions."""
    if axis == x.ndim - 1 and x.flags.c_contiguous:
        return np.einsum("ij->i", x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1] + (1,))
    return np.sum(x, axis=axis, keepdims=True)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """exp(x - max) / sum on one fresh buffer; like onnxruntime, the division
    is a multiplication by the reciprocal of the sum.  In Pyodide a last-axis float32 softmax runs on the
    wasm kernel (numpy takes six passes and a temporary)."""
    if axis == x.ndim - 1:
        done = wasm_ops.softmax(x)
        if done is not None:
            return done
    out = np.subtract(x, _row_max(x, axis))
    np.exp(out, out=out)
    s = _row_sum(out, axis)
    np.reciprocal(s, out=s)
    out *= s
    return out


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    out = np.subtract(x, _row_max(x, axis))
    lse = _row_sum(np.exp(out), axis)
    np.log(lse, out=lse)
    out -= lse
    return out


def _hardmax(x: np.ndarray, axis: int) -> np.ndarray:
    """1 at the first maximum along the axis, 0 elsewhere."""
    out = np.zeros_like(x)
    np.put_along_axis(out, np.argmax(x, axis=axis, keepdims=True), 1, axis=axis)
    return out


def _softmax_rule(ctx: InferContext) -> list[Type | None]:
    rank = ctx.rank(0)
    if rank is not None:
        if rank == 0:
            raise ctx.error("input must have rank >= 1, got a scalar")
        normalize_axis(ctx.attr("axis", 1 if ctx.opset < 13 else -1), rank, ctx.node)
    return [ctx.type(0)]


def _softmax_build(fn: Callable[[np.ndarray, int], np.ndarray], widen: bool) -> Callable[[OpContext], Kernel]:
    def build(ctx: OpContext) -> Kernel:
        """Opset < 13 flattens the input to 2-D at `axis` and normalises each
        row; from 13 the op normalises along the single `axis`."""
        legacy = ctx.opset < 13
        axis_attr = int(ctx.attr("axis", 1 if legacy else -1))
        label = ctx.node.label()

        def run(x: np.ndarray) -> tuple[np.ndarray]:
            if x.ndim == 0 or not -x.ndim <= axis_attr < x.ndim:
                raise ShapeInferenceError(f"{label}: axis {axis_attr} is out of range for shape {list(x.shape)}")
            if x.size == 0:
                return (x.copy(),)
            axis = axis_attr % x.ndim
            xc = _wide(x) if widen else x
            if legacy:
                rows = xc.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))
                out = fn(rows, 1).reshape(x.shape)
            else:
                out = fn(xc, axis)
            return (out.astype(x.dtype, copy=False),)

        return run

    return build


register("Softmax", _softmax_build(_softmax, True), since=1, infer=_softmax_rule)
register("LogSoftmax", _softmax_build(_log_softmax, True), since=1, infer=_softmax_rule)
register("Hardmax", _softmax_build(_hardmax, False), since=1, infer=_softmax_rule)


# ------------------------------------------------------------------ losses

_REDUCTION_MODES = ("none", "sum", "mean")


def _loss_reduction(ctx: InferContext | OpContext) -> str:
    reduction = ctx.attr("reduction", "mean")
    if reduction not in _REDUCTION_MODES:
        raise ctx.error(f"reduction must be one of {', '.join(_REDUCTION_MODES)}, got {reduction!r}")
    return reduction


def _loss_rule(ctx: InferContext) -> list[Type | None]:
    """Loss shaped like the target (reduction none) or a scalar; log_prob like the scores."""
    reduction = _loss_reduction(ctx)
    scores, target = ctx.shape(0), ctx.shape(1)
    elem = ctx.elem(0)
    if scores is not None and len(scores) < 2:
        raise ctx.error(f"scores must have shape [N, C, d1, ...], got {shape_str(scores)}")
    if scores is not None and target is not None:
        want = (scores[0],) + scores[2:]
        if len(target) != len(want) or not all(dims_compatible(a, b) for a, b in zip(target, want)):
            raise ctx.error(f"target must have shape {shape_str(want)} for scores {shape_str(scores)}, "
                            f"got {shape_str(target)}")
    weight = ctx.shape(2) if ctx.has(2) else None
    if weight is not None and scores is not None and (len(weight) != 1 or not dims_compatible(weight[0], scores[1])):
        raise ctx.error(f"weight must have shape [C] = [{scores[1]}] for scores {shape_str(scores)}, "
                        f"got {shape_str(weight)}")
    if reduction == "none":
        loss_shape = target if target is not None else (
            None if scores is None else (scores[0],) + scores[2:])
    else:
        loss_shape = ()
    return [tensor(elem, loss_shape), ctx.type(0)][:ctx.n_out]


def _nll(logp: np.ndarray, target: np.ndarray, weight: np.ndarray | None, reduction: str,
         ignore_index: int | None, label: str) -> np.ndarray:
    """-logp[n, target[n, d], d] weighted by weight[target], ignored targets
    contributing 0; 'mean' divides by the total weight of the kept targets."""
    if logp.ndim < 2:
        raise ShapeInferenceError(f"{label}: scores must have shape [N, C, d1, ...], got {list(logp.shape)}")
    n, c = logp.shape[:2]
    if target.shape != (n,) + logp.shape[2:]:
        raise ShapeInferenceError(f"{label}: target has shape {list(target.shape)} but scores "
                                  f"{list(logp.shape)} need {[n] + list(logp.shape[2:])}")
    rest = math.prod(logp.shape[2:])
    lp = logp.reshape(n, c, rest)
    t = target.reshape(n, rest).astype(np.int64, copy=False)
    keep = None if ignore_index is None else t != ignore_index
    safe = t if keep is None else np.where(keep, t, 0)
    if safe.size and (safe.min() < 0 or safe.max() >= c):
        raise ShapeInferenceError(f"{label}: target values must lie in [0, {c}) (or equal ignore_index), "
                                  f"got values in [{safe.min()}, {safe.max()}]")
    loss = np.negative(np.take_along_axis(lp, safe[:, None, :], axis=1)[:, 0, :])
    w = None
    if weight is not None:
        w = weight.astype(loss.dtype, copy=False)[safe]
        loss *= w
    if keep is not None:
        loss[~keep] = 0
        w = keep.astype(loss.dtype) if w is None else np.where(keep, w, loss.dtype.type(0))
    if reduction == "none":
        return loss.reshape(target.shape)
    total = np.sum(loss)
    if reduction == "sum":
        return np.asarray(total)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(total / (np.sum(w) if w is not None else loss.dtype.type(loss.size)))


def _loss_attrs(ctx: OpContext) -> tuple[str, int | None]:
    ignore = ctx.attr("ignore_index", None)
    return _loss_reduction(ctx), None if ignore is None else int(ignore)


def _nll_build(ctx: OpContext) -> Kernel:
    """NegativeLogLikelihoodLoss over log-probabilities [N, C, d1, ...]."""
    reduction, ignore_index = _loss_attrs(ctx)
    label = ctx.node.label()

    def run(x: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None) -> tuple[np.ndarray]:
        return (_nll(_wide(x), target, weight, reduction, ignore_index, label).astype(x.dtype),)

    return run


def _sce_build(ctx: OpContext) -> Kernel:
    """SoftmaxCrossEntropyLoss: LogSoftmax over the class axis, then NLL;
    the optional second output is the log-probabilities."""
    reduction, ignore_index = _loss_attrs(ctx)
    want_log_prob = len(ctx.node.outputs) > 1
    label = ctx.node.label()

    def run(x: np.ndarray, target: np.ndarray, weight: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        logp = _log_softmax(_wide(x), 1) if x.size and x.ndim >= 2 else _wide(x).copy()
        loss = _nll(logp, target, weight, reduction, ignore_index, label).astype(x.dtype)
        return (loss, logp.astype(x.dtype, copy=False)) if want_log_prob else (loss,)

    return run


register("NegativeLogLikelihoodLoss", _nll_build, since=12, infer=_loss_rule)
register("SoftmaxCrossEntropyLoss", _sce_build, since=12, infer=_loss_rule)
