"""The activations, defined once: the one table every consumer reads.

An activation is an elementwise function that a fusion pass can fold into
the op before it (Conv, ConvTranspose, FusedMatMul), where it runs in place
on the op's fresh output and costs no extra tensor.  Each row says:

- `name`: the value of a fused node's `activation` attribute;
- `sources`: the (domain, op_type, since-opset) ops it defines: each is
  registered as a standalone op (ops/elementwise.py) with a CPU and a GPU
  kernel from this row, and fuses into the op before it; `covers` says
  which of their attribute values the row stands for (GELU: the exact one);
- `params`: the ONNX attribute names with their defaults, written here
  only; a fused node carries them as `activation_<name>` attributes
  (a default of None: the fusion that attaches the row always writes it);
- `apply(x, out, **params)`: numpy, into `out` (in place when `out is x`);
- `wgsl`: the shader expression over `x`, parameters as `{name}`, used by
  the standalone elementwise kernel and the fused GPU epilogues alike;
- `wasm`: the code of the WebAssembly epilogue (wasm/simd_math.h's ACT_*),
  None where that kernel lacks it and numpy runs it after;
- `max_commutes`: whether max(f(a), f(b)) == f(max(a, b)) exactly for these
  parameters (piecewise linear, non-decreasing), so MaxPool may go first.

Rows without sources are attached by passes/quant_fusion.py only: the
requantisations of a QDQ graph (QuantizeGrid, QuantizeGridScaled), and
QuantizeGridThen, a composition: a row built from other rows (`chain`),
here around the table's HardSwish, HardSigmoid or Relu row, which the
fused node names in its `activation_then` attribute (`COMPOSITIONS`).

Readers: passes/fuse.py (what fuses, with which parameters), ops/elementwise.py
(the standalone ops' numpy and WGSL rows), ops/conv.py and ops/matmul.py
(the in-place epilogue, through `fused_activation`), devices/gpu/common.py
(the fused WGSL) and wasm_ops.py (the kernel codes).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .ir import AttrMixin
from .special import BLOCK, gelu_, logistic_of_negated_, work_blocks

#: numpy into `out`: out = f(x), elementwise; `out` may be `x`.
Apply = Callable[..., None]


#: Float arrays from this size up are rectified by a clip (see `_relu`).
_RELU_CLIP_MIN_SIZE = 8192


def _relu(x: np.ndarray, out: np.ndarray) -> None:
    """max(x, 0); on big float arrays as a clip, which numpy vectorises where its maximum is not (3x faster
    on a CNN's feature maps), with the same values (NaN stays NaN).  np.clip's Python wrapper costs ~1.5 us
    more per call, which small arrays (per-chunk audio models) do not win back."""
    if x.dtype.kind == "f" and x.size >= _RELU_CLIP_MIN_SIZE:
        np.clip(x, 0, np.inf, out=out)
    else:
        np.maximum(x, 0, out=out)


def _tanh(x: np.ndarray, out: np.ndarray) -> None:
    np.tanh(x, out=out)


def _sigmoid(x: np.ndarray, out: np.ndarray) -> None:
    """1 / (1 + exp(-x)); a single value (a classifier's score) in Python's float64, rounded once: six
    numpy calls on one element cost ~4 us, this ~1 us."""
    if x.size == 1 and x.dtype.kind == "f":
        v = -float(x.reshape(-1)[0])
        out.fill(0.0 if v > 709.0 else 1.0 / (1.0 + math.exp(v)))
        return
    np.negative(x, out=out)
    logistic_of_negated_(out)


def _gelu(x: np.ndarray, out: np.ndarray) -> None:
    if out is not x:
        out[...] = x
    gelu_(out)


def _hardswish(x: np.ndarray, out: np.ndarray) -> None:
    """x * clip(x / 6 + 0.5, 0, 1); in place on float32, block by block through the thread's work buffer.

    No temporary the size of x (a MobileNet stem's 800 KB): the block
    stays in cache, and no allocation can fault its pages in again when
    glibc has handed them back to the OS (which made a stem conv called in
    a loop 2.5x slower; within a model run the gain is ~1%).
    """
    if out is not x or x.dtype != np.float32 or not x.flags.c_contiguous:
        t = x * x.dtype.type(1.0 / 6.0)
        t += x.dtype.type(0.5)
        np.clip(t, 0, 1, out=t)
        np.multiply(x, t, out=out)
        return
    flat = x.reshape(-1)
    for start in range(0, flat.size, BLOCK):
        part = flat[start:start + BLOCK]
        t = work_blocks(part.size)[0]
        np.multiply(part, np.float32(1.0 / 6.0), out=t)
        t += np.float32(0.5)
        np.clip(t, 0, 1, out=t)
        part *= t


def _leaky_relu(x: np.ndarray, out: np.ndarray, alpha: float) -> None:
    a = x.dtype.type(alpha)
    if 0.0 <= alpha <= 1.0:
        np.maximum(x, x * a, out=out)
    else:
        np.multiply(x, a, out=out, where=x < 0)
        if out is not x:
            np.copyto(out, x, where=~(x < 0))


def _hard_sigmoid(x: np.ndarray, out: np.ndarray, alpha: float, beta: float) -> None:
    np.multiply(x, x.dtype.type(alpha), out=out)
    out += out.dtype.type(beta)
    np.clip(out, 0, 1, out=out)


def _clip(x: np.ndarray, out: np.ndarray, min: float, max: float) -> None:  # noqa: A002 (ONNX's names)
    np.clip(x, min, max, out=out)


def _quick_gelu(x: np.ndarray, out: np.ndarray, alpha: float) -> None:
    s = x * x.dtype.type(alpha)  # a new array: `out` may be `x`
    _sigmoid(s, s)
    np.multiply(x, s, out=out)


def _quantize_grid(x: np.ndarray, out: np.ndarray, min: float, max: float) -> None:  # noqa: A002
    """Saturate to [min, max] and round half to even: a requantisation landing on the integer grid
    (passes/quant_fusion.py), done on the output block while it is in cache."""
    np.clip(x, min, max, out=out)
    np.rint(out, out=out)


def _scale(x: np.ndarray, out: np.ndarray, scale: float) -> None:
    np.multiply(x, x.dtype.type(scale), out=out)


def _requantize(x: np.ndarray, out: np.ndarray, out_scale: float, out_min: float, out_max: float) -> None:
    """Onto the next grid as QuantizeLinear computes it: divide by the scale, round half to even, saturate."""
    np.divide(x, x.dtype.type(out_scale), out=out)
    np.rint(out, out=out)
    np.clip(out, out_min, out_max, out=out)


def _always(params: Mapping[str, Any]) -> bool:
    return True


def _never(params: Mapping[str, Any]) -> bool:
    return False


@dataclass(frozen=True)
class ActivationDef:
    """One activation (see the module docstring for what each field is for)."""

    name: str
    sources: tuple[tuple[str, str, int], ...]
    apply: Apply
    wgsl: str
    params: tuple[tuple[str, float | None], ...] = ()
    wasm: int | None = None
    max_commutes: Callable[[Mapping[str, Any]], bool] = _never
    #: Which source nodes (by their attributes) this row stands for.
    covers: Callable[[Mapping[str, Any]], bool] = field(default=_always)
    #: Parameters that later opsets pass as constant inputs 1, 2, ... instead of attributes (Clip).
    input_params: tuple[str, ...] = ()
    #: float16 computes in float32 and rounds once (transcendental functions, as onnxruntime does).
    upcast16: bool = False

    def __post_init__(self) -> None:
        if self.sources and any(default is None for _, default in self.params):
            raise ValueError(f"activation {self.name}: a source op may omit any attribute, so each needs a default")

    def defaults(self) -> dict[str, float | None]:
        return dict(self.params)


#: A name in a WGSL expression that is the operand `x` (not part of a longer identifier).
_OPERAND = re.compile(r"\bx\b")


def chain(name: str, *rows: ActivationDef) -> ActivationDef:
    """A row built from other rows, applied one after the other: their parameters in turn (distinct
    names), numpy in place after the first, each WGSL expression taking the one before as its `x`.  It
    has no source op and no WebAssembly code (numpy runs it after that kernel)."""
    params = tuple(p for row in rows for p in row.params)
    if len({p for p, _ in params}) != len(params):
        raise ValueError(f"activation {name}: the rows {[r.name for r in rows]} share a parameter name")
    counts = [len(row.params) for row in rows]

    def apply(x: np.ndarray, out: np.ndarray, *values: float) -> None:
        src, at = x, 0
        for row, n in zip(rows, counts):
            row.apply(src, out, *values[at:at + n])
            src, at = out, at + n

    wgsl = rows[0].wgsl
    for row in rows[1:]:
        wgsl = _OPERAND.sub(lambda _: f"({wgsl})", row.wgsl)
    return ActivationDef(name, (), apply, wgsl, params, upcast16=any(row.upcast16 for row in rows))


ACTIVATIONS: dict[str, ActivationDef] = {a.name: a for a in (
    ActivationDef("Relu", (("", "Relu", 1),), _relu, "max(x, 0.0)", wasm=1, max_commutes=_always),
    ActivationDef("Tanh", (("", "Tanh", 1),), _tanh, "wi_tanh(x)", upcast16=True),
    ActivationDef("Sigmoid", (("", "Sigmoid", 1),), _sigmoid, "wi_sigmoid(x)", wasm=5, upcast16=True),
    ActivationDef("Gelu", (("", "Gelu", 20), ("webinfer", "Gelu", 1)), _gelu,
                  "0.5 * x * (1.0 + wi_erf(x * 0.7071067811865476))",
                  covers=lambda attrs: attrs.get("approximate", "none") == "none", upcast16=True),
    ActivationDef("HardSwish", (("", "HardSwish", 14), ("webinfer", "HardSwish", 1)), _hardswish,
                  "x * clamp(x / 6.0 + 0.5, 0.0, 1.0)", wasm=4),
    ActivationDef("LeakyRelu", (("", "LeakyRelu", 1),), _leaky_relu, "select(x * {alpha}, x, x >= 0.0)",
                  params=(("alpha", 0.01),), wasm=6, max_commutes=lambda p: p["alpha"] >= 0),
    ActivationDef("HardSigmoid", (("", "HardSigmoid", 1),), _hard_sigmoid, "clamp(x * {alpha} + {beta}, 0.0, 1.0)",
                  params=(("alpha", 0.2), ("beta", 0.5)), wasm=3, max_commutes=lambda p: p["alpha"] >= 0),
    ActivationDef("Clip", (("", "Clip", 1),), _clip, "min(max(x, {min}), {max})",
                  params=(("min", -math.inf), ("max", math.inf)), wasm=2, max_commutes=_always,
                  input_params=("min", "max")),
    ActivationDef("QuickGelu", (("com.microsoft", "QuickGelu", 1),), _quick_gelu, "x * wi_sigmoid({alpha} * x)",
                  params=(("alpha", 1.702),), upcast16=True),
    # WGSL's round() breaks ties to even, as ONNX's requantisation does
    ActivationDef("QuantizeGrid", (), _quantize_grid, "round(clamp(x, {min}, {max}))",
                  params=(("min", None), ("max", None))),
)}

#: Building blocks of the quantised rows, never attached alone: back to real values, and onto a next grid.
_SCALE = ActivationDef("Scale", (), _scale, "x * {scale}", params=(("scale", None),))
_REQUANTIZE = ActivationDef("Requantize", (), _requantize, "clamp(round(x / {out_scale}), {out_min}, {out_max})",
                            params=(("out_scale", None), ("out_min", None), ("out_max", None)))

#: QuantizeGrid then back to real values: a QDQ graph's Q -> DQ after a product whose real values
#: something else (a residual Add) reads.
ACTIVATIONS["QuantizeGridScaled"] = chain("QuantizeGridScaled", ACTIVATIONS["QuantizeGrid"], _SCALE)

#: Rows built around another row that the fused node names in `activation_<attribute>`: name ->
#: (attribute, the row for each inner activation it may name).  QuantizeGridThen is a QDQ graph's
#: Q -> DQ -> activation -> Q chain after a product, with the ops' own roundings.
COMPOSITIONS: dict[str, tuple[str, dict[str, ActivationDef]]] = {
    "QuantizeGridThen": ("then", {inner: chain("QuantizeGridThen", ACTIVATIONS["QuantizeGridScaled"],
                                               ACTIVATIONS[inner], _REQUANTIZE)
                                  for inner in ("HardSwish", "HardSigmoid", "Relu")}),
}

#: The row fusing from each (domain, op_type).
BY_SOURCE: dict[tuple[str, str], ActivationDef] = {(d, o): a for a in ACTIVATIONS.values() for d, o, _ in a.sources}

#: The prefix of a fused node's parameter attributes: activation_alpha, activation_min...
PARAM_PREFIX = "activation_"


@dataclass(frozen=True)
class Activation:
    """An activation with its parameter values, as a fused node carries it: calling it runs it in place
    (numpy); kernels that take it into their own store (wasm_ops.py) read `wasm_args`."""

    spec: ActivationDef
    params: tuple[float, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, y: np.ndarray) -> None:
        self.spec.apply(y, y, *self.params)

    def wasm_args(self) -> tuple[int, float, float] | None:
        """(code, p0, p1) for the WebAssembly epilogue, or None where it lacks this activation."""
        if self.spec.wasm is None:
            return None
        p = (*self.params, 0.0, 0.0)
        return self.spec.wasm, float(p[0]), float(p[1])


def fused_params(ctx: AttrMixin, spec: ActivationDef) -> dict[str, float]:
    """The parameter values of a fused node's activation, defaults from the table (a missing one without
    a default is an error naming the node)."""
    return {name: float(ctx.attr(PARAM_PREFIX + name) if default is None else ctx.attr(PARAM_PREFIX + name, default))
            for name, default in spec.params}


def fused_spec(ctx: AttrMixin) -> ActivationDef | None:
    """The table row of the `activation` a fusion pass attached to this node (for a composition, the row
    around the inner activation it names), or None; an unknown name is an error naming the node."""
    name = ctx.attr("activation", None)
    if name is None:
        return None
    spec = ACTIVATIONS.get(name)
    if spec is not None:
        return spec
    if name not in COMPOSITIONS:
        raise ctx.error(f"fused activation {name!r} is not one of {', '.join([*ACTIVATIONS, *COMPOSITIONS])}")
    attr, rows = COMPOSITIONS[name]
    inner = ctx.attr(PARAM_PREFIX + attr)
    if inner not in rows:
        raise ctx.error(f"{PARAM_PREFIX}{attr} {inner!r} of the fused activation {name} is not one of "
                        f"{', '.join(rows)}")
    return rows[inner]


def fused_activation(ctx: AttrMixin) -> Activation | None:
    """The in-place activation a fusion pass attached to this node (its `activation*` attributes), or None."""
    spec = fused_spec(ctx)
    if spec is None:
        return None
    return Activation(spec, tuple(fused_params(ctx, spec).values()))


def source_params(spec: ActivationDef, node_attrs: Mapping[str, Any], inputs: Sequence[str] = (),
                  scalar: Callable[[str], float | None] = lambda name: None) -> dict[str, float] | None:
    """The parameters of a source node from its attributes, or from its constant inputs 1, 2... where
    later opsets moved them (`inputs` are the names of those inputs, `scalar` gives a constant's value);
    None when one of them is not a constant."""
    out = {}
    for name, default in spec.params:
        k = spec.input_params.index(name) if name in spec.input_params else len(inputs)
        if name in node_attrs:
            out[name] = float(node_attrs[name])
        elif k < len(inputs) and inputs[k]:
            v = scalar(inputs[k])
            if v is None:
                return None
            out[name] = float(v)
        else:
            assert default is not None  # a row with sources has every default (ActivationDef.__post_init__)
            out[name] = default
    return out
