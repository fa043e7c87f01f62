"""What `intra_op_num_threads` means on the CPU: the threads a run may compute on.

webinfer's own code runs in the caller's thread; big products (matmul.py,
blas.py) are shared with helper threads.  A session asking for n threads
has at most n threads on one product; 0 asks for BLAS's default count, at
most the usable cores.  BLAS's own count is set through threadpoolctl (the
portable way to reach a BLAS's thread pool; an optional dependency, so the
runtime still imports with numpy alone).

During a run, BLAS is held to one thread, and webinfer spreads big
products itself (`share`): cut into bands of rows or columns, taken one at
a time by the calling thread and by helper threads as they get a core.
OpenBLAS would split every product above 262,144 multiply-adds statically
over its threads and the caller would then wait for each worker's share.
When the cores are busy with other processes (a shared server, a container
with a CPU limit) a worker waits for the scheduler's next tick (4 ms at
HZ=250) or several, so every split product costs milliseconds however
small it is: MiniLM at 128 tokens (36 such products) took 141-1,037 ms on 2
threads against 40-89 ms on one, on 2 cores with the load average at 4-10.
Shared parts never make the caller wait for a thread that has not started:
it takes every part still unclaimed, so busy cores cost a product only the
few microseconds of handing parts out, and idle ones speed it up as
onnxruntime's pool does (numbers in tests/test_threads.py's docstring).

The count is process-wide (it is BLAS's): the first run to start holds it
and the last to end restores it, and sessions running at the same time in
several threads should ask for the same count.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
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


@functools.lru_cache(maxsize=1)
@functools.lru_cache(maxsize=1)
def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (a container's
    CPU limit, rounded up).

    OpenBLAS sizes its pool by the cores it sees, which in a Kubernetes pod
    limited to 2 CPUs on a 64-core node is 64: every split product then
    waits on workers the quota keeps off the cores.  Read once: limits are
    set when a container starts.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup's CFS quota (v2 `cpu.max`, else v1 `cpu.cfs_quota_us`), None if unlimited."""
    for quota_file, period_file in (("/sys/fs/cgroup/cpu.max", None),
                                    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us")):
        try:
            fields = Path(quota_file).read_text().split()
            if period_file is not None:
                fields.append(Path(period_file).read_text().strip())
        except OSError:
            continue
        return parse_quota(fields)
    return None


def parse_quota(fields: list[str]) -> float | None:
    """CPUs from a cgroup quota and period ("max 100000" or "-1 100000": unlimited; "150000 100000": 1.5)."""
    if len(fields) != 2 or fields[0] in ("max", "-1"):
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


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


class _Runs:
    """The runs in progress in the process: the first holds BLAS to one thread, the last restores it.

    A count per run would let one session's end restore BLAS's default in
    the middle of another's run (a server runs several instances at once).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0
        self.saved: list[tuple[Callable[[int], Any], int]] = []
        #: BLAS's own count when the first run started, at most the usable cores: what a session asking
        #: for 0 may share a product over.
        self.default = 1
        #: Per thread, `allowed`: the threads its current run may give one product (unset outside runs).
        self.local = threading.local()

    def start(self, libs: list[tuple[Callable[[], int], Callable[[int], Any]]]) -> None:
        with self.lock:
            if self.active == 0:
                # Plain loops: this runs before every run, and a per-chunk audio model's whole run is ~50 us.
                top, saved = 1, []
                for get, put in libs:
                    n = get()
                    if n != 1:
                        top = max(top, n)
                        saved.append((put, n))
                        put(1)
                self.default = min(top, usable_cores())
                self.saved = saved
            self.active += 1

    def end(self) -> None:
        with self.lock:
            self.active -= 1
            if self.active == 0:
                for put, n in self.saved:
                    put(n)
                self.saved = []


_RUNS = _Runs()


class _Run:
    """One session run: BLAS on one thread, and `requested` threads (0: BLAS's default) to `share` products."""

    __slots__ = ("libs", "requested", "outer")

    def __init__(self, libs: list[tuple[Callable[[], int], Callable[[int], Any]]], requested: int):
        self.libs, self.requested = libs, requested
        self.outer: int | None = None

    def __enter__(self) -> None:
        _RUNS.start(self.libs)
        local = _RUNS.local
        self.outer = getattr(local, "allowed", None)  # a run inside a run (a custom op running a session)
        local.allowed = self.requested if self.requested > 0 else _RUNS.default

    def __exit__(self, *exc: Any) -> None:
        if self.outer is None:
            del _RUNS.local.allowed
        else:
            _RUNS.local.allowed = self.outer
        _RUNS.end()


def run_threads() -> int:
    """The threads the calling thread's run may use (0: not in a run)."""
    return getattr(_RUNS.local, "allowed", 0)


#: Multiply-adds from which a product in a run is cut into parts that other threads may help with
#: (`share`): ~1.3 ms on one core.  A part a helper has begun can still keep the caller waiting for
#: the helper's next timeslice on busy cores.  MiniLM at 128 tokens, load 6 on 2 cores, medians of 20
#: interleaved runs: 47 / 40 / 46 / 55 ms sharing from 2^24 / 2^26 / 2^28 / never, onnxruntime 44 ms;
#: at 8 x 128 tokens all four within 298-307 ms, onnxruntime 320 ms.
SHARE_WORK = 1 << 26
#: Parts per thread: when a helper is slow to get a core, the caller takes the parts it has not begun.
PARTS_PER_THREAD = 2


class _Shared:
    """The parts of one product, claimed one at a time by the caller and by helpers as they get a core."""

    __slots__ = ("task", "parts", "claims", "left", "lock", "done", "error")

    def __init__(self, task: Callable[[int], Any], parts: int):
        self.task, self.parts = task, parts
        self.claims = itertools.count()  # next() is atomic under the GIL: each part is claimed once
        self.left = parts
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def work(self) -> None:
        """Run unclaimed parts until none is left (a helper that gets a core late finds none and returns)."""
        while (i := next(self.claims)) < self.parts:
            try:
                self.task(i)
            except BaseException as e:  # noqa: BLE001 - handed to the caller, which raises it
                self.error = e
            with self.lock:
                self.left -= 1
                if self.left == 0:
                    self.done.set()


@functools.lru_cache(maxsize=1)
def _helpers() -> ThreadPoolExecutor:
    """Threads that help runs with big products (one fewer than the usable cores; idle ones sleep)."""
    return ThreadPoolExecutor(max_workers=max(1, usable_cores() - 1), thread_name_prefix="webinfer-share")


if hasattr(os, "register_at_fork"):
    # A forked child has none of the pool's threads: work queued there would hold its arrays forever.
    os.register_at_fork(after_in_child=_helpers.cache_clear)


def share(parts: int, task: Callable[[int], Any]) -> None:
    """Run `task(0) ... task(parts - 1)` (independent, each releasing the GIL in BLAS) on the calling thread,
    with helper threads taking parts too, up to the run's thread count in all.

    Unlike a BLAS split, the caller never waits for a helper that has not
    started: it takes every part still unclaimed, so on busy cores a product
    costs what it costs on one thread, plus a few microseconds.  It waits
    only for parts a helper has begun.
    """
    shared = _Shared(task, parts)
    pool = _helpers()
    for _ in range(min(run_threads(), parts) - 1):
        pool.submit(shared.work)
    shared.work()
    shared.done.wait()
    if shared.error is not None:
        raise shared.error


def share_parts(work: int, lines: int) -> int:
    """Into how many parts the calling thread's run cuts a product of `work` multiply-adds along a dim of
    `lines` rows or columns (1: it runs whole, on the caller's thread); parts keep at least 16 lines,
    which BLAS's kernels need to run at speed."""
    allowed = run_threads()
    if allowed <= 1 or work < SHARE_WORK:
        return 1
    return max(1, min(allowed * PARTS_PER_THREAD, lines // 16))


@functools.lru_cache(maxsize=1)
def _library_accessors() -> list[tuple[Callable[[], int], Callable[[int], Any]]]:
    ctrl = _controller()
    return [] if ctrl is None else [_accessors(lib) for lib in ctrl.lib_controllers]


def limit_runs(requested: int) -> ContextManager[Any]:
    """A context for one run: BLAS on one thread, big products shared over `requested` threads (0: BLAS's
    default count).  Nothing to do in Pyodide (no BLAS threads) or without threadpoolctl."""
    if sys.platform == "emscripten":
        return contextlib.nullcontext()
    ctrl = _controller()
    if ctrl is None:
        if requested > 0:
            _warn_unenforced(requested)
        return contextlib.nullcontext()
    return _Run(_library_accessors(), requested)


@functools.lru_cache(maxsize=None)
def _warn_unenforced(requested: int) -> None:
    warnings.warn(f"intra_op_num_threads={requested} is not enforced: limiting numpy's BLAS threads needs "
                  "the threadpoolctl package (pip install threadpoolctl)", RuntimeWarning, stacklevel=3)
