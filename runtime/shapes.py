"""Type and shape inference with symbolic dimensions.

A dimension is an int, a symbol (a string such as "batch" or "seq*12"), or
None when nothing is known.  Each op's rule lives next to the op (the
`infer` of its registration); this module holds the driver that walks a
graph, the arithmetic on dimensions, and the helpers rules share.

Besides types, the driver propagates *values* of small integer tensors that
describe shapes (`SymInts`): Shape -> Gather -> Concat -> Reshape chains,
which exporters emit everywhere, resolve at load to exact or symbolic
shapes, and when every element is an int the folding pass turns them into
constants.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from .errors import ModelLoadError, ShapeInferenceError, WebinferError
from .ir import AttrMixin, Dim, Node, OptionalType, SequenceType, Shape, TensorType, Type, check_attr
from .schemas import ATTR_KINDS, DOMAINS, INPUTS
from . import dtypes

if TYPE_CHECKING:
    from .ir import Graph
    from .ops.registry import OpDef, Registry

# ------------------------------------------------------------------ dimensions

_SIMPLE = re.compile(r"^[A-Za-z_0-9.:]+$")


#: Longest symbolic dim expression kept; longer ones become unknown (None).
#: Shape values added to themselves double their expression per node, so an
#: unbounded one takes all memory within a few dozen nodes of a small file.
MAX_SYMBOL_LEN = 256


def _expr(text: str) -> Dim:
    """A symbolic dim, or unknown when the expression has grown past MAX_SYMBOL_LEN."""
    return text if len(text) <= MAX_SYMBOL_LEN else None


def _int(value: int) -> Dim:
    """An int dim, or unknown outside int64 (repeated squaring would grow it without bound)."""
    return value if -(1 << 63) <= value < (1 << 63) else None


def _paren(d: Dim) -> str:
    s = str(d)
    return s if _SIMPLE.match(s) else f"({s})"


def dim_mul(a: Dim, b: Dim) -> Dim:
    if a is None or b is None:
        return 0 if a == 0 or b == 0 else None
    if isinstance(a, int) and isinstance(b, int):
        return _int(a * b)
    if a == 1:
        return b
    if b == 1:
        return a
    if a == 0 or b == 0:
        return 0
    return _expr(f"{_paren(a)}*{_paren(b)}")


def dim_add(a: Dim, b: Dim) -> Dim:
    if a is None or b is None:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return _int(a + b)
    if a == 0:
        return b
    if b == 0:
        return a
    if isinstance(b, int) and b < 0:
        return _expr(f"{a}-{-b}")
    return _expr(f"{a}+{b}")


def dim_sub(a: Dim, b: Dim) -> Dim:
    if a is None or b is None:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return _int(a - b)
    if a == b:
        return 0
    if b == 0:
        return a
    return _expr(f"{a}-{_paren(b)}")


def dim_div(a: Dim, b: Dim) -> Dim:
    """Floor division, as shape arithmetic in ONNX graphs uses."""
    if a is None or b is None:
        return None
    if isinstance(a, int) and isinstance(b, int):
        return a // b if b else None
    if b == 1:
        return a
    if a == b:
        return 1
    if isinstance(a, str) and isinstance(b, int):
        m = re.fullmatch(r"\((.*)\)\*(\d+)|(.*)\*(\d+)", a)
        if m:
            factor = int(m.group(2) or m.group(4))
            if factor % b == 0:
                rest = m.group(1) or m.group(3)
                return rest if factor == b else dim_mul(rest, factor // b)
    return _expr(f"{_paren(a)}/{_paren(b)}")


def dims_product(dims: Iterable[Dim]) -> Dim:
    out: Dim = 1
    for d in dims:
        out = dim_mul(out, d)
    return out


def is_static(shape: Shape | None) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


def dims_compatible(a: Dim, b: Dim) -> bool:
    """False only when two dims are certainly different."""
    return not (isinstance(a, int) and isinstance(b, int) and a != b)


def broadcast_shapes(shapes: Sequence[Shape | None], node: Node | None = None) -> Shape | None:
    """numpy broadcasting of possibly symbolic shapes; mismatches are errors."""
    known_shapes = [s for s in shapes if s is not None]
    if len(known_shapes) < len(shapes):
        return None
    rank = max((len(s) for s in known_shapes), default=0)
    out: list[Dim] = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in known_shapes if len(s) - rank + i >= 0]
        known = {d for d in dims if isinstance(d, int) and d != 1}
        if len(known) > 1:
            where = f"{node.label()}: " if node is not None else ""
            raise ShapeInferenceError(
                f"{where}cannot broadcast shapes {' and '.join(shape_str(s) for s in shapes)} "
                f"(dimension {i - rank} is {' vs '.join(str(d) for d in sorted(known))})")
        if known:
            out.append(known.pop())
            continue
        syms = {d for d in dims if isinstance(d, str)}
        if any(d is None for d in dims):
            out.append(None)
        elif len(syms) == 1:
            out.append(syms.pop())
        elif len(syms) > 1 and _capped_by(syms) is not None:
            out.append(_capped_by(syms))
        elif len(syms) > 1:
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


_SIZE_SYMBOL = re.compile(r"^[A-Za-z_][\w.:]*$")
_MIN = re.compile(r"^min\((.+),(\d+)\)$")


def is_size_symbol(d: Dim) -> bool:
    """A bare symbolic size (an input's named dim): never negative, unlike expressions such as 'seq-1'."""
    return isinstance(d, str) and bool(_SIZE_SYMBOL.match(d))


def _capped_by(syms: set[str]) -> str | None:
    """{s, 'min(s,k)'} broadcast to s: 'min(s,k)' is 1 or s in any valid broadcast, and both give s."""
    bases = {m.group(1) if (m := _MIN.match(d)) else d for d in syms}
    if len(bases) == 1:
        base = bases.pop()
        if base in syms:
            return base
    return None


def shape_str(shape: Shape | None) -> str:
    if shape is None:
        return "[?]"
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


def normalize_axis(axis: int, rank: int, node: Node, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise ShapeInferenceError(f"{node.label()}: {what} {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


# ------------------------------------------------------------ symbolic values

@dataclass(frozen=True)
class SymInts:
    """A small int tensor (rank 0 or 1) whose elements are dims: a shape in flight."""

    dims: tuple[Dim, ...]
    scalar: bool = False

    def concrete(self) -> np.ndarray | None:
        if all(isinstance(d, int) for d in self.dims):
            arr = np.array(self.dims, dtype=np.int64)
            return arr.reshape(()) if self.scalar else arr
        return None


def sym_from_const(value: Any) -> SymInts | None:
    """View a constant int array of rank <= 1 as SymInts."""
    if isinstance(value, np.ndarray) and value.dtype.kind in "iu" and value.ndim <= 1 and value.size <= 64:
        return SymInts(tuple(int(v) for v in value.reshape(-1)), value.ndim == 0)
    return None


# ------------------------------------------------------------------ the context

class InferContext(AttrMixin):
    """What a shape rule sees: the node, input types and any known input values."""

    def __init__(self, node: Node, opset: int, in_types: list[Type | None], in_values: list[Any],
                 subgraph_infer: Any = None):
        self.node = node
        self.opset = opset
        self.in_types = in_types
        self.in_values = in_values
        self.out_values: dict[int, Any] = {}
        self.subgraph_infer = subgraph_infer

    @property
    def n_in(self) -> int:
        return len(self.node.inputs)

    @property
    def n_out(self) -> int:
        return len(self.node.outputs)

    def has(self, i: int) -> bool:
        return i < len(self.node.inputs) and self.node.inputs[i] != ""

    def type(self, i: int) -> Type | None:
        return self.in_types[i] if i < len(self.in_types) else None

    def elem(self, i: int) -> int | None:
        """Input i's element type when it is a tensor (a sequence's or optional's `elem` is a Type)."""
        t = self.type(i)
        return t.elem if isinstance(t, TensorType) else None

    def shape(self, i: int) -> Shape | None:
        t = self.type(i)
        return t.shape if isinstance(t, TensorType) else None

    def rank(self, i: int) -> int | None:
        s = self.shape(i)
        return None if s is None else len(s)

    def value(self, i: int) -> Any:
        """Constant value of input i (ndarray), if known at load."""
        v = self.in_values[i] if i < len(self.in_values) else None
        if isinstance(v, SymInts):
            return v.concrete()
        return v

    def sym(self, i: int) -> SymInts | None:
        """Input i as SymInts (a constant or symbolic shape-like tensor), if known."""
        v = self.in_values[i] if i < len(self.in_values) else None
        if isinstance(v, SymInts):
            return v
        return sym_from_const(v)

    def ints(self, i: int) -> list[int] | None:
        """Input i as a list of ints when it is a known constant."""
        v = self.value(i)
        if isinstance(v, np.ndarray) and v.dtype.kind in "iu":
            return [int(x) for x in v.reshape(-1)]
        return None

    def set_value(self, i: int, value: Any) -> None:
        """Record a known (possibly symbolic) value for output i."""
        self.out_values[i] = value

    def subgraph(self, name: str, in_types: list[Type | None]) -> list[Type | None]:
        """Output types of a subgraph attribute given its input types."""
        if self.subgraph_infer is None:
            raise self.error("subgraph types cannot be inferred in this context")
        return self.subgraph_infer(self.attr(name), in_types)


#: numpy's limit on dimensions: a shape input longer than this describes no tensor.
MAX_RANK = 64


def static_len(ctx: InferContext, i: int) -> int | None:
    """Number of elements of input i when it is a 1-D tensor of static length (axes, shapes, a rank).

    Rules build that many dims, so a hostile declaration ([2**40]) must not
    reach them: more than MAX_RANK is an error naming the node.
    """
    shape = ctx.shape(i)
    if shape is not None and len(shape) == 1 and isinstance(shape[0], int):
        if shape[0] > MAX_RANK:
            raise ctx.error(f"input {i} ({ctx.node.inputs[i]}) has {shape[0]} elements, but it lists dims "
                            f"or axes and tensors have at most {MAX_RANK}")
        return shape[0]
    return None


def tensor(elem: int | None, shape: Sequence[Dim] | None = None) -> TensorType:
    return TensorType(elem, None if shape is None else tuple(shape))


# ---------------------------------------------------------- common shape rules

def same_as_input(ctx: InferContext) -> list[Type | None]:
    """Every output has input 0's type and shape (unary elementwise ops)."""
    return [ctx.type(0)] * ctx.n_out


def broadcast_rule(elem: int | None = None) -> Callable[[InferContext], list[Type | None]]:
    """Rule for n-ary broadcasting ops; output elem `elem` or input 0's."""

    def rule(ctx: InferContext) -> list[Type | None]:
        shapes = [ctx.shape(i) for i in range(ctx.n_in) if ctx.has(i)]
        return [tensor(elem if elem is not None else ctx.elem(0), broadcast_shapes(shapes, ctx.node))]

    return rule


def default_rule(ctx: InferContext) -> list[Type | None]:
    """Used for ops without a rule: tensor outputs typed like input 0, shapes unknown."""
    t = ctx.type(0) if ctx.n_in else None
    if isinstance(t, TensorType):
        return [tensor(t.elem) for _ in range(ctx.n_out)]
    return [None] * ctx.n_out


# --------------------------------------------------------------- the driver

def run_rule(opdef: "OpDef", ctx: InferContext, strict: bool) -> list[Type | None]:
    """Apply an op's rule. Real inconsistencies (webinfer's errors) raise; a
    rule's own bug is tolerated (types unknown) unless `strict`, so a gap in
    our rules never rejects a valid model.  Exhausted memory or stack is
    never a rule's bug but a hostile file's doing, and is not hidden."""
    rule = opdef.infer or default_rule
    try:
        out = rule(ctx)
    except (WebinferError, MemoryError, RecursionError):
        raise
    except Exception as e:  # noqa: BLE001 - see docstring
        if strict:
            raise ShapeInferenceError(f"{ctx.node.label()}: shape rule failed: {type(e).__name__}: {e}") from e
        out = default_rule(ctx)
    out = list(out) + [None] * (ctx.n_out - len(out))
    return out[:ctx.n_out]


def check_node(node: Node, opset: int) -> None:
    """Refuse a node missing an input its ONNX schema requires, or holding an
    attribute of a kind its schema does not declare (onnxruntime refuses both),
    before shape rules, fusion rules and builders index into its inputs or
    compute with its attributes."""
    if node.domain not in DOMAINS:
        return
    kinds = ATTR_KINDS.get(node.op_type, {})
    for name, value in node.attrs.items():
        if name in kinds:
            check_attr(node, name, value, kinds[name])
    entry = None
    for since, required, minimum in INPUTS.get(node.op_type, ()):
        if since <= opset:
            entry = (required, minimum)
    if entry is None:
        return
    required, minimum = entry
    missing = [i for i in required if i >= len(node.inputs) or not node.inputs[i]]
    if missing or len(node.inputs) < minimum:
        needs = f"input(s) {missing}" if missing else f"at least {minimum} inputs"
        raise ModelLoadError(f"{node.label()}: {node.op_type} (opset {opset}) requires {needs}; "
                             f"the node has {[n or '(missing)' for n in node.inputs]}")


def check_definitions(graph: "Graph") -> None:
    """Every value is defined once: two nodes writing one name, or a node output
    shadowing a graph input or initializer, would make results depend on node
    order.  onnxruntime refuses such files ("Duplicate definition of name"), and
    so does webinfer.  (An initializer that is also a graph input is one value: an
    overridable default.)"""
    defined: dict[str, str] = {}
    for v in graph.inputs:
        if v.name in defined:
            raise ModelLoadError(f"graph '{graph.name}': input '{v.name}' is declared twice")
        defined[v.name] = "a graph input"
    for name in graph.initializers:
        defined.setdefault(name, "an initializer")
    for node in graph.nodes:
        for name in node.outputs:
            if not name:
                continue
            if name in defined:
                raise ModelLoadError(f"{node.label()}: output '{name}' is already defined by {defined[name]} "
                                     "(duplicate definition of a name)")
            defined[name] = node.label()


def merge_declared(inferred: Type | None, declared: Type | None, name: str, node: Node | None) -> Type | None:
    """Combine an inferred type with one declared in the file (value_info/outputs).

    Inferred facts win; the declaration fills gaps (unknown dims keep their
    declared symbolic names).  A declared elem type that contradicts the
    inferred one is an error naming the value.
    """
    if declared is None:
        return inferred
    if inferred is None:
        return declared
    if isinstance(inferred, TensorType) and isinstance(declared, TensorType):
        elem = inferred.elem if inferred.elem is not None else declared.elem
        if inferred.elem is not None and declared.elem is not None and inferred.elem != declared.elem:
            where = f"{node.label()}: " if node else ""
            raise ShapeInferenceError(
                f"{where}output '{name}' is declared {dtypes.type_name(declared.elem)} but computes "
                f"{dtypes.type_name(inferred.elem)}")
        shape = inferred.shape
        if shape is None:
            shape = declared.shape
        elif declared.shape is not None and len(declared.shape) == len(shape):
            shape = tuple(_merge_dim(d, e) for d, e in zip(shape, declared.shape))
        return TensorType(elem, shape)
    if isinstance(inferred, (SequenceType, OptionalType)) and type(inferred) is type(declared):
        return inferred if inferred.elem is not None else declared
    return inferred


def _merge_dim(inferred: Dim, declared: Dim) -> Dim:
    if isinstance(inferred, int):
        return inferred
    if isinstance(declared, int) or inferred is None:
        return declared
    return inferred




# ------------------------------------------------------------- graph driver

@dataclass
class GraphTypes:
    """What inference learned about a graph: a type per value name, and the
    known values (constant arrays, SymInts) of some."""

    types: dict[str, Type | None]
    values: dict[str, Any]


def infer_graph(graph: "Graph", opsets: dict[str, int], registry: "Registry",
                input_types: dict[str, Type | None] | None = None, outer: GraphTypes | None = None,
                strict: bool = False) -> GraphTypes:
    """Infer the type of every value in `graph`, in topological order.

    `input_types` overrides declared graph-input types (used for subgraphs,
    whose inputs are often untyped); `outer` gives the enclosing scope's
    types for names a subgraph captures.  Unsupported ops and inconsistent
    shapes raise errors naming the node.
    """
    check_definitions(graph)
    types: dict[str, Type | None] = dict(outer.types) if outer else {}
    values: dict[str, Any] = dict(outer.values) if outer else {}
    input_names = {v.name for v in graph.inputs}
    for name, t in graph.initializers.items():
        types[name] = t.type
        if name not in input_names:  # an initializer that is also an input can be overridden
            values[name] = t.array
    for v in graph.inputs:
        if input_types is not None and v.name in input_types:
            types[v.name] = merge_declared(input_types[v.name], v.type, v.name, None)
        elif v.name not in graph.initializers:
            types[v.name] = v.type
        values.pop(v.name, None)
    for node in graph.topological_nodes():
        for name in node.inputs:
            if name and name not in types:
                raise ModelLoadError(
                    f"{node.label()}: input '{name}' is not a graph input, an initializer, or an output "
                    "of any node")
        opdef = registry.lookup(node, opsets.get(node.domain, 0))
        check_node(node, opsets.get(node.domain, 0))

        def sub_infer(g: "Graph", in_types: list[Type | None]) -> list[Type | None]:
            scope = GraphTypes(types, values)
            sub = infer_graph(g, opsets, registry, {v.name: t for v, t in zip(g.inputs, in_types)},
                              scope, strict)
            return [sub.types.get(v.name) for v in g.outputs]

        ctx = InferContext(node, opsets.get(node.domain, 0), [types.get(n) if n else None for n in node.inputs],
                           [values.get(n) if n else None for n in node.inputs], sub_infer)
        outs = run_rule(opdef, ctx, strict)
        for i, name in enumerate(node.outputs):
            if not name:
                continue
            declared = graph.value_info.get(name)
            types[name] = merge_declared(outs[i], declared.type if declared else None, name, node)
            if i in ctx.out_values:
                values[name] = ctx.out_values[i]
    for v in graph.outputs:
        if v.name not in types:
            raise ModelLoadError(f"graph output '{v.name}' is not produced by any node, input or initializer")
        types[v.name] = merge_declared(types[v.name], v.type, v.name, None)
    return GraphTypes(types, values)
