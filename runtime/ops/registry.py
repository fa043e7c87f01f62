"""The op table: every op registers here once, with its shape rule and kernel.

An op is registered with a *kernel builder*: called once per node at session
creation with an `OpContext` (attributes, opset, inferred input types,
constant inputs), it returns the function that runs the node, so attribute
parsing and specialisation happen once, not per run:

    @op("Relu", infer=same_as_input)
    def relu(ctx: OpContext) -> Kernel:
        return lambda x: (np.maximum(x, 0, dtype=x.dtype),)

A kernel takes the node's inputs (numpy arrays, lists for sequences, None
for missing optional inputs) and returns a tuple of outputs.  The shape rule
(`infer`) maps input types to output types; see shapes.py.

A kernel may also offer a *consuming* variant (`offer_consuming`), allowed
to write its output into the buffer of one input; the executor runs it
when that input dies at the node and nothing else can see its buffer.

Versions: `since` is the first opset the registration serves; a node picks
the newest registration at or below its domain's opset.  An op whose
semantics changed only by attributes registers once and reads `ctx.opset`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence


from ..errors import UnsupportedOpError
from ..ir import AttrMixin, Node, TensorType, Type

Kernel = Callable[..., Sequence[Any]]
#: A step that waits on a device (readbacks): the executor awaits what it returns.
AsyncKernel = Callable[..., Awaitable[Sequence[Any]]]


class PerShape:
    """What a kernel works out from its inputs' shapes, made once per key and kept for a bounded number of keys.

    Kernels prepare indexes and plans per input shape so that a call is one
    dict lookup (Slice's index, Pad's plan, a one-row LayerNorm); a stream of
    ever-new lengths must not grow the table, so it starts over past `kept` keys.
    """

    def __init__(self, make: Callable[..., Any], kept: int = 64):
        self._make = make
        self._kept = kept
        self._values: dict[Any, Any] = {}

    def __call__(self, key: Any, *args: Any) -> Any:
        """The value for `key`, made as `make(*args)` the first time."""
        values = self._values
        if key in values:
            return values[key]
        if len(values) >= self._kept:
            values.clear()
        value = values[key] = self._make(*args)
        return value


def offer_consuming(kernel: Kernel, index: int, variant: Kernel) -> Kernel:
    """Attach to `kernel` a `variant` that may overwrite input `index` (see `consuming`)."""
    kernel.consumes = (index, variant)  # type: ignore[attr-defined]
    return kernel


def consuming(kernel: Kernel) -> tuple[int, Kernel] | None:
    """(input index, variant) offered by `kernel`, or None.

    The variant computes the same outputs but may reuse the buffer of that
    input, e.g. a conv accumulating its product into its dead residual.
    """
    return getattr(kernel, "consumes", None)

@dataclass
class OpContext(AttrMixin):
    """What a kernel builder knows about its node at session creation."""

    node: Node
    opset: int
    in_types: list[Type | None]
    out_types: list[Type | None]
    consts: list[Any]
    #: Compiles a subgraph, optionally with the types of its formal inputs:
    #: `compile_subgraph(graph, in_types)` -> a SubPlan (see plan.py).
    compile_subgraph: Callable[..., Any] | None = None
    options: Any = None

    def const(self, i: int) -> Any:
        """The value of input i if it is a constant known at load, else None."""
        return self.consts[i] if i < len(self.consts) else None

    def in_elem(self, i: int) -> int | None:
        """ONNX element type of input i (None when unknown, absent or not a tensor)."""
        t = self.in_types[i] if i < len(self.in_types) else None
        return t.elem if isinstance(t, TensorType) else None

    def out_elem(self, i: int) -> int | None:
        t = self.out_types[i] if i < len(self.out_types) else None
        return t.elem if isinstance(t, TensorType) else None

    def subgraph(self, name: str, in_types: list[Type | None] | None = None) -> Any:
        """A compiled subgraph attribute (If branches, Loop/Scan bodies).

        `in_types` types the body's formal inputs, which files often leave
        untyped (Loop's iteration count and carried values); None keeps the
        declared ones.
        """
        g = self.attr(name)
        if self.compile_subgraph is None:
            raise self.error("subgraphs cannot be compiled in this context")
        return self.compile_subgraph(g, in_types)


@dataclass
class OpDef:
    """One registration of an op."""

    op_type: str
    domain: str
    since: int
    build: Callable[[OpContext], Kernel]
    infer: Callable[[Any], list[Type | None]] | None = None
    #: True if the kernel takes bfloat16/float8/int4 storage as it is
    #: (data movement, Cast, quantization); otherwise such inputs are
    #: converted to float32 around it.
    exotic: bool = False
    #: Deterministic and cheap enough to run at load on constant inputs.
    foldable: bool = True
    doc: str = ""


@dataclass
class Registry:
    """The op table.  `ops` holds the families imported so far; `complete()` imports the rest (see
    ops/__init__.py: the rarely used ones wait for the first lookup none of the others answers)."""

    ops: dict[tuple[str, str], list[OpDef]] = field(default_factory=dict)
    #: Imports the families not in `ops` yet; None once they are.
    pending: Callable[[], None] | None = field(default=None, repr=False)

    def complete(self) -> Registry:
        """Every family registered: for whoever lists the whole table, and for a lookup that missed."""
        load, self.pending = self.pending, None
        if load is not None:
            load()
        return self

    def add(self, d: OpDef) -> None:
        versions = self.ops.setdefault((d.domain, d.op_type), [])
        if any(v.since == d.since for v in versions):
            raise ValueError(f"{d.domain or 'ai.onnx'}.{d.op_type} registered twice for opset {d.since}")
        versions.append(d)
        versions.sort(key=lambda v: v.since)

    def lookup(self, node: Node, opset: int) -> OpDef:
        """The registration serving `node` at `opset`, or a clear error."""
        versions = self.ops.get((node.domain, node.op_type))
        if not versions and self.pending is not None:
            versions = self.complete().ops.get((node.domain, node.op_type))
        if not versions:
            raise UnsupportedOpError(
                f"{node.label()}: op {node.domain + '.' if node.domain else ''}{node.op_type} is not supported "
                "by webinfer (see the op table in README.md)")
        best = None
        for v in versions:
            if v.since <= opset:
                best = v
        if best is None:
            raise UnsupportedOpError(
                f"{node.label()}: opset {opset} is older than any supported version "
                f"(earliest: {versions[0].since})")
        return best



REGISTRY = Registry()


def op(op_type: str, since: int = 1, domain: str = "", infer: Callable[[Any], list[Type | None]] | None = None,
       exotic: bool = False, foldable: bool = True) -> Callable[[Callable[[OpContext], Kernel]], Callable[[OpContext], Kernel]]:
    """Register a kernel builder (decorator). See the module docstring."""

    def deco(build: Callable[[OpContext], Kernel]) -> Callable[[OpContext], Kernel]:
        REGISTRY.add(OpDef(op_type, domain, since, build, infer, exotic, foldable, (build.__doc__ or "").strip()))
        return build

    return deco


def register(op_type: str, build: Callable[[OpContext], Kernel], since: int = 1, domain: str = "",
             infer: Callable[[Any], list[Type | None]] | None = None, exotic: bool = False,
             foldable: bool = True) -> None:
    """Non-decorator form, for ops generated from tables."""
    REGISTRY.add(OpDef(op_type, domain, since, build, infer, exotic, foldable, (build.__doc__ or "").strip()))
