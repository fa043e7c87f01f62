"""Graph -> Graph rewrites, each testable alone: inline, fold, layout, cleanup, fuse."""

from __future__ import annotations

from typing import Callable

from ..ir import Graph
from ..ops.registry import Kernel, OpContext, OpDef, Registry
from ..shapes import GraphTypes
from .cleanup import remove_dead, remove_identities
from .float16 import compute_in_float32, has_float16
from .fold import fold_constants
from .fuse import fuse
from .layout import sink_transposes
from .quant_fusion import fuse_quantized

#: onnxruntime's optimization levels where webinfer's rewrites start: folding and cleanup, then fusion.
BASIC, EXTENDED = 1, 2


def optimize(graph: Graph, level: int, opsets: dict[str, int], registry: Registry, types: GraphTypes,
             build: Callable[[OpDef, OpContext], Kernel | None],
             infer: Callable[[Graph, dict[str, int]], GraphTypes]) -> tuple[Graph, GraphTypes, dict[str, int]]:
    """The rewrites of `level` (onnxruntime's numbering) on `graph`, with its types inferred afresh.

    One sequence for the main graph and for every subgraph (If branches,
    Loop/Scan bodies), so a body run once per call is as lean as the graph
    holding it.  `build` makes the CPU kernels folding runs; `infer` types
    the rewritten graph under the opsets it is given (a subgraph's with its
    enclosing scope).  Also returns the opsets the rewritten graph needs:
    `opsets` plus the domain of any fused op, in a new dict, so the caller's
    (the model's) stay as the file declared them.
    """
    if level < BASIC:
        return graph, types, opsets
    if has_float16(graph):
        graph = compute_in_float32(graph, types)
        types = infer(graph, opsets)
    graph = fold_constants(graph, opsets, registry, types, build)
    graph = remove_dead(remove_identities(sink_transposes(graph)))
    if level >= EXTENDED and any(o not in types.types for n in graph.nodes for o in n.outputs if o):
        types = infer(graph, opsets)  # the layout pass named new values; fusion rules read their shapes
    if level >= EXTENDED:
        graph, added = fuse(graph, types)
        graph, added_quantized = fuse_quantized(graph, types)
        opsets = {**added, **added_quantized, **opsets}
    return graph, infer(graph, opsets), opsets
