"""What this build is, and the process-wide settings onnxruntime code sets at import.

onnxruntime exposes these as module functions, and packages call them
before creating sessions (`get_device()` to pick providers,
`set_default_logger_severity(3)` to silence warnings, `set_seed` for
reproducible random ops, `disable_telemetry_events()`), so they exist here
with the same meaning.
"""

from __future__ import annotations

import platform
import sys

import numpy as np

from . import gemm
from .version import __version__

#: Seed of the random ops where neither the node nor the session gives one (set_seed).
_GLOBAL_SEED: list[int] = []


def get_device() -> str:
    """"CPU", as onnxruntime's CPU build answers: code keys GPU-only providers (CUDA) off "GPU",
    and webinfer's GPU provider is chosen by name (`providers=["webgpu"]`), not by this."""
    return "CPU"


def get_version_string() -> str:
    return __version__


def get_build_info() -> str:
    """One line saying what runs the kernels: webinfer's version, numpy, the GEMM backend (gemm.py), the platform."""
    return (f"webinfer {__version__}: pure Python, numpy {np.__version__} (GEMM: {gemm.describe()}), "
            f"Python {platform.python_version()} on {sys.platform}")


def disable_telemetry_events() -> None:
    """Nothing to disable: webinfer sends no telemetry."""


def enable_telemetry_events() -> None:
    """Nothing to enable: webinfer sends no telemetry."""


def set_seed(seed: int) -> None:
    """Seed the random ops (RandomNormal, Bernoulli, Dropout in training mode, ...) of sessions that
    set no `SessionOptions.random_seed`, as onnxruntime's set_seed does."""
    _GLOBAL_SEED[:] = [int(seed)]


def global_seed() -> int | None:
    return _GLOBAL_SEED[0] if _GLOBAL_SEED else None
