"""GPU test fixtures: the webgpu device, skipping (with the reason) only when no adapter exists.

Without a GPU, Debian's software Vulkan driver (mesa-vulkan-drivers, lavapipe)
provides an adapter: tests run there with small shapes, since it is slow.
"""

from __future__ import annotations

from typing import Any

import pytest

from webinfer.errors import DeviceError


def adapter_error() -> str | None:
    """None when a WebGPU adapter opens, else why not (the skip reason)."""
    from webinfer.devices.gpu import open_device
    try:
        open_device({})
    except DeviceError as e:
        return str(e)
    return None


@pytest.fixture(scope="session")
def gpu_device() -> Any:
    """A GpuDevice on the process's backend (skips the test when no adapter exists)."""
    from webinfer.devices.gpu import open_device
    try:
        return open_device({})
    except DeviceError as e:
        pytest.skip(f"no WebGPU adapter: {e}")
