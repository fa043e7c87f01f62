"""Cleanup: drop nodes and initializers nothing reads, and bypass Identity nodes."""

from __future__ import annotations

from ..ir import Graph, node_inputs_with_captures


def remove_identities(graph: Graph) -> Graph:
    """Route readers of an Identity's output to its input.

    Kept when the output is a graph output (the name must survive) or when a
    subgraph captures it by name.
    """
    keep_names = {v.name for v in graph.outputs}
    captured = {n for g in graph.subgraphs() for n in g.free_names()}
    alias: dict[str, str] = {}
    kept = []
    for node in graph.nodes:
        node.inputs = [alias.get(n, n) for n in node.inputs]
        if (node.op_type == "Identity" and node.domain == "" and len(node.inputs) == 1 and node.inputs[0]
                and node.outputs[0] not in keep_names and node.outputs[0] not in captured):
            alias[node.outputs[0]] = node.inputs[0]
            continue
        kept.append(node)
    if alias:
        for node in kept:
            node.inputs = [alias.get(n, n) for n in node.inputs]
    graph.nodes = kept
    return graph


def remove_dead(graph: Graph) -> Graph:
    """Drop nodes whose outputs nothing reads, and unused initializers."""
    needed = {v.name for v in graph.outputs}
    kept = []
    for node in reversed(graph.topological_nodes()):
        if any(o in needed for o in node.outputs if o):
            kept.append(node)
            needed.update(n for n in node_inputs_with_captures(node) if n)
    graph.nodes = kept[::-1]
    inputs = {v.name for v in graph.inputs}
    graph.initializers = {k: v for k, v in graph.initializers.items() if k in needed or k in inputs}
    return graph
