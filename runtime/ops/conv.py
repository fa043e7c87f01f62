"""Convolutions: Conv, ConvTranspose, ConvInteger, DeformConv, Col2Im.

Conv decides the latency of CNNs, and numpy is only fast inside BLAS and
inside long vectorised loops, so the kernels are shaped for those:

- General case (im2col): the input is padded once, its sliding windows are
  viewed with `as_strided` (no copy) and copied into one contiguous column
  buffer [C*k, out], and each image is a single matmul per group,
  W[G, M/G, C/G*k] @ cols[G, C/G*k, out], whose result *is* the NCHW output:
  no transpose, no extra copy.  The column buffer is reused across images.
  Column buffers of big images are built and multiplied in cache-sized
  chunks of output rows.
- 1x1, stride-1, unpadded convs skip im2col: the input already is the column
  matrix, so the conv is one matmul.
- Depthwise convs (group == C_in == C_out) are a per-channel
  vector-matrix product over small cache-sized column blocks (see
  `_depthwise`: measured faster than a loop of per-tap multiply-adds, which
  costs two passes over the output per tap).
- Weights that are constants are reshaped and cast once, at build time; a
  constant bias becomes one more weight column, multiplied by a row of ones
  in the column buffer, so it costs no pass over the output.
- float16 computes in float32 (BLAS speed and float32 accumulation, as
  onnxruntime does) and rounds back once; float64 computes in float64.

Fusion hooks (for passes/fuse.py; webinfer-internal, not ONNX):

- A 4th input Z ("residual", the output's exact shape) is added to the
  output before the activation, block by block while the block is in cache:
  Conv -> Add(Z) [-> Relu] (ResNet's shortcut) becomes one node.
- The activation that follows a Conv becomes attributes of the Conv node,
  applied in place on the output buffer (after bias and residual), so it
  costs no extra tensor:

    activation = "Relu" | "Sigmoid" | "HardSwish"
               | "Clip"        (activation_min, activation_max; default +-inf)
               | "HardSigmoid" (activation_alpha = 0.2, activation_beta = 0.5)
               | "LeakyRelu"   (activation_alpha = 0.01)

ConvTranspose honours the activation attributes too.  The window geometry helpers
(`Window`, `Geometry`, `pad_spatial`, `windows`) are shared with pool.py.
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import dtypes
from ..ir import AttrMixin, Dim, Shape, Type
from ..shapes import InferContext, dim_add, dim_div, dim_mul, dims_compatible, shape_str, tensor
from .registry import Kernel, OpContext, op

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """float16 is computed in float32; float32/float64 in themselves."""
    return np.dtype(np.float32) if dtype == np.float16 else np.dtype(dtype)


# ------------------------------------------------------------ window geometry

@dataclass(frozen=True)
class Geometry:
    """Where every window of a conv or pool lies, for one input shape.

    `end` pads may exceed the attribute's (ceil mode): the padded input is
    then large enough for the last window, and the extra cells are never
    counted as padding by the pools.
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    begin: tuple[int, ...]
    end: tuple[int, ...]
    #: End pads as the attributes (or auto_pad) define them, before the ceil-mode extension.
    pad_end: tuple[int, ...]
    out: tuple[int, ...]

    @property
    def trivial(self) -> bool:
        """A 1x1 window, stride 1, no padding: every input cell is one window."""
        return (all(k == 1 for k in self.kernel) and all(s == 1 for s in self.strides)
                and not any(self.begin) and not any(self.end))


@dataclass(frozen=True)
class Window:
    """Sliding-window attributes of a Conv or pool node, validated once.

    Per-axis lists are None when absent: their defaults depend on the rank,
    known only with the input.
    """

    kernel: tuple[int, ...] | None
    strides: tuple[int, ...] | None
    dilations: tuple[int, ...] | None
    pads: tuple[int, ...] | None
    auto_pad: str
    ceil_mode: bool
    #: Conv sizes SAME padding with the dilated kernel; the pools use the
    #: undilated one (as onnxruntime does).
    same_dilated: bool

    def axes(self, ctx: AttrMixin, kernel: Sequence[int], n: int) -> tuple[tuple[int, ...], tuple[int, ...],
                                                                             tuple[int, ...]]:
        """strides, dilations and pads for `n` spatial axes, defaults filled, lengths checked."""
        if len(kernel) != n:
            raise ctx.error(f"kernel shape {list(kernel)} has {len(kernel)} axes but the input has {n} spatial axes")

        def fill(v: tuple[int, ...] | None, name: str, length: int, default: int) -> tuple[int, ...]:
            if v is None:
                return (default,) * length
            if len(v) != length:
                raise ctx.error(f"{name} {list(v)} has {len(v)} values; the input has {n} spatial axes, so "
                                f"{length} are needed")
            return v

        return (fill(self.strides, "strides", n, 1), fill(self.dilations, "dilations", n, 1),
                fill(self.pads, "pads", 2 * n, 0))

    def _pads(self, size: int, k: int, s: int, d: int, pads: tuple[int, ...], i: int, n: int) -> tuple[int, int]:
        if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            target = -(-size // s)
            total = max(0, (target - 1) * s + ((k - 1) * d + 1 if self.same_dilated else k) - size)
            small = total // 2
            return (small, total - small) if self.auto_pad == "SAME_UPPER" else (total - small, small)
        if self.auto_pad == "VALID":
            return 0, 0
        return pads[i], pads[i + n]

    def geometry(self, ctx: AttrMixin, spatial: Sequence[int], kernel: Sequence[int]) -> Geometry:
        """The windows over an input of spatial shape `spatial`; impossible shapes are errors."""
        n = len(spatial)
        strides, dilations, pads = self.axes(ctx, kernel, n)
        begin, end, pad_end, out = [], [], [], []
        for i, size in enumerate(spatial):
            k, s, d = kernel[i], strides[i], dilations[i]
            b, e = self._pads(size, k, s, d, pads, i, n)
            span = size + b + e - ((k - 1) * d + 1)
            if span < 0:
                raise ctx.error(f"input spatial shape {list(spatial)} with pads {list(pads)} is smaller than the "
                                f"kernel {list(kernel)} with dilations {list(dilations)} (axis {i})")
            o = span // s + 1
            if self.ceil_mode:
                o = -(-span // s) + 1
                if (o - 1) * s >= size + b:  # the last window must start inside the input or its left pad
                    o -= 1
            need = (o - 1) * s + (k - 1) * d + 1 - size - b
            begin.append(b)
            pad_end.append(e)
            end.append(max(e, need))
            out.append(o)
        return Geometry(tuple(kernel), strides, dilations, tuple(begin), tuple(end), tuple(pad_end), tuple(out))

    def out_dims(self, ctx: AttrMixin, spatial: Sequence[Dim], kernel: Sequence[int]) -> list[Dim]:
        """Output spatial dims for possibly symbolic input dims (None where unknowable)."""
        n = len(spatial)
        if all(isinstance(s, int) for s in spatial):
            return list(self.geometry(ctx, spatial, kernel).out)  # type: ignore[arg-type]
        strides, dilations, pads = self.axes(ctx, kernel, n)
        out: list[Dim] = []
        for i, size in enumerate(spatial):
            k, s, d = kernel[i], strides[i], dilations[i]
            if isinstance(size, int):
                one = Window((k,), (s,), (d,), (pads[i], pads[i + n]), self.auto_pad, self.ceil_mode,
                             self.same_dilated)
                out.append(one.geometry(ctx, [size], [k]).out[0])
                continue
            out.append(self._symbolic(size, k, s, d, pads[i], pads[i + n]))
        return out

    def _symbolic(self, size: Dim, k: int, s: int, d: int, b: int, e: int) -> Dim:
        if size is None:
            return None
        dk = (k - 1) * d + 1
        if self.auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            if self.same_dilated or dk == k:
                return dim_div(dim_add(size, s - 1), s)
            return None
        if self.auto_pad == "VALID":
            b = e = 0
        if s == 1:  # at stride 1 ceil mode only drops a window that starts in the end pad
            return dim_add(size, b + e - dk + (0 if self.ceil_mode and e >= dk else 1))
        if not self.ceil_mode:
            return dim_add(dim_div(dim_add(size, b + e - dk), s), 1)
        if e + s <= dk:  # ceil mode's last-window correction cannot apply
            return dim_add(dim_div(dim_add(size, b + e - dk + s - 1), s), 1)
        return None


def _ints_attr(ctx: AttrMixin, name: str, low: int) -> tuple[int, ...] | None:
    v = ctx.attr(name, None)
    if v is None:
        return None
    out = tuple(int(i) for i in v)
    if any(i < low for i in out):
        raise ctx.error(f"{name} must all be >= {low}, got {list(out)}")
    return out


def read_window(ctx: AttrMixin, pool: bool) -> Window:
    """The window attributes of a Conv (pool=False) or pooling node."""
    auto_pad = ctx.attr("auto_pad", "NOTSET") or "NOTSET"
    if auto_pad not in AUTO_PADS:
        raise ctx.error(f"auto_pad must be one of {', '.join(AUTO_PADS)}, got {auto_pad!r}")
    ceil = bool(ctx.attr("ceil_mode", 0)) if pool else False
    return Window(_ints_attr(ctx, "kernel_shape", 1), _ints_attr(ctx, "strides", 1), _ints_attr(ctx, "dilations", 1),
                  _ints_attr(ctx, "pads", 0), auto_pad, ceil, not pool)


_SCRATCH = threading.local()
#: Work buffers larger than this are not kept between calls.
_SCRATCH_MAX_BYTES = 16 << 20


def scratch(slot: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised work buffer that is reused across calls (one per thread and slot).

    A fresh large array is a fresh mapping from the OS, zero-filled page by
    page on first touch (thousands of page faults per model run); kernels
    run one at a time per thread, so their temporaries can share a few
    buffers.  Never hand one out as a result, and never hold two views of
    the same slot at once.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > _SCRATCH_MAX_BYTES:
        return np.empty(shape, dtype)
    buffers: dict[str, np.ndarray] = _SCRATCH.__dict__.setdefault("buffers", {})
    buf = buffers.get(slot)
    if buf is None or buf.nbytes < nbytes:
        buf = buffers[slot] = np.empty(nbytes, np.uint8)
    return buf[:nbytes].view(dtype).reshape(shape)


def pad_spatial(x: np.ndarray, begin: Sequence[int], end: Sequence[int], value: Any = 0,
                slot: str | None = None) -> np.ndarray:
    """`x` with its spatial axes padded by `value`, or `x` itself when there is no padding.

    With `slot`, the result lives in that scratch buffer (see `scratch`).
    """
    if not any(begin) and not any(end):
        return x
    shape = x.shape[:2] + tuple(s + b + e for s, b, e in zip(x.shape[2:], begin, end))
    out = scratch(slot, shape, x.dtype) if slot is not None else np.empty(shape, x.dtype)
    for i, (b, size) in enumerate(zip(begin, x.shape[2:])):  # the border slabs, then the interior
        lead = (slice(None),) * (2 + i)
        out[lead + (slice(0, b),)] = value
        out[lead + (slice(b + size, None),)] = value
    out[(slice(None), slice(None)) + tuple(slice(b, b + s) for b, s in zip(begin, x.shape[2:]))] = x
    return out


def windows(xp: np.ndarray, g: Geometry) -> np.ndarray:
    """A read-only view [N, C, *kernel, *out] of the windows over padded `xp` (no copy)."""
    st = xp.strides
    return as_strided(xp, xp.shape[:2] + g.kernel + g.out,
                      st[:2] + tuple(a * d for a, d in zip(st[2:], g.dilations))
                      + tuple(a * s for a, s in zip(st[2:], g.strides)), writeable=False)


# ---------------------------------------------------------- fused activation

Activation = Callable[[np.ndarray], None]


def _sigmoid_(y: np.ndarray) -> None:
    with np.errstate(over="ignore"):
        np.negative(y, out=y)
        np.exp(y, out=y)
    y += 1
    np.reciprocal(y, out=y)


def _hardswish_(y: np.ndarray) -> None:
    t = y * (1.0 / 6.0)
    t += 0.5
    np.clip(t, 0, 1, out=t)
    y *= t


def _leaky_relu(alpha: float) -> Activation:
    if 0.0 <= alpha <= 1.0:
        return lambda y: np.maximum(y, y * alpha, out=y)
    return lambda y: np.multiply(y, alpha, out=y, where=y < 0)


def _hard_sigmoid(alpha: float, beta: float) -> Activation:
    def run(y: np.ndarray) -> None:
        y *= alpha
        y += beta
        np.clip(y, 0, 1, out=y)

    return run


def read_activation(ctx: OpContext) -> Activation | None:
    """The in-place activation a fusion pass attached to this node, if any (see module docstring)."""
    name = ctx.attr("activation", None)
    if name is None:
        return None
    if name == "Relu":
        return lambda y: np.maximum(y, 0, out=y)
    if name == "Sigmoid":
        return _sigmoid_
    if name == "HardSwish":
        return _hardswish_
    if name == "Clip":
        lo, hi = float(ctx.attr("activation_min", -math.inf)), float(ctx.attr("activation_max", math.inf))
        return lambda y: np.clip(y, lo, hi, out=y)
    if name == "HardSigmoid":
        return _hard_sigmoid(float(ctx.attr("activation_alpha", 0.2)), float(ctx.attr("activation_beta", 0.5)))
    if name == "LeakyRelu":
        return _leaky_relu(float(ctx.attr("activation_alpha", 0.01)))
    raise ctx.error(f"unknown fused activation {name!r} (expected Relu, Clip, HardSigmoid, Sigmoid, HardSwish "
                    "or LeakyRelu)")


@dataclass(frozen=True)
class Epilogue:
    """Bias and fused activation, applied in place to output blocks while they are still in cache."""

    bias: np.ndarray | None  # [M] in the compute dtype
    act: Activation | None

    def __call__(self, y: np.ndarray, channels: slice, axis: int) -> None:
        """Finish `y`, a block whose axis `axis` holds output channels `channels`."""
        if self.bias is not None:
            y += self.bias[channels].reshape((-1,) + (1,) * (y.ndim - axis - 1))
        if self.act is not None:
            self.act(y)


def _finish(y: np.ndarray, bias: np.ndarray | None, act: Activation | None, out_dtype: np.dtype) -> np.ndarray:
    """Bias, activation (in place), then the output dtype."""
    Epilogue(None if bias is None else bias.astype(y.dtype, copy=False), act)(y, slice(None), 1)
    return y.astype(out_dtype, copy=False)


# ------------------------------------------------------------- conv engines

#: Column buffers larger than this are built and multiplied in chunks of output rows...
_CHUNK_ABOVE_BYTES = 2 << 20
#: ...of about this size, so each chunk is still in cache when the matmul reads it.
_CHUNK_BYTES = 512 << 10


def _gemm_conv(x: np.ndarray, w: ConvWeights, g: Geometry, epilogue: Epilogue,
               residual: np.ndarray | None) -> np.ndarray:
    """Grouped conv as im2col + matmul with `w.mat` [G, M/G, C/G*k (+1 for a folded bias)].

    Large column buffers (big images, few channels: a CNN's first layers)
    are split along the first output axis: copying a chunk then multiplying
    it while it is in cache is much faster than streaming the whole buffer
    through memory twice.  `residual` [N, M, out cells] is added to each
    block before the epilogue.
    """
    assert w.mat is not None
    mat = w.mat
    n, c = x.shape[:2]
    groups, mg = mat.shape[:2]
    kk = c // groups * math.prod(g.kernel)
    p = math.prod(g.out)
    y = np.empty((n, groups * mg) + g.out, mat.dtype)
    ym = y.reshape(n, groups * mg, p)
    every = slice(None)
    if g.trivial:
        if w.folded and groups * mg > c:  # a ones row on the input costs less than a bias pass on the output
            xb = scratch("conv.cols", (n, groups, kk + 1, p), mat.dtype)
            xb[:, :, :kk] = x.reshape(n, groups, kk, p)
            xb[:, :, kk] = 1
            np.matmul(mat, xb, out=ym.reshape(n, groups, mg, p))
        else:
            np.matmul(mat[:, :, :kk], x.reshape(n, groups, kk, p), out=ym.reshape(n, groups, mg, p))
            if w.folded:
                Epilogue(w.bias, None)(ym, every, 1)
        if residual is not None:
            ym += residual
        epilogue(ym, every, 1)
        return y
    win = windows(pad_spatial(x, g.begin, g.end, slot="conv.input"), g)
    row = p // g.out[0]  # output cells per index of the first output axis
    rows = g.out[0]
    col_bytes = c * math.prod(g.kernel) * row * mat.dtype.itemsize
    if col_bytes * rows > _CHUNK_ABOVE_BYTES:
        rows = max(1, min(rows, _CHUNK_BYTES // col_bytes))
    cols = scratch("conv.cols", (groups, mat.shape[2], rows * row), mat.dtype)
    if w.folded:
        cols[:, kk] = 1
    split = (groups, c // groups) + g.kernel
    rest = (slice(None),) * (len(g.out) - 1)
    for i in range(n):
        src = win[i].reshape(split + g.out)
        for r0 in range(0, g.out[0], rows):
            r1 = min(g.out[0], r0 + rows)
            part = cols[:, :, :(r1 - r0) * row]
            np.copyto(part[:, :kk].reshape(split + (r1 - r0,) + g.out[1:]), src[(Ellipsis, slice(r0, r1)) + rest])
            block = ym[i, :, r0 * row:r1 * row]
            np.matmul(mat, part, out=block.reshape(groups, mg, -1))
            if residual is not None:
                block += residual[i, :, r0 * row:r1 * row]
            epilogue(block, every, 0)
    return y


#: Size of the column block the depthwise engine builds and reduces at a time.
_DEPTHWISE_BLOCK_BYTES = 512 << 10
#: Stride-1 depthwise convs with output rows this short read whole padded rows (see `_depthwise`).
_WIDE_ROWS_BELOW = 128


def _depthwise(x: np.ndarray, w: np.ndarray, g: Geometry, epilogue: Epilogue) -> np.ndarray:
    """Depthwise conv (one filter per channel). `w` is [C, k].

    A depthwise filter has too little arithmetic for a big matmul, and a
    loop of numpy multiply-adds over kernel taps makes two passes over the
    output per tap (measured 2-4x slower), so each block of channels (or of
    output rows, for big images) gets a small im2col sized for the cache,
    reduced by one batched vector-matrix product, w[c, 1, k] @ cols[c, k, cells];
    the epilogue runs on the block while it is in cache.

    Copying windows of short rows is slow in numpy (a loop per row), so at
    stride 1 with short rows the columns are "wide": they span whole
    padded rows, which makes every tap one contiguous run of the flattened
    padded input; the surplus output columns are dropped at the end.
    """
    n, c = x.shape[:2]
    taps = math.prod(g.kernel)
    padded = tuple(sz + b + e for sz, b, e in zip(x.shape[2:], g.begin, g.end))
    wide = all(s == 1 for s in g.strides) and g.out[-1] < _WIDE_ROWS_BELOW and len(padded) > 1
    span = padded[1:] if wide else g.out[1:]
    row = math.prod(span)  # (computed) output cells per index of the first output axis
    cells = g.out[0] * row
    itemsize = w.dtype.itemsize
    if taps * cells * itemsize <= _DEPTHWISE_BLOCK_BYTES:
        block, rows = max(1, min(c, _DEPTHWISE_BLOCK_BYTES // (taps * cells * itemsize))), g.out[0]
    else:
        block, rows = 1, max(1, min(g.out[0], _DEPTHWISE_BLOCK_BYTES // (taps * row * itemsize)))
    if wide:
        flat = [math.prod(padded[i + 1:]) for i in range(len(padded))]
        slack = sum((k - 1) * d * f for k, d, f in zip(g.kernel[1:], g.dilations[1:], flat[1:]))
        buf = scratch("conv.input", (n, c, math.prod(padded) + slack), w.dtype)
        buf.fill(0)
        buf[:, :, :math.prod(padded)].reshape((n, c) + padded)[
            (slice(None), slice(None)) + tuple(slice(b, b + sz) for b, sz in zip(g.begin, x.shape[2:]))] = x
        tap_strides = (buf.strides[1],) + tuple(d * f * itemsize for d, f in zip(g.dilations, flat))
    else:
        win = windows(pad_spatial(x, g.begin, g.end, slot="conv.input"), g)
    wk = w[:, None, :]
    cols = scratch("conv.cols", (block, taps, rows * row), w.dtype)
    y = np.empty((n, c) + g.out, w.dtype)
    acc = scratch("conv.wide", (c, cells), w.dtype) if wide else None
    rest = (slice(None),) * (len(g.out) - 1)
    for img in range(n):
        ym = acc if acc is not None else y[img].reshape(c, cells)
        for c0 in range(0, c, block):
            c1 = min(c, c0 + block)
            for r0 in range(0, g.out[0], rows):
                r1 = min(g.out[0], r0 + rows)
                part = cols[:c1 - c0, :, :(r1 - r0) * row]
                if wide:
                    src = as_strided(buf[img, c0:, r0 * row:], (c1 - c0,) + g.kernel + ((r1 - r0) * row,),
                                     tap_strides + (itemsize,), writeable=False)
                    np.copyto(part.reshape(src.shape), src)
                else:
                    np.copyto(part.reshape((c1 - c0,) + g.kernel + (r1 - r0,) + g.out[1:]),
                              win[(img, slice(c0, c1)) + (slice(None),) * len(g.kernel) + (slice(r0, r1),) + rest])
                out = ym[c0:c1, r0 * row:r1 * row]
                np.matmul(wk[c0:c1], part, out=out[:, None, :])
                epilogue(out, slice(c0, c1), 0)
        if acc is not None:
            y[img] = acc.reshape((c, g.out[0]) + span)[(slice(None), slice(None))
                                                       + tuple(slice(0, o) for o in g.out[1:])]
    return y


@dataclass(frozen=True)
class ConvWeights:
    """A Conv's weights (and constant bias) laid out for its engine.

    `mat` [G, M/G, C/G*k] is the matmul engine's; with a folded bias it has
    one more column holding the bias, which multiplies a row of ones
    appended to the columns, so the bias costs no pass over the output.
    `depthwise` [C, k] is the depthwise engine's (its bias is added per
    block, in cache).
    """

    shape: tuple[int, ...]
    mat: np.ndarray | None
    depthwise: np.ndarray | None
    bias: np.ndarray | None = None

    @property
    def folded(self) -> bool:
        return self.mat is not None and self.bias is not None


def weight_matrix(w: np.ndarray, group: int, dtype: np.dtype) -> np.ndarray:
    """W [M, C/G, *k] as the contiguous matrix stack [G, M/G, C/G*k] the matmul engine takes."""
    return np.ascontiguousarray(w.astype(dtype, copy=False).reshape(group, w.shape[0] // group, -1))


def pack_weights(w: np.ndarray, group: int, dtype: np.dtype, bias: np.ndarray | None = None) -> ConvWeights:
    """Lay out W (and a constant bias) once for the engine that will run the conv."""
    m, cg = w.shape[:2]
    b = None if bias is None else bias.astype(dtype).reshape(m)
    if cg == 1 and m == group and w.ndim > 2:
        return ConvWeights(w.shape, None, np.ascontiguousarray(w.astype(dtype, copy=False).reshape(m, -1)), b)
    mat = weight_matrix(w, group, dtype)
    if b is not None:
        mat = np.ascontiguousarray(np.concatenate([mat, b.reshape(group, m // group, 1)], axis=2))
    return ConvWeights(w.shape, mat, None, b)


def conv_compute(x: np.ndarray, w: ConvWeights, g: Geometry, act: Activation | None = None,
                 bias: np.ndarray | None = None, residual: np.ndarray | None = None) -> np.ndarray:
    """The convolution of `x` (compute dtype) plus the packed or given bias, plus `residual`
    (the output's shape, compute dtype), then `act` in place."""
    if w.depthwise is not None:
        bias = w.bias if w.bias is not None else bias
        if residual is None:
            return _depthwise(x, w.depthwise, g, Epilogue(bias, act))
        y = _depthwise(x, w.depthwise, g, Epilogue(bias, None))
        y += residual
        if act is not None:
            act(y)
        return y
    assert w.mat is not None
    res = None if residual is None else residual.reshape(residual.shape[:2] + (-1,))
    return _gemm_conv(x, w, g, Epilogue(bias, act), res)


# --------------------------------------------------------------- Conv rules

def _group(ctx: AttrMixin) -> int:
    group = int(ctx.attr("group", 1))
    if group < 1:
        raise ctx.error(f"group must be >= 1, got {group}")
    return group


def check_channels(ctx: AttrMixin, x: Shape | None, w: Shape | None, group: int, transpose: bool = False) -> None:
    """Channel counts of X and W agree with `group` (for the dims known)."""
    if w is None:
        return
    if x is not None and len(x) != len(w):
        raise ctx.error(f"X {shape_str(x)} and W {shape_str(w)} must have the same rank")
    if len(w) < 3:
        raise ctx.error(f"W {shape_str(w)} must have rank >= 3 (out channels, in channels, kernel...)")
    cin = w[0] if transpose else dim_mul(w[1], group)
    if x is not None and isinstance(x[1], int) and isinstance(cin, int) and x[1] != cin:
        what = "W's first dim" if transpose else f"W's second dim times group={group}"
        raise ctx.error(f"X {shape_str(x)} has {x[1]} channels but {what} gives {cin} (W {shape_str(w)})")
    if isinstance(w[0], int) and w[0] % group:
        raise ctx.error(f"W {shape_str(w)} has {w[0]} {'input' if transpose else 'output'} channels, not "
                        f"divisible by group={group}")


def kernel_of(ctx: AttrMixin, win: Window, w: Shape | None) -> tuple[int, ...] | None:
    """kernel_shape, or W's spatial dims; they must agree when both are known."""
    wk = tuple(w[2:]) if w is not None else None
    if win.kernel is not None:
        if wk is not None and all(isinstance(d, int) for d in wk) and tuple(wk) != win.kernel:
            raise ctx.error(f"kernel_shape {list(win.kernel)} does not match W {shape_str(w)}")
        return win.kernel
    if wk is not None and all(isinstance(d, int) for d in wk):
        return wk  # type: ignore[return-value]
    return None


def _check_bias(ctx: AttrMixin, b: Shape | None, m: Dim) -> None:
    if b is None:
        return
    if len(b) != 1 or (isinstance(b[0], int) and isinstance(m, int) and b[0] != m):
        raise ctx.error(f"B {shape_str(b)} must be a vector of the {m} output channels")


def _conv_shape(ctx: InferContext, x: Shape | None, w: Shape | None, group: int) -> Shape | None:
    check_channels(ctx, x, w, group)
    rank = len(x) if x is not None else (len(w) if w is not None else None)
    if rank is None:
        return None
    if rank < 3:
        raise ctx.error(f"X {shape_str(x)} must have rank >= 3 (batch, channels, spatial...)")
    win = read_window(ctx, pool=False)
    kernel = kernel_of(ctx, win, w)
    m = w[0] if w is not None else None
    if x is None or kernel is None:
        return (x[0] if x is not None else None, m) + (None,) * (rank - 2)
    return (x[0], m, *win.out_dims(ctx, x[2:], kernel))


def _conv_rule(ctx: InferContext) -> list[Type | None]:
    shape = _conv_shape(ctx, ctx.shape(0), ctx.shape(1), _group(ctx))
    if ctx.has(2):
        _check_bias(ctx, ctx.shape(2), ctx.shape(1)[0] if ctx.shape(1) else None)
    if ctx.has(3):  # webinfer's fused residual (module docstring)
        z = ctx.shape(3)
        if z is not None and shape is not None and (len(z) != len(shape) or not all(
                dims_compatible(a, b) for a, b in zip(z, shape))):
            raise ctx.error(f"residual input {shape_str(z)} must have the output's shape {shape_str(shape)}")
    return [tensor(ctx.elem(0), shape)]


def _conv_geometry(ctx: AttrMixin, win: Window, x: np.ndarray, w_shape: tuple[int, ...], group: int) -> Geometry:
    """Run-time checks of a Conv's operands, then its window geometry."""
    if x.ndim != len(w_shape) or x.ndim < 3:
        raise ctx.error(f"X {list(x.shape)} and W {list(w_shape)} must have the same rank >= 3")
    if x.shape[1] != w_shape[1] * group or w_shape[0] % group:
        raise ctx.error(f"X {list(x.shape)} has {x.shape[1]} channels but W {list(w_shape)} with group={group} "
                        f"expects {w_shape[1] * group} (and out channels divisible by group)")
    kernel = kernel_of(ctx, win, w_shape)
    assert kernel is not None
    return win.geometry(ctx, x.shape[2:], kernel)


@op("Conv", since=1, infer=_conv_rule)
def conv(ctx: OpContext) -> Kernel:
    """Convolution over 1, 2 or 3 (or more) spatial axes; see the module docstring for how it runs."""
    win = read_window(ctx, pool=False)
    group = _group(ctx)
    act = read_activation(ctx)
    elem = ctx.in_elem(0)
    cdt = compute_dtype(dtypes.storage_dtype(elem)) if elem is not None else None
    w_const, b_const = ctx.const(1), ctx.const(2)
    packed = pack_weights(w_const, group, cdt, b_const) if w_const is not None and cdt is not None else None
    geometries: dict[tuple[int, ...], Geometry] = {}  # by X and W shapes

    def run(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
            z: np.ndarray | None = None) -> tuple[np.ndarray]:
        dt = compute_dtype(x.dtype)
        pw = packed if packed is not None else pack_weights(w, group, dt)
        key = x.shape + pw.shape
        g = geometries.get(key)
        if g is None:
            g = geometries[key] = _conv_geometry(ctx, win, x, pw.shape, group)
        if b is not None and b.shape != (pw.shape[0],):
            raise ctx.error(f"B {list(b.shape)} must be a vector of the {pw.shape[0]} output channels")
        bias = None if pw.bias is not None or b is None else b.astype(dt, copy=False)
        if z is not None:
            if z.shape != (x.shape[0], pw.shape[0]) + g.out:
                raise ctx.error(f"residual input {list(z.shape)} must have the output's shape "
                                f"{[x.shape[0], pw.shape[0], *g.out]}")
            z = z.astype(dt, copy=False)
        return (conv_compute(x.astype(dt, copy=False), pw, g, act, bias, z).astype(x.dtype, copy=False),)

    return run


# ------------------------------------------------------------ ConvInteger

def _conv_integer_rule(ctx: InferContext) -> list[Type | None]:
    return [tensor(dtypes.INT32, _conv_shape(ctx, ctx.shape(0), ctx.shape(1), _group(ctx)))]


@op("ConvInteger", since=10, infer=_conv_integer_rule)
def conv_integer(ctx: OpContext) -> Kernel:
    """Integer conv: (x - x_zero_point) * (w - w_zero_point) summed exactly into int32.

    Computed in float64 through BLAS: every product and partial sum of 8-bit
    operands is an integer far below 2**53, so the result is exact.
    """
    win = read_window(ctx, pool=False)
    group = _group(ctx)

    def run(x: np.ndarray, w: np.ndarray, x_zp: np.ndarray | None = None,
            w_zp: np.ndarray | None = None) -> tuple[np.ndarray]:
        g = _conv_geometry(ctx, win, x, w.shape, group)
        xf = x.astype(np.float64)
        if x_zp is not None:
            if x_zp.size != 1:
                raise ctx.error(f"x_zero_point {list(x_zp.shape)} must be a scalar")
            xf -= float(x_zp.reshape(-1)[0])
        wf = w.astype(np.float64)
        if w_zp is not None:
            if w_zp.size not in (1, w.shape[0]):
                raise ctx.error(f"w_zero_point {list(w_zp.shape)} must be a scalar or have one value per output "
                                f"channel ({w.shape[0]})")
            wf -= w_zp.astype(np.float64).reshape((-1,) + (1,) * (w.ndim - 1))
        y = conv_compute(xf, pack_weights(wf, group, np.dtype(np.float64)), g)
        return (y.astype(np.int32),)

    return run


# --------------------------------------------------------------- col2im

def scatter_add(buf: np.ndarray, cols: np.ndarray, kernel: Sequence[int], strides: Sequence[int],
                dilations: Sequence[int], blocks: Sequence[int]) -> None:
    """Add every kernel tap of `cols` [C, *kernel, *blocks] into its place in `buf` [C, *padded] (col2im)."""
    for tap in itertools.product(*(range(k) for k in kernel)):
        sl = tuple(slice(j * d, j * d + (nb - 1) * s + 1, s) for j, d, s, nb in zip(tap, dilations, strides, blocks))
        buf[(slice(None),) + sl] += cols[(slice(None),) + tap]


def _col2im_rule(ctx: InferContext) -> list[Type | None]:
    img = ctx.sym(1)
    block = ctx.ints(2)
    x = ctx.shape(0)
    if x is not None and len(x) != 3:
        raise ctx.error(f"input {shape_str(x)} must be [N, C*prod(block_shape), L]")
    n_sp = len(img.dims) if img is not None else (ctx.shape(1)[0] if ctx.shape(1) else None)
    if not isinstance(n_sp, int):
        return [tensor(ctx.elem(0))]
    c: Dim = None
    if x is not None and block is not None and isinstance(x[1], int):
        kk = math.prod(block)
        if x[1] % kk:
            raise ctx.error(f"input {shape_str(x)}: dim 1 ({x[1]}) is not divisible by prod(block_shape {block}) "
                            f"= {kk}")
        c = x[1] // kk
    spatial = img.dims if img is not None else (None,) * n_sp
    return [tensor(ctx.elem(0), (x[0] if x is not None else None, c) + spatial)]


@op("Col2Im", since=18, infer=_col2im_rule)
def col2im(ctx: OpContext) -> Kernel:
    """Col2Im (torch.nn.Fold): sums the column blocks back into an image, overlaps added."""
    strides_a = _ints_attr(ctx, "strides", 1)
    dilations_a = _ints_attr(ctx, "dilations", 1)
    pads_a = _ints_attr(ctx, "pads", 0)

    def run(x: np.ndarray, image_shape: np.ndarray, block_shape: np.ndarray) -> tuple[np.ndarray]:
        img = [int(v) for v in image_shape.reshape(-1)]
        kernel = [int(v) for v in block_shape.reshape(-1)]
        n = len(img)
        win = Window(None, strides_a, dilations_a, pads_a, "NOTSET", False, True)
        if len(kernel) != n or any(k < 1 for k in kernel) or any(v < 1 for v in img):
            raise ctx.error(f"image_shape {img} and block_shape {kernel} must be positive and of equal length")
        strides, dilations, pads = win.axes(ctx, kernel, n)
        kk = math.prod(kernel)
        if x.ndim != 3 or x.shape[1] % kk:
            raise ctx.error(f"input {list(x.shape)} must be [N, C*{kk}, L] for block_shape {kernel}")
        blocks = [(img[i] + pads[i] + pads[i + n] - (kernel[i] - 1) * dilations[i] - 1) // strides[i] + 1
                  for i in range(n)]
        if any(b < 1 for b in blocks) or math.prod(blocks) != x.shape[2]:
            raise ctx.error(f"input {list(x.shape)} has {x.shape[2]} blocks but image_shape {img}, block_shape "
                            f"{kernel}, pads {list(pads)}, strides {list(strides)} and dilations {list(dilations)} "
                            f"give {blocks}")
        c = x.shape[1] // kk
        padded = [img[i] + pads[i] + pads[i + n] for i in range(n)]
        out = np.empty((x.shape[0], c) + tuple(img), x.dtype)
        crop = (slice(None),) + tuple(slice(pads[i], pads[i] + img[i]) for i in range(n))
        for i in range(x.shape[0]):
            buf = np.zeros((c,) + tuple(padded), x.dtype)
            scatter_add(buf, x[i].reshape((c,) + tuple(kernel) + tuple(blocks)), kernel, strides, dilations, blocks)
            out[i] = buf[crop]
        return (out,)

    return run


# --------------------------------------------------------- ConvTranspose

@dataclass(frozen=True)
class _TransposeAttrs:
    win: Window
    output_padding: tuple[int, ...] | None
    output_shape: tuple[int, ...] | None

    def geometry(self, ctx: AttrMixin, spatial: Sequence[Dim], kernel: Sequence[int]) -> tuple[list[Dim], list[int]]:
        """Output spatial dims and begin pads (the crop of the full transposed conv)."""
        n = len(spatial)
        strides, dilations, pads = self.win.axes(ctx, kernel, n)
        op_ = self.output_padding or (0,) * n
        if len(op_) != n:
            raise ctx.error(f"output_padding {list(op_)} must have {n} values")
        shape = self.output_shape
        if shape is not None and len(shape) == n + 2:
            shape = shape[2:]
        if shape is not None and len(shape) != n:
            raise ctx.error(f"output_shape {list(shape)} must have {n} values (the spatial dims)")
        out: list[Dim] = []
        begin: list[int] = []
        for i, size in enumerate(spatial):
            s, d, k = strides[i], dilations[i], kernel[i]
            tail = op_[i] + (k - 1) * d + 1 - s  # full = size * s + tail
            full = dim_add(dim_mul(size, s), tail)
            auto = self.win.auto_pad in ("SAME_UPPER", "SAME_LOWER")
            if shape is not None or auto:
                target: Dim = shape[i] if shape is not None else dim_mul(size, s)
                if not isinstance(full, int) or not isinstance(target, int):
                    out.append(target)
                    begin.append(0)
                    continue
                total = max(0, full - target)
                begin.append(total // 2 if self.win.auto_pad == "SAME_UPPER" else total - total // 2)
                out.append(target)
            else:
                b, e = (0, 0) if self.win.auto_pad == "VALID" else (pads[i], pads[i + n])
                o = dim_add(full, -(b + e))
                if isinstance(o, int) and o < 1:
                    raise ctx.error(f"input spatial shape {list(spatial)}, kernel {list(kernel)} and pads "
                                    f"{list(pads)} give an empty output (axis {i}: {o})")
                begin.append(b)
                out.append(o)
        return out, begin


def _read_transpose(ctx: AttrMixin) -> _TransposeAttrs:
    return _TransposeAttrs(read_window(ctx, pool=False), _ints_attr(ctx, "output_padding", 0),
                           _ints_attr(ctx, "output_shape", 0))


def _conv_transpose_rule(ctx: InferContext) -> list[Type | None]:
    x, w = ctx.shape(0), ctx.shape(1)
    group = _group(ctx)
    check_channels(ctx, x, w, group, transpose=True)
    rank = len(x) if x is not None else (len(w) if w is not None else None)
    if rank is None:
        return [tensor(ctx.elem(0))]
    attrs = _read_transpose(ctx)
    kernel = kernel_of(ctx, attrs.win, w)
    m = dim_mul(w[1], group) if w is not None else None
    if ctx.has(2):
        _check_bias(ctx, ctx.shape(2), m)
    if x is None or kernel is None:
        return [tensor(ctx.elem(0), (x[0] if x is not None else None, m) + (None,) * (rank - 2))]
    out, _ = attrs.geometry(ctx, x[2:], kernel)
    return [tensor(ctx.elem(0), (x[0], m, *out))]


def _pack_transpose(w: np.ndarray, group: int, dtype: np.dtype) -> np.ndarray:
    """W [C, M/G, *k] as [G, M/G*k, C/G]: the matrix taking an image's channels to its columns."""
    c = w.shape[0]
    return np.ascontiguousarray(w.astype(dtype, copy=False).reshape(group, c // group, -1).transpose(0, 2, 1))


@dataclass(frozen=True)
class _TransposeScatter:
    """Col2im of ConvTranspose: columns [M, *kernel, *in] into the output [M, *out] (a crop of the full result).

    When taps cannot overlap (stride >= dilated kernel, e.g. the 2x2/2
    upsampling of segmentation heads), every tap is a plain strided
    assignment straight into the output; otherwise taps are summed into a
    zeroed buffer covering the full result, which is then cropped.
    """

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    spatial: tuple[int, ...]
    begin: tuple[int, ...]
    out: tuple[int, ...]

    def __call__(self, cols: np.ndarray, y: np.ndarray) -> None:
        dks = [(k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations)]
        if all(dk <= s for dk, s in zip(dks, self.strides)):
            if not all(dk == s and b + o <= sz * s for dk, s, b, o, sz in
                       zip(dks, self.strides, self.begin, self.out, self.spatial)):
                y[...] = 0
            for tap in itertools.product(*(range(k) for k in self.kernel)):
                dst, src = [slice(None)], [slice(None)]
                for j, d, s, b, o, sz in zip(tap, self.dilations, self.strides, self.begin, self.out, self.spatial):
                    q0 = max(0, -(-(b - j * d) // s))
                    q1 = min(sz, (o - 1 + b - j * d) // s + 1)
                    if q1 <= q0:
                        break
                    dst.append(slice(j * d + s * q0 - b, j * d + s * (q1 - 1) - b + 1, s))
                    src.append(slice(q0, q1))
                else:
                    y[tuple(dst)] = cols[(slice(None),) + tap + tuple(src[1:])]
            return
        full = [(sz - 1) * s + dk for sz, s, dk in zip(self.spatial, self.strides, dks)]
        buf = scratch("conv.wide", (y.shape[0],) + tuple(max(f, b + o) for f, b, o in zip(full, self.begin, self.out)),
                      y.dtype)
        buf.fill(0)
        scatter_add(buf, cols, self.kernel, self.strides, self.dilations, self.spatial)
        y[...] = buf[(slice(None),) + tuple(slice(b, b + o) for b, o in zip(self.begin, self.out))]


@op("ConvTranspose", since=1, infer=_conv_transpose_rule)
def conv_transpose(ctx: OpContext) -> Kernel:
    """Transposed conv: one matmul per image to columns, then col2im (one add per kernel tap)."""
    attrs = _read_transpose(ctx)
    group = _group(ctx)
    act = read_activation(ctx)
    elem = ctx.in_elem(0)
    cdt = compute_dtype(dtypes.storage_dtype(elem)) if elem is not None else None
    w_const = ctx.const(1)
    packed = _pack_transpose(w_const, group, cdt) if w_const is not None and cdt is not None else None

    def run(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> tuple[np.ndarray]:
        dt = compute_dtype(x.dtype)
        if x.ndim != w.ndim or x.ndim < 3 or x.shape[1] != w.shape[0] or w.shape[0] % group:
            raise ctx.error(f"X {list(x.shape)} and W {list(w.shape)} with group={group}: W must be "
                            "[C, M/group, *kernel] with C the channels of X, divisible by group")
        kernel = kernel_of(ctx, attrs.win, w.shape)
        assert kernel is not None
        out, begin = attrs.geometry(ctx, x.shape[2:], kernel)
        strides, dilations, _ = attrs.win.axes(ctx, kernel, len(kernel))
        wt = packed if packed is not None else _pack_transpose(w, group, dt)
        mg = w.shape[1]
        m = mg * group
        if b is not None and b.shape != (m,):
            raise ctx.error(f"B {list(b.shape)} must be a vector of the {m} output channels")
        n, c = x.shape[:2]
        spatial = x.shape[2:]
        p = math.prod(spatial)
        xc = x.astype(dt, copy=False)
        cols = scratch("conv.cols", (group, mg * math.prod(kernel), p), dt)
        y = np.empty((n, m) + tuple(out), dt)  # type: ignore[arg-type]
        col2im = _TransposeScatter(kernel, strides, dilations, spatial, tuple(begin),
                                   tuple(out))  # type: ignore[arg-type]
        for i in range(n):
            np.matmul(wt, xc[i].reshape(group, c // group, p), out=cols)
            col2im(cols.reshape((m,) + tuple(kernel) + spatial), y[i])
        return (_finish(y, b, act, x.dtype),)

    return run


# ------------------------------------------------------------- DeformConv

def _deform_rule(ctx: InferContext) -> list[Type | None]:
    x, w, off = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    group = _group(ctx)
    check_channels(ctx, x, w, group)
    rank = len(x) if x is not None else (len(w) if w is not None else None)
    if rank is None:
        return [tensor(ctx.elem(0))]
    if rank != 4:
        raise ctx.error(f"only 2-D DeformConv is supported: X {shape_str(x)}, W {shape_str(w)}")
    m = w[0] if w is not None else None
    if off is not None:
        return [tensor(ctx.elem(0), (x[0] if x is not None else off[0], m) + tuple(off[2:]))]
    shape = _conv_shape(ctx, x, w, group)
    return [tensor(ctx.elem(0), shape)]


def _bilinear_cols(img: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Bilinear samples of img [C, H, W] at float positions ys, xs [k, P]; cells outside count as 0."""
    c, h, w = img.shape
    flat = img.reshape(c, h * w)
    y0, x0 = np.floor(ys), np.floor(xs)
    fy, fx = ys - y0, xs - x0
    y0i, x0i = y0.astype(np.int64), x0.astype(np.int64)
    out = np.zeros((c,) + ys.shape, img.dtype)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            yi, xi = y0i + dy, x0i + dx
            inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
            idx = np.where(inside, yi * w + xi, 0)
            weight = np.where(inside, wy * wx, 0).astype(img.dtype)
            out += flat[:, idx] * weight
    return out


@op("DeformConv", since=19, infer=_deform_rule)
def deform_conv(ctx: OpContext) -> Kernel:
    """Deformable conv (2-D): bilinear samples at offset kernel positions, masked, then one matmul per group."""
    win = read_window(ctx, pool=False)
    group = _group(ctx)
    offset_group = int(ctx.attr("offset_group", 1))
    if offset_group < 1:
        raise ctx.error(f"offset_group must be >= 1, got {offset_group}")

    def run(x: np.ndarray, w: np.ndarray, offset: np.ndarray, b: np.ndarray | None = None,
            mask: np.ndarray | None = None) -> tuple[np.ndarray]:
        if x.ndim != 4:
            raise ctx.error(f"only 2-D DeformConv is supported: X {list(x.shape)}")
        g = _conv_geometry(ctx, win, x, w.shape, group)
        n, c, h, wd = x.shape
        kh, kw = g.kernel
        kk = kh * kw
        oh, ow = g.out
        if offset.shape != (n, offset_group * 2 * kk, oh, ow):
            raise ctx.error(f"offset {list(offset.shape)} must be {[n, offset_group * 2 * kk, oh, ow]} for X "
                            f"{list(x.shape)}, kernel {[kh, kw]} and offset_group={offset_group}")
        if mask is not None and mask.shape != (n, offset_group * kk, oh, ow):
            raise ctx.error(f"mask {list(mask.shape)} must be {[n, offset_group * kk, oh, ow]}")
        if c % offset_group:
            raise ctx.error(f"X {list(x.shape)}: {c} channels are not divisible by offset_group={offset_group}")
        dt = compute_dtype(x.dtype)
        pw = weight_matrix(w, group, dt)
        (sh, sw), (dh, dw), (pt, pl) = g.strides, g.dilations, g.begin
        base_y = (np.arange(oh) * sh - pt)[None, :, None] + (np.arange(kh) * dh)[:, None, None]  # [kh, oh, 1]
        base_x = (np.arange(ow) * sw - pl)[None, None, :] + (np.arange(kw) * dw)[:, None, None]  # [kw, 1, ow]
        base_y = np.broadcast_to(base_y[:, None], (kh, kw, oh, ow)).reshape(kk, oh * ow)
        base_x = np.broadcast_to(base_x[None], (kh, kw, oh, ow)).reshape(kk, oh * ow)
        cpo = c // offset_group
        y = np.empty((n, w.shape[0], oh, ow), dt)
        for i in range(n):
            off = offset[i].astype(np.float64).reshape(offset_group, kk, 2, oh * ow)
            cols = np.empty((c, kk, oh * ow), dt)
            for og in range(offset_group):
                sampled = _bilinear_cols(x[i, og * cpo:(og + 1) * cpo].astype(dt, copy=False),
                                         base_y + off[og, :, 0], base_x + off[og, :, 1])
                if mask is not None:
                    sampled *= mask[i].reshape(offset_group, kk, oh * ow)[og].astype(dt, copy=False)
                cols[og * cpo:(og + 1) * cpo] = sampled
            np.matmul(pw, cols.reshape(group, -1, oh * ow), out=y[i].reshape(group, -1, oh * ow))
        return (_finish(y, b, None, x.dtype),)

    return run
