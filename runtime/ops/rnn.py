"""Recurrent layers: RNN, GRU, LSTM.

One kernel structure serves all three: the input projection of every time
step is a single matmul up front (X @ W^T + Wb over the whole sequence),
so the per-step loop only does the recurrent matmul and the gate math.
Reverse directions run forward over each sequence reversed within its own
length, then are put back in place, which handles `sequence_lens` without
per-batch loops.  Weights known at load are split and transposed once.
float16 computes in float32, as onnxruntime does.

onnxruntime's com.microsoft.DynamicQuantizeLSTM runs on the same loop with
weights that quantize X and H on the fly (`_QuantWeights`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import dtypes
from ..ir import Type
from ..shapes import InferContext, dim_div, shape_str, tensor
from ..special import sigmoid, softplus
from .quant import dynamic_quantize, dynamic_range, exact_dtype, exact_matmul
from .registry import Kernel, OpContext, op

Act = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------ activations

def _hard_sigmoid(a: float, b: float) -> Act:
    return lambda x: np.clip(a * x + b, 0, 1).astype(x.dtype, copy=False)


def _elu(a: float) -> Act:
    return lambda x: np.where(x >= 0, x, a * np.expm1(np.minimum(x, 0))).astype(x.dtype, copy=False)


#: name (lower case) -> (factory(alpha, beta), default alpha, default beta); None = takes no such parameter.
_ACTIVATIONS: dict[str, tuple[Callable[[float, float], Act], float | None, float | None]] = {
    "relu": (lambda a, b: lambda x: np.maximum(x, 0), None, None),
    "tanh": (lambda a, b: np.tanh, None, None),
    "sigmoid": (lambda a, b: sigmoid, None, None),
    "affine": (lambda a, b: lambda x: (a * x + b).astype(x.dtype, copy=False), 1.0, 0.0),
    "leakyrelu": (lambda a, b: lambda x: np.where(x >= 0, x, a * x).astype(x.dtype, copy=False), 0.01, None),
    "thresholdedrelu": (lambda a, b: lambda x: np.where(x > a, x, 0).astype(x.dtype, copy=False), 1.0, None),
    "scaledtanh": (lambda a, b: lambda x: (a * np.tanh(b * x)).astype(x.dtype, copy=False), 1.0, 1.0),
    "hardsigmoid": (_hard_sigmoid, 0.2, 0.5),
    "elu": (lambda a, b: _elu(a), 1.0, None),
    "softsign": (lambda a, b: lambda x: x / (1 + np.abs(x)), None, None),
    "softplus": (lambda a, b: softplus, None, None),
}


def _activations(ctx: OpContext | InferContext, defaults: list[str], n_dir: int) -> list[list[Act]]:
    """The activation functions of each direction.

    `activation_alpha`/`beta` are consumed in order, one per activation
    that takes the parameter (as onnxruntime reads them); a list naming one
    direction's activations serves both directions of a bidirectional layer.
    """
    names = list(ctx.attr("activations", defaults * n_dir))
    if len(names) == len(defaults) and n_dir == 2:
        names = names * 2
    if len(names) != len(defaults) * n_dir:
        raise ctx.error(f"activations {names} should list {len(defaults)} functions per direction "
                        f"({n_dir} direction{'s' if n_dir > 1 else ''})")
    alphas = list(ctx.attr("activation_alpha", []))
    betas = list(ctx.attr("activation_beta", []))
    funcs: list[Act] = []
    for name in names:
        spec = _ACTIVATIONS.get(str(name).lower())
        if spec is None:
            raise ctx.error(f"unknown activation {name!r}; supported: {', '.join(_ACTIVATIONS)}")
        make, da, db = spec
        a = alphas.pop(0) if da is not None and alphas else da
        b = betas.pop(0) if db is not None and betas else db
        funcs.append(make(a if a is not None else 0.0, b if b is not None else 0.0))
    k = len(defaults)
    return [funcs[d * k:(d + 1) * k] for d in range(n_dir)]


# ------------------------------------------------------------------ shared shape rule / attributes

@dataclass(frozen=True)
class _Cell:
    """What distinguishes the three layers: gates per step and default activations."""

    name: str
    gates: int
    acts: tuple[str, ...]
    #: Number of outputs: Y, Y_h (and Y_c for LSTM).
    outputs: int


_RNN = _Cell("RNN", 1, ("Tanh",), 2)
_GRU = _Cell("GRU", 3, ("Sigmoid", "Tanh"), 2)
_LSTM = _Cell("LSTM", 4, ("Sigmoid", "Tanh", "Tanh"), 3)

_DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}
#: DynamicQuantizeLSTM's inputs 8..11.
_QUANT_PARAMS = ("W_scale", "W_zero_point", "R_scale", "R_zero_point")


def _direction(ctx: OpContext | InferContext) -> tuple[str, int]:
    d = ctx.attr("direction", "forward")
    if d not in _DIRECTIONS:
        raise ctx.error(f"direction must be forward, reverse or bidirectional, got {d!r}")
    return d, _DIRECTIONS[d]


def _rule(cell: _Cell, quantized: bool = False) -> Callable[[InferContext], list[Type | None]]:
    """The shape rule of `cell`'s layer; `quantized` is onnxruntime's DynamicQuantizeLSTM layout:
    W [dirs, input, G*H] and R [dirs, H, G*H] (ONNX's transposed) of int8/uint8, with scales and
    zero points per direction or per direction and column as inputs 8..11."""

    def rule(ctx: InferContext) -> list[Type | None]:
        _, n_dir = _direction(ctx)
        layout = ctx.attr("layout", 0)
        if layout not in (0, 1):
            raise ctx.error(f"layout must be 0 or 1, got {layout}")
        _activations(ctx, list(cell.acts), n_dir)
        elem = ctx.elem(0)
        if elem is not None and elem not in dtypes.FLOAT_TYPES:
            raise ctx.error(f"X must be a float tensor, got {dtypes.type_name(elem)}")
        x, w, r = ctx.shape(0), ctx.shape(1), ctx.shape(2)
        for name, s in (("X", x), ("W", w), ("R", r)):
            if s is not None and len(s) != 3:
                raise ctx.error(f"{name} must be 3-D, got shape {shape_str(s)}")
        hidden = ctx.attr("hidden_size", None)
        if hidden is None and r is not None:
            hidden = r[1] if quantized else r[2]
        if hidden is None and w is not None:
            hidden = dim_div(w[2] if quantized else w[1], cell.gates)
        seq, batch, size = (None, None, None) if x is None else ((x[1], x[0], x[2]) if layout else x)
        gh = hidden * cell.gates if isinstance(hidden, int) else None

        def expect(name: str, s: Any, want: tuple[Any, ...]) -> None:
            if s is None:
                return
            if len(s) != len(want) or any(isinstance(a, int) and isinstance(b, int) and a != b
                                          for a, b in zip(s, want)):
                raise ctx.error(f"{name} has shape {shape_str(s)} but X {shape_str(x)} with hidden_size "
                                f"{hidden} and {n_dir} direction(s) needs {shape_str(want)}")

        if quantized:
            expect("W", w, (n_dir, size, gh))
            expect("R", r, (n_dir, hidden, gh))
            for i, name in ((1, "W"), (2, "R")):
                if ctx.elem(i) not in (None, dtypes.INT8, dtypes.UINT8):
                    raise ctx.error(f"{name} must be int8 or uint8, got {dtypes.type_name(ctx.elem(i))}")
            for i, name in enumerate(_QUANT_PARAMS, start=8):
                if not ctx.has(i):
                    raise ctx.error(f"input {i} ({name}) is required")
                s = ctx.shape(i)
                if s is not None:
                    expect(name, s, (n_dir,) if len(s) == 1 else (n_dir, gh))
        else:
            expect("W", w, (n_dir, gh, size))
            expect("R", r, (n_dir, gh, hidden))
        expect("B", ctx.shape(3) if ctx.has(3) else None, (n_dir, None if gh is None else 2 * gh))
        expect("sequence_lens", ctx.shape(4) if ctx.has(4) else None, (batch,))
        state = (batch, n_dir, hidden) if layout else (n_dir, batch, hidden)
        expect("initial_h", ctx.shape(5) if ctx.has(5) else None, state)
        if cell is _LSTM:
            expect("initial_c", ctx.shape(6) if ctx.has(6) else None, state)
            expect("P", ctx.shape(7) if ctx.has(7) else None, (n_dir, None if hidden is None else 3 * hidden))
        y = (batch, seq, n_dir, hidden) if layout else (seq, n_dir, batch, hidden)
        return [tensor(elem, y), *[tensor(elem, state)] * (cell.outputs - 1)]

    return rule


# ------------------------------------------------------------------ the kernel

@dataclass
class _Weights:
    """One direction's parameters, laid out for the step loop."""

    wt: np.ndarray  # [input, G*H]
    rt: np.ndarray  # [H, G*H]
    wb: np.ndarray  # [G*H]
    rb: np.ndarray  # [G*H]
    p: np.ndarray | None  # LSTM peepholes [3, H] (i, o, f)

    def project(self, x: np.ndarray) -> np.ndarray:
        """x W^T + Wb for the rows of x (every step of the sequence at once)."""
        return x @ self.wt + self.wb

    def recur(self, h: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        """h R^T (the recurrent bias is added by the step); `rows` matters to quantized weights only."""
        return h @ self.rt


@dataclass
class _QuantWeights(_Weights):
    """DynamicQuantizeLSTM's weights, computed as onnxruntime does: each product
    quantizes its float operand (all of X once, H at every step) to uint8 with
    a scale and zero point from that operand's range, multiplies exactly in
    integers, and scales the sums by operand scale x weight scale in float32.
    Rounding the activations moves the outputs by ~1e-2 from those of an LSTM
    over dequantized weights (measured on the tests' cases), so it is
    reproduced, not skipped.

    wt and rt hold W - W_zero_point and R - R_zero_point (integer values in the
    float type that sums them exactly), wb is zero and rb is Wb + Rb, added
    after both products as onnxruntime adds its fused bias.
    """

    w_scale: np.ndarray  # [] or [G*H]
    r_scale: np.ndarray
    w_bound: int  # largest |activation - zero point| x |weight - zero point|
    r_bound: int

    def project(self, x: np.ndarray) -> np.ndarray:
        return _quantized_product(x, x, self.wt, self.w_scale, self.w_bound)

    def recur(self, h: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        return _quantized_product(h, h if rows is None else h[rows], self.rt, self.r_scale, self.r_bound)


def _quantized_product(a: np.ndarray, basis: np.ndarray, w: np.ndarray, w_scale: np.ndarray, bound: int) -> np.ndarray:
    """a @ w with `a` quantized to uint8 on the range of `basis` (a's rows that onnxruntime
    sees in that product), exact integer sums, float32 scaling."""
    scale, zp = dynamic_range(basis)
    qa = dynamic_quantize(a, scale, zp) - zp
    return exact_matmul(qa, w, bound).astype(np.float32) * (scale * w_scale)


def _bias_and_peepholes(gh: int, hidden: int, n_dir: int, dtype: np.dtype, b: np.ndarray | None,
                        p: np.ndarray | None, label: str) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """(Wb, Rb, peepholes [3, H] or None) of each direction."""
    if b is not None and b.shape != (n_dir, 2 * gh):
        raise ValueError(f"{label}: B has shape {list(b.shape)}, expected {[n_dir, 2 * gh]}")
    if p is not None and p.shape != (n_dir, 3 * hidden):
        raise ValueError(f"{label}: P has shape {list(p.shape)}, expected {[n_dir, 3 * hidden]}")
    out = []
    for d in range(n_dir):
        bias = b[d].astype(dtype) if b is not None else np.zeros(2 * gh, dtype)
        out.append((bias[:gh], bias[gh:], None if p is None else p[d].astype(dtype).reshape(3, hidden)))
    return out


def _prepare(cell: _Cell, hidden: int, n_dir: int, dtype: np.dtype, w: np.ndarray, r: np.ndarray,
             b: np.ndarray | None, p: np.ndarray | None, label: str) -> list[_Weights]:
    gh = cell.gates * hidden
    if w.ndim != 3 or w.shape[:2] != (n_dir, gh) or r.shape != (n_dir, gh, hidden):
        raise ValueError(f"{label}: W {list(w.shape)} / R {list(r.shape)} do not fit hidden_size {hidden}, "
                         f"{n_dir} direction(s) and {cell.gates} gate(s)")
    extras = _bias_and_peepholes(gh, hidden, n_dir, dtype, b, p, label)
    return [_Weights(np.ascontiguousarray(w[d].T.astype(dtype)), np.ascontiguousarray(r[d].T.astype(dtype)), *extras[d])
            for d in range(n_dir)]


def _prepare_quantized(hidden: int, n_dir: int, w: np.ndarray, r: np.ndarray, b: np.ndarray | None,
                       p: np.ndarray | None, w_scale: np.ndarray, w_zp: np.ndarray, r_scale: np.ndarray,
                       r_zp: np.ndarray, label: str) -> list[_Weights]:
    """DynamicQuantizeLSTM's parameters per direction (see `_QuantWeights`)."""
    gh = _LSTM.gates * hidden
    if w.ndim != 3 or w.shape[0] != n_dir or w.shape[2] != gh or r.shape != (n_dir, hidden, gh):
        raise ValueError(f"{label}: W {list(w.shape)} / R {list(r.shape)} do not fit hidden_size {hidden} and "
                         f"{n_dir} direction(s): expected [{n_dir}, input_size, {gh}] and [{n_dir}, {hidden}, {gh}]")
    for name, v in zip(_QUANT_PARAMS, (w_scale, w_zp, r_scale, r_zp)):
        if v.shape not in ((n_dir,), (n_dir, gh)):
            raise ValueError(f"{label}: {name} has shape {list(v.shape)}, expected [{n_dir}] (per direction) "
                             f"or [{n_dir}, {gh}] (per direction and column)")
    extras = _bias_and_peepholes(gh, hidden, n_dir, np.dtype(np.float32), b, p, label)
    out: list[_Weights] = []
    for d, (wb, rb, peep) in enumerate(extras):
        wd, w_bound = _centred(w[d], w_zp[d])
        rd, r_bound = _centred(r[d], r_zp[d])
        out.append(_QuantWeights(wd, rd, np.zeros(gh, np.float32), wb + rb, peep,
                                 w_scale[d].astype(np.float32), r_scale[d].astype(np.float32), w_bound, r_bound))
    return out


def _centred(w: np.ndarray, zp: np.ndarray) -> tuple[np.ndarray, int]:
    """w - zp (zp per tensor or per column) in the float type that sums its products with
    uint8 activations exactly, and the bound on one such product."""
    centred = w.astype(np.int32) - zp.astype(np.int32)
    # A quantized activation minus its zero point lies in -255..255.
    bound = 255 * int(np.abs(centred).max(initial=0))
    dt = exact_dtype(bound, w.shape[0]) or np.dtype(np.int64)
    return centred.astype(dt), bound


def _order(lens: np.ndarray | None, steps: int, batch: int) -> np.ndarray | None:
    """Time index of each (step, batch) when running in reverse: each sequence reversed
    within its own length (padding stays in place).  None when plain [::-1] suffices."""
    if lens is None or np.all(lens == steps):
        return None
    t = np.arange(steps)[:, None]
    return np.where(t < lens[None, :], lens[None, :] - 1 - t, t)


def _build(cell: _Cell, ctx: OpContext, quantized: bool = False) -> Callable[..., tuple[np.ndarray, ...]]:
    """The kernel of `cell`'s layer; `quantized`: DynamicQuantizeLSTM's weights (see `_QuantWeights`)."""
    direction, n_dir = _direction(ctx)
    layout = ctx.attr("layout", 0)
    clip = ctx.attr("clip", None)
    acts = _activations(ctx, list(cell.acts), n_dir)
    lbr = ctx.attr("linear_before_reset", 0)
    input_forget = ctx.attr("input_forget", 0)
    label = ctx.node.label()
    hidden_attr = ctx.attr("hidden_size", None)
    x_elem = ctx.in_elem(0)
    out_dtype = dtypes.storage_dtype(x_elem) if x_elem is not None else None
    cdtype = np.dtype(np.float64) if out_dtype == np.float64 else np.dtype(np.float32)
    weight_inputs = ((1, 2, 3, 7) if cell is _LSTM else (1, 2, 3)) + ((8, 9, 10, 11) if quantized else ())
    present = [i for i in weight_inputs if i < len(ctx.node.inputs) and ctx.node.inputs[i]]
    consts = {i: ctx.const(i) for i in weight_inputs}
    # onnxruntime quantizes H over the rows it multiplies: with Y requested, rows whose
    # sequence has ended hold zeros there, else their last state.
    y_out = bool(ctx.node.outputs and ctx.node.outputs[0])

    def hidden_of(r: np.ndarray) -> int:
        return hidden_attr if hidden_attr is not None else r.shape[1 if quantized else 2]

    def prepare(w: np.ndarray, r: np.ndarray, b: np.ndarray | None, p: np.ndarray | None,
                quant: tuple[np.ndarray, ...]) -> list[_Weights]:
        if quantized:
            w_scale, w_zp, r_scale, r_zp = quant
            return _prepare_quantized(hidden_of(r), n_dir, w, r, b, p, w_scale, w_zp, r_scale, r_zp, label)
        return _prepare(cell, hidden_of(r), n_dir, cdtype, w, r, b, p, label)

    cached = None
    if all(consts[i] is not None for i in present) and consts[2] is not None and consts[2].ndim == 3:
        cached = prepare(consts[1], consts[2], consts[3], consts.get(7), tuple(consts[i] for i in weight_inputs[4:]))
    clip_fn: Act = (lambda v: np.clip(v, -clip, clip)) if clip is not None else (lambda v: v)

    def step_fn(d: int) -> Callable[..., Any]:
        f = acts[d][0]
        if cell is _RNN:
            def rnn_step(gx: np.ndarray, h: np.ndarray, c: Any, wt: _Weights,
                         rows: np.ndarray | None) -> tuple[np.ndarray, Any]:
                return f(clip_fn(gx + wt.recur(h, rows) + wt.rb)), None
            return rnn_step
        g = acts[d][1]
        if cell is _GRU:
            def gru_step(gx: np.ndarray, h: np.ndarray, c: Any, wt: _Weights,
                         rows: np.ndarray | None) -> tuple[np.ndarray, Any]:
                hs = h.shape[1]
                if lbr:
                    hr = wt.recur(h, rows) + wt.rb
                    zr = f(clip_fn(gx[:, :2 * hs] + hr[:, :2 * hs]))
                    z, rg = zr[:, :hs], zr[:, hs:]
                    hh = g(clip_fn(gx[:, 2 * hs:] + rg * hr[:, 2 * hs:]))
                else:
                    zr = f(clip_fn(gx[:, :2 * hs] + h @ wt.rt[:, :2 * hs] + wt.rb[:2 * hs]))
                    z, rg = zr[:, :hs], zr[:, hs:]
                    hh = g(clip_fn(gx[:, 2 * hs:] + (rg * h) @ wt.rt[:, 2 * hs:] + wt.rb[2 * hs:]))
                return (1 - z) * hh + z * h, None
            return gru_step
        hf = acts[d][2]

        def lstm_step(gx: np.ndarray, h: np.ndarray, c: np.ndarray, wt: _Weights,
                      rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
            hs = h.shape[1]
            gates = gx + wt.recur(h, rows) + wt.rb
            gi, go, gf, gc = gates[:, :hs], gates[:, hs:2 * hs], gates[:, 2 * hs:3 * hs], gates[:, 3 * hs:]
            if wt.p is not None:
                gi = gi + wt.p[0] * c
                gf = gf + wt.p[2] * c
            i = f(clip_fn(gi))
            fg = 1 - i if input_forget else f(clip_fn(gf))
            c_new = fg * c + i * g(clip_fn(gc))
            if wt.p is not None:
                go = go + wt.p[1] * c_new
            return f(clip_fn(go)) * hf(c_new), c_new
        return lstm_step

    steps_fns = [step_fn(d) for d in range(n_dir)]

    def run(x: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray | None = None,
            seq_lens: np.ndarray | None = None, h0: np.ndarray | None = None, c0: np.ndarray | None = None,
            p: np.ndarray | None = None, *quant: np.ndarray) -> tuple[np.ndarray, ...]:
        if x.ndim != 3:
            raise ValueError(f"{label}: X must be 3-D, got shape {list(x.shape)}")
        weights = cached or prepare(w, r, b, p, quant)
        hs = weights[0].rt.shape[0]
        xs = x.astype(cdtype, copy=False)
        if layout:
            xs = xs.transpose(1, 0, 2)
        steps, batch, size = xs.shape
        if weights[0].wt.shape[0] != size:
            raise ValueError(f"{label}: X has input size {size} but W expects {weights[0].wt.shape[0]}")
        lens = np.full(batch, steps, np.int64)  # without sequence_lens every entry runs all steps
        if seq_lens is not None:
            lens = np.asarray(seq_lens).reshape(-1).astype(np.int64)
            if lens.shape != (batch,) or np.any(lens < 0) or np.any(lens > steps):
                raise ValueError(f"{label}: sequence_lens {lens.tolist()} must give one length in 0..{steps} "
                                 f"per batch entry ({batch})")
        masked = not np.all(lens == steps)
        # Steps past the longest sequence change nothing: run to it only (as onnxruntime does).
        run_steps = int(lens.max(initial=0)) if seq_lens is not None else steps
        state_shape = (n_dir, batch, hs)

        def initial(v: np.ndarray | None) -> np.ndarray:
            if v is None:
                return np.zeros(state_shape, cdtype)
            v = v.astype(cdtype, copy=False).transpose(1, 0, 2) if layout else v.astype(cdtype, copy=False)
            if v.shape != state_shape:
                raise ValueError(f"{label}: initial state has shape {list(v.shape)}, expected {list(state_shape)}")
            return v

        hinit, cinit = initial(h0), initial(c0) if cell is _LSTM else None
        y = np.zeros((steps, n_dir, batch, hs), cdtype)
        y_h = np.empty(state_shape, cdtype)
        y_c = np.empty(state_shape, cdtype) if cell is _LSTM else None
        order = _order(lens, steps, batch)
        cols = np.arange(batch)
        for d in range(n_dir):
            reverse = direction == "reverse" or d == 1
            wt = weights[d]
            xd = (xs[order, cols] if order is not None else xs[::-1]) if reverse else xs
            gx_all = wt.project(xd[:run_steps].reshape(run_steps * batch, size)).reshape(run_steps, batch, -1)
            h = hinit[d]
            c = cinit[d] if cinit is not None else None
            yd = np.zeros((steps, batch, hs), cdtype)
            for t in range(run_steps):
                rows = (lens >= t) if masked and y_out and t else None
                h_new, c_new = steps_fns[d](gx_all[t], h, c, wt, rows)
                if masked:
                    live = (t < lens)[:, None]
                    h = np.where(live, h_new, h)
                    c = np.where(live, c_new, c) if c is not None else None
                    yd[t] = np.where(live, h_new, 0)
                else:
                    h, c = h_new, c_new
                    yd[t] = h_new
            if reverse:
                yd = yd[order, cols] if order is not None else yd[::-1]
            y[:, d] = yd
            y_h[d] = h
            if y_c is not None:
                y_c[d] = c
        dt = out_dtype or x.dtype
        outs = [y.transpose(2, 0, 1, 3), y_h.transpose(1, 0, 2)] if layout else [y, y_h]
        if y_c is not None:
            outs.append(y_c.transpose(1, 0, 2) if layout else y_c)
        return tuple(np.ascontiguousarray(o, dtype=dt) for o in outs)

    return run


@op("RNN", since=1, infer=_rule(_RNN))
def rnn(ctx: OpContext) -> Kernel:
    """Simple RNN: Ht = f(Xt W^T + Ht-1 R^T + Wb + Rb)."""
    return _build(_RNN, ctx)


@op("GRU", since=1, infer=_rule(_GRU))
def gru(ctx: OpContext) -> Kernel:
    """GRU (gates z, r, h); `linear_before_reset` applies the reset gate after the recurrent matmul."""
    return _build(_GRU, ctx)


@op("LSTM", since=1, infer=_rule(_LSTM))
def lstm(ctx: OpContext) -> Kernel:
    """LSTM (gates i, o, f, c) with optional peepholes, coupled input/forget gates and clipping."""
    return _build(_LSTM, ctx)


@op("DynamicQuantizeLSTM", since=1, domain="com.microsoft", infer=_rule(_LSTM, quantized=True))
def dynamic_quantize_lstm(ctx: OpContext) -> Kernel:
    """onnxruntime's LSTM over int8/uint8 W [dirs, input, 4H] and R [dirs, H, 4H] (scales and zero
    points per direction or per direction and column); X and each step's H are quantized to
    uint8 on the fly and multiplied exactly, as onnxruntime does (see `_QuantWeights`)."""
    return _build(_LSTM, ctx, quantized=True)
