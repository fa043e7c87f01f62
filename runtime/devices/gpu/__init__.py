"""The `webgpu` provider: WGSL kernels over WebGPU, natively (wgpu-py) or in the browser.

`open_device(options)` picks the backend for where Python runs: Pyodide's
`js` bridge to `navigator.gpu` in a browser, wgpu-py elsewhere.  Either way
it raises `DeviceError` with a clear message when no adapter is available,
which the session turns into a CPU fallback (with one warning) when "cpu" is
also listed in the providers.
"""

from __future__ import annotations

import sys
from typing import Any

from ...errors import DeviceError
from .device import Backend, GpuDevice, GpuTensor

__all__ = ["open_device", "GpuDevice", "GpuTensor"]

#: One backend (adapter, device, compiled pipelines) per process and power preference, shared by
#: every session: opening a device costs ~0.4 s and compiling a pipeline up to a second.
_BACKENDS: dict[str, Backend] = {}


def open_device(options: dict[str, Any] | None = None) -> GpuDevice:
    """A `GpuDevice` (per session: pool, counters, placement) on the process's backend for the
    best adapter.  Provider options: power_preference, matmul_variant "regblock"/"tiled"/"tiled8"/"auto",
    row_schedule "serial"/"wg" (Softmax and normalizations), integer_ops "resident"/"always"."""
    options = dict(options or {})
    if sys.platform == "emscripten":
        raise DeviceError("the browser WebGPU backend is not available in this build of webinfer")
    power = str(options.get("power_preference", "high-performance"))
    backend = _BACKENDS.get(power)
    if backend is None:
        from .native import NativeBackend
        backend = _BACKENDS[power] = NativeBackend(options)
    return GpuDevice(backend, options)
