"""Float16 models on the CPU: compute in float32, with the weights converted once at load (issue 12).

numpy has no float16 BLAS and runs float16 elementwise ops through
float32 conversions per op, so a float16 graph run as written costs 2-3x
its float32 original, and the float fusions (MatMul + bias, GELU) that
take float32 constants do not fire.  This pass rewrites such a graph to
float32: float16 initializers and constant attributes become float32,
casts and dtype attributes naming float16 name float32, float16 graph
inputs are cast to float32 on entry and float16 outputs back on exit, so
callers see the declared types.  Float32 is at least as precise as every
float16 step it replaces, so results stay within float16's tolerance of
onnxruntime's (which computes some float16 ops in float16 and others in
float32).  Graphs with subgraphs (If, Loop, Scan) are left as they are.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .. import dtypes
from ..ir import Graph, Node, Tensor, TensorType, ValueInfo, node_subgraphs
from ..shapes import GraphTypes

#: Attributes that name an element type.
_TYPE_ATTRS = ("to", "dtype", "output_dtype")


def has_float16(graph: Graph) -> bool:
    """Whether the graph holds float16 weights (initializers of rank >= 2: matrices, filters): a
    float16 model.  Graphs that merely take or make float16 tensors, or hold a float16 scalar or
    vector (a Cast, a quantisation scale, an op's float16 test), keep their float16 steps."""
    return any(t.elem == dtypes.FLOAT16 and t.array.ndim >= 2 for t in graph.initializers.values())


def _widened_info(v: ValueInfo) -> ValueInfo:
    """A declared float16 tensor type as float32, same shape; any other declaration as it is."""
    if isinstance(v.type, TensorType) and v.type.elem == dtypes.FLOAT16:
        return replace(v, type=TensorType(dtypes.FLOAT, v.type.shape))
    return v


def _widen(t: Tensor) -> Tensor:
    return Tensor(t.array.astype(np.float32), dtypes.FLOAT) if t.elem == dtypes.FLOAT16 else t


def _widen_attr(value: Any, name: str) -> Any:
    if isinstance(value, Tensor):
        return _widen(value)
    if name in _TYPE_ATTRS and value == dtypes.FLOAT16:
        return dtypes.FLOAT
    return value


def compute_in_float32(graph: Graph, types: GraphTypes) -> Graph:
    """`graph` computing in float32 where it computed in float16 (module docstring); a new Graph,
    the given one untouched.  `types`: the graph's inferred types, which tell the type of outputs the
    file leaves undeclared.  Unchanged when it holds subgraphs."""
    if any(node_subgraphs(n) for n in graph.nodes):
        return graph

    def half(v: ValueInfo) -> bool:
        t = v.type if isinstance(v.type, TensorType) and v.type.elem is not None else types.types.get(v.name)
        return isinstance(t, TensorType) and t.elem == dtypes.FLOAT16

    taken = graph.defined_names()

    def fresh(base: str) -> str:
        name, i = base + "_float32", 0
        while name in taken:
            i += 1
            name = f"{base}_float32_{i}"
        taken.add(name)
        return name

    # float16 inputs are read as float32 copies, float16 outputs written as float32 then cast back
    renamed = {v.name: fresh(v.name) for v in graph.inputs + graph.outputs if half(v)}
    entry = [Node("Cast", [v.name], [renamed[v.name]], {"to": dtypes.FLOAT}, v.name + "_to_float32", "")
             for v in graph.inputs if half(v)]
    exits = [Node("Cast", [renamed[v.name]], [v.name], {"to": dtypes.FLOAT16}, v.name + "_to_float16", "")
             for v in graph.outputs if half(v) and v.name not in {i.name for i in graph.inputs}]
    nodes = [Node(n.op_type, [renamed.get(i, i) for i in n.inputs], [renamed.get(o, o) for o in n.outputs],
                  {k: _widen_attr(v, k) for k, v in n.attrs.items()}, n.name, n.domain) for n in graph.nodes]
    value_info = {k: _widened_info(v) for k, v in graph.value_info.items()}
    fed = {v.name for v in graph.inputs}  # an initializer a feed may override keeps its declared type
    inits = {k if k in fed else renamed.get(k, k): t if k in fed else _widen(t) for k, t in graph.initializers.items()}
    return Graph(entry + nodes + exits, list(graph.inputs), list(graph.outputs), inits, value_info, graph.name,
                 graph.doc)
