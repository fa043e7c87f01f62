"""Session and run options, with onnxruntime's names, defaults and enums.

Every field onnxruntime's `SessionOptions` and `RunOptions` have exists
here, so code that sets them ports unchanged; the README's compatibility
table says which ones change nothing in this runtime and why (e.g. nodes
always run one at a time, so `execution_mode=ORT_PARALLEL` gives the same
results sequentially).  Both classes use slots: assigning a field that does
not exist raises AttributeError, as onnxruntime's do, instead of being
silently ignored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .errors import UnsupportedOpError


class GraphOptimizationLevel(enum.IntEnum):
    """onnxruntime's levels; webinfer folds/cleans at BASIC and fuses at EXTENDED and above."""

    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    """onnxruntime's execution modes; webinfer runs nodes one at a time in both (same results)."""

    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class ExecutionOrder(enum.IntEnum):
    """onnxruntime's node orderings; webinfer's plan order is topological in all of them."""

    DEFAULT = 0
    PRIORITY_BASED = 1
    MEMORY_EFFICIENT = 2


def _config_entry(entries: dict[str, str], key: str, owner: str) -> str:
    """A config entry; a missing one raises RuntimeError with onnxruntime's message."""
    if key not in entries:
        raise RuntimeError(f"{owner} does not have configuration with key: {key}")
    return entries[key]


#: Session config key onnxruntime reads to refuse placing nodes on the CPU fallback.
DISABLE_CPU_FALLBACK = "session.disable_cpu_ep_fallback"


@dataclass(slots=True)
class SessionOptions:
    """Options with onnxruntime's names where the concept exists, plus webinfer's own."""

    graph_optimization_level: int = GraphOptimizationLevel.ORT_ENABLE_ALL
    #: Record per-node timings: `session.last_profile` after each run, and the trace
    #: `end_profiling()` writes (a Chrome-trace JSON file, as onnxruntime's).
    enable_profiling: bool = False
    #: Prefix of the file `end_profiling()` writes.
    profile_file_prefix: str = "onnxruntime_profile_"
    #: Check every node's outputs against the types inferred at load (slow; for tests).
    strict_shape_checks: bool = False
    #: Threads numpy's BLAS may use during this session's runs (0: its default); see threads.py.
    intra_op_num_threads: int = 0
    #: Accepted for onnxruntime code: nodes run one at a time, so there is no inter-op pool to size.
    inter_op_num_threads: int = 0
    #: Accepted: ORT_PARALLEL runs the nodes sequentially here, with the same results.
    execution_mode: int = ExecutionMode.ORT_SEQUENTIAL
    #: Accepted: the plan's order is always topological.
    execution_order: int = ExecutionOrder.DEFAULT
    #: Keep freed tensor memory in the process for reuse (onnxruntime's default too); see
    #: devices/cpu.enable_memory_arena.  Process-wide, and only effective on glibc.
    enable_cpu_mem_arena: bool = True
    #: Accepted: buffers are always freed at their last use (the plan's lifetimes).
    enable_mem_pattern: bool = True
    #: Accepted: as enable_mem_pattern.
    enable_mem_reuse: bool = True
    #: Accepted: every kernel here is deterministic.
    use_deterministic_compute: bool = False
    #: Accepted: there is no global thread pool to share.
    use_per_session_threads: bool = True
    #: Messages below this severity are not shown (0 verbose, 1 info, 2 warning, 3 error, 4 fatal;
    #: -1: the process default, see `set_default_logger_severity`).
    log_severity_level: int = -1
    log_verbosity_level: int = 0
    logid: str = ""
    #: onnxruntime writes the optimized graph here; webinfer cannot (it warns when this is set).
    optimized_model_filepath: str = ""
    #: Seed for the random ops (RandomNormal, Bernoulli, ...); None: `set_seed`'s, else nondeterministic.
    random_seed: int | None = None
    #: Tests only: every CPU kernel gets each array input as a read-only non-contiguous view of the
    #: same values (transposed, stepped, reversed), to test that kernels take any strides and never
    #: write into their inputs; see devices/cpu.build_kernel.
    strided_test_inputs: bool = False
    #: Options per provider (short or onnxruntime name -> options), merged under those given to the session.
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Session config entries (`add_session_config_entry`); keys webinfer reads: session.disable_cpu_ep_fallback.
    config_entries: dict[str, str] = field(default_factory=dict)
    #: Symbolic input dims fixed to a size (`add_free_dimension_override_by_name`).
    free_dimension_overrides: dict[str, int] = field(default_factory=dict)
    #: Dims with this denotation fixed to a size (`add_free_dimension_override_by_denotation`).
    free_dimension_denotations: dict[str, int] = field(default_factory=dict)
    #: Initializers replaced by these values (`add_initializer`): name -> array.
    initializer_overrides: dict[str, Any] = field(default_factory=dict)
    #: Session creation raises when set (`set_load_cancellation_flag`).
    load_cancelled: bool = False

    def add_session_config_entry(self, key: str, value: str) -> None:
        self.config_entries[str(key)] = str(value)

    def get_session_config_entry(self, key: str) -> str:
        return _config_entry(self.config_entries, key, "SessionOptions")

    def add_free_dimension_override_by_name(self, dim_name: str, dim_value: int) -> None:
        """Fix the symbolic dim `dim_name` of the inputs to `dim_value`: feeds are checked against it
        and shape inference works with the size."""
        if int(dim_value) < 0:
            raise ValueError(f"free dimension override for '{dim_name}' must be >= 0, got {dim_value}")
        self.free_dimension_overrides[str(dim_name)] = int(dim_value)

    def add_free_dimension_override_by_denotation(self, dim_denotation: str, dim_value: int) -> None:
        """As by name, for the input dims whose denotation (e.g. DATA_BATCH) is `dim_denotation`."""
        if int(dim_value) < 0:
            raise ValueError(f"free dimension override for '{dim_denotation}' must be >= 0, got {dim_value}")
        self.free_dimension_denotations[str(dim_denotation)] = int(dim_value)

    def add_initializer(self, name: str, value: Any) -> None:
        """Replace the initializer `name` with `value` (an OrtValue or a numpy array) in sessions made
        with these options; the value must keep the initializer's dtype and shape."""
        self.initializer_overrides[str(name)] = value

    def add_external_initializers(self, names: list[str], values: list[Any]) -> None:
        """Provide the data of initializers stored outside the model (onnxruntime's in-memory external data)."""
        if len(names) != len(values):
            raise ValueError("add_external_initializers: names and values differ in length")
        for n, v in zip(names, values):
            self.add_initializer(n, v)

    def register_custom_ops_library(self, library_path: str) -> None:
        raise UnsupportedOpError(f"cannot load the custom-op library '{library_path}': webinfer runs pure "
                                 "Python kernels and cannot call onnxruntime's native custom ops")

    def set_load_cancellation_flag(self, value: bool) -> None:
        self.load_cancelled = bool(value)

    def has_providers(self) -> bool:
        """Whether providers were added to these options (onnxruntime's add_provider; never here)."""
        return False

    def disable_cpu_fallback(self) -> bool:
        return self.config_entries.get(DISABLE_CPU_FALLBACK, "0") == "1"


@dataclass(slots=True)
class RunOptions:
    """Per-run options: onnxruntime's fields; `terminate` stops a run between nodes."""

    log_severity_level: int = -1
    log_verbosity_level: int = 0
    logid: str = ""
    #: Set (from another thread) to stop runs using these options: they raise RunTerminatedError.
    terminate: bool = False
    #: Accepted: outputs not requested are computed anyway (results are the same).
    only_execute_path_to_fetches: bool = False
    config_entries: dict[str, str] = field(default_factory=dict)

    def add_run_config_entry(self, key: str, value: str) -> None:
        self.config_entries[str(key)] = str(value)

    def get_run_config_entry(self, key: str) -> str:
        return _config_entry(self.config_entries, key, "RunOptions")

    def add_active_adapter(self, adapter: Any) -> None:
        raise UnsupportedOpError("LoRA adapters (onnxruntime's add_active_adapter) are not supported by webinfer")
