"""What a device is to the rest of the runtime: the one interface the planner, the executor and the session
call, so that nothing asks a device what it can do with `hasattr` or by its name.

A device (devices/cpu.py, devices/gpu/device.py, and the next: a WebAssembly
kernel backend) builds kernels for the nodes it takes, moves tensors to and
from the host, is told when a session run starts and ends, and reports what
it refused and what a run cost.  providers.py maps provider names to the
factories that open devices.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from ..ops.registry import Kernel, OpContext, OpDef


class Device(Protocol):
    """The interface of a device (see the module docstring)."""

    #: The short provider name ("cpu", "webgpu"): placement maps and transfers use it.
    name: str
    #: Whether `download_many` reads several tensors back in one round trip, so that the planner
    #: batches a run's outputs into one step.
    batched_downloads: bool
    #: Whether `run_started`/`run_finished` do anything: runs on such a device take the session's device
    #: lock and call them; a host-only run skips both.
    run_hooks: bool

    def build(self, opdef: OpDef, ctx: OpContext) -> Kernel | None:
        """The kernel running this node here, or None if this device can't (see `fallback_reasons`)."""

    def upload(self, value: Any) -> Any:
        """A host value (numpy array) as this device's tensor (at plan time or run time)."""

    async def download(self, value: Any) -> Any:
        """A device tensor back as a numpy array."""

    async def download_many(self, values: Sequence[Any]) -> list[Any]:
        """Several device tensors back as numpy arrays (in one round trip where `batched_downloads`)."""

    def run_started(self) -> None:
        """A session run begins."""

    def run_finished(self) -> None:
        """A session run ends (also when it failed): finish pending work, record the run's counters."""

    def fallback_reasons(self) -> dict[str, str]:
        """Why this device refused each node it did not take: node name -> reason."""

    def run_stats(self) -> dict[str, Any]:
        """What the last run cost here, for `InferenceSession.device_stats()` (empty when nothing to say)."""
