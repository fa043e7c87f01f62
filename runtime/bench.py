"""Timing loops shared by `webinfer bench` and the scripts in benchmarks/.

Latency is the median (and p90) of repeated runs after warm-up; peak memory
is measured on one extra run with tracemalloc (numpy reports its buffers to
it), so it includes kernels' temporaries, not just the tensors the executor
holds.  Thread counts set both sessions' intra_op_num_threads (webinfer's
limits numpy's BLAS, see threads.py), so both sides use the same number of
cores.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from . import dtypes


@dataclass
class Timing:
    """Latency statistics of one runtime on one model, in milliseconds."""

    runs_ms: list[float]
    first_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.runs_ms)

    @property
    def p90_ms(self) -> float:
        xs = sorted(self.runs_ms)
        return xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]

    @property
    def min_ms(self) -> float:
        return min(self.runs_ms)


def time_calls(fn: Callable[[], Any], runs: int, warmup: int) -> Timing:
    """Time `fn` `runs` times after `warmup` calls (the first call timed apart)."""
    t0 = time.perf_counter()
    fn()
    first = (time.perf_counter() - t0) * 1e3
    for _ in range(max(0, warmup - 1)):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return Timing(out, first)


def time_alternating(ours: Callable[[], Any], ref: Callable[[], Any], runs: int, warmup: int,
                     clock: Callable[[], float] = time.perf_counter) -> tuple[list[float], list[float]]:
    """Milliseconds of `runs` calls of each of two runtimes, taken in turn after `warmup` calls of each,
    so that load drifting on a shared machine hits both alike (`clock`: e.g. time.thread_time)."""
    for _ in range(warmup):
        ours()
        ref()
    t_ours, t_ref = [], []
    for _ in range(runs):
        t0 = clock()
        ours()
        t_ours.append((clock() - t0) * 1e3)
        t0 = clock()
        ref()
        t_ref.append((clock() - t0) * 1e3)
    return t_ours, t_ref


def peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated (Python objects and numpy buffers) during one call."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def session_options(threads: int | None) -> Any:
    """webinfer options running on `threads` threads, as `ort_session` sets onnxruntime's (None: defaults)."""
    from . import threads as thread_limits
    from .options import SessionOptions
    if threads and thread_limits.blas_threads(threads) != threads:
        raise RuntimeError("--threads needs the threadpoolctl package (pip install threadpoolctl)")
    return SessionOptions(intra_op_num_threads=threads or 0)


def random_feed(inputs: Sequence[Any], dims: dict[str, int] | None = None, seed: int = 0,
                default_dim: int = 1) -> dict[str, np.ndarray]:
    """Random inputs matching `session.get_inputs()`.

    Symbolic dims take `dims[name]` (else `default_dim`).  Integer inputs get
    small non-negative ids (valid for embedding tables); inputs named like a
    mask get ones, as a real caller would pass.
    """
    dims = dims or {}
    rng = np.random.default_rng(seed)
    feed = {}
    for arg in inputs:
        shape = [d if isinstance(d, int) else dims.get(d, default_dim) if isinstance(d, str) else default_dim
                 for d in (arg.shape or [])]
        elem = _elem_of(arg.type)
        dtype = dtypes.storage_dtype(elem)
        if "mask" in arg.name.lower():
            feed[arg.name] = np.ones(shape, dtype=dtype)
        elif dtype.kind == "f":
            feed[arg.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            feed[arg.name] = rng.integers(0, 100, size=shape).astype(dtype)
        elif dtype.kind == "b":
            feed[arg.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise ValueError(f"cannot generate random data for input '{arg.name}' of type {arg.type}")
    return feed


def _elem_of(type_str: str) -> int:
    name = type_str[len("tensor("):-1] if type_str.startswith("tensor(") else type_str
    for code, t in dtypes.ELEM_TYPES.items():
        if t.name == name:
            return code
    raise ValueError(f"unsupported input type {type_str}")


def ort_session(model: Any, threads: int | None) -> Any:
    """An onnxruntime CPU session on the same model (bytes or path)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # onnxruntime's pool spins between runs by default; timed side by side in one process, its
    # spinning threads would take the cores numpy's BLAS threads are about to use (and the
    # reverse), so both are measured without idle spinning.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

