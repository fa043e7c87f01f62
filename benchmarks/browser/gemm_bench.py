"""Timed inside Pyodide by benchmarks/bench_wasm_gemm.py (Node.js and Chromium): the wasm GEMM kernels'
float32 products on MiniLM's shapes and a square one, against numpy's BLAS-less matmul on one of them."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

import webinfer
from webinfer import gemm

#: (M, K, N): MiniLM-L6 at 128 tokens (QKV/output projections, FFN up and down), 16 tokens, a square.
SHAPES = [(128, 384, 384), (128, 384, 1536), (128, 1536, 384), (16, 384, 1536), (512, 512, 512)]


def _median_ms(f: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[runs // 2]


async def measure(variant: str, runs: int = 15) -> dict[str, Any]:
    """Median ms and GFLOP/s per shape with B packed ahead (as constant weights are), for one kernel build."""
    backend = await webinfer.init_wasm((variant,))
    kernels = gemm.wasm()
    if kernels is None:
        return {"backend": gemm.describe(), "rows": []}
    rng = np.random.default_rng(0)
    rows = []
    for m, k, n in SHAPES:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        packed, c = kernels.pack(b), np.empty((m, n), np.float32)
        ms = _median_ms(lambda: kernels.gemm(a, packed, c), runs)
        pack_ms = _median_ms(lambda: kernels.pack(b), 5)
        row = {"shape": [m, k, n], "ms": ms, "gflops": 2 * m * k * n / ms / 1e6, "pack_ms": pack_ms}
        if (m, k, n) == (128, 384, 1536):
            row["numpy_ms"] = _median_ms(lambda: np.matmul(a, b), 3)
        rows.append(row)
    return {"backend": backend, "rows": rows}
