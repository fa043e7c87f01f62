"""A graph under rewrite, whose node order and producer/reader index follow every change.

Rewrite rules ask who produces a value and who reads it after every match.
Rebuilding that index from the whole graph per match made fusion quadratic
in the node count (a 4,000-node model took seconds to load, issue 11); here
each change updates the index by its own size, as tract's model patches do.
Node order is a linked list keyed by node identity, so removing a node or
inserting one before another costs O(1) and the rewritten order is exactly
what splicing the node list would give.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from .. import dtypes
from ..ir import Graph, Node, Tensor, node_inputs_with_captures

#: The linked list's sentinel key: no live object has id 0.
_END = 0


class GraphEditor:
    """`graph`'s nodes in order, who produces and who reads each value, kept current per change.

    The index is what scanning the current node list would give: a value's
    producer is the node writing it, its readers count a node once per input
    slot (captures by subgraphs included), and a value nothing reads anymore
    leaves the index, so `fresh_name` may hand its name out again.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.outputs = {v.name for v in graph.outputs}
        self._inputs = {v.name for v in graph.inputs}
        self._producer: dict[str, Node] = {}
        #: value -> {id(reader): how many of its input slots read the value}
        self._readers: dict[str, dict[int, int]] = {}
        #: id -> node, for the nodes in the graph (ids stay unique while the node is held here)
        self._live: dict[int, Node] = {}
        #: id -> the names the node was indexed as reading, so dropping it undoes exactly that
        self._reads: dict[int, list[str]] = {}
        #: the node order: a doubly linked list of ids around the `_END` sentinel
        self._next: dict[int, int] = {_END: _END}
        self._prev: dict[int, int] = {_END: _END}
        for node in graph.nodes:
            self._add(node, _END)

    # ------------------------------------------------------------ queries

    def nodes(self) -> list[Node]:
        """The live nodes in graph order (a snapshot: rules iterate it while they edit)."""
        out, key = [], self._next[_END]
        while key != _END:
            out.append(self._live[key])
            key = self._next[key]
        return out

    def alive(self, node: Node) -> bool:
        """Whether `node` is still in the graph (a rule's snapshot holds the nodes its matches removed)."""
        return id(node) in self._live

    def producer(self, name: str) -> Node | None:
        return self._producer.get(name)

    def sole_reader(self, name: str) -> Node | None:
        """The only node reading `name`, once, if the value is private to a pattern (not a graph output)."""
        readers = self._readers.get(name)
        if not readers or len(readers) != 1 or name in self.outputs:
            return None
        (key, times), = readers.items()
        return self._live[key] if times == 1 else None

    def readers(self, name: str) -> list[Node]:
        """The nodes reading `name` (each once), in no particular order."""
        return [self._live[key] for key in self._readers.get(name, {})]

    def is_read(self, name: str) -> bool:
        """Whether any node reads `name` or it is a graph output."""
        return name in self._readers or name in self.outputs

    def const(self, name: str) -> np.ndarray | None:
        """The value of initializer `name`, unless a feed may override it (it is also a graph input)."""
        t = self.graph.initializers.get(name)
        if t is None or name in self._inputs:
            return None
        return t.array

    def scalar(self, name: str) -> float | None:
        """The constant `name` as a float, when it is a one-element numeric constant."""
        c = self.const(name)
        if c is None or c.size != 1 or c.dtype.kind not in "fiu":
            return None
        return float(c.reshape(-1)[0])

    def _taken(self, name: str) -> bool:
        """Whether `name` is in use: produced, read, an initializer or a graph input."""
        return (name in self._producer or name in self._readers or name in self.graph.initializers
                or name in self._inputs)

    def fresh_name(self, base: str) -> str:
        """`base`, or `base_1`, `base_2`, ...: the first name not in use, for a value a rule introduces."""
        return _unique(base, self._taken)

    # ------------------------------------------------------------ changes

    def add_const(self, base: str, value: np.ndarray) -> str:
        """Store `value` as a new initializer named after `base` (suffixed past existing initializers)."""
        name = _unique(base, self.graph.initializers.__contains__)
        self.graph.initializers[name] = Tensor(value, dtypes.from_numpy(value.dtype))
        return name

    def replace(self, remove: Iterable[Node], add: Iterable[Node], at: Node) -> None:
        """Insert `add` (in order) where `at` stands, then drop the nodes of `remove`."""
        key = id(at)
        for node in add:
            self._add(node, key)
        for node in remove:
            self._drop(node)

    def _add(self, node: Node, before: int) -> None:
        key = id(node)
        prev = self._prev[before]
        self._next[prev], self._prev[key] = key, prev
        self._next[key], self._prev[before] = before, key
        self._live[key] = node
        for o in node.outputs:
            if o:
                self._producer[o] = node
        reads = [i for i in node_inputs_with_captures(node) if i]
        self._reads[key] = reads
        for name in reads:
            readers = self._readers.setdefault(name, {})
            readers[key] = readers.get(key, 0) + 1

    def _drop(self, node: Node) -> None:
        key = id(node)
        prev, nxt = self._prev.pop(key), self._next.pop(key)
        self._next[prev], self._prev[nxt] = nxt, prev
        del self._live[key]
        for o in node.outputs:
            if o and self._producer.get(o) is node:
                del self._producer[o]
        for name in set(self._reads.pop(key)):
            readers = self._readers[name]
            del readers[key]
            if not readers:
                del self._readers[name]


def _unique(base: str, taken: Callable[[str], bool]) -> str:
    """`base`, or `base_1`, `base_2`, ... : the first for which `taken` is false."""
    name, i = base, 0
    while taken(name):
        i += 1
        name = f"{base}_{i}"
    return name
