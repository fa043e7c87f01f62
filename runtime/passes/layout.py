"""Layout: sink Transposes through layout-agnostic ops and cancel the pairs that meet.

Graphs from NHWC formats (TFLite, TF exports) reach webinfer with a
Transpose to NCHW before every conv or pool and one back after it.  Between
two such islands sit only ops that do not care about axis order
(elementwise ops, Concat, Pad, ReduceMean...): moving the Transpose below
such an op (the op then runs on the untransposed tensor, constants and axis
attributes remapped) lets it meet the next island's inverse Transpose, and
the pair cancels.  What is left are Transposes at the graph's edges and
before ops that read memory order (Reshape, Flatten).

The rewrite is exact (data movement only).  It works on a GraphEditor, so
one sweep costs time linear in the graph.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from .editor import GraphEditor

#: One-input ops whose output at each position depends only on the input at that position.
UNARY = {"Relu", "Sigmoid", "Tanh", "HardSwish", "HardSigmoid", "LeakyRelu", "Elu", "Selu", "Exp", "Log",
         "Sqrt", "Reciprocal", "Neg", "Abs", "Floor", "Ceil", "Round", "Erf", "Softplus", "Sin", "Cos",
         "Gelu", "Identity", "Cast"}
#: Per-tensor (de)quantisation (scale and zero point scalars): elementwise too.  A per-axis one is not moved.
QUANTIZE = {"QuantizeLinear", "DequantizeLinear"}
#: Ops broadcasting all their inputs elementwise (Clip's bounds are scalars, PRelu's slope broadcasts).
BROADCAST = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "PRelu", "Clip", "Sum", "Mean", "Where"}


def sink_transposes(graph: Graph) -> Graph:
    """Move Transposes below layout-agnostic ops and fold Transpose chains (cancelling inverses).

    A graph without a Transpose (most CNN exports) is returned before the editor is built: the pass runs
    on every graph at load, as `fuse_quantized` does with its triggers.
    """
    if not any(n.op_type == "Transpose" for n in graph.nodes):
        return graph
    editor = GraphEditor(graph)
    for _ in range(8):
        changed = False
        for node in editor.nodes():
            if not editor.alive(node) or node.domain not in ("", "ai.onnx"):
                continue
            if node.op_type == "Transpose":
                changed |= _fold_chain(editor, node)
            else:
                changed |= _sink(editor, node)
        if not changed:
            break
    graph.nodes = editor.nodes()
    return graph


def _perm(node: Node | None) -> list[int] | None:
    if node is None or node.op_type != "Transpose" or node.domain not in ("", "ai.onnx"):
        return None
    perm = node.attrs.get("perm")
    return list(perm) if isinstance(perm, list) else None


def _fold_chain(editor: GraphEditor, node: Node) -> bool:
    """Transpose(Transpose(x, P), Q) -> Transpose(x, P[Q]), or x itself when that is the identity."""
    outer = _perm(node)
    inner_node = editor.producer(node.inputs[0]) if node.inputs else None
    inner = _perm(inner_node)
    if outer is None or inner is None or len(inner) != len(outer):
        return False
    assert inner_node is not None
    composed = [inner[q] for q in outer]
    if composed == list(range(len(composed))):
        new = Node("Identity", [inner_node.inputs[0]], list(node.outputs), {}, node.name)
    else:
        new = Node("Transpose", [inner_node.inputs[0]], list(node.outputs), {"perm": composed}, node.name)
    editor.replace([node], [new], at=node)
    return True


def _sink(editor: GraphEditor, node: Node) -> bool:
    """Rewrite `op(Transpose(x, P), ...)` as `Transpose(op(x, ...), P)` where `op` allows it."""
    if len(node.outputs) != 1 or not node.inputs:
        return False
    perm: list[int] | None = None
    sources: list[str] = []
    for name in node.inputs:
        p = _perm(editor.producer(name)) if name else None
        if p is not None:
            if perm is not None and p != perm:
                return False
            perm = p
    if perm is None:
        return False
    rank = len(perm)
    inverse = list(np.argsort(perm))
    attrs = dict(node.attrs)
    op = node.op_type
    if op in UNARY or op in BROADCAST:
        for name in node.inputs:
            producer = editor.producer(name) if name else None
            if not name:
                sources.append(name)
            elif _perm(producer) == perm:
                assert producer is not None
                sources.append(producer.inputs[0])
            else:
                c = editor.const(name)
                if c is None or c.ndim > rank:
                    return False
                if c.size == 1 or c.ndim == 0:
                    sources.append(name)
                else:
                    full = c.reshape((1,) * (rank - c.ndim) + c.shape)
                    sources.append(editor.add_const(f"{name}_transposed", np.ascontiguousarray(
                        full.transpose(inverse))))
    elif op in QUANTIZE:
        producer = editor.producer(node.inputs[0])
        scalars = all((c := editor.const(n)) is not None and c.size == 1 for n in node.inputs[1:] if n)
        if _perm(producer) != perm or not scalars:
            return False
        assert producer is not None
        sources = [producer.inputs[0], *node.inputs[1:]]
    elif op == "Concat":
        if not all(_perm(editor.producer(n)) == perm for n in node.inputs):
            return False
        sources = [editor.producer(n).inputs[0] for n in node.inputs]  # type: ignore[union-attr]
        axis = int(attrs.get("axis", 0))
        attrs["axis"] = perm[axis + rank if axis < 0 else axis]
    elif op in ("ReduceMean", "ReduceMax", "ReduceMin") and len(node.inputs) == 1:
        axes = attrs.get("axes")
        if not isinstance(axes, list) or int(attrs.get("keepdims", 1)) != 1:
            return False
        sources = [editor.producer(node.inputs[0]).inputs[0]]  # type: ignore[union-attr]
        attrs["axes"] = sorted(perm[a + rank if a < 0 else a] for a in axes)
    elif op == "Pad":
        pads = editor.const(node.inputs[1]) if len(node.inputs) > 1 else None
        if (_perm(editor.producer(node.inputs[0])) != perm or pads is None or pads.size != 2 * rank
                or len(node.inputs) > 3 or attrs.get("mode", "constant") != "constant"
                or any(_perm(editor.producer(n)) is not None for n in node.inputs[1:] if n)):
            return False
        pads = pads.astype(np.int64).reshape(2, rank)
        moved = np.zeros_like(pads)
        moved[:, perm] = pads
        sources = [editor.producer(node.inputs[0]).inputs[0],  # type: ignore[union-attr]
                   editor.add_const(f"{node.inputs[1]}_transposed", moved.reshape(-1)), *node.inputs[2:]]
    else:
        return False
    inner = editor.fresh_name(f"{node.outputs[0]}_untransposed")
    moved_node = Node(op, sources, [inner], attrs, node.name, node.domain)
    transpose = Node("Transpose", [inner], list(node.outputs), {"perm": perm}, f"{node.name}_transpose")
    editor.replace([node], [moved_node, transpose], at=node)
    return True
