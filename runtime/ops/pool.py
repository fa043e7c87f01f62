"""Pooling: Max/Average/Lp pools and their Global forms, MaxUnpool, MaxRoiPool, RoiAlign.

Windowed pools reduce one spatial axis at a time: max and sum over a box
are separable, so a 3x3 window costs 3 + 3 vectorised passes over strided
views instead of 9, and no window is ever copied out.  The input is not
padded either: along each axis a tap only updates the outputs whose cell
lies inside the input.  Averages divide by a count that is also
separable: the product over axes of how many taps of each window land on
counted cells (input cells, plus the explicit pads with
count_include_pad; in ceil mode the part of the last window past the end
pad never counts).

Output sizes follow onnxruntime: SAME padding of pools is sized with the
undilated kernel, and in ceil mode a window starting in the end padding is
dropped.  Window geometry is shared with conv.py.  float16 averages
accumulate in float32.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import numpy as np

from .. import dtypes
from ..ir import AttrMixin, Dim, Shape, Type
from ..shapes import InferContext, shape_str, static_len, tensor
from .conv import Geometry, Window, compute_dtype, pad_spatial, read_window, windows
from .registry import Kernel, OpContext, op


# ---------------------------------------------------------------- helpers

def _pool_kernel(ctx: AttrMixin, win: Window) -> tuple[int, ...]:
    if win.kernel is None:
        raise ctx.error("required attribute 'kernel_shape' is missing")
    return win.kernel


def _pool_shape(ctx: InferContext, win: Window) -> Shape | None:
    x = ctx.shape(0)
    kernel = _pool_kernel(ctx, win)
    if x is None:
        return (None, None) + (None,) * len(kernel)
    if len(x) != len(kernel) + 2:
        raise ctx.error(f"X {shape_str(x)} must have rank {len(kernel) + 2} for kernel_shape {list(kernel)}")
    return (x[0], x[1], *win.out_dims(ctx, x[2:], kernel))


def _geometry(ctx: AttrMixin, win: Window, x: np.ndarray) -> Geometry:
    kernel = _pool_kernel(ctx, win)
    if x.ndim != len(kernel) + 2:
        raise ctx.error(f"X {list(x.shape)} must have rank {len(kernel) + 2} for kernel_shape {list(kernel)}")
    return win.geometry(ctx, x.shape[2:], kernel)


def _reduce_windows(x: np.ndarray, g: Geometry, fn: Callable[..., np.ndarray], fill: float | int) -> np.ndarray:
    """`fn`-reduce (np.maximum, np.add) every window of `x`, one spatial axis at a time.

    The input is never padded: along each axis, a tap only updates the
    outputs whose cell for that tap lies inside the input (cells outside
    count as `fill`), and the accumulator starts from the taps that are
    inside for every output when there are such taps.
    """
    cur = x
    for ax, (k, s, d, o, b) in enumerate(zip(g.kernel, g.strides, g.dilations, g.out, g.begin)):
        axis = 2 + ax
        size = cur.shape[axis]
        if k == 1 and s == 1 and b == 0 and o == size:
            continue

        def along(sl: slice) -> tuple[slice, ...]:
            return (slice(None),) * axis + (sl,)

        taps = []  # (first input cell, outputs [o0, o1) whose cell is inside)
        for j in _taps_inside(k, s, d, o, b, size):
            off = j * d - b
            taps.append((off, max(0, -(off // s)), min(o, (size - 1 - off) // s + 1)))
        whole = [t for t in taps if t[1] == 0 and t[2] == o][:2]
        first = [cur[along(slice(t[0], t[0] + (o - 1) * s + 1, s))] for t in whole]
        if len(first) == 2:
            acc = fn(first[0], first[1])
        elif first:
            acc = first[0].copy()
        else:
            shape = list(cur.shape)
            shape[axis] = o
            acc = np.full(shape, fill, cur.dtype)
        for t in taps:
            off, o0, o1 = t
            if any(t is w for w in whole) or o1 <= o0:
                continue
            dst = acc[along(slice(o0, o1))]
            fn(dst, cur[along(slice(o0 * s + off, (o1 - 1) * s + off + 1, s))], out=dst)
        cur = acc
    return cur


def _taps_inside(k: int, s: int, d: int, o: int, b: int, size: int) -> range:
    """The taps of a k-tap window that land inside the input for at least one output.

    The others only ever see padding; skipping them keeps a hostile
    kernel_shape (2**31 taps over 5 cells) from looping for hours.
    """
    first = max(0, -(-(b - (o - 1) * s) // d))
    return range(first, min(k, (size - 1 + b) // d + 1))


def _counts(g: Geometry, spatial: Sequence[int], include_pad: bool) -> np.ndarray:
    """How many taps of each window land on counted cells: [*out], a product of per-axis counts.

    Counted in closed form per window (taps j with lo <= start + j*d < hi), not
    by listing every tap, so the cost does not grow with the kernel.
    """
    total = np.ones((), np.int64)
    for size, k, s, d, o, b, e in zip(spatial, g.kernel, g.strides, g.dilations, g.out, g.begin, g.pad_end):
        start = np.arange(o, dtype=np.int64) * s - b
        lo, hi = (-b, size + e) if include_pad else (0, size)
        first = np.maximum(0, -((start - lo) // d))
        stop = np.minimum(k, -((start - hi) // d))
        total = np.multiply.outer(total, np.maximum(0, stop - first))
    return total


def _min_value(dtype: np.dtype) -> float | int:
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _fresh(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Kernels never hand out their input's memory: copy a result that is a view of it."""
    return y.copy() if np.may_share_memory(y, x) else y


# ---------------------------------------------------------------- MaxPool

def _maxpool_rule(ctx: InferContext) -> list[Type | None]:
    order = ctx.attr("storage_order", 0)
    if order not in (0, 1):
        raise ctx.error(f"storage_order must be 0 (row major) or 1 (column major), got {order}")
    shape = _pool_shape(ctx, read_window(ctx, pool=True))
    return [tensor(ctx.elem(0), shape), tensor(dtypes.INT64, shape)]


def _argmax_pool(x: np.ndarray, g: Geometry, column_major: bool) -> tuple[np.ndarray, np.ndarray]:
    """Max of every window and the flat index of the first maximal input cell (pads never win)."""
    n, c = x.shape[:2]
    spatial = x.shape[2:]
    nd = len(spatial)
    xp = pad_spatial(x.astype(np.float64), g.begin, g.end, -np.inf)
    win = np.moveaxis(windows(xp, g), tuple(range(2, 2 + nd)), tuple(range(2 + nd, 2 + 2 * nd)))
    flat = win.reshape((n, c) + g.out + (-1,))
    arg = flat.argmax(-1)
    values = np.take_along_axis(flat, arg[..., None], -1)[..., 0].astype(x.dtype)
    taps = np.unravel_index(arg, g.kernel)
    axis_stride = [math.prod(spatial[:i]) if column_major else math.prod(spatial[i + 1:]) for i in range(nd)]
    index = (np.arange(n * c, dtype=np.int64) * math.prod(spatial)).reshape((n, c) + (1,) * nd)
    for i in range(nd):
        start = (np.arange(g.out[i], dtype=np.int64) * g.strides[i] - g.begin[i]).reshape(
            (g.out[i],) + (1,) * (nd - 1 - i))
        index = index + (start + taps[i] * g.dilations[i]) * axis_stride[i]
    return values, index


@op("MaxPool", since=1, infer=_maxpool_rule)
def max_pool(ctx: OpContext) -> Kernel:
    """Max over windows (any rank); the optional Indices output gives flat input positions."""
    win = read_window(ctx, pool=True)
    column_major = ctx.attr("storage_order", 0) == 1
    want_indices = len(ctx.node.outputs) > 1 and bool(ctx.node.outputs[1])

    def run(x: np.ndarray) -> tuple[np.ndarray, ...]:
        g = _geometry(ctx, win, x)
        if want_indices:
            return _argmax_pool(x, g, column_major)
        return (_fresh(_reduce_windows(x, g, np.maximum, _min_value(x.dtype)), x),)

    return run


# ------------------------------------------------------ AveragePool, LpPool

def _pool_rule(ctx: InferContext) -> list[Type | None]:
    return [tensor(ctx.elem(0), _pool_shape(ctx, read_window(ctx, pool=True)))]


@op("AveragePool", since=1, infer=_pool_rule)
def average_pool(ctx: OpContext) -> Kernel:
    """Mean over windows; count_include_pad decides whether the explicit pads count."""
    win = read_window(ctx, pool=True)
    include_pad = bool(ctx.attr("count_include_pad", 0))
    divisors: dict[tuple[int, ...], np.ndarray] = {}

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        g = _geometry(ctx, win, x)
        dt = compute_dtype(x.dtype)
        total = _fresh(_reduce_windows(x.astype(dt, copy=False), g, np.add, 0), x)
        div = divisors.get(x.shape)
        if div is None:
            div = divisors[x.shape] = _counts(g, x.shape[2:], include_pad).astype(dt)
        return (np.divide(total, div, out=total).astype(x.dtype, copy=False),)

    return run


def window_divisors(ctx: AttrMixin, win: Window, x: np.ndarray, include_pad: bool) -> np.ndarray:
    """What AveragePool divides each window's sum of x by ([*out]); for kernels that rescale its mean."""
    return _counts(_geometry(ctx, win, x), x.shape[2:], include_pad)


def _lp_order(ctx: AttrMixin) -> float:
    p = ctx.attr("p", 2)
    if p <= 0:
        raise ctx.error(f"p must be positive, got {p}")
    return float(p)


def _lp_power(x: np.ndarray, p: float) -> np.ndarray:
    a = np.abs(x)
    return a if p == 1 else (np.square(a, out=a) if p == 2 else np.power(a, p, out=a))


def _lp_root(s: np.ndarray, p: float) -> np.ndarray:
    return s if p == 1 else (np.sqrt(s) if p == 2 else np.power(s, 1.0 / p))


@op("LpPool", since=1, infer=_pool_rule)
def lp_pool(ctx: OpContext) -> Kernel:
    """(sum |x|^p)^(1/p) over windows, pads counting as zeros."""
    win = read_window(ctx, pool=True)
    p = _lp_order(ctx)

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        g = _geometry(ctx, win, x)
        powered = _lp_power(x.astype(compute_dtype(x.dtype)), p)
        total = _reduce_windows(powered, g, np.add, 0)
        return (_lp_root(total, p).astype(x.dtype, copy=False),)

    return run


# ------------------------------------------------------------ Global pools

def _global_rule(ctx: InferContext) -> list[Type | None]:
    x = ctx.shape(0)
    if x is not None and len(x) < 2:
        raise ctx.error(f"X {shape_str(x)} must have rank >= 2 (batch, channels, spatial...)")
    return [tensor(ctx.elem(0), None if x is None else (x[0], x[1]) + (1,) * (len(x) - 2))]


def _global(ctx: OpContext, reduce: Callable[[np.ndarray, tuple[int, ...]], np.ndarray]) -> Kernel:
    def run(x: np.ndarray) -> tuple[np.ndarray]:
        if x.ndim < 2:
            raise ctx.error(f"X {list(x.shape)} must have rank >= 2 (batch, channels, spatial...)")
        return (np.asarray(reduce(x, tuple(range(2, x.ndim)))).astype(x.dtype, copy=False),)

    return run


@functools.lru_cache(maxsize=64)
def _averager(cells: int, dtype: np.dtype) -> np.ndarray:
    """A vector of 1/cells: a mean over the last axis is a matrix-vector product with it."""
    w = np.full(cells, 1.0 / cells, dtype)
    w.flags.writeable = False
    return w


def _spatial_mean(x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """The mean over the spatial axes as one BLAS matrix-vector product, [N, C, cells] @ (1/cells).

    numpy's mean (and add.reduce) over rows of a few dozen cells runs a short
    reduction loop per channel: 12-19 us on MobileNetV3's [1, 576, 7, 7],
    where the product takes 3 us.  Float types only; the rest, empty maps
    and inputs without spatial axes keep numpy's mean.
    """
    dt = compute_dtype(x.dtype)
    cells = math.prod(x.shape[2:])
    if not axes or not cells or not x.size or dt.kind != "f":
        return x.mean(axis=axes, keepdims=True, dtype=dt)
    rows = x.reshape(x.shape[0], x.shape[1], cells).astype(dt, copy=False)
    return np.matmul(rows, _averager(cells, dt)).reshape(x.shape[:2] + (1,) * len(axes))


@op("GlobalAveragePool", since=1, infer=_global_rule)
def global_average_pool(ctx: OpContext) -> Kernel:
    """Mean over all spatial axes (float16 accumulates in float32)."""
    return _global(ctx, _spatial_mean)


@op("GlobalMaxPool", since=1, infer=_global_rule)
def global_max_pool(ctx: OpContext) -> Kernel:
    """Max over all spatial axes."""
    return _global(ctx, lambda x, axes: x.max(axis=axes, keepdims=True) if axes else x.copy())


@op("GlobalLpPool", since=1, infer=_global_rule)
def global_lp_pool(ctx: OpContext) -> Kernel:
    """(sum |x|^p)^(1/p) over all spatial axes."""
    p = _lp_order(ctx)
    return _global(ctx, lambda x, axes: _lp_root(_lp_power(x.astype(compute_dtype(x.dtype)), p)
                                                 .sum(axis=axes, keepdims=True), p))


# --------------------------------------------------------------- MaxUnpool

def _unpool_shape(ctx: AttrMixin, x: Sequence[Dim], kernel: Sequence[int], strides: Sequence[int],
                  pads: Sequence[int]) -> list[Dim]:
    n = len(kernel)
    out: list[Dim] = []
    for i, size in enumerate(x[2:]):
        if not isinstance(size, int):
            out.append(None)
            continue
        o = (size - 1) * strides[i] + kernel[i] - pads[i] - pads[i + n]
        if o < 1:
            raise ctx.error(f"X {list(x)} with kernel_shape {list(kernel)}, strides {list(strides)} and pads "
                            f"{list(pads)} unpools to an empty axis {i} ({o})")
        out.append(o)
    return out


def _unpool_attrs(ctx: AttrMixin, rank: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    win = read_window(ctx, pool=True)
    kernel = _pool_kernel(ctx, win)
    if rank != len(kernel) + 2:
        raise ctx.error(f"X has rank {rank} but kernel_shape {list(kernel)} needs rank {len(kernel) + 2}")
    strides, _, pads = win.axes(ctx, kernel, len(kernel))
    return kernel, strides, pads


def _maxunpool_rule(ctx: InferContext) -> list[Type | None]:
    x = ctx.shape(0)
    if ctx.has(2):
        sym = ctx.sym(2)
        if sym is not None:
            return [tensor(ctx.elem(0), sym.dims)]
        n = static_len(ctx, 2)
        return [tensor(ctx.elem(0), None if n is None else (None,) * n)]
    if x is None:
        return [tensor(ctx.elem(0))]
    kernel, strides, pads = _unpool_attrs(ctx, len(x))
    return [tensor(ctx.elem(0), (x[0], x[1], *_unpool_shape(ctx, x, kernel, strides, pads)))]


@op("MaxUnpool", since=9, infer=_maxunpool_rule)
def max_unpool(ctx: OpContext) -> Kernel:
    """Scatter X into zeros at the flat positions I (MaxPool's Indices).

    As in onnxruntime, I indexes the whole output tensor, whose shape is
    `output_shape` when given: indices from MaxPool on an input of that
    shape land where they came from.
    """

    def run(x: np.ndarray, indices: np.ndarray, output_shape: np.ndarray | None = None) -> tuple[np.ndarray]:
        if indices.shape != x.shape:
            raise ctx.error(f"I {list(indices.shape)} must have the shape of X {list(x.shape)}")
        if output_shape is not None:
            shape = tuple(int(v) for v in output_shape.reshape(-1))
            if len(shape) != x.ndim or any(v < 0 for v in shape):
                raise ctx.error(f"output_shape {list(shape)} must be a shape of rank {x.ndim} like X "
                                f"{list(x.shape)}")
        else:
            kernel, strides, pads = _unpool_attrs(ctx, x.ndim)
            shape = x.shape[:2] + tuple(_unpool_shape(ctx, x.shape, kernel, strides, pads))
        y = np.zeros(shape, x.dtype)
        flat = indices.reshape(-1)
        if flat.size and (flat.min() < 0 or flat.max() >= y.size):
            raise ctx.error(f"I holds indices in [{flat.min()}, {flat.max()}], outside the output of shape "
                            f"{list(shape)} ({y.size} elements)")
        y.reshape(-1)[flat] = x.reshape(-1)
        return (y,)

    return run


# -------------------------------------------------------------- MaxRoiPool

def _pooled_shape(ctx: AttrMixin) -> tuple[int, int]:
    shape = ctx.attr("pooled_shape")
    if len(shape) != 2 or any(int(v) < 1 for v in shape):
        raise ctx.error(f"pooled_shape must be two positive ints, got {list(shape)}")
    return int(shape[0]), int(shape[1])


def _roi_rule(ctx: InferContext) -> list[Type | None]:
    x, rois = ctx.shape(0), ctx.shape(1)
    ph, pw = _pooled_shape(ctx)
    if x is not None and len(x) != 4:
        raise ctx.error(f"X {shape_str(x)} must be [N, C, H, W]")
    if rois is not None and (len(rois) != 2 or (isinstance(rois[1], int) and rois[1] != 5)):
        raise ctx.error(f"rois {shape_str(rois)} must be [num_rois, 5] (batch, x1, y1, x2, y2)")
    return [tensor(ctx.elem(0), (rois[0] if rois is not None else None, x[1] if x is not None else None, ph, pw))]


def _round_half_away(v: np.ndarray) -> np.ndarray:
    """C's round(): halves away from zero (numpy rounds them to even)."""
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _bin_edges(start: int, length: int, bins: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    size = length / bins
    i = np.arange(bins)
    lo = np.clip(np.floor(i * size).astype(np.int64) + start, 0, limit)
    hi = np.clip(np.ceil((i + 1) * size).astype(np.int64) + start, 0, limit)
    return lo, hi


@op("MaxRoiPool", since=1, infer=_roi_rule)
def max_roi_pool(ctx: OpContext) -> Kernel:
    """Max over a grid of bins in each region of interest (Fast R-CNN); empty bins are 0."""
    ph, pw = _pooled_shape(ctx)
    scale = float(ctx.attr("spatial_scale", 1.0))

    def run(x: np.ndarray, rois: np.ndarray) -> tuple[np.ndarray]:
        if x.ndim != 4 or rois.ndim != 2 or rois.shape[1] != 5:
            raise ctx.error(f"X {list(x.shape)} must be [N, C, H, W] and rois {list(rois.shape)} [num_rois, 5]")
        n, c, h, w = x.shape
        out = np.zeros((rois.shape[0], c, ph, pw), x.dtype)
        boxes = _round_half_away(rois[:, 1:].astype(np.float64) * scale).astype(np.int64)
        low = _min_value(x.dtype)
        for r in range(rois.shape[0]):
            b = int(rois[r, 0])
            if not 0 <= b < n:
                raise ctx.error(f"roi {r} has batch index {b}, outside X {list(x.shape)}")
            x1, y1, x2, y2 = boxes[r]
            hs, he = _bin_edges(int(y1), max(int(y2 - y1) + 1, 1), ph, h)
            ws, we = _bin_edges(int(x1), max(int(x2 - x1) + 1, 1), pw, w)
            r0, r1, c0, c1 = hs.min(), he.max(), ws.min(), we.max()
            if r1 <= r0 or c1 <= c0:
                continue
            rows, cols = np.arange(r0, r1), np.arange(c0, c1)
            in_col = (cols >= ws[:, None]) & (cols < we[:, None])  # [pw, w']
            in_row = (rows >= hs[:, None]) & (rows < he[:, None])  # [ph, h']
            region = x[b, :, r0:r1, c0:c1]
            by_col = np.where(in_col, region[:, :, None, :], low).max(-1)  # [C, h', pw]
            pooled = np.where(in_row[:, :, None], by_col[:, None], low).max(2)  # [C, ph, pw]
            empty = ~(in_row.any(1, keepdims=True) & in_col.any(1, keepdims=True).T)  # [ph, pw]
            out[r] = np.where(empty, 0, pooled)
        return (out,)

    return run


# ---------------------------------------------------------------- RoiAlign

def _roi_align_rule(ctx: InferContext) -> list[Type | None]:
    x, rois, idx = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    if x is not None and len(x) != 4:
        raise ctx.error(f"X {shape_str(x)} must be [N, C, H, W]")
    if rois is not None and (len(rois) != 2 or (isinstance(rois[1], int) and rois[1] != 4)):
        raise ctx.error(f"rois {shape_str(rois)} must be [num_rois, 4] (x1, y1, x2, y2)")
    if idx is not None and len(idx) != 1:
        raise ctx.error(f"batch_indices {shape_str(idx)} must be a vector [num_rois]")
    num = rois[0] if rois is not None else (idx[0] if idx is not None else None)
    return [tensor(ctx.elem(0), (num, x[1] if x is not None else None, int(ctx.attr("output_height", 1)),
                                 int(ctx.attr("output_width", 1))))]


def _sample_axis(start: float, extent: float, bins: int, grid: int, size: int) -> tuple[np.ndarray, ...]:
    """Bilinear taps along one axis for [bins, grid] sample points: low/high cells, their weights, validity."""
    pos = start + np.arange(bins)[:, None] * (extent / bins) + (np.arange(grid) + 0.5) * (extent / bins / grid)
    valid = (pos >= -1.0) & (pos <= size)
    pos = np.maximum(pos, 0.0)
    low = pos.astype(np.int64)
    edge = low >= size - 1
    low = np.where(edge, size - 1, low)
    high = np.where(edge, size - 1, low + 1)
    frac = np.where(edge, 0.0, pos - low)
    return low, high, (1.0 - frac) * valid, frac * valid


@op("RoiAlign", since=10, infer=_roi_align_rule)
def roi_align(ctx: OpContext) -> Kernel:
    """Average (or max) of bilinear samples on a grid in each bin of each region (Mask R-CNN).

    In avg mode the bilinear weights of a bin separate into a row part and a
    column part, so each region is two small matmuls: Ay [oh, H] @ X @ Ax^T.
    """
    mode = ctx.attr("mode", "avg")
    if mode not in ("avg", "max"):
        raise ctx.error(f"mode must be 'avg' or 'max', got {mode!r}")
    default_ctm = "half_pixel" if ctx.opset >= 16 else "output_half_pixel"
    ctm = ctx.attr("coordinate_transformation_mode", default_ctm)
    if ctm not in ("half_pixel", "output_half_pixel"):
        raise ctx.error(f"coordinate_transformation_mode must be 'half_pixel' or 'output_half_pixel', got {ctm!r}")
    half = ctm == "half_pixel"
    oh, ow = int(ctx.attr("output_height", 1)), int(ctx.attr("output_width", 1))
    ratio = int(ctx.attr("sampling_ratio", 0))
    scale = float(ctx.attr("spatial_scale", 1.0))
    if oh < 1 or ow < 1 or ratio < 0:
        raise ctx.error(f"output_height {oh} and output_width {ow} must be >= 1, sampling_ratio {ratio} >= 0")

    def run(x: np.ndarray, rois: np.ndarray, batch_indices: np.ndarray) -> tuple[np.ndarray]:
        if x.ndim != 4 or rois.ndim != 2 or rois.shape[1] != 4 or batch_indices.shape != (rois.shape[0],):
            raise ctx.error(f"X {list(x.shape)} must be [N, C, H, W], rois {list(rois.shape)} [num_rois, 4] and "
                            f"batch_indices {list(batch_indices.shape)} [num_rois]")
        n, c, h, w = x.shape
        if batch_indices.size and (batch_indices.min() < 0 or batch_indices.max() >= n):
            raise ctx.error(f"batch_indices {batch_indices.tolist()} must be in [0, {n}) for X {list(x.shape)}")
        dt = compute_dtype(x.dtype)
        xc = x.astype(dt, copy=False)
        out = np.empty((rois.shape[0], c, oh, ow), dt)
        offset = 0.5 if half else 0.0
        for r, box in enumerate(rois.astype(np.float64) * scale - offset):
            x1, y1, x2, y2 = box
            rw, rh = x2 - x1, y2 - y1
            if not half:
                rw, rh = max(rw, 1.0), max(rh, 1.0)
            gh = ratio if ratio > 0 else max(int(math.ceil(rh / oh)), 0)
            gw = ratio if ratio > 0 else max(int(math.ceil(rw / ow)), 0)
            count = max(gh * gw, 1)
            img = xc[int(batch_indices[r])]
            ylo, yhi, wyl, wyh = _sample_axis(y1, rh, oh, gh, h)
            xlo, xhi, wxl, wxh = _sample_axis(x1, rw, ow, gw, w)
            if mode == "avg":
                ay = np.zeros((oh, h))
                bins = np.broadcast_to(np.arange(oh)[:, None], ylo.shape)
                np.add.at(ay, (bins, ylo), wyl)
                np.add.at(ay, (bins, yhi), wyh)
                ax = np.zeros((ow, w))
                bins = np.broadcast_to(np.arange(ow)[:, None], xlo.shape)
                np.add.at(ax, (bins, xlo), wxl)
                np.add.at(ax, (bins, xhi), wxh)
                rows = np.matmul(img.reshape(c * h, w), (ax.T / count).astype(dt)).reshape(c, h, ow)
                out[r] = np.matmul(ay.astype(dt), rows)
                continue
            best = None
            for yi, wy in ((ylo, wyl), (yhi, wyh)):
                for xi, wx in ((xlo, wxl), (xhi, wxh)):
                    v = img[:, yi[:, :, None, None], xi[None, None]]  # [C, oh, gh, ow, gw]
                    v = v * (wy[:, :, None, None] * wx[None, None]).astype(dt)
                    best = v if best is None else np.maximum(best, v)
            out[r] = best.max(axis=(2, 4)) if best is not None and best.size else 0
        return (out.astype(x.dtype, copy=False),)

    return run
