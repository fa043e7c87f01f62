"""The browser backend: the page's (or worker's) `navigator.gpu`, called from Python through Pyodide's `js`.

The same `Backend` as native.py, so the same WGSL kernels, buffer pool and
dispatch code run in the browser.  What differs is time: in a browser every
wait is a promise, and Python must never block the event loop on one.

- The adapter and device are acquired once, asynchronously, by `open_backend`
  (called by `webinfer.init_webgpu`, or through JSPI's
  `run_sync` where the runtime has it), always behind a timeout: some
  drivers never settle `requestAdapter()`.
- Recording (buffers, pipelines, bind groups, dispatches, submit) is
  synchronous in WebGPU, as it is natively.
- `read` is the one await: it maps a staging buffer with `mapAsync`, which
  the executor awaits as an async step, so the event loop keeps running while
  the GPU works.
- WebGPU reports validation errors (a shader that does not compile, a bad
  binding) asynchronously, as `uncapturederror` events.  They are collected
  and raised as `DeviceError` from the next `read`, so a failed dispatch never
  returns the zeros of an unwritten buffer as a result.

Descriptors must be plain JS objects (a `to_js` dict is a `Map`, which WebGPU
ignores): `_js` converts them with `Object.fromEntries`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Sequence

import numpy as np

from ...errors import DeviceError
from .device import Backend, Limits, staging_layout

#: Adapter limits the device asks for in full (the defaults are far lower: 8 storage buffers per stage,
#: 128 MiB bindings, 16 KiB of workgroup storage): the same set native.py requests.
_LIMIT_KEYS = ("maxStorageBufferBindingSize", "maxBufferSize", "maxComputeWorkgroupStorageSize",
               "maxComputeInvocationsPerWorkgroup", "maxComputeWorkgroupSizeX",
               "maxComputeWorkgroupsPerDimension", "maxStorageBuffersPerShaderStage")

#: GPUBufferUsage and GPUMapMode bits (fixed by the WebGPU spec): plain ints spare a JS lookup per buffer.
_MAP_READ, _COPY_SRC, _COPY_DST, _UNIFORM, _STORAGE = 0x0001, 0x0004, 0x0008, 0x0040, 0x0080
_MAP_MODE_READ = 0x0001


def _js(value: Any) -> Any:
    """A Python descriptor (dicts, lists, numbers, strings, JS handles) as plain JS objects and arrays."""
    import js
    from pyodide.ffi import to_js
    return to_js(value, dict_converter=js.Object.fromEntries)


async def _within(awaitable: Awaitable[Any], timeout_s: float, what: str) -> Any:
    """Await a JS promise with a deadline; `what` names it in the error."""
    try:
        return await asyncio.wait_for(asyncio.ensure_future(awaitable), timeout_s)
    except asyncio.TimeoutError:
        raise DeviceError(f"{what} gave no answer within {timeout_s:g} s") from None
    except Exception as e:  # noqa: BLE001 - a rejected promise arrives as a JsException
        raise DeviceError(f"{what} failed: {e}") from e


def _adapter_info(adapter: Any) -> dict[str, Any]:
    """vendor, architecture, device, description and whether it is a fallback (software) adapter."""
    info = getattr(adapter, "info", None)
    out: dict[str, Any] = {}
    for key in ("vendor", "architecture", "device", "description"):
        out[key] = str(getattr(info, key, "") or "") if info is not None else ""
    fallback = getattr(info, "isFallbackAdapter", None) if info is not None else None
    if fallback is None:  # older browsers put the flag on the adapter itself
        fallback = getattr(adapter, "isFallbackAdapter", False)
    out["fallback"] = bool(fallback)
    return out


def navigator_gpu() -> Any:
    """`navigator.gpu`; DeviceError when this JavaScript runtime has none (Node.js, WebGPU turned off)."""
    import js

    navigator = getattr(js, "navigator", None)
    gpu = getattr(navigator, "gpu", None) if navigator is not None else None
    if gpu is None:
        raise DeviceError("navigator.gpu is missing: this JavaScript runtime has no WebGPU (or it is turned off)")
    return gpu


async def open_backend(options: dict[str, Any], timeout_s: float) -> "BrowserBackend":
    """The adapter and device from `navigator.gpu`, each request behind `timeout_s`; DeviceError says why not."""
    gpu = navigator_gpu()
    power = str(options.get("power_preference", "high-performance"))
    adapter = await _within(gpu.requestAdapter(_js({"powerPreference": power})), timeout_s,
                            "navigator.gpu.requestAdapter()")
    if adapter is None:
        raise DeviceError("navigator.gpu.requestAdapter() returned no adapter")
    info = _adapter_info(adapter)
    features = {str(f) for f in adapter.features}
    wanted = [f for f in ("shader-f16",) if f in features]
    limits = {k: getattr(adapter.limits, k) for k in _LIMIT_KEYS}
    device = await _within(adapter.requestDevice(_js({"requiredFeatures": wanted, "requiredLimits": limits})),
                           timeout_s, "GPUAdapter.requestDevice()")
    if device is None:
        raise DeviceError("GPUAdapter.requestDevice() returned no device")
    return BrowserBackend(device, info)


class BrowserBackend(Backend):
    """WebGPU in the browser: one device, one queue, one open command encoder with one open compute pass."""

    def __init__(self, device: Any, info: dict[str, Any]):
        from pyodide.ffi import create_proxy

        self.device = device
        self.queue = device.queue
        #: What the adapter says about itself (vendor, architecture, device, description, fallback).
        self.info = info
        name = info["description"] or info["device"] \
            or " ".join(x for x in (info["vendor"], info["architecture"]) if x) or "unnamed adapter"
        self.description = f"{name} (browser WebGPU{', fallback adapter' if info['fallback'] else ''})"
        text = " ".join(str(v) for v in info.values()).lower()
        self.software = bool(info["fallback"]) or "swiftshader" in text or "llvmpipe" in text
        self.features = frozenset(str(f) for f in device.features)
        dl = device.limits
        self.limits = Limits(
            max_storage_binding=int(dl.maxStorageBufferBindingSize),
            max_workgroups_per_dim=int(dl.maxComputeWorkgroupsPerDimension),
            max_workgroup_storage=int(dl.maxComputeWorkgroupStorageSize),
            storage_offset_alignment=int(dl.minStorageBufferOffsetAlignment),
            max_storage_buffers=int(dl.maxStorageBuffersPerShaderStage),
        )
        self._encoder: Any = None
        self._pass: Any = None
        self._staging: dict[int, list[Any]] = {}
        #: Validation errors WebGPU reported since the last read (raised from the next one).
        self._errors: list[str] = []
        #: Set when the device is lost: every later call fails with this reason.
        self._lost: str | None = None
        # The handlers must outlive this call: proxies, kept on the backend for its lifetime.
        self._on_error = create_proxy(self._uncaptured_error)
        self._on_lost = create_proxy(self._device_lost)
        device.addEventListener("uncapturederror", self._on_error)
        device.lost.then(self._on_lost)
        self.programs = {}
        self.run_lock = threading.RLock()

    # ------------------------------------------------------------ error reporting
    def _uncaptured_error(self, event: Any) -> None:
        self._errors.append(str(getattr(event.error, "message", event.error)))

    def _device_lost(self, info: Any) -> None:
        self._lost = f"{getattr(info, 'reason', '')}: {getattr(info, 'message', '')}".strip(": ")

    def _check_alive(self, what: str) -> None:
        if self._lost is not None:
            raise DeviceError(f"{what}: the WebGPU device was lost ({self._lost or 'no reason given'})")

    # ------------------------------------------------------------ resources
    def create_buffer(self, size: int, uniform: bool = False) -> Any:
        self._check_alive(f"creating a {size}-byte buffer")
        usage = (_UNIFORM | _COPY_DST) if uniform else (_STORAGE | _COPY_SRC | _COPY_DST)
        return self.device.createBuffer(_js({"size": int(size), "usage": usage}))

    def destroy_buffer(self, handle: Any) -> None:
        handle.destroy()

    def write_buffer(self, handle: Any, offset: int, data: np.ndarray) -> None:
        from pyodide.ffi import to_js
        self.queue.writeBuffer(handle, int(offset), to_js(np.ascontiguousarray(data).data.cast("B")))

    def compile(self, source: str, entry: str, label: str) -> Any:
        """Shader module + pipeline.  WebGPU does not throw on a bad shader: its error arrives as an
        `uncapturederror` naming `label` (the descriptors carry it) and is raised by the next read."""
        self._check_alive(f"compiling WGSL pipeline {label}")
        module = self.device.createShaderModule(_js({"code": source, "label": label}))
        return self.device.createComputePipeline(_js({"label": label, "layout": "auto",
                                                      "compute": {"module": module, "entryPoint": entry}}))

    def bind_group(self, pipeline: Any, entries: Sequence[tuple[Any, int, int]]) -> Any:
        return self.device.createBindGroup(_js({
            "layout": pipeline.getBindGroupLayout(0),
            "entries": [{"binding": i, "resource": {"buffer": b, "offset": int(o), "size": int(s)}}
                        for i, (b, o, s) in enumerate(entries)]}))

    # ------------------------------------------------------------ recording
    def _compute_pass(self) -> Any:
        if self._encoder is None:
            self._encoder = self.device.createCommandEncoder()
        if self._pass is None:
            self._pass = self._encoder.beginComputePass()
        return self._pass

    def _end_pass(self) -> None:
        if self._pass is not None:
            self._pass.end()
            self._pass = None

    def dispatch(self, pipeline: Any, bind_group: Any, groups: tuple[int, int, int]) -> None:
        p = self._compute_pass()
        p.setPipeline(pipeline)
        p.setBindGroup(0, bind_group)
        p.dispatchWorkgroups(int(groups[0]), int(groups[1]), int(groups[2]))

    def submit(self) -> None:
        self._end_pass()
        if self._encoder is not None:
            self.queue.submit(_js([self._encoder.finish()]))
            self._encoder = None

    async def read(self, ranges: Sequence[tuple[Any, int, int]]) -> list[bytes]:
        """Copy the ranges into one pooled MAP_READ buffer, submit, await `mapAsync` (the event loop runs
        meanwhile), copy out; raise the validation errors WebGPU reported since the last read."""
        self._check_alive("reading back from the GPU")
        offsets, total, cls = staging_layout(ranges)
        bucket = self._staging.setdefault(cls, [])
        staging = bucket.pop() if bucket else self.device.createBuffer(_js({"size": cls,
                                                                             "usage": _MAP_READ | _COPY_DST}))
        self._end_pass()
        if self._encoder is None:
            self._encoder = self.device.createCommandEncoder()
        for (handle, offset, size), at in zip(ranges, offsets):
            self._encoder.copyBufferToBuffer(handle, int(offset), staging, at, int(size))
        self.submit()
        try:
            await staging.mapAsync(_MAP_MODE_READ, 0, total)
        except Exception as e:  # noqa: BLE001 - a lost device or an invalid submit rejects the promise
            self._raise_errors(f"reading back {total} bytes from the GPU failed ({e})")
            raise DeviceError(f"reading back {total} bytes from the GPU failed: {e}") from e
        import js
        mapped = js.Uint8Array.new(staging.getMappedRange(0, total))
        data = [mapped.subarray(at, at + size).to_bytes() for (_, _, size), at in zip(ranges, offsets)]
        staging.unmap()
        bucket.append(staging)
        self._raise_errors("the GPU reported errors while running the model")
        return data

    def _raise_errors(self, what: str) -> None:
        if self._errors:
            errors, self._errors = self._errors, []
            shown = "\n".join(errors[:3]) + (f"\n(and {len(errors) - 3} more)" if len(errors) > 3 else "")
            raise DeviceError(f"{what}: {shown}")
        self._check_alive(what)
