"""Helpers shared by the GPU kernel builders: shapes, strides, literals, dtypes.

Builders run once per node at session creation (see kernels.py): they read
attributes and constants, raise `Unsupported(reason)` for what the WGSL
kernels do not cover, and return the function that runs the node, which
computes shapes and uniforms from the tensors it receives (memoised per
input-shape signature, so a steady-state run is a dictionary lookup and a
dispatch).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from ... import dtypes
from ...activations import fused_params, fused_spec
from ...errors import DeviceError
from ...ir import TensorType
from ...ops.registry import OpContext
from .device import GpuDevice, GpuTensor, Unsupported, storage_type

#: Invocations per workgroup of the 1-D kernels (elementwise, copies, gathers).
WG = 128


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def contiguous_strides(shape: Sequence[int]) -> list[int]:
    out = [1] * len(shape)
    acc = 1
    for i in range(len(shape) - 1, -1, -1):
        out[i] = acc
        acc *= shape[i]
    return out


def bcast_strides(shape: Sequence[int], out_shape: Sequence[int]) -> list[int]:
    """Element strides of a contiguous `shape` read at every index of `out_shape` (numpy broadcasting)."""
    pad = len(out_shape) - len(shape)
    own = contiguous_strides(shape)
    return [0] * pad + [0 if shape[i] == 1 and out_shape[pad + i] != 1 else own[i] for i in range(len(shape))]


def collapse(out_shape: Sequence[int], strides: Sequence[Sequence[int]]) -> tuple[list[int], list[list[int]]]:
    """Drop size-1 dims and merge neighbours every operand walks contiguously (fewer index divisions)."""
    dims = [i for i, d in enumerate(out_shape) if d != 1]
    shape = [out_shape[i] for i in dims]
    sts = [[s[i] for i in dims] for s in strides]
    k = len(shape) - 2
    while k >= 0:
        if all(s[k] == s[k + 1] * shape[k + 1] for s in sts):
            shape[k] *= shape[k + 1]
            for s in sts:
                s[k] = s[k + 1]
                del s[k + 1]
            del shape[k + 1]
        k -= 1
    if not shape:
        return [1], [[0] for _ in sts]
    return shape, sts


def wgsl_float(v: float) -> str:
    """A WGSL f32 expression for `v`.  Infinities and NaN have no literal and may not be the value of a
    constant expression (Tint rejects that): they come from common.wgsl's wi_inf()/wi_nan()."""
    v = float(v)
    if math.isnan(v):
        return "wi_nan()"
    if math.isinf(v) or abs(v) > 3.4028234663852886e38:
        return "wi_inf()" if v > 0 else "(-wi_inf())"
    text = repr(float(np.float32(v)))
    return f"f32({text})"


def storage_decls(reads: Sequence[tuple[str, str]], writes: Sequence[tuple[str, str]]) -> str:
    """WGSL declarations of a kernel's storage buffers, (name, element type) each: `reads` read-only,
    then `writes` read_write, at bindings 1, 2, ... in that order (binding 0 is the parameter block `P`),
    which is the order the kernel's tensors are passed to `GpuDevice.dispatch`."""
    buffers = [(name, t, "read") for name, t in reads] + [(name, t, "read_write") for name, t in writes]
    return "\n".join(f"@group(0) @binding({i}) var<storage, {access}> {name}: array<{t}>;"
                     for i, (name, t, access) in enumerate(buffers, start=1))


def elem_dtype(t: Any) -> np.dtype | None:
    """The numpy dtype of a tensor type (None when unknown)."""
    if isinstance(t, TensorType) and t.elem is not None:
        return dtypes.storage_dtype(t.elem)
    return None


def in_dtype(ctx: OpContext, i: int) -> np.dtype | None:
    return elem_dtype(ctx.in_types[i]) if i < len(ctx.in_types) else None


def out_dtype(ctx: OpContext, i: int = 0) -> np.dtype:
    dt = elem_dtype(ctx.out_types[i]) if i < len(ctx.out_types) else None
    if dt is None:
        raise Unsupported(f"output {i} has an unknown element type")
    return dt


def wgsl_type(dev: GpuDevice, dtype: np.dtype) -> str:
    return storage_type(np.dtype(dtype), dev.f16).wgsl


def has_input(ctx: OpContext, i: int) -> bool:
    return i < len(ctx.node.inputs) and bool(ctx.node.inputs[i])


def require_float(ctx: OpContext, dev: GpuDevice, *inputs: int) -> str:
    """The WGSL storage type of the float dtype shared by `inputs`: f32, or f16 on adapters with shader-f16
    (kernels load f16 into f32 arithmetic and round once when they store)."""
    dt = in_dtype(ctx, inputs[0])
    for i in inputs:
        d = in_dtype(ctx, i)
        if d is None or d.kind != "f":
            raise Unsupported(f"input {i} is {d.name if d is not None else 'untyped'}; this kernel is float-only")
        if d != dt:
            raise Unsupported(f"inputs have different float types ({dt} and {d})")
    assert dt is not None
    if dt == np.float16 and not dev.f16:
        raise Unsupported("float16 needs an adapter with shader-f16")
    if dt not in (np.float32, np.float16):
        raise Unsupported(f"{dt} has no GPU storage type")
    return wgsl_type(dev, dt)


def const_ints(ctx: OpContext, i: int, what: str) -> list[int] | None:
    """A constant integer input as a list, None when absent; non-constant raises Unsupported."""
    if not has_input(ctx, i):
        return None
    v = ctx.const(i)
    if v is None:
        raise Unsupported(f"{what} (input {i}) must be a constant known at load")
    return [int(x) for x in np.asarray(v).reshape(-1)]


def host_params(ctx: OpContext, dev: GpuDevice, *inputs: int) -> None:
    """Parameter inputs (shapes, axes, starts, pads, scales) must be known on the host: a value the GPU
    computes would need a readback in the middle of the kernel, so such a node stays on the CPU."""
    for i in inputs:
        if has_input(ctx, i) and ctx.node.inputs[i] in dev.resident and ctx.const(i) is None:
            raise Unsupported(f"input {i} ('{ctx.node.inputs[i]}') sets the output's shape but is computed "
                              "on the GPU")


def host_values(t: GpuTensor | np.ndarray | None, what: str) -> np.ndarray | None:
    """The values of a small input that came from the host (shape vectors, axes, scales).

    Such inputs never become buffers: the CPU computed them, the GPU tensor
    keeps the array.  One computed on the GPU would need a readback, which a
    kernel must not do mid-run.
    """
    if t is None:
        return None
    if not isinstance(t, GpuTensor):
        return np.asarray(t)
    h = t.host
    if h is None:
        raise DeviceError(f"{what} was computed on the GPU, but the kernel needs its values on the host "
                          "(compute it on the cpu provider)")
    return h


class ShapeMemo:
    """Per-kernel cache from an input-shape signature to what a dispatch needs (program, uniforms, grid)."""

    __slots__ = ("entries", "make")

    def __init__(self, make: Callable[..., Any]):
        self.entries: dict[Hashable, Any] = {}
        self.make = make

    def get(self, key: Hashable, *args: Any) -> Any:
        hit = self.entries.get(key)
        if hit is None:
            if len(self.entries) > 64:
                self.entries.clear()
            hit = self.entries[key] = self.make(*args)
        return hit


def normalize_axis(axis: int, rank: int, label: str) -> int:
    if not -rank <= axis < max(rank, 1):
        raise Unsupported(f"{label}: axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def activation_expr(ctx: OpContext) -> str:
    """The WGSL expression over `x` of the fused `activation*` attributes (activations.py's table), or `x`."""
    spec = fused_spec(ctx)
    if spec is None:
        return "x"
    return params_into(spec.wgsl, fused_params(ctx, spec))


def params_into(expr: str, params: dict[str, float]) -> str:
    """`expr` with its `{name}` parameters written as WGSL literals; a name without a value is Unsupported."""
    for name, value in params.items():
        expr = expr.replace("{" + name + "}", wgsl_float(value))
    if "{" in expr:
        raise Unsupported(f"expression {expr!r} names a parameter without a value")
    return expr
