"""What `intra_op_num_threads` means on the CPU: the threads numpy's BLAS may use during a run.

webinfer's own code runs in the caller's thread; numpy's BLAS (OpenBLAS,
MKL) is the only multithreaded part of a CPU run.  A session asking for n
threads has BLAS limited to n while it runs, through threadpoolctl (the
portable way to reach a BLAS's thread pool; an optional dependency, so the
runtime still imports with numpy alone).  Kernels also choose algorithms by
the count: ops/matmul.py's few-rows products beat one GEMM only when BLAS
would not spread that GEMM over several threads.

The limit is process-wide (it is BLAS's), so sessions running at the same
time in several threads should ask for the same count.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import warnings
from typing import Any, Callable, ContextManager


@functools.lru_cache(maxsize=1)
def _controller() -> Any | None:
    """threadpoolctl's handle on the BLAS libraries loaded (found once); None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController().select(user_api="blas")


def blas_libraries() -> list[tuple[str, str]]:
    """(implementation, file) of each BLAS library loaded, e.g. ("openblas", ".../libscipy_openblas64_...so").

    Empty without threadpoolctl.
    """
    ctrl = _controller()
    return [] if ctrl is None else [(lib.internal_api, lib.filepath) for lib in ctrl.lib_controllers]


def _default_threads() -> int:
    """The threads BLAS uses when nobody limits it."""
    ctrl = _controller()
    if ctrl is not None and ctrl.lib_controllers:
        return max(lib.num_threads for lib in ctrl.lib_controllers)
    if sys.platform == "emscripten":  # Pyodide: one thread, and numpy without BLAS
        return 1
    return os.cpu_count() or 1


def blas_threads(requested: int) -> int:
    """The threads BLAS uses in the runs of a session that asked for `requested` (0: BLAS's default).

    A request that cannot be enforced (threadpoolctl missing) is reported
    once by `limit_runs` and the default count is returned.
    """
    if requested > 0 and (_controller() is not None or sys.platform == "emscripten"):
        return requested
    return _default_threads()


def _accessors(lib: Any) -> tuple[Callable[[], int], Callable[[int], Any]]:
    """(get, set) of one BLAS library's thread count, as cheap to call as possible.

    For OpenBLAS on its own pthreads pool these are the library's C entry
    points (0.1 us each): threadpoolctl's wrappers look the symbol up and
    take a lock on every call (~0.8 us), which a model called per audio chunk
    pays four times a run.  threadpoolctl's wrappers also let only one Python
    thread set OpenBLAS's count; `_Limit` restores what it changed, and
    concurrent sessions are asked to share one count (module docstring), so
    calling the library directly changes nothing they rely on.  Other
    libraries (MKL, BLIS, OpenMP-threaded OpenBLAS) keep threadpoolctl's calls.
    """
    symbol = getattr(lib, "_get_symbol", None)
    if lib.internal_api == "openblas" and getattr(lib, "threading_layer", None) == "pthreads" and symbol:
        get, put = symbol("openblas_get_num_threads"), symbol("openblas_set_num_threads")
        if get is not None and put is not None:
            return get, put
    return lib.get_num_threads, lib.set_num_threads


class _Limit:
    """BLAS held to n threads for the duration, through each library's own get/set calls.

    threadpoolctl's `limit()` rebuilds controller objects and queries every
    library on entry: 10-20 microseconds, which a model called once per
    audio chunk (a 0.1 ms run) pays on every call.  Here entry reads each
    count and sets only those that differ; exit restores only those.
    """

    __slots__ = ("libs", "n", "changed")

    def __init__(self, libs: list[tuple[Callable[[], int], Callable[[int], Any]]], n: int):
        self.libs, self.n = libs, n
        self.changed: list[tuple[Callable[[int], Any], int]] = []

    def __enter__(self) -> None:
        changed = []
        for get, put in self.libs:
            was = get()
            if was != self.n:
                put(self.n)
                changed.append((put, was))
        self.changed = changed

    def __exit__(self, *exc: Any) -> None:
        for put, was in self.changed:
            put(was)
        self.changed = []


@functools.lru_cache(maxsize=1)
def _library_accessors() -> list[tuple[Callable[[], int], Callable[[int], Any]]]:
    ctrl = _controller()
    return [] if ctrl is None else [_accessors(lib) for lib in ctrl.lib_controllers]


def limit_runs(requested: int) -> ContextManager[Any]:
    """A context that holds BLAS to `requested` threads (nothing to do for 0, or without BLAS threads)."""
    if requested <= 0 or sys.platform == "emscripten":
        return contextlib.nullcontext()
    ctrl = _controller()
    if ctrl is None:
        _warn_unenforced(requested)
        return contextlib.nullcontext()
    return _Limit(_library_accessors(), requested)


@functools.lru_cache(maxsize=None)
def _warn_unenforced(requested: int) -> None:
    warnings.warn(f"intra_op_num_threads={requested} is not enforced: limiting numpy's BLAS threads needs "
                  "the threadpoolctl package (pip install threadpoolctl)", RuntimeWarning, stacklevel=3)
