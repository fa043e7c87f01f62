"""Fusion of the quantisation patterns onnxruntime's quantizer writes (issue 12).

Runs after constant folding (so the weights' DequantizeLinear nodes are
already float32 initializers) and after the float fusions of fuse.py (whose
GELU it takes into the fused product), on one `GraphEditor`, so it costs
time linear in the graph.  Rules:

- dynamic quantisation (`quantize_dynamic`, transformers.js' int8 files):
  MatMulInteger(A, constant B) -> Cast(float) -> Mul(scale) [-> Add(constant
  bias)] -> webinfer.MatMulIntegerScaled, which computes the exact integer
  product (ops/quant.py's blocked float32 GEMM) and scales it in place.  It
  gives bit for bit what the chain gives.  The DynamicQuantizeLinear feeding
  A stays a node of its own (onnxruntime shares one between the Q, K and V
  products), as webinfer.DynamicQuantizeToGrid when only such products read
  it: it then hands them the integers less the zero point, in float32.
- static QDQ (`quantize_static`, QDQ format): DequantizeLinear(x) ->
  Conv / MatMul / Gemm (float32 constant W, B) -> QuantizeLinear(y) ->
  the same product (a FusedConv, a FusedMatMul for MatMul and Gemm) of x's grid values
  (q - x_zero_point, float32 integers) with W * x_scale / y_scale, plus
  B / y_scale, then the QuantizeGrid activation (saturate to the range
  less y_zero_point, round half to even) on the output block in cache:
  y's grid values.  Products pass grid values to each other directly;
  the remaining QuantizeLinear -> DequantizeLinear pairs become
  webinfer.QuantizeToGrid and multiplies, so no integer storage is left
  between the ops of a QDQ graph.
  It is faithful to the float graph up to float32 rounding order, so an
  output may differ from the unfused graph's by one quantisation step where
  the float value lies within rounding of a half step (tests bound that).
- static QOperator (`quantize_static`, QOperator format): QLinearConv, QLinearMatMul, QGemm,
  QLinearAdd, QLinearMul and QLinearGlobalAveragePool with constant weights become the
  DequantizeLinear -> float op -> QuantizeLinear chains of the QDQ file first
  (`expand_qoperator`), so the QDQ rules take them; the same one-step bound holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, TypeGuard

import numpy as np

from .. import dtypes
from ..activations import BY_SOURCE, COMPOSITIONS, PARAM_PREFIX, source_params
from ..ir import Graph, Node, TensorType
from ..ops.quant import INT_RANGES
from ..shapes import GraphTypes
from .editor import GraphEditor
from .fuse import DOMAIN

#: int32 accumulators wrap past this; the fused product's float scaling would not, so fusion
#: requires the bound on |A @ B| below it.
_INT32_LIMIT = 1 << 31


def _is(node: Node | None, op: str) -> TypeGuard[Node]:
    return node is not None and node.op_type == op and node.domain == ""


def _other(node: Node, name: str) -> str | None:
    if len(node.inputs) != 2:
        return None
    return node.inputs[1] if node.inputs[0] == name else node.inputs[0] if node.inputs[1] == name else None


def _rank(types: GraphTypes, name: str) -> int | None:
    t = types.types.get(name)
    return t.rank if isinstance(t, TensorType) else None


def _elem(types: GraphTypes, name: str) -> int | None:
    t = types.types.get(name)
    return t.elem if isinstance(t, TensorType) else None


# ------------------------------------------------------------ dynamic quantisation

def fuse_dynamic_matmul(ed: GraphEditor, types: GraphTypes) -> None:
    """MatMulInteger -> Cast(float) -> Mul(scale of rank <= 1) [-> Add(constant bias)] [-> webinfer.Gelu,
    which fuse.py made before] -> one webinfer.MatMulIntegerScaled(A, B, a_zero_point, b_zero_point,
    scale[, bias]), with the GELU as its `activation`, applied in place as FusedMatMul applies it."""
    for mm in ed.nodes():
        if not ed.alive(mm) or not _is(mm, "MatMulInteger") or len(mm.inputs) < 2:
            continue
        b = ed.const(mm.inputs[1])
        a_zp = mm.inputs[2] if len(mm.inputs) > 2 else ""
        b_zp = mm.inputs[3] if len(mm.inputs) > 3 else ""
        bz = ed.const(b_zp) if b_zp else None
        if b is None or b.ndim != 2 or (b_zp and bz is None):
            continue
        a_code = _elem(types, mm.inputs[0])
        a_max = INT_RANGES[a_code][1] - INT_RANGES[a_code][0] if a_code in INT_RANGES else None  # any zero point
        b_max = int(np.abs(b.astype(np.int64) - (0 if bz is None else bz.astype(np.int64))).max()) if b.size else 0
        if a_max is None or a_max * b_max * b.shape[0] >= _INT32_LIMIT:
            continue
        cast = ed.sole_reader(mm.outputs[0])
        if not _is(cast, "Cast") or cast.attrs.get("to") != dtypes.FLOAT:
            continue
        mul = ed.sole_reader(cast.outputs[0])
        if not _is(mul, "Mul"):
            continue
        scale = _other(mul, cast.outputs[0])
        rank = _rank(types, scale or "")
        if not scale or _elem(types, scale) != dtypes.FLOAT or rank is None or rank > 1:
            continue
        matched, inputs, out = [mm, cast, mul], [mm.inputs[0], mm.inputs[1], a_zp, b_zp, scale], mul.outputs
        add = ed.sole_reader(mul.outputs[0])
        if _is(add, "Add"):
            bias = _other(add, mul.outputs[0])
            c = ed.const(bias or "")
            if c is not None and c.dtype == np.float32 and c.ndim == 1 and c.shape[0] == b.shape[1]:
                matched.append(add)
                inputs.append(bias)  # type: ignore[arg-type]
                out = add.outputs
        attrs = {}
        act = ed.sole_reader(out[0])
        if act is not None and act.domain == DOMAIN and act.op_type == "Gelu" and act.inputs[0] == out[0] \
                and act.attrs.get("approximate", "none") == "none":
            attrs["activation"] = "Gelu"
            matched.append(act)
            out = act.outputs
        fused = Node("MatMulIntegerScaled", inputs, list(out), attrs, mm.name, DOMAIN)
        ed.replace(matched, [fused], mm)


def dynamic_quantize_to_grid(ed: GraphEditor, types: GraphTypes) -> None:
    """DynamicQuantizeLinear whose quantised output only MatMulIntegerScaled nodes read as A, each with
    the node's own zero point -> webinfer.DynamicQuantizeToGrid, whose A the products take as it is
    (`a_grid`): the same integers, without the uint8 storage and a subtraction per product."""
    for dql in ed.nodes():
        if not ed.alive(dql) or not _is(dql, "DynamicQuantizeLinear") or len(dql.outputs) != 3 \
                or dql.outputs[0] in ed.outputs:
            continue
        y, _, zp = dql.outputs
        readers = ed.readers(y)
        if not readers or not zp or not all(
                r.domain == DOMAIN and r.op_type == "MatMulIntegerScaled" and r.inputs[0] == y and r.inputs[1] != y
                and len(r.inputs) > 2 and r.inputs[2] == zp for r in readers):
            continue
        grid = Node("DynamicQuantizeToGrid", list(dql.inputs), [ed.fresh_name(y + "_grid"), *dql.outputs[1:]], {},
                    dql.name, DOMAIN)
        ed.replace([dql], [grid], dql)
        for r in readers:
            ed.replace([r], [Node(r.op_type, [grid.outputs[0], r.inputs[1], "", *r.inputs[3:]], list(r.outputs),
                                  {**r.attrs, "a_grid": 1}, r.name, r.domain)], r)


# ------------------------------------------------------------ QOperator files

MS = "com.microsoft"


def _float_like(types: GraphTypes, name: str, like: str) -> str:
    """Record `name` as a float32 tensor of `like`'s shape, so the QDQ rules below read its type."""
    t = types.types.get(like)
    types.types[name] = TensorType(dtypes.FLOAT, t.shape if isinstance(t, TensorType) else None)
    return name


def _present(node: Node, i: int) -> str:
    return node.inputs[i] if i < len(node.inputs) else ""


def _dequantized(ed: GraphEditor, types: GraphTypes, node: Node, x: int) -> Node:
    """DequantizeLinear of the QOperator node's input `x` with its scale and zero point (inputs x+1, x+2)."""
    params = [node.inputs[x + 1]] + ([node.inputs[x + 2]] if _present(node, x + 2) else [])
    out = _float_like(types, ed.fresh_name(node.inputs[x] + "_float"), node.inputs[x])
    return Node("DequantizeLinear", [node.inputs[x], *params], [out], {}, f"{node.name or out}_dq{x}", "")


def _channel_param(ed: GraphEditor, name: str, n: int, zero_point: bool = False) -> np.ndarray | None:
    """The constant float32 view of a per-tensor or per-channel (n values) scale or zero point (an absent
    zero point is 0)."""
    if not name:
        return np.zeros(1, np.float32) if zero_point else None
    c = ed.const(name)
    return None if c is None or c.size not in (1, n) else c.astype(np.float32).reshape(-1)


def _per_tensor_activations(ed: GraphEditor, node: Node, scales: Sequence[int]) -> bool:
    """Whether the activations' scales and zero points (inputs i, i + 1) are one-value float32 constants,
    and the last zero point is present (it gives the output its type)."""
    for i in scales:
        s = ed.const(_present(node, i))
        z = ed.const(_present(node, i + 1)) if _present(node, i + 1) else np.zeros(1, np.uint8)
        if s is None or s.dtype != np.float32 or s.size != 1 or z is None or z.size != 1:
            return False
    return bool(_present(node, scales[-1] + 1))


def _expanded(ed: GraphEditor, types: GraphTypes, node: Node, reads: Sequence[int], op_type: str,
              extra: Sequence[str], attrs: dict, y_scale: int) -> None:
    """Replace `node` by DequantizeLinear of each input in `reads` -> `op_type`(those, *extra) ->
    QuantizeLinear with the scale and zero point at inputs y_scale, y_scale + 1."""
    dqs = [_dequantized(ed, types, node, i) for i in reads]
    y = node.outputs[0]
    y_float = _float_like(types, ed.fresh_name(y + "_float"), y)
    body = Node(op_type, [dq.outputs[0] for dq in dqs] + list(extra), [y_float], attrs, node.name, "")
    q = Node("QuantizeLinear", [y_float, node.inputs[y_scale], node.inputs[y_scale + 1]], [y], {},
             f"{node.name or y}_q", "")
    ed.replace([node], [*dqs, body, q], node)


def _expand_qlinear_conv(ed: GraphEditor, types: GraphTypes, node: Node) -> None:
    """QLinearConv(x, sx, zx, w, sw, zw, sy, zy[, B]) with constant w, sw, zw, B -> DequantizeLinear(x)
    -> Conv((w - zw) sw, B sx sw) -> QuantizeLinear(y)."""
    w = ed.const(node.inputs[3])
    bias = ed.const(_present(node, 8)) if _present(node, 8) else None
    if w is None or w.ndim < 3 or (_present(node, 8) and (bias is None or bias.shape != (w.shape[0],))):
        return
    sw, zw = _channel_param(ed, node.inputs[4], w.shape[0]), _channel_param(ed, _present(node, 5), w.shape[0], True)
    if sw is None or zw is None or not _per_tensor_activations(ed, node, (1, 6)):
        return
    channel = (-1,) + (1,) * (w.ndim - 1)
    w_float = (w.astype(np.float32) - zw.reshape(channel)) * sw.reshape(channel)
    extra = [ed.add_const(node.inputs[3] + "_float", w_float.astype(np.float32))]
    if bias is not None:
        sx = ed.const(node.inputs[1]).astype(np.float32).reshape(-1)  # type: ignore[union-attr]
        extra.append(ed.add_const(node.inputs[8] + "_float", (bias.astype(np.float32) * (sx * sw)).astype(np.float32)))
    _expanded(ed, types, node, [0], "Conv", extra, dict(node.attrs), 6)


def _expand_qgemm(ed: GraphEditor, types: GraphTypes, node: Node) -> None:
    """QGemm(A, sa, za, B, sb, zb, C, sy, zy) with constant B, sb, zb, C, A untransposed, beta 1 and a
    quantised output -> DequantizeLinear(A) -> Gemm(alpha (B - zb) sb, alpha sa sb C) -> QuantizeLinear(Y)."""
    b = ed.const(node.inputs[3])
    trans_b = bool(node.attrs.get("transB", 0))
    if b is None or b.ndim != 2 or node.attrs.get("transA", 0) or node.attrs.get("beta", 1.0) != 1.0 \
            or not _present(node, 7):
        return
    n = b.shape[0] if trans_b else b.shape[1]
    c = ed.const(_present(node, 6)) if _present(node, 6) else None
    sb, zb = _channel_param(ed, node.inputs[4], n), _channel_param(ed, _present(node, 5), n, True)
    if sb is None or zb is None or (_present(node, 6) and (c is None or c.shape != (n,))) \
            or not _per_tensor_activations(ed, node, (1, 7)):
        return
    alpha = np.float32(node.attrs.get("alpha", 1.0))
    column = (-1, 1) if trans_b else (1, -1)
    b_float = (b.astype(np.float32) - zb.reshape(column)) * (sb * alpha).reshape(column)
    extra = [ed.add_const(node.inputs[3] + "_float", b_float.astype(np.float32))]
    if c is not None:
        sa = ed.const(node.inputs[1]).astype(np.float32).reshape(-1)  # type: ignore[union-attr]
        extra.append(ed.add_const(node.inputs[6] + "_float", (c.astype(np.float32) * (alpha * sa * sb)).astype(np.float32)))
    _expanded(ed, types, node, [0], "Gemm", extra, {"transB": 1} if trans_b else {}, 7)


def _expand_qlinear_matmul(ed: GraphEditor, types: GraphTypes, node: Node) -> None:
    """QLinearMatMul(a, sa, za, b, sb, zb, sy, zy) with a constant matrix b and its parameters per tensor or
    per column -> DequantizeLinear(a) -> MatMul((b - zb) sb) -> QuantizeLinear(y)."""
    b = ed.const(node.inputs[3])
    if b is None or b.ndim != 2:
        return
    sb, zb = _channel_param(ed, node.inputs[4], b.shape[1]), _channel_param(ed, node.inputs[5], b.shape[1], True)
    if sb is None or zb is None or not _per_tensor_activations(ed, node, (1, 6)):
        return
    b_float = ((b.astype(np.float32) - zb) * sb).astype(np.float32)
    _expanded(ed, types, node, [0], "MatMul", [ed.add_const(node.inputs[3] + "_float", b_float)], {}, 6)


def _expand_binary(op_type: str) -> Callable[[GraphEditor, GraphTypes, Node], None]:
    def expand(ed: GraphEditor, types: GraphTypes, node: Node) -> None:
        if _per_tensor_activations(ed, node, (1, 4, 6)):
            _expanded(ed, types, node, [0, 3], op_type, [], {}, 6)
    expand.__doc__ = f"QLinear{op_type}(A, ..., B, ..., C_scale, C_zero_point) -> DequantizeLinear of A and B -> " \
                     f"{op_type} -> QuantizeLinear(C)."
    return expand


def _expand_global_average_pool(ed: GraphEditor, types: GraphTypes, node: Node) -> None:
    """QLinearGlobalAveragePool (channels first) -> DequantizeLinear -> GlobalAveragePool -> QuantizeLinear."""
    if not node.attrs.get("channels_last", 0) and _per_tensor_activations(ed, node, (1, 3)):
        _expanded(ed, types, node, [0], "GlobalAveragePool", [], {}, 3)


#: The QOperator ops expand_qoperator rewrites, by (domain, op type): the rewrite and the inputs it indexes
#: up to (the op's required ones; a node with fewer is left to the op's own checks).
_QOPERATOR: dict[tuple[str, str], tuple[Callable[[GraphEditor, GraphTypes, Node], None], int]] = {
    ("", "QLinearConv"): (_expand_qlinear_conv, 8),
    ("", "QLinearMatMul"): (_expand_qlinear_matmul, 8),
    (MS, "QGemm"): (_expand_qgemm, 6),
    (MS, "QLinearAdd"): (_expand_binary("Add"), 7),
    (MS, "QLinearMul"): (_expand_binary("Mul"), 7),
    (MS, "QLinearGlobalAveragePool"): (_expand_global_average_pool, 5),
}


def expand_qoperator(ed: GraphEditor, types: GraphTypes) -> None:
    """The QOperator ops of onnxruntime's `quantize_static(quant_format=QOperator)` files -> their
    DequantizeLinear -> float op -> QuantizeLinear equivalents (the QDQ file of the same model), which
    the rules below then fuse as they fuse QDQ files.  Only nodes whose weights and parameters are
    constants, activations quantised per tensor, 8-bit, are rewritten.

    The float graph is what the QOperator ops approximate, not what onnxruntime's kernels compute bit
    for bit: they requantise an exact integer sum with one folded scale (QLinearConv, QGemm), or scale
    each operand by its ratio to the output scale (QLinearAdd), so an output whose value lies within
    float32 rounding of a half step may land one quantisation step away.  The op tests run the ops
    themselves (exact against onnxruntime); model tests bound the difference (one output quantum).
    QLinearSigmoid and QLinearLeakyRelu stay: their lookup tables are exact and already one pass.
    """
    for node in ed.nodes():
        expand, arity = _QOPERATOR.get((node.domain, node.op_type), (None, 0))
        if expand is not None and ed.alive(node) and len(node.outputs) == 1 and len(node.inputs) >= arity:
            expand(ed, types, node)


# ------------------------------------------------------------ static QDQ

def _scalar_param(ed: GraphEditor, node: Node, i: int) -> float | None:
    """The constant per-tensor scale or zero point at input i of a Q/DQ node (0 for an absent zero point)."""
    if i >= len(node.inputs) or not node.inputs[i]:
        return 0.0 if i == 2 else None
    c = ed.const(node.inputs[i])
    return None if c is None or c.size != 1 else float(c.reshape(-1)[0])


@dataclass(frozen=True)
class _Grid:
    """A fused conv's output on the integer grid: `name` holds q - zero_point as float32 integers."""

    name: str
    scale: float
    zero_point: float
    #: The QuantizeLinear(grid, 1, zero_point) giving the quantised tensor to readers the fusion did not take.
    requant: Node


def _product_operands(ed: GraphEditor, node: Node) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The constant float32 weight and bias (None: no bias) of a Conv, MatMul or Gemm the QDQ fusion
    can rewrite, else None: a plain Conv (fused extras make a webinfer.FusedConv), MatMul by a constant
    matrix, Gemm with alpha = beta = 1, A untransposed and a constant vector bias."""
    if not (_is(node, "Conv") or _is(node, "MatMul") or _is(node, "Gemm")) or len(node.outputs) != 1:
        return None
    w = ed.const(node.inputs[1]) if len(node.inputs) > 1 else None
    bias_name = node.inputs[2] if len(node.inputs) > 2 else ""
    bias = ed.const(bias_name) if bias_name else None
    if w is None or w.dtype != np.float32 or (bias_name and (bias is None or bias.dtype != np.float32)):
        return None
    if node.op_type == "MatMul" and w.ndim != 2:
        return None
    if node.op_type == "Gemm":
        n = w.shape[0] if node.attrs.get("transB", 0) else w.shape[1]
        if node.attrs.get("transA", 0) or node.attrs.get("alpha", 1.0) != 1.0 or node.attrs.get("beta", 1.0) != 1.0 \
                or (bias is not None and bias.shape != (n,)):
            return None
    return w, bias


def _grid_product(node: Node, x_grid: str, w_name: str, b_name: str, out: str, lo: float, hi: float) -> Node:
    """The rewritten product: a webinfer.FusedConv (the Conv's attributes) or webinfer.FusedMatMul, with the
    QuantizeGrid activation."""
    act = {"activation": "QuantizeGrid", "activation_min": lo, "activation_max": hi}
    if node.op_type == "Conv":
        return Node("FusedConv", [x_grid, w_name, b_name], [out], {**node.attrs, **act}, node.name, DOMAIN)
    trans = {"transB": node.attrs["transB"]} if node.attrs.get("transB", 0) else {}
    return Node("FusedMatMul", [x_grid, w_name, b_name], [out], {**trans, **act}, node.name, DOMAIN)


def fuse_qdq_products(ed: GraphEditor, types: GraphTypes) -> None:
    """DequantizeLinear(x) -> Conv / MatMul / Gemm (constant float W[, B]) -> QuantizeLinear(y), per-tensor
    x and y parameters, 8-bit types -> the product computing y's grid values (q - y_zero_point, float32
    integers) from x's (module docstring); a MatMul or Gemm becomes a webinfer.FusedMatMul.  A product
    whose input is another fused product's quantised output, read with that output's own scale and
    zero point, takes the other's grid values directly; any other input is shifted by
    DequantizeLinear(x, 1, x_zero_point).  Other DequantizeLinear readers of a fused product's output
    (a residual Add's) become grid * scale; the quantised output is still made, by
    QuantizeLinear(grid, 1, y_zero_point), where something else reads it."""
    grids: dict[str, _Grid] = {}
    for conv in ed.nodes():
        operands = _product_operands(ed, conv) if ed.alive(conv) else None
        if operands is None:
            continue
        w, bias = operands
        dq = ed.producer(conv.inputs[0])
        q = ed.sole_reader(conv.outputs[0])
        if not _is(dq, "DequantizeLinear") or not _is(q, "QuantizeLinear"):
            continue
        x_code, y_code = _elem(types, dq.inputs[0]), _elem(types, q.outputs[0])
        sx, zx, sy, zy = (_scalar_param(ed, dq, 1), _scalar_param(ed, dq, 2), _scalar_param(ed, q, 1),
                          _scalar_param(ed, q, 2))
        if x_code not in (dtypes.UINT8, dtypes.INT8) or y_code not in (dtypes.UINT8, dtypes.INT8) \
                or sx is None or zx is None or sy is None or zy is None or not sy or q.attrs.get("saturate", 1) != 1 \
                or q.attrs.get("output_dtype", 0) or dq.attrs.get("output_dtype", 0):
            continue
        base = conv.name or conv.outputs[0]
        one = ed.add_const(base + "_unit_scale", np.array(1.0, np.float32))
        added: list[Node] = []
        source = grids.get(dq.inputs[0])
        if source is not None and (source.scale, source.zero_point) == (sx, zx):
            x_grid = source.name
        else:
            shift = Node("DequantizeLinear", [dq.inputs[0], one] + ([dq.inputs[2]] if len(dq.inputs) > 2 else []),
                         [ed.fresh_name(conv.inputs[0] + "_grid")], {}, (dq.name or "dq") + "_grid", "")
            added.append(shift)
            x_grid = shift.outputs[0]
        n = w.shape[0] if conv.op_type == "Conv" or conv.attrs.get("transB", 0) else w.shape[1]
        b = bias if bias is not None else np.zeros(n, np.float32)
        lo, hi = INT_RANGES[y_code]
        fused = _grid_product(conv, x_grid, ed.add_const(conv.inputs[1] + "_grid", w * (np.float32(sx) / np.float32(sy))),
                              ed.add_const(base + "_grid_bias", (b / np.float32(sy)).astype(np.float32)),
                              ed.fresh_name(conv.outputs[0] + "_grid"), lo - zy, hi - zy)
        requant = Node("QuantizeLinear", [fused.outputs[0], one] + q.inputs[2:3], list(q.outputs), {},
                       (q.name or "q") + "_grid", "")
        added += [fused, requant]
        remove = [conv, q] + ([dq] if ed.sole_reader(dq.outputs[0]) is conv else [])
        ed.replace(remove, added, conv)
        grids[q.outputs[0]] = _Grid(fused.outputs[0], sy, zy, requant)
    for grid in grids.values():
        for dq in ed.readers(grid.requant.outputs[0]):
            if _is(dq, "DequantizeLinear") and dq.inputs[0] == grid.requant.outputs[0] \
                    and (_scalar_param(ed, dq, 1), _scalar_param(ed, dq, 2)) == (grid.scale, grid.zero_point):
                # (q - zero_point) * scale is grid * scale: the same float32 product, one pass instead of two
                mul = Node("Mul", [grid.name, dq.inputs[1]], list(dq.outputs), {}, (dq.name or "dq") + "_grid", "")
                ed.replace([dq], [mul], dq)
        if not ed.is_read(grid.requant.outputs[0]):
            ed.replace([grid.requant], [], grid.requant)


def quantize_to_grid(ed: GraphEditor, types: GraphTypes) -> None:
    """QuantizeLinear(x, s, z) whose quantised output only DequantizeLinear nodes read, each either with
    scale 1 and zero point z (the shifts fuse_qdq_products made: they want q - z) or with s and z (they
    want (q - z) * s) -> one webinfer.QuantizeToGrid(x, s, z) giving q - z as float32, which the
    shifts' readers take directly and the others as grid * s.  The same numbers, without the integer
    storage and its conversions between."""
    for q in ed.nodes():
        if not ed.alive(q) or not _is(q, "QuantizeLinear") or len(q.inputs) < 3 or q.attrs.get("axis", 1) != 1 \
                or q.attrs.get("saturate", 1) != 1 or q.attrs.get("output_dtype", 0) or "block_size" in q.attrs:
            continue
        t = q.outputs[0]
        s, z = _scalar_param(ed, q, 1), _scalar_param(ed, q, 2)
        if s is None or z is None or _elem(types, q.inputs[0]) != dtypes.FLOAT \
                or _elem(types, q.inputs[1]) != dtypes.FLOAT or _elem(types, t) not in (dtypes.UINT8, dtypes.INT8) \
                or t in ed.outputs:
            continue
        readers = ed.readers(t)
        kinds = [_dq_kind(ed, dq, t, s, z) for dq in readers]
        if not readers or None in kinds:
            continue
        grid = Node("QuantizeToGrid", list(q.inputs[:3]), [ed.fresh_name(t + "_grid")], {}, q.name, DOMAIN)
        ed.replace([q], [grid], q)
        for dq, kind in zip(readers, kinds):
            if kind == "shift":
                _rename_readers(ed, dq.outputs[0], grid.outputs[0])
                ed.replace([dq], [], dq)
            else:
                ed.replace([dq], [Node("Mul", [grid.outputs[0], dq.inputs[1]], list(dq.outputs), {},
                                       (dq.name or "dq") + "_grid", "")], dq)


def _dq_kind(ed: GraphEditor, dq: Node, t: str, s: float, z: float) -> str | None:
    """'shift' for DequantizeLinear(t, 1, z) whose output is no graph output, 'scale' for
    DequantizeLinear(t, s, z), None for any other reader of t."""
    if not _is(dq, "DequantizeLinear") or dq.inputs[0] != t or dq.attrs.get("axis", 1) != 1:
        return None
    params = (_scalar_param(ed, dq, 1), _scalar_param(ed, dq, 2))
    if params == (1.0, z) and dq.outputs[0] not in ed.outputs:
        return "shift"
    return "scale" if params == (s, z) else None


def _rename_readers(ed: GraphEditor, old: str, new: str) -> None:
    """Every node reading `old` reads `new` instead (replaced by a copy, so the editor's index follows)."""
    for node in ed.readers(old):
        copy = Node(node.op_type, [new if i == old else i for i in node.inputs], list(node.outputs),
                    dict(node.attrs), node.name, node.domain)
        ed.replace([node], [copy], node)


#: The activations QuantizeGridThen is built around (activations.py), by op type.
_THEN_ATTR, _THEN = COMPOSITIONS["QuantizeGridThen"]


def fuse_grid_activation(ed: GraphEditor, types: GraphTypes) -> None:
    """A product with the QuantizeGrid activation -> Mul(constant scale) -> HardSwish / HardSigmoid / Relu
    -> webinfer.QuantizeToGrid (the rewritten Q -> DQ -> activation -> Q of a QDQ graph) -> the product
    with the QuantizeGridThen activation doing the whole chain on its output block, in cache, with the
    same roundings (activations.py: a row built around the activation's row); with anything else after
    the Mul (or after the activation), the product's QuantizeGridScaled activation does the multiply."""
    for prod in ed.nodes():
        if not ed.alive(prod) or prod.attrs.get("activation") != "QuantizeGrid" or len(prod.outputs) != 1:
            continue
        mul = ed.sole_reader(prod.outputs[0])
        if not _is(mul, "Mul"):
            continue
        scale_name = _other(mul, prod.outputs[0])
        scale = ed.const(scale_name or "")
        if scale is None or scale.size != 1 or scale.dtype != np.float32:
            continue
        act = ed.sole_reader(mul.outputs[0])
        spec = BY_SOURCE.get((act.domain, act.op_type)) if act is not None else None
        then = act is not None and spec is not None and spec.name in _THEN and act.inputs[0] == mul.outputs[0]
        grid = ed.sole_reader(act.outputs[0]) if then else None  # type: ignore[union-attr]
        if act is None or spec is None or grid is None or grid.domain != DOMAIN or grid.op_type != "QuantizeToGrid" \
                or grid.inputs[0] != act.outputs[0]:
            # the real values themselves are read (a residual Add; an activation whose float output a
            # QOperator file's float GlobalAveragePool also reads): scale them in the product's epilogue
            attrs = {**prod.attrs, "activation": "QuantizeGridScaled", "activation_scale": float(scale.reshape(-1)[0])}
            ed.replace([prod, mul], [Node(prod.op_type, list(prod.inputs), list(mul.outputs), attrs, prod.name,
                                          prod.domain)], prod)
            continue
        out_scale, z = ed.const(grid.inputs[1]), _scalar_param(ed, grid, 2)
        code = _elem(types, grid.inputs[2])
        if out_scale is None or out_scale.size != 1 or z is None or code not in INT_RANGES:
            continue
        lo, hi = INT_RANGES[code]
        values = source_params(spec, act.attrs)
        if values is None:
            continue
        params = {PARAM_PREFIX + k: v for k, v in values.items()}
        attrs = {**prod.attrs, "activation": "QuantizeGridThen", "activation_scale": float(scale.reshape(-1)[0]),
                 PARAM_PREFIX + _THEN_ATTR: spec.name, **params,
                 "activation_out_scale": float(out_scale.reshape(-1)[0]), "activation_out_min": lo - z,
                 "activation_out_max": hi - z}
        fused = Node(prod.op_type, list(prod.inputs), list(grid.outputs), attrs, prod.name, prod.domain)
        ed.replace([prod, mul, act, grid], [fused], prod)


RULES = [expand_qoperator, fuse_dynamic_matmul, dynamic_quantize_to_grid, fuse_qdq_products, quantize_to_grid,
         fuse_grid_activation]
#: Every rule starts from one of these ops, by (domain, op type) (fuse_grid_activation from the products
#: the others make).
TRIGGERS = {("", "MatMulInteger"), ("", "DynamicQuantizeLinear"), ("", "QuantizeLinear"), *_QOPERATOR}


def fuse_quantized(graph: Graph, types: GraphTypes) -> tuple[Graph, dict[str, int]]:
    """Apply every rule in turn, on one editor (linear time); also returns the opset imports the
    fused nodes need (the webinfer domain, when a rule made one of its ops).  A graph without any of
    the TRIGGERS (a float model) is left alone before the editor is built: that took a tenth of
    PP-OCR det's load in Pyodide, for nothing."""
    if any((n.domain, n.op_type) in TRIGGERS for n in graph.nodes):
        editor = GraphEditor(graph)
        for rule in RULES:
            rule(editor, types)
        graph.nodes = editor.nodes()
    return graph, ({DOMAIN: 1} if any(n.domain == DOMAIN for n in graph.nodes) else {})
