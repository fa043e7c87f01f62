"""The `webgpu` provider: WGSL kernels over WebGPU, natively (wgpu-py) or in the browser.

`open_device(options)` picks the backend for where Python runs: Pyodide's
`js` bridge to `navigator.gpu` in a browser (browser.py), wgpu-py elsewhere
(native.py).  Either way it raises `DeviceError` with a clear message when no
adapter is available, which the session turns into a CPU fallback (with one
warning) when "cpu" is also listed in the providers.

In the browser the adapter and device arrive through promises, and a
session's constructor is synchronous.  So the device is opened first:
`await webinfer.init_webgpu(timeout_s=...)` (the demo's worker does this before it
creates sessions).  Where Pyodide can block on a promise (JSPI, entered
through `runPythonAsync`), a session created without that call opens the
device itself through `pyodide.ffi.run_sync`; elsewhere (Node.js, no JSPI)
the error says to call `init_webgpu` first.  A failed attempt is remembered,
so later sessions fall back to the CPU at once, with the same reason, instead
of waiting for the timeout again; calling `init_webgpu` again retries.
"""

from __future__ import annotations

import sys
from typing import Any

from ...errors import DeviceError
from .device import Backend, GpuDevice, GpuTensor

__all__ = ["open_device", "init_webgpu", "hardware_adapter_present", "GpuDevice", "GpuTensor", "DEFAULT_TIMEOUT_S"]

#: How long the browser waits for `requestAdapter()` (and then `requestDevice()`): some drivers never answer.
DEFAULT_TIMEOUT_S = 4.0

#: One backend (adapter, device, compiled pipelines) per process and power preference, shared by
#: every session: opening a device costs ~0.4 s and compiling a pipeline up to a second.
_BACKENDS: dict[str, Backend] = {}
#: Why opening a backend failed, per power preference (the browser remembers; see the module doc).
_FAILURES: dict[str, str] = {}

IN_BROWSER = sys.platform == "emscripten"


def _power(options: dict[str, Any]) -> str:
    return str(options.get("power_preference", "high-performance"))


async def init_webgpu(options: dict[str, Any] | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> Backend:
    """Open (once) the WebGPU backend sessions will use and return it; raises `DeviceError` when there is
    no adapter.  Needed before creating `webgpu` sessions in a browser without JSPI; natively it opens
    wgpu-py's device (the same thing `open_device` does on demand), so portable code can always call it.

    `timeout_s` bounds each of `requestAdapter()` and `requestDevice()` in the browser.  After a failure,
    sessions fall back to the CPU without trying again; another call to this function does try again.
    """
    options = dict(options or {})
    power = _power(options)
    backend = _BACKENDS.get(power)
    if backend is not None:
        return backend
    try:
        if IN_BROWSER:
            from .browser import open_backend
            backend = await open_backend(options, timeout_s)
        else:
            from .native import NativeBackend
            backend = NativeBackend(options)
    except DeviceError as e:
        if IN_BROWSER:
            _FAILURES[power] = str(e)
        raise
    _FAILURES.pop(power, None)
    _BACKENDS[power] = backend
    return backend


def _browser_backend(options: dict[str, Any]) -> Backend:
    """The browser backend, opened now by blocking on `init_webgpu` through JSPI (`init_webgpu` was not
    awaited before); without WebGPU at all, that is the reason given (and remembered)."""
    from pyodide.ffi import can_run_sync, run_sync

    from .browser import navigator_gpu
    try:
        navigator_gpu()
    except DeviceError as e:
        _FAILURES[_power(options)] = str(e)
        raise
    if not can_run_sync():
        raise DeviceError("the browser's WebGPU device is opened asynchronously: `await "
                          "webinfer.init_webgpu()` before creating the session (this runtime cannot "
                          "wait on a promise synchronously: no JSPI, or not entered through runPythonAsync)")
    return run_sync(init_webgpu(options, float(options.get("timeout_s", DEFAULT_TIMEOUT_S))))


def open_device(options: dict[str, Any] | None = None) -> GpuDevice:
    """A `GpuDevice` (per session: pool, counters, placement) on the process's backend for the
    best adapter.  Provider options: power_preference, matmul_variant "regblock"/"tiled"/"tiled8"/"auto",
    row_schedule "serial"/"wg" (Softmax and normalizations), integer_ops "resident"/"always", and in the
    browser timeout_s (for a device opened on demand)."""
    options = dict(options or {})
    power = _power(options)
    backend = _BACKENDS.get(power)
    if backend is None:
        if power in _FAILURES:
            raise DeviceError(_FAILURES[power])
        if IN_BROWSER:
            backend = _browser_backend(options)
        else:
            from .native import NativeBackend
            backend = _BACKENDS[power] = NativeBackend(options)
    from .kernels import KERNELS  # the kernel modules load with the first device, not with the package
    return GpuDevice(backend, KERNELS, options)


_HARDWARE: list[bool] = []


def hardware_adapter_present() -> bool:
    """Whether this process has a WebGPU adapter that is real hardware (for `get_available_providers`).

    In the browser: a backend `init_webgpu` opened on a non-fallback adapter
    (nothing can be awaited here).  Natively: wgpu-py imports and its best
    adapter is not a CPU emulation; probed once (~0.5 s), then remembered.
    """
    opened = [b for b in _BACKENDS.values() if not b.software]
    if opened or IN_BROWSER:
        return bool(opened)
    if not _HARDWARE:
        _HARDWARE.append(_probe_native_hardware())
    return _HARDWARE[0]


def _probe_native_hardware() -> bool:
    try:
        import wgpu
        import wgpu.backends.wgpu_native  # noqa: F401  (selects the native backend)
        adapter = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
    except Exception:  # noqa: BLE001 - no wgpu, no driver: no hardware adapter either way
        return False
    if adapter is None:
        return False
    info = adapter.info
    device = str(info.get("device", ""))
    return info.get("adapter_type") not in ("CPU", "Unknown") and "llvmpipe" not in device \
        and "SwiftShader" not in device
