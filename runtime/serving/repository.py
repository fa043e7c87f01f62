"""The model repository: what `--models DIR` holds, read once at start-up.

A model is either a file `DIR/<name>.onnx`, or a folder `DIR/<name>/` with
`model.onnx` (or `1/model.onnx`, Triton's layout, or its one `.onnx` file)
and an optional `config.json`:

    {"name": "resnet", "max_batch_size": 8, "instances": 2, "provider": "cpu",
     "dynamic_batching": {"max_queue_delay_microseconds": 2000, "preferred_batch_size": [4, 8]},
     "max_queue_size": 64, "timeout_seconds": 30}

Requests resolve model names against the `Repository` loaded here, an
in-memory dict: nothing a request sends is ever joined into a path.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..session import InferenceSession
from .datatypes import from_onnx_type

log = logging.getLogger("webinfer.serving")

#: Names a model may have (Triton's rule, and safe in URLs and metric labels).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CONFIG_KEYS = {"name", "max_batch_size", "instances", "provider", "dynamic_batching", "max_queue_size",
               "timeout_seconds"}
BATCHING_KEYS = {"max_queue_delay_microseconds", "preferred_batch_size"}


@dataclass(frozen=True)
class Batching:
    """Dynamic batching (Triton's `dynamic_batching`): how long the oldest request may wait for company,
    and the batch sizes to prefer when one can be formed."""

    max_queue_delay_s: float = 0.0
    preferred_sizes: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    """A model's serving settings (defaults: no batching, one instance, the cpu, a queue of 64, 30 s)."""

    name: str
    path: Path
    max_batch_size: int = 0
    batching: Batching | None = None
    instances: int = 1
    provider: str = "cpu"
    max_queue_size: int = 64
    timeout_s: float = 30.0


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as metadata shows it: v2 datatype and shape, -1 for a dynamic dim."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass
class Model:
    """A loaded model: its sessions (one per instance) and its tensors."""

    config: ModelConfig
    sessions: list[InferenceSession]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    version: str = "1"

    @property
    def name(self) -> str:
        return self.config.name


class ConfigError(ValueError):
    """A model folder's config.json is unreadable or names something unknown."""


def _int(cfg: dict[str, Any], key: str, default: int, low: int) -> int:
    v = cfg.get(key, default)
    if type(v) is not int or v < low:
        raise ConfigError(f"'{key}' must be an integer >= {low}, got {v!r}")
    return v


def read_config(name: str, path: Path, cfg: dict[str, Any]) -> ModelConfig:
    """Validate a config.json's dict into a ModelConfig (unknown keys are errors, not ignored)."""
    unknown = set(cfg) - CONFIG_KEYS
    if unknown:
        raise ConfigError(f"unknown config key(s) {sorted(unknown)}; known: {sorted(CONFIG_KEYS)}")
    name = cfg.get("name", name)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConfigError(f"model name {name!r} must match {NAME_RE.pattern}")
    max_batch = _int(cfg, "max_batch_size", 0, 0)
    batching = None
    if "dynamic_batching" in cfg:
        db = cfg["dynamic_batching"]
        if not isinstance(db, dict) or set(db) - BATCHING_KEYS:
            raise ConfigError(f"'dynamic_batching' must be an object with keys among {sorted(BATCHING_KEYS)}")
        if max_batch == 0:
            raise ConfigError("'dynamic_batching' needs 'max_batch_size' > 0")
        delay = _int(db, "max_queue_delay_microseconds", 0, 0)
        preferred = db.get("preferred_batch_size", [])
        if not isinstance(preferred, list) or any(type(p) is not int or not 1 <= p <= max_batch for p in preferred):
            raise ConfigError(f"'preferred_batch_size' must list sizes in 1..{max_batch}, got {preferred!r}")
        batching = Batching(delay / 1e6, tuple(sorted(set(preferred))))
    provider = cfg.get("provider", "cpu")
    if not isinstance(provider, str):
        raise ConfigError(f"'provider' must be a string such as 'cpu' or 'webgpu,cpu', got {provider!r}")
    timeout = cfg.get("timeout_seconds", 30.0)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigError(f"'timeout_seconds' must be a positive number, got {timeout!r}")
    return ModelConfig(name, path, max_batch, batching, _int(cfg, "instances", 1, 1), provider,
                       _int(cfg, "max_queue_size", 64, 1), float(timeout))


def _model_file(folder: Path) -> Path | None:
    for candidate in (folder / "model.onnx", folder / "1" / "model.onnx"):
        if candidate.is_file():
            return candidate
    found = sorted(folder.glob("*.onnx"))
    return found[0] if len(found) == 1 else None


def _folder_config(folder: Path, model: Path, name: str | None = None) -> ModelConfig:
    cfg_file = folder / "config.json"
    try:
        cfg = json.loads(cfg_file.read_text("utf-8")) if cfg_file.is_file() else {}
    except (OSError, ValueError) as e:
        raise ConfigError(f"{cfg_file}: {e}") from e
    if not isinstance(cfg, dict):
        raise ConfigError(f"{cfg_file} must hold a JSON object")
    if name is not None:
        cfg["name"] = name
    return read_config(folder.name, model, cfg)


def discover(root: Path, name: str | None = None) -> tuple[list[ModelConfig], dict[str, str]]:
    """The models under `root` (a folder of models, or one .onnx file) and, by name, the entries that
    could not be read as one.  With `name`, `root` is one model (a file, or a model folder) served
    under that name: KServe mounts an InferenceService's files at /mnt/models and routes by its name."""
    if name is not None:
        if root.is_file():
            return [read_config(name, root, {"name": name})], {}
        model = _model_file(root)
        if model is None:
            raise ConfigError(f"{root} holds no model.onnx (or single .onnx file) to serve as '{name}'")
        return [_folder_config(root, model, name)], {}
    if root.is_file():
        return [read_config(root.stem, root, {})], {}
    configs: list[ModelConfig] = []
    failed: dict[str, str] = {}
    for entry in sorted(root.iterdir()):
        try:
            if entry.is_file() and entry.suffix == ".onnx":
                configs.append(read_config(entry.stem, entry, {}))
            elif entry.is_dir():
                model = _model_file(entry)
                if model is None:
                    if (entry / "config.json").is_file():
                        failed[entry.name] = "no model.onnx (or single .onnx file) beside config.json"
                    continue
                configs.append(_folder_config(entry, model))
        except ConfigError as e:
            failed[entry.stem] = str(e)
    return configs, failed


def _specs(args: list[Any], batched: bool, model: str, kind: str) -> list[TensorSpec]:
    specs = []
    for a in args:
        datatype = from_onnx_type(a.type)
        if datatype is None:
            raise ConfigError(f"{kind} '{a.name}' has type {a.type}, which the v2 protocol cannot carry")
        if a.shape is None:
            raise ConfigError(f"{kind} '{a.name}' has no known rank; v2 metadata needs one")
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in a.shape)
        if batched and (not shape or shape[0] != -1):
            raise ConfigError(f"max_batch_size > 0 needs a dynamic leading (batch) dim, but {kind} '{a.name}' of "
                              f"model '{model}' has shape {list(shape)}")
        specs.append(TensorSpec(a.name, datatype, shape))
    return specs


def load(config: ModelConfig) -> Model:
    """Open `instances` sessions of the model and read its tensors (raises on any failure)."""
    providers = [p.strip() for p in config.provider.split(",") if p.strip()]
    sessions = [InferenceSession(str(config.path), providers=providers) for _ in range(config.instances)]
    batched = config.max_batch_size > 0
    first = sessions[0]
    return Model(config, sessions, _specs(first.get_inputs(), batched, config.name, "input"),
                 _specs(first.get_outputs(), batched, config.name, "output"))


class Repository:
    """Models by name, filled once at start-up; failures are kept (name -> reason) for the log and /v2."""

    def __init__(self) -> None:
        self.models: dict[str, Model] = {}
        self.failed: dict[str, str] = {}
        self.loaded = False

    def load_all(self, root: Path, name: str | None = None) -> None:
        """Load every model under `root` (or `root` as the model `name`); one that fails is logged and left
        out."""
        try:
            configs, failed = discover(root, name)
        except ConfigError as e:
            configs, failed = [], {name or root.name: str(e)}
        self.failed.update(failed)
        for name, reason in failed.items():
            log.warning("model '%s' left out: %s", name, reason)
        for cfg in configs:
            if cfg.name in self.models:
                self.failed[cfg.name] = f"a second model named '{cfg.name}' ({cfg.path}) was left out"
                log.warning("%s", self.failed[cfg.name])
                continue
            try:
                self.models[cfg.name] = load(cfg)
                log.info("model '%s' loaded from %s", cfg.name, cfg.path)
            except Exception as e:  # noqa: BLE001 - any failure leaves this model out, never the server
                self.failed[cfg.name] = f"{type(e).__name__}: {e}"
                log.warning("model '%s' left out: %s", cfg.name, self.failed[cfg.name])
        self.loaded = True
