"""Fusion: rewrite the op sequences exporters emit into fewer, faster nodes.

Each rule matches a small pattern around one anchor node and only fires when
the intermediate values have no other reader and are not graph outputs, so
the rewrite is invisible from outside.  A rule visits the nodes of the graph
as they stood when it started, once, asking a `GraphEditor` (editor.py) who
produces and reads each value; the editor keeps that index current per
rewrite, so a pass costs time linear in the graph.  Rules:

- Conv + BatchNormalization (constant statistics) -> Conv with folded weights
- Conv + Mul/Add by per-channel constants -> Conv with folded weights
- x * Clip(x + 3, 0, 6) / 6 (exporters' hard-swish) -> webinfer.HardSwish
- activation -> MaxPool -> MaxPool -> activation, for piecewise-linear
  non-decreasing activations: the max commutes with them exactly, and
  the activation then runs on the pooled tensor (a CNN stem: 4x fewer cells)
- Conv + Add(residual of the same shape) -> webinfer.FusedConv with the
  residual as 4th input
- Conv + activation (any of activations.py's table) -> webinfer.FusedConv
  with `activation*` attributes, applied on the output buffer
- x * 0.5 * (1 + erf(x / sqrt 2)) (exporters' GELU) -> webinfer.Gelu
- MatMul + Add(constant bias) [+ activation] -> webinfer.FusedMatMul
- the attention block MatMul(Q, K^T) -> Mul/Div(scale) -> Add(mask) -> Softmax ->
  MatMul(., V), with the head split/merge Reshape/Transpose around it ->
  webinfer.MultiHeadAttention on [batch, seq, heads*dim] tensors

Fused ops live in the "webinfer" domain, each beside its ONNX op in its family's module (ops/conv.py,
ops/matmul.py, ops/attention.py, ...); the activations they take are activations.py's table.
"""

from __future__ import annotations

import math
from typing import Any, Callable, TypeGuard

import numpy as np

from ..activations import BY_SOURCE, PARAM_PREFIX, source_params
from ..ir import Graph, Node, TensorType
from ..shapes import GraphTypes, SymInts
from .editor import GraphEditor

DOMAIN = "webinfer"


def _is(node: Node | None, op: str, domain: str = "") -> TypeGuard[Node]:
    return node is not None and node.op_type == op and node.domain == domain


def _is_conv(node: Node | None) -> bool:
    """A Conv, plain or already fused (webinfer.FusedConv)."""
    return _is(node, "Conv") or _is(node, "FusedConv", DOMAIN)


# ------------------------------------------------------------- Conv + BN

def fold_conv_batchnorm(ed: GraphEditor, types: GraphTypes) -> None:
    for conv in ed.nodes():
        if not ed.alive(conv) or not _is(conv, "Conv") or len(conv.outputs) != 1:
            continue
        bn = ed.sole_reader(conv.outputs[0])
        if not _is(bn, "BatchNormalization") or len(bn.outputs) != 1 or bn.attrs.get("training_mode", 0):
            continue
        w = ed.const(conv.inputs[1])
        b = ed.const(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else None
        stats = [ed.const(n) for n in bn.inputs[1:5]]
        if w is None or w.dtype != np.float32 or any(s is None for s in stats) or (len(conv.inputs) > 2
                                                                                   and conv.inputs[2] and b is None):
            continue
        scale, bias, mean, var = (s.astype(np.float64) for s in stats)  # type: ignore[union-attr]
        factor = scale / np.sqrt(var + bn.attrs.get("epsilon", 1e-5))
        new_w = (w.astype(np.float64) * factor.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
        new_b = ((b.astype(np.float64) if b is not None else 0.0) - mean) * factor + bias
        fused = Node("Conv", [conv.inputs[0], ed.add_const(conv.inputs[1] + "_bn", new_w),
                              ed.add_const((conv.name or "conv") + "_bn_bias", new_b.astype(np.float32))],
                     list(bn.outputs), dict(conv.attrs), conv.name, "")
        ed.replace([conv, bn], [fused], conv)


# --------------------------------------------------- Conv + constant affine

def _channel_vector(c: np.ndarray, channels: int, rank: int) -> np.ndarray | None:
    """A constant that broadcasts onto [N, C, ...] along C only, as a length-C vector."""
    if c.size == 1:
        return np.full(channels, float(c.reshape(-1)[0]))
    shape = list(c.shape)
    while shape and shape[0] == 1 and len(shape) > rank - 1:
        shape.pop(0)
    if len(shape) == rank - 1 and shape[0] == channels and all(d == 1 for d in shape[1:]):
        return c.reshape(-1).astype(np.float64)
    return None


def fold_conv_affine(ed: GraphEditor, types: GraphTypes) -> None:
    """Conv followed by Mul and/or Add with per-channel constants: fold into W and B.

    Exporters of "learnable affine" blocks (PP-LCNet, PP-OCR) emit these
    after every convolution.  A chain (Mul, then Add) folds one link per
    sweep, and each sweep after the first visits only the Convs the previous
    one made, in graph order: a Conv that did not fold cannot fold later,
    since no fold changes its reader or its constants.
    """
    candidates = ed.nodes()
    while candidates:
        made: list[Node] = []
        for conv in candidates:
            if not ed.alive(conv) or not _is(conv, "Conv") or "activation" in conv.attrs or len(conv.outputs) != 1:
                continue
            nxt = ed.sole_reader(conv.outputs[0])
            if not (_is(nxt, "Mul") or _is(nxt, "Add")):
                continue
            other = _other_input(nxt, conv.outputs[0])
            c = ed.const(other or "")
            w = ed.const(conv.inputs[1])
            t = types.types.get(conv.outputs[0])
            if c is None or w is None or w.dtype != np.float32 or not isinstance(t, TensorType) or t.rank is None:
                continue
            vec = _channel_vector(c, w.shape[0], t.rank)
            b = ed.const(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else None
            if vec is None or (len(conv.inputs) > 2 and conv.inputs[2] and b is None):
                continue
            bias = b.astype(np.float64) if b is not None else np.zeros(w.shape[0])
            if nxt.op_type == "Mul":
                w = (w.astype(np.float64) * vec.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
                bias = bias * vec
            else:
                bias = bias + vec
            inputs = [conv.inputs[0], ed.add_const(conv.inputs[1] + "_affine", w),
                      ed.add_const((conv.name or "conv") + "_affine_bias", bias.astype(np.float32))]
            fused = Node("Conv", inputs, list(nxt.outputs), dict(conv.attrs), conv.name, "")
            ed.replace([conv, nxt], [fused], conv)
            made.append(fused)
        candidates = made


# ------------------------------------------------------------ HardSwish

def fuse_hardswish(ed: GraphEditor, types: GraphTypes) -> None:
    """x * Clip(x + 3, 0, 6) / 6 (exporters' hard-swish) -> webinfer.HardSwish."""
    for clip in ed.nodes():
        if not ed.alive(clip) or not _is(clip, "Clip") or len(clip.inputs) < 3:
            continue
        if ed.scalar(clip.inputs[1]) != 0.0 or ed.scalar(clip.inputs[2]) != 6.0:
            continue
        add = ed.producer(clip.inputs[0])
        if not _is(add, "Add") or ed.sole_reader(add.outputs[0]) is not clip:
            continue
        x = next((i for i in add.inputs if ed.scalar(i) is None), None)
        if x is None or ed.scalar(_other_input(add, x) or "") != 3.0:
            continue
        mul = ed.sole_reader(clip.outputs[0])
        if not _is(mul, "Mul") or _other_input(mul, clip.outputs[0]) != x:
            continue
        last = ed.sole_reader(mul.outputs[0])
        if _is(last, "Div") and last.inputs[0] == mul.outputs[0] and ed.scalar(last.inputs[1]) == 6.0:
            pass
        elif _is(last, "Mul") and math.isclose(ed.scalar(_other_input(last, mul.outputs[0]) or "") or 0, 1 / 6,
                                               rel_tol=1e-6):
            pass
        else:
            continue
        fused = Node("HardSwish", [x], list(last.outputs), {}, clip.name or "hardswish", DOMAIN)
        ed.replace([add, clip, mul, last], [fused], add)


# ---------------------------------------------------- residual into Conv

def _same_shape(a: object, b: object) -> bool:
    return (isinstance(a, TensorType) and isinstance(b, TensorType) and a.shape is not None
            and a.shape == b.shape and all(d is not None for d in a.shape) and a.elem == b.elem)


def fuse_conv_residual(ed: GraphEditor, types: GraphTypes) -> None:
    """Conv -> Add(Z) with Z of the output's exact shape -> Conv with Z as 4th input.

    ResNet's shortcut: the add happens on the conv's fresh output while it
    is in cache, and a following Relu then fuses as the conv's activation.
    """
    for conv in ed.nodes():
        if (not ed.alive(conv) or not _is_conv(conv) or "activation" in conv.attrs or len(conv.inputs) > 3
                or len(conv.outputs) != 1):
            continue
        add = ed.sole_reader(conv.outputs[0])
        if not _is(add, "Add"):
            continue
        z = _other_input(add, conv.outputs[0])
        if not z or z == conv.outputs[0] or not _same_shape(types.types.get(z), types.types.get(conv.outputs[0])):
            continue
        inputs = list(conv.inputs) + [""] * (3 - len(conv.inputs)) + [z]
        fused = Node("FusedConv", inputs, list(add.outputs), dict(conv.attrs), conv.name, DOMAIN)
        ed.replace([conv, add], [fused], add)


# -------------------------------------------- activations after MaxPool

def _monotone_activation(act: Node, ed: GraphEditor) -> bool:
    """`act` is elementwise, piecewise linear and non-decreasing, so max(f(a), f(b)) == f(max(a, b))
    exactly in floating point (each piece rounds a monotone linear function)."""
    params = _source_params(act, ed)
    return params is not None and act.domain == "" and BY_SOURCE[("", act.op_type)].max_commutes(params)


def _pool_keeps_inside(pool: Node) -> bool:
    """Every window of `pool` holds at least one input cell, so its padding never reaches the output
    (an all-padding window would give -inf, and f(-inf) is not what MaxPool(f(x)) gives)."""
    kernel = pool.attrs.get("kernel_shape")
    if not kernel or pool.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") or pool.attrs.get("ceil_mode", 0):
        return False
    dil = pool.attrs.get("dilations") or [1] * len(kernel)
    pads = pool.attrs.get("pads") or [0] * (2 * len(kernel))
    return all(p <= (k - 1) * d for p, k, d in zip(pads, list(kernel) * 2, list(dil) * 2))


def pool_before_activation(ed: GraphEditor, types: GraphTypes) -> None:
    """activation -> MaxPool becomes MaxPool -> activation (see `_monotone_activation`).

    Exporters put ReLU before the pool (ResNet's stem: Conv, ReLU, 3x3/2
    MaxPool); after the swap the ReLU runs on a quarter of the cells, and
    the Conv's output is no longer rewritten in place for it.
    """
    for act in ed.nodes():
        if not ed.alive(act) or not _monotone_activation(act, ed):
            continue
        pool = ed.sole_reader(act.outputs[0])
        if (not _is(pool, "MaxPool") or not pool.outputs[0] or any(pool.outputs[1:])  # no Indices output
                or pool.inputs[0] != act.outputs[0] or not _pool_keeps_inside(pool)):
            continue
        pooled = ed.fresh_name(pool.outputs[0] + "_before_" + act.op_type)
        if pool.outputs[0] in types.types:
            types.types[pooled] = types.types[pool.outputs[0]]
        moved = [Node("MaxPool", [act.inputs[0]], [pooled], dict(pool.attrs), pool.name, ""),
                 Node(act.op_type, [pooled] + list(act.inputs[1:]), [pool.outputs[0]], dict(act.attrs), act.name,
                      act.domain)]
        ed.replace([act, pool], moved, pool)


# ------------------------------------------------------ activations into Conv

def _source_params(act: Node, ed: GraphEditor) -> dict[str, float] | None:
    """The parameters of `act` if it is an activation of the table (activations.py) it covers, with
    constant parameter inputs; else None."""
    spec = BY_SOURCE.get((act.domain, act.op_type))
    if spec is None or len(act.outputs) != 1 or not spec.covers(act.attrs):
        return None
    return source_params(spec, act.attrs, act.inputs[1:], ed.scalar)


def _activation_attrs(act: Node, ed: GraphEditor) -> dict[str, Any] | None:
    """The `activation*` attributes describing `act`, or None if it can't be fused."""
    params = _source_params(act, ed)
    if params is None:
        return None
    return {"activation": BY_SOURCE[(act.domain, act.op_type)].name,
            **{PARAM_PREFIX + k: v for k, v in params.items()}}


def fuse_conv_activation(ed: GraphEditor, types: GraphTypes) -> None:
    for conv in ed.nodes():
        if not ed.alive(conv) or not _is_conv(conv) or "activation" in conv.attrs:
            continue
        act = ed.sole_reader(conv.outputs[0])
        if act is None or len(act.outputs) != 1 or act.inputs[0] != conv.outputs[0]:
            continue
        attrs = _activation_attrs(act, ed)
        if attrs is None:
            continue
        fused = Node("FusedConv", list(conv.inputs), list(act.outputs), {**conv.attrs, **attrs}, conv.name, DOMAIN)
        ed.replace([conv, act], [fused], conv)


# ------------------------------------------------------------------- GELU

def _other_input(node: Node, name: str) -> str | None:
    if len(node.inputs) != 2:
        return None
    if node.inputs[0] == name:
        return node.inputs[1]
    if node.inputs[1] == name:
        return node.inputs[0]
    return None


def fuse_gelu(ed: GraphEditor, types: GraphTypes) -> None:
    """x/sqrt2 -> Erf -> +1 -> *x -> *0.5 (either multiplication order) -> webinfer.Gelu."""
    for div in ed.nodes():
        if not ed.alive(div) or not (_is(div, "Div") or _is(div, "Mul")) or len(div.inputs) != 2:
            continue
        x = div.inputs[0]
        k = ed.scalar(div.inputs[1])
        if k is None or not math.isclose(k, math.sqrt(2) if div.op_type == "Div" else 1 / math.sqrt(2), rel_tol=1e-3):
            continue
        erf = ed.sole_reader(div.outputs[0])
        if not _is(erf, "Erf"):
            continue
        add = ed.sole_reader(erf.outputs[0])
        if not _is(add, "Add") or ed.scalar(_other_input(add, erf.outputs[0]) or "") != 1.0:
            continue
        mul1 = ed.sole_reader(add.outputs[0])
        if not _is(mul1, "Mul"):
            continue
        other = _other_input(mul1, add.outputs[0])
        matched = [div, erf, add, mul1]
        if other == x:  # (x * (1 + erf)) * 0.5
            half = ed.sole_reader(mul1.outputs[0])
            if not _is(half, "Mul") or ed.scalar(_other_input(half, mul1.outputs[0]) or "") != 0.5:
                continue
            matched.append(half)
        else:  # (0.5 * x) * (1 + erf)
            pre = ed.producer(other or "")
            if not _is(pre, "Mul") or ed.scalar(_other_input(pre, x) or "") != 0.5 or ed.sole_reader(other or "") is None:
                continue
            matched.append(pre)
        out = matched[-1].outputs if other == x else mul1.outputs
        fused = Node("Gelu", [x], list(out), {}, div.name or "gelu", DOMAIN)
        ed.replace(matched, [fused], div)


# ------------------------------------------------------- MatMul + bias (+act)

def fuse_matmul_bias(ed: GraphEditor, types: GraphTypes) -> None:
    for mm in ed.nodes():
        if not ed.alive(mm) or not _is(mm, "MatMul"):
            continue
        b = ed.const(mm.inputs[1])
        t = types.types.get(mm.inputs[0])
        if b is None or b.ndim != 2 or b.dtype != np.float32 or not isinstance(t, TensorType) or t.rank is None \
                or t.rank < 2:
            continue
        matched, inputs, attrs = [mm], [mm.inputs[0], mm.inputs[1]], {}
        out = mm.outputs
        add = ed.sole_reader(mm.outputs[0])
        if _is(add, "Add"):
            bias_name = _other_input(add, mm.outputs[0])
            bias = ed.const(bias_name or "")
            if bias is not None and bias.dtype == np.float32 and bias.size == b.shape[1] and bias.ndim <= 1:
                matched.append(add)
                inputs.append(bias_name)  # type: ignore[arg-type]
                out = add.outputs
        act = ed.sole_reader(out[0])
        act_attrs = _activation_attrs(act, ed) if act is not None and act.inputs[0] == out[0] else None
        if act is not None and act_attrs is not None:
            attrs.update(act_attrs)
            matched.append(act)
            out = act.outputs
        if len(matched) == 1:
            continue
        fused = Node("FusedMatMul", inputs, list(out), attrs, mm.name, DOMAIN)
        ed.replace(matched, [fused], mm)


# -------------------------------------------------------------- attention

def _head_split(ed: GraphEditor, types: GraphTypes, name: str, perm: list[int]) -> tuple[str, list[Node], int] | None:
    """`name` = Transpose(perm)(Reshape(x3d, [b, s, heads, dim])): return (x3d, nodes, heads)."""
    tr = ed.producer(name)
    if not _is(tr, "Transpose") or tr.attrs.get("perm") != perm or ed.sole_reader(tr.outputs[0]) is None:
        return None
    rs = ed.producer(tr.inputs[0])
    if not _is(rs, "Reshape") or ed.sole_reader(rs.outputs[0]) is not tr:
        return None
    t_in = types.types.get(rs.inputs[0])
    if not isinstance(t_in, TensorType) or t_in.rank != 3 or not isinstance(t_in.shape[2], int):  # type: ignore[index]
        return None
    hidden = t_in.shape[2]  # type: ignore[index]
    target = _int_dims(types, rs.inputs[1])
    if target is None or len(target) != 4 or not isinstance(target[3], int) or target[3] <= 0:
        return None
    heads = target[2] if isinstance(target[2], int) and target[2] > 0 else hidden // target[3]
    if heads * target[3] != hidden:
        return None
    return rs.inputs[0], [tr, rs], heads


def _int_dims(types: GraphTypes, name: str) -> tuple | None:
    """A shape vector known at load (constant or symbolic), as a tuple of dims."""
    v = types.values.get(name)
    if isinstance(v, SymInts):
        return v.dims
    if isinstance(v, np.ndarray) and v.ndim == 1:
        return tuple(int(x) for x in v)
    return None


def fuse_attention(ed: GraphEditor, types: GraphTypes) -> None:
    """The exporters' attention block -> webinfer.MultiHeadAttention (see module docstring).

    Matched from the Softmax outwards: Q split with perm (0,2,1,3), K split
    straight to K^T with perm (0,2,3,1), V split with (0,2,1,3); after the
    second MatMul a (0,2,1,3) Transpose and a Reshape back to 3-D.
    """
    for sm in ed.nodes():
        if not ed.alive(sm) or not _is(sm, "Softmax") or sm.attrs.get("axis", -1) not in (-1, 3):
            continue
        matched = [sm]
        x, mask = sm.inputs[0], None
        add = ed.producer(x)
        if _is(add, "Add") and ed.sole_reader(x) is sm:
            scores_in = add.inputs[0]
            mask = add.inputs[1]
            if not (_is(ed.producer(scores_in), "Mul") or _is(ed.producer(scores_in), "Div")
                    or _is(ed.producer(scores_in), "MatMul")):
                scores_in, mask = mask, scores_in
            matched.append(add)
            x = scores_in
        scale = 1.0
        sc = ed.producer(x)
        if (_is(sc, "Mul") or _is(sc, "Div")) and ed.sole_reader(x) is not None:
            c = ed.scalar(sc.inputs[1])
            if c is None or c == 0:
                continue
            scale = c if sc.op_type == "Mul" else 1.0 / c
            matched.append(sc)
            x = sc.inputs[0]
        qk = ed.producer(x)
        if not _is(qk, "MatMul") or ed.sole_reader(x) is None:
            continue
        q = _head_split(ed, types, qk.inputs[0], [0, 2, 1, 3])
        k = _head_split(ed, types, qk.inputs[1], [0, 2, 3, 1])
        pv = ed.sole_reader(sm.outputs[0])
        if q is None or k is None or not _is(pv, "MatMul") or pv.inputs[0] != sm.outputs[0]:
            continue
        v = _head_split(ed, types, pv.inputs[1], [0, 2, 1, 3])
        merge = ed.sole_reader(pv.outputs[0])
        if v is None or not _is(merge, "Transpose") or merge.attrs.get("perm") != [0, 2, 1, 3]:
            continue
        out = ed.sole_reader(merge.outputs[0])
        t_out = types.types.get(out.outputs[0]) if out is not None else None
        if not _is(out, "Reshape") or not isinstance(t_out, TensorType) or t_out.rank != 3:
            continue
        if not q[2] == k[2] == v[2]:
            continue
        matched += [qk, pv, merge, out, *q[1], *k[1], *v[1]]
        inputs = [q[0], k[0], v[0]] + ([mask] if mask else [])
        fused = Node("MultiHeadAttention", inputs, list(out.outputs), {"num_heads": q[2], "scale": scale},
                     qk.name or "attention", DOMAIN)
        ed.replace(matched, [fused], out)

RULES: list[Callable[[GraphEditor, GraphTypes], None]] = [
    fold_conv_batchnorm, fold_conv_affine, fuse_hardswish, pool_before_activation, fuse_conv_residual,
    fuse_conv_activation, fuse_gelu,
    fuse_matmul_bias,
    fuse_attention,
]


def fuse(graph: Graph, types: GraphTypes) -> tuple[Graph, dict[str, int]]:
    """Apply every rule in turn, all on one editor, so the whole pass costs linear time.

    Returns the graph and the opset imports its fused nodes need (the webinfer
    domain, when a rule made one of its ops) for the caller to add to its own:
    the model's opsets stay as the file declared them.
    """
    editor = GraphEditor(graph)
    for rule in RULES:
        rule(editor, types)
    graph.nodes = editor.nodes()
    return graph, ({DOMAIN: 1} if any(n.domain == DOMAIN for n in graph.nodes) else {})
