"""Sequences and optionals: Sequence*, SplitToSequence, ConcatFromSequence, Optional*.

At run time a sequence is a Python list of arrays and an empty optional is
None (a present optional is just its value).  Kernels build new lists and
never mutate the sequences they are given: the same list may be held by
other nodes or loop iterations.  All these ops only move data, so they take
bfloat16/float8 storage as it is (`exotic=True`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import dtypes
from ..ir import OptionalType, SequenceType, TensorType, Type
from ..shapes import InferContext, normalize_axis, shape_str, tensor
from .registry import Kernel, OpContext, op


# ------------------------------------------------------------------ type helpers

def join_types(a: Type | None, b: Type | None) -> Type | None:
    """The most precise type that holds values of both `a` and `b`.

    Used where one value may come from several places: sequence elements of
    different shapes, If branches, Loop/Scan carried values (whose dims may
    change between iterations).  Dims that differ become unknown; a plain
    value joined with an optional one is optional (a present optional is the
    value itself).
    """
    if a is None or b is None:
        return None
    if isinstance(a, TensorType) and isinstance(b, TensorType):
        elem = a.elem if a.elem is not None else b.elem
        if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
            return TensorType(elem, None)
        return TensorType(elem, tuple(x if x == y else None for x, y in zip(a.shape, b.shape)))
    if isinstance(a, OptionalType) or isinstance(b, OptionalType):
        inner_a = a.elem if isinstance(a, OptionalType) else a
        inner_b = b.elem if isinstance(b, OptionalType) else b
        return OptionalType(join_types(inner_a, inner_b))
    if isinstance(a, SequenceType) and isinstance(b, SequenceType):
        return SequenceType(join_types(a.elem, b.elem))
    return None


def _describe(t: Type | None) -> str:
    return t.describe() if t is not None else "?"


def _seq_elem(ctx: InferContext, i: int) -> Type | None:
    """Element type of sequence input i; an error if the input is not a sequence."""
    t = ctx.type(i)
    if t is None:
        return None
    if not isinstance(t, SequenceType):
        raise ctx.error(f"input {i} must be a sequence, got {_describe(t)}")
    return t.elem


def _check_same_elem(ctx: InferContext, a: Type | None, b: Type | None, what: str) -> None:
    ea, eb = getattr(a, "elem", None), getattr(b, "elem", None)
    if isinstance(ea, int) and isinstance(eb, int) and ea != eb:
        raise ctx.error(f"{what}: element types differ ({_describe(a)} vs {_describe(b)})")


def _position(pos: np.ndarray, n: int, allow_end: bool, node_label: str) -> int:
    """A sequence position input as an index into a list of `n` items.

    Insert may address one past the end (`allow_end`); negatives count from the back.
    """
    p = int(np.asarray(pos).reshape(-1)[0])
    hi = n if allow_end else n - 1
    if not -n <= p <= hi:
        raise IndexError(f"{node_label}: position {p} is out of range for a sequence of length {n} "
                         f"(valid: {-n}..{hi})")
    return p + n if p < 0 else p


def _rule_position(ctx: InferContext, i: int) -> None:
    s = ctx.shape(i)
    if ctx.has(i) and s is not None and (len(s) > 1 or any(isinstance(d, int) and d != 1 for d in s)):
        raise ctx.error(f"position must be a scalar, got shape {shape_str(s)}")
    e = ctx.elem(i)
    if ctx.has(i) and e is not None and e not in (dtypes.INT32, dtypes.INT64):
        raise ctx.error(f"position must be int32 or int64, got {dtypes.type_name(e)}")


# ------------------------------------------------------------------ sequence construction

def _construct_rule(ctx: InferContext) -> list[Type | None]:
    if ctx.n_in == 0:
        raise ctx.error("needs at least one input tensor")
    elem = ctx.type(0)
    for i in range(1, ctx.n_in):
        _check_same_elem(ctx, elem, ctx.type(i), f"input {i}")
        elem = join_types(elem, ctx.type(i))
    return [SequenceType(elem)]


@op("SequenceConstruct", since=11, infer=_construct_rule, exotic=True)
def sequence_construct(ctx: OpContext) -> Kernel:
    """A sequence of the input tensors, in order."""
    return lambda *xs: (list(xs),)


def _empty_rule(ctx: InferContext) -> list[Type | None]:
    dtype = ctx.attr("dtype", dtypes.FLOAT)
    if dtype not in dtypes.ELEM_TYPES:
        raise ctx.error(f"dtype {dtype} is not an ONNX element type")
    return [SequenceType(tensor(dtype))]


@op("SequenceEmpty", since=11, infer=_empty_rule, exotic=True)
def sequence_empty(ctx: OpContext) -> Kernel:
    """An empty sequence; `dtype` only types it."""
    return lambda: ([],)


def _at_rule(ctx: InferContext) -> list[Type | None]:
    _rule_position(ctx, 1)
    return [_seq_elem(ctx, 0)]


@op("SequenceAt", since=11, infer=_at_rule, exotic=True)
def sequence_at(ctx: OpContext) -> Kernel:
    """The tensor at `position` (negative counts from the back)."""
    label = ctx.node.label()

    def run(seq: list[np.ndarray], pos: np.ndarray) -> tuple[np.ndarray]:
        return (seq[_position(pos, len(seq), False, label)],)

    return run


def _insert_rule(ctx: InferContext) -> list[Type | None]:
    _rule_position(ctx, 2)
    elem = _seq_elem(ctx, 0)
    _check_same_elem(ctx, elem, ctx.type(1), "inserted tensor")
    t = ctx.type(1)
    if t is not None and not isinstance(t, TensorType):
        raise ctx.error(f"input 1 must be a tensor, got {_describe(t)}")
    return [SequenceType(join_types(elem, t) if elem is not None else tensor(getattr(t, "elem", None)))]


@op("SequenceInsert", since=11, infer=_insert_rule, exotic=True)
def sequence_insert(ctx: OpContext) -> Kernel:
    """A new sequence with the tensor inserted at `position` (default: appended)."""
    label = ctx.node.label()

    def run(seq: list[np.ndarray], x: np.ndarray, pos: np.ndarray | None = None) -> tuple[list[np.ndarray]]:
        if pos is None:
            return (seq + [x],)
        p = _position(pos, len(seq), True, label)
        return (seq[:p] + [x] + seq[p:],)

    return run


def _erase_rule(ctx: InferContext) -> list[Type | None]:
    _rule_position(ctx, 1)
    return [SequenceType(_seq_elem(ctx, 0))]


@op("SequenceErase", since=11, infer=_erase_rule, exotic=True)
def sequence_erase(ctx: OpContext) -> Kernel:
    """A new sequence without the tensor at `position` (default: the last)."""
    label = ctx.node.label()

    def run(seq: list[np.ndarray], pos: np.ndarray | None = None) -> tuple[list[np.ndarray]]:
        if not seq:
            raise IndexError(f"{label}: cannot erase from an empty sequence")
        p = _position(pos if pos is not None else np.array(-1), len(seq), False, label)
        return (seq[:p] + seq[p + 1:],)

    return run


def _length_rule(ctx: InferContext) -> list[Type | None]:
    _seq_elem(ctx, 0)
    return [tensor(dtypes.INT64, ())]


@op("SequenceLength", since=11, infer=_length_rule, exotic=True)
def sequence_length(ctx: OpContext) -> Kernel:
    """Number of tensors in the sequence, as an int64 scalar."""
    return lambda seq: (np.array(len(seq), dtype=np.int64),)


# ------------------------------------------------------------------ split / concat

def _split_rule(ctx: InferContext) -> list[Type | None]:
    shape = ctx.shape(0)
    elem = ctx.elem(0)
    keepdims = ctx.attr("keepdims", 1)
    if shape is None:
        return [SequenceType(tensor(elem))]
    axis = normalize_axis(ctx.attr("axis", 0), len(shape), ctx.node)
    dims = list(shape)
    if not ctx.has(1):
        if keepdims:
            dims[axis] = 1
        else:
            del dims[axis]
        return [SequenceType(tensor(elem, dims))]
    split_shape = ctx.shape(1)
    if split_shape is not None and len(split_shape) > 1:
        raise ctx.error(f"split must be a scalar or 1-D, got shape {shape_str(split_shape)}")
    value = ctx.value(1)
    d = dims[axis]
    piece: int | None = None
    if isinstance(value, np.ndarray):
        sizes = [int(v) for v in value.reshape(-1)]
        if any(v < 0 for v in sizes) or (value.ndim == 0 and sizes[0] == 0):
            raise ctx.error(f"split {sizes} must be positive")
        if value.ndim == 0:
            if isinstance(d, int) and d % sizes[0] == 0:
                piece = sizes[0]
        else:
            if isinstance(d, int) and sum(sizes) != d:
                raise ctx.error(f"split {sizes} sums to {sum(sizes)} but axis {axis} of shape "
                                f"{shape_str(shape)} is {d}")
            if len(set(sizes)) == 1:
                piece = sizes[0]
    dims[axis] = piece
    return [SequenceType(tensor(elem, dims))]


@op("SplitToSequence", since=11, infer=_split_rule, exotic=True)
def split_to_sequence(ctx: OpContext) -> Kernel:
    """Split along `axis` into a sequence: pieces of 1 (squeezed unless keepdims),
    of a scalar size (the last may be shorter), or of the listed sizes."""
    axis_attr = ctx.attr("axis", 0)
    keepdims = ctx.attr("keepdims", 1)
    label = ctx.node.label()

    def run(x: np.ndarray, split: np.ndarray | None = None) -> tuple[list[np.ndarray]]:
        axis = axis_attr % x.ndim if -x.ndim <= axis_attr < x.ndim else None
        if axis is None:
            raise ValueError(f"{label}: axis {axis_attr} is out of range for shape {list(x.shape)}")
        n = x.shape[axis]
        if split is None:
            pieces = np.split(x, n, axis=axis) if n else []
            return ([p.squeeze(axis) if not keepdims else p for p in pieces],)
        if split.ndim == 0:
            size = int(split)
            if size <= 0:
                raise ValueError(f"{label}: a scalar split must be positive, got {size}")
            bounds = list(range(size, n, size))
        else:
            sizes = [int(s) for s in split]
            if sum(sizes) != n or any(s < 0 for s in sizes):
                raise ValueError(f"{label}: split {sizes} does not partition axis {axis} of shape "
                                 f"{list(x.shape)} (size {n})")
            bounds = list(np.cumsum(sizes)[:-1])
        return (np.split(x, bounds, axis=axis),)

    return run


def _concat_rule(ctx: InferContext) -> list[Type | None]:
    elem_t = _seq_elem(ctx, 0)
    elem = getattr(elem_t, "elem", None)
    new_axis = ctx.attr("new_axis", 0)
    axis = ctx.attr("axis")
    shape = elem_t.shape if isinstance(elem_t, TensorType) else None
    if shape is None:
        return [tensor(elem)]
    rank = len(shape) + (1 if new_axis else 0)
    if not -rank <= axis < rank:
        raise ctx.error(f"axis {axis} is out of range for sequence elements of shape {shape_str(shape)}"
                        f"{' with new_axis' if new_axis else ''}")
    axis %= rank
    dims = list(shape)
    if new_axis:
        dims.insert(axis, None)
    else:
        dims[axis] = None
    return [tensor(elem, dims)]


@op("ConcatFromSequence", since=11, infer=_concat_rule, exotic=True)
def concat_from_sequence(ctx: OpContext) -> Kernel:
    """Concatenate the sequence's tensors along `axis`, or stack them on a new one (`new_axis`)."""
    axis = ctx.attr("axis")
    new_axis = ctx.attr("new_axis", 0)
    label = ctx.node.label()

    def run(seq: list[np.ndarray]) -> tuple[np.ndarray]:
        if not seq:
            raise ValueError(f"{label}: cannot concatenate an empty sequence")
        rank = seq[0].ndim + (1 if new_axis else 0)
        if not -rank <= axis < rank:
            raise ValueError(f"{label}: axis {axis} is out of range for sequence tensors of shape "
                             f"{list(seq[0].shape)}{' with new_axis' if new_axis else ''}")
        a = axis % rank
        kept = {x.shape if new_axis else x.shape[:a] + x.shape[a + 1:] for x in seq}
        if len(kept) > 1 or {x.ndim for x in seq} != {seq[0].ndim}:
            raise ValueError(f"{label}: sequence tensors of shapes {[list(x.shape) for x in seq]} cannot be "
                             f"{'stacked' if new_axis else 'concatenated'} on axis {axis}")
        return (np.stack(seq, axis=a) if new_axis else np.concatenate(seq, axis=a),)

    return run


# ------------------------------------------------------------------ SequenceMap

def _map_in_types(ctx: InferContext) -> list[Type | None]:
    """The body's inputs: one element of each sequence input, other inputs whole."""
    out = []
    for i in range(ctx.n_in):
        t = ctx.type(i)
        if i == 0 and t is not None and not isinstance(t, SequenceType):
            raise ctx.error(f"input 0 must be a sequence, got {_describe(t)}")
        out.append(t.elem if isinstance(t, SequenceType) else t)
    return out


def _map_rule(ctx: InferContext) -> list[Type | None]:
    outs = ctx.subgraph("body", _map_in_types(ctx))
    return [SequenceType(t) for t in outs]


@op("SequenceMap", since=17, infer=_map_rule, exotic=True)
def sequence_map(ctx: OpContext) -> Kernel:
    """Run `body` once per element of the input sequence(s); each output is a sequence.

    Sequence inputs are indexed in step with the first; tensor inputs are
    passed whole to every iteration.
    """
    body = ctx.subgraph("body", [t.elem if isinstance(t, SequenceType) else t for t in ctx.in_types])
    n_out = len(ctx.node.outputs)
    label = ctx.node.label()

    def run(*args: Any, outer: dict[str, Any] | None = None) -> list[list[Any]]:
        n = len(args[0])
        is_seq = [isinstance(a, list) for a in args]
        for i, a in enumerate(args):
            if is_seq[i] and len(a) != n:
                raise ValueError(f"{label}: input {i} is a sequence of length {len(a)} but input 0 has {n}")
        results: list[list[Any]] = [[] for _ in range(n_out)]
        for k in range(n):
            outs = body([a[k] if is_seq[i] else a for i, a in enumerate(args)], outer or {})
            for j in range(n_out):
                results[j].append(outs[j])
        return results

    return run


# ------------------------------------------------------------------ optionals

def _optional_rule(ctx: InferContext) -> list[Type | None]:
    if ctx.has(0):
        return [OptionalType(ctx.type(0))]
    t = ctx.attr("type", None)
    if t is None:
        raise ctx.error("needs an input or a 'type' attribute to type the empty optional")
    return [OptionalType(t)]


@op("Optional", since=15, infer=_optional_rule, exotic=True)
def optional(ctx: OpContext) -> Kernel:
    """An optional holding the input, or an empty one (None) when the input is absent."""
    return lambda x=None: (x,)


def _has_element_rule(ctx: InferContext) -> list[Type | None]:
    t = ctx.type(0)
    if ctx.has(0) and ctx.opset < 18 and t is not None and not isinstance(t, OptionalType):
        raise ctx.error(f"input must be an optional before opset 18, got {_describe(t)}")
    return [tensor(dtypes.BOOL, ())]


@op("OptionalHasElement", since=15, infer=_has_element_rule, exotic=True)
def optional_has_element(ctx: OpContext) -> Kernel:
    """True if the optional (or, from opset 18, a plain tensor/sequence) input holds a value."""
    return lambda x=None: (np.array(x is not None),)


def _get_element_rule(ctx: InferContext) -> list[Type | None]:
    t = ctx.type(0)
    if isinstance(t, OptionalType):
        return [t.elem]
    if ctx.opset < 18 and t is not None:
        raise ctx.error(f"input must be an optional before opset 18, got {_describe(t)}")
    return [t]


@op("OptionalGetElement", since=15, infer=_get_element_rule, exotic=True)
def optional_get_element(ctx: OpContext) -> Kernel:
    """The value inside an optional; an empty optional is an error."""
    label = ctx.node.label()

    def run(x: Any = None) -> tuple[Any]:
        if x is None:
            raise ValueError(f"{label}: the optional input is empty")
        return (x,)

    return run

