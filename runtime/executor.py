"""Running a plan: the only place that knows about time.

`run_async` walks the steps over a list of slots.  Only device readbacks are
awaited, so a CPU plan never touches an event loop; natively `run_sync`
drives the same coroutine to completion directly (no asyncio), and in the
browser `await run_async(...)` lets WebGPU readbacks resolve.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Coroutine, Sequence

import numpy as np

from .errors import NodeExecutionError, RunTerminatedError, WebinferError, describe_value
from .plan import Plan, Step


@dataclass
class Profile:
    """Per-run measurements, filled when requested (bench, --profile)."""

    node_ms: dict[str, float] = field(default_factory=dict)
    op_ms: dict[str, float] = field(default_factory=dict)
    #: Bytes of the tensors the executor holds (constants excluded), now and at most.
    live_bytes: int = 0
    peak_live_bytes: int = 0
    #: When a list: one (node, op, device, start ns, duration ns) per step, for trace files.
    events: list[tuple[str, str, str, int, int]] | None = None


def _fail(step: Step, args: list[Any], e: BaseException) -> NodeExecutionError:
    ins = ", ".join(f"{n or '-'}: {describe_value(a)}" for n, a in zip(step.node.inputs, args))
    if isinstance(e, WebinferError):
        msg = str(e)
        return NodeExecutionError(f"{step.node.label()} (inputs {ins}) failed: {msg}")
    return NodeExecutionError(f"{step.node.label()} failed on inputs ({ins}) on {step.device}: "
                              f"{type(e).__name__}: {e}")


async def run_async(plan: Plan, feeds: Sequence[Any], profile: Profile | None = None,
                    control: Any = None) -> list[Any]:
    """Run `plan` on `feeds` (one value per plan input, in order); return its outputs.

    `control` (a RunOptions) is checked between steps: once its `terminate`
    is set, the run stops with RunTerminatedError.
    """
    cache = plan.shape_cache
    if cache is None:
        return await _run(plan, plan.steps, feeds, profile, None, None, control)
    key = tuple(getattr(f, "shape", None) for f in feeds)
    hit = cache.entries.get(key)
    if hit is not None:
        outs = await _run(plan, cache.steps, feeds, profile, zip(cache.slots, hit), None, control)
        # a cached value handed out as an output must not be mutable by the caller
        return [o.copy() if isinstance(o, np.ndarray) and any(o is h for h in hit) else o for o in outs]
    captured: dict[int, Any] = {}
    outs = await _run(plan, plan.steps, feeds, profile, None, captured, control)
    if all(s in captured for s in cache.slots):
        cache.entries[key] = [captured[s] for s in cache.slots]
        if len(cache.entries) > cache.limit:
            cache.entries.popitem(last=False)
    return outs


#: Appended to a run's slots: an absent optional input (slot -1) reads this None, so arguments
#: are gathered without a per-input test.
_ABSENT = [None]


async def _run(plan: Plan, steps: list[Step], feeds: Sequence[Any], profile: Profile | None,
               prefill: Any, captured: dict[int, Any] | None, control: Any = None) -> list[Any]:
    vals = plan.initial + _ABSENT
    for slot, value in zip(plan.input_slots, feeds):
        vals[slot] = value
    if prefill is not None:
        for slot, value in prefill:
            vals[slot] = value
    if profile is not None:
        profile.live_bytes = sum(_nbytes(v) for v in feeds)
        profile.peak_live_bytes = max(profile.peak_live_bytes, profile.live_bytes)
    t0 = 0.0
    res: Any  # a step's outputs, or (is_async) an awaitable of them
    for step in steps:
        if control is not None and control.terminate:
            raise RunTerminatedError(f"run terminated (RunOptions.terminate) before {step.node.label()}")
        args = [vals[i] for i in step.ins]
        consume = step.consume
        fn = consume[1] if consume is not None and _handed_over(args, consume[0]) else step.fn
        if profile is not None:
            t0 = time.perf_counter()
        try:
            res = fn(*args)
            if step.is_async:
                res = await res
        except Exception as e:  # noqa: BLE001 - re-raised with the node named
            raise _fail(step, args, e) from e
        outs = step.outs
        if len(res) < len(outs):
            raise NodeExecutionError(f"{step.node.label()}: kernel returned {len(res)} outputs, "
                                     f"expected {len(outs)}")
        if len(outs) == 1:
            if outs[0] >= 0:
                vals[outs[0]] = res[0]
        else:
            for i, o in enumerate(outs):
                if o >= 0:
                    vals[o] = res[i]
        if step.capture and captured is not None:
            for o in outs:
                captured[o] = vals[o]
        if profile is not None:
            _account(profile, step, vals, res, time.perf_counter() - t0)
        for f in step.free:
            vals[f] = None
        res = None  # the next step may consume these outputs: hold them only in their slots
    return [vals[i] for i in plan.output_slots]


def _refs(args: list[Any], i: int) -> int:
    return sys.getrefcount(args[i])


def _sole_refs() -> int:
    """What `_refs` reads for an array held only by its slot and the step's argument list.

    Measured, not assumed: how many references the call itself adds
    depends on the interpreter version.
    """
    vals = [np.empty(1)]
    args = [vals[0]]
    return _refs(args, 0)


_SOLE_REFS = _sole_refs()


def _handed_over(args: list[Any], i: int) -> bool:
    """Whether `args[i]`, an input that dies at this step, is a buffer only the executor holds.

    Any other holder shows in its reference count: the caller's feeds, the
    shape cache, a constant, another argument, or a view of it in another
    slot (a view references the array that owns its memory).  Then its
    step may overwrite it (`Step.consume`).
    """
    if _refs(args, i) != _SOLE_REFS:
        return False
    v = args[i]
    return isinstance(v, np.ndarray) and v.flags.owndata and v.flags.writeable


def _nbytes(v: Any) -> int:
    if isinstance(v, np.ndarray):
        return v.nbytes
    if isinstance(v, list):
        return sum(_nbytes(x) for x in v)
    return int(getattr(v, "nbytes", 0) or 0)


def _account(profile: Profile, step: Step, vals: list[Any], res: Sequence[Any], dt: float) -> None:
    key = step.node.name or step.node.outputs[0]
    if profile.events is not None:
        end = time.perf_counter_ns()
        profile.events.append((key, step.node.op_type, step.device, end - int(dt * 1e9), int(dt * 1e9)))
    profile.node_ms[key] = profile.node_ms.get(key, 0.0) + dt * 1e3
    profile.op_ms[step.node.op_type] = profile.op_ms.get(step.node.op_type, 0.0) + dt * 1e3
    profile.live_bytes += sum(_nbytes(r) for r in res)
    profile.peak_live_bytes = max(profile.peak_live_bytes, profile.live_bytes)
    profile.live_bytes -= sum(_nbytes(vals[f]) for f in step.free)


def drive(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never truly suspends (CPU and native GPU plans).

    No event loop is created: sessions can be used from inside running loops
    (Jupyter, servers) and the per-run cost stays near zero.
    """
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("this plan waits on asynchronous device work: use `await session.run_async(...)`")


def run_sync(plan: Plan, feeds: Sequence[Any], profile: Profile | None = None) -> list[Any]:
    return drive(run_async(plan, feeds, profile))
