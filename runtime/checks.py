"""Runtime checks against inferred types: feeds at `run`, and (strict mode) every node's outputs.

Strict mode is how the test suite holds the shape rules to account: every
value an op produces must have the element type and the (non-symbolic)
dims that inference predicted at load.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import dtypes
from .errors import InputError, InputTypeError, ShapeInferenceError
from .devices.gpu.device import GpuTensor
from .ir import OptionalType, SequenceType, TensorType, Type, ValueInfo
from .ops.registry import OpContext


def _value_matches(t: Type | None, value: Any) -> str | None:
    """None if `value` fits type `t`, else what is wrong."""
    if t is None or value is None:
        return None
    if isinstance(t, TensorType):
        if not isinstance(value, np.ndarray):
            return f"expected a tensor, got {type(value).__name__}"
        if t.elem is not None:
            want = dtypes.storage_dtype(t.elem)
            if value.dtype != want and not (want == np.dtype(object) and value.dtype.kind in "OUS"):
                return f"element type {value.dtype} but inferred {dtypes.type_name(t.elem)}"
        if t.shape is not None:
            if len(t.shape) != value.ndim:
                return f"shape {list(value.shape)} but inferred rank {len(t.shape)} {list(t.shape)}"
            for d, v in zip(t.shape, value.shape):
                if isinstance(d, int) and d != v:
                    return f"shape {list(value.shape)} but inferred {list(t.shape)}"
        return None
    if isinstance(t, SequenceType):
        if not isinstance(value, list):
            return f"expected a sequence, got {type(value).__name__}"
        for item in value:
            bad = _value_matches(t.elem, item)
            if bad:
                return f"sequence item: {bad}"
        return None
    if isinstance(t, OptionalType):
        return _value_matches(t.elem, value)
    return None


def check_outputs(ctx: OpContext, outputs: Sequence[Any]) -> None:
    for i, (t, v) in enumerate(zip(ctx.out_types, outputs)):
        bad = _value_matches(t, v)
        if bad:
            raise ShapeInferenceError(f"{ctx.node.label()}: output {i} ('{ctx.node.outputs[i]}'): {bad}")


def check_feed(info: ValueInfo, value: Any) -> Any:
    """Validate one input against its declared type; return it in webinfer storage.

    Fixed sizes are checked, symbolic ones are not (as onnxruntime): see
    `symbols_agree` for what the session does with names shared by inputs.
    """
    t = info.type
    if isinstance(t, (SequenceType, OptionalType)):
        return value
    if not isinstance(t, TensorType):
        return value
    if value is None:
        raise InputError(f"input '{info.name}' is None; expected {t.describe()}")
    if isinstance(value, GpuTensor):
        return _check_device_feed(info, t, value)
    if not isinstance(value, np.ndarray):
        want = dtypes.storage_dtype(t.elem) if t.elem is not None else None
        try:
            value = np.asarray(value, dtype=want if want is not None and want != np.dtype(object) else None)
        except (TypeError, ValueError) as e:
            raise InputTypeError(f"input '{info.name}': cannot make a {t.describe()} tensor of a "
                                 f"{type(value).__name__}: {e}") from e
    if t.elem is not None:
        try:
            got = dtypes.from_numpy(value.dtype)
        except TypeError:
            got = None
        storage_ok = not dtypes.ELEM_TYPES[t.elem].native and value.dtype == dtypes.storage_dtype(t.elem)
        if got != t.elem and not storage_ok:  # non-native types may also come as webinfer storage
            raise InputTypeError(
                f"input '{info.name}' has element type {value.dtype} but the model expects "
                f"{dtypes.type_name(t.elem)} ({str(t)})")
        value = dtypes.import_array(value, t.elem)
    _check_dims(info, t, value.shape, "has")
    return value


def _check_dims(info: ValueInfo, t: TensorType, shape: tuple[int, ...], held: str) -> None:
    """A feed's rank and fixed dims against its declared type (`held`: how the message says what it is)."""
    if t.shape is None:
        return
    if len(shape) != len(t.shape):
        raise InputError(
            f"input '{info.name}' {held} shape {list(shape)} (rank {len(shape)}) but the model "
            f"expects rank {len(t.shape)}: {t.describe()}")
    for axis, (d, v) in enumerate(zip(t.shape, shape)):
        if isinstance(d, int) and d != v:
            raise InputError(
                f"input '{info.name}' {held} shape {list(shape)} but the model expects "
                f"{t.describe()} (dimension {axis} must be {d})")


def _check_device_feed(info: ValueInfo, t: TensorType, value: GpuTensor) -> GpuTensor:
    """A feed already on the GPU (an OrtValue bound through IOBinding): dtype and fixed dims."""
    if t.elem is not None and value.dtype != dtypes.storage_dtype(t.elem):
        raise InputTypeError(f"input '{info.name}' is a GPU tensor of {value.dtype} but the model expects "
                             f"{dtypes.type_name(t.elem)}")
    _check_dims(info, t, value.shape, "is a GPU tensor of")
    return value


def symbols_agree(infos: Sequence[ValueInfo], values: Sequence[Any]) -> bool:
    """Whether every symbolic dim name takes one size across the feeds.

    Shape inference assumed so at load; when feeds disagree (onnxruntime
    accepts that), the session runs a plan made without the assumption.
    """
    seen: dict[str, int] = {}
    for info, value in zip(infos, values):
        t = info.type
        if not isinstance(t, TensorType) or t.shape is None or not isinstance(value, np.ndarray):
            continue
        for d, v in zip(t.shape, value.shape):
            if isinstance(d, str) and seen.setdefault(d, v) != v:
                return False
    return True
