"""The wasm kernels against numpy float64, run inside Pyodide (Node.js and Chromium run this same file).

`await check(variants)` initialises the kernels with `webinfer.init_wasm(variants)` and returns a JSON-able
dict: the backend it got, how many products it compared and the failures (empty when all pass).

Tolerance: the worst-case float32 error of the sum, elementwise
|C - C64| <= 2 * (K + 2) * u * (|alpha| |A| |B| + |beta| |C0|) with u = 2^-24
(the classic dot-product bound, doubled for the splat/store roundings);
it cannot flake, and an indexing mistake misses it by orders of magnitude.
GELU: within 1e-6 of |x| plus 1e-7 against math.erf's in float64 (the fit of
Q is good to 2.8e-7 in erf, exp to 2 ulp); +-inf and NaN as numpy's form gives.
"""

from __future__ import annotations

from typing import Any, Callable

import math

import numpy as np

import webinfer
from webinfer import gemm, wasm_kernels
from webinfer.ops.elementwise import gelu_

U32 = 2.0 ** -24
#: (M, K, N): degenerate, odd, tails of both the 2-row and the 16-column tiles, K over one 256-row block.
SHAPES = [(1, 1, 1), (3, 5, 7), (17, 33, 65), (2, 300, 17), (1, 7, 16), (5, 0, 3), (0, 4, 5), (4, 3, 0),
          (31, 257, 33), (128, 384, 1536)]
#: (alpha, beta)
SCALES = [(1.0, 0.0), (0.5, -1.5), (-2.0, 1.0)]


def _bound(a: np.ndarray, b: np.ndarray, c0: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    k = a.shape[1]
    return 2 * (k + 2) * U32 * (abs(alpha) * (np.abs(a) @ np.abs(b)) + abs(beta) * np.abs(c0)) + 1e-30


def _layouts(rng: np.random.Generator, m: int, k: int) -> dict[str, np.ndarray]:
    """A [M, K] float32 as the kernels meet it: contiguous, a transpose, every other row and column of a
    bigger array, and a broadcast row (stride 0)."""
    base = rng.standard_normal((m, k)).astype(np.float32)
    big = np.zeros((2 * m + 1, 3 * k + 2), np.float32)
    big[1::2, 2::3][:m, :k] = base
    return {"contiguous": base, "transposed": np.ascontiguousarray(base.T).T, "strided": big[1::2, 2::3][:m, :k],
            "broadcast": np.broadcast_to(base[:1], (m, k)) if m else base}


def _check_gemm(kernels: Any, rng: np.random.Generator, fail: Callable[[str], None]) -> int:
    count = 0
    for m, k, n in SHAPES:
        bs = _layouts(rng, n, k)  # B^T's layouts: B = X.T, so a contiguous X gives a column-major B
        b_views = {"row-major": np.ascontiguousarray(bs["contiguous"].T), "column-major": bs["contiguous"].T,
                    "strided": bs["strided"].T}
        for a_name, a in _layouts(rng, m, k).items():
            for b_name, b in b_views.items():
                for alpha, beta in SCALES:
                    c0 = rng.standard_normal((m, n)).astype(np.float32)
                    wide = np.full((m, n + 3), np.nan, np.float32)  # C with padded rows (ldc > N)
                    c = wide[:, :n]
                    c[...] = c0 if beta else np.nan  # beta 0 must not read C
                    packed = kernels.pack(b)
                    kernels.gemm(a, packed if b_name != "strided" else b, c, alpha, beta)
                    a64, b64, c64 = (x.astype(np.float64) for x in (a, b, c0))
                    want = alpha * (a64 @ b64) + (beta * c64 if beta else 0.0)
                    err = np.abs(c - want)
                    count += 1
                    if not np.all(err <= _bound(a64, b64, c64, alpha, beta)) or np.isnan(wide[:, n:]).sum() != 3 * m:
                        fail(f"gemm M={m} K={k} N={n} A {a_name} B {b_name} alpha={alpha} beta={beta}: "
                             f"max error {float(np.nanmax(err, initial=0)):.3g}")
    return count


def _check_matmul(kernels: Any, rng: np.random.Generator, fail: Callable[[str], None]) -> int:
    """np.matmul semantics: batch broadcasting, a transposed batched B (attention's q @ k^T), packed 2-D B."""
    cases = [((2, 3, 5, 7), (2, 3, 7, 4)), ((3, 1, 6, 9), (1, 2, 9, 17)), ((4, 5, 33), (33, 19)),
             ((2, 12, 16, 64), (2, 12, 16, 64))]
    count = 0
    for sa, sb in cases:
        a = rng.standard_normal(sa).astype(np.float32)
        b = rng.standard_normal(sb).astype(np.float32)
        if sa[-1] != sb[-2]:
            b = b.swapaxes(-1, -2)  # [.., S, D] -> [.., D, S], a strided view, as attention passes k^T
        got = kernels.matmul(a, kernels.pack(b) if b.ndim == 2 else b)
        want = np.matmul(a.astype(np.float64), b.astype(np.float64))
        bound = 2 * (a.shape[-1] + 2) * U32 * np.matmul(np.abs(a).astype(np.float64), np.abs(b).astype(np.float64))
        count += 1
        if got.shape != want.shape or got.dtype != np.float32 or not np.all(np.abs(got - want) <= bound):
            fail(f"matmul {list(sa)} @ {list(b.shape)}: got {list(got.shape)} {got.dtype}")
    # A conv's products: constant weights [G, M/G, K] times each image's columns [N, G, K, cells], into a
    # strided block of the output (gemm.matmul with out=, as the conv engines call it).
    w = rng.standard_normal((3, 8, 45)).astype(np.float32)
    cols = rng.standard_normal((2, 3, 45, 70)).astype(np.float32)
    y = np.full((2, 24, 90), np.nan, np.float32)
    out = y[:, :, 10:80].reshape(2, 3, 8, 70)
    ret = gemm.matmul(w, cols, out=out)
    want = np.matmul(w.astype(np.float64), cols.astype(np.float64))
    bound = 2 * 47 * U32 * np.matmul(np.abs(w).astype(np.float64), np.abs(cols).astype(np.float64))
    count += 1
    if ret is not out or not np.all(np.abs(y[:, :, 10:80].reshape(want.shape) - want) <= bound) \
            or not np.isnan(y[:, :, :10]).all() or not np.isnan(y[:, :, 80:]).all():
        fail("matmul with out= (a conv's grouped product into a strided output block)")
    return count


def _check_gelu(rng: np.random.Generator, fail: Callable[[str], None]) -> int:
    """ops.elementwise.gelu_ (the kernel where it runs) on odd sizes, wide ranges and special values."""
    count = 0
    for size in (1, 3, 4, 7, 1000, 4099):
        for scale in (0.1, 3.0, 30.0):
            x = (rng.standard_normal(size) * scale).astype(np.float32)
            x[: min(size, 6)] = np.array([0.0, -0.0, 1e-30, -13.5, -40.0, 9.0], np.float32)[: min(size, 6)]
            y = x.copy()
            gelu_(y)
            want = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64).tolist()])
            count += 1
            if not np.all(np.abs(y - want) <= 1e-6 * np.abs(x) + 1e-7):
                worst = int(np.argmax(np.abs(y - want) - 1e-6 * np.abs(x)))
                fail(f"gelu size={size} scale={scale}: x={x[worst]!r} got {y[worst]!r} want {want[worst]!r}")
    special = np.array([np.inf, -np.inf, np.nan, 3.4e38, -3.4e38], np.float32)
    got = special.copy()
    gelu_(got)
    with np.errstate(invalid="ignore", over="ignore"):
        numpy_form = special * (0.5 * (1 + np.tanh(special)))
    count += 1
    if not np.array_equal(got, numpy_form, equal_nan=True):
        fail(f"gelu of {special.tolist()}: got {got.tolist()}, numpy's form gives {numpy_form.tolist()}")
    return count


async def check(variants: list[str]) -> dict[str, Any]:
    """Initialise the kernels with `variants` (best first) and compare every case; see the module doc."""
    backend = await webinfer.init_wasm(tuple(variants))
    failures: list[str] = []
    kernels = gemm.wasm()
    if kernels is None:
        return {"backend": backend, "count": 0, "failures": [f"no kernels: {gemm.describe()}"]}
    rng = np.random.default_rng(20261206)
    count = _check_gemm(kernels, rng, failures.append) + _check_matmul(kernels, rng, failures.append)
    if wasm_kernels.exports("elementwise") is None:
        failures.append("the elementwise kernels are not loaded")
    count += _check_gelu(rng, failures.append)
    return {"backend": backend, "count": count, "failures": failures[:20], "n_failures": len(failures)}


async def sync_load() -> str:
    """Load the kernels the way the first product does when no one awaited init_wasm (a synchronous
    compile), then report `gemm.describe()`; init_wasm afterwards restores the usual state."""
    wasm_kernels._STATE.tried = False
    gemm.wasm()
    got = gemm.describe()
    await webinfer.init_wasm()
    return got
