"""What a model is: interface, opsets, op histogram, parameters, estimated FLOPs.

Used by `webinfer info` and the demo page's graph view.  FLOPs are counted
for the ops that dominate inference (matrix products, convolutions,
attention) plus one per output element for the rest, on shapes inferred at
load with the symbolic dims the caller binds.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Callable

from . import dtypes
from .ir import Model, Node, TensorType, Type
from .loader import load_model
from .ops import REGISTRY
from .passes.inline import inline_functions
from .shapes import GraphTypes, infer_graph, is_static


def bind_dims(t: Type | None, dims: dict[str, int]) -> Type | None:
    """A tensor type with named symbolic dims replaced by the given sizes."""
    if isinstance(t, TensorType) and t.shape is not None:
        return TensorType(t.elem, tuple(dims.get(d, d) if isinstance(d, str) else d for d in t.shape))
    return t


def _numel(t: Type | None) -> int | None:
    if isinstance(t, TensorType) and is_static(t.shape):
        return math.prod(t.shape)  # type: ignore[arg-type]
    return None


def _shape(t: Type | None) -> tuple | None:
    return t.shape if isinstance(t, TensorType) and is_static(t.shape) else None


def _matmul_flops(node: Node, ins: list[Type | None], outs: list[Type | None]) -> int | None:
    a, out = _shape(ins[0]), _numel(outs[0])
    if a is None or out is None or not a:
        return None
    k = a[0] if node.op_type == "Gemm" and node.attrs.get("transA", 0) else a[-1]
    return 2 * out * k


def _conv_flops(node: Node, ins: list[Type | None], outs: list[Type | None]) -> int | None:
    w, out = _shape(ins[1]), _numel(outs[0])
    if w is None or out is None:
        return None
    return 2 * out * math.prod(w[1:])


def _conv_transpose_flops(node: Node, ins: list[Type | None], outs: list[Type | None]) -> int | None:
    x, w = _shape(ins[0]), _shape(ins[1])
    if x is None or w is None:
        return None
    return 2 * math.prod(x) * math.prod(w[1:])


def _attention_flops(node: Node, ins: list[Type | None], outs: list[Type | None]) -> int | None:
    q, k = _shape(ins[0]), _shape(ins[1])
    if q is None or k is None:
        return None
    if len(q) == 4:  # [B, H, S, D] x [B, Hkv, L, D]
        b, h, s, d = q
        return 4 * b * h * s * k[2] * d
    b, s, hidden = q  # 3-D: heads folded into the hidden size
    return 4 * b * s * k[1] * hidden


FLOP_RULES: dict[str, Callable[[Node, list, list], int | None]] = {
    "MatMul": _matmul_flops, "Gemm": _matmul_flops, "FusedMatMul": _matmul_flops,
    "Conv": _conv_flops, "FusedConv": _conv_flops, "ConvInteger": _conv_flops, "QLinearConv": _conv_flops,
    "ConvTranspose": _conv_transpose_flops, "Attention": _attention_flops,
}


def model_info(model: Model, dims: dict[str, int] | None = None) -> dict[str, Any]:
    """A JSON-ready summary of a model (see module docstring)."""
    dims = dims or {}
    model = inline_functions(model)
    graph = model.graph
    inputs = [v for v in graph.inputs if v.name not in graph.initializers]
    bound = {v.name: bind_dims(v.type, dims) for v in inputs}
    types: GraphTypes = infer_graph(graph, model.opsets, REGISTRY, input_types=bound)
    hist = Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in graph.nodes)
    params = sum(int(t.array.size) for t in graph.initializers.values())
    param_bytes = sum(int(t.array.nbytes) for t in graph.initializers.values())
    flops, unknown = 0, 0
    for node in graph.nodes:
        ins = [types.types.get(n) if n else None for n in node.inputs]
        outs = [types.types.get(n) if n else None for n in node.outputs]
        rule = FLOP_RULES.get(node.op_type)
        f = rule(node, ins, outs) if rule else _numel(outs[0]) if outs else 0
        if f is None:
            unknown += 1
        else:
            flops += f

    def arg(name: str, t: Type | None) -> dict[str, Any]:
        shape = list(t.shape) if isinstance(t, TensorType) and t.shape is not None else None
        return {"name": name, "type": str(t) if t else "unknown", "shape": shape}

    return {
        "producer": f"{model.producer} {model.producer_version}".strip(),
        "ir_version": model.ir_version,
        "opsets": {k or "ai.onnx": v for k, v in model.opsets.items()},
        "inputs": [arg(v.name, types.types.get(v.name)) for v in inputs],
        "outputs": [arg(v.name, types.types.get(v.name)) for v in graph.outputs],
        "nodes": len(graph.nodes),
        "op_histogram": dict(hist.most_common()),
        "parameters": params,
        "parameter_bytes": param_bytes,
        "flops": flops if unknown == 0 else None,
        "flops_known_part": flops,
        "nodes_with_unknown_flops": unknown,
        "initializer_dtypes": dict(Counter(dtypes.type_name(t.elem) for t in graph.initializers.values())),
    }


def load_info(source: Any, dims: dict[str, int] | None = None) -> dict[str, Any]:
    return model_info(load_model(source), dims)
