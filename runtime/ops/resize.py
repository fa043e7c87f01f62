"""Resampling: Resize, Upsample, GridSample, AffineGrid.

Resize is separable: every resized axis gets a table of source indices and
weights (computed once per input/output size and cached), and the data is
gathered along one axis at a time.  Nearest resizing is a pure gather, and
an integer-factor nearest upsample (the FPN/PP-OCR case) copies X straight
into strided slots of the output, with no index arrays.  Coordinates are
computed in float64 as onnx's reference does, so half-way cases round the
same way; the data itself is interpolated in float32 (float64 for double
and wide integers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import numpy as np

from ..ir import Dim, Type
from ..shapes import InferContext, dim_mul, normalize_axis, shape_str, static_len, tensor
from .registry import OpContext, op

_COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                "tf_crop_and_resize")
#: "legacy" is the rounding of Resize-10 and Upsample, which had no nearest_mode:
#: floor when upsampling, ceil when downsampling (as onnxruntime).
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "legacy")
_POLICIES = ("stretch", "not_larger", "not_smaller")


@dataclass(frozen=True)
class ResizeSpec:
    """A Resize node's attributes, hashable so per-axis tables can be cached."""

    mode: str
    coord: str
    nearest: str
    cubic_a: float = -0.75
    exclude_outside: bool = False
    antialias: bool = False
    extrapolation: float = 0.0


@dataclass(frozen=True)
class AxisTable:
    """How one output axis reads its input axis: out[j] = sum_t w[j, t] * in[idx[j, t]]."""

    idx: np.ndarray
    #: None for nearest (one tap, weight 1).
    w: np.ndarray | None
    #: Output positions that take the extrapolation value (tf_crop_and_resize), or None.
    outside: np.ndarray | None
    #: k when the axis is exactly an integer-factor nearest repeat.
    repeat: int | None


def _source_coords(spec: ResizeSpec, n_in: int, n_out: int, scale: float, roi: tuple[float, float]) -> np.ndarray:
    """Input coordinate of each output position (the coordinate_transformation_mode formulas)."""
    y = np.arange(n_out, dtype=np.float64)
    # The output length as a real number (scale * n_in, fractional when scales
    # are given): align_corners and tf_crop_and_resize divide by it, as onnx's
    # reference and conformance data do (onnxruntime uses the integer length).
    width = scale * n_in
    mode = spec.coord
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (y + 0.5) / scale - 0.5 if n_out > 1 else np.zeros(n_out)
    if mode == "align_corners":
        return y * (n_in - 1) / (width - 1) if width != 1 else np.zeros(n_out)
    if mode == "asymmetric":
        return y / scale
    start, end = roi
    if width == 1:
        return np.full(n_out, (start + end) / 2 * (n_in - 1))
    return start * (n_in - 1) + y * (end - start) * (n_in - 1) / (width - 1)


def _nearest_index(x: np.ndarray, mode: str, scale: float) -> np.ndarray:
    if mode == "round_prefer_floor":
        return np.ceil(x - 0.5)
    if mode == "round_prefer_ceil":
        return np.floor(x + 0.5)
    if mode == "floor" or (mode == "legacy" and scale >= 1):
        return np.floor(x)
    return np.ceil(x)


def _kernel(mode: str, t: np.ndarray, a: float) -> np.ndarray:
    """The linear (triangle) or cubic (Keys, coefficient a) filter at distances t."""
    t = np.abs(t)
    if mode == "linear":
        return np.maximum(1 - t, 0)
    t2, t3 = t * t, t * t * t
    near = (a + 2) * t3 - (a + 3) * t2 + 1
    far = a * t3 - 5 * a * t2 + 8 * a * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


@lru_cache(maxsize=512)
def axis_table(spec: ResizeSpec, n_in: int, n_out: int, scale: float, roi: tuple[float, float]) -> AxisTable:
    """Indices and weights resizing one axis from n_in to n_out (cached: models repeat sizes)."""
    x = _source_coords(spec, n_in, n_out, scale, roi)
    outside = None
    if spec.coord == "tf_crop_and_resize":
        mask = (x < 0) | (x > n_in - 1)
        outside = mask if mask.any() else None
    if spec.mode == "nearest":
        idx = np.clip(_nearest_index(x, spec.nearest, scale), 0, n_in - 1).astype(np.intp)
        k = n_out // n_in if n_in else 0
        repeat = k if (outside is None and k >= 1 and n_out == n_in * k
                       and np.array_equal(idx, np.arange(n_out) // k)) else None
        return _frozen(AxisTable(idx, None, outside, repeat))
    radius = 1 if spec.mode == "linear" else 2
    # antialiasing stretches the filter by 1/scale when downsampling
    s = min(scale, 1.0) if spec.antialias else 1.0
    first = math.floor(-radius / s) + 1
    taps = np.arange(first, 1 - first + 1)
    # base is the input index just left of x (x itself excluded), so ratio is in (0, 1]
    base = np.ceil(x) - 1
    ratio = x - base
    w = _kernel(spec.mode, (taps[None, :] - ratio[:, None]) * s, spec.cubic_a)
    if spec.antialias:
        w /= w.sum(axis=1, keepdims=True)
    idx = base.astype(np.int64)[:, None] + taps[None, :]
    if spec.exclude_outside:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w /= np.where(total == 0, 1.0, total)
    return _frozen(AxisTable(np.clip(idx, 0, n_in - 1).astype(np.intp), w, outside, None))


def _frozen(table: AxisTable) -> AxisTable:
    """Cached tables are shared by every run: make their arrays read-only."""
    for arr in (table.idx, table.w, table.outside):
        if arr is not None:
            arr.flags.writeable = False
    return table


def _work_dtype(x: np.ndarray) -> np.dtype:
    """float32 for small types, float64 for double and integers float32 can't hold exactly."""
    if x.dtype == np.float64 or (x.dtype.kind in "iu" and x.dtype.itemsize >= 4):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _cast_back(y: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Interpolated values in the input's dtype: integers round half to even and saturate."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(y), info.min, info.max).astype(dtype)
    return y.astype(dtype, copy=False)


def _along(axis: int, ndim: int, v: np.ndarray) -> np.ndarray:
    """A per-position vector shaped to broadcast along `axis` of an ndim array."""
    return v.reshape(v.shape + (1,) * (ndim - axis - 1))


def _axis_order(tables: dict[int, AxisTable], shape: Sequence[int]) -> list[int]:
    """Shrinking axes first, then growing ones from the innermost out: the data
    stays small as long as possible, and the costly gathers along the last
    (contiguous) axis run on the smallest array."""
    return sorted(tables, key=lambda a: (len(tables[a].idx) > shape[a], -a))


def _repeat(x: np.ndarray, tables: dict[int, AxisTable], out_shape: tuple[int, ...]) -> np.ndarray:
    """Integer-factor nearest upsampling: X written once into each of the k1*k2*... slots
    of an (.., d, k, ..) view of the output, then reshaped (no index arrays at all)."""
    view: list[int] = []
    reps: list[int] = []
    for a, d in enumerate(x.shape):
        k = tables[a].repeat if a in tables else 1
        assert k is not None
        view += [d, k] if k != 1 else [d]
        if k != 1:
            reps.append(k)
    out = np.empty(view, dtype=x.dtype)
    for slot in np.ndindex(*reps):
        index: list[Any] = []
        it = iter(slot)
        for a in range(x.ndim):
            index.append(slice(None))
            if a in tables and tables[a].repeat != 1:
                index.append(next(it))
        out[tuple(index)] = x
    return out.reshape(out_shape)


def _nearest(x: np.ndarray, tables: dict[int, AxisTable], out_shape: tuple[int, ...], fill: Any) -> np.ndarray:
    """Nearest resize: slot copies for integer repeats, else one gather per axis."""
    if all(t.repeat is not None for t in tables.values()):
        return _repeat(x, tables, out_shape)
    y = x
    for a in _axis_order(tables, x.shape):
        y = np.take(y, tables[a].idx, axis=a)
        if tables[a].outside is not None:
            y[(slice(None),) * a + (tables[a].outside,)] = fill
    return y


def _interpolate(x: np.ndarray, tables: dict[int, AxisTable], fill: float) -> np.ndarray:
    """Linear/cubic resize, one axis at a time: a weighted sum of a few gathers per axis."""
    work = _work_dtype(x)
    y = x.astype(work, copy=False)
    for a in _axis_order(tables, x.shape):
        t = tables[a]
        assert t.w is not None
        w = t.w.astype(work)
        acc = np.take(y, t.idx[:, 0], axis=a)
        acc *= _along(a, y.ndim, w[:, 0])
        for k in range(1, w.shape[1]):
            part = np.take(y, t.idx[:, k], axis=a)
            part *= _along(a, y.ndim, w[:, k])
            acc += part
        if t.outside is not None:
            acc[(slice(None),) * a + (t.outside,)] = fill
        y = acc
    return _cast_back(y, x.dtype)


def _resample(ctx: OpContext, spec: ResizeSpec, x: np.ndarray, out_shape: Sequence[int], scales: Sequence[float],
              rois: Sequence[tuple[float, float]]) -> np.ndarray:
    """Resize x to out_shape; axes whose size, scale and roi are unchanged are skipped."""
    tables: dict[int, AxisTable] = {}
    for a, (n_in, n_out) in enumerate(zip(x.shape, out_shape)):
        identity = n_in == n_out and math.isclose(scales[a], 1.0) and (
            spec.coord != "tf_crop_and_resize" or rois[a] == (0.0, 1.0))
        if identity:
            continue
        if n_out == 0 or n_in == 0:
            return np.zeros(tuple(out_shape), dtype=x.dtype)
        tables[a] = axis_table(spec, n_in, int(n_out), float(scales[a]), rois[a])
    if not tables:
        return x.copy()
    if spec.mode == "nearest":
        return _nearest(x, tables, tuple(out_shape), spec.extrapolation)
    if x.dtype.kind not in "fiu":
        raise ctx.error(f"mode '{spec.mode}' needs a numeric input, got {x.dtype}")
    return _interpolate(x, tables, spec.extrapolation)


def read_spec(ctx: InferContext | OpContext, legacy: bool) -> ResizeSpec:
    """The node's attributes, validated; `legacy` for Resize-10 and Upsample."""
    mode = ctx.attr("mode", "nearest")
    if legacy and mode in ("bilinear", "trilinear"):
        mode = "linear"
    if mode not in ("nearest", "linear", "cubic") or (legacy and mode == "cubic"):
        raise ctx.error(f"unsupported mode '{mode}'")
    if legacy:
        return ResizeSpec(mode, "asymmetric", "legacy")
    coord = ctx.attr("coordinate_transformation_mode", "half_pixel")
    if coord not in _COORD_MODES:
        raise ctx.error(f"unsupported coordinate_transformation_mode '{coord}'")
    nearest = ctx.attr("nearest_mode", "round_prefer_floor")
    if nearest not in _NEAREST_MODES[:-1]:
        raise ctx.error(f"unsupported nearest_mode '{nearest}'")
    policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
    if policy not in _POLICIES:
        raise ctx.error(f"unsupported keep_aspect_ratio_policy '{policy}'")
    return ResizeSpec(mode, coord, nearest, float(ctx.attr("cubic_coeff_a", -0.75)),
                 bool(ctx.attr("exclude_outside", 0)), bool(ctx.attr("antialias", 0)),
                 float(ctx.attr("extrapolation_value", 0.0)))


def resize_axes(ctx: InferContext | OpContext, rank: int) -> list[int]:
    axes = ctx.attr("axes", None)
    if axes is None:
        return list(range(rank))
    out = [normalize_axis(int(a), rank, ctx.node, "axes entry") for a in axes]
    if len(set(out)) != len(out):
        raise ctx.error(f"axes {list(axes)} repeat an axis")
    return out


def resize_target(ctx: OpContext, x_shape: tuple[int, ...], axes: list[int], scales: np.ndarray | None,
            sizes: np.ndarray | None, policy: str) -> tuple[list[int], list[float]]:
    """Output shape and per-axis scale from `scales` or `sizes` (with keep_aspect_ratio_policy)."""
    out, factor = list(x_shape), [1.0] * len(x_shape)
    if sizes is not None:
        if scales is not None:
            raise ctx.error("only one of 'scales' and 'sizes' may be given")
        if sizes.size != len(axes):
            raise ctx.error(f"sizes {sizes.tolist()} must have {len(axes)} entries for X of shape {list(x_shape)}")
        want = [int(v) for v in sizes.reshape(-1)]
        if any(v < 0 for v in want):
            raise ctx.error(f"sizes {want} must be non-negative")
        ratios = [w / x_shape[a] if x_shape[a] else 1.0 for w, a in zip(want, axes)]
        if policy != "stretch":
            s = min(ratios) if policy == "not_larger" else max(ratios)
            ratios = [s] * len(axes)
            want = [int(s * x_shape[a] + 0.5) for a in axes]
        for a, w, r in zip(axes, want, ratios):
            out[a], factor[a] = w, r
        return out, factor
    if scales is None:
        raise ctx.error("one of 'scales' and 'sizes' must be given")
    if scales.size != len(axes):
        raise ctx.error(f"scales {scales.tolist()} must have {len(axes)} entries for X of shape {list(x_shape)}")
    for a, s in zip(axes, scales.reshape(-1).astype(np.float64)):
        if not s > 0:
            raise ctx.error(f"scales {scales.tolist()} must be positive")
        out[a], factor[a] = int(math.floor(x_shape[a] * float(s))), float(s)
    return out, factor


def present_values(v: np.ndarray | None) -> np.ndarray | None:
    """Optional inputs given as empty tensors count as absent (opset 11 requires `scales`)."""
    return v if v is not None and v.size else None


def _scaled_dim(d: Dim, s: float) -> Dim:
    if isinstance(d, int):
        return int(math.floor(d * s))
    if s == 1:
        return d
    if float(s).is_integer():
        return dim_mul(d, int(s))
    return None


def _resize_rule(ctx: InferContext) -> list[Type | None]:
    legacy = ctx.node.op_type == "Upsample" or ctx.opset < 11
    read_spec(ctx, legacy)
    upsample7 = ctx.node.op_type == "Upsample" and ctx.opset < 9
    if not upsample7 and not ctx.has(1 if legacy else 2) and (legacy or not ctx.has(3)):
        raise ctx.error("one of 'scales' and 'sizes' must be given")
    xs = ctx.shape(0)
    if xs is None:
        return [tensor(ctx.elem(0))]
    axes = resize_axes(ctx, len(xs))
    out: list[Dim] = list(xs)
    if upsample7:
        scales: Any = np.asarray(ctx.attr("scales"), dtype=np.float32)
        sizes = None
    else:
        scales = ctx.value(1 if legacy else 2) if ctx.has(1 if legacy else 2) else None
        sizes = ctx.sym(3) if not legacy and ctx.has(3) else None
    if scales is not None and scales.size == 0:
        scales = None
    if sizes is not None and len(sizes.dims) == 0:
        sizes = None
    policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
    if sizes is not None:
        if len(sizes.dims) != len(axes):
            raise ctx.error(f"sizes has {len(sizes.dims)} entries, expected {len(axes)} for X of shape {shape_str(xs)}")
        if policy == "stretch":
            for a, d in zip(axes, sizes.dims):
                out[a] = d
        elif all(isinstance(d, int) for d in sizes.dims) and all(isinstance(xs[a], int) and xs[a] for a in axes):
            ratios = [d / xs[a] for a, d in zip(axes, sizes.dims)]  # type: ignore[operator]
            s = min(ratios) if policy == "not_larger" else max(ratios)
            for a in axes:
                out[a] = int(s * xs[a] + 0.5)  # type: ignore[operator]
        else:
            for a in axes:
                out[a] = None
    elif scales is not None:
        if scales.size != len(axes):
            raise ctx.error(f"scales has {scales.size} entries, expected {len(axes)} for X of shape {shape_str(xs)}")
        for a, s in zip(axes, scales.reshape(-1).astype(np.float64)):
            out[a] = _scaled_dim(xs[a], float(s))
    else:
        for a in axes:
            out[a] = None
    return [tensor(ctx.elem(0), out)]


@op("Resize", since=10, infer=_resize_rule)
def resize(ctx: OpContext) -> Any:
    """Resize-10 is the old Upsample (asymmetric coordinates, no roi/sizes);
    from 11 on every coordinate mode, nearest rounding, cubic, roi and sizes;
    18 adds axes, antialias and keep_aspect_ratio_policy."""
    legacy = ctx.opset < 11
    spec = read_spec(ctx, legacy)
    policy = ctx.attr("keep_aspect_ratio_policy", "stretch")

    def run(x: np.ndarray, *rest: np.ndarray | None) -> tuple[np.ndarray]:
        axes = resize_axes(ctx, x.ndim)
        if legacy:
            roi, scales, sizes = None, present_values(rest[0] if rest else None), None
        else:
            roi, scales, sizes = (present_values(rest[i]) if i < len(rest) else None for i in range(3))
        out_shape, factors = resize_target(ctx, x.shape, axes, scales, sizes, policy)
        rois = [(0.0, 1.0)] * x.ndim
        if spec.coord == "tf_crop_and_resize":
            if roi is None or roi.size != 2 * len(axes):
                raise ctx.error(f"tf_crop_and_resize needs roi with {2 * len(axes)} entries, got "
                                f"{None if roi is None else roi.tolist()}")
            r = roi.reshape(-1).astype(np.float64)
            for i, a in enumerate(axes):
                rois[a] = (float(r[i]), float(r[i + len(axes)]))
        return (_resample(ctx, spec, x, out_shape, factors, rois),)

    return run


@op("Upsample", since=7, infer=_resize_rule)
def upsample(ctx: OpContext) -> Any:
    """Upsample-7 takes scales as an attribute, Upsample-9 as an input; asymmetric
    coordinates and floor rounding, like Resize-10."""
    spec = read_spec(ctx, True)
    attr_scales = np.asarray(ctx.attr("scales"), dtype=np.float32) if ctx.opset < 9 else None

    def run(x: np.ndarray, scales: np.ndarray | None = None) -> tuple[np.ndarray]:
        s = attr_scales if attr_scales is not None else scales
        out_shape, factors = resize_target(ctx, x.shape, list(range(x.ndim)), present_values(s), None, "stretch")
        return (_resample(ctx, spec, x, out_shape, factors, [(0.0, 1.0)] * x.ndim),)

    return run


# ------------------------------------------------------------------ GridSample

def _reflect(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Fold coordinates into [lo, hi] by repeated reflection at the borders."""
    span = hi - lo
    if span <= 0:
        return np.full_like(u, lo)
    below, above = u < lo, u > hi
    d = np.where(below, lo - u, u - hi)
    n = np.floor(d / span)
    r = d - n * span
    even = n % 2 == 0
    folded = np.where(below == even, lo + r, hi - r)
    return np.where(below | above, folded, u)


def _cubic_weights(t: np.ndarray) -> list[np.ndarray]:
    """Keys cubic (a = -0.75, as PyTorch) weights of taps -1, 0, 1, 2 at fraction t."""
    return [_kernel("cubic", t + 1, -0.75), _kernel("cubic", t, -0.75),
            _kernel("cubic", 1 - t, -0.75), _kernel("cubic", 2 - t, -0.75)]


def _grid_rule(ctx: InferContext) -> list[Type | None]:
    xs, gs = ctx.shape(0), ctx.shape(1)
    mode = ctx.attr("mode", "bilinear" if ctx.opset < 20 else "linear")
    if mode not in ("bilinear", "linear", "nearest", "bicubic", "cubic"):
        raise ctx.error(f"unsupported mode '{mode}'")
    if ctx.attr("padding_mode", "zeros") not in ("zeros", "border", "reflection"):
        raise ctx.error(f"unsupported padding_mode '{ctx.attr('padding_mode')}'")
    if xs is None and gs is None:
        return [tensor(ctx.elem(0))]
    rank = len(xs) if xs is not None else len(gs)  # type: ignore[arg-type]
    if xs is not None and gs is not None:
        r = len(xs) - 2
        batch_ok = not (isinstance(xs[0], int) and isinstance(gs[0], int) and xs[0] != gs[0])
        if len(xs) < 3 or len(gs) != len(xs) or gs[-1] not in (r, None) or not batch_ok:
            raise ctx.error(f"grid of shape {shape_str(gs)} does not match X of shape {shape_str(xs)} "
                            f"(expected [N, *out, {r}] for {r} spatial dims)")
    n = xs[0] if xs is not None else gs[0]  # type: ignore[index]
    c = xs[1] if xs is not None else None
    spatial = tuple(gs[1:-1]) if gs is not None else (None,) * (rank - 2)
    return [tensor(ctx.elem(0), (n, c) + spatial)]


@op("GridSample", since=16, infer=_grid_rule)
def grid_sample(ctx: OpContext) -> Any:
    """Samples X at normalized grid positions.  Each spatial axis yields tap
    indices and weights for every output point; the 2^r (linear) or 4^r
    (cubic) tap combinations are each one gather over all points and channels.
    Semantics follow onnxruntime (and PyTorch's grid_sample, which the spec
    cites): coordinates outside the image are first clamped (border) or
    reflected, then each tap is padded again; nearest rounds half to even."""
    mode = ctx.attr("mode", "bilinear" if ctx.opset < 20 else "linear")
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    padding = ctx.attr("padding_mode", "zeros")
    align = bool(ctx.attr("align_corners", 0))

    def bounds(size: int) -> tuple[float, float]:
        """The range of in-image coordinates: pixel centres (align_corners) or pixel edges."""
        return (0.0, size - 1.0) if align else (-0.5, size - 0.5)

    def source(g: np.ndarray, size: int) -> np.ndarray:
        """Normalized grid coordinates [-1, 1] as input pixel coordinates."""
        u = (g + 1) / 2 * (size - 1) if align else ((g + 1) * size - 1) / 2
        return np.rint(u) if mode == "nearest" else u

    def pad(u: np.ndarray, size: int) -> np.ndarray:
        """Border/reflection padding of the sample coordinate.  Cubic border
        sampling keeps the coordinate and clamps each tap instead (PyTorch's
        and onnxruntime's behaviour; onnx's reference clamps the coordinate)."""
        lo, hi = bounds(size)
        if padding == "reflection":
            return _reflect(u, lo, hi)
        if padding == "border" and mode != "cubic":
            return np.where((u < lo) | (u > hi), np.clip(u, 0, size - 1), u)
        return u

    def axis_taps(u: np.ndarray, size: int) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Indices (clamped) and weights (None = 1) of the taps along one axis."""
        lo, hi = bounds(size)
        weights: Sequence[np.ndarray | None]
        if mode == "nearest":
            base, weights = u, [None]
            offsets = [0]
        else:
            base = np.floor(u)
            t = u - base
            if mode == "linear":
                weights, offsets = [1 - t, t], [0, 1]
            else:
                weights, offsets = _cubic_weights(t), [-1, 0, 1, 2]
        idxs, ws = [], []
        for off, w in zip(offsets, weights):
            i = base + off
            if padding == "zeros":
                valid = (i >= 0) & (i <= size - 1)
                w = valid.astype(u.dtype) if w is None else w * valid
            elif padding == "reflection":
                i = _reflect(i, lo, hi)
            idxs.append(np.clip(i, 0, size - 1).astype(np.intp))
            ws.append(w)
        return idxs, ws

    def run(x: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray]:
        r = x.ndim - 2
        if r < 1 or grid.ndim != x.ndim or grid.shape[0] != x.shape[0] or grid.shape[-1] != r:
            raise ctx.error(f"grid of shape {list(grid.shape)} does not match X of shape {list(x.shape)} "
                            f"(expected [N, *out, {max(r, 0)}])")
        n, c, in_sp = x.shape[0], x.shape[1], x.shape[2:]
        out_sp = grid.shape[1:-1]
        if x.size == 0 or grid.size == 0:
            return (np.zeros((n, c) + out_sp, dtype=x.dtype),)
        gw = grid.astype(np.float64 if grid.dtype == np.float64 else np.float32, copy=False).reshape(n, -1, r)
        strides = [math.prod(in_sp[i + 1:]) for i in range(r)]
        # grid's last axis lists coordinates innermost-first: (x, y[, z]) index (W, H[, D])
        per_axis = [axis_taps(pad(source(gw[..., r - 1 - i], size), size), size) for i, size in enumerate(in_sp)]
        # channels-last rows, so every tap gathers whole C-vectors (row copies, not scalars)
        rows = np.ascontiguousarray(x.reshape(n, c, -1).transpose(0, 2, 1)).reshape(-1, c)
        batch_offset = (np.arange(n) * math.prod(in_sp))[:, None]
        out = None
        for combo in np.ndindex(*(len(p[0]) for p in per_axis)):
            index = batch_offset + sum(per_axis[i][0][k] * strides[i] for i, k in enumerate(combo))
            vals = rows.take(index, axis=0)
            weight = None
            for i, k in enumerate(combo):
                w = per_axis[i][1][k]
                if w is not None:
                    weight = w if weight is None else weight * w
            if weight is not None:
                vals = vals * weight[..., None]
            if out is None:
                out = vals
            else:
                out += vals
        assert out is not None
        return (_cast_back(out.transpose(0, 2, 1), x.dtype).reshape((n, c) + out_sp),)

    return run


# ------------------------------------------------------------------ AffineGrid

def _affine_rule(ctx: InferContext) -> list[Type | None]:
    ts = ctx.shape(0)
    size = ctx.sym(1)
    if ts is not None and (len(ts) != 3 or not any(
            all(d is None or d == w for d, w in zip(ts[1:], want)) for want in ((2, 3), (3, 4)))):
        raise ctx.error(f"theta must have shape [N, 2, 3] or [N, 3, 4], got {shape_str(ts)}")
    if size is not None:
        r = len(size.dims) - 2
        if r not in (2, 3) or (ts is not None and isinstance(ts[1], int) and ts[1] != r):
            raise ctx.error(f"size {list(size.dims)} does not match theta of shape {shape_str(ts)} "
                            "(size [N, C, H, W] goes with theta [N, 2, 3], [N, C, D, H, W] with [N, 3, 4])")
        n = size.dims[0] if size.dims[0] is not None else (ts[0] if ts is not None else None)
        return [tensor(ctx.elem(0), (n,) + tuple(size.dims[2:]) + (r,))]
    n = static_len(ctx, 1)
    if n is not None:
        r = n - 2
        return [tensor(ctx.elem(0), (ts[0] if ts is not None else None,) + (None,) * r + (r,))]
    if ts is not None and isinstance(ts[1], int):
        r = ts[1]
        return [tensor(ctx.elem(0), (ts[0],) + (None,) * r + (r,))]
    return [tensor(ctx.elem(0))]


def _base_coords(size: int, align: bool) -> np.ndarray:
    """Normalized centres of `size` pixels along one axis (PyTorch's linspace_from_neg_one).

    A lone pixel sits at 0 as in PyTorch (onnxruntime puts it at +1 when
    align_corners is set; onnx's reference divides by zero there)."""
    if size <= 1:
        return np.zeros(size)
    v = np.linspace(-1.0, 1.0, size)
    return v if align else v * (size - 1) / size


@op("AffineGrid", since=20, infer=_affine_rule)
def affine_grid(ctx: OpContext) -> Any:
    """The sampling grid of a batch of affine maps: homogeneous pixel centres times theta^T, one matmul."""
    align = bool(ctx.attr("align_corners", 0))

    def run(theta: np.ndarray, size: np.ndarray) -> tuple[np.ndarray]:
        dims = [int(v) for v in size.reshape(-1)]
        if len(dims) not in (4, 5) or theta.ndim != 3 or theta.shape[1:] != (len(dims) - 2, len(dims) - 1) \
                or theta.shape[0] != dims[0]:
            raise ctx.error(f"theta of shape {list(theta.shape)} does not match size {dims} "
                            "(expected theta [N, 2, 3] with size [N, C, H, W], or [N, 3, 4] with [N, C, D, H, W])")
        spatial = dims[2:]
        r = len(spatial)
        work = np.float64 if theta.dtype == np.float64 else np.float32
        axes = [_base_coords(s, align) for s in spatial]
        mesh = np.meshgrid(*axes, indexing="ij")
        # homogeneous coordinates ordered (x, y[, z], 1): innermost axis first
        base = np.stack([m.reshape(-1) for m in reversed(mesh)] + [np.ones(math.prod(spatial))], axis=1)
        grid = np.matmul(base.astype(work)[None], theta.astype(work, copy=False).transpose(0, 2, 1))
        return (grid.reshape([dims[0]] + spatial + [r]).astype(theta.dtype, copy=False),)

    return run
