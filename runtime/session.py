"""`InferenceSession`: the onnxruntime-shaped entry point.

Thin by design: it wires the stages together (read -> inline -> infer ->
fold/clean/fuse -> plan) and checks feeds.  Code written for onnxruntime
ports by changing the import.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from . import dtypes, threads
from .checks import check_feed
from .devices import cpu
from .errors import DeviceError, InputError
from .executor import Profile, drive, run_async
from .ir import Graph, SequenceType, OptionalType, TensorType, Type, ValueInfo
from .loader import load_model
from .ops import REGISTRY
from .passes.cleanup import remove_dead, remove_identities
from .passes.fold import fold_constants
from .passes.fuse import fuse
from .passes.inline import inline_functions
from .plan import Planner
from .shapes import infer_graph

#: Canonical provider names and the aliases accepted for them.
PROVIDER_ALIASES = {
    "cpu": "cpu", "CPUExecutionProvider": "cpu",
    "webgpu": "webgpu", "WebGpuExecutionProvider": "webgpu", "WebGPUExecutionProvider": "webgpu",
    "JsExecutionProvider": "webgpu",
}


class GraphOptimizationLevel:
    """onnxruntime's levels; webinfer folds/cleans at BASIC and fuses at EXTENDED and above."""

    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_ALL = 99


@dataclass
class SessionOptions:
    """Options with onnxruntime's names where the concept exists."""

    graph_optimization_level: int = GraphOptimizationLevel.ORT_ENABLE_ALL
    #: Fill `session.last_profile` (per-node times, live tensor bytes) on every run.
    enable_profiling: bool = False
    #: Check every node's outputs against the types inferred at load (slow; for tests).
    strict_shape_checks: bool = False
    #: Threads numpy's BLAS may use during this session's runs (0: its default); see threads.py.
    intra_op_num_threads: int = 0
    #: Keep freed tensor memory in the process for reuse (onnxruntime's default too); see
    #: devices/cpu.enable_memory_arena.  Process-wide, and only effective on glibc.
    enable_cpu_mem_arena: bool = True
    log_severity_level: int = 2
    #: Seed for the random ops (RandomNormal, Bernoulli, ...); None = nondeterministic.
    random_seed: int | None = None
    #: Tests only: every CPU kernel gets each array input as a read-only non-contiguous view of the
    #: same values (transposed, stepped, reversed), to test that kernels take any strides and never
    #: write into their inputs; see devices/cpu.build_kernel.
    strided_test_inputs: bool = False
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeArg:
    """Describes a model input or output, as onnxruntime's NodeArg does."""

    name: str
    type: str
    shape: list[int | str | None] | None

    def __repr__(self) -> str:
        return f"NodeArg(name={self.name!r}, type={self.type!r}, shape={self.shape!r})"


@dataclass(frozen=True)
class ModelMetadata:
    producer_name: str
    graph_name: str
    domain: str
    description: str
    version: int
    custom_metadata_map: dict[str, str]


def _type_string(t: Type | None) -> str:
    return str(t) if t is not None else "unknown"


def _node_arg(name: str, t: Type | None) -> NodeArg:
    shape = list(t.shape) if isinstance(t, TensorType) and t.shape is not None else None
    return NodeArg(name, _type_string(t), shape)


def resolve_providers(providers: Iterable[Any] | None) -> list[str]:
    """Canonical provider names, in priority order (onnxruntime's spellings accepted)."""
    if providers is None:
        return ["cpu"]
    out = []
    for p in providers:
        name = p[0] if isinstance(p, tuple) else p
        canon = PROVIDER_ALIASES.get(name)
        if canon is None:
            raise ValueError(f"unknown provider {name!r}; available: {', '.join(get_available_providers())} "
                             f"(aliases: {', '.join(k for k in PROVIDER_ALIASES if k not in ('cpu', 'webgpu'))})")
        if canon not in out:
            out.append(canon)
    if not out:
        raise ValueError("providers must name at least one provider")
    return out


def get_available_providers() -> list[str]:
    return ["webgpu", "cpu"]


def _make_devices(providers: list[str], options: SessionOptions) -> tuple[list[Any], list[str]]:
    devices: list[Any] = []
    used: list[str] = []
    for name in providers:
        if name == "cpu":
            devices.append(cpu.CpuDevice())
            used.append(name)
        elif name == "webgpu":
            from .devices.gpu import open_device
            try:
                devices.append(open_device(options.provider_options.get("webgpu", {})))
                used.append(name)
            except DeviceError as e:
                if "cpu" not in providers:
                    raise
                warnings.warn(f"webgpu provider unavailable, running on cpu: {e}", RuntimeWarning, stacklevel=3)
    return devices, used


class InferenceSession:
    """Load a model once, run it many times.

    `model` is a path, bytes, or a binary file object.  `providers` lists
    where nodes may run, in priority order: `["webgpu", "cpu"]` runs what
    the GPU supports there and the rest with numpy.
    """

    def __init__(self, model: Any, sess_options: SessionOptions | None = None,
                 providers: Sequence[Any] | None = None, provider_options: Sequence[dict[str, Any]] | None = None,
                 *, external_data_dir: str | None = None):
        self._options = sess_options or SessionOptions()
        names = resolve_providers(providers)
        if provider_options:
            for n, opts in zip(names, provider_options):
                self._options.provider_options.setdefault(n, {}).update(opts)
        if self._options.enable_cpu_mem_arena:
            cpu.enable_memory_arena()
        self._model = load_model(model, external_data_dir)
        self._devices, self._providers = _make_devices(names, self._options)
        model_ir = inline_functions(self._model)
        graph = model_ir.graph
        opsets = model_ir.opsets
        strict = self._options.strict_shape_checks
        types = infer_graph(graph, opsets, REGISTRY, strict=strict)
        self._declared_inputs = [v for v in graph.inputs if v.name not in graph.initializers]
        self._defaults = {v.name: graph.initializers[v.name].array for v in graph.inputs if v.name in graph.initializers}
        self._input_types = {v.name: types.types.get(v.name) for v in graph.inputs}
        self._output_types = {v.name: types.types.get(v.name) for v in graph.outputs}
        level = self._options.graph_optimization_level
        if level >= GraphOptimizationLevel.ORT_ENABLE_BASIC:
            graph = fold_constants(graph, opsets, REGISTRY, types, cpu.build_kernel)
            graph = remove_dead(remove_identities(graph))
            if level >= GraphOptimizationLevel.ORT_ENABLE_EXTENDED:
                graph = fuse(graph, opsets, types)
            types = infer_graph(graph, opsets, REGISTRY, strict=strict)
        self._graph = graph
        self._plan = Planner(REGISTRY, opsets, self._devices, self._options, strict).compile(graph, types)
        self._output_index = {n: i for i, n in enumerate(self._plan.output_names)}
        self._const_outputs = {i for i, s in enumerate(self._plan.output_slots) if self._plan.initial[s] is not None}
        self.last_profile: Profile | None = None

    # ------------------------------------------------------------ metadata
    def get_inputs(self) -> list[NodeArg]:
        return [_node_arg(v.name, self._input_types.get(v.name) or v.type) for v in self._declared_inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [_node_arg(n, t) for n, t in self._output_types.items()]

    def get_overridable_initializers(self) -> list[NodeArg]:
        return [_node_arg(n, self._input_types.get(n)) for n in self._defaults]

    def get_providers(self) -> list[str]:
        return list(self._providers)

    def get_session_options(self) -> SessionOptions:
        return self._options

    def get_modelmeta(self) -> ModelMetadata:
        m = self._model
        return ModelMetadata(m.producer, m.graph.name, "", m.doc, m.model_version, dict(m.metadata))

    def get_placement(self) -> dict[str, str]:
        """Device of every node of the optimized graph: {node name: "webgpu" | "cpu"}."""
        return dict(self._plan.placement)

    def device_stats(self) -> dict[str, Any]:
        """Where the nodes run and what a run costs the GPU (counts from the last run; None before one).

        nodes_total, nodes_on_gpu, fallback_ops (op type -> nodes on the cpu while webgpu was
        requested), fallback_reasons (node -> why the GPU did not take it), dispatches_per_run,
        readbacks_per_run (GPU -> host copies: requested outputs and values cpu nodes needed),
        submits_per_run (command encoders a run submits: 1 when nothing mid-run needs a GPU result).
        """
        nodes = [s.node for s in self._plan.steps if (s.node.domain, s.node.op_type) != ("", "Transfer")]
        placement = self._plan.placement
        gpu = next((d for d in self._devices if getattr(d, "name", "") == "webgpu"), None)
        on_gpu = sum(1 for v in placement.values() if v == "webgpu")
        stats: dict[str, Any] = {"nodes_total": len(placement), "nodes_on_gpu": on_gpu,
                                 "dispatches_per_run": None, "readbacks_per_run": None, "submits_per_run": None,
                                 "fallback_ops": {}, "fallback_reasons": {}}
        if gpu is None:
            return stats
        fallback: dict[str, int] = {}
        for n in nodes:
            if placement.get(n.name or n.outputs[0]) == "cpu":
                fallback[n.op_type] = fallback.get(n.op_type, 0) + 1
        stats["fallback_ops"] = dict(sorted(fallback.items(), key=lambda kv: -kv[1]))
        reasons = gpu.fallback_reasons()
        stats["fallback_reasons"] = {k: v for k, v in reasons.items() if placement.get(k) == "cpu"}
        if gpu.last_run is not None:
            stats["dispatches_per_run"] = gpu.last_run.dispatches
            stats["readbacks_per_run"] = gpu.last_run.readbacks
            stats["submits_per_run"] = gpu.last_run.submits
        stats["adapter"] = gpu.backend.description
        return stats

    @property
    def graph(self) -> Graph:
        """The optimized graph the plan runs (after folding and fusion)."""
        return self._graph

    @property
    def plan(self) -> Any:
        return self._plan

    # ------------------------------------------------------------------ run
    def _feeds(self, input_feed: dict[str, Any]) -> list[Any]:
        if not isinstance(input_feed, dict):
            raise InputError(f"input_feed must be a dict of name -> array, got {type(input_feed).__name__}")
        known = {v.name: v for v in self._declared_inputs}
        for name in input_feed:
            if name not in known and name not in self._defaults:
                raise InputError(f"'{name}' is not an input of this model; its inputs are: "
                                 f"{', '.join(known) or '(none)'}")
        missing = [n for n in known if n not in input_feed]
        if missing:
            expected = ", ".join(f"{v.name}: {v.type.describe() if v.type else '?'}" for v in self._declared_inputs)
            raise InputError(f"missing input(s) {', '.join(missing)}; the model expects {expected}")
        bindings: dict[str, int] = {}
        feeds = []
        for name in self._plan.input_names:
            if name in known:
                t = self._input_types.get(name) or known[name].type
                feeds.append(check_feed(ValueInfo(name, t), input_feed[name], bindings))
            else:
                feeds.append(input_feed[name] if name in input_feed else self._defaults[name])
        return feeds

    def _select(self, output_names: Sequence[str] | None, outs: list[Any]) -> list[Any]:
        if output_names is None:
            idx = list(range(len(outs)))
        else:
            idx = []
            for n in output_names:
                if n not in self._output_index:
                    raise InputError(f"'{n}' is not an output of this model; its outputs are: "
                                     f"{', '.join(self._output_index)}")
                idx.append(self._output_index[n])
        result = []
        for i in idx:
            v = outs[i]
            if i in self._const_outputs and isinstance(v, np.ndarray):
                v = v.copy()
            result.append(_export(v, self._output_types.get(self._plan.output_names[i])))
        return result

    async def run_async(self, output_names: Sequence[str] | None, input_feed: dict[str, Any],
                        run_options: Any = None) -> list[Any]:
        """Run the model; awaitable (needed in the browser, where GPU readbacks are asynchronous)."""
        feeds = self._feeds(input_feed)
        profile = Profile() if self._options.enable_profiling else None
        hooked = [d for d in self._devices if hasattr(d, "run_started")]
        async with _device_run_lock(bool(hooked)):
            for d in hooked:
                d.run_started()
            try:
                with threads.limit_runs(self._options.intra_op_num_threads):
                    outs = await run_async(self._plan, feeds, profile)
            finally:
                for d in hooked:
                    d.run_finished()
        self.last_profile = profile
        return self._select(output_names, outs)

    def run(self, output_names: Sequence[str] | None, input_feed: dict[str, Any], run_options: Any = None) -> list[Any]:
        """Run the model and return the requested outputs (all when `output_names` is None)."""
        return drive(self.run_async(output_names, input_feed, run_options))


_LOOP_LOCKS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = weakref.WeakKeyDictionary()


def _device_run_lock(uses_device: bool) -> Any:
    """Serialise device runs between coroutines of one event loop.

    A GPU run records into the backend's single command encoder, and in the
    browser it suspends at every readback: two runs awaited concurrently
    would interleave their dispatches.  (Threads are kept apart by the
    backend's own lock; outside an event loop nothing can interleave.)
    """
    if not uses_device:
        return contextlib.nullcontext()
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return contextlib.nullcontext()
    lock = _LOOP_LOCKS.get(loop)
    if lock is None:
        lock = _LOOP_LOCKS[loop] = asyncio.Lock()
    return lock


def _export(v: Any, t: Type | None) -> Any:
    """Webinfer storage -> what the user gets (ml_dtypes arrays for bfloat16 & co.)."""
    if isinstance(t, TensorType) and t.elem is not None and isinstance(v, np.ndarray):
        return dtypes.export_array(v, t.elem)
    if isinstance(t, (SequenceType, OptionalType)) and isinstance(v, list):
        return [_export(x, t.elem) for x in v]
    if isinstance(t, OptionalType):
        return _export(v, t.elem)
    return v
