"""The graph editor fusion rules share: after any change, its order and index are what a fresh scan gives."""

from __future__ import annotations

import numpy as np

from webinfer.ir import Graph, Node, Tensor, TensorType, ValueInfo
from webinfer.passes.editor import GraphEditor


def _graph() -> Graph:
    f = TensorType(1, (2,))
    nodes = [Node("Relu", ["x"], ["a"], name="r"),
             Node("Mul", ["a", "a"], ["b"], name="square"),
             Node("Add", ["b", "k"], ["c"], name="add"),
             Node("Neg", ["c"], ["y"], name="neg")]
    return Graph(nodes, [ValueInfo("x", f)], [ValueInfo("y", f)],
                 {"k": Tensor(np.float32([2.0]), 1)})


def _index(ed: GraphEditor) -> tuple[list[str], dict[str, str | None], dict[str, str | None]]:
    """Node names in order, and each value's producer and sole reader, by node name."""
    names = {v for n in ed.nodes() for v in n.inputs + n.outputs} | {"x", "k", "y"}
    producers = {v: p.name if (p := ed.producer(v)) else None for v in sorted(names)}
    readers = {v: r.name if (r := ed.sole_reader(v)) else None for v in sorted(names)}
    return [n.name for n in ed.nodes()], producers, readers


def test_replace_keeps_the_index_a_fresh_scan_gives() -> None:
    graph = _graph()
    ed = GraphEditor(graph)
    square, add = graph.nodes[1], graph.nodes[2]
    assert ed.sole_reader("a") is None  # read twice by one node: not private to a pattern
    assert ed.sole_reader("y") is None  # a graph output
    assert ed.sole_reader("b") is add

    fused = Node("Fused", ["a", "k"], ["c"], name="fused")
    ed.replace([square, add], [fused], add)
    assert not ed.alive(square) and ed.alive(fused)
    graph.nodes = ed.nodes()
    assert _index(ed) == _index(GraphEditor(graph))
    assert [n.name for n in graph.nodes] == ["r", "fused", "neg"]
    assert ed.sole_reader("a") is fused and ed.producer("b") is None


def test_fresh_name_skips_names_in_use_and_reuses_freed_ones() -> None:
    graph = _graph()
    ed = GraphEditor(graph)
    assert ed.fresh_name("b") == "b_1"
    assert ed.fresh_name("k") == "k_1"  # initializers are taken
    ed.replace(graph.nodes[1:3], [Node("Fused", ["a", "k"], ["c"], name="fused")], graph.nodes[2])
    assert ed.fresh_name("b") == "b"  # nothing produces or reads it anymore
    assert ed.add_const("k", np.float32([1.0])) == "k_1"
