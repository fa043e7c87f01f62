"""Run one fuzz case under limits and classify what happened.

A case loads the model (`webinfer.InferenceSession(bytes)`) and, when it
loads, runs it once on a small feed that fits the declared inputs.  The
contract under test (issue 9): the loader and the builders fail only with
webinfer's documented errors, never exhaust memory on a claimed size and
never hang.

Outcomes, as tuples so they pickle and count cheaply:
  ("ok",)                               loaded (and ran, or had no feed we could build)
  ("documented", class name)            a `webinfer.WebinferError` subclass
  ("undocumented", type, location)      anything else; location is the innermost webinfer frame
  ("memory", where)                     MemoryError, or the worker died under its memory cap
  ("hang", "load" | "run")              the worker passed its time limit while loading / running
`NodeExecutionError` at run counts as documented: it is the error a node's
failure on its actual inputs is specified to raise, including a tensor the
run computes to be larger than memory (ConstantOfShape of a fed or folded
shape of 2**40 elements; onnxruntime fails such runs alike).  It is counted
apart, as "NodeExecutionError (out of memory at run)", so a kernel that
allocates for padding or scratch what its output does not need still shows.
A MemoryError while loading is always a blow-up: loading allocates only
what the file holds, or what folding caps.
"""

from __future__ import annotations

import math
import os
import pickle
import resource
import select
import signal
import time
import traceback
from typing import Any, Callable

import numpy as np

import webinfer
from webinfer import dtypes

#: Elements a feed may have; models declaring bigger inputs load but do not run.
MAX_FEED_ELEMENTS = 1 << 16
RUNTIME_DIR = os.path.dirname(webinfer.__file__)


def limit_memory(extra_bytes: int) -> None:
    """Cap this process's address space at its current size plus `extra_bytes`."""
    with open("/proc/self/statm") as f:
        vm_pages = int(f.read().split()[0])
    limit = vm_pages * resource.getpagesize() + extra_bytes
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _location(e: BaseException) -> str:
    """The innermost frame inside webinfer (else the innermost frame): file:line function."""
    frames = traceback.extract_tb(e.__traceback__)
    inside = [f for f in frames if f.filename.startswith(RUNTIME_DIR)]
    f = (inside or frames or [None])[-1]
    if f is None:
        return "?"
    return f"{os.path.relpath(f.filename, os.path.dirname(RUNTIME_DIR))}:{f.lineno} {f.name}"


def _feed(sess: webinfer.InferenceSession) -> dict[str, Any] | None:
    """Arrays fitting the declared inputs (symbolic dims = 2), or None when none fits."""
    rng = np.random.default_rng(0)
    by_name = {f"tensor({t.name})": t for t in dtypes.ELEM_TYPES.values()}
    feed = {}
    for arg in sess.get_inputs():
        t = by_name.get(arg.type)
        if t is None or arg.shape is None:
            return None
        shape = [d if isinstance(d, int) else 2 for d in arg.shape]
        if any(d < 0 or d > MAX_FEED_ELEMENTS for d in shape) or math.prod(shape) > MAX_FEED_ELEMENTS:
            return None
        if t.code == dtypes.STRING:
            arr = np.full(shape, "a", dtype=object)
        else:
            arr = dtypes.export_array(rng.integers(0, 3, size=shape).astype(t.storage), t.code)
        feed[arg.name] = arr
    return feed


def _memory_error(e: BaseException) -> BaseException | None:
    """The MemoryError behind `e` (itself or a cause), if any."""
    cur: BaseException | None = e
    for _ in range(16):
        if cur is None:
            return None
        if isinstance(cur, MemoryError):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


def run_case(data: bytes, running: Callable[[], None] | None = None) -> tuple[str, ...]:
    """Load and run one model; classify the outcome (see the module docstring).

    `running` is called once the model has loaded and its run starts, so a
    supervisor that has to kill the case can tell a hang at load (a bug) from
    a run that does not end (a Loop with no trip count whose condition stays
    true is an endless loop by ONNX's own semantics).
    """
    phase = "load"
    try:
        sess = webinfer.InferenceSession(data)
        feed = _feed(sess)
        if feed is not None:
            phase = "run"
            if running is not None:
                running()
            sess.run(None, feed)
        return ("ok",)
    except Exception as e:  # noqa: BLE001 - classifying every failure is the point
        oom = _memory_error(e)
        if oom is not None and phase == "run" and isinstance(e, webinfer.NodeExecutionError):
            return ("documented", "NodeExecutionError (out of memory at run)", _location(oom))
        if oom is not None:
            return ("memory", f"{phase}: {_location(oom)}")
        if isinstance(e, webinfer.WebinferError):
            return ("documented", type(e).__name__)
        return ("undocumented", type(e).__name__, _location(e))


#: What a child writes to its pipe when the run starts (a pickle never begins with it).
_RUNNING = b"R"


def run_isolated(data: bytes, timeout: float = 10.0, memory: int = 1 << 30) -> tuple[str, ...]:
    """`run_case` in a forked child with `memory` more bytes of address space
    than it starts with and `timeout` seconds; a child that overruns is
    killed ("hang"), one that dies is a memory blow-up."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's stack (pytest's, hypothesis')
        code = 0
        try:
            os.close(read)
            limit_memory(memory)
            outcome = run_case(data, lambda: os.write(write, _RUNNING))
            os.write(write, pickle.dumps(outcome))
        except BaseException:  # noqa: BLE001 - the parent classifies a silent child
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    deadline = time.monotonic() + timeout
    chunks = []
    with os.fdopen(read, "rb") as pipe:
        while True:
            if not select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return ("hang", "run" if chunks[:1] == [_RUNNING] else "load")
            chunk = pipe.read1(1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks).removeprefix(_RUNNING)
    if not data:
        return ("memory", f"child died (status {status})")
    return pickle.loads(data)
