"""Matrix products: MatMul, webinfer.FusedMatMul, Gemm, Einsum, Det.

MatMul and Gemm dominate transformer encoders, so their kernels are shaped
for BLAS: constant weights are converted, transposed and made contiguous
once at build time, a batched activation times a 2-D weight runs as one
large matrix product instead of one per batch entry, and scaling, bias and
activation are applied in place on the product's fresh buffer.  float16
products compute in float32 (BLAS speed, float32 accumulation as
onnxruntime's kernels do) and round back once.  In Pyodide, whose numpy has
no BLAS, float32 products run on the WebAssembly kernels (gemm.py), with
constant weights packed into their panel layout once, when the plan is built.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from .. import dtypes, gemm as cpu_gemm, threads, wasm_ops
from ..errors import ShapeInferenceError
from ..ir import Dim, Shape, Type
from ..shapes import InferContext, broadcast_shapes, dims_compatible, shape_str, tensor
from ..activations import fused_activation
from .registry import Kernel, OpContext, op


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """float16 is computed in float32; every other type in itself."""
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def _scale(out: np.ndarray, factor: float) -> np.ndarray:
    """`out * factor` in place; integer outputs truncate like a C cast."""
    if out.dtype.kind in "iub":
        return (out * factor).astype(out.dtype)
    out *= out.dtype.type(factor)
    return out


def _add_into(out: np.ndarray, addend: np.ndarray) -> np.ndarray:
    """`out += addend` on the product's fresh buffer (shape rules ensure the
    addend broadcasts into it)."""
    np.add(out, addend, out=out)
    return out


# ------------------------------------------------------------------ shapes

def _swap_last(shape: Shape) -> Shape:
    return shape[:-2] + (shape[-1], shape[-2])


def matmul_shape(ctx: InferContext, a: Shape | None, b: Shape | None, trans_a: bool = False,
                 trans_b: bool = False) -> Shape | None:
    """numpy.matmul's result shape (1-D operands promoted then dropped), with
    optional transposition of the last two dims of operands of rank >= 2."""
    if a is None or b is None:
        return None
    if not a or not b:
        raise ctx.error(f"operands must have rank >= 1, got shapes {shape_str(a)} and {shape_str(b)}")
    a2 = (1,) + a if len(a) == 1 else (_swap_last(a) if trans_a else a)
    b2 = b + (1,) if len(b) == 1 else (_swap_last(b) if trans_b else b)
    if not dims_compatible(a2[-1], b2[-2]):
        raise ctx.error(f"inner dimensions differ: A {shape_str(a)} has K={a2[-1]} but B {shape_str(b)} "
                        f"has K={b2[-2]}{' (after transposition)' if trans_a or trans_b else ''}")
    try:
        batch = broadcast_shapes([a2[:-2], b2[:-2]])
    except ShapeInferenceError:
        raise ctx.error(f"batch dimensions of A {shape_str(a)} and B {shape_str(b)} do not broadcast") from None
    assert batch is not None
    out: tuple[Dim, ...] = batch
    if len(a) > 1:
        out += (a2[-2],)
    if len(b) > 1:
        out += (b2[-1],)
    return out


def _same_elem(ctx: InferContext, *inputs: int) -> int | None:
    elems = {ctx.elem(i) for i in inputs if ctx.has(i)} - {None}
    if len(elems) > 1:
        raise ctx.error("inputs must share one element type, got "
                        + ", ".join(f"{ctx.type(i).describe()}" for i in inputs if ctx.has(i)))  # type: ignore[union-attr]
    return ctx.elem(inputs[0])


def _matmul_rule(ctx: InferContext) -> list[Type | None]:
    elem = _same_elem(ctx, 0, 1)
    return [tensor(elem, matmul_shape(ctx, ctx.shape(0), ctx.shape(1)))]


def _fused_matmul_rule(ctx: InferContext) -> list[Type | None]:
    elem = _same_elem(ctx, *range(ctx.n_in))
    fused_activation(ctx)
    out = matmul_shape(ctx, ctx.shape(0), ctx.shape(1), bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0)))
    bias = ctx.shape(2) if ctx.has(2) else None
    if out is not None and bias is not None:
        _check_into(ctx, bias, out, "bias")
    return [tensor(elem, out)]


def _check_into(ctx: InferContext, small: Shape, out: Shape, what: str) -> None:
    """`small` must broadcast onto `out` without enlarging it (in-place add)."""
    ok = len(small) <= len(out) and all(
        d == 1 or dims_compatible(d, o) for d, o in zip(reversed(small), reversed(out)))
    if not ok:
        raise ctx.error(f"{what} of shape {shape_str(small)} does not broadcast to the output {shape_str(out)}")


# ------------------------------------------------------------------ MatMul

#: OpenBLAS's sgemm is slow for a few rows times a big matrix (M=16, K=384,
#: N=1536: 360 us) but fast for the transposed problem (250 us): products
#: with rows in this range and a dim at least _WIDE wide run as (B^T A^T)^T.
_FEW_ROWS = range(2, 49)
_WIDE = 1024
#: A constant B times this many rows runs in blocks of _BLOCK_COLS output columns (`ConstMatrix`)
#: when each block's product has at most _SMALL_GEMM_WORK multiply-adds, which OpenBLAS does
#: without packing.  Measured on MiniLM: 2-28 rows run 10-30% faster; at 32 rows, or 48 rows
#: times K=1536, the blocks are slower than one GEMM.
_BLOCK_ROWS = range(2, 29)
_BLOCK_COLS = 16
_SMALL_GEMM_WORK = 1_000_000


class ConstMatrix:
    """A constant right operand B [K, N] (contiguous, compute dtype), laid out for both kinds of product.

    Products of many rows read `mat`.  Products of a few rows (a
    transformer's short sequences, small batches) are bound by reading B
    from memory, and OpenBLAS first copies B into its packing buffer, which
    doubles that traffic; it multiplies small blocks straight from memory
    instead.  So where the product runs whole on one thread (not shared,
    see threads.share_parts), those run as one
    batched product over contiguous [_BLOCK_COLS, K] slabs of B^T: 1.3-2.5x
    faster than one GEMM with B cold in cache (MiniLM at 16 tokens: 11.6 ->
    9.8 ms).  A shared product runs as GEMMs on bands of rows.  B^T is made on the first few-rows product, so
    a model only ever run on many rows never holds the second copy.
    """

    def __init__(self, mat: np.ndarray, transposed: np.ndarray | None, blocks: bool) -> None:
        """`transposed`: B^T, when the model already holds it contiguous (Gemm with transB)."""
        self.mat = mat
        self.blocks = blocks
        self._t = transposed
        #: B in the wasm kernels' panels, where they run (Pyodide).
        self.panels = cpu_gemm.pack(mat)

    def takes(self, rows: np.ndarray) -> bool:
        """Whether `few_rows` is the faster product for rows [r, K] (see _BLOCK_ROWS)."""
        return (self.blocks and rows.dtype == self.mat.dtype == np.float32 and rows.shape[0] in _BLOCK_ROWS
                and rows.size * _BLOCK_COLS <= _SMALL_GEMM_WORK
                and threads.share_parts(rows.shape[0] * self.mat.size, max(rows.shape[0], self.mat.shape[1])) == 1)

    def few_rows(self, rows: np.ndarray) -> np.ndarray:
        """rows [r, K] @ B as an F-ordered [r, N] array (its transpose is the contiguous result)."""
        t = self._t
        if t is None:
            t = self._t = np.ascontiguousarray(self.mat.T)
        n, k = t.shape
        r = rows.shape[0]
        full = n - n % _BLOCK_COLS
        out_t = np.empty((n, r), np.result_type(rows, t))
        np.matmul(t[:full].reshape(-1, _BLOCK_COLS, k), rows.T, out=out_t[:full].reshape(-1, _BLOCK_COLS, r))
        if full < n:
            np.matmul(t[full:], rows.T, out=out_t[full:])
        return out_t.T


def _shared_product(rows: np.ndarray, mat: np.ndarray, parts: int) -> np.ndarray:
    """rows @ mat in `parts` bands along its longer side, shared with the run's helper threads
    (threads.share).  Each band's GEMM packs only its own slice of the other operand's side: bands of
    32 rows of MiniLM's [128, 384] @ [384, 1536] would each pack all of B, as much work as the product."""
    m, n = rows.shape[0], mat.shape[1]
    out = np.empty((m, n), np.result_type(rows, mat))
    bounds = np.linspace(0, max(m, n), parts + 1).astype(int)

    def row_band(i: int) -> None:
        lo, hi = bounds[i], bounds[i + 1]
        np.matmul(rows[lo:hi], mat, out=out[lo:hi])

    def column_band(i: int) -> None:
        lo, hi = bounds[i], bounds[i + 1]
        np.matmul(rows, mat[:, lo:hi], out=out[:, lo:hi])

    threads.share(parts, row_band if m > n else column_band)
    return out


def _product(a: np.ndarray, b: np.ndarray | ConstMatrix) -> np.ndarray:
    """a @ b; a contiguous batch of rows times a 2-D matrix runs as one GEMM (or `ConstMatrix.few_rows`),
    on the wasm kernels where they run (float32 in Pyodide).

    The result may be a transposed view (few rows, see _FEW_ROWS): the
    epilogue runs on it elementwise and the kernel makes it contiguous last.
    """
    mat = b.mat if isinstance(b, ConstMatrix) else b
    kernels = cpu_gemm.wasm()
    if kernels is not None and kernels.takes(a, mat):
        return kernels.matmul(a, b.panels if isinstance(b, ConstMatrix) and b.panels is not None else mat)
    if mat.ndim == 2 and a.ndim >= 2 and a.flags.c_contiguous:
        rows = a.reshape(math.prod(a.shape[:-1]), a.shape[-1])
        shape = a.shape[:-1] + (mat.shape[-1],)
        if isinstance(b, ConstMatrix) and b.takes(rows):
            return b.few_rows(rows).reshape(shape)
        parts = threads.share_parts(rows.shape[0] * mat.size, max(rows.shape[0], mat.shape[1]))
        if parts > 1:
            return _shared_product(rows, mat, parts).reshape(shape)
        if rows.shape[0] in _FEW_ROWS and max(mat.shape) >= _WIDE:
            return np.matmul(mat.T, rows.T).T.reshape(shape)
        return np.matmul(rows, mat).reshape(shape)
    return np.matmul(a, mat)


def _const_operand(ctx: OpContext, i: int) -> np.ndarray | None:
    """Input i's value when it is a constant the kernel computes on directly.

    Constants of types held as storage (bfloat16, float8) are left to the
    per-run conversion, which decodes them to float32 around the kernel.
    """
    value, elem = ctx.const(i), ctx.in_elem(i)
    if isinstance(value, np.ndarray) and elem is not None and value.dtype == dtypes.storage_dtype(elem):
        return value
    return None


def _prepack(w: np.ndarray, transpose: bool) -> np.ndarray:
    """A constant operand as the contiguous compute-dtype matrix the product reads."""
    w = w.astype(_compute_dtype(w.dtype), copy=False)
    if transpose and w.ndim >= 2:
        w = np.swapaxes(w, -1, -2)
    return np.ascontiguousarray(w)


def _const_matrix(packed: np.ndarray | None, const: np.ndarray | None,
                  transposed: bool) -> ConstMatrix | None:
    """A 2-D constant B as a `ConstMatrix`; with transB, the model's own B is already its contiguous B^T."""
    if packed is None or packed.ndim != 2:
        return None
    given = const if transposed and const is not None and const.dtype == packed.dtype and \
        const.flags.c_contiguous else None
    # Pyodide's numpy has no BLAS, so nothing is packed there and the blocks would gain nothing.
    return ConstMatrix(packed, given, sys.platform != "emscripten")


class _OneRow:
    """One row times a constant 2-D B, plus a constant addend (bias, or Gemm's beta-scaled C): one np.dot
    into a fresh row.  An LSTM cell's input projection or a classifier head spends 4-6 us in the general
    path's checks and dispatch around a 1-2 us product.  Not where B has wasm panels (Pyodide: numpy has
    no BLAS there, and the panels run it several times faster)."""

    def __init__(self, b: np.ndarray, addend: np.ndarray | None):
        self.b, self.addend, self.k = b, addend, b.shape[0]

    @classmethod
    def of(cls, b: np.ndarray | None, matrix: "ConstMatrix | None", addend: np.ndarray | None,
           plain: bool) -> "_OneRow | None":
        """The path for this node, or None: `plain` says the node has no transA, alpha or activation."""
        if not plain or b is None or b.ndim != 2 or (matrix is not None and matrix.panels is not None):
            return None
        return cls(b, addend)

    def takes(self, a: np.ndarray, given: np.ndarray | None) -> bool:
        """Whether this run fits: one row of B's dtype and width, with the addend input given iff constant."""
        return a.ndim == 2 and a.shape[0] == 1 and a.shape[1] == self.k and a.dtype == self.b.dtype \
            and (given is None) == (self.addend is None)

    def __call__(self, a: np.ndarray) -> np.ndarray:
        row = np.dot(a, self.b)
        if self.addend is not None:
            row += self.addend
        return row


def _matmul_kernel(ctx: OpContext) -> Kernel:
    """MatMul, and MatMul with the fusion attributes (transA, transB, alpha,
    activation, bias as input 2) when built for webinfer.FusedMatMul."""
    trans_a, trans_b = bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0))
    alpha = float(ctx.attr("alpha", 1.0))
    act = fused_activation(ctx)
    b_const = _const_operand(ctx, 1)
    b_packed = _prepack(b_const, trans_b) if b_const is not None else None
    b_matrix = _const_matrix(b_packed, b_const, trans_b)
    bias_const = _const_operand(ctx, 2)
    bias_packed = bias_const.astype(_compute_dtype(bias_const.dtype), copy=False) if bias_const is not None else None
    label = ctx.node.label()
    one_row = _OneRow.of(b_packed, b_matrix, bias_packed, not trans_a and alpha == 1.0 and act is None)

    def run(a: np.ndarray, b: np.ndarray, bias: np.ndarray | None = None) -> tuple[np.ndarray]:
        if one_row is not None and one_row.takes(a, bias):
            return (one_row(a),)
        dtype = a.dtype
        x = a.astype(_compute_dtype(dtype), copy=False)
        if trans_a and x.ndim >= 2:
            x = np.swapaxes(x, -1, -2)
        if b_packed is not None:
            w = b_packed
        else:
            w = b.astype(_compute_dtype(b.dtype), copy=False)
            w = np.swapaxes(w, -1, -2) if trans_b and w.ndim >= 2 else w
        if x.ndim == 0 or w.ndim == 0 or x.shape[-1] != w.shape[-2 if w.ndim > 1 else 0]:
            raise ShapeInferenceError(f"{label}: cannot multiply A {list(a.shape)} by B {list(b.shape)}"
                                      f"{' (transposed as the attributes ask)' if trans_a or trans_b else ''}")
        out = np.asarray(_product(x, w if b_matrix is None else b_matrix))
        if alpha != 1.0:
            out = _scale(out, alpha)
        addend = bias_packed if bias_packed is not None else bias
        if addend is not None and addend.shape[-1:] == (addend.size,) and out.ndim and out.shape[-1] == addend.size \
                and wasm_ops.bias_act(out, addend, -1, act):
            return (np.asarray(out, dtype=dtype, order="C"),)  # Pyodide: bias and activation in one pass
        if addend is not None:
            out = _add_into(out, addend)
        if act is not None:
            act(out)
        return (np.asarray(out, dtype=dtype, order="C"),)

    return run


@op("MatMul", since=1, infer=_matmul_rule)
def matmul(ctx: OpContext) -> Kernel:
    """numpy.matmul semantics: 1-D operands promoted, batch dims broadcast."""
    return _matmul_kernel(ctx)


@op("FusedMatMul", since=1, domain="webinfer", infer=_fused_matmul_rule)
def fused_matmul(ctx: OpContext) -> Kernel:
    """activation(alpha * A' @ B' + bias), set up by the fusion pass: one
    BLAS call, then in-place epilogue on its output."""
    return _matmul_kernel(ctx)


# -------------------------------------------------------------------- Gemm

def _gemm_rule(ctx: InferContext) -> list[Type | None]:
    elem = _same_elem(ctx, *range(ctx.n_in))
    a, b = ctx.shape(0), ctx.shape(1)
    for name, s in (("A", a), ("B", b)):
        if s is not None and len(s) != 2:
            raise ctx.error(f"{name} must be a matrix (rank 2), got shape {shape_str(s)}")
    if a is None or b is None:
        return [tensor(elem, (None, None))]
    trans_a, trans_b = bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0))
    m, k = (a[1], a[0]) if trans_a else a
    k2, n = (b[1], b[0]) if trans_b else b
    if not dims_compatible(k, k2):
        raise ctx.error(f"inner dimensions differ: A {shape_str(a)} (transA={int(trans_a)}) has K={k}, "
                        f"B {shape_str(b)} (transB={int(trans_b)}) has K={k2}")
    out = (m, n)
    c = ctx.shape(2) if ctx.has(2) else None
    if c is not None:
        if ctx.opset < 7 and not ctx.attr("broadcast", 0) and len(c) == 2:
            if not (dims_compatible(c[0], m) and dims_compatible(c[1], n)):
                raise ctx.error(f"C has shape {shape_str(c)} but must be {shape_str(out)} without broadcast=1")
        _check_into(ctx, c, out, "C")
    return [tensor(elem, out)]


@op("Gemm", since=1, infer=_gemm_rule)
def gemm(ctx: OpContext) -> Kernel:
    """alpha * A' @ B' + beta * C. A constant B is stored transposed as
    needed and contiguous; a constant C is pre-scaled by beta."""
    trans_a, trans_b = bool(ctx.attr("transA", 0)), bool(ctx.attr("transB", 0))
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    b_const = _const_operand(ctx, 1)
    b_packed = _prepack(b_const, trans_b) if b_const is not None else None
    b_matrix = _const_matrix(b_packed, b_const, trans_b)
    c_const = _const_operand(ctx, 2)
    c_packed = None
    if c_const is not None and beta != 0.0:
        c_packed = c_const.astype(_compute_dtype(c_const.dtype), copy=False)
        c_packed = c_packed if beta == 1.0 else _scale(c_packed.copy(), beta)
    label = ctx.node.label()
    one_row = _OneRow.of(b_packed, b_matrix, c_packed, not trans_a and alpha == 1.0)

    def run(a: np.ndarray, b: np.ndarray, c: np.ndarray | None = None) -> tuple[np.ndarray]:
        if one_row is not None and one_row.takes(a, c):
            return (one_row(a),)
        dtype = a.dtype
        x = a.astype(_compute_dtype(dtype), copy=False)
        x = x.T if trans_a else x
        w = b_packed if b_packed is not None else b.astype(_compute_dtype(b.dtype), copy=False)
        w = w.T if trans_b and b_packed is None else w
        if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
            raise ShapeInferenceError(f"{label}: cannot multiply A {list(a.shape)} (transA={int(trans_a)}) "
                                      f"by B {list(b.shape)} (transB={int(trans_b)})")
        out = _product(x, w if b_matrix is None else b_matrix)
        if alpha != 1.0:
            out = _scale(out, alpha)
        if c is not None and beta != 0.0:
            addend = c_packed if c_packed is not None else (
                c if beta == 1.0 else _scale(c.astype(_compute_dtype(c.dtype)), beta))
            out = _add_into(out, addend)
        return (np.asarray(out, dtype=dtype, order="C"),)

    return run


# ------------------------------------------------------------------ Einsum

_ELLIPSIS = "..."


def _parse_einsum(equation: str, ranks: list[int | None], where: Any) -> tuple[list[list[str]], list[str]] | None:
    """Input and output label lists, with the ellipsis expanded into labels
    `...0`, `...1`, ... aligned on the right (they broadcast as numpy does).

    Returns None when a rank needed to expand an ellipsis is unknown;
    malformed equations raise `where.error(...)` naming the equation.
    """
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise where.error(f"equation {equation!r} has {len(terms)} operand terms but the node has "
                          f"{len(ranks)} inputs")

    def split(term: str) -> tuple[str, str, bool]:
        head, dots, tail = term.partition(_ELLIPSIS)
        letters = head + tail
        if not all(ch.isascii() and ch.isalpha() for ch in letters) or _ELLIPSIS in tail:
            raise where.error(f"equation {equation!r}: term {term!r} must be letters with at most one '...'")
        return head, tail, bool(dots)

    parts = [split(t) for t in terms]
    n_ell = 0
    for (head, tail, dots), rank in zip(parts, ranks):
        if rank is None:
            if dots:
                return None
            continue
        if rank < len(head) + len(tail) or (not dots and rank != len(head) + len(tail)):
            raise where.error(f"equation {equation!r}: term {head}{'...' if dots else ''}{tail} does not fit "
                              f"an input of rank {rank}")
        if dots:
            n_ell = max(n_ell, rank - len(head) - len(tail))
    ell_labels = [f"{_ELLIPSIS}{i}" for i in range(n_ell)]
    in_labels = []
    for (head, tail, dots), rank in zip(parts, ranks):
        k = (rank - len(head) - len(tail)) if dots and rank is not None else 0
        in_labels.append(list(head) + ell_labels[n_ell - k:] + list(tail))
    if arrow:
        head, tail, dots = split(rhs)
        if dots and not any(p[2] for p in parts):
            raise where.error(f"equation {equation!r}: output has '...' but no input does")
        out = list(head) + (ell_labels if dots else []) + list(tail)
        letters = [ch for ch in out if len(ch) == 1]
        seen = {ch for labels in in_labels for ch in labels}
        if len(set(letters)) != len(letters) or not set(letters) <= seen:
            raise where.error(f"equation {equation!r}: output labels must be distinct and appear in an input")
    else:
        counts: dict[str, int] = {}
        for labels in in_labels:
            for ch in labels:
                if len(ch) == 1:
                    counts[ch] = counts.get(ch, 0) + 1
        out = ell_labels + sorted(ch for ch, c in counts.items() if c == 1)
    return in_labels, out


def _einsum_rule(ctx: InferContext) -> list[Type | None]:
    elem = _same_elem(ctx, *range(ctx.n_in))
    equation = ctx.attr("equation")
    parsed = _parse_einsum(equation, [ctx.rank(i) for i in range(ctx.n_in)], ctx)
    if parsed is None:
        return [tensor(elem)]
    in_labels, out_labels = parsed
    sizes: dict[str, list[Dim]] = {}
    for i, labels in enumerate(in_labels):
        shape = ctx.shape(i)
        for j, label in enumerate(labels):
            sizes.setdefault(label, []).append(None if shape is None else shape[j])
    dims: dict[str, Dim] = {}
    for label, ds in sizes.items():
        try:
            merged = broadcast_shapes([(d,) for d in ds])
        except ShapeInferenceError:
            raise ctx.error(f"equation {equation!r}: label {label!r} has sizes "
                            f"{', '.join(str(d) for d in ds)} in the inputs "
                            f"({', '.join(shape_str(ctx.shape(i)) for i in range(ctx.n_in))})") from None
        dims[label] = merged[0] if merged is not None else None
    return [tensor(elem, tuple(dims[lab] for lab in out_labels))]


@op("Einsum", since=12, infer=_einsum_rule)
def einsum(ctx: OpContext) -> Kernel:
    """numpy.einsum with contraction-order optimisation (BLAS where possible);
    the contraction path is planned on the first run and reused."""
    equation = ctx.attr("equation").replace(" ", "")
    path: list[Any] = []

    def run(*xs: np.ndarray) -> tuple[np.ndarray]:
        dtype = xs[0].dtype
        ops = [x.astype(_compute_dtype(x.dtype), copy=False) for x in xs]
        if not path:
            path.extend(np.einsum_path(equation, *ops, optimize="greedy")[0] if len(ops) > 2
                        else ["einsum_path", tuple(range(len(ops)))])
        out = np.einsum(equation, *ops, optimize=path)
        out = np.asarray(out, dtype=dtype)
        if any(np.may_share_memory(out, x) for x in xs):
            out = out.copy()
        return (out,)

    return run


# --------------------------------------------------------------------- Det

def _det_rule(ctx: InferContext) -> list[Type | None]:
    s = ctx.shape(0)
    if s is None:
        return [tensor(ctx.elem(0))]
    if len(s) < 2 or not dims_compatible(s[-1], s[-2]):
        raise ctx.error(f"input must be a (batch of) square matrices [..., M, M], got shape {shape_str(s)}")
    return [tensor(ctx.elem(0), s[:-2])]


@op("Det", since=11, infer=_det_rule)
def det(ctx: OpContext) -> Kernel:
    """Determinants of the trailing square matrices (LU via numpy.linalg)."""
    label = ctx.node.label()

    def run(x: np.ndarray) -> tuple[np.ndarray]:
        if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
            raise ShapeInferenceError(f"{label}: input must be square matrices [..., M, M], got {list(x.shape)}")
        return (np.asarray(np.linalg.det(x.astype(_compute_dtype(x.dtype), copy=False)), dtype=x.dtype),)

    return run
