"""Convolutions: Conv, ConvTranspose, DeformConv, Col2Im (ConvInteger is with the integer products in quant.py).

Conv decides the latency of CNNs, and numpy is only fast inside BLAS and
inside long vectorised loops, so the kernels are shaped for those:

- General case (im2col): the input is padded once, its sliding windows are
  viewed with `as_strided` (no copy) and copied into one contiguous column
  buffer [C*k, out], and each image is a single matmul per group,
  W[G, M/G, C/G*k] @ cols[G, C/G*k, out], whose result *is* the NCHW output:
  no transpose, no extra copy.  The column buffer is reused across images.
  Column buffers of big images are built and multiplied in cache-sized
  chunks of output rows.  Strided convs with big kernels (7x7/2 stems) copy
  their columns from the input split into stride phases (`_window_parts`).
- Small convs (an audio model's Conv1d over a few frames) gather their
  columns in one `np.take` through an index made once per shape
  (`_gather_conv`): there, numpy's per-call costs are the conv's time.
- 1x1, stride-1, unpadded convs skip im2col: the input already is the column
  matrix, so the conv is one matmul (in blocks of output cells for big
  images, finished in cache: `_pointwise_conv`).  Where numpy's OpenBLAS
  can be called directly (blas.py), the product is accumulated into an
  output already holding the bias, or into the residual's own buffer when
  the residual dies at the conv (`_pointwise_accumulated`).
- The products of the im2col, gather, 1x1 and Winograd engines (and
  ConvTranspose's) go through gemm.py: numpy's matmul natively, the
  WebAssembly SIMD kernels in Pyodide (whose numpy has no BLAS); there the
  columns are packed per product.
- 3x3 stride-1 convs with enough channels and output run as Winograd
  F(2x2, 3x3) (`_winograd_conv`): 16 matmuls [M, C] @ [C, tiles] do 2.25x
  fewer multiplies than im2col's, which pays for the transforms where the
  matmul dominates (`winograd_pays`; ResNet's stages 1-3, PP-OCR's neck).
  The error stays at float32 rounding level (weights transformed in float64).
- Depthwise convs (group == C_in == C_out) have too little arithmetic for
  one big matmul: 2-D ones up to _BAND_MAX_WIDTH wide are one batched
  matmul of the input's row segments with the filter laid out as a band
  (`_depthwise_band`); wider stride-1 ones are two small matmuls per channel over
  row-shifted copies of the flattened input (`_depthwise_flat`), strided
  ones a per-channel vector-matrix product over small column blocks
  (`_depthwise`); both beat a loop of per-tap multiply-adds, which costs
  two passes over the output per tap.
- In Pyodide (whose numpy has no BLAS and no SIMD) float32 2-D convs with
  dilation 1 and column stride 1 or 2 run on the WebAssembly kernels
  (wasm/conv.c, through wasm_ops.py): depthwise ones directly, bias and
  activation in the kernel's store; dense ones (one group) as im2col written
  straight into the GEMM's panel layout, chunk by chunk, then the GEMM
  (`_wasm_im2col_conv`, `_wasm_pointwise_conv` for 1x1 ones), except where
  Winograd pays.  The epilogues (bias, activation) there are one pass of
  wasm/elementwise.c's `bias_act`.
- numpy is fast only on long contiguous runs (2-4x slower per cell on
  rows of a few hundred cells), so transforms, shifted sums and epilogues
  work on flat ranges wherever the layout allows.
- Weights that are constants are reshaped and cast once, at build time; a
  constant bias becomes one more weight column, multiplied by a row of ones
  in the column buffer, so it costs no pass over the output.
- float16 computes in float32 (BLAS speed and float32 accumulation, as
  onnxruntime does) and rounds back once; float64 computes in float64.

Fusion (passes/fuse.py) makes webinfer.FusedConv, a Conv with two extras
(the ONNX Conv rule refuses both):

- A 4th input Z ("residual", the output's exact shape) is added to the
  output before the activation, block by block while the block is in cache:
  Conv -> Add(Z) [-> Relu] (ResNet's shortcut) becomes one node.
- The activation that follows a Conv becomes its `activation*` attributes
  (the names, parameters and defaults are activations.py's one table),
  applied in place on the output buffer (after bias and residual), so it
  costs no extra tensor.

ConvTranspose honours the activation attributes too.  The window geometry helpers
(`Window`, `Geometry`, `pad_spatial`, `windows`) are shared with pool.py.
"""

from __future__ import annotations

import functools
import itertools
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import DTypeLike

from .. import blas, dtypes, gemm as cpu_gemm, wasm_kernels, wasm_ops
from ..ir import AttrMixin, Dim, Shape, TensorType, Type
from ..shapes import InferContext, dim_add, dim_div, dim_mul, dims_compatible, shape_str, static_len, tensor
from ..activations import Activation, fused_activation
from .registry import Kernel, OpContext, offer_consuming, op

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


def scratch(slot: str, shape: tuple[int, ...], dtype: DTypeLike) -> np.ndarray:
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

@dataclass(frozen=True)
class Epilogue:
    """Bias and fused activation, applied in place to output blocks while they are still in cache."""

    bias: np.ndarray | None  # [M] in the compute dtype
    act: Activation | None

    def __call__(self, y: np.ndarray, channels: slice, axis: int) -> None:
        """Finish `y`, a block whose axis `axis` holds output channels `channels`: in Pyodide one pass of
        the wasm epilogue kernel (numpy's bias add and activations take 2-5 passes)."""
        bias = None if self.bias is None else self.bias[channels]
        if wasm_ops.bias_act(y, bias, axis, self.act):
            return
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
#: ...of about this size, so each chunk is still in cache when the matmul reads it, but of at
#: least this many columns (output cells): thinner matmuls lose more to BLAS overhead and to
#: re-reading the weights than they gain from the cache.
_CHUNK_BYTES = 512 << 10
_CHUNK_MIN_CELLS = 512
#: Pointwise convs with outputs above _CHUNK_ABOVE_BYTES run in blocks of at least this many
#: output cells: the epilogue then finds its block in cache, and its rows are long enough for
#: numpy (which is 2-4x slower per element on rows of a few hundred cells than on one long run).
_POINTWISE_MIN_CELLS = 4096
#: 1x1 convs accumulate into an output holding their bias or residual (`_pointwise_accumulated`) only
#: above this many output bytes: below, the output stays in cache and the ctypes call's fixed cost is
#: more than numpy's bias and residual passes.
_ACCUMULATE_MIN_BYTES = 256 << 10


def _pointwise_dims(x: np.ndarray, w: ConvWeights) -> tuple[np.ndarray, int, int, int, int, int, int]:
    """A 1x1 conv's weight stack [G, M/G, C/G (+1)] and its N, C, G, M/G, C/G and output cells."""
    assert w.mat is not None
    n, c = x.shape[:2]
    groups, mg = w.mat.shape[:2]
    return w.mat, n, c, groups, mg, c // groups, math.prod(x.shape[2:])


def _pointwise_conv(x: np.ndarray, w: ConvWeights, epilogue: Epilogue, residual: np.ndarray | None,
                    consume: bool = False) -> np.ndarray:
    """1x1, stride-1, unpadded conv: the input already is the column matrix, so one matmul per image.

    Big outputs (large images, few channels) are computed in blocks of
    output cells, each finished (bias, residual, activation) while in cache.
    `consume`: the residual's buffer may become the output.
    `_pointwise_accumulated` (BLAS accumulating into an output holding the
    bias or the residual) saves passes that matter only on outputs out of
    cache (a ResNet's): outputs up to _ACCUMULATE_MIN_BYTES (a MobileNet's)
    go through numpy's matmul, whose call costs 5-10 us less than the
    ctypes one, then the bias and residual passes in cache; without a
    residual, an expansion with a folded bias takes it through a ones row
    on its (smaller) input.  MobileNetV3-small takes ~3% less CPU time so.
    """
    mat, n, c, groups, mg, kk, p = _pointwise_dims(x, w)
    every = slice(None)
    ones_row = w.folded and groups * mg > c  # a ones row on the input costs less than a bias pass on the output
    cells = max(_POINTWISE_MIN_CELLS, _CHUNK_BYTES // (groups * mg * mat.dtype.itemsize))
    out_bytes = groups * mg * p * mat.dtype.itemsize
    chunked = out_bytes > _CHUNK_ABOVE_BYTES and p >= 2 * cells
    bias = w.bias if w.folded else epilogue.bias
    if blas.available() and n * out_bytes > _ACCUMULATE_MIN_BYTES and (
            consume and residual is not None and residual.flags.c_contiguous
            or residual is None and bias is not None and not chunked and not ones_row):
        return _pointwise_accumulated(x, w, bias, epilogue.act, residual)
    y = np.empty((n, groups * mg) + x.shape[2:], mat.dtype)
    ym = y.reshape(n, groups * mg, p)
    xm = x.reshape(n, groups, kk, p)
    if residual is not None:
        residual = residual.reshape(n, groups * mg, p)
    if chunked:
        finish = Epilogue(w.bias, epilogue.act) if w.folded and not ones_row else epilogue
        xb = scratch("conv.cols", (groups, kk + 1, cells), mat.dtype) if ones_row else None
        if xb is not None:
            xb[:, kk] = 1
        for i in range(n):
            for q0 in range(0, p, cells):
                part = ym[i, :, q0:q0 + cells]
                if xb is not None:
                    cols = xb[:, :, :part.shape[1]]
                    np.copyto(cols[:, :kk], xm[i, :, :, q0:q0 + cells])
                    cpu_gemm.matmul(mat, cols, out=part.reshape(groups, mg, -1))
                else:
                    cpu_gemm.matmul(mat[:, :, :kk], xm[i, :, :, q0:q0 + cells], out=part.reshape(groups, mg, -1))
                _finish_block(part, None if residual is None else residual[i, :, q0:q0 + cells], finish)
        return y
    if ones_row:
        xb = scratch("conv.cols", (n, groups, kk + 1, p), mat.dtype)
        xb[:, :, :kk] = xm
        xb[:, :, kk] = 1
        cpu_gemm.matmul(mat, xb, out=ym.reshape(n, groups, mg, p))
    else:
        cpu_gemm.matmul(mat[:, :, :kk], xm, out=ym.reshape(n, groups, mg, p))
        if w.folded:
            Epilogue(w.bias, None)(ym, every, 1)
    if residual is not None:
        ym += residual
    epilogue(ym, every, 1)
    return y


def _pointwise_accumulated(x: np.ndarray, w: ConvWeights, bias: np.ndarray | None, act: Activation | None,
                           residual: np.ndarray | None) -> np.ndarray:
    """A 1x1 conv's products accumulated (BLAS beta = 1, blas.py) into an output holding the rest of the sum.

    numpy's matmul has OpenBLAS zero its output in a pass of its own, and
    the bias and residual then cost passes over the output (out of cache
    for a ResNet's wide convs).  Here, with a residual that dies at this
    conv, the output *is* the residual's buffer (returned as it is, so the
    next block can consume it in turn), and the bias comes in through a
    ones row on the input where the output is the larger, else in one pass;
    without a residual, the output is filled with the bias in place of
    BLAS's zeroing pass.
    """
    mat, n, c, groups, mg, kk, p = _pointwise_dims(x, w)
    xm = x.reshape(n, groups, kk, p)
    if xm.size and not blas.takes(xm[0, 0]):
        xm = np.ascontiguousarray(xm)  # a layout BLAS cannot express (a step or a reversal in the cells)
    y = residual if residual is not None else np.empty((n, groups * mg) + x.shape[2:], mat.dtype)
    ym = y.reshape(n, groups, mg, p)
    ones_row = residual is not None and w.folded and groups * mg > c
    if bias is not None and not ones_row:
        if residual is None:
            np.copyto(ym, bias.reshape(groups, mg, 1))
        else:
            ym += bias.reshape(groups, mg, 1)
    for i in range(n):
        if ones_row:
            xb = scratch("conv.cols", (groups, kk + 1, p), mat.dtype)
            xb[:, :kk] = xm[i]
            xb[:, kk] = 1
            for gi in range(groups):
                blas.accumulate(mat[gi], xb[gi], ym[i, gi])
        else:
            for gi in range(groups):
                blas.accumulate(mat[gi, :, :kk], xm[i, gi], ym[i, gi])
    if act is not None:
        act(ym)
    return y


def _window_parts(x: np.ndarray, g: Geometry) -> list[tuple[tuple[slice, ...], np.ndarray]]:
    """A conv's windows as (kernel taps, view [N, C, *taps, *out]) parts that im2col copies.

    Normally one part: all taps, a strided view of the padded input.  A
    strided conv with a big kernel (a CNN's 7x7/2 stem) reads every input
    cell many times, with the stride as the step of its innermost loop: its
    input is first split into stride phases, once, and each phase's taps
    then read contiguous runs, which numpy copies 2-3x faster.
    """
    if any(s > 1 for s in g.strides) and all(d == 1 for d in g.dilations) and (
            math.prod(g.kernel) >= _PHASE_SPLIT_TAPS_PER_PHASE * math.prod(g.strides)):
        n, c = x.shape[:2]
        size = [-(-(sz + b + e) // s) for sz, b, e, s in zip(x.shape[2:], g.begin, g.end, g.strides)]
        end = [q * s - sz - b for q, s, sz, b in zip(size, g.strides, x.shape[2:], g.begin)]
        xp = pad_spatial(x, g.begin, end, slot="conv.input")
        split = xp.reshape((n, c) + tuple(itertools.chain(*zip(size, g.strides))))
        dims = len(size)
        phases = scratch("conv.phases", (n, c) + g.strides + tuple(size), x.dtype)
        np.copyto(phases, split.transpose((0, 1) + tuple(3 + 2 * i for i in range(dims))
                                          + tuple(2 + 2 * i for i in range(dims))))
        parts = []
        for phase in itertools.product(*(range(s) for s in g.strides)):
            taps = tuple(len(range(f, k, s)) for f, k, s in zip(phase, g.kernel, g.strides))
            plane = phases[(slice(None), slice(None)) + phase]
            parts.append((tuple(slice(f, None, s) for f, s in zip(phase, g.strides)),
                          as_strided(plane, (n, c) + taps + g.out, plane.strides + plane.strides[2:],
                                     writeable=False)))
        return parts
    return [((slice(None),) * len(g.kernel), windows(pad_spatial(x, g.begin, g.end, slot="conv.input"), g))]


#: Strided convs whose kernels have this many taps per stride phase or more are im2col'ed from
#: the phase-split input (`_window_parts`): 7x7/2 is (12 taps per phase), 3x3/2 is not (2.25).
_PHASE_SPLIT_TAPS_PER_PHASE = 4


def _gemm_conv(x: np.ndarray, w: ConvWeights, g: Geometry, epilogue: Epilogue,
               residual: np.ndarray | None) -> np.ndarray:
    """Grouped conv as im2col + matmul with `w.mat` [G, M/G, C/G*k (+1 for a folded bias)].

    Large column buffers (big images, few channels: a CNN's first layers)
    are split along the first output axis: copying a chunk then multiplying
    it while it is in cache is much faster than streaming the whole buffer
    through memory twice.  `residual` [N, M, out cells] is added to each
    block before the epilogue; blocks of short rows are finished as one
    image instead (numpy is 2x slower per cell on a 2-D block of rows of a
    few hundred cells than on one contiguous run, even in cache).
    """
    assert w.mat is not None
    mat = w.mat
    n, c = x.shape[:2]
    groups, mg = mat.shape[:2]
    kk = c // groups * math.prod(g.kernel)
    p = math.prod(g.out)
    y = np.empty((n, groups * mg) + g.out, mat.dtype)
    ym = y.reshape(n, groups * mg, p)
    parts = _window_parts(x, g)
    row = p // g.out[0]  # output cells per index of the first output axis
    rows = g.out[0]
    col_bytes = c * math.prod(g.kernel) * row * mat.dtype.itemsize
    if col_bytes * rows > _CHUNK_ABOVE_BYTES:
        rows = min(rows, max(_CHUNK_BYTES // col_bytes, -(-_CHUNK_MIN_CELLS // row), 1))
        rows = -(-g.out[0] // -(-g.out[0] // rows))  # the same number of chunks, evenly filled
    cols = scratch("conv.cols", (groups, mat.shape[2], rows * row), mat.dtype)
    if w.folded:
        cols[:, kk] = 1
    split = (groups, c // groups)
    rest = (slice(None),) * (len(g.out) - 1)
    whole = rows < g.out[0] and rows * row < _POINTWISE_MIN_CELLS  # chunks too thin to finish one by one
    for i in range(n):
        for r0 in range(0, g.out[0], rows):
            r1 = min(g.out[0], r0 + rows)
            part = cols[:, :, :(r1 - r0) * row]
            dst = part[:, :kk].reshape(split + g.kernel + (r1 - r0,) + g.out[1:])
            for taps, win in parts:
                src = win[i].reshape(split + win.shape[2:])
                np.copyto(dst[(slice(None), slice(None)) + taps], src[(Ellipsis, slice(r0, r1)) + rest])
            block = ym[i, :, r0 * row:r1 * row]
            cpu_gemm.matmul(mat, part, out=block.reshape(groups, mg, -1))
            if not whole:
                _finish_block(block, None if residual is None else residual[i, :, r0 * row:r1 * row], epilogue)
        if whole:
            _finish_block(ym[i], None if residual is None else residual[i], epilogue)
    return y


#: Floats of packed columns per product in `_wasm_im2col_conv` (1 MiB: in L2 while the weights' rows
#: stream past it, as gemm.c's k-blocks are sized for).
_WASM_PANEL_FLOATS = 1 << 18


def takes_wasm_im2col(x: np.ndarray, w: ConvWeights, g: Geometry) -> bool:
    """Whether the wasm im2col engines run this conv (`_wasm_im2col_conv`, and `_wasm_pointwise_conv`
    for 1x1/1 unpadded windows): Pyodide with the kernels, float32, 2-D, one group, dilation 1, column
    stride 1 or 2."""
    return (w.mat is not None and w.mat.shape[0] == 1 and x.dtype == np.float32 and x.ndim == 4
            and len(g.kernel) == 2 and g.dilations == (1, 1) and g.strides[1] in (1, 2)
            and wasm_kernels.exports("conv") is not None and cpu_gemm.wasm() is not None)


def _wasm_im2col_conv(x: np.ndarray, w: ConvWeights, g: Geometry, epilogue: Epilogue,
                      residual: np.ndarray | None) -> np.ndarray:
    """im2col + GEMM on the wasm kernels (Pyodide): the columns of a chunk of output rows are gathered
    by wasm/conv.c straight into the GEMM's panel layout, then multiplied by the weight matrix (bias
    folded as a ones row) into the output, and the chunk finished (residual, epilogue) in cache.  numpy's
    strided im2col copy and gemm.c's pack_b of the columns, two passes over K x cells floats, become
    one vector copy."""
    assert w.mat is not None
    kernels = cpu_gemm.wasm()
    assert kernels is not None
    mat = w.mat[0]
    n, c, h, wd = x.shape
    m, k = mat.shape
    oh, ow = g.out
    y = np.empty((n, m, oh * ow), np.float32)
    rows = max(1, min(oh, _WASM_PANEL_FLOATS // (k * ow)))
    panels = scratch("conv.panels", (-(-(rows * ow) // cpu_gemm.PANEL) * cpu_gemm.PANEL * k,), np.float32)
    xc = np.ascontiguousarray(x)
    for i in range(n):
        for r0 in range(0, oh, rows):
            nr = min(rows, oh - r0)
            cells = nr * ow
            wasm_ops.im2col_panels(xc[i], g.kernel, g.strides, g.begin, ow, r0, nr, w.folded, panels)
            block = y[i, :, r0 * ow:r0 * ow + cells]
            kernels.gemm(mat, cpu_gemm.Packed(panels, k, cells), block)
            _finish_block(block, None if residual is None else residual[i, :, r0 * ow:r0 * ow + cells], epilogue)
    return y.reshape((n, m) + g.out)


def _wasm_pointwise_conv(x: np.ndarray, w: ConvWeights, epilogue: Epilogue,
                         residual: np.ndarray | None) -> np.ndarray:
    """A 1x1/1 unpadded conv (one group) on the wasm kernels (Pyodide): the input is its own column
    matrix, so each chunk of cells is copied straight into the GEMM's panels (plus the ones row of a
    folded bias) by wasm/conv.c, multiplied into the output and finished in cache; numpy's copy into a
    ones-row buffer and pack_b's copy of it become one."""
    assert w.mat is not None
    kernels = cpu_gemm.wasm()
    assert kernels is not None
    mat = w.mat[0]
    n, c = x.shape[:2]
    m, k = mat.shape
    p = math.prod(x.shape[2:])
    y = np.empty((n, m, p), np.float32)
    cells = max(cpu_gemm.PANEL, _WASM_PANEL_FLOATS // k // cpu_gemm.PANEL * cpu_gemm.PANEL)
    panels = scratch("conv.panels", (-(-min(cells, p) // cpu_gemm.PANEL) * cpu_gemm.PANEL * k,), np.float32)
    xm = np.ascontiguousarray(x).reshape(n, c, p)
    for i in range(n):
        for q0 in range(0, p, cells):
            q1 = min(p, q0 + cells)
            wasm_ops.pointwise_panels(xm[i], q0, q1, w.folded, panels)
            block = y[i, :, q0:q1]
            kernels.gemm(mat, cpu_gemm.Packed(panels, k, q1 - q0), block)
            _finish_block(block, None if residual is None else residual[i, :, q0:q1], epilogue)
    return y.reshape((n, m) + x.shape[2:])


#: Convs whose column buffer holds at most this many cells are im2col'ed by one gather (`_gather_conv`):
#: at that size a conv's time is numpy's per-call costs, not its arithmetic.
_GATHER_MAX_CELLS = 1 << 14
#: 1x1 convs with at most this many output cells per image (squeeze-excitation's 1x1 maps, an audio
#: model's last frame) are matrix-vector products, which the gather engine runs in a few numpy calls
#: where a BLAS call through ctypes (`_pointwise_accumulated`) costs more than the product.
_POINTWISE_GATHER_MAX_CELLS = 4


@functools.lru_cache(maxsize=256)
def _gather_index(channels: int, spatial: tuple[int, ...], g: Geometry, groups: int, folded: bool) -> np.ndarray:
    """For `_gather_conv`: the flat input cell (of one image) that each column cell reads, [G, K, out].

    Built by applying the window view to the cell numbers themselves.
    Padding cells read index C*prod(spatial), one past the input, where the
    gather buffer holds a 0; with a folded bias each group's last row reads
    the 1 after it.
    """
    size = channels * math.prod(spatial)
    cells = np.arange(size, dtype=np.intp).reshape((1, channels) + spatial)
    cols = np.ascontiguousarray(windows(pad_spatial(cells, g.begin, g.end, size), g)[0])
    cols = cols.reshape(groups, channels // groups * math.prod(g.kernel), math.prod(g.out))
    if folded:
        cols = np.concatenate([cols, np.full((groups, 1, cols.shape[2]), size + 1, np.intp)], axis=1)
    return cols


def _gather_conv(x: np.ndarray, w: ConvWeights, g: Geometry, epilogue: Epilogue,
                 residual: np.ndarray | None) -> np.ndarray:
    """A small conv (audio models' Conv1d over a few frames) as one gather into the columns, then the matmul.

    `_gemm_conv`'s padding, strided window view and per-part copies cost a
    few microseconds of numpy calls each, which dominate when the whole
    conv is a few thousand cells; here the columns [N, G, K, out] are one
    `np.take` through an index built once per input shape (`_gather_index`).
    """
    assert w.mat is not None
    mat = w.mat
    n, c = x.shape[:2]
    groups, mg = mat.shape[:2]
    index = _gather_index(c, x.shape[2:], g, groups, w.folded)
    size = c * math.prod(x.shape[2:])
    flat = scratch("conv.input", (n, size + 2), mat.dtype)
    np.copyto(flat[:, :size].reshape(x.shape), x)
    flat[:, size:] = (0, 1)
    cols = scratch("conv.cols", (n,) + index.shape, mat.dtype)
    np.take(flat, index, axis=1, out=cols, mode="clip")
    y = np.empty((n, groups * mg) + g.out, mat.dtype)
    ym = y.reshape(n, groups, mg, -1)
    cpu_gemm.matmul(mat, cols, out=ym)
    for i in range(n):
        _finish_block(ym[i].reshape(groups * mg, -1), None if residual is None else residual[i], epilogue)
    return y


def takes_gather(x_shape: tuple[int, ...], w: ConvWeights, g: Geometry) -> bool:
    """Whether `conv_compute` runs this conv on the gather engine (`_gather_conv`)."""
    if w.mat is None:
        return False
    groups, _, k = w.mat.shape
    cells = math.prod(g.out)
    if g.trivial and cells > _POINTWISE_GATHER_MAX_CELLS:
        return False
    return x_shape[0] * groups * k * cells <= _GATHER_MAX_CELLS


class SmallConv:
    """`_gather_conv` for one input shape, with everything but the arithmetic worked out beforehand.

    An audio model's convs (a VAD's encoder over 3 frames, its 1x1 head)
    are a few microseconds of arithmetic; `conv_compute`'s dispatch, scratch
    buffers and epilogue objects cost twice that again per call.  Prepared
    once per input shape, a call is: flatten X with the padding cells (0)
    and the folded bias's ones cell appended, one `take` into the columns,
    one matmul, the activation.  Only for a packed (constant) W with its
    bias folded or absent, and no residual.
    """

    __slots__ = ("mat", "index", "tail", "flat", "out", "act")

    def __init__(self, x_shape: tuple[int, ...], w: ConvWeights, g: Geometry, act: Activation | None):
        assert w.mat is not None
        n, c = x_shape[:2]
        groups, mg = w.mat.shape[:2]
        self.mat = w.mat
        self.index = _gather_index(c, tuple(x_shape[2:]), g, groups, w.folded)
        self.tail = np.zeros((n, 2), w.mat.dtype)
        self.tail[:, 1] = 1
        self.flat = (n, c * math.prod(x_shape[2:]))
        self.out = (n, groups * mg) + g.out
        self.act = act

    def __call__(self, x: np.ndarray) -> np.ndarray:
        flat = np.concatenate((x.reshape(self.flat), self.tail), axis=1)
        y = np.matmul(self.mat, flat.take(self.index, axis=1, mode="clip")).reshape(self.out)
        if self.act is not None:
            self.act(y)
        return y


def _finish_block(block: np.ndarray, residual: np.ndarray | None, epilogue: Epilogue) -> None:
    """Residual, then the epilogue, on an output block [M, cells]."""
    if residual is not None:
        block += residual
    epilogue(block, slice(None), 0)


# ------------------------------------------------------ Winograd F(2x2, 3x3)

#: Winograd's weight transform G [4, 3] for F(2x2, 3x3) (Lavin & Gray, 2015).  Its input transform
#: B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]] is the add/subtract
#: sequences of `_winograd_input`.
_WINO_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
#: Output transform A^T [2, 4].
_WINO_AT = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]])
#: Both output transforms at once, transposed, [(b, a), (ri, rj)]: one small matmul maps the 16
#: products of every tile (index b*4 + a, b the tile column) to its 2x2 outputs, row-major.
_WINO_OUT = np.ascontiguousarray(np.kron(_WINO_AT, _WINO_AT)[[0, 2, 1, 3]].T)
#: Index of tile product (a=1, b=1), the one every output of a tile adds with coefficient 1:
#: the bias is added there, to a sixteenth of the products instead of to all outputs.
_WINO_BIAS_ROW = 5
#: Chunks of tile rows are sized so their work buffers stay about this big (in L2)...
_WINO_CHUNK_BYTES = 1 << 20
#: ...but hold at least this many tiles: the 16 matmuls of a chunk each read all the
#: transformed weights, which must be amortised over enough columns.
_WINO_MIN_TILES = 256


def winograd_weights(w: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """W [M, C, 3, 3] in the Winograd domain, [16, M, C], entry b*4 + a being (G w G^T)[a, b].

    Computed in float64 and rounded once, so it is as exact as the weights allow.
    """
    m, c = w.shape[:2]
    u = np.einsum("ai,mcij,bj->bamc", _WINO_G, w.astype(np.float64), _WINO_G)
    return np.ascontiguousarray(u.reshape(16, m, c).astype(dtype))


def winograd_fits(g: Geometry) -> bool:
    """The window is one Winograd F(2x2, 3x3) computes: 2-D 3x3, stride 1, no dilation."""
    return g.kernel == (3, 3) and g.strides == (1, 1) and g.dilations == (1, 1)


def winograd_channels(c: int, m: int) -> bool:
    """C -> M channel counts for which Winograd can beat im2col (measured on CPU, bench_conv.py).

    Winograd saves 56% of the matmul work, but its transforms cost about as
    much as im2col's copy on the input side and clearly more on the output
    side (16 products per 4 outputs go through memory): it needs enough input
    channels per output to pay.
    """
    return c >= 24 and 8 <= m <= 2 * c


def winograd_pays(c: int, m: int, out: Sequence[Dim]) -> bool:
    """Whether Winograd beats im2col for C -> M channels and a 2-D output `out` (measured on CPU).

    Small convs lose to its fixed cost (some 40 numpy calls per chunk), and
    few tiles (7x7 maps) to reading the transformed weights, 16/9 of W, for
    too few columns.  Unknown sizes count as paying.
    """
    oh, ow = out
    if not isinstance(oh, int) or not isinstance(ow, int):
        return winograd_channels(c, m)
    tiles = -(-oh // 2) * (-(-ow // 2) + 1)
    return winograd_channels(c, m) and tiles >= _WINO_MIN_TILES_PER_IMAGE and m * c * oh * ow >= _WINO_MIN_WORK


#: Below either, im2col is faster: tiles per image (with the garbage column) and C * M * output cells.
_WINO_MIN_TILES_PER_IMAGE = 48
_WINO_MIN_WORK = 600_000


def _phase_span(phase: int, pad: int, first: int, count: int, size: int) -> tuple[int, int, int]:
    """Plane indices k in [0, count) whose input index 2 * (first + k) + phase - pad is in [0, size).

    Returns (k0, k1, the input index of k0); k1 <= k0 when none is.
    """
    k0 = max(0, -((2 * first + phase - pad) // 2))
    k1 = min(count, (size - 1 - phase + pad) // 2 - first + 1)
    return k0, k1, 2 * (first + k0) + phase - pad


@dataclass(frozen=True)
class _WinogradChunk:
    """Work buffers of one chunk of `rows` tile rows, all views of scratch buffers.

    Phase planes hold the zero-padded input split by row and column parity,
    [pr, pc, C, rows + 1, tw + 1]: a tile's 4x4 window is then 2x2 cells of
    four planes, and every transform below is an add or subtract of two
    *contiguous* flat ranges, shifted by one plane row (tw + 1) or one cell.
    Flat ranges run across channel and row ends; what they compute there
    lands in a garbage cell (the last row of a channel's planes, the last
    column of each row), which is never read back.  numpy is 2-4x faster on
    one long contiguous range than on the same cells as rows of a 2-D view.
    """

    rows: int
    width: int  # tile columns + 1
    planes: np.ndarray  # [2 (pr), 2 * plane + slack]: pc-major phase planes of each row parity
    rowt: np.ndarray  # [2 * plane + 1]: one row of B^T applied, still split by column parity
    v: np.ndarray  # [4 (b), 4 (a), plane]: the transformed input
    prod: np.ndarray  # [16, M * rows * width]: the 16 matmuls' results
    out: np.ndarray  # [M * rows * width, 4 (ri, rj)]: the 2x2 outputs of every tile
    odd: np.ndarray  # [M, 2 * rows, 2 * (width - 1)]: output rows of odd width, before cropping

    @staticmethod
    def make(c: int, m: int, rows: int, width: int, dtype: np.dtype) -> _WinogradChunk:
        plane = c * (rows + 1) * width
        planes = scratch("wino.planes", (2, 2 * plane + width + 1), dtype)
        rowt = scratch("wino.rowt", (2 * plane + 1,), dtype)
        planes.fill(0)  # padding columns stay zero for every chunk (`_winograd_load`); the slack stays finite
        rowt[2 * plane:] = 0
        cells = m * rows * width
        return _WinogradChunk(rows, width, planes, rowt, scratch("wino.v", (4, 4, plane), dtype),
                              scratch("wino.prod", (16, cells), dtype), scratch("wino.out", (cells, 4), dtype),
                              scratch("wino.odd", (m, 2 * rows, 2 * (width - 1)), dtype))


def _winograd_load(ch: _WinogradChunk, x: np.ndarray, g: Geometry, first: int) -> None:
    """Fill the phase planes of tile rows [first, first + ch.rows) from x [C, H, W] (zeros outside it).

    Every chunk writes the same columns, so the zero padding columns, set
    once by `_WinogradChunk.make`, stay; only rows outside x are cleared.
    """
    c, h, w = x.shape
    plane = c * (ch.rows + 1) * ch.width
    grid = ch.planes[:, :2 * plane].reshape(2, 2, c, ch.rows + 1, ch.width)
    for pr in range(2):
        r0, r1, xr = _phase_span(pr, g.begin[0], first, ch.rows + 1, h)
        for pc in range(2):
            dst = grid[pr, pc]
            c0, c1, xc = _phase_span(pc, g.begin[1], 0, ch.width, w)
            if r0 > 0:
                dst[:, :r0] = 0
            if r1 < ch.rows + 1:
                dst[:, max(r0, r1):] = 0
            if r1 > r0 and c1 > c0:
                dst[:, r0:r1, c0:c1] = x[:, xr:xr + 2 * (r1 - r0) - 1:2, xc:xc + 2 * (c1 - c0) - 1:2]


def _winograd_input(ch: _WinogradChunk) -> None:
    """v = B^T d B for every tile: rows first (shift: one plane row), then columns (shift: one cell).

    One row of B^T at a time, so the row-transformed planes stay small enough for the cache.
    """
    n = ch.rowt.shape[0] - 1  # both column-parity planes
    p0, p1 = ch.planes[0], ch.planes[1]
    lo0, hi0, lo1, hi1 = p0[:n], p0[ch.width:ch.width + n], p1[:n], p1[ch.width:ch.width + n]
    t = ch.rowt
    half = n // 2
    even, odd, even_next, odd_next = t[:half], t[half:n], t[1:half + 1], t[half + 1:n + 1]
    for a, (combine, left, right) in enumerate(((np.subtract, lo0, hi0), (np.add, lo1, hi0), (np.subtract, hi0, lo1),
                                           (np.subtract, lo1, hi1))):
        combine(left, right, out=t[:n])
        np.subtract(even, even_next, out=ch.v[0, a])
        np.add(odd, even_next, out=ch.v[1, a])
        np.subtract(even_next, odd, out=ch.v[2, a])
        np.subtract(odd, odd_next, out=ch.v[3, a])


def _winograd_store(out: np.ndarray, dst: np.ndarray, rows: int, width: int) -> None:
    """Tiles' outputs `out` [M * rows * width, 4 (ri, rj)] into output rows `dst` [M, <= 2 * rows, even width].

    A tile row's two outputs (rj = 0, 1) are adjacent in both, so they move
    as one 2-cell item: one strided copy per output row parity puts every
    tile's 2x2 outputs in place.
    """
    pair = np.dtype((np.void, 2 * out.dtype.itemsize))
    tiles = out.view(pair).reshape(dst.shape[0], rows, width, 2)
    cells = dst.view(pair)
    for ri in range(2):
        part = cells[:, ri::2]
        np.copyto(part, tiles[:, :part.shape[1], :part.shape[2], ri])


def _winograd_conv(x: np.ndarray, u: np.ndarray, g: Geometry, bias: np.ndarray | None, act: Activation | None,
                   residual: np.ndarray | None) -> np.ndarray:
    """3x3 stride-1 conv by Winograd F(2x2, 3x3): 16 multiplies per 2x2 outputs instead of 36.

    `u` [16, M, C] is from `winograd_weights`.  Tile rows are processed in
    cache-sized chunks: load the phase planes, transform them (`_winograd_input`),
    16 matmuls [M, C] @ [C, tiles], one [tiles, 16] @ [16, 4] matmul for the
    output transform, then the rows go to the output.  The activation runs
    on the transform's contiguous results, or, after a residual, on the
    whole image (`_gemm_conv` says why not on blocks of rows).
    """
    n, c, h, w = x.shape
    m = u.shape[1]
    oh, ow = g.out
    th, tw = -(-oh // 2), -(-ow // 2)
    width = tw + 1
    dt = u.dtype
    per_row = (22 * c + 24 * m) * width * dt.itemsize  # bytes of all work buffers per tile row
    rows = min(th, max(_WINO_CHUNK_BYTES // per_row, -(-_WINO_MIN_TILES // width), 1))
    rows = -(-th // -(-th // rows))  # the same number of chunks, evenly filled
    ch = _WinogradChunk.make(c, m, rows, width, dt)
    to_out = _WINO_OUT.astype(dt)
    y = np.empty((n, m, oh, ow), dt)
    stride = (rows + 1) * width  # of a channel in the phase planes and in v
    for img in range(n):
        for first in range(0, th, rows):
            r = min(rows, th - first)
            cells = m * r * width
            with np.errstate(invalid="ignore", over="ignore"):  # as quiet as BLAS on inf/huge inputs
                _winograd_load(ch, x[img], g, first)
                _winograd_input(ch)
            prod = ch.prod[:, :cells]
            cpu_gemm.matmul(u, ch.v.reshape(16, c, stride)[:, :, :r * width], out=prod.reshape(16, m, r * width))
            if bias is not None:
                shared = prod[_WINO_BIAS_ROW].reshape(m, -1)
                shared += bias[:, None]
            out = ch.out[:cells]
            np.matmul(prod.T, to_out, out=out)
            if act is not None and residual is None:
                Epilogue(None, act)(out, slice(None), 0)
            o0, o1 = 2 * first, min(oh, 2 * (first + r))
            if ow % 2:
                _winograd_store(out, ch.odd[:, :o1 - o0], r, width)
                np.copyto(y[img, :, o0:o1], ch.odd[:, :o1 - o0, :ow])
            else:
                _winograd_store(out, y[img, :, o0:o1], r, width)
        if residual is not None:
            _finish_block(y[img].reshape(m, -1), residual[img], Epilogue(None, act))
    return y


#: Size of the work buffers the depthwise engines fill and reduce at a time (measured best:
#: the flat engine's blocks pass through fewer buffers, and more numpy calls per block).
_DEPTHWISE_BLOCK_BYTES = 512 << 10
_DEPTHWISE_FLAT_BLOCK_BYTES = 1 << 20


def _depthwise_blocks(c: int, rows: int, row_bytes: int, budget: int) -> tuple[int, int]:
    """(channels, output rows) per block of about `budget` bytes, `row_bytes` being a channel's per output row."""
    if rows * row_bytes <= budget:
        return max(1, min(c, budget // (rows * row_bytes))), rows
    return 1, max(1, min(rows, budget // row_bytes))


def _depthwise_flat(x: np.ndarray, w: np.ndarray, g: Geometry, bias: np.ndarray | None,
                    act: Activation | None) -> np.ndarray:
    """Stride-1 1-D or 2-D depthwise conv (one filter per channel), `w` [C, kh * kw], as two small matmuls.

    A depthwise filter has too little arithmetic for a big matmul, and a
    loop of numpy multiply-adds over kernel taps makes two passes over the
    output per tap.  With the padded input flattened (rows of `row` cells),
    tap (i, j) reads it shifted by i * dh * row + j * dw, so outputs are
    computed "wide", over whole padded rows (the surplus cells of each row
    are dropped at the end), and per channel:

    - R [kh (+1), cells] = the kh row shifts of the input (the one copy;
      a ones row when there is a bias);
    - O [kw, cells] = W^T [kw, kh (+1 = the bias, for j = 0)] @ R: every
      column j of the kernel summed over its rows;
    - y = ones [1, kw] @ O' where O'[j] = O[j] shifted by j * dw: a strided
      view of O (its rows one step apart), so the shifted sum costs no copy.

    About kh + 2 * kw + 2 passes per output cell instead of im2col's 2 * kh * kw
    (5x5: 17 vs 50).  Blocks of channels (or of output rows, for big images)
    are sized for the cache, and the activation runs on each block.
    """
    n, c = x.shape[:2]
    kh, kw = (1,) * (2 - len(g.kernel)) + g.kernel
    dh, dw = (1,) * (2 - len(g.dilations)) + g.dilations
    padded = tuple(sz + b + e for sz, b, e in zip(x.shape[2:], g.begin, g.end))
    out_rows, row = ((1,) + g.out)[-2], padded[-1]
    slack = (kw - 1) * dw
    dt = w.dtype
    buf = scratch("conv.input", (n, c, math.prod(padded) + slack), dt)
    buf.fill(0)
    buf[:, :, :math.prod(padded)].reshape((n, c) + padded)[
        (slice(None), slice(None)) + tuple(slice(b, b + sz) for b, sz in zip(g.begin, x.shape[2:]))] = x
    k = kh + (bias is not None)
    wt = np.zeros((c, kw, k), dt)
    wt[:, :, :kh] = w.reshape(c, kh, kw).transpose(0, 2, 1)
    if bias is not None:
        wt[:, 0, kh] = bias
    block, rows = _depthwise_blocks(c, out_rows, (k + kw + 1) * row * dt.itemsize, _DEPTHWISE_FLAT_BLOCK_BYTES)
    shifted = scratch("conv.cols", (block, k, rows * row + slack), dt)
    shifted[:, kh:] = 1
    summed = scratch("conv.wide", (block, kw, rows * row + slack), dt)
    acc = scratch("conv.acc", (block, 1, rows * row), dt)
    ones = np.ones((1, kw), dt)
    y = np.empty((n, c) + g.out, dt)
    isz = dt.itemsize
    for img in range(n):
        for c0 in range(0, c, block):
            c1 = min(c, c0 + block)
            for r0 in range(0, out_rows, rows):
                r1 = min(out_rows, r0 + rows)
                cells = (r1 - r0) * row
                src = as_strided(buf[img, c0:, r0 * row:], (c1 - c0, kh, cells + slack),
                                 (buf.strides[1], dh * row * isz, isz), writeable=False)
                part = shifted[:c1 - c0, :, :cells + slack]
                np.copyto(part[:, :kh], src)
                sums = summed[:c1 - c0, :, :cells + slack]
                np.matmul(wt[c0:c1], part, out=sums)
                diagonal = as_strided(sums, (c1 - c0, kw, cells), (sums.strides[0], sums.strides[1] + dw * isz, isz),
                                      writeable=False)
                out = acc[:c1 - c0, :, :cells]
                np.matmul(ones, diagonal, out=out)
                if act is not None:
                    act(out)
                dst = y[img, c0:c1].reshape((c1 - c0, out_rows, -1))[:, r0:r1]
                np.copyto(dst, out.reshape(c1 - c0, r1 - r0, row)[:, :, :dst.shape[2]])
    return y


#: 2-D depthwise convs on inputs at most this wide run as banded matmuls (`_depthwise_band`)...
_BAND_MAX_WIDTH = 128
#: ...over blocks of at most this many output columns: a band does (block's input columns) / kw
#: multiplies per useful one, so wide maps are cut into blocks (stride 2, 3x3: 29 / 3, not 112 / 3).
_BAND_BLOCK = 16
#: Padded inputs at most this wide are zeroed whole before the band engine copies X in: their side
#: margins, one short strided run per channel and row, cost 2-4x more to zero alone (MobileNetV3's
#: 14x14 maps: 23 vs 6 us); wider rows zero just the margins.
_BAND_FILL_MAX_WIDTH = 40


def _band(w: np.ndarray, bias: np.ndarray | None, g: Geometry, block: int, span: int) -> np.ndarray:
    """For `_depthwise_band`: B [C, kh * span (+1), block] with B[c, i * span + o * sw + j * dw, o] = w[c, i, j];
    with a bias, the last row holds it (it multiplies a ones column of A)."""
    c = w.shape[0]
    (kh, kw), (_, sw), (_, dw) = g.kernel, g.strides, g.dilations
    band = np.zeros((c, kh, span, block), w.dtype)
    o = np.arange(block)
    taps = w.reshape(c, kh, kw)
    for j in range(kw):
        band[:, :, o * sw + j * dw, o] = taps[:, :, j, None]
    band = band.reshape(c, kh * span, block)
    if bias is not None:
        band = np.concatenate([band, np.broadcast_to(bias.reshape(c, 1, 1), (c, 1, block))], axis=1)
    return np.ascontiguousarray(band)


def _depthwise_band(x: np.ndarray, w: ConvWeights, g: Geometry) -> np.ndarray:
    """2-D depthwise conv as one batched matmul over channels and column blocks: y = A @ B[c].

    For each output row and block of output columns, A [kh * span] holds
    the kh input row segments its windows read (a strided view of the
    padded input: about kh * sw copies of the input, not kh * kw), and
    B [kh * span, block] is the filter laid out as a band (`_band`, made
    once per geometry) that sums each window's taps.  A depthwise filter
    has too little arithmetic for BLAS to be efficient on any layout; this
    does it in a single call over all channels instead of per-tap passes
    or per-channel products over small blocks: MobileNetV3-small's
    depthwise convs, ~0.6 ms each in `_depthwise`, take 0.1-0.3 ms.  The
    product's rows (output row, block) then columns are NCHW's own order.
    The packed bias is a ones column of A; the caller adds the rest.
    """
    assert w.depthwise is not None
    n, c, h, width = x.shape
    (kh, kw), (sh, sw), (dh, dw) = g.kernel, g.strides, g.dilations
    (top, left), ho, wo = g.begin, g.out[0], g.out[1]
    blocks = -(-wo // _BAND_BLOCK)
    block = -(-wo // blocks)  # evenly filled, so that most often no surplus column is computed
    span = (block - 1) * sw + (kw - 1) * dw + 1
    band = w.bands.get(g)
    if band is None:
        band = w.bands[g] = _band(w.depthwise, w.bias, g, block, span)
    padded_w = max((blocks * block - 1) * sw + (kw - 1) * dw + 1, left + width)
    rows = scratch("conv.input", (n, c, h + top + g.end[0], padded_w), band.dtype)
    if padded_w <= _BAND_FILL_MAX_WIDTH:
        rows.fill(0)
    else:
        rows[:, :, :top] = 0
        rows[:, :, top + h:] = 0
        rows[:, :, top:top + h, :left] = 0
        rows[:, :, top:top + h, left + width:] = 0
    rows[:, :, top:top + h, left:left + width] = x
    st = rows.strides
    win = as_strided(rows, (n, c, ho, blocks, kh, span),
                     st[:2] + (sh * st[2], block * sw * st[3], dh * st[2], st[3]), writeable=False)
    a = scratch("conv.cols", (n, c, ho * blocks, band.shape[1]), band.dtype)
    np.copyto(a[..., :kh * span].reshape(win.shape), win)
    if w.bias is not None:
        a[..., -1] = 1
    if blocks * block == wo:
        y = np.empty((n, c) + g.out, band.dtype)
        np.matmul(a, band, out=y.reshape(n, c, ho * blocks, block))
        return y
    wide = scratch("conv.wide", (n, c, ho * blocks, block), band.dtype)
    np.matmul(a, band, out=wide)
    return np.ascontiguousarray(wide.reshape(n, c, ho, blocks * block)[..., :wo])


#: 2-D depthwise convs with at least this many channels, taps per window, and at most this many output
#: cells run as one einsum over channels-last windows (`_depthwise_einsum`).  Measured against the other
#: engines: 5x5 on [576, 7, 7] 270 -> 130 us, [288, 14, 14] stride 2 190 -> 90 us, [384, 20, 20] stride 2
#: 330 -> 255 us; even at [240, 14, 14] (196 cells), 3x3 on [1024, 7, 7] slower, on [512, 28, 28] 2x slower.
_EINSUM_MIN_CHANNELS = 256
_EINSUM_MIN_TAPS = 25
_EINSUM_MAX_CELLS = 100


def _depthwise_einsum(x: np.ndarray, w: ConvWeights, g: Geometry) -> np.ndarray:
    """2-D depthwise conv (no bias) as einsum("nhwabc,abc->nhwc") over a strided window view of the
    padded input in channels-last layout, back to NCHW.

    With channels innermost, einsum's inner loop is a contiguous
    multiply-accumulate over all channels for every (output cell, tap):
    few, long loops where the band engine makes one small matmul per
    channel (`_depthwise_band`), whose per-product overhead dominates once
    channels are many and maps small.  The filter's channels-last copy is
    made once (kept with the bands).
    """
    assert w.depthwise is not None
    n, c, h, width = x.shape
    (kh, kw), (sh, sw), (dh, dw) = g.kernel, g.strides, g.dilations
    (top, left), (ho, wo) = g.begin, g.out
    taps = w.bands.get("channels_last")
    if taps is None:
        taps = w.bands["channels_last"] = np.ascontiguousarray(w.depthwise.T.reshape(kh, kw, c))
    padded = np.zeros((n, top + h + g.end[0], left + width + g.end[1], c), taps.dtype)
    padded[:, top:top + h, left:left + width] = x.transpose(0, 2, 3, 1)
    st = padded.strides
    win = as_strided(padded, (n, ho, wo, kh, kw, c), (st[0], sh * st[1], sw * st[2], dh * st[1], dw * st[2], st[3]),
                     writeable=False)
    return np.ascontiguousarray(np.einsum("nhwabc,abc->nhwc", win, taps).transpose(0, 3, 1, 2))


def _depthwise(x: np.ndarray, w: np.ndarray, g: Geometry, epilogue: Epilogue) -> np.ndarray:
    """Depthwise conv (one filter per channel). `w` is [C, k].

    Stride-1 1-D and 2-D convs go to `_depthwise_flat`.  Here each block of channels (or
    of output rows, for big images) gets a small im2col sized for the cache,
    reduced by one batched vector-matrix product, w[c, 1, k] @ cols[c, k, cells];
    the epilogue runs on the block while it is in cache.
    """
    if all(s == 1 for s in g.strides) and len(g.kernel) <= 2:
        return _depthwise_flat(x, w, g, epilogue.bias, epilogue.act)
    n, c = x.shape[:2]
    taps = math.prod(g.kernel)
    row = math.prod(g.out[1:])  # output cells per index of the first output axis
    cells = g.out[0] * row
    block, rows = _depthwise_blocks(c, g.out[0], taps * row * w.dtype.itemsize, _DEPTHWISE_BLOCK_BYTES)
    win = windows(pad_spatial(x, g.begin, g.end, slot="conv.input"), g)
    wk = w[:, None, :]
    cols = scratch("conv.cols", (block, taps, rows * row), w.dtype)
    y = np.empty((n, c) + g.out, w.dtype)
    rest = (slice(None),) * (len(g.out) - 1)
    for img in range(n):
        ym = y[img].reshape(c, cells)
        for c0 in range(0, c, block):
            c1 = min(c, c0 + block)
            for r0 in range(0, g.out[0], rows):
                r1 = min(g.out[0], r0 + rows)
                part = cols[:c1 - c0, :, :(r1 - r0) * row]
                np.copyto(part.reshape((c1 - c0,) + g.kernel + (r1 - r0,) + g.out[1:]),
                          win[(img, slice(c0, c1)) + (slice(None),) * len(g.kernel) + (slice(r0, r1),) + rest])
                out = ym[c0:c1, r0 * row:r1 * row]
                np.matmul(wk[c0:c1], part, out=out[:, None, :])
                epilogue(out, slice(c0, c1), 0)
    return y


@dataclass(frozen=True)
class ConvWeights:
    """A Conv's weights (and constant bias) laid out for its engine.

    `mat` [G, M/G, C/G*k] is the matmul engine's; with a folded bias it has
    one more column holding the bias, which multiplies a row of ones
    appended to the columns, so the bias costs no pass over the output.
    `depthwise` [C, k] is the depthwise engine's (its bias is added per
    block, in cache).  `winograd` [16, M, C], when packed, is W in the
    Winograd domain (`winograd_weights`), used where `winograd_pays`.
    """

    shape: tuple[int, ...]
    mat: np.ndarray | None
    depthwise: np.ndarray | None
    bias: np.ndarray | None = None
    winograd: np.ndarray | None = None
    #: The depthwise engines' filter layouts, made on first use: banded by geometry (`_depthwise_band`),
    #: channels-last under "channels_last" (`_depthwise_einsum`).
    bands: dict[Any, np.ndarray] = field(default_factory=dict, compare=False, repr=False)

    @property
    def folded(self) -> bool:
        return self.mat is not None and self.bias is not None


def weight_matrix(w: np.ndarray, group: int, dtype: np.dtype) -> np.ndarray:
    """W [M, C/G, *k] as the contiguous matrix stack [G, M/G, C/G*k] the matmul engine takes."""
    return np.ascontiguousarray(w.astype(dtype, copy=False).reshape(group, w.shape[0] // group, -1))


def pack_weights(w: np.ndarray, group: int, dtype: np.dtype, bias: np.ndarray | None = None,
                 winograd: bool = False) -> ConvWeights:
    """Lay out W (and a constant bias) once for the engine that will run the conv.

    `winograd`: the conv's window is stride 1 and its output (as far as
    known) big enough, so also pack the Winograd-domain weights when W is
    3x3 and the channel counts can pay (float32 only: float64 convs, e.g.
    ConvInteger's exact ones, stay on im2col).
    """
    m, cg = w.shape[:2]
    b = None if bias is None else bias.astype(dtype).reshape(m)
    if cg == 1 and m == group and w.ndim > 2:
        return ConvWeights(w.shape, None, np.ascontiguousarray(w.astype(dtype, copy=False).reshape(m, -1)), b)
    mat = weight_matrix(w, group, dtype)
    if b is not None:
        mat = np.ascontiguousarray(np.concatenate([mat, b.reshape(group, m // group, 1)], axis=2))
    wino = None
    if (winograd and group == 1 and w.shape[2:] == (3, 3) and np.dtype(dtype) == np.float32
            and winograd_channels(cg, m)):
        wino = winograd_weights(w, dtype)
    return ConvWeights(w.shape, mat, None, b, wino)


def conv_compute(x: np.ndarray, w: ConvWeights, g: Geometry, act: Activation | None = None,
                 bias: np.ndarray | None = None, residual: np.ndarray | None = None,
                 consume: bool = False) -> np.ndarray:
    """The convolution of `x` (compute dtype) plus the packed or given bias, plus `residual`
    (the output's shape, compute dtype), then `act` in place.

    `consume`: the residual dies here and nothing else holds its buffer,
    which may then become the output.
    """
    if w.depthwise is not None and len(g.kernel) == 2 and g.dilations == (1, 1):
        y = wasm_ops.depthwise2d(x, w.depthwise, w.bias if w.bias is not None else bias, g.kernel, g.strides,
                                 g.begin, g.out, act if residual is None else None)
        if y is not None:
            if residual is not None:
                y += residual
                Epilogue(None, act)(y, slice(None), 1)
            elif act is not None and wasm_ops.activation_code(act) is None:
                act(y)
            return y
    if w.depthwise is not None and len(g.kernel) == 2 and x.shape[1] >= _EINSUM_MIN_CHANNELS \
            and math.prod(g.kernel) >= _EINSUM_MIN_TAPS and math.prod(g.out) <= _EINSUM_MAX_CELLS:
        y = _depthwise_einsum(x, w, g)
        b_all = w.bias if w.bias is not None else bias
        if b_all is not None:
            y += b_all.reshape(-1, 1, 1)
        if residual is not None:
            y += residual
        if act is not None:
            act(y)
        return y
    if w.depthwise is not None and len(g.kernel) == 2 and x.shape[3] <= _BAND_MAX_WIDTH:
        y = _depthwise_band(x, w, g)
        if w.bias is None and bias is not None:
            y += bias.reshape(-1, 1, 1)
        if residual is not None:
            y += residual
        if act is not None:
            act(y)
        return y
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
    if g.trivial and math.prod(g.out) > _POINTWISE_GATHER_MAX_CELLS:
        if takes_wasm_im2col(x, w, g):
            res = None if residual is None else residual.reshape(residual.shape[:2] + (-1,))
            return _wasm_pointwise_conv(x, w, Epilogue(bias, act), res)
        return _pointwise_conv(x, w, Epilogue(bias, act), residual, consume)
    res = None if residual is None else residual.reshape(residual.shape[:2] + (-1,))
    winograd = w.winograd is not None and winograd_fits(g) and winograd_pays(x.shape[1], w.shape[0], g.out)
    if not winograd and takes_wasm_im2col(x, w, g):  # Winograd's 2.25x fewer multiplies still win there
        return _wasm_im2col_conv(x, w, g, Epilogue(bias, act), res)
    if takes_gather(x.shape, w, g):
        return _gather_conv(x, w, g, Epilogue(bias, act), res)
    if winograd and w.winograd is not None:
        return _winograd_conv(x, w.winograd, g, w.bias if w.bias is not None else bias, act, res)
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


def conv_shape(ctx: InferContext, x: Shape | None, w: Shape | None, group: int) -> Shape | None:
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
    shape = conv_shape(ctx, ctx.shape(0), ctx.shape(1), _group(ctx))
    if ctx.has(2):
        ws = ctx.shape(1)
        _check_bias(ctx, ctx.shape(2), ws[0] if ws else None)
    if ctx.node.domain != "webinfer" and (ctx.n_in > 3 or "activation" in ctx.node.attrs):
        raise ctx.error(f"Conv takes at most 3 inputs (X, W, B) and no activation (got {ctx.n_in} inputs); "
                        "the residual and activation are webinfer.FusedConv's")
    if ctx.has(3):  # webinfer.FusedConv's residual (module docstring)
        z = ctx.shape(3)
        if z is not None and shape is not None and (len(z) != len(shape) or not all(
                dims_compatible(a, b) for a, b in zip(z, shape))):
            raise ctx.error(f"residual input {shape_str(z)} must have the output's shape {shape_str(shape)}")
    return [tensor(ctx.elem(0), shape)]


def conv_geometry(ctx: AttrMixin, win: Window, x: np.ndarray, w_shape: tuple[int, ...], group: int) -> Geometry:
    """Run-time checks of a Conv's operands, then its window geometry."""
    if x.ndim != len(w_shape) or x.ndim < 3:
        raise ctx.error(f"X {list(x.shape)} and W {list(w_shape)} must have the same rank >= 3")
    if x.shape[1] != w_shape[1] * group or w_shape[0] % group:
        raise ctx.error(f"X {list(x.shape)} has {x.shape[1]} channels but W {list(w_shape)} with group={group} "
                        f"expects {w_shape[1] * group} (and out channels divisible by group)")
    kernel = kernel_of(ctx, win, w_shape)
    assert kernel is not None
    return win.geometry(ctx, x.shape[2:], kernel)


def _winograd_may_pay(ctx: OpContext, win: Window, w_shape: tuple[int, ...]) -> bool:
    """A stride-1, undilated conv whose output, as far as inferred at load, is big enough for Winograd.

    Its weights are then packed for it too (16/9 of W more memory), so
    convs that never take that path (7x7 maps) do not pay for them.
    """
    if any(s != 1 for s in win.strides or ()) or any(d != 1 for d in win.dilations or ()) or len(w_shape) != 4:
        return False
    out = ctx.out_types[0].shape if ctx.out_types and isinstance(ctx.out_types[0], TensorType) else None
    return winograd_pays(w_shape[1], w_shape[0], out[2:] if out is not None and len(out) == 4 else (None, None))


@op("FusedConv", since=1, domain="webinfer", infer=_conv_rule)
def fused_conv(ctx: OpContext) -> Kernel:
    """activation(Conv(X, W, B) + Z), set up by the fusion pass (module docstring)."""
    return conv(ctx)


@op("Conv", since=1, infer=_conv_rule)
def conv(ctx: OpContext) -> Kernel:
    """Convolution over 1, 2 or 3 (or more) spatial axes; see the module docstring for how it runs."""
    win = read_window(ctx, pool=False)
    group = _group(ctx)
    act = fused_activation(ctx)
    elem = ctx.in_elem(0)
    cdt = compute_dtype(dtypes.storage_dtype(elem)) if elem is not None else None
    w_const, b_const = ctx.const(1), ctx.const(2)
    packed = (pack_weights(w_const, group, cdt, b_const, _winograd_may_pay(ctx, win, w_const.shape))
              if w_const is not None and cdt is not None else None)
    geometries: dict[tuple[int, ...], Geometry] = {}  # by X and W shapes
    #: Per X shape, the prepared small conv (SmallConv) or None where the conv is not one.
    smalls: dict[tuple[int, ...], SmallConv | None] = {}
    has_bias = len(ctx.node.inputs) > 2 and bool(ctx.node.inputs[2])
    direct = packed is not None and packed.mat is not None and (packed.bias is not None or not has_bias)

    def compute(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, z: np.ndarray | None,
                consume: bool) -> tuple[np.ndarray]:
        if direct and z is None and x.dtype == cdt:
            if x.shape not in smalls:
                assert packed is not None
                geo = conv_geometry(ctx, win, x, packed.shape, group)
                smalls[x.shape] = SmallConv(x.shape, packed, geo, act) if takes_gather(x.shape, packed, geo) else None
            small = smalls[x.shape]
            if small is not None:
                return (small(x),)
        dt = compute_dtype(x.dtype)
        pw = packed if packed is not None else pack_weights(w, group, dt)
        key = x.shape + pw.shape
        g = geometries.get(key)
        if g is None:
            g = geometries[key] = conv_geometry(ctx, win, x, pw.shape, group)
        if b is not None and b.shape != (pw.shape[0],):
            raise ctx.error(f"B {list(b.shape)} must be a vector of the {pw.shape[0]} output channels")
        bias = None if pw.bias is not None or b is None else b.astype(dt, copy=False)
        if z is not None:
            if z.shape != (x.shape[0], pw.shape[0]) + g.out:
                raise ctx.error(f"residual input {list(z.shape)} must have the output's shape "
                                f"{[x.shape[0], pw.shape[0], *g.out]}")
            z = z.astype(dt, copy=False)
        return (conv_compute(x.astype(dt, copy=False), pw, g, act, bias, z, consume).astype(x.dtype, copy=False),)

    def run(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
            z: np.ndarray | None = None) -> tuple[np.ndarray]:
        return compute(x, w, b, z, False)

    def run_into_residual(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None,
                          z: np.ndarray | None = None) -> tuple[np.ndarray]:
        return compute(x, w, b, z, True)

    if len(ctx.node.inputs) > 3 and ctx.node.inputs[3] and blas.available():
        return offer_consuming(run, 3, run_into_residual)
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
    n_sp = len(img.dims) if img is not None else static_len(ctx, 1)
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
class TransposeAttrs:
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


def read_transpose(ctx: AttrMixin) -> TransposeAttrs:
    return TransposeAttrs(read_window(ctx, pool=False), _ints_attr(ctx, "output_padding", 0),
                           _ints_attr(ctx, "output_shape", 0))


def _conv_transpose_rule(ctx: InferContext) -> list[Type | None]:
    x, w = ctx.shape(0), ctx.shape(1)
    group = _group(ctx)
    check_channels(ctx, x, w, group, transpose=True)
    rank = len(x) if x is not None else (len(w) if w is not None else None)
    if rank is None:
        return [tensor(ctx.elem(0))]
    attrs = read_transpose(ctx)
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
    attrs = read_transpose(ctx)
    group = _group(ctx)
    act = fused_activation(ctx)
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
        y = np.empty((n, m) + tuple(out), dt)
        col2im = _TransposeScatter(kernel, strides, dilations, spatial, tuple(begin),
                                   tuple(out))  # type: ignore[arg-type]
        for i in range(n):
            cpu_gemm.matmul(wt, xc[i].reshape(group, c // group, p), out=cols)
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
    shape = conv_shape(ctx, x, w, group)
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
        g = conv_geometry(ctx, win, x, w.shape, group)
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
