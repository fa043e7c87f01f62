"""Constant folding: compute at load what does not depend on the feeds.

Two sources of constants: nodes whose inputs are all constants (run once on
the CPU kernel), and shape computations that inference resolved to exact
ints (Shape -> Gather -> Concat on static dims).  Both become initializers,
so the plan runs neither.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .. import dtypes
from ..errors import NodeExecutionError, describe_value
from ..ir import Graph, Node, Tensor, TensorType, node_subgraphs
from ..ops.registry import Kernel, OpContext, OpDef, Registry
from ..shapes import GraphTypes, SymInts

#: Don't materialise folded tensors bigger than this (ConstantOfShape of a huge
#: shape is cheaper to compute per run than to hold).
MAX_FOLD_BYTES = 64 << 20


def fold_constants(graph: Graph, opsets: dict[str, int], registry: Registry, types: GraphTypes,
                   build: Callable[[OpDef, OpContext], Kernel | None]) -> Graph:
    """Replace constant-only nodes by initializers. `build` makes the host device's kernel (a node it
    has none for stays)."""
    overridable = {v.name for v in graph.inputs}
    consts = {n: t.array for n, t in graph.initializers.items() if n not in overridable}
    kept: list[Node] = []
    for node in graph.topological_nodes():
        opset = opsets.get(node.domain, 0)
        opdef = registry.lookup(node, opset)
        outs = [o for o in node.outputs if o]
        if node_subgraphs(node) or not opdef.foldable or not outs:
            kept.append(node)
            continue
        values: Sequence[np.ndarray | None]
        known = [_known_value(types, o) for o in node.outputs]
        if all(k is not None for k, o in zip(known, node.outputs) if o):
            values = known
        elif all(not n or n in consts for n in node.inputs) and not _too_big(types, outs):
            ctx = OpContext(node, opset, [types.types.get(n) if n else None for n in node.inputs],
                            [types.types.get(n) if n else None for n in node.outputs],
                            [consts.get(n) for n in node.inputs])
            kernel = build(opdef, ctx)
            if kernel is None:
                kept.append(node)
                continue
            values = _evaluate(node, kernel, [consts[n] if n else None for n in node.inputs])
        else:
            kept.append(node)
            continue
        if not all(isinstance(v, np.ndarray) and v.nbytes <= MAX_FOLD_BYTES
                   for v, o in zip(values, node.outputs) if o):
            kept.append(node)
            continue
        for name, value in zip(node.outputs, values):
            if name and value is not None:  # every named output's is (checked above)
                consts[name] = value
                graph.initializers[name] = Tensor(value, _elem(types, name, value))
                types.values[name] = value
    graph.nodes = kept
    return graph


def _too_big(types: GraphTypes, names: list[str]) -> bool:
    """Whether inference already says an output exceeds MAX_FOLD_BYTES: checked before
    computing it, so a 100-byte ConstantOfShape cannot make the load allocate gigabytes."""
    for name in names:
        t = types.types.get(name)
        if isinstance(t, TensorType) and t.shape is not None and all(isinstance(d, int) for d in t.shape):
            itemsize = dtypes.storage_dtype(t.elem).itemsize if t.elem else 1
            if math.prod(t.shape) * itemsize > MAX_FOLD_BYTES:  # type: ignore[arg-type]
                return True
    return False


def _evaluate(node: Node, kernel: Kernel, args: list[np.ndarray | None]) -> list[np.ndarray]:
    """Run a kernel on constants; a failure is the model's fault and names the node."""
    try:
        return list(kernel(*args))
    except Exception as e:  # noqa: BLE001 - re-raised naming the node
        ins = ", ".join(f"{n or '-'}: {describe_value(a)}" for n, a in zip(node.inputs, args))
        raise NodeExecutionError(f"{node.label()} failed on its constant inputs ({ins}) while folding them "
                                 f"at load: {type(e).__name__}: {e}") from e


def _known_value(types: GraphTypes, name: str) -> np.ndarray | None:
    v = types.values.get(name)
    if isinstance(v, SymInts):
        arr = v.concrete()
        t = types.types.get(name)
        if arr is not None and isinstance(t, TensorType) and t.elem is not None:
            return arr.astype(dtypes.storage_dtype(t.elem))
        return None
    return v if isinstance(v, np.ndarray) else None


def _elem(types: GraphTypes, name: str, value: np.ndarray) -> int:
    t = types.types.get(name)
    if isinstance(t, TensorType) and t.elem is not None:
        return t.elem
    return dtypes.from_numpy(value.dtype)
