"""The CPU device: numpy kernels from the op table.

Builds the function that runs one node.  Ops that compute on element types
numpy lacks (bfloat16, float8, int4, ...) get their inputs decoded to float32
and their outputs rounded back with Cast's rules, unless the op handles
storage itself (data movement, Cast, quantization).
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from .. import dtypes
from ..ir import TensorType, Type
from ..ops.registry import Kernel, OpContext, OpDef, consuming, offer_consuming

NAME = "cpu"


def _exotic_elem(t: Type | None) -> int | None:
    """The element type of a tensor numpy holds only as storage (bfloat16, float8, int4...), else None."""
    if isinstance(t, TensorType) and t.elem is not None and not dtypes.ELEM_TYPES[t.elem].native:
        return t.elem
    return None


def _compute_type(t: Type | None) -> Type | None:
    """The type a non-storage-aware kernel sees for an exotic tensor."""
    code = _exotic_elem(t)
    if code is None:
        return t
    assert isinstance(t, TensorType)
    elem = dtypes.FLOAT if code in dtypes.SMALL_FLOATS else (
        dtypes.INT8 if dtypes.SUB_BYTE_INTS[code][0] < 0 else dtypes.UINT8)
    return TensorType(elem, t.shape)


def build_kernel(opdef: OpDef, ctx: OpContext) -> Kernel:
    """The numpy function for one node, with exotic dtypes handled around it (and, in the strided
    test mode, its inputs handed over as read-only non-contiguous views)."""
    kernel = _build(opdef, ctx)
    if not getattr(ctx.options, "strided_test_inputs", False):
        return kernel
    strided = _strided_inputs(kernel)
    consume = consuming(kernel)
    if consume is not None:
        offer_consuming(strided, consume[0], _strided_inputs(consume[1], keep=consume[0]))
    return strided


def _build(opdef: OpDef, ctx: OpContext) -> Kernel:
    in_codes = [(i, code) for i, t in enumerate(ctx.in_types) if (code := _exotic_elem(t)) is not None]
    ex_out = [(i, code) for i, t in enumerate(ctx.out_types) if (code := _exotic_elem(t)) is not None]
    if opdef.exotic or not (in_codes or ex_out):
        return opdef.build(ctx)
    consts = list(ctx.consts)
    for i, code in in_codes:
        if i < len(consts) and consts[i] is not None:
            consts[i] = dtypes.to_float32(consts[i], code)
    inner = opdef.build(replace(ctx, in_types=[_compute_type(t) for t in ctx.in_types],
                                out_types=[_compute_type(t) for t in ctx.out_types], consts=consts))

    def run(*args: Any, **kw: Any) -> Any:
        args_l = list(args)
        for i, code in in_codes:
            if i < len(args_l) and args_l[i] is not None:
                args_l[i] = dtypes.to_float32(args_l[i], code)
        res = list(inner(*args_l, **kw))
        for i, code in ex_out:
            if res[i] is not None:
                res[i] = dtypes.from_float(np.asarray(res[i]), code)
        return res

    return run


#: The layouts of the strided test mode, cycled through: see `_strided_view`.
_LAYOUTS = ("transposed", "step", "reversed")


def _poison(dtype: np.dtype) -> Any:
    """What fills the gaps of a stepped view: a value a kernel reading them would show."""
    if dtype.kind in "fc":
        return np.nan
    if dtype.kind in "iu":
        return np.iinfo(dtype).max
    if dtype.kind == "b":
        return True
    return None


def _strided_view(x: np.ndarray, layout: str) -> np.ndarray:
    """A read-only view of new memory holding `x`'s values, laid out as `layout`:

    - "transposed": Fortran order, as a Transpose's output lies (for 1-D arrays, "step");
    - "step": every second element of a buffer twice as long along the last axis, the gaps
      poisoned (NaN for floats), as a strided Slice lies;
    - "reversed": a reversed copy viewed reversed: negative strides on every axis.

    0-d and empty arrays keep their layout.  Read-only, so a kernel writing into its input raises.
    """
    if x.ndim == 0 or x.size == 0:
        v = x.view()
    elif layout == "transposed" and x.ndim >= 2:
        v = np.ascontiguousarray(x.T).T
    elif layout == "reversed":
        v = np.flip(np.flip(x).copy())
    else:
        fill = _poison(x.dtype)
        buf = np.full(x.shape[:-1] + (2 * x.shape[-1],), fill, x.dtype) if fill is not None \
            else np.empty(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
        v = buf[..., ::2]
        v[...] = x
    v.flags.writeable = False
    return v


def _strided_inputs(kernel: Kernel, keep: int = -1) -> Kernel:
    """`kernel` run on strided views of its array inputs (SessionOptions.strided_test_inputs).

    Input i on the kernel's k-th call takes layout (k + i + sum of its dims) mod 3, so every
    layout reaches every input position over a test suite's many shapes and a loop's many calls.
    Arrays inside sequences are viewed alike.  Input `keep` (the buffer a consuming variant may
    overwrite, see registry.offer_consuming) is passed as it is.
    """
    calls = 0

    def view(x: Any, i: int) -> Any:
        if isinstance(x, np.ndarray):
            return _strided_view(x, _LAYOUTS[(calls + i + sum(x.shape)) % len(_LAYOUTS)])
        if isinstance(x, list):
            return [view(e, i + j) for j, e in enumerate(x)]
        return x

    def run(*args: Any, **kw: Any) -> Any:
        nonlocal calls
        views = [a if i == keep else view(a, i) for i, a in enumerate(args)]
        calls += 1
        return kernel(*views, **kw)

    return run


_ARENA_SET = False
#: glibc mallopt parameters: M_TRIM_THRESHOLD, M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def enable_memory_arena() -> bool:
    """Keep freed tensor memory in the process for reuse, like onnxruntime's CPU arena.

    numpy allocates each activation afresh; glibc hands big blocks back to
    the OS on free (mmap threshold, heap trimming), so the next run page-
    faults them in again: thousands of faults per CNN run, 2-6% of the
    latency.  Raising both thresholds makes freed blocks reusable.  The
    cost is onnxruntime's too: the process keeps its peak memory until exit.
    Only on glibc (Linux); elsewhere, and inside Pyodide, nothing changes.
    """
    global _ARENA_SET
    if _ARENA_SET:
        return True
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):
        return False
    _ARENA_SET = ok
    return ok


class CpuDevice:
    """The host (devices/protocol.py): kernels are numpy functions and tensors are numpy arrays, so moving
    them is free, every op has a kernel, and a run needs no hooks."""

    name = NAME
    batched_downloads = False
    run_hooks = False

    def build(self, opdef: OpDef, ctx: OpContext) -> Kernel:
        return build_kernel(opdef, ctx)

    def upload(self, value: Any) -> Any:
        return value

    async def download(self, value: Any) -> Any:
        return value

    async def download_many(self, values: Sequence[Any]) -> list[Any]:
        return list(values)

    def run_started(self) -> None:
        """Nothing to prepare: numpy kernels run as the executor calls them."""

    def run_finished(self) -> None:
        """Nothing pending: numpy kernels finish before they return."""

    def fallback_reasons(self) -> dict[str, str]:
        return {}

    def run_stats(self) -> dict[str, Any]:
        return {}
