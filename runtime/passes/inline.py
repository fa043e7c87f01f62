"""Inline calls to model-local functions (FunctionProto), as onnxruntime does.

Each call is replaced by the function body with its values renamed into a
unique namespace and attribute references (`ref_attr_name`) resolved from
the call site or the function's defaults.  Nested calls and calls inside
subgraphs are inlined too.
"""

from __future__ import annotations

import itertools
from typing import Any

from ..errors import ModelLoadError
from ..ir import AttrRef, Function, Graph, Model, Node

MAX_DEPTH = 64


def inline_functions(model: Model) -> Model:
    """Return the model with every call to a local function expanded in place."""
    if not model.functions:
        return model
    counter = itertools.count()
    model.graph = _inline_graph(model.graph, model, counter, 0)
    return model


def _lookup(model: Model, node: Node) -> Function | None:
    return model.functions.get((node.domain, node.op_type, ""))


def _inline_graph(graph: Graph, model: Model, counter: itertools.count, depth: int) -> Graph:
    nodes: list[Node] = []
    for node in graph.nodes:
        node = _inline_subgraph_attrs(node, model, counter, depth)
        fn = _lookup(model, node)
        if fn is None:
            nodes.append(node)
        else:
            nodes.extend(_expand(node, fn, model, counter, depth))
    graph.nodes = nodes
    return graph


def _inline_subgraph_attrs(node: Node, model: Model, counter: itertools.count, depth: int) -> Node:
    for k, v in node.attrs.items():
        if isinstance(v, Graph):
            node.attrs[k] = _inline_graph(v, model, counter, depth)
        elif isinstance(v, list) and v and isinstance(v[0], Graph):
            node.attrs[k] = [_inline_graph(g, model, counter, depth) for g in v]
    return node


def _expand(call: Node, fn: Function, model: Model, counter: itertools.count, depth: int) -> list[Node]:
    if depth > MAX_DEPTH:
        raise ModelLoadError(f"{call.label()}: function calls nest deeper than {MAX_DEPTH} (recursive function?)")
    prefix = f"{call.name or fn.name}__{next(counter)}__"
    rename: dict[str, str] = {"": ""}
    for formal, actual in zip(fn.inputs, call.inputs):
        rename[formal] = actual
    for formal in fn.inputs[len(call.inputs):]:
        rename[formal] = ""  # omitted optional input
    for formal, actual in zip(fn.outputs, call.outputs):
        rename[formal] = actual
    attrs = dict(fn.attr_defaults)
    attrs.update(call.attrs)
    body: list[Node] = []
    for node in fn.nodes:
        new_attrs = {}
        for k, v in node.attrs.items():
            v = _resolve(v, attrs)
            if v is _MISSING:
                continue  # an attribute bound to a caller attribute that was not given
            if isinstance(v, Graph):
                v = _rename_graph(v, rename, prefix)
            new_attrs[k] = v
        inner = Node(node.op_type, [_name(rename, n, prefix) for n in node.inputs],
                     [_name(rename, n, prefix) for n in node.outputs], new_attrs,
                     prefix + (node.name or node.op_type), node.domain)
        sub = _lookup(model, inner)
        if sub is not None:
            body.extend(_expand(inner, sub, model, counter, depth + 1))
        else:
            body.append(_inline_subgraph_attrs(inner, model, counter, depth + 1))
    return body


_MISSING = object()


def _resolve(v: Any, attrs: dict[str, Any]) -> Any:
    if isinstance(v, AttrRef):
        return attrs.get(v.name, _MISSING)
    return v


def _name(rename: dict[str, str], n: str, prefix: str) -> str:
    if n not in rename:
        rename[n] = prefix + n
    return rename[n]


def _rename_graph(g: Graph, rename: dict[str, str], prefix: str) -> Graph:
    """A subgraph inside a function body may capture function-local names: rename those."""
    local = g.defined_names()
    outer = {n: rename.get(n, prefix + n) for n in g.free_names() if n not in local}
    if not outer:
        return g
    for node in g.nodes:
        node.inputs = [outer.get(n, n) for n in node.inputs]
        for k, v in node.attrs.items():
            if isinstance(v, Graph):
                node.attrs[k] = _rename_graph(v, outer, "")
    for o in g.outputs:
        if o.name in outer:
            o.name = outer[o.name]
    return g
