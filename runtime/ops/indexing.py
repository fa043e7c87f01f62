"""Indexing, scatter and selection: Gather*, Scatter*, NonZero, Compress, Unique, TopK, CumSum, ...

Kernels are vectorised numpy: index tuples are built once per call and
applied with fancy indexing or `ufunc.at` (scatter reductions), never with
Python loops over elements.  Negative indices are normalised against the
indexed dim and out-of-range ones are reported with the offending value.

Gather on a shape vector propagates `SymInts` at load (the Shape -> Gather
step of exporters' shape arithmetic).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .. import dtypes
from ..ir import Dim, Type
from ..shapes import InferContext, SymInts, dims_product, normalize_axis, shape_str, tensor
from .registry import Kernel, OpContext, op
from .shape import axis_at_runtime


def _wrap_indices(idx: np.ndarray, dims: np.ndarray | int, what: str) -> np.ndarray:
    """Indices with negatives counted from the end; any outside [-dim, dim) is an error naming it."""
    idx = idx.astype(np.int64, copy=False)
    bad = (idx < -np.asarray(dims)) | (idx >= dims)
    if bad.any():
        d = np.broadcast_to(dims, idx.shape)[bad][0] if np.ndim(dims) else dims
        raise IndexError(f"{what} {int(idx[bad][0])} is out of range for a dim of size {int(d)}")
    return np.where(idx < 0, idx + dims, idx)


def as_intp(indices: np.ndarray, size: int) -> np.ndarray:
    """Indices in numpy's index type: np.take refuses int64 where intp is 32-bit (Pyodide's wasm32).

    On such platforms out-of-range values are rejected first, so the narrowing cannot wrap one into range.
    """
    if indices.dtype == np.intp:
        return indices
    if np.dtype(np.intp).itemsize < indices.dtype.itemsize and indices.size:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < -size or hi >= size:
            raise IndexError(f"index {lo if lo < -size else hi} is out of range for a dim of size {size}")
    return indices.astype(np.intp)


# ------------------------------------------------------------------ Gather

def _gather_rule(ctx: InferContext) -> list[Type | None]:
    elem, data, idx = ctx.elem(0), ctx.shape(0), ctx.shape(1)
    if data is None or idx is None:
        return [tensor(elem)]
    if not data:
        raise ctx.error("data must have rank >= 1, got a scalar")
    axis = normalize_axis(ctx.attr("axis", 0), len(data), ctx.node)
    src, ind = ctx.sym(0), ctx.value(1)
    length = data[axis]
    if ind is not None and isinstance(length, int):
        flat = ind.reshape(-1)
        if flat.size and (flat.min() < -length or flat.max() >= length):
            raise ctx.error(f"indices {flat.tolist()[:8]} are out of range for axis {axis} of {shape_str(data)}")
        if src is not None and ind.ndim <= 1:
            ctx.set_value(0, SymInts(tuple(src.dims[int(i)] for i in flat), scalar=ind.ndim == 0))
    return [tensor(elem, data[:axis] + idx + data[axis + 1:])]


@op("Gather", since=1, infer=_gather_rule, exotic=True)
def gather(ctx: OpContext) -> Kernel:
    """np.take: negative indices count from the end, out-of-range ones raise with the index and size.

    A scalar index into a 1-D tensor makes np.take return a numpy scalar, hence the asarray.
    """
    axis = ctx.attr("axis", 0)

    def run(x: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray]:
        a = axis_at_runtime(axis, x.ndim)
        return (np.asarray(np.take(x, as_intp(indices, x.shape[a]), axis=a)),)

    return run


def _gather_elements_rule(ctx: InferContext) -> list[Type | None]:
    data, idx = ctx.shape(0), ctx.shape(1)
    if data is not None and idx is not None:
        if len(data) != len(idx):
            raise ctx.error(f"indices {shape_str(idx)} must have the rank of data {shape_str(data)}")
        normalize_axis(ctx.attr("axis", 0), len(data), ctx.node)
    return [tensor(ctx.elem(0), idx)]


@op("GatherElements", since=11, infer=_gather_elements_rule, exotic=True)
def gather_elements(ctx: OpContext) -> Kernel:
    axis = ctx.attr("axis", 0)

    def run(x: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray]:
        if indices.ndim != x.ndim:
            raise ValueError(f"indices {list(indices.shape)} must have the rank of data {list(x.shape)}")
        a = axis_at_runtime(axis, x.ndim)
        if any(i > d for j, (i, d) in enumerate(zip(indices.shape, x.shape)) if j != a):
            raise ValueError(f"indices {list(indices.shape)} exceed data {list(x.shape)} off axis {a}")
        view = x[tuple(slice(None) if j == a else slice(0, n) for j, n in enumerate(indices.shape))]
        return (np.take_along_axis(view, _wrap_indices(indices, x.shape[a], "index"), a),)

    return run


def _gather_nd_rule(ctx: InferContext) -> list[Type | None]:
    elem, data, idx = ctx.elem(0), ctx.shape(0), ctx.shape(1)
    b = ctx.attr("batch_dims", 0)
    if data is None or idx is None:
        return [tensor(elem)]
    if not b < min(len(data), len(idx)):
        raise ctx.error(f"batch_dims {b} must be less than the ranks of data {shape_str(data)} and "
                        f"indices {shape_str(idx)}")
    k = idx[-1]
    if not isinstance(k, int):
        return [tensor(elem)]
    if not 1 <= k <= len(data) - b:
        raise ctx.error(f"indices {shape_str(idx)} index {k} dims, but data {shape_str(data)} has "
                        f"{len(data) - b} after {b} batch dims")
    return [tensor(elem, idx[:-1] + data[b + k:])]


def gather_nd(data: np.ndarray, indices: np.ndarray, b: int) -> np.ndarray:
    """GatherND as one fancy index: batch dims flattened, index tuples turned into flat offsets."""
    k = indices.shape[-1]
    if data.shape[:b] != indices.shape[:b] or not 1 <= k <= data.ndim - b:
        raise ValueError(f"indices {list(indices.shape)} do not fit data {list(data.shape)} with batch_dims {b}")
    batch = math.prod(data.shape[:b])
    dims = np.array(data.shape[b:b + k], dtype=np.int64)
    idx = _wrap_indices(indices.reshape(batch, -1, k) if indices.size else
                        indices.reshape(batch, 0, k), dims, "index")
    strides = np.cumprod(np.concatenate([dims[1:], [1]])[::-1])[::-1]
    flat = idx @ strides
    rest = data.shape[b + k:]
    table = data.reshape((batch, int(np.prod(dims))) + rest)
    out = table[np.arange(batch)[:, None], flat]
    return out.reshape(indices.shape[:-1] + rest)


@op("GatherND", since=11, infer=_gather_nd_rule, exotic=True)
def gather_nd_op(ctx: OpContext) -> Kernel:
    b = ctx.attr("batch_dims", 0)
    return lambda x, indices: (gather_nd(x, indices, b),)


# ----------------------------------------------------------------- Scatter

_REDUCTIONS: dict[str, Callable[..., None] | None] = {
    "none": None, "add": np.add.at, "mul": np.multiply.at, "max": np.maximum.at, "min": np.minimum.at}


def _scatter(data: np.ndarray, key: tuple[np.ndarray, ...], updates: np.ndarray, reduction: str) -> np.ndarray:
    """A copy of `data` with `updates` written at `key` (an index tuple), or combined there by `reduction`:
    ufunc.at, so updates to the same element accumulate."""
    out = data.copy()
    reduce = _REDUCTIONS[reduction]
    if reduce is None:
        out[key] = updates
    else:
        reduce(out, key, updates)
    return out


def _reduction(ctx: InferContext | OpContext) -> str:
    red = ctx.attr("reduction", "none")
    allowed = ["none"] + (["add", "mul"] if ctx.opset >= 16 else []) + (["max", "min"] if ctx.opset >= 18 else [])
    if red not in allowed:
        raise ctx.error(f"reduction {red!r} is not one of {', '.join(allowed)} at opset {ctx.opset}")
    return red


def _scatter_elements_rule(ctx: InferContext) -> list[Type | None]:
    _reduction(ctx)
    data, idx, upd = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    if idx is not None and upd is not None and (len(idx) != len(upd) or any(
            isinstance(a, int) and isinstance(b, int) and a != b for a, b in zip(idx, upd))):
        raise ctx.error(f"indices {shape_str(idx)} and updates {shape_str(upd)} must have the same shape")
    if data is not None:
        if idx is not None and len(idx) != len(data):
            raise ctx.error(f"indices {shape_str(idx)} must have the rank of data {shape_str(data)}")
        normalize_axis(ctx.attr("axis", 0), len(data), ctx.node)
    return [ctx.type(0)]


def scatter_elements(data: np.ndarray, indices: np.ndarray, updates: np.ndarray, axis: int,
                     reduction: str) -> np.ndarray:
    if indices.shape != updates.shape or indices.ndim != data.ndim:
        raise ValueError(f"indices {list(indices.shape)} and updates {list(updates.shape)} must have the same "
                         f"shape and the rank of data {list(data.shape)}")
    a = axis_at_runtime(axis, data.ndim)
    grid: tuple[np.ndarray, ...] = np.indices(indices.shape, sparse=True)
    key = tuple(_wrap_indices(indices, data.shape[a], "index") if j == a else g for j, g in enumerate(grid))
    return _scatter(data, key, updates, reduction)


def _scatter_elements_build(ctx: OpContext) -> Kernel:
    axis, reduction = ctx.attr("axis", 0), _reduction(ctx)
    return lambda x, indices, updates: (scatter_elements(x, indices, updates, axis, reduction),)


@op("ScatterElements", since=11, infer=_scatter_elements_rule)
def scatter_elements_op(ctx: OpContext) -> Kernel:
    """Reductions (add/mul since 16, max/min since 18) use ufunc.at, so duplicate indices accumulate."""
    return _scatter_elements_build(ctx)


@op("Scatter", since=9, infer=_scatter_elements_rule, exotic=True)
def scatter(ctx: OpContext) -> Kernel:
    """The deprecated name of ScatterElements without reduction (pure data movement)."""
    return _scatter_elements_build(ctx)


def _scatter_nd_rule(ctx: InferContext) -> list[Type | None]:
    _reduction(ctx)
    data, idx, upd = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    if data is not None and idx is not None and upd is not None and isinstance(idx[-1], int):
        k = idx[-1]
        if not 1 <= k <= len(data):
            raise ctx.error(f"indices {shape_str(idx)} index {k} dims of data {shape_str(data)}")
        want = idx[:-1] + data[k:]
        if len(want) != len(upd) or any(isinstance(a, int) and isinstance(b, int) and a != b
                                        for a, b in zip(want, upd)):
            raise ctx.error(f"updates {shape_str(upd)} must have shape {shape_str(want)} for data "
                            f"{shape_str(data)} and indices {shape_str(idx)}")
    return [ctx.type(0)]


def scatter_nd(data: np.ndarray, indices: np.ndarray, updates: np.ndarray, reduction: str) -> np.ndarray:
    k = indices.shape[-1]
    if not 1 <= k <= data.ndim or updates.shape != indices.shape[:-1] + data.shape[k:]:
        raise ValueError(f"updates {list(updates.shape)} must have shape "
                         f"{list(indices.shape[:-1] + data.shape[k:])} for data {list(data.shape)} and "
                         f"indices {list(indices.shape)}")
    idx = _wrap_indices(indices, np.array(data.shape[:k], dtype=np.int64), "index")
    return _scatter(data, tuple(idx[..., j] for j in range(k)), updates, reduction)


@op("ScatterND", since=11, infer=_scatter_nd_rule)
def scatter_nd_op(ctx: OpContext) -> Kernel:
    reduction = _reduction(ctx)
    return lambda x, indices, updates: (scatter_nd(x, indices, updates, reduction),)


def _tensor_scatter_rule(ctx: InferContext) -> list[Type | None]:
    mode = ctx.attr("mode", "linear")
    if mode not in ("linear", "circular"):
        raise ctx.error(f"mode must be linear or circular, got {mode!r}")
    cache, upd = ctx.shape(0), ctx.shape(1)
    if cache is not None and upd is not None:
        if len(cache) != len(upd):
            raise ctx.error(f"update {shape_str(upd)} must have the rank of past_cache {shape_str(cache)}")
        axis = normalize_axis(ctx.attr("axis", -2), len(cache), ctx.node)
        if axis == 0:
            raise ctx.error("axis must not be the batch axis 0")
        for i, (c, u) in enumerate(zip(cache, upd)):
            if isinstance(c, int) and isinstance(u, int) and (c < u if i == axis else c != u):
                raise ctx.error(f"update {shape_str(upd)} does not fit past_cache {shape_str(cache)} "
                                f"(sequence axis {axis})")
    return [ctx.type(0)]


@op("TensorScatter", since=24, infer=_tensor_scatter_rule, exotic=True)
def tensor_scatter(ctx: OpContext) -> Kernel:
    """KV-cache update: each batch row's update is written at its write index (mod the length if circular)."""
    axis, circular = ctx.attr("axis", -2), ctx.attr("mode", "linear") == "circular"

    def run(cache: np.ndarray, update: np.ndarray, write_indices: np.ndarray | None = None) -> tuple[np.ndarray]:
        a = axis_at_runtime(axis, cache.ndim)
        if update.ndim != cache.ndim or a == 0 or any(
                (u > c if i == a else u != c) for i, (u, c) in enumerate(zip(update.shape, cache.shape))):
            raise ValueError(f"update {list(update.shape)} does not fit past_cache {list(cache.shape)} "
                             f"on axis {axis}")
        batch, max_len, seq = cache.shape[0], cache.shape[a], update.shape[a]
        start = np.zeros(batch, dtype=np.int64) if write_indices is None else write_indices.astype(np.int64)
        pos = start[:, None] + np.arange(seq, dtype=np.int64)[None, :]
        if circular:
            pos %= max_len
        elif seq and (start.min() < 0 or pos.max() >= max_len):
            raise ValueError(f"write_indices {start.tolist()} + {seq} updates run past the cache length {max_len}")
        out = cache.copy()
        view = np.moveaxis(out, a, 1)
        view[np.arange(batch)[:, None], pos] = np.moveaxis(update, a, 1)
        return (out,)

    return run


# -------------------------------------------------- NonZero, Compress, Unique

def _nonzero_rule(ctx: InferContext) -> list[Type | None]:
    rank = ctx.rank(0)
    return [tensor(dtypes.INT64, (None if rank is None else max(rank, 1), None))]


@op("NonZero", since=9, infer=_nonzero_rule)
def nonzero(ctx: OpContext) -> Kernel:
    """Indices of non-zero elements, [rank, count]; a scalar counts as a 1-element vector, as in onnxruntime."""
    return lambda x: (np.array(np.nonzero(x.reshape(-1) if x.ndim == 0 else x), dtype=np.int64),)


def _compress_rule(ctx: InferContext) -> list[Type | None]:
    elem, shape = ctx.elem(0), ctx.shape(0)
    axis = ctx.attr("axis", None)
    cond = ctx.value(1)
    if shape is None:
        return [tensor(elem, (None,) if axis is None else None)]
    if axis is None:
        n = dims_product(shape)
        kept: Dim = None
        if cond is not None and isinstance(n, int):
            kept = int(np.count_nonzero(cond.reshape(-1)[:n]))
        return [tensor(elem, (kept,))]
    a = normalize_axis(axis, len(shape), ctx.node)
    kept = None
    if cond is not None and isinstance(shape[a], int):
        kept = int(np.count_nonzero(cond.reshape(-1)[:shape[a]]))
    return [tensor(elem, shape[:a] + (kept,) + shape[a + 1:])]


@op("Compress", since=9, infer=_compress_rule, exotic=True)
def compress(ctx: OpContext) -> Kernel:
    """numpy.compress: a condition shorter than the axis drops the slices it doesn't reach."""
    axis = ctx.attr("axis", None)

    def run(x: np.ndarray, condition: np.ndarray) -> tuple[np.ndarray]:
        cond = condition.reshape(-1).astype(bool, copy=False)
        if axis is None:
            return (np.compress(cond, x.reshape(-1)),)
        a = axis_at_runtime(axis, x.ndim)
        if cond.size > x.shape[a]:
            raise ValueError(f"condition has {cond.size} entries but axis {a} of {list(x.shape)} has "
                             f"{x.shape[a]}")
        return (np.compress(cond, x, axis=a),)

    return run


def _unique_rule(ctx: InferContext) -> list[Type | None]:
    elem, shape = ctx.elem(0), ctx.shape(0)
    axis = ctx.attr("axis", None)
    if shape is None:
        y: tuple[Dim, ...] | None = (None,) if axis is None else None
        n: Dim = None
    elif axis is None:
        y, n = (None,), dims_product(shape)
    else:
        a = normalize_axis(axis, len(shape), ctx.node)
        y, n = shape[:a] + (None,) + shape[a + 1:], shape[a]
    i64 = dtypes.INT64
    return [tensor(elem, y), tensor(i64, (None,)), tensor(i64, (n,)), tensor(i64, (None,))]


def unique(x: np.ndarray, axis: int | None, sort: bool) -> tuple[np.ndarray, ...]:
    """np.unique, then (sorted=0) reordered by first occurrence with the inverse remapped."""
    a = None if axis is None else axis_at_runtime(axis, x.ndim)
    y, first, inverse, counts = np.unique(x.reshape(-1) if a is None else x, return_index=True,
                                          return_inverse=True, return_counts=True, axis=a)
    inverse = inverse.reshape(-1)
    if not sort:
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        y = np.take(y, order, axis=0 if a is None else a)
        first, counts, inverse = first[order], counts[order], rank[inverse]
    i64 = np.int64
    return y, first.astype(i64), inverse.astype(i64), counts.astype(i64)


@op("Unique", since=11, infer=_unique_rule)
def unique_op(ctx: OpContext) -> Kernel:
    axis, sort = ctx.attr("axis", None), bool(ctx.attr("sorted", 1))
    return lambda x: unique(x, axis, sort)


# -------------------------------------------------------------------- TopK

def _topk_k(ctx: InferContext) -> Dim:
    if ctx.opset < 10:
        return ctx.attr("k")
    value = ctx.value(1)
    if value is not None:
        return int(value.reshape(-1)[0])
    sym = ctx.sym(1)
    return sym.dims[0] if sym is not None else None


def _topk_rule(ctx: InferContext) -> list[Type | None]:
    elem, shape = ctx.elem(0), ctx.shape(0)
    if shape is None:
        return [tensor(elem), tensor(dtypes.INT64)]
    axis = normalize_axis(ctx.attr("axis", -1), len(shape), ctx.node)
    k = _topk_k(ctx)
    length = shape[axis]
    if isinstance(k, int) and (k < 0 or isinstance(length, int) and k > length):
        raise ctx.error(f"k = {k} is out of range for axis {axis} of {shape_str(shape)}")
    out = shape[:axis] + (k,) + shape[axis + 1:]
    return [tensor(elem, out), tensor(dtypes.INT64, out)]


def _stable_order(rows: np.ndarray, largest: bool) -> np.ndarray:
    """Per-row sort order (last axis), ties by lower column first (as onnxruntime)."""
    if not largest:
        return np.argsort(rows, axis=-1, kind="stable")
    # An ascending stable sort of the reversed row, read backwards: descending with ties by lower column.
    n = rows.shape[-1]
    return (n - 1) - np.flip(np.argsort(np.flip(rows, -1), axis=-1, kind="stable"), -1)


def _select_top(rows: np.ndarray, k: int, largest: bool) -> np.ndarray:
    """Columns of the k best per row in O(n): partition for the k-th value, then take every element
    beyond it and the lowest-column ties at it (exactly k per row), and sort only those."""
    n = rows.shape[1]
    if largest:
        kth = np.partition(rows, n - k, axis=1)[:, n - k, None]
        beyond = rows > kth
    else:
        kth = np.partition(rows, k - 1, axis=1)[:, k - 1, None]
        beyond = rows < kth
    ties = rows == kth
    need = k - np.count_nonzero(beyond, axis=1)
    take = beyond | (ties & (np.cumsum(ties, axis=1) <= need[:, None]))
    cols = np.nonzero(take)[1].reshape(-1, k)
    return np.take_along_axis(cols, _stable_order(np.take_along_axis(rows, cols, 1), largest), 1)


def topk(x: np.ndarray, k: int, axis: int, largest: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sorted top-k with ties at the lower index first; small k avoids sorting the whole axis."""
    a = axis_at_runtime(axis, x.ndim)
    n = x.shape[a]
    if not 0 <= k <= n:
        raise ValueError(f"k = {k} is out of range for axis {a} of {list(x.shape)}")
    moved = np.moveaxis(x, a, -1)
    rows = moved.reshape(-1, n)
    if k and 4 * k < n and not (rows.dtype.kind in "fc" and np.isnan(rows).any()):
        idx = _select_top(rows, k, largest)
    else:
        idx = _stable_order(rows, largest)[:, :k]
    values = np.take_along_axis(rows, idx, 1)
    shape = moved.shape[:-1] + (k,)
    return (np.moveaxis(values.reshape(shape), -1, a),
            np.moveaxis(idx.astype(np.int64, copy=False).reshape(shape), -1, a))


@op("TopK", since=1, infer=_topk_rule)
def topk_op(ctx: OpContext) -> Kernel:
    """k is an attribute before opset 10, an input since; largest/sorted since 11 (always sorted here)."""
    axis, largest = ctx.attr("axis", -1), bool(ctx.attr("largest", 1))
    if ctx.opset < 10:
        k_attr = int(ctx.attr("k"))
        return lambda x: topk(x, k_attr, axis, largest)
    return lambda x, k: topk(x, int(k.reshape(-1)[0]), axis, largest)


# --------------------------------------------------------- ReverseSequence

def _reverse_sequence_axes(ctx: InferContext | OpContext) -> tuple[int, int]:
    b, t = ctx.attr("batch_axis", 1), ctx.attr("time_axis", 0)
    if {b, t} != {0, 1}:
        raise ctx.error(f"batch_axis {b} and time_axis {t} must be 0 and 1 in some order")
    return b, t


def _reverse_sequence_rule(ctx: InferContext) -> list[Type | None]:
    _reverse_sequence_axes(ctx)
    shape = ctx.shape(0)
    if shape is not None and len(shape) < 2:
        raise ctx.error(f"input must have rank >= 2, got {shape_str(shape)}")
    return [ctx.type(0)]


@op("ReverseSequence", since=10, infer=_reverse_sequence_rule, exotic=True)
def reverse_sequence(ctx: OpContext) -> Kernel:
    """One take_along_axis with a per-batch source index along time: reversed below the length, identity after."""
    b_ax, t_ax = _reverse_sequence_axes(ctx)

    def run(x: np.ndarray, sequence_lens: np.ndarray) -> tuple[np.ndarray]:
        steps, batch = x.shape[t_ax], x.shape[b_ax]
        lens = sequence_lens.astype(np.int64).reshape(-1)
        if lens.size != batch or (lens.size and (lens.min() < 0 or lens.max() > steps)):
            raise ValueError(f"sequence_lens {lens.tolist()} must hold {batch} lengths in [0, {steps}]")
        t = np.arange(steps, dtype=np.int64)[None, :]
        src = np.where(t < lens[:, None], lens[:, None] - 1 - t, t)
        if t_ax < b_ax:
            src = src.T
        src = src.reshape(src.shape + (1,) * (x.ndim - 2))
        return (np.take_along_axis(x, np.broadcast_to(src, x.shape), t_ax),)

    return run


# ------------------------------------------------------- CumSum, CumProd

def _cumulative(ctx: OpContext, fn: Callable[..., np.ndarray], identity: int) -> Kernel:
    exclusive, reverse = bool(ctx.attr("exclusive", 0)), bool(ctx.attr("reverse", 0))

    def run(x: np.ndarray, axis: np.ndarray) -> tuple[np.ndarray]:
        a = axis_at_runtime(int(axis.reshape(-1)[0]), x.ndim)
        src = np.flip(x, a) if reverse else x
        acc = fn(src, axis=a, dtype=x.dtype)
        if exclusive:
            shifted = np.full_like(acc, identity)
            head = tuple(slice(1, None) if j == a else slice(None) for j in range(x.ndim))
            tail = tuple(slice(None, -1) if j == a else slice(None) for j in range(x.ndim))
            shifted[head] = acc[tail]
            acc = shifted
        return (np.flip(acc, a) if reverse else acc,)

    return run


def _cumulative_rule(ctx: InferContext) -> list[Type | None]:
    rank, axis = ctx.rank(0), ctx.value(1)
    if axis is not None and axis.size != 1:
        raise ctx.error(f"axis must be a single value, got shape {list(axis.shape)}")
    if rank is not None and axis is not None:
        normalize_axis(int(axis.reshape(-1)[0]), rank, ctx.node)
    return [ctx.type(0)]


@op("CumSum", since=11, infer=_cumulative_rule)
def cumsum(ctx: OpContext) -> Kernel:
    """Accumulates in the input's dtype (int32 stays int32), with exclusive/reverse."""
    return _cumulative(ctx, np.cumsum, 0)


@op("CumProd", since=26, infer=_cumulative_rule)
def cumprod(ctx: OpContext) -> Kernel:
    return _cumulative(ctx, np.cumprod, 1)
