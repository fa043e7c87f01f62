"""The native backend: WebGPU through wgpu-py (wgpu-native on Vulkan, Metal or D3D12).

The only module that imports wgpu.  Notes from measuring wgpu-py 0.32 (see
shared/FACTS.md): `queue.on_submitted_work_done_sync()` is broken, so
readback waits by mapping a staging buffer; the software Vulkan driver
(lavapipe) is a usable adapter on machines without a GPU; Mesa warns when
XDG_RUNTIME_DIR is unset, so a private one is made.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any, Sequence

import numpy as np

from ...errors import DeviceError
from .device import Backend, Limits, staging_layout

_LIMIT_KEYS = ("max-storage-buffer-binding-size", "max-buffer-size", "max-compute-workgroup-storage-size",
               "max-compute-invocations-per-workgroup", "max-compute-workgroup-size-x",
               "max-compute-workgroups-per-dimension", "max-storage-buffers-per-shader-stage")


def _private_runtime_dir() -> None:
    """Mesa's Vulkan drivers want XDG_RUNTIME_DIR; make a private (0700) one if it is unset."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="webinfer-xdg-")
        os.chmod(os.environ["XDG_RUNTIME_DIR"], 0o700)


def _import_wgpu() -> Any:
    _private_runtime_dir()
    try:
        import wgpu
        import wgpu.backends.wgpu_native  # noqa: F401 - selects the native backend
    except ImportError as e:
        raise DeviceError("the webgpu provider needs wgpu-py natively: pip install 'webinfer[gpu]' "
                          f"(import failed: {e})") from e
    return wgpu


class NativeBackend(Backend):
    """wgpu-py: one device, one queue, one open command encoder with one open compute pass."""

    def __init__(self, options: dict[str, Any]):
        wgpu = _import_wgpu()
        self.wgpu = wgpu
        power = options.get("power_preference", "high-performance")
        try:
            adapter = wgpu.gpu.request_adapter_sync(power_preference=power)
        except Exception as e:  # noqa: BLE001 - wgpu raises plain RuntimeErrors here
            raise DeviceError(f"no WebGPU adapter: {e}. Without a GPU, install a software Vulkan driver "
                              "(Debian: apt-get install mesa-vulkan-drivers libvulkan1)") from e
        if adapter is None:
            raise DeviceError("no WebGPU adapter (install a GPU driver or Debian's mesa-vulkan-drivers)")
        info = adapter.info
        self.description = (f"{info.get('device', '?')} ({info.get('vendor', '?')}, "
                            f"{info.get('backend_type', '?')}, {info.get('adapter_type', '?')})")
        self.software = info.get("adapter_type") == "CPU" or "llvmpipe" in str(info.get("device", "")) \
            or "SwiftShader" in str(info.get("device", ""))
        features = set(adapter.features)
        wanted = [f for f in ("shader-f16",) if f in features]
        limits = {k: adapter.limits[k] for k in _LIMIT_KEYS if k in adapter.limits}
        self.device = adapter.request_device_sync(required_features=wanted, required_limits=limits)
        self.features = frozenset(self.device.features)
        dl = self.device.limits
        self.limits = Limits(
            max_storage_binding=int(dl["max-storage-buffer-binding-size"]),
            max_workgroups_per_dim=int(dl["max-compute-workgroups-per-dimension"]),
            max_workgroup_storage=int(dl["max-compute-workgroup-storage-size"]),
            storage_offset_alignment=int(dl["min-storage-buffer-offset-alignment"]),
            max_storage_buffers=int(dl["max-storage-buffers-per-shader-stage"]),
        )
        usage = wgpu.BufferUsage
        self._storage_usage = usage.STORAGE | usage.COPY_SRC | usage.COPY_DST
        self._uniform_usage = usage.UNIFORM | usage.COPY_DST
        self._read_usage = usage.MAP_READ | usage.COPY_DST
        self._encoder: Any = None
        self._pass: Any = None
        self._staging: dict[int, list[Any]] = {}
        self.programs = {}
        self.run_lock = threading.RLock()

    # ------------------------------------------------------------ resources
    def create_buffer(self, size: int, uniform: bool = False) -> Any:
        return self.device.create_buffer(size=size, usage=self._uniform_usage if uniform else self._storage_usage)

    def destroy_buffer(self, handle: Any) -> None:
        handle.destroy()

    def write_buffer(self, handle: Any, offset: int, data: np.ndarray) -> None:
        self.device.queue.write_buffer(handle, offset, data)

    def compile(self, source: str, entry: str, label: str) -> Any:
        try:
            module = self.device.create_shader_module(code=source, label=label)
            return self.device.create_compute_pipeline(layout="auto", compute={"module": module, "entry_point": entry},
                                                       label=label)
        except Exception as e:  # noqa: BLE001 - naga's errors are plain exceptions with the WGSL excerpt
            raise DeviceError(f"WGSL pipeline {label} failed to compile: {e}") from e

    def bind_group(self, pipeline: Any, entries: Sequence[tuple[Any, int, int]]) -> Any:
        layout = pipeline.get_bind_group_layout(0)
        return self.device.create_bind_group(layout=layout, entries=[
            {"binding": i, "resource": {"buffer": b, "offset": o, "size": s}} for i, (b, o, s) in enumerate(entries)])

    # ------------------------------------------------------------ recording
    def _compute_pass(self) -> Any:
        if self._encoder is None:
            self._encoder = self.device.create_command_encoder()
        if self._pass is None:
            self._pass = self._encoder.begin_compute_pass()
        return self._pass

    def _end_pass(self) -> None:
        if self._pass is not None:
            self._pass.end()
            self._pass = None

    def dispatch(self, pipeline: Any, bind_group: Any, groups: tuple[int, int, int]) -> None:
        p = self._compute_pass()
        p.set_pipeline(pipeline)
        p.set_bind_group(0, bind_group)
        p.dispatch_workgroups(*groups)

    def _copy(self, src: Any, src_offset: int, dst: Any, dst_offset: int, size: int) -> None:
        self._end_pass()
        if self._encoder is None:
            self._encoder = self.device.create_command_encoder()
        self._encoder.copy_buffer_to_buffer(src, src_offset, dst, dst_offset, size)

    def submit(self) -> None:
        self._end_pass()
        if self._encoder is not None:
            self.device.queue.submit([self._encoder.finish()])
            self._encoder = None

    async def read(self, ranges: Sequence[tuple[Any, int, int]]) -> list[memoryview]:
        """Copy the ranges into one pooled MAP_READ buffer, submit, map (blocks until the GPU is done),
        copy out. Never suspends: natively the executor drives runs without an event loop."""
        offsets, total, cls = staging_layout(ranges)
        bucket = self._staging.setdefault(cls, [])
        staging = bucket.pop() if bucket else self.device.create_buffer(size=cls, usage=self._read_usage)
        for (handle, offset, size), at in zip(ranges, offsets):
            self._copy(handle, offset, staging, at, size)
        self.submit()
        try:
            staging.map_sync(self.wgpu.MapMode.READ, 0, total)
            data = [staging.read_mapped(at, size, copy=True) for (_, _, size), at in zip(ranges, offsets)]
            staging.unmap()
        except Exception as e:  # noqa: BLE001 - a lost device or a failed submit surfaces here
            raise DeviceError(f"reading back {total} bytes from the GPU failed: {e}") from e
        bucket.append(staging)
        return data
