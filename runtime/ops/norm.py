"""Normalizations: Batch-, Instance-, Layer-, Group-, RMS-, Lp- and MeanVariance-Normalization, LRN.

Statistics are computed in float32 for float16 inputs (float64 stays
float64): half precision has too few bits to hold sums of squares, and
onnxruntime does the same.  Kernels normalize over a 2-D or 3-D *view* of
the input (rows x normalized elements), so one code path serves every axis
and rank, and each step writes into the one array that becomes the output:
LayerNormalization and BatchNormalization are on the hot path of
transformers and CNNs.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from .. import dtypes, wasm_ops
from ..ir import Dim, Shape, Type
from ..shapes import InferContext, dims_compatible, normalize_axis, same_as_input, shape_str, tensor
from .registry import OpContext, PerShape, op


def _work_dtype(x: np.ndarray) -> type[np.floating]:
    """The precision statistics are computed in: float64 for double, float32 otherwise."""
    return np.float64 if x.dtype == np.float64 else np.float32


def _check_unidirectional(ctx: Any, what: str, shape: Sequence[Dim] | None, xshape: Sequence[Dim] | None) -> None:
    """`what` (scale, bias) must broadcast onto X without changing X's shape."""
    if shape is None or xshape is None:
        return
    ok = len(shape) <= len(xshape) and all(
        d == 1 or dims_compatible(d, x) for d, x in zip(reversed(shape), reversed(xshape)))
    if not ok:
        raise ctx.error(f"{what} of shape {shape_str(tuple(shape))} does not broadcast onto X of shape "
                        f"{shape_str(tuple(xshape))}")


def _row_stats(rows: np.ndarray, eps: float, center: bool = True) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Statistics over the last axis of `rows` (work dtype).

    Returns (centred rows as a fresh array, or `rows` itself when not
    centring; mean [..., 1] or None; 1/std (or 1/rms) [..., 1]).  The caller applies
    1/std, so it can fold it into a per-row scale.  Row sums are a matrix-vector
    product and the variance a dot product of the centred rows with
    themselves (both BLAS/einsum passes, faster than ufunc reductions), so
    the only full-size temporary is the output itself.
    """
    n = rows.shape[-1]
    if center:
        mean = (rows @ np.ones(n, dtype=rows.dtype))[..., None]
        mean /= max(n, 1)
        out = rows - mean
    else:
        mean = None
        out = rows
    sq = np.einsum("...i,...i->...", out, out)[..., None]
    sq /= max(n, 1)
    sq += eps
    inv = 1.0 / np.sqrt(sq)
    return out, mean, inv


# ------------------------------------------------------------ BatchNormalization

def _bn_training(ctx: InferContext | OpContext) -> bool:
    """Whether the node computes batch statistics (the mode rules changed across opsets)."""
    if ctx.opset >= 14:
        return bool(ctx.attr("training_mode", 0))
    if ctx.opset < 7 and not ctx.attr("is_test", 0):
        return True
    return any(o for o in ctx.node.outputs[1:])


def _bn_rule(ctx: InferContext) -> list[Type | None]:
    xs = ctx.shape(0)
    if xs is not None and len(xs) < 2:
        raise ctx.error(f"X must have rank >= 2 (N x C x ...), got shape {shape_str(xs)}")
    spatial = ctx.opset >= 9 or ctx.attr("spatial", 1)
    want: Shape | None = None
    if xs is not None:
        want = (xs[1],) if spatial else tuple(xs[1:])
    for i, name in enumerate(("scale", "B", "mean", "var"), start=1):
        s = ctx.shape(i)
        if s is not None and want is not None and (
                len(s) != len(want) or not all(dims_compatible(a, b) for a, b in zip(s, want))):
            raise ctx.error(f"{name} has shape {shape_str(s)}, expected {shape_str(want)} for X of shape "
                            f"{shape_str(xs)}")
    if ctx.opset >= 14 and not ctx.attr("training_mode", 0) and any(o for o in ctx.node.outputs[1:]):
        raise ctx.error("running_mean/running_var outputs are only valid with training_mode=1")
    stat_shape = ctx.shape(3) if ctx.shape(3) is not None else want
    stat_elem = ctx.elem(3) if ctx.opset >= 14 else ctx.elem(0)
    return [tensor(ctx.elem(0), xs), *(tensor(stat_elem, stat_shape) for _ in range(ctx.n_out - 1))]


@op("BatchNormalization", since=1, infer=_bn_rule)
def batch_normalization(ctx: OpContext) -> Any:
    """Inference folds the four parameters into one scale and one shift per channel
    (computed once when they are constants), so a run is one multiply-add;
    training mode normalizes with the batch's own statistics and also returns
    the running statistics updated with `momentum`."""
    eps = float(ctx.attr("epsilon", 1e-5))
    momentum = float(ctx.attr("momentum", 0.9))
    spatial = ctx.opset >= 9 or bool(ctx.attr("spatial", 1))
    training = _bn_training(ctx)

    def param_view(p: np.ndarray, x: np.ndarray, name: str) -> np.ndarray:
        """A parameter reshaped to broadcast against X (channel axis 1)."""
        want = (x.shape[1],) if spatial else x.shape[1:]
        if p.shape != want and p.size != math.prod(want):
            raise ctx.error(f"{name} has shape {list(p.shape)}, expected {list(want)} for X of shape {list(x.shape)}")
        return p.reshape(want + (1,) * (x.ndim - 1 - len(want)))

    def fold(scale: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        work: type[np.floating[Any]] = np.float64 if np.float64 in (scale.dtype, var.dtype) else np.float32
        a = scale.astype(work) / np.sqrt(var.astype(work) + work(eps))
        return a, bias.astype(work) - mean.astype(work) * a

    folded = None
    if not training and all(ctx.const(i) is not None for i in range(1, 5)):
        folded = fold(*(np.asarray(ctx.const(i)) for i in range(1, 5)))

    def check_rank(x: np.ndarray) -> None:
        if x.ndim < 2:
            raise ctx.error(f"X must have rank >= 2 (N x C x ...), got shape {list(x.shape)}")

    def infer(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray,
              var: np.ndarray) -> tuple[np.ndarray]:
        check_rank(x)
        a, b = folded if folded is not None else fold(scale, bias, mean, var)
        a, b = param_view(a, x, "scale"), param_view(b, x, "B")
        work = np.result_type(_work_dtype(x), a.dtype)
        y = np.multiply(x, a, dtype=work)
        y += b
        return (y.astype(x.dtype, copy=False),)

    def train(x: np.ndarray, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray,
              var: np.ndarray) -> tuple[np.ndarray, ...]:
        check_rank(x)
        work = _work_dtype(x)
        axes = (0,) + tuple(range(2, x.ndim)) if spatial else (0,)
        xw = x.astype(work, copy=False)
        cur_mean = xw.mean(axis=axes, keepdims=True)
        y = xw - cur_mean
        cur_var = np.mean(np.square(y), axis=axes, keepdims=True)
        y *= param_view(scale, x, "scale").astype(work) / np.sqrt(cur_var + work(eps))
        y += param_view(bias, x, "B")
        stat_dtype = mean.dtype
        cm, cv = cur_mean.reshape(mean.shape), cur_var.reshape(var.shape)
        run_mean = (mean * momentum + cm * (1 - momentum)).astype(stat_dtype)
        run_var = (var * momentum + cv * (1 - momentum)).astype(stat_dtype)
        outs = [y.astype(x.dtype, copy=False), run_mean, run_var]
        if ctx.opset < 14:
            outs += [cm.astype(stat_dtype), cv.astype(stat_dtype)]
        return tuple(outs)

    return train if training else infer


# ------------------------------------------------------------ Instance / Group

def _channel_rule(n_groups_attr: bool) -> Callable[[InferContext], list[Type | None]]:
    """Rule for ops normalizing groups of channels of an (N, C, ...) input."""

    def rule(ctx: InferContext) -> list[Type | None]:
        xs = ctx.shape(0)
        if xs is not None and len(xs) < 2:
            raise ctx.error(f"X must have rank >= 2 (N x C x ...), got shape {shape_str(xs)}")
        c = xs[1] if xs is not None else None
        want: Dim = c
        if n_groups_attr:
            g = int(ctx.attr("num_groups"))
            if g <= 0 or (isinstance(c, int) and c % g):
                raise ctx.error(f"num_groups={g} must divide the channel count of X of shape {shape_str(xs)}")
            if ctx.opset < 21:
                want = g
        for i, name in ((1, "scale"), (2, "bias")):
            s = ctx.shape(i)
            if s is not None and (len(s) != 1 or not dims_compatible(s[0], want)):
                raise ctx.error(f"{name} has shape {shape_str(s)}, expected [{want if want is not None else '?'}] "
                                f"for X of shape {shape_str(xs)}")
        return [tensor(ctx.elem(0), xs)]

    return rule


def _group_norm(x: np.ndarray, groups: int, scale: np.ndarray, bias: np.ndarray, eps: float,
                per_group: bool, ctx: OpContext) -> np.ndarray:
    """Normalize each (sample, group of channels) and apply per-channel (or per-group) scale and bias."""
    if x.ndim < 2:
        raise ctx.error(f"X must have rank >= 2 (N x C x ...), got shape {list(x.shape)}")
    n, c = x.shape[0], x.shape[1]
    if groups <= 0 or c % groups:
        raise ctx.error(f"num_groups={groups} must divide the channel count of X of shape {list(x.shape)}")
    want = groups if per_group else c
    for p, name in ((scale, "scale"), (bias, "bias")):
        if p.size != want:
            raise ctx.error(f"{name} has shape {list(p.shape)}, expected [{want}] for X of shape {list(x.shape)}")
    work = _work_dtype(x)
    rows = x.reshape(n, groups, -1).astype(work, copy=False)
    y, _, inv = _row_stats(rows, eps)
    # 1/std (per sample and group) and scale (per channel or group) fold into one factor
    if per_group:
        factor = inv * scale.reshape(groups, 1).astype(work, copy=False)
    else:
        y = y.reshape(n, c, -1)
        factor = np.repeat(inv, c // groups, axis=1) * scale.reshape(c, 1).astype(work, copy=False)
    y *= factor
    y += bias.reshape(-1, 1).astype(work, copy=False)
    return y.reshape(x.shape).astype(x.dtype, copy=False)


@op("InstanceNormalization", since=1, infer=_channel_rule(False))
def instance_normalization(ctx: OpContext) -> Any:
    """Per (sample, channel) statistics over the spatial axes: GroupNormalization with one channel per group."""
    eps = float(ctx.attr("epsilon", 1e-5))
    return lambda x, scale, bias: (_group_norm(x, x.shape[1] if x.ndim > 1 else 1, scale, bias, eps, False, ctx),)


@op("GroupNormalization", since=18, infer=_channel_rule(True))
def group_normalization(ctx: OpContext) -> Any:
    """Opset 18 gives scale and bias per group, opset 21 per channel (the spec changed meaning)."""
    eps = float(ctx.attr("epsilon", 1e-5))
    groups = int(ctx.attr("num_groups"))
    per_group = ctx.opset < 21
    return lambda x, scale, bias: (_group_norm(x, groups, scale, bias, eps, per_group, ctx),)


# ------------------------------------------------------------ Layer / RMS

def _stash_elem(ctx: InferContext | OpContext) -> int:
    stash = int(ctx.attr("stash_type", dtypes.FLOAT))
    if stash not in dtypes.FLOAT_TYPES:
        raise ctx.error(f"stash_type must be a float element type, got {stash}")
    return stash


def _last_axes_rule(with_stats: bool) -> Callable[[InferContext], list[Type | None]]:
    """Rule for ops normalizing over axes [axis, rank): Y like X, statistics [d0..d(axis-1), 1, ...]."""

    def rule(ctx: InferContext) -> list[Type | None]:
        xs = ctx.shape(0)
        stash = _stash_elem(ctx)
        axis = int(ctx.attr("axis", -1))
        stat: Shape | None = None
        if xs is not None:
            a = normalize_axis(axis, len(xs), ctx.node)
            stat = tuple(xs[:a]) + (1,) * (len(xs) - a)
        _check_unidirectional(ctx, "scale", ctx.shape(1), xs)
        if with_stats and ctx.has(2):
            _check_unidirectional(ctx, "B", ctx.shape(2), xs)
        outs: list[Type | None] = [tensor(ctx.elem(0), xs)]
        if with_stats:
            outs += [tensor(stash, stat) for _ in range(ctx.n_out - 1)]
        return outs

    return rule


def _rows_view(ctx: OpContext, x: np.ndarray, axis: int) -> tuple[np.ndarray, int]:
    """X as (rows, normalized elements) in the work dtype, and the normalized axis."""
    if not -x.ndim <= axis < max(x.ndim, 1):
        raise ctx.error(f"axis {axis} is out of range for X of shape {list(x.shape)}")
    a = axis % x.ndim if x.ndim else 0
    rows = x.reshape(math.prod(x.shape[:a]), math.prod(x.shape[a:]))
    return rows.astype(_work_dtype(x), copy=False), a


def _affine(ctx: OpContext, y: np.ndarray, x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """y (X's shape, work dtype) * scale + bias in place, scale and bias broadcasting onto X.

    In-place ufuncs refuse operands that would change y's shape, so the
    broadcast check costs nothing unless it fails."""
    try:
        y *= scale
        if bias is not None:
            y += bias
    except ValueError:
        _check_unidirectional(ctx, "scale", scale.shape, x.shape)
        _check_unidirectional(ctx, "B", None if bias is None else bias.shape, x.shape)
        raise
    return y.astype(x.dtype, copy=False)


def _spans(p: np.ndarray, x: np.ndarray, n: int) -> bool:
    """Whether parameter `p` has exactly X's trailing dims (n values): it then lines up with X's flat row."""
    return p.size == n and p.shape == x.shape[x.ndim - p.ndim:]

#: The dtypes X may have on the one-row path (the others compute through float32 conversions).
_ONE_ROW_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class _OneRow:
    """LayerNormalization of an X that is one row (a classifier head's [1, 128]), for one set of shapes.

    The general path's per-row reductions and broadcasts cost ~12 us in
    numpy calls on 128 values; with one row the mean and variance are two
    dot products and 1/std a Python float, and when scale (and bias) span
    X's trailing dims, 1/std folds into scale (~3.5 us).  What depends on
    the shapes alone (is X one row, 1/n as a vector, do the parameters
    line up) is decided once per shape.
    """

    __slots__ = ("averager", "n", "flat")

    def __init__(self, averager: np.ndarray, flat: bool):
        self.averager, self.n, self.flat = averager, averager.shape[0], flat

    @staticmethod
    def make(x: np.ndarray, axis: int, scale: np.ndarray, bias: np.ndarray | None) -> "_OneRow | None":
        """The plan for these shapes, or None when X is not one float row (or empty, or axis is bad)."""
        if not x.size or x.dtype not in _ONE_ROW_DTYPES or not -x.ndim <= axis < x.ndim \
                or math.prod(x.shape[:axis % x.ndim]) != 1:
            return None
        n = x.size
        flat = _spans(scale, x, n) and (bias is None or _spans(bias, x, n)) and scale.dtype == x.dtype
        return _OneRow(np.full(n, 1.0 / n, x.dtype), flat)

    def __call__(self, ctx: OpContext, x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None,
                 eps: float) -> np.ndarray:
        n = self.n
        r = x.reshape(n)
        y = r - np.dot(r, self.averager)
        inv = 1.0 / math.sqrt(float(np.dot(y, y)) / n + eps)
        if self.flat:
            y *= np.multiply(scale, inv, dtype=y.dtype).reshape(n)
            if bias is not None:
                y += bias.reshape(n)
            return y.reshape(x.shape)
        y *= inv
        return _affine(ctx, y.reshape(x.shape), x, scale, bias)


@op("LayerNormalization", since=17, infer=_last_axes_rule(True))
def layer_normalization(ctx: OpContext) -> Any:
    """Mean and inverse standard deviation over axes [axis, rank), returned in the stash type."""
    axis = int(ctx.attr("axis", -1))
    eps = float(ctx.attr("epsilon", 1e-5))
    stash_elem = _stash_elem(ctx)
    # small float stash types are rounded from float32 by the CPU device, around the kernel
    stash = np.float32 if stash_elem in dtypes.SMALL_FLOATS else dtypes.storage_dtype(stash_elem)

    with_stats = any(o for o in ctx.node.outputs[1:])
    #: Per (X shape and dtype, scale and bias shapes and dtype): how a one-row X is normalized
    #: (`_OneRow`), or None where X is not one row.
    one_row_for = PerShape(lambda x, scale, bias: None if with_stats else _OneRow.make(x, axis, scale, bias))

    def run(x: np.ndarray, scale: np.ndarray, bias: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        key = (x.shape, x.dtype, scale.shape, scale.dtype, None if bias is None else bias.shape)
        plan = one_row_for(key, x, scale, bias)
        if plan is not None:
            return (plan(ctx, x, scale, bias, eps),)
        if not with_stats and -x.ndim <= axis < x.ndim:
            # Pyodide: the wasm kernel, two passes per row in cache instead of numpy's six with temporaries.
            n = math.prod(x.shape[axis % x.ndim:])
            if _spans(scale, x, n) and (bias is None or _spans(bias, x, n)):
                y = wasm_ops.layernorm(x, n, scale, bias, eps)
                if y is not None:
                    return (y,)
        rows, a = _rows_view(ctx, x, axis)
        y, mean, inv = _row_stats(rows, eps)
        y *= inv
        out = _affine(ctx, y.reshape(x.shape), x, scale, bias)
        if not with_stats:
            return (out,)
        stat_shape = x.shape[:a] + (1,) * (x.ndim - a)
        assert mean is not None
        return out, mean.reshape(stat_shape).astype(stash), inv.reshape(stat_shape).astype(stash)

    return run


@op("RMSNormalization", since=23, infer=_last_axes_rule(False))
def rms_normalization(ctx: OpContext) -> Any:
    """X divided by its root mean square over axes [axis, rank), then scaled."""
    axis = int(ctx.attr("axis", -1))
    eps = float(ctx.attr("epsilon", 1e-5))
    _stash_elem(ctx)

    def run(x: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray]:
        rows, _ = _rows_view(ctx, x, axis)
        _, _, inv = _row_stats(rows, eps, center=False)
        y = rows * inv
        return (_affine(ctx, y.reshape(x.shape), x, scale, None),)

    return run


# ------------------------------------------------------------ MeanVarianceNormalization

def _mvn_rule(ctx: InferContext) -> list[Type | None]:
    xs = ctx.shape(0)
    if xs is not None:
        for a in ctx.attr("axes", [0, 2, 3]):
            normalize_axis(int(a), len(xs), ctx.node, "axes entry")
    return same_as_input(ctx)


@op("MeanVarianceNormalization", since=9, infer=_mvn_rule)
def mean_variance_normalization(ctx: OpContext) -> Any:
    """(X - E[X]) / (sqrt(Var[X]) + 1e-9) over `axes`, the epsilon of the spec's function body."""
    axes_attr = [int(a) for a in ctx.attr("axes", [0, 2, 3])]

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        for a in axes_attr:
            if not -x.ndim <= a < x.ndim:
                raise ctx.error(f"axes {axes_attr} are out of range for X of shape {list(x.shape)}")
        axes = tuple(sorted({a % x.ndim for a in axes_attr}))
        work = _work_dtype(x)
        xw = x.astype(work, copy=False)
        y = xw - xw.mean(axis=axes, keepdims=True)
        std = np.sqrt(np.mean(np.square(y), axis=axes, keepdims=True))
        std += work(1e-9)
        y /= std
        return (y.astype(x.dtype, copy=False),)

    return run


# ------------------------------------------------------------ LRN / LpNormalization

def _lrn_rule(ctx: InferContext) -> list[Type | None]:
    size = int(ctx.attr("size"))
    if size <= 0:
        raise ctx.error(f"size must be positive, got {size}")
    xs = ctx.shape(0)
    if xs is not None and len(xs) < 2:
        raise ctx.error(f"X must have rank >= 2 (N x C x ...), got shape {shape_str(xs)}")
    return same_as_input(ctx)


@op("LRN", since=1, infer=_lrn_rule)
def lrn(ctx: OpContext) -> Any:
    """Local response normalization across channels: a window of `size` channels,
    summed as shifted slices (one pass per tap, `size` is small)."""
    size = int(ctx.attr("size"))
    alpha = float(ctx.attr("alpha", 1e-4))
    beta = float(ctx.attr("beta", 0.75))
    bias = float(ctx.attr("bias", 1.0))
    lo_off = (size - 1) // 2
    hi_off = size - 1 - lo_off

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        if x.ndim < 2:
            raise ctx.error(f"X must have rank >= 2 (N x C x ...), got shape {list(x.shape)}")
        work = _work_dtype(x)
        sq = np.square(x.astype(work, copy=False))
        c = x.shape[1]
        acc = sq.copy()
        for k in range(-min(lo_off, c - 1), min(hi_off, c - 1) + 1):  # taps beyond C add nothing
            if k == 0:
                continue
            if k > 0:
                acc[:, :c - k] += sq[:, k:]
            else:
                acc[:, -k:] += sq[:, :c + k]
        acc *= work(alpha / size)
        acc += work(bias)
        np.power(acc, work(-beta), out=acc)
        acc *= x
        return (acc.astype(x.dtype, copy=False),)

    return run


def _lp_rule(ctx: InferContext) -> list[Type | None]:
    p = int(ctx.attr("p", 2))
    if p not in (1, 2):
        raise ctx.error(f"p must be 1 or 2, got {p}")
    xs = ctx.shape(0)
    if xs is not None:
        normalize_axis(int(ctx.attr("axis", -1)), len(xs), ctx.node)
    return same_as_input(ctx)


@op("LpNormalization", since=1, infer=_lp_rule)
def lp_normalization(ctx: OpContext) -> Any:
    """X divided by its L1 or L2 norm along `axis`; a zero norm gives zeros
    (opset 22 made this explicit; earlier opsets left 0/0 undefined)."""
    p = int(ctx.attr("p", 2))
    axis = int(ctx.attr("axis", -1))

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        if not -x.ndim <= axis < max(x.ndim, 1):
            raise ctx.error(f"axis {axis} is out of range for X of shape {list(x.shape)}")
        work = _work_dtype(x)
        xw = x.astype(work, copy=False)
        if p == 1:
            norm = np.sum(np.abs(xw), axis=axis, keepdims=True)
        else:
            norm = np.sqrt(np.sum(np.square(xw), axis=axis, keepdims=True))
        zero = norm == 0
        norm[zero] = 1
        y = xw / norm
        if zero.any():
            y *= ~zero
        return (y.astype(x.dtype, copy=False),)

    return run
