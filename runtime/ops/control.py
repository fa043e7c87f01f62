"""Control flow: If, Loop, Scan.

Bodies are compiled once, at session creation, into `SubPlan`s (plan.py)
that the kernels call per branch or iteration; values the bodies capture
from enclosing graphs arrive as the kernel's `outer=` dict.

Loop and Scan carry values from one iteration to the next, and a carried
value's dims may change as it goes (a tensor that grows by a Concat each
iteration, a sequence that gains items).  Bodies are therefore typed with
the *fixed point* of "initial type joined with the body's output type",
so the shapes strict mode checks inside a body hold in every iteration,
not just the first.  These ops only route values, so they take
bfloat16/float8 storage as it is (`exotic=True`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from .. import dtypes
from ..ir import Graph, OptionalType, SequenceType, TensorType, Type
from ..shapes import InferContext, shape_str, tensor
from .registry import Kernel, OpContext, op
from .sequence import join_types

#: A carried type loses a dim or its shape each time it changes, so the
#: fixed point is reached within about (total rank + 2) rounds; this bounds
#: a body whose rules misbehave.
_MAX_WIDENINGS = 64


def _fixpoint(initial: list[Type | None], outputs_of: Callable[[list[Type | None]], tuple[list[Type | None], Any]],
              error: Callable[[str], Exception]) -> tuple[list[Type | None], Any]:
    """Carried types general enough for every iteration, and what `outputs_of` made from them.

    `outputs_of(types)` types (or compiles) the body for carried inputs
    `types` and returns the carried outputs' types with its product.
    """
    types = list(initial)
    for _ in range(_MAX_WIDENINGS):
        outs, product = outputs_of(types)
        widened = [join_types(t, o) for t, o in zip(types, outs)]
        if widened == types:
            return types, product
        types = widened
    raise error("the types of loop-carried values do not settle: "
                + ", ".join(t.describe() if t is not None else "?" for t in types))


def _truth(cond: Any, label: str) -> bool:
    """A condition tensor (one element) as a Python bool."""
    arr = np.asarray(cond)
    if arr.size != 1:
        raise ValueError(f"{label}: the condition must have exactly one element, got shape {list(arr.shape)}")
    return bool(arr.reshape(-1)[0])


def _empty_stack(t: Type | None, leading: tuple[int, ...]) -> np.ndarray:
    """The stack of zero iterations' outputs: leading dims (holding a 0) then the body
    output's shape where known (unknown dims are 0 too: there are no elements)."""
    elem = t.elem if isinstance(t, TensorType) and t.elem is not None else dtypes.FLOAT
    shape = t.shape if isinstance(t, TensorType) and t.shape is not None else ()
    return np.zeros(leading + tuple(d if isinstance(d, int) else 0 for d in shape),
                    dtype=dtypes.storage_dtype(elem))


def _stack(items: list[np.ndarray], label: str, what: str) -> np.ndarray:
    shapes = {x.shape for x in items}
    if len(shapes) > 1:
        raise ValueError(f"{label}: {what} has different shapes in different iterations: "
                         f"{sorted(list(s) for s in shapes)[:4]}")
    return np.stack(items)


def _check_body_arity(ctx: InferContext | OpContext, g: Graph, n_in: int, n_out_min: int, what: str) -> None:
    if len(g.inputs) != n_in:
        raise ctx.error(f"{what} takes {len(g.inputs)} inputs but the node gives it {n_in}")
    if len(g.outputs) < n_out_min:
        raise ctx.error(f"{what} has {len(g.outputs)} outputs but needs at least {n_out_min}")


# ------------------------------------------------------------------ If

def _conflict(a: Type | None, b: Type | None) -> bool:
    """True when two branch output types cannot describe the same value.

    Shapes may differ (the join loosens them) and a plain value may meet an
    optional one; kinds (tensor, sequence) and element types must agree.
    """
    a = a.elem if isinstance(a, OptionalType) else a
    b = b.elem if isinstance(b, OptionalType) else b
    if a is None or b is None:
        return False
    if isinstance(a, SequenceType) and isinstance(b, SequenceType):
        return _conflict(a.elem, b.elem)
    if isinstance(a, TensorType) and isinstance(b, TensorType):
        return a.elem is not None and b.elem is not None and a.elem != b.elem
    return True


def _if_rule(ctx: InferContext) -> list[Type | None]:
    s = ctx.shape(0)
    if s is not None and any(isinstance(d, int) and d != 1 for d in s):
        raise ctx.error(f"the condition must have one element, got shape {shape_str(s)}")
    then_g, else_g = ctx.attr("then_branch"), ctx.attr("else_branch")
    if len(then_g.outputs) != len(else_g.outputs) or len(then_g.outputs) != ctx.n_out:
        raise ctx.error(f"then_branch has {len(then_g.outputs)} outputs and else_branch "
                        f"{len(else_g.outputs)}, but the node has {ctx.n_out}")
    cond = ctx.value(0)
    if isinstance(cond, np.ndarray) and cond.size == 1:
        return ctx.subgraph("then_branch" if bool(cond.reshape(-1)[0]) else "else_branch", [])
    then_t, else_t = ctx.subgraph("then_branch", []), ctx.subgraph("else_branch", [])
    out = []
    for i, (a, b) in enumerate(zip(then_t, else_t)):
        if a is not None and b is not None and _conflict(a, b):
            raise ctx.error(f"output {i} is {a.describe()} in then_branch but {b.describe()} in else_branch")
        out.append(join_types(a, b))
    return out


@op("If", since=1, infer=_if_rule, exotic=True)
def if_(ctx: OpContext) -> Kernel:
    """Run then_branch or else_branch; a condition known at load compiles only its branch."""
    label = ctx.node.label()
    cond = ctx.const(0)
    if cond is not None:
        branch = ctx.subgraph("then_branch" if _truth(cond, label) else "else_branch")
        return lambda c, outer=None: branch([], outer or {})
    then_b, else_b = ctx.subgraph("then_branch"), ctx.subgraph("else_branch")

    def run(c: np.ndarray, outer: dict[str, Any] | None = None) -> list[Any]:
        return (then_b if _truth(c, label) else else_b)([], outer or {})

    return run


# ------------------------------------------------------------------ Loop

_ITER_TYPES: list[Type | None] = [tensor(dtypes.INT64, ()), tensor(dtypes.BOOL, ())]


def _loop_layout(ctx: InferContext | OpContext) -> tuple[Graph, int, int]:
    """The body, the number of loop-carried values and of scan outputs."""
    body = ctx.attr("body")
    n_carried = len(ctx.node.inputs) - 2
    if n_carried < 0:
        raise ctx.error("needs the inputs M and cond (either may be empty)")
    _check_body_arity(ctx, body, n_carried + 2, n_carried + 1, "the body")
    n_scan = len(body.outputs) - 1 - n_carried
    if len(ctx.node.outputs) > n_carried + n_scan:
        raise ctx.error(f"has {len(ctx.node.outputs)} outputs but its body yields {n_carried} carried "
                        f"values and {n_scan} scan outputs")
    return body, n_carried, n_scan


def _loop_rule(ctx: InferContext) -> list[Type | None]:
    for i, (name, elem) in enumerate((("M", dtypes.INT64), ("cond", dtypes.BOOL))):
        e = ctx.elem(i)
        if ctx.has(i) and e is not None and e != elem:
            raise ctx.error(f"{name} must be {dtypes.type_name(elem)}, got {dtypes.type_name(e)}")
    _, n_carried, n_scan = _loop_layout(ctx)

    def outputs_of(types: list[Type | None]) -> tuple[list[Type | None], list[Type | None]]:
        outs = ctx.subgraph("body", _ITER_TYPES + types)
        return outs[1:1 + n_carried], outs

    carried, outs = _fixpoint([ctx.type(2 + i) for i in range(n_carried)], outputs_of, ctx.error)
    scans = []
    for t in outs[1 + n_carried:]:
        if t is not None and not isinstance(t, TensorType):
            raise ctx.error(f"scan outputs must be tensors, the body yields {t.describe()}")
        shape = t.shape if t is not None else None
        scans.append(tensor(getattr(t, "elem", None), None if shape is None else (None,) + tuple(shape)))
    return (carried + scans)[:ctx.n_out]


@op("Loop", since=1, infer=_loop_rule, exotic=True)
def loop(ctx: OpContext) -> Kernel:
    """Run the body while the iteration count is below M and the condition holds.

    Carried values feed the next iteration; scan outputs are stacked on a
    new leading axis.  The body's condition output is read every iteration,
    as onnxruntime does, even when the node has no cond input.
    """
    label = ctx.node.label()
    _, n_carried, n_scan = _loop_layout(ctx)

    def outputs_of(types: list[Type | None]) -> tuple[list[Type | None], Any]:
        sub = ctx.subgraph("body", _ITER_TYPES + types)
        return sub.output_types[1:1 + n_carried], sub

    _, body = _fixpoint(list(ctx.in_types[2:2 + n_carried]), outputs_of, ctx.error)
    scan_types = body.output_types[1 + n_carried:]

    def run(m: np.ndarray | None, cond: np.ndarray | None, *carried: Any,
            outer: dict[str, Any] | None = None) -> list[Any]:
        outer = outer or {}
        trips = int(np.asarray(m).reshape(-1)[0]) if m is not None else None
        go = _truth(cond, label) if cond is not None else True
        values = list(carried)
        scans: list[list[np.ndarray]] = [[] for _ in range(n_scan)]
        i = 0
        while go and (trips is None or i < trips):
            outs = body([np.array(i, dtype=np.int64), np.array(go), *values], outer)
            go = _truth(outs[0], label)
            values = outs[1:1 + n_carried]
            for k in range(n_scan):
                scans[k].append(outs[1 + n_carried + k])
            i += 1
        stacked = [_stack(s, label, f"scan output {k}") if s else _empty_stack(scan_types[k], (0,))
                   for k, s in enumerate(scans)]
        return values + stacked

    return run


# ------------------------------------------------------------------ Scan

class _ScanLayout:
    """Scan's attributes and input split, validated once (rule and kernel share it)."""

    def __init__(self, ctx: InferContext | OpContext, opset: int):
        self.batched = opset < 9  # Scan-8: batch axis 0, scan axis 1, optional sequence_lens first
        self.body: Graph = ctx.attr("body")
        self.n_scan = ctx.attr("num_scan_inputs")
        first = 1 if self.batched else 0
        self.n_state = len(ctx.node.inputs) - first - self.n_scan
        if self.n_scan < 1 or self.n_state < 0:
            raise ctx.error(f"num_scan_inputs={self.n_scan} does not fit its {len(ctx.node.inputs)} inputs")
        _check_body_arity(ctx, self.body, self.n_state + self.n_scan, self.n_state, "the body")
        self.n_scan_out = len(self.body.outputs) - self.n_state
        if self.batched:
            self.in_dirs = list(ctx.attr("directions", [0] * self.n_scan))
            self.in_axes = [1] * self.n_scan
            self.out_dirs, self.out_axes = [0] * self.n_scan_out, [1] * self.n_scan_out
        else:
            self.in_dirs = list(ctx.attr("scan_input_directions", [0] * self.n_scan))
            self.in_axes = list(ctx.attr("scan_input_axes", [0] * self.n_scan))
            self.out_dirs = list(ctx.attr("scan_output_directions", [0] * self.n_scan_out))
            self.out_axes = list(ctx.attr("scan_output_axes", [0] * self.n_scan_out))
        for name, vals, n in (("input directions", self.in_dirs, self.n_scan),
                              ("input axes", self.in_axes, self.n_scan),
                              ("output directions", self.out_dirs, self.n_scan_out),
                              ("output axes", self.out_axes, self.n_scan_out)):
            if len(vals) != n:
                raise ctx.error(f"scan {name} {vals} has {len(vals)} entries, expected {n}")
        if any(d not in (0, 1) for d in self.in_dirs + self.out_dirs):
            raise ctx.error(f"directions must be 0 or 1, got inputs {self.in_dirs} outputs {self.out_dirs}")


def _scan_rule(ctx: InferContext) -> list[Type | None]:
    lay = _ScanLayout(ctx, ctx.opset)
    first = 1 if lay.batched else 0
    lead = 1 if lay.batched else 0  # the batch dim the body does not see
    length: Any = None
    batch: Any = None
    elem_types: list[Type | None] = []
    for k in range(lay.n_scan):
        t = ctx.type(first + lay.n_state + k)
        if not isinstance(t, TensorType) or t.shape is None:
            elem_types.append(tensor(getattr(t, "elem", None)))
            continue
        shape = t.shape
        rank = len(shape)
        if not -rank <= lay.in_axes[k] < rank or rank <= lead:
            raise ctx.error(f"scan input {k} of shape {shape_str(shape)} has no axis {lay.in_axes[k]}")
        ax = lay.in_axes[k] % rank
        d = shape[ax]
        if isinstance(d, int) and isinstance(length, int) and d != length:
            raise ctx.error(f"scan inputs have different lengths: {length} and {d} (input {k}, shape "
                            f"{shape_str(shape)})")
        if length is None or isinstance(d, int):
            length = d
        if lay.batched and batch is None:
            batch = shape[0]
        elem_types.append(tensor(t.elem, [x for i, x in enumerate(shape) if i != ax and i >= lead]))
    states = []
    for i in range(lay.n_state):
        t = ctx.type(first + i)
        if lay.batched and isinstance(t, TensorType) and t.shape is not None:
            if not t.shape:
                raise ctx.error(f"state {i} must have a batch axis, got shape {shape_str(t.shape)}")
            t = tensor(t.elem, t.shape[1:])
        states.append(t)

    def outputs_of(types: list[Type | None]) -> tuple[list[Type | None], list[Type | None]]:
        outs = ctx.subgraph("body", types + elem_types)
        return outs[:lay.n_state], outs

    states, outs = _fixpoint(states, outputs_of, ctx.error)
    result: list[Type | None] = []
    for t in states:
        if lay.batched and isinstance(t, TensorType):
            t = tensor(t.elem, None if t.shape is None else (batch,) + tuple(t.shape))
        result.append(t)
    for k, t in enumerate(outs[lay.n_state:]):
        if not isinstance(t, TensorType) or t.shape is None:
            result.append(tensor(getattr(t, "elem", None)))
            continue
        if lay.batched:
            result.append(tensor(t.elem, (batch, length) + tuple(t.shape)))
            continue
        rank = len(t.shape) + 1
        if not -rank <= lay.out_axes[k] < rank:
            raise ctx.error(f"scan output axis {lay.out_axes[k]} is out of range for rank {rank}")
        dims = list(t.shape)
        dims.insert(lay.out_axes[k] % rank, length)
        result.append(tensor(t.elem, dims))
    return result


def _scan_body(ctx: OpContext, lay: _ScanLayout) -> Any:
    """Compile the body with state types that hold in every iteration."""
    first = 1 if lay.batched else 0
    lead = 1 if lay.batched else 0

    def strip(t: Type | None, axes: Sequence[int]) -> Type | None:
        if not isinstance(t, TensorType) or t.shape is None:
            return t
        rank = len(t.shape)
        drop = {a % rank for a in axes if -rank <= a < rank}
        return tensor(t.elem, [d for i, d in enumerate(t.shape) if i not in drop])

    scan_types = [strip(ctx.in_types[first + lay.n_state + k], ([0] if lead else []) + [lay.in_axes[k]])
                  for k in range(lay.n_scan)]
    states = [strip(ctx.in_types[first + i], [0] if lead else []) for i in range(lay.n_state)]

    def outputs_of(types: list[Type | None]) -> tuple[list[Type | None], Any]:
        sub = ctx.subgraph("body", types + scan_types)
        return sub.output_types[:lay.n_state], sub

    return _fixpoint(states, outputs_of, ctx.error)[1]


@op("Scan", since=9, infer=_scan_rule, exotic=True)
def scan(ctx: OpContext) -> Kernel:
    """Iterate the body over slices of the scan inputs (along their scan axes, optionally
    reversed), carrying state; per-iteration outputs are stacked along the output axes."""
    lay = _ScanLayout(ctx, ctx.opset)
    body = _scan_body(ctx, lay)
    out_types = body.output_types[lay.n_state:]
    label = ctx.node.label()

    def run(*args: Any, outer: dict[str, Any] | None = None) -> list[Any]:
        outer = outer or {}
        states = list(args[:lay.n_state])
        seqs = []
        for k, x in enumerate(args[lay.n_state:]):
            if not -x.ndim <= lay.in_axes[k] < x.ndim:
                raise ValueError(f"{label}: scan input {k} of shape {list(x.shape)} has no axis {lay.in_axes[k]}")
            v = np.moveaxis(x, lay.in_axes[k], 0)
            seqs.append(v[::-1] if lay.in_dirs[k] else v)
        lengths = {s.shape[0] for s in seqs}
        if len(lengths) > 1:
            raise ValueError(f"{label}: scan inputs have different lengths along their scan axes: "
                             f"{sorted(lengths)}")
        n = lengths.pop()
        acc: list[list[np.ndarray]] = [[] for _ in range(lay.n_scan_out)]
        for t in range(n):
            outs = body(states + [s[t] for s in seqs], outer)
            states = outs[:lay.n_state]
            for k in range(lay.n_scan_out):
                acc[k].append(outs[lay.n_state + k])
        result = states
        for k, items in enumerate(acc):
            y = _stack(items, label, f"scan output {k}") if items else _empty_stack(out_types[k], (0,))
            if lay.out_dirs[k]:
                y = y[::-1]
            if not -y.ndim <= lay.out_axes[k] < y.ndim:
                raise ValueError(f"{label}: scan output axis {lay.out_axes[k]} is out of range for rank {y.ndim}")
            result.append(np.ascontiguousarray(np.moveaxis(y, 0, lay.out_axes[k])))
        return result

    return run


@op("Scan", since=8, infer=_scan_rule, exotic=True)
def scan8(ctx: OpContext) -> Kernel:
    """Scan-8: inputs and states carry a batch axis 0 (the body sees one batch entry),
    scan inputs are iterated along axis 1, and `sequence_lens` may stop an entry early
    (its scan outputs are zero-padded to the longest)."""
    lay = _ScanLayout(ctx, ctx.opset)
    body = _scan_body(ctx, lay)
    out_types = body.output_types[lay.n_state:]
    label = ctx.node.label()

    def run(seq_lens: np.ndarray | None, *args: Any, outer: dict[str, Any] | None = None) -> list[Any]:
        outer = outer or {}
        states, xs = args[:lay.n_state], args[lay.n_state:]
        if any(x.ndim < 2 for x in xs) or len({x.shape[:2] for x in xs}) > 1:
            raise ValueError(f"{label}: scan inputs must share [batch, sequence] leading dims, got shapes "
                             f"{[list(x.shape) for x in xs]}")
        batch, steps = xs[0].shape[:2]
        lens = np.full(batch, steps, dtype=np.int64) if seq_lens is None else np.asarray(seq_lens).reshape(-1)
        if lens.shape != (batch,) or np.any(lens < 0) or np.any(lens > steps):
            raise ValueError(f"{label}: sequence_lens {lens.tolist()} must give one length in 0..{steps} "
                             f"per batch entry ({batch})")
        finals: list[list[Any]] = [[] for _ in range(lay.n_state)]
        per_batch: list[list[list[np.ndarray]]] = []
        for b in range(batch):
            st = [s[b] for s in states]
            n = int(lens[b])
            acc: list[list[np.ndarray]] = [[] for _ in range(lay.n_scan_out)]
            for t in range(n):
                outs = body(st + [x[b, n - 1 - t if lay.in_dirs[k] else t] for k, x in enumerate(xs)], outer)
                st = outs[:lay.n_state]
                for k in range(lay.n_scan_out):
                    acc[k].append(outs[lay.n_state + k])
            for i, v in enumerate(st):
                finals[i].append(v)
            per_batch.append(acc)
        result: list[Any] = [_stack(f, label, f"state {i}") if f else states[i] for i, f in enumerate(finals)]
        for k in range(lay.n_scan_out):
            items = [x for acc in per_batch for x in acc[k]]
            if not items:
                result.append(_empty_stack(out_types[k], (batch, steps)))
                continue
            y = np.zeros((batch, steps) + items[0].shape, dtype=items[0].dtype)
            for b, acc in enumerate(per_batch):
                if acc[k]:
                    y[b, :len(acc[k])] = _stack(acc[k], label, f"scan output {k}")
            result.append(y)
        return result

    return run
