"""The ai.onnx.ml domain: TreeEnsemble, LabelEncoder, ArrayFeatureExtractor, Binarizer.

Attributes hold the whole model (trees, vocabularies), so builders turn them
into flat numpy tables once and kernels only index into those tables.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .. import dtypes
from ..errors import ShapeInferenceError
from ..ir import Dim, Tensor, Type
from ..shapes import InferContext, dim_mul, shape_str, tensor
from ..special import erf
from .registry import OpContext, op

ML = "ai.onnx.ml"


def _tensor_attr(value: Any) -> np.ndarray:
    """A TENSOR attribute's values as a flat array."""
    arr = value.array if isinstance(value, Tensor) else np.asarray(value)
    return arr.reshape(-1)


# ------------------------------------------------------------------ Binarizer

def _binarizer_rule(ctx: InferContext) -> list[Type | None]:
    elem = ctx.elem(0)
    if elem is not None and elem not in (dtypes.FLOAT, dtypes.DOUBLE, dtypes.INT64, dtypes.INT32):
        raise ctx.error(f"input must be float, double, int64 or int32, got {dtypes.type_name(elem)}")
    return [ctx.type(0)]


@op("Binarizer", since=1, domain=ML, infer=_binarizer_rule)
def binarizer(ctx: OpContext) -> Callable[[np.ndarray], tuple[np.ndarray]]:
    """1 where x > threshold, else 0 (NaN included, as the spec words it)."""
    threshold = float(ctx.attr("threshold", 0.0))
    return lambda x: (np.greater(x, threshold).astype(x.dtype),)


# ------------------------------------------------------------------ ArrayFeatureExtractor

def _afe_rule(ctx: InferContext) -> list[Type | None]:
    elem = ctx.elem(0)
    if elem is not None and elem not in (dtypes.FLOAT, dtypes.DOUBLE, dtypes.INT64, dtypes.INT32, dtypes.STRING):
        raise ctx.error(f"X must be float, double, int64, int32 or string, got {dtypes.type_name(elem)}")
    if ctx.elem(1) not in (None, dtypes.INT64):
        raise ctx.error(f"Y (indices) must be int64, got {dtypes.type_name(ctx.elem(1))}")
    x, y = ctx.shape(0), ctx.shape(1)
    if x is None:
        return [tensor(elem)]
    if not x:
        raise ctx.error("X must have rank >= 1, got a scalar")
    count: Dim = None
    if y is not None:
        count = 1
        for d in y:
            count = dim_mul(count, d)
    return [tensor(elem, [1, count] if len(x) == 1 else [*x[:-1], count])]


@op("ArrayFeatureExtractor", since=1, domain=ML, infer=_afe_rule)
def array_feature_extractor(ctx: OpContext) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray]]:
    """Takes the flattened indices along the last axis; a 1-D X gives a [1, k] result (as onnxruntime)."""

    def run(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray]:
        idx = y.reshape(-1)
        n = x.shape[-1]
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ShapeInferenceError(
                f"indices {idx.tolist()[:8]} out of range for the last dim of X {list(x.shape)}")
        out = np.take(x, idx.astype(np.intp), axis=-1)
        return (out.reshape(1, -1) if x.ndim == 1 else out,)

    return run


# ------------------------------------------------------------------ LabelEncoder

_KEY_ATTRS = {"keys_strings": dtypes.STRING, "keys_int64s": dtypes.INT64, "keys_floats": dtypes.FLOAT}
_VALUE_ATTRS = {"values_strings": (dtypes.STRING, "default_string", "_Unused"),
                "values_int64s": (dtypes.INT64, "default_int64", -1),
                "values_floats": (dtypes.FLOAT, "default_float", -0.0)}


def _encoder_table(ctx: OpContext | InferContext) -> tuple[int, list, int, list, Any]:
    """(key elem, keys, value elem, values, default) from the keys_*/values_* attributes."""
    keys_set = [(n, e) for n, e in _KEY_ATTRS.items() if ctx.attr(n, None) is not None]
    vals_set = [n for n in _VALUE_ATTRS if ctx.attr(n, None) is not None]
    key_t = ctx.attr("keys_tensor", None) if ctx.opset >= 4 else None
    val_t = ctx.attr("values_tensor", None) if ctx.opset >= 4 else None
    if len(keys_set) + (key_t is not None) != 1 or len(vals_set) + (val_t is not None) != 1:
        raise ctx.error("exactly one keys_* and one values_* attribute must be set")
    if key_t is not None:
        key_elem, keys = key_t.elem, _tensor_attr(key_t).tolist()
    else:
        key_elem, keys = keys_set[0][1], list(ctx.attr(keys_set[0][0]))
    if val_t is not None:
        val_elem, values = val_t.elem, _tensor_attr(val_t).tolist()
        default_t = ctx.attr("default_tensor", None)
        if default_t is not None:
            default = _tensor_attr(default_t).tolist()[0]
        else:
            default = "_Unused" if val_elem == dtypes.STRING else (-0.0 if val_elem in dtypes.FLOAT_TYPES else -1)
    else:
        val_elem, default_name, fallback = _VALUE_ATTRS[vals_set[0]]
        values = list(ctx.attr(vals_set[0]))
        default = ctx.attr(default_name, fallback)
    if len(keys) != len(values):
        raise ctx.error(f"keys ({len(keys)}) and values ({len(values)}) must have the same length")
    return key_elem, keys, val_elem, values, default


def _encoder_rule(ctx: InferContext) -> list[Type | None]:
    if ctx.opset < 2:
        classes_in = ctx.elem(0)
        if classes_in not in (None, dtypes.STRING, dtypes.INT64):
            raise ctx.error(f"input must be string or int64, got {dtypes.type_name(classes_in)}")
        out = None if classes_in is None else (dtypes.INT64 if classes_in == dtypes.STRING else dtypes.STRING)
        return [tensor(out, ctx.shape(0))]
    key_elem, _, val_elem, _, _ = _encoder_table(ctx)
    elem = ctx.elem(0)
    if elem is not None and elem != key_elem:
        raise ctx.error(f"input is {dtypes.type_name(elem)} but the keys are {dtypes.type_name(key_elem)}")
    return [tensor(val_elem, ctx.shape(0))]


def _lookup_fn(keys: list, key_elem: int, last_wins: bool) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping an input array to positions in `keys` (len(keys) where absent).

    A repeated key maps to its last occurrence when `last_wins` (opset 4's
    rule), else to its first (onnxruntime's choice where the spec is
    silent).  NaN keys match any NaN input.
    """
    miss = len(keys)
    order = range(len(keys) - 1, -1, -1) if last_wins else range(len(keys))
    if key_elem == dtypes.STRING:
        index = {keys[i]: i for i in reversed(order)}
        return lambda x: np.fromiter((index.get(s, miss) for s in x.reshape(-1).tolist()), dtype=np.int64,
                                     count=x.size).reshape(x.shape)
    karr = np.asarray(keys, dtype=dtypes.storage_dtype(key_elem))
    is_float = karr.dtype.kind == "f"
    nan_pos = [i for i in order if is_float and math.isnan(keys[i])]
    nan_hit = nan_pos[0] if nan_pos else miss
    ranked = np.array([i for i in order if not (is_float and math.isnan(keys[i]))], dtype=np.int64)
    uniq, first = np.unique(karr[ranked], return_index=True)  # first in `order` = the occurrence that wins
    pos_of = ranked[first]

    def lookup(x: np.ndarray) -> np.ndarray:
        if uniq.size == 0:
            out = np.full(x.shape, miss, dtype=np.int64)
        else:
            p = np.minimum(np.searchsorted(uniq, x), uniq.size - 1)
            out = np.where(uniq[p] == x, pos_of[p], miss)
        if is_float:
            out = np.where(np.isnan(x), nan_hit, out)
        return out

    return lookup


def _values_table(values: list, default: Any, elem: int) -> np.ndarray:
    """values + [default] as an array of the output dtype, for indexing by lookup positions."""
    if elem == dtypes.STRING:
        table = np.empty(len(values) + 1, dtype=object)
        table[:] = [*values, default]
        return table
    return np.asarray([*values, default], dtype=dtypes.storage_dtype(elem))


@op("LabelEncoder", since=1, domain=ML, infer=_encoder_rule)
def label_encoder_1(ctx: OpContext) -> Callable[[np.ndarray], tuple[np.ndarray]]:
    """Opset 1: strings -> their index in classes_strings, or int64 -> the class at that index."""
    classes = list(ctx.attr("classes_strings", []))
    if ctx.in_elem(0) == dtypes.STRING:
        lookup = _lookup_fn(classes, dtypes.STRING, last_wins=False)
        table = _values_table(list(range(len(classes))), ctx.attr("default_int64", -1), dtypes.INT64)
        return lambda x: (table[lookup(x)],)
    table = _values_table(classes, ctx.attr("default_string", "_Unused"), dtypes.STRING)

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        idx = np.where((x >= 0) & (x < len(classes)), x, len(classes))
        return (table[idx],)

    return run


@op("LabelEncoder", since=2, domain=ML, infer=_encoder_rule)
def label_encoder(ctx: OpContext) -> Callable[[np.ndarray], tuple[np.ndarray]]:
    """Opsets 2 and 4 (which adds the *_tensor attributes): a key -> value map with a default,
    looked up by binary search (numbers) or dict (strings)."""
    key_elem, keys, val_elem, values, default = _encoder_table(ctx)
    lookup = _lookup_fn(keys, key_elem, last_wins=ctx.opset >= 4)
    table = _values_table(values, default, val_elem)
    return lambda x: (table[lookup(x)],)



# ------------------------------------------------------------------ TreeEnsemble

_LEQ, _LT, _GTE, _GT, _EQ, _NEQ, _MEMBER = range(7)
_SUM, _AVERAGE, _MIN, _MAX = 1, 0, 2, 3


def _probit(p: np.ndarray) -> np.ndarray:
    """The standard normal quantile, sqrt(2) * erfinv(2p - 1), to float64 accuracy.

    Winitzki's closed form (what onnxruntime evaluates, in float32) is off by
    up to 2e-3 and cancels catastrophically near p = 0.5, so it only seeds two
    Newton steps on the exact CDF.  p outside (0, 1) gives +-inf or NaN.
    """
    q = np.asarray(p, dtype=np.float64)
    x = 2 * q - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        ln = np.log((1 - x) * (1 + x))
        a = 0.147
        v = 2 / (math.pi * a) + 0.5 * ln
        z = math.sqrt(2) * np.sign(x) * np.sqrt(np.sqrt(v * v - ln / a) - v)
        inner = np.isfinite(z)
        for _ in range(2):
            cdf = 0.5 * (1 + erf(z[inner] / math.sqrt(2)))
            z[inner] -= (cdf - q[inner]) * math.sqrt(2 * math.pi) * np.exp(0.5 * z[inner] ** 2)
    return z.astype(np.asarray(p).dtype, copy=False)


def _post_transform(y: np.ndarray, kind: int) -> np.ndarray:
    if kind == 1:
        e = np.exp(y - y.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    if kind == 2:
        e = np.exp(-np.abs(y))
        return np.where(y >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    if kind == 3:
        nz = y != 0
        e = np.where(nz, np.exp(y - np.where(nz, y, -np.inf).max(axis=1, keepdims=True)), 0.0)
        s = e.sum(axis=1, keepdims=True)
        return np.divide(e, s, out=np.zeros_like(e), where=s > 0)
    if kind == 4:
        return _probit(y)
    return y


class _Forest:
    """Trees as parallel node arrays; `leaves(X)` walks every (sample, tree) pair one level per step."""

    def __init__(self, ctx: OpContext):
        a = ctx.attr
        self.feature = np.asarray(a("nodes_featureids"), dtype=np.int64)
        n = self.feature.size
        self.mode = _tensor_attr(a("nodes_modes")).astype(np.int64)
        self.split = _tensor_attr(a("nodes_splits")).astype(np.float64)
        self.true_id = np.asarray(a("nodes_truenodeids"), dtype=np.int64)
        self.false_id = np.asarray(a("nodes_falsenodeids"), dtype=np.int64)
        self.true_leaf = np.asarray(a("nodes_trueleafs"), dtype=bool)
        self.false_leaf = np.asarray(a("nodes_falseleafs"), dtype=bool)
        missing = a("nodes_missing_value_tracks_true", None)
        self.nan_true = np.asarray(missing, dtype=bool) if missing else np.zeros(n, bool)
        self.roots = np.asarray(a("tree_roots"), dtype=np.int64)
        self.weights = _tensor_attr(a("leaf_weights")).astype(np.float64)
        self.targets = np.asarray(a("leaf_targetids"), dtype=np.int64)
        lens = {"nodes_featureids": n, "nodes_modes": self.mode.size, "nodes_splits": self.split.size,
                "nodes_truenodeids": self.true_id.size, "nodes_falsenodeids": self.false_id.size,
                "nodes_trueleafs": self.true_leaf.size, "nodes_falseleafs": self.false_leaf.size,
                "nodes_missing_value_tracks_true": self.nan_true.size}
        if len(set(lens.values())) != 1:
            raise ctx.error(f"nodes_* attributes must have equal lengths, got {lens}")
        if self.weights.size != self.targets.size:
            raise ctx.error(f"leaf_weights ({self.weights.size}) and leaf_targetids ({self.targets.size}) "
                            "must have equal lengths")
        for ids, leaf in ((self.true_id, self.true_leaf), (self.false_id, self.false_leaf)):
            bound = np.where(leaf, self.weights.size, n)
            if ids.size and ((ids < 0) | (ids >= bound)).any():
                raise ctx.error("a nodes_truenodeids/nodes_falsenodeids entry points outside the nodes or leaves")
        if self.roots.size == 0 or ((self.roots < 0) | (self.roots >= n)).any():
            raise ctx.error(f"tree_roots {self.roots.tolist()[:8]} must index the {n} nodes")
        if ((self.mode < 0) | (self.mode > _MEMBER)).any():
            raise ctx.error(f"nodes_modes must be in 0..6, got {sorted(set(self.mode.tolist()))}")
        self.n_targets = int(a("n_targets", int(self.targets.max(initial=-1)) + 1))
        if self.targets.size and (self.targets.min() < 0 or self.targets.max() >= self.n_targets):
            raise ctx.error(f"leaf_targetids must be in [0, n_targets={self.n_targets})")
        self.members = self._member_sets(ctx, a("membership_values", None))
        self.max_feature = int(self.feature.max(initial=-1))

    def _member_sets(self, ctx: OpContext, values: Any) -> np.ndarray | None:
        """The set of each BRANCH_MEMBER node as a NaN-padded row, indexed by node id."""
        member_nodes = np.nonzero(self.mode == _MEMBER)[0]
        if member_nodes.size == 0:
            return None
        if values is None:
            raise ctx.error("BRANCH_MEMBER nodes need the membership_values attribute")
        flat = _tensor_attr(values)
        groups: list[list[float]] = [[]]
        for v in flat.astype(np.float64).tolist():
            if math.isnan(v):
                groups.append([])
            else:
                groups[-1].append(v)
        if groups and not groups[-1]:
            groups.pop()
        if len(groups) != member_nodes.size:
            raise ctx.error(f"membership_values holds {len(groups)} sets for {member_nodes.size} BRANCH_MEMBER nodes")
        table = np.full((self.feature.size, max(len(g) for g in groups) or 1), np.nan)
        for node, g in zip(member_nodes.tolist(), groups):
            table[node, :len(g)] = g
        return table

    def leaves(self, x: np.ndarray) -> np.ndarray:
        """Leaf index reached by every sample in every tree, shape [N, trees]."""
        n_samples = x.shape[0]
        cur = np.broadcast_to(self.roots, (n_samples, self.roots.size)).reshape(-1).copy()
        sample = np.repeat(np.arange(n_samples), self.roots.size)
        out = np.empty(cur.size, dtype=np.int64)
        todo = np.arange(cur.size)
        for _ in range(self.feature.size + 1):
            if todo.size == 0:
                return out.reshape(n_samples, self.roots.size)
            nodes = cur[todo]
            v = x[sample[todo], self.feature[nodes]]
            s, m = self.split[nodes], self.mode[nodes]
            go = np.select([m == _LEQ, m == _LT, m == _GTE, m == _GT, m == _EQ, m == _NEQ],
                           [v <= s, v < s, v >= s, v > s, v == s, v != s], False)
            if self.members is not None:
                go |= (m == _MEMBER) & (self.members[nodes] == v[:, None]).any(axis=1)
            go |= np.isnan(v) & self.nan_true[nodes]
            nxt = np.where(go, self.true_id[nodes], self.false_id[nodes])
            leaf = np.where(go, self.true_leaf[nodes], self.false_leaf[nodes])
            out[todo[leaf]] = nxt[leaf]
            cur[todo] = nxt
            todo = todo[~leaf]
        raise ShapeInferenceError("the trees contain a cycle (a node is its own descendant)")


def _tree_rule(ctx: InferContext) -> list[Type | None]:
    elem = ctx.elem(0)
    if elem is not None and elem not in (dtypes.FLOAT, dtypes.DOUBLE, dtypes.FLOAT16):
        raise ctx.error(f"X must be float, double or float16, got {dtypes.type_name(elem)}")
    targets = ctx.attr("n_targets", None)
    if targets is None:
        ids = ctx.attr("leaf_targetids")
        targets = max(ids) + 1 if ids else 0
    shape = ctx.shape(0)
    if shape is None:
        return [tensor(elem, [None, targets])]
    if len(shape) not in (1, 2):
        raise ctx.error(f"X must be [N, F] (or [F] for one sample), got {shape_str(shape)}")
    return [tensor(elem, [shape[0] if len(shape) == 2 else 1, targets])]


@op("TreeEnsemble", since=5, domain=ML, infer=_tree_rule)
def tree_ensemble(ctx: OpContext) -> Callable[[np.ndarray], tuple[np.ndarray]]:
    """Evaluates in float64; targets no leaf contributes to stay 0 (as onnxruntime)."""
    forest = _Forest(ctx)
    agg = ctx.attr("aggregate_function", _SUM)
    post = ctx.attr("post_transform", 0)
    if agg not in (_SUM, _AVERAGE, _MIN, _MAX) or post not in range(5):
        raise ctx.error(f"aggregate_function must be 0..3 and post_transform 0..4, got {agg} and {post}")
    n_targets = forest.n_targets

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        x2 = x.reshape(1, -1) if x.ndim == 1 else x
        if x2.ndim != 2 or x2.shape[1] <= forest.max_feature:
            raise ShapeInferenceError(
                f"X {list(x.shape)} must be [N, F] with F > {forest.max_feature} (largest feature id)")
        leaves = forest.leaves(x2.astype(np.float64, copy=False))
        n = x2.shape[0]
        flat = (np.arange(n)[:, None] * n_targets + forest.targets[leaves]).reshape(-1)
        w = forest.weights[leaves].reshape(-1)
        if agg in (_SUM, _AVERAGE):
            y: np.ndarray = np.bincount(flat, weights=w, minlength=n * n_targets)  # float64: weighted
            if agg == _AVERAGE:
                y /= forest.roots.size
        else:
            y = np.full(n * n_targets, np.inf if agg == _MIN else -np.inf)
            (np.minimum if agg == _MIN else np.maximum).at(y, flat, w)
            y[np.isinf(y)] = 0.0
        y = _post_transform(y.reshape(n, n_targets), post)
        return (y.astype(x.dtype),)

    return run
