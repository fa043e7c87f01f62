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
from typing import Any

import numpy as np

from .. import dtypes
from ..ir import TensorType, Type
from ..ops.registry import Kernel, OpContext, OpDef

NAME = "cpu"


def _is_exotic(t: Type | None) -> bool:
    return isinstance(t, TensorType) and t.elem is not None and not dtypes.ELEM_TYPES[t.elem].native


def _compute_type(t: Type | None) -> Type | None:
    """The type a non-storage-aware kernel sees for an exotic tensor."""
    if not _is_exotic(t):
        return t
    assert isinstance(t, TensorType) and t.elem is not None
    elem = dtypes.FLOAT if t.elem in dtypes.SMALL_FLOATS else (
        dtypes.INT8 if dtypes.SUB_BYTE_INTS[t.elem][0] < 0 else dtypes.UINT8)
    return TensorType(elem, t.shape)


def build_kernel(opdef: OpDef, ctx: OpContext) -> Kernel:
    """The numpy function for one node, with exotic dtypes handled around it."""
    ex_in = [i for i, t in enumerate(ctx.in_types) if _is_exotic(t)]
    ex_out = [(i, t.elem) for i, t in enumerate(ctx.out_types) if _is_exotic(t)]  # type: ignore[union-attr]
    if opdef.exotic or not (ex_in or ex_out):
        return opdef.build(ctx)
    in_codes = [(i, ctx.in_types[i].elem) for i in ex_in]  # type: ignore[union-attr]
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
    """The host: kernels are numpy functions and tensors are numpy arrays."""

    name = NAME

    def build(self, opdef: OpDef, ctx: OpContext) -> Kernel:
        return build_kernel(opdef, ctx)

    def upload(self, value: Any) -> Any:
        return value

    async def download(self, value: Any) -> Any:
        return value
