"""Strings: StringNormalizer, StringConcat, StringSplit, RegexFullMatch, TfIdfVectorizer.

String tensors are numpy object arrays of Python str; feeds may also arrive
as numpy unicode arrays, so kernels convert with `_strings` first and always
return object arrays.  Per-string work (case mapping, splitting, regex) is
inherently a Python call per element; everything around it (shapes,
padding, counting) is vectorised.
"""

from __future__ import annotations

import re
from operator import methodcaller
from typing import Callable

import numpy as np

from .. import dtypes
from ..errors import ShapeInferenceError
from ..ir import Type
from ..shapes import InferContext, broadcast_shapes, shape_str, tensor
from .registry import OpContext, op


def _strings(x: np.ndarray) -> np.ndarray:
    """x as an object array of str (feeds may be numpy unicode arrays)."""
    return x if x.dtype == object else x.astype(object)


def _obj_array(items: list[str], shape: tuple[int, ...]) -> np.ndarray:
    """An object array of `shape` holding `items` (np.array would make a unicode array or nest lists)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out.reshape(shape)


def _require_strings(ctx: InferContext, i: int) -> None:
    elem = ctx.elem(i)
    if elem is not None and elem != dtypes.STRING:
        raise ctx.error(f"input {i} must be a string tensor, got {dtypes.type_name(elem)}")


# ------------------------------------------------------------------ StringNormalizer

_ASCII_LOWER = "abcdefghijklmnopqrstuvwxyz"
_ASCII_UPPER = _ASCII_LOWER.upper()


def _simple_case(s: str, full: Callable[[str], str]) -> str:
    """Per-character case mapping, keeping characters whose full mapping is several characters."""
    if s.isascii():
        return full(s)
    return "".join(m if len(m := full(c)) == 1 else c for c in s)


def _simple_upper(s: str) -> str:
    return _simple_case(s, str.upper)


def _simple_lower(s: str) -> str:
    return _simple_case(s, str.lower)


def _normalizer_rule(ctx: InferContext) -> list[Type | None]:
    _require_strings(ctx, 0)
    action = ctx.attr("case_change_action", "NONE")
    if action not in ("NONE", "LOWER", "UPPER"):
        raise ctx.error(f"case_change_action must be NONE, LOWER or UPPER, got {action!r}")
    shape = ctx.shape(0)
    if shape is None:
        return [tensor(dtypes.STRING)]
    if len(shape) not in (1, 2) or (len(shape) == 2 and isinstance(shape[0], int) and shape[0] != 1):
        raise ctx.error(f"input must have shape [C] or [1, C], got {shape_str(shape)}")
    if ctx.attr("stopwords", []):
        return [tensor(dtypes.STRING, [None] if len(shape) == 1 else [1, None])]
    return [tensor(dtypes.STRING, shape)]


@op("StringNormalizer", since=10, infer=_normalizer_rule)
def string_normalizer(ctx: OpContext) -> Callable[[np.ndarray], tuple[np.ndarray]]:
    """Drops stop words (whole elements), then changes case.

    Case mapping is Unicode's simple (one character to one character)
    mapping, what C's towupper/towlower give in UTF-8 locales such as en_US
    (so "ß" stays, where Python's str.upper gives "SS"); the "C"/"POSIX" locale
    maps ASCII letters only, as it does in C.  Other locale-specific mappings
    (e.g. Turkish dotted i) are not applied: the browser build has no C
    locales to ask.
    """
    action = ctx.attr("case_change_action", "NONE")
    sensitive = bool(ctx.attr("is_case_sensitive", 0))
    stops = ctx.attr("stopwords", [])
    stopset = set(stops) if sensitive else {s.lower() for s in stops}
    change: Callable[[str], str] | None = {"LOWER": _simple_lower, "UPPER": _simple_upper}.get(action)
    if change is not None and ctx.attr("locale", "") in ("C", "POSIX"):
        src, dst = (_ASCII_UPPER, _ASCII_LOWER) if action == "LOWER" else (_ASCII_LOWER, _ASCII_UPPER)
        change = methodcaller("translate", str.maketrans(src, dst))

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        if not (x.ndim == 1 or (x.ndim == 2 and x.shape[0] == 1)):
            raise ShapeInferenceError(f"input must have shape [C] or [1, C], got {list(x.shape)}")
        items = _strings(x).reshape(-1).tolist()
        if stopset:
            items = [s for s in items if (s if sensitive else s.lower()) not in stopset] or [""]
        if change is not None:
            items = [change(s) for s in items]
        shape = (len(items),) if x.ndim == 1 else (1, len(items))
        return (_obj_array(items, shape),)

    return run


# ------------------------------------------------------------------ StringConcat

def _concat_rule(ctx: InferContext) -> list[Type | None]:
    _require_strings(ctx, 0)
    _require_strings(ctx, 1)
    return [tensor(dtypes.STRING, broadcast_shapes([ctx.shape(0), ctx.shape(1)], ctx.node))]


@op("StringConcat", since=20, infer=_concat_rule)
def string_concat(ctx: OpContext) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray]]:
    """numpy's add on object arrays concatenates str elementwise, with broadcasting."""
    return lambda x, y: (np.asarray(np.add(_strings(x), _strings(y)), dtype=object),)


# ------------------------------------------------------------------ StringSplit

def _split_rule(ctx: InferContext) -> list[Type | None]:
    _require_strings(ctx, 0)
    maxsplit = ctx.attr("maxsplit", None)
    if maxsplit is not None and maxsplit < 0:
        raise ctx.error(f"maxsplit must be >= 0, got {maxsplit}")
    shape = ctx.shape(0)
    if shape is None:
        return [tensor(dtypes.STRING), tensor(dtypes.INT64)]
    return [tensor(dtypes.STRING, [*shape, None]), tensor(dtypes.INT64, shape)]


@op("StringSplit", since=20, infer=_split_rule)
def string_split(ctx: OpContext) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Splits with str.split; rows are padded with "" to the longest split.

    An empty or absent delimiter splits on runs of whitespace, as the spec
    says, and drops leading and trailing whitespace (also after a maxsplit
    cut).  An empty string has no substrings.  Both as onnxruntime.
    """
    delimiter = ctx.attr("delimiter", "") or None
    maxsplit = ctx.attr("maxsplit", -1)

    def split(s: str) -> list[str]:
        if delimiter is None:
            return s.strip().split(None, maxsplit)
        return s.split(delimiter, maxsplit) if s else []

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = [split(s) for s in _strings(x).reshape(-1).tolist()]
        counts = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
        width = int(counts.max(initial=0))
        flat = [""] * (len(parts) * width)
        for i, p in enumerate(parts):
            flat[i * width:i * width + len(p)] = p
        return _obj_array(flat, (*x.shape, width)), counts.reshape(x.shape)

    return run


# ------------------------------------------------------------------ RegexFullMatch

_POSIX_CLASS = re.compile(r"\[:(\^?)([a-z]+):\]")
_POSIX_SETS = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ", "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~", "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z", "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
    "punct": "!-/:-@\\[-`{-~",
}


def _posix_class(m: re.Match) -> str:
    """The members of an RE2 POSIX class ([:alpha:]) for use inside a Python bracket expression."""
    if m.group(1) or m.group(2) not in _POSIX_SETS:
        raise re.error(f"unsupported POSIX class {m.group(0)}")
    return _POSIX_SETS[m.group(2)]


def _regex_rule(ctx: InferContext) -> list[Type | None]:
    _require_strings(ctx, 0)
    return [tensor(dtypes.BOOL, ctx.shape(0))]


@op("RegexFullMatch", since=20, infer=_regex_rule)
def regex_full_match(ctx: OpContext) -> Callable[[np.ndarray], tuple[np.ndarray]]:
    """Python's `re` stands in for RE2: the common syntax agrees (RE2 is close to a
    subset), re.ASCII gives \\w, \\d, \\s and \\b RE2's ASCII meaning, and RE2's POSIX
    classes ([[:alpha:]]) are spelled out; other RE2-only syntax such as \\pL is
    rejected at load with the regex error."""
    pattern = ctx.attr("pattern", "")
    try:
        regex = re.compile(_POSIX_CLASS.sub(_posix_class, pattern), re.ASCII)
    except re.error as e:
        raise ctx.error(f"invalid pattern {pattern!r}: {e}") from None

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        flat = _strings(x).reshape(-1).tolist()
        out = np.fromiter((regex.fullmatch(s) is not None for s in flat), dtype=bool, count=len(flat))
        return (out.reshape(x.shape),)

    return run


# ------------------------------------------------------------------ TfIdfVectorizer

class _NgramTrie:
    """The pool's n-grams as a trie, stored level by level for vectorised lookups.

    Tokens become ids 0..V-1.  Level 1's nodes are the token ids; a node at
    level n > 1 is found from its parent p and token t by searching the
    sorted keys p * V + t.  `out[n][node]` is the output coordinate of the
    n-gram ending there, or -1 (a prefix only, or a length outside
    [min_gram_length, max_gram_length]).
    """

    def __init__(self, pool: list, counts: list[int], indexes: list[int], min_n: int, max_n: int, where: str):
        tokens = sorted(set(pool))
        self.ids = {t: i for i, t in enumerate(tokens)}
        self.vocab = None if tokens and isinstance(tokens[0], str) else np.asarray(tokens, dtype=np.int64)
        self.v = max(len(tokens), 1)
        children: list[dict[int, int]] = [dict() for _ in range(max_n + 1)]
        outs: list[dict[int, int]] = [dict() for _ in range(max_n + 1)]
        gram = 0
        for n, start in enumerate(counts, start=1):
            end = counts[n] if n < len(counts) else len(pool)
            if not 0 <= start <= end <= len(pool) or (end - start) % n:
                raise ShapeInferenceError(
                    f"{where}ngram_counts {counts} do not split the pool of {len(pool)} items into {n}-grams")
            for g in range(start, end, n):
                if min_n <= n <= max_n:
                    if gram >= len(indexes):
                        raise ShapeInferenceError(
                            f"{where}ngram_indexes has {len(indexes)} entries, the pool holds more n-grams")
                    node = self.ids[pool[g]]
                    for level in range(2, n + 1):
                        key = node * self.v + self.ids[pool[g + level - 1]]
                        node = children[level].setdefault(key, len(children[level]))
                    outs[n][node] = indexes[gram]
                gram += 1
        self.keys: list[np.ndarray] = []
        self.child: list[np.ndarray] = []
        self.out: list[np.ndarray] = []
        for level in range(max_n + 1):
            keys = np.array(sorted(children[level]), dtype=np.int64)
            self.keys.append(keys)
            self.child.append(np.array([children[level][k] for k in keys.tolist()], dtype=np.int64))
            size = self.v if level == 1 else len(children[level])
            out = np.full(max(size, 1), -1, dtype=np.int64)
            for node, idx in outs[level].items():
                out[node] = idx
            self.out.append(out)

    def token_ids(self, x: np.ndarray) -> np.ndarray:
        """Token id of every element of x, -1 for tokens not in the pool."""
        if self.vocab is None or x.dtype == object or x.dtype.kind == "U":
            get = self.ids.get
            return np.fromiter((get(s, -1) for s in x.reshape(-1).tolist()), dtype=np.int64,
                               count=x.size).reshape(x.shape)
        vocab = self.vocab
        if vocab.size == 0:
            return np.full(x.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(vocab, x), vocab.size - 1)
        return np.where(vocab[pos] == x, pos, -1)

    def step(self, level: int, parent: np.ndarray, tok: np.ndarray) -> np.ndarray:
        """Nodes at `level` reached from `parent` nodes by tokens `tok` (-1 where none)."""
        keys = self.keys[level]
        if keys.size == 0:
            return np.full(parent.shape, -1, dtype=np.int64)
        valid = (parent >= 0) & (tok >= 0)
        k = np.where(valid, parent * self.v + tok, -1)
        pos = np.minimum(np.searchsorted(keys, k), keys.size - 1)
        return np.where(valid & (keys[pos] == k), self.child[level][pos], -1)


def _tfidf_rule(ctx: InferContext) -> list[Type | None]:
    elem = ctx.elem(0)
    pool_ints, pool_strs = ctx.attr("pool_int64s", None), ctx.attr("pool_strings", None)
    if (pool_ints is None) == (pool_strs is None):
        raise ctx.error("exactly one of pool_int64s and pool_strings must be set")
    if elem is not None:
        want = {dtypes.STRING} if pool_strs is not None else {dtypes.INT32, dtypes.INT64}
        if elem not in want:
            raise ctx.error(f"input is {dtypes.type_name(elem)} but the pool holds "
                            f"{'strings' if pool_strs is not None else 'integers'}")
    indexes = ctx.attr("ngram_indexes")
    size = max(indexes) + 1 if indexes else 0
    shape = ctx.shape(0)
    if shape is None:
        return [tensor(dtypes.FLOAT)]
    if len(shape) > 2:
        raise ctx.error(f"input must have shape [C] or [N, C], got {shape_str(shape)}")
    return [tensor(dtypes.FLOAT, [size] if len(shape) < 2 else [shape[0], size])]


@op("TfIdfVectorizer", since=9, infer=_tfidf_rule)
def tfidf_vectorizer(ctx: OpContext) -> Callable[[np.ndarray], tuple[np.ndarray]]:
    """Counts pool n-grams (with skips) per row: all start positions advance through
    the trie together, one level per step, and counts are gathered by bincount."""
    mode = ctx.attr("mode")
    if mode not in ("TF", "IDF", "TFIDF"):
        raise ctx.error(f"mode must be TF, IDF or TFIDF, got {mode!r}")
    min_n, max_n = ctx.attr("min_gram_length"), ctx.attr("max_gram_length")
    max_skip = ctx.attr("max_skip_count")
    if not 1 <= min_n <= max_n or max_skip < 0:
        raise ctx.error(f"need 1 <= min_gram_length <= max_gram_length and max_skip_count >= 0, got "
                        f"{min_n}, {max_n}, {max_skip}")
    pool = ctx.attr("pool_strings", None)
    if pool is None:
        pool = [int(v) for v in ctx.attr("pool_int64s", [])]
    indexes = ctx.attr("ngram_indexes")
    size = max(indexes) + 1 if indexes else 0
    weights = ctx.attr("weights", None)
    w = None
    if weights:
        if len(weights) != len(indexes):
            raise ctx.error(f"weights has {len(weights)} entries, ngram_indexes {len(indexes)}: they must match")
        w = np.zeros(size, dtype=np.float32)
        w[indexes] = weights  # weights follow the pool's n-gram order, as the spec and onnxruntime have it
    counts = ctx.attr("ngram_counts")
    max_n = min(max_n, len(counts))  # the pool holds no longer n-grams: the trie needs no deeper levels
    trie = _NgramTrie(pool, counts, indexes, min_n, max_n, f"{ctx.node.label()}: ")

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        if x.ndim > 2:
            raise ShapeInferenceError(f"input must have shape [C] or [N, C], got {list(x.shape)}")
        rows = trie.token_ids(x if x.ndim == 2 else x.reshape(1, -1))
        n_rows, width = rows.shape
        row_base = np.arange(n_rows, dtype=np.int64)[:, None] * size
        hits: list[np.ndarray] = []

        def collect(level: int, nodes: np.ndarray) -> None:
            if level >= min_n:
                idx = np.where(nodes >= 0, trie.out[level][np.maximum(nodes, 0)], -1)
                hits.append((row_base + idx)[idx >= 0])

        if min_n == 1:
            collect(1, rows)
        for skip in range(1, min(max_skip + 1, width) + 1) if max_n > 1 else ():  # wider skips span no row
            nodes = rows
            for level in range(2, max_n + 1):
                span = (level - 1) * skip
                if span >= width:
                    break
                nodes = trie.step(level, nodes[:, :width - span], rows[:, span:])
                collect(level, nodes)
        counts = np.bincount(np.concatenate(hits) if hits else np.zeros(0, np.int64),
                             minlength=n_rows * size)[:n_rows * size].reshape(n_rows, size).astype(np.float32)
        if mode == "IDF":
            counts = np.minimum(counts, 1)
        if mode != "TF" and w is not None:
            counts *= w
        return (counts.reshape(size) if x.ndim < 2 else counts,)

    return run
