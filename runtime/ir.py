"""The in-memory model: graphs of nodes over named values.

Plain dataclasses, no behaviour beyond small helpers: the loader builds them,
passes rewrite them, the planner reads them.  Subgraphs (If/Loop/Scan bodies)
are `Graph`s held in node attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

import heapq

from .errors import ModelLoadError, ShapeInferenceError
from .dtypes import type_name
from .schemas import ATTR_KINDS, DOMAINS

#: A dimension: a known size, a symbol (e.g. "batch", "seq+1"), or None (unknown).
Dim = Union[int, str, None]
Shape = tuple[Dim, ...]


@dataclass(frozen=True)
class TensorType:
    """A tensor's element type (ONNX enum) and shape; shape None = unknown rank."""

    elem: int | None
    shape: Shape | None = None

    def __str__(self) -> str:
        return f"tensor({type_name(self.elem)})"

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    def describe(self) -> str:
        """`float[batch,3,224,224]` style, for error messages."""
        dims = "?" if self.shape is None else ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{type_name(self.elem)}[{dims}]"


@dataclass(frozen=True)
class SequenceType:
    elem: "Type | None"

    def __str__(self) -> str:
        return f"seq({self.elem})"

    def describe(self) -> str:
        return f"seq({self.elem.describe() if self.elem else '?'})"


@dataclass(frozen=True)
class OptionalType:
    elem: "Type | None"

    def __str__(self) -> str:
        return f"optional({self.elem})"

    def describe(self) -> str:
        return f"optional({self.elem.describe() if self.elem else '?'})"


@dataclass(frozen=True)
class MapType:
    key: int
    value: "Type | None"

    def __str__(self) -> str:
        return f"map({type_name(self.key)},{self.value})"

    def describe(self) -> str:
        return str(self)


Type = Union[TensorType, SequenceType, OptionalType, MapType]


@dataclass
class Tensor:
    """A constant: numpy storage plus its ONNX element type (see loader.dtypes)."""

    array: np.ndarray
    elem: int

    @property
    def type(self) -> TensorType:
        return TensorType(self.elem, tuple(self.array.shape))


@dataclass(frozen=True)
class AttrRef:
    """Inside a function body: an attribute that takes the caller's attribute `name`."""

    name: str


@dataclass
class ValueInfo:
    name: str
    type: Type | None
    doc: str = ""
    #: Each dim's denotation (e.g. DATA_BATCH) where the file gives any, else empty.
    dim_denotations: tuple[str, ...] = ()


_REQUIRED = object()


class AttrMixin:
    """Attribute access for contexts that wrap a node (shape rules, kernel builders)."""

    node: "Node"

    def attr(self, name: str, default: Any = _REQUIRED) -> Any:
        """An attribute's value; a missing required one is an error naming the node.

        The value is checked against the kinds ONNX declares for the op's
        attribute (runtime/schemas.py; otherwise the kind of `default`), so
        a file giving `axis` as a float or `perm` as a string fails here with
        a ModelLoadError naming node, attribute and both kinds instead of as
        a TypeError deep inside whichever builder reads it.
        """
        value = self.node.attrs.get(name, _REQUIRED)
        if value is _REQUIRED:
            if default is _REQUIRED:
                raise ShapeInferenceError(f"{self.node.label()}: required attribute '{name}' is missing")
            return default
        kinds: tuple[str, ...] = ()
        if self.node.domain in DOMAINS:
            kinds = ATTR_KINDS.get(self.node.op_type, {}).get(name, ())
        if not kinds and default is not _REQUIRED:
            implied = _kind_of_default(default)
            kinds = (implied,) if implied else ()
        check_attr(self.node, name, value, kinds)
        return value

    def error(self, message: str, cls: type[Exception] = ShapeInferenceError) -> Exception:
        """An exception naming this node, to raise: `raise ctx.error(...)`."""
        return cls(f"{self.node.label()}: {message}")


@dataclass
class Node:
    """One op application. Missing optional inputs are ''."""

    op_type: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    domain: str = ""

    def label(self) -> str:
        """How errors refer to the node: `Conv node 'conv1'`."""
        dom = f"{self.domain}." if self.domain not in ("", "ai.onnx") else ""
        return f"{dom}{self.op_type} node '{self.name or (self.outputs[0] if self.outputs else '?')}'"


@dataclass
class Graph:
    """A graph: nodes in file order, its interface, constants, and known types."""

    nodes: list[Node]
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    initializers: dict[str, Tensor] = field(default_factory=dict)
    value_info: dict[str, ValueInfo] = field(default_factory=dict)
    name: str = ""
    doc: str = ""

    def defined_names(self) -> set[str]:
        """Names this graph itself defines: inputs, initializers, node outputs."""
        names = {v.name for v in self.inputs} | set(self.initializers)
        for node in self.nodes:
            names.update(o for o in node.outputs if o)
        return names

    def free_names(self) -> list[str]:
        """Names used here (or in nested subgraphs) but defined in an enclosing scope.

        These are the implicit inputs of the node holding this graph.
        """
        defined = self.defined_names()
        out: dict[str, None] = {}
        for node in self.nodes:
            for name in node_inputs_with_captures(node):
                if name and name not in defined:
                    out[name] = None
        for v in self.outputs:
            if v.name not in defined:
                out[v.name] = None
        return list(out)

    def topological_nodes(self) -> list["Node"]:
        """Nodes in an order where every input is produced before use (stable).

        ONNX requires files to be sorted, but not every writer complies; a
        cycle is a load error naming the nodes involved.
        """
        available = {v.name for v in self.inputs} | set(self.initializers) | {""}
        producers: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            for o in node.outputs:
                if o:
                    producers[o] = i
        deps: list[set[int]] = []
        for i, node in enumerate(self.nodes):
            d = {producers[n] for n in node_inputs_with_captures(node)
                 if n not in available and n in producers and producers[n] != i}
            deps.append(d)
        if all(all(j < i for j in d) for i, d in enumerate(deps)):
            return list(self.nodes)
        users: dict[int, list[int]] = {}
        for i, d in enumerate(deps):
            for j in d:
                users.setdefault(j, []).append(i)
        remaining = [len(d) for d in deps]
        ready = [i for i, r in enumerate(remaining) if r == 0]
        heapq.heapify(ready)
        order = []
        while ready:
            i = heapq.heappop(ready)
            order.append(i)
            for u in users.get(i, []):
                remaining[u] -= 1
                if remaining[u] == 0:
                    heapq.heappush(ready, u)
        if len(order) != len(self.nodes):
            stuck = [self.nodes[i].label() for i, r in enumerate(remaining) if r > 0][:5]
            raise ModelLoadError(f"graph '{self.name}' has a cycle through: {', '.join(stuck)}")
        return [self.nodes[i] for i in order]

    def subgraphs(self) -> list["Graph"]:
        """Graphs held directly in this graph's node attributes."""
        return [g for node in self.nodes for g in node_subgraphs(node)]

    def copy(self) -> "Graph":
        """A copy the passes may rewrite (node lists, nodes' inputs and attributes, tables) leaving this
        graph as it was: a subgraph is compiled once per set of input types (Loop widens them), and each
        compilation optimizes for its own.  Tensors and nested graphs are shared; passes replace them
        rather than change them."""
        nodes = [Node(n.op_type, list(n.inputs), list(n.outputs), dict(n.attrs), n.name, n.domain)
                 for n in self.nodes]
        return Graph(nodes, list(self.inputs), list(self.outputs), dict(self.initializers),
                     dict(self.value_info), self.name, self.doc)


def node_subgraphs(node: Node) -> list[Graph]:
    """Graphs held in a node's attributes (If branches, Loop/Scan bodies).

    Called for every node by each pass, the planner and shape inference, so it looks only at a list's
    first item: an ONNX list attribute holds one type (GRAPHS lists hold graphs, the others none).
    """
    out: list[Graph] = []
    for v in node.attrs.values():
        if isinstance(v, Graph):
            out.append(v)
        elif isinstance(v, list) and v and isinstance(v[0], Graph):
            out.extend(v)
    return out


def node_inputs_with_captures(node: Node) -> list[str]:
    """A node's explicit inputs followed by the outer names its subgraphs read."""
    names = list(node.inputs)
    for g in node_subgraphs(node):
        names.extend(n for n in g.free_names() if n not in names)
    return names


@dataclass
class Function:
    """A model-local function (FunctionProto); calls are inlined at load."""

    name: str
    domain: str
    inputs: list[str]
    outputs: list[str]
    attr_names: list[str]
    attr_defaults: dict[str, Any]
    nodes: list[Node]
    opsets: dict[str, int]
    overload: str = ""


@dataclass
class Model:
    graph: Graph
    opsets: dict[str, int]
    ir_version: int = 0
    producer: str = ""
    producer_version: str = ""
    domain: str = ""
    model_version: int = 0
    doc: str = ""
    functions: dict[tuple[str, str, str], Function] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def opset(self, domain: str = "") -> int:
        """The opset version a domain is imported at (ai.onnx is '')."""
        return self.opsets.get("" if domain == "ai.onnx" else domain, 0)


def _list_of(*classes: type) -> Any:
    """A check that a value is a list of `classes` (the repeated attribute kinds)."""
    return lambda v: isinstance(v, list) and all(isinstance(x, classes) for x in v)


#: How a value read from a file is recognised as each AttributeProto kind
#: (an int is accepted where a float is declared, as onnxruntime does).
_KIND_CHECKS: dict[str, Any] = {
    "int": lambda v: isinstance(v, int),
    "float": lambda v: isinstance(v, (int, float)),
    "string": lambda v: isinstance(v, str),
    "ints": _list_of(int),
    "floats": _list_of(int, float),
    "strings": _list_of(str),
    "tensor": lambda v: isinstance(v, Tensor),
    "sparse_tensor": lambda v: isinstance(v, Tensor),
    "graph": lambda v: isinstance(v, Graph),
    "tensors": _list_of(Tensor),
    "sparse_tensors": _list_of(Tensor),
    "graphs": _list_of(Graph),
    "type_proto": lambda v: v is None or isinstance(v, (TensorType, SequenceType, OptionalType, MapType)),
    "type_protos": _list_of(TensorType, SequenceType, OptionalType, MapType),
}


def check_attr(node: "Node", name: str, value: Any, kinds: tuple[str, ...]) -> None:
    """Raise ModelLoadError unless `value` is one of the AttributeProto `kinds` (none: anything)."""
    if kinds and not any(_KIND_CHECKS[k](value) for k in kinds):
        raise ModelLoadError(f"{node.label()}: attribute '{name}' must be {' or '.join(kinds)}, "
                             f"got {_describe_attr(value)}")


def _kind_of_default(default: Any) -> str | None:
    """The attribute kind a builder's default implies (None when it implies none)."""
    if isinstance(default, list):
        if not default:
            return None
        return next((k for k in ("ints", "floats", "strings") if _KIND_CHECKS[k](default)), None)
    return next((k for k in ("int", "float", "string", "tensor", "graph")
                 if default is not None and _KIND_CHECKS[k](default)), None)


def _describe_attr(value: Any) -> str:
    """`float 1.5`, `ints [0, 1]`: the kind a value reads as, and the value, for error messages."""
    kind = next((k for k in ("int", "float", "string", "ints", "floats", "strings", "tensor", "graph",
                             "tensors", "graphs") if _KIND_CHECKS[k](value)), type(value).__name__)
    text = repr(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"
