"""Execution providers: onnxruntime's names for webinfer's devices, and how a list of them is resolved.

A provider is a name (onnxruntime's spelling, which `get_providers()`
returns), the short names webinfer also accepts, a factory for its device
and a test of whether it is worth listing as available.  Resolution follows
onnxruntime: names of providers this runtime does not have (CUDA, TensorRT,
a typo) warn and are skipped, options come as `(name, options)` tuples or a
parallel `provider_options` list, and the CPU is always the last fallback
unless the session config `session.disable_cpu_ep_fallback` is "1".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from .devices import cpu
from .errors import DeviceError

CPU = "CPUExecutionProvider"
WEBGPU = "WebGpuExecutionProvider"

#: Every provider name onnxruntime knows (its `get_all_providers()`), ours included.
ALL_PROVIDERS = (
    "TensorrtExecutionProvider", "CUDAExecutionProvider", "MIGraphXExecutionProvider", "ROCMExecutionProvider",
    "OpenVINOExecutionProvider", "DnnlExecutionProvider", "VitisAIExecutionProvider", "QNNExecutionProvider",
    "NnapiExecutionProvider", "VSINPUExecutionProvider", "JsExecutionProvider", "CoreMLExecutionProvider",
    "ArmNNExecutionProvider", "ACLExecutionProvider", "DmlExecutionProvider", "RknpuExecutionProvider",
    "WebNNExecutionProvider", WEBGPU, "XnnpackExecutionProvider", "CANNExecutionProvider",
    "AzureExecutionProvider", CPU,
)


def _open_cpu(options: dict[str, Any]) -> Any:
    return cpu.CpuDevice()


def _open_webgpu(options: dict[str, Any]) -> Any:
    from .devices.gpu import open_device
    return open_device(options)


def _webgpu_listed() -> bool:
    from .devices.gpu import hardware_adapter_present
    return hardware_adapter_present()


@dataclass(frozen=True)
class Provider:
    """One execution provider: its names, its device factory and its availability test."""

    #: onnxruntime's spelling, as `get_providers()` reports it.
    name: str
    #: webinfer's short name (placement maps and device names use it).
    short: str
    aliases: tuple[str, ...]
    #: provider options -> a device; raises DeviceError when the device cannot be opened.
    open: Callable[[dict[str, Any]], Any]
    #: Whether `get_available_providers()` lists it (the CPU always; WebGPU with a hardware adapter).
    listed: Callable[[], bool]


PROVIDERS: dict[str, Provider] = {p.name: p for p in (
    Provider(WEBGPU, "webgpu", ("WebGPUExecutionProvider", "JsExecutionProvider"), _open_webgpu, _webgpu_listed),
    Provider(CPU, "cpu", (), _open_cpu, lambda: True),
)}

_BY_NAME: dict[str, Provider] = {}
for _p in PROVIDERS.values():
    for _n in (_p.name, _p.short, *_p.aliases):
        _BY_NAME[_n] = _p


def lookup(name: str) -> Provider | None:
    """The provider behind any of its accepted names, or None."""
    return _BY_NAME.get(name)


def get_available_providers() -> list[str]:
    """Providers worth asking for here, best first, in onnxruntime's spelling.

    WebGPU is listed only with a hardware adapter: software ones (lavapipe,
    SwiftShader) run slower than numpy, so code that passes this list as
    `providers=` gets the CPU there.  Naming "webgpu" explicitly still uses
    whatever adapter exists.
    """
    return [p.name for p in PROVIDERS.values() if p.listed()]


def get_all_providers() -> list[str]:
    """Every provider name onnxruntime defines (most are not available here)."""
    return list(ALL_PROVIDERS)


@dataclass(frozen=True)
class Choice:
    """A provider the session will try, with its options."""

    provider: Provider
    options: dict[str, Any]


def resolve(providers: Sequence[Any] | None, provider_options: Sequence[dict[str, Any]] | None = None,
            defaults: dict[str, dict[str, Any]] | None = None, cpu_fallback: bool = True) -> list[Choice]:
    """The providers to try, in priority order, with their options.

    `providers` holds names or `(name, options)` tuples; `provider_options`
    (if given) is a list parallel to it.  `defaults` maps short or long
    names to options from `SessionOptions.provider_options`.
    """
    entries = list(providers or [])
    if provider_options is not None and providers is not None and len(provider_options) != len(entries):
        raise ValueError("'providers' and 'provider_options' should be the same length if both are given")
    out: list[Choice] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, (tuple, list)) and len(entry) == 2 and isinstance(entry[0], str):
            name, opts = entry[0], dict(entry[1] or {})
        elif isinstance(entry, str):
            name, opts = entry, {}
        else:
            raise ValueError(f"providers[{i}] must be a name or a (name, options) tuple, got {entry!r}")
        if provider_options is not None:
            opts.update(provider_options[i] or {})
        provider = lookup(name)
        if provider is None:
            warnings.warn(f"Specified provider '{name}' is not in available provider names. Available "
                          f"providers: '{', '.join(get_available_providers())}' (webinfer also accepts "
                          f"'{WEBGPU}' and the short names 'cpu', 'webgpu')", UserWarning, stacklevel=3)
            continue
        if any(c.provider is provider for c in out):
            continue
        merged = _defaults_for(provider, defaults)
        merged.update(opts)
        out.append(Choice(provider, merged))
    if cpu_fallback and not any(c.provider.name == CPU for c in out):
        out.append(Choice(PROVIDERS[CPU], _defaults_for(PROVIDERS[CPU], defaults)))  # onnxruntime's implicit CPU
    if not out:
        raise ValueError("no usable provider: the CPU fallback is disabled (session.disable_cpu_ep_fallback) "
                         "and none of the requested providers exists here")
    return out


def _defaults_for(provider: Provider, defaults: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key in (provider.short, provider.name, *provider.aliases):
        merged.update((defaults or {}).get(key, {}))
    return merged


def open_devices(choices: Iterable[Choice], fallback: bool, warn: Callable[[str], None]) -> list[tuple[Choice, Any]]:
    """Open each provider's device; one that fails is skipped with a warning while another remains
    (onnxruntime's fallback), else its DeviceError propagates."""
    choices = list(choices)
    opened: list[tuple[Choice, Any]] = []
    for i, choice in enumerate(choices):
        try:
            opened.append((choice, choice.provider.open(choice.options)))
        except DeviceError as e:
            if not fallback or i == len(choices) - 1:
                raise
            rest = ", ".join(c.provider.short for c in choices[i + 1:])
            warn(f"{choice.provider.short} provider unavailable, running on {rest}: {e}")
    return opened


def short_names(names: Iterable[str]) -> list[str]:
    """webinfer's short names ("cpu", "webgpu") for provider names in any accepted spelling."""
    return [p.short if (p := lookup(n)) is not None else n for n in names]
