"""The declared input shapes a session checks feeds against and infers from.

Declared shapes come from exporters with their own habits, and onnxruntime
checks only fixed sizes against feeds.  Symbolic names are hints, not
constraints, so:

- free-dimension overrides (`SessionOptions.add_free_dimension_override_by_name`
  / `_by_denotation`) turn a symbolic dim into a size, checked at run;
- a name repeated inside one input's shape (Paddle's `?` on height and
  width, TF's `unk__`) is a placeholder, not a claim that the dims are
  equal: each occurrence becomes an unknown dim;
- `relaxed=True` makes every symbolic input dim unknown: the session plans
  this variant when feeds give one name two sizes across inputs, which
  onnxruntime accepts, so no shape rule can rely on the shared name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Mapping

from ..ir import Graph, TensorType, ValueInfo


def _input_dims(v: ValueInfo, by_name: Mapping[str, int], by_denotation: Mapping[str, int],
                relaxed: bool) -> ValueInfo:
    t = v.type
    if not isinstance(t, TensorType) or t.shape is None:
        return v
    repeated = {d for d, k in Counter(d for d in t.shape if isinstance(d, str)).items() if k > 1}
    dims = []
    for axis, d in enumerate(t.shape):
        denotation = v.dim_denotations[axis] if axis < len(v.dim_denotations) else ""
        if not isinstance(d, int) and denotation in by_denotation:
            d = by_denotation[denotation]
        elif isinstance(d, str) and d in by_name:
            d = by_name[d]
        elif isinstance(d, str) and (relaxed or d in repeated):
            d = None
        dims.append(d)
    return replace(v, type=TensorType(t.elem, tuple(dims)))


def declared_inputs(graph: Graph, by_name: Mapping[str, int], by_denotation: Mapping[str, int]) -> list[ValueInfo]:
    """The inputs as `get_inputs()` reports them: declared names, with the overrides applied."""
    return [_input_dims(v, by_name, by_denotation, False) if _is_feed(graph, v) else v for v in graph.inputs]


def bind_input_dims(graph: Graph, by_name: Mapping[str, int], by_denotation: Mapping[str, int],
                    relaxed: bool = False) -> Graph:
    """`graph` with its input shapes as inference and feed checks take them (see the module doc)."""
    inputs = [_input_dims(v, by_name, by_denotation, relaxed) if _is_feed(graph, v) else v for v in graph.inputs]
    return replace(graph, inputs=inputs)


def _is_feed(graph: Graph, v: ValueInfo) -> bool:
    return v.name not in graph.initializers
