"""`InferenceSession`: the onnxruntime-shaped entry point.

Thin by design: it wires the stages together (read -> inline -> bind input
dims -> infer -> fold/clean/fuse -> plan) and checks feeds.  Code written
for onnxruntime ports by changing the import: the constructor, `run`,
`run_async` (awaitable, or with onnxruntime's callback), `run_with_ort_values`,
`io_binding`, `set_providers`, `end_profiling` and the metadata calls keep
onnxruntime's signatures and behaviour (see the README's compatibility table).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import os
import sys
import threading
import time
import weakref
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from . import dtypes, gemm, log, providers as provider_registry, threads
from .checks import check_feed, symbols_agree
from .devices import cpu
from .errors import InputError, ModelLoadError
from .executor import Profile, drive, run_async, run_sync
from .ir import Graph, SequenceType, OptionalType, TensorType, Type, ValueInfo
from .loader import load_model
from .ops import REGISTRY
from .options import RunOptions, SessionOptions
from .ortvalue import IOBinding, OrtValue
from .passes import optimize
from .passes.free_dims import bind_input_dims, declared_inputs
from .passes.inline import inline_functions
from .plan import HOST, Plan, Planner
from .shapes import GraphTypes, infer_graph


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
    """onnxruntime's ModelMetadata fields."""

    producer_name: str
    graph_name: str
    graph_description: str
    domain: str
    description: str
    version: int
    custom_metadata_map: dict[str, str]


def _type_string(t: Type | None) -> str:
    return str(t) if t is not None else "unknown"


def _node_arg(name: str, t: Type | None) -> NodeArg:
    shape = list(t.shape) if isinstance(t, TensorType) and t.shape is not None else None
    return NodeArg(name, _type_string(t), shape)


@dataclass
class _Compiled:
    """One planned variant of the model: the optimized graph, its types and its plan."""

    graph: Graph
    types: GraphTypes
    plan: Plan
    inputs: list[ValueInfo]

    def __post_init__(self) -> None:
        #: Output name -> position in the plan's outputs.
        self.output_index = {n: i for i, n in enumerate(self.plan.output_names)}
        #: Positions of outputs that are constants: handed out as copies, so callers cannot change them.
        self.const_outputs = frozenset(i for i, s in enumerate(self.plan.output_slots)
                                       if self.plan.initial[s] is not None)
        #: The feeds' declared types by name, and in the plan's input order.
        self.feed_infos = {v.name: v for v in self.inputs}
        self.fed_infos = [self.feed_infos[n] for n in self.plan.input_names if n in self.feed_infos]
        #: Whether some symbolic dim name appears in two inputs (only then can feeds disagree on it).
        self.shared_symbols = _shares_symbols(self.inputs)
        #: The checks that let plain numpy feeds skip `check_feed` (None where some input cannot).
        self.fast_feeds = _fast_feeds(self)
        #: Whether every output is handed out as the executor returns it (no copy, no export).
        self.plain_outputs = _plain_outputs(self)


@dataclass(frozen=True)
class _FeedSpec:
    """What a feed must be to pass `check_feed` unchanged: a plain array of this dtype and these fixed dims."""

    name: str
    dtype: np.dtype
    rank: int
    #: The whole shape when every dim is fixed, else None (then `fixed` is checked).
    exact: tuple[int, ...] | None
    fixed: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class _FastFeeds:
    """The checks that let plain feeds skip `check_feed` and `symbols_agree` (see `_fast_feeds`)."""

    specs: tuple[_FeedSpec, ...]
    #: (input i, axis a, input j, axis b): dims sharing a symbolic name, which must agree.
    agree: tuple[tuple[int, int, int, int], ...]


def _fast_feeds(compiled: _Compiled) -> _FastFeeds | None:
    """Per plan input, the check that lets a feed skip `check_feed` and `symbols_agree`; None if any can't.

    A model called once per audio chunk runs in ~0.1 ms, so the general
    checks (a few microseconds) are worth skipping for the common feed: a
    plain numpy array of the model's native dtype.  That needs every plan
    input to be a tensor input with a known shape, and no defaulted
    initializers; dims sharing a symbolic name are compared pairwise.
    """
    infos = compiled.feed_infos
    if set(compiled.plan.input_names) != set(infos) or len(compiled.plan.input_names) != len(infos):
        return None
    specs = []
    first: dict[str, tuple[int, int]] = {}
    agree = []
    for i, name in enumerate(compiled.plan.input_names):
        t = infos[name].type
        if not isinstance(t, TensorType) or t.elem is None or t.shape is None or not dtypes.ELEM_TYPES[t.elem].native:
            return None
        dtype = dtypes.storage_dtype(t.elem)
        if dtype == np.dtype(object):
            return None
        for a, d in enumerate(t.shape):
            if isinstance(d, str):
                j, b = first.setdefault(d, (i, a))
                if (j, b) != (i, a):
                    agree.append((i, a, j, b))
        fixed = tuple((a, d) for a, d in enumerate(t.shape) if isinstance(d, int))
        exact = tuple(d for _, d in fixed) if len(fixed) == len(t.shape) else None
        specs.append(_FeedSpec(name, dtype, len(t.shape), exact, fixed))
    return _FastFeeds(tuple(specs), tuple(agree))


def _plain_outputs(compiled: _Compiled) -> bool:
    """Whether `_select` would hand every output out as the executor returns it (no copy, no export)."""
    plan = compiled.plan
    for name, slot in zip(plan.output_names, plan.output_slots):
        t = compiled.types.types.get(name)
        if plan.initial[slot] is not None or not isinstance(t, TensorType) or t.elem is None \
                or not dtypes.ELEM_TYPES[t.elem].native:
            return False
    return True


class InferenceSession:
    """Load a model once, run it many times.

    `path_or_bytes` is a path, bytes, or a binary file object.  `providers`
    lists where nodes may run, in priority order, by onnxruntime's names or
    webinfer's short ones (`["webgpu", "cpu"]`), optionally as `(name,
    options)` tuples; names of providers this runtime lacks warn and are
    skipped, and the CPU is always the last fallback (onnxruntime's rules).
    """

    def __init__(self, path_or_bytes: Any, sess_options: SessionOptions | None = None,
                 providers: Sequence[Any] | None = None, provider_options: Sequence[dict[str, Any]] | None = None,
                 *, external_data_dir: str | None = None, **kwargs: Any):
        unknown = set(kwargs) - {"disabled_optimizers", "read_config_from_model"}
        if unknown:
            raise TypeError(f"InferenceSession got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        self._options = sess_options if sess_options is not None else SessionOptions()
        if not isinstance(self._options, SessionOptions):
            raise TypeError(f"sess_options must be a webinfer.SessionOptions, got {type(self._options).__name__}")
        if self._options.load_cancelled:
            raise ModelLoadError("session creation canceled (SessionOptions.set_load_cancellation_flag)")
        if kwargs.get("disabled_optimizers"):
            self._warn("disabled_optimizers names onnxruntime's graph transformers, which webinfer does not "
                       "have; use graph_optimization_level to switch webinfer's fusions off")
        if self._options.optimized_model_filepath:
            self._warn(f"optimized_model_filepath is not supported: webinfer does not write the optimized "
                       f"model to '{self._options.optimized_model_filepath}'")
        if self._options.enable_cpu_mem_arena:
            cpu.enable_memory_arena()
        self._model = load_model(path_or_bytes, external_data_dir)
        model_ir = inline_functions(self._model)
        self._opsets = model_ir.opsets
        self._source = _with_initializers(model_ir.graph, self._options.initializer_overrides)
        self._fallback = True
        self._profile_events: list[dict[str, Any]] | None = None
        self._profile_start_ns = 0
        self.last_profile: Profile | None = None
        self._setup(providers, provider_options)
        if self._options.enable_profiling:
            self._start_profiling()

    def _warn(self, message: str) -> None:
        log.warn(message, self._options.log_severity_level, stacklevel=3)

    def _setup(self, providers: Sequence[Any] | None, provider_options: Sequence[dict[str, Any]] | None) -> None:
        """Open the providers' devices and plan the model on them."""
        choices = provider_registry.resolve(providers, provider_options, self._options.provider_options,
                                            cpu_fallback=not self._options.disable_cpu_fallback())
        opened = provider_registry.open_devices(choices, self._fallback, self._warn)
        self._choices = [c for c, _ in opened]
        self._devices = [d for _, d in opened]
        overrides = (self._options.free_dimension_overrides, self._options.free_dimension_denotations)
        self._declared_inputs = [v for v in declared_inputs(self._source, *overrides)
                                 if v.name not in self._source.initializers]
        self._defaults = {v.name: self._source.initializers[v.name].array for v in self._source.inputs
                          if v.name in self._source.initializers}
        self._relaxed: _Compiled | None = None
        self._variants: dict[frozenset[tuple[str, str]], _Compiled] = {}
        self._main = self._compile(relaxed=False)
        self._output_types = {v.name: self._main.types.types.get(v.name) for v in self._source.outputs}
        self._hooked = [d for d in self._devices if d.run_hooks]

    def _compile(self, relaxed: bool, on_device: dict[str, str] | None = None) -> _Compiled:
        """Bind input dims, infer, optimize and plan (see passes/free_dims.py for `relaxed`, and
        Planner.compile for `on_device`)."""
        opsets = self._opsets
        strict = self._options.strict_shape_checks
        graph = bind_input_dims(self._source, self._options.free_dimension_overrides,
                                self._options.free_dimension_denotations, relaxed)
        types = infer_graph(graph, opsets, REGISTRY, strict=strict)
        inputs = [ValueInfo(v.name, types.types.get(v.name) or v.type) for v in graph.inputs
                  if v.name not in graph.initializers]
        graph, types, opsets = optimize(graph, self._options.graph_optimization_level, opsets, REGISTRY, types,
                                        cpu.build_kernel, lambda g, o: infer_graph(g, o, REGISTRY, strict=strict))
        plan = Planner(REGISTRY, opsets, self._devices, run_sync, self._options, strict).compile(
            graph, types, on_device=on_device)
        return _Compiled(graph, types, plan, inputs)

    def _bound(self, on_device: dict[str, str]) -> _Compiled:
        """The plan variant whose inputs/outputs in `on_device` stay on that device (IOBinding)."""
        key = frozenset(on_device.items())
        compiled = self._variants.get(key)
        if compiled is None:
            devices = {d.name for d in self._devices}
            names = set(self._main.feed_infos) | set(self._main.plan.output_names)
            for name, device in on_device.items():
                if device not in devices:
                    raise InputError(f"'{name}' is bound to {device}, but this session runs on "
                                     f"{', '.join(self.get_providers())}: add the {device} provider")
                if name not in names:
                    raise InputError(f"'{name}' is bound to {device} but is neither an input nor an output")
            compiled = self._variants[key] = self._compile(relaxed=False, on_device=on_device)
        return compiled

    @property
    def _plan(self) -> Plan:
        return self._main.plan

    # ------------------------------------------------------------ metadata
    def get_inputs(self) -> list[NodeArg]:
        inferred = {v.name: v.type for v in self._main.inputs}
        return [_node_arg(v.name, _declared_or(v.type, inferred.get(v.name))) for v in self._declared_inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [_node_arg(n, t) for n, t in self._output_types.items()]

    def get_overridable_initializers(self) -> list[NodeArg]:
        return [_node_arg(n, self._main.types.types.get(n)) for n in self._defaults]

    def get_providers(self) -> list[str]:
        """The providers in use, in onnxruntime's spelling (the CPU fallback included)."""
        return [c.provider.name for c in self._choices]

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        """Each provider's options, values as strings (as onnxruntime reports them)."""
        return {c.provider.name: {k: str(v) for k, v in c.options.items()} for c in self._choices}

    def set_providers(self, providers: Sequence[Any] | None = None,
                      provider_options: Sequence[dict[str, Any]] | None = None) -> None:
        """Re-plan the model on other providers (same rules as the constructor)."""
        self._setup(providers, provider_options)

    def disable_fallback(self) -> None:
        """A provider that fails to open in later `set_providers` calls raises instead of being skipped."""
        self._fallback = False

    def enable_fallback(self) -> None:
        self._fallback = True

    def get_session_options(self) -> SessionOptions:
        return self._options

    def get_modelmeta(self) -> ModelMetadata:
        m = self._model
        return ModelMetadata(m.producer, m.graph.name, m.graph.doc, m.domain, m.doc, m.model_version,
                             dict(m.metadata))

    def get_placement(self) -> dict[str, str]:
        """Device of every node of the optimized graph: {node name: "webgpu" | "cpu"}."""
        return dict(self._plan.placement)

    def device_stats(self) -> dict[str, Any]:
        """Where the nodes run and what a run costs the GPU (counts from the last run; None before one).

        nodes_total, nodes_on_gpu, fallback_ops (op type -> nodes on the cpu while webgpu was
        requested), fallback_reasons (node -> why the GPU did not take it), dispatches_per_run,
        readbacks_per_run (GPU -> host copies: requested outputs and values cpu nodes needed),
        submits_per_run (command encoders a run submits: 1 when nothing mid-run needs a GPU result),
        cpu_gemm (what runs the cpu's matrix products: gemm.backend()).
        """
        nodes = [s.node for s in self._plan.steps if (s.node.domain, s.node.op_type) != ("", "Transfer")]
        placement = self._plan.placement
        accelerators = [d for d in self._devices if d.name != HOST]
        on_gpu = sum(1 for v in placement.values() if v != HOST)
        stats: dict[str, Any] = {"nodes_total": len(placement), "nodes_on_gpu": on_gpu,
                                 "dispatches_per_run": None, "readbacks_per_run": None, "submits_per_run": None,
                                 "fallback_ops": {}, "fallback_reasons": {}, "cpu_gemm": gemm.backend()}
        if not accelerators:
            return stats
        fallback: dict[str, int] = {}
        for n in nodes:
            if placement.get(n.name or n.outputs[0]) == HOST:
                fallback[n.op_type] = fallback.get(n.op_type, 0) + 1
        stats["fallback_ops"] = dict(sorted(fallback.items(), key=lambda kv: -kv[1]))
        for d in accelerators:
            reasons = d.fallback_reasons()
            stats["fallback_reasons"].update((k, v) for k, v in reasons.items() if placement.get(k) == HOST)
            stats.update(d.run_stats())
        return stats

    @property
    def graph(self) -> Graph:
        """The optimized graph the plan runs (after folding and fusion)."""
        return self._main.graph

    @property
    def plan(self) -> Any:
        return self._plan

    # ------------------------------------------------------------ profiling
    def _start_profiling(self) -> None:
        self._profile_events = []
        self._profile_start_ns = time.perf_counter_ns()

    def get_profiling_start_time_ns(self) -> int:
        return self._profile_start_ns

    def end_profiling(self) -> str:
        """Write the runs profiled so far as a Chrome-trace JSON file (Perfetto and chrome://tracing
        open it; the layout is onnxruntime's) and stop profiling; return the file's name, or "" when
        profiling was not on."""
        if self._profile_events is None:
            return ""
        stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        path = f"{self._options.profile_file_prefix}_{stamp}.json"
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self._profile_events, f)
        self._profile_events = None
        return path

    def _record_profile(self, profile: Profile, start_ns: int, end_ns: int) -> None:
        """Append one run's events: the run itself (cat Session) and each node (cat Node)."""
        events = self._profile_events
        if events is None or profile.events is None:
            return
        origin = self._profile_start_ns
        pid, tid = os.getpid(), threading.get_ident() % (1 << 31)
        names = {c.provider.short: c.provider.name for c in self._choices}
        events.append({"cat": "Session", "pid": pid, "tid": tid, "dur": (end_ns - start_ns) // 1000,
                       "ts": (start_ns - origin) // 1000, "ph": "X", "name": "model_run", "args": {}})
        for name, op_type, device, t0, dur in profile.events:
            events.append({"cat": "Node", "pid": pid, "tid": tid, "dur": dur // 1000, "ts": (t0 - origin) // 1000,
                           "ph": "X", "name": f"{name}_kernel_time",
                           "args": {"op_name": op_type, "provider": names.get(device, device)}})

    # ------------------------------------------------------------------ run
    def _feeds(self, input_feed: dict[str, Any]) -> tuple[_Compiled, list[Any]]:
        """The plan to run (the relaxed one when feeds give a shared dim name two sizes) and its feeds."""
        plain = self._main.fast_feeds
        if plain is not None and type(input_feed) is dict and len(input_feed) == len(plain.specs):
            fast = []
            for spec in plain.specs:
                v = input_feed.get(spec.name)
                if type(v) is not np.ndarray or v.dtype != spec.dtype or not _fits(v.shape, spec):
                    break
                fast.append(v)
            else:
                for i, a, j, b in plain.agree:
                    if fast[i].shape[a] != fast[j].shape[b]:
                        break
                else:
                    return self._main, fast
        if not isinstance(input_feed, dict):
            raise InputError(f"input_feed must be a dict of name -> array, got {type(input_feed).__name__}")
        main = self._main
        known = main.feed_infos
        if len(input_feed) != len(known) or any(n not in input_feed for n in known):
            self._check_names(input_feed)
        feeds = []
        checked = []
        for name in main.plan.input_names:
            info = known.get(name)
            if info is not None:
                value = check_feed(info, _unwrap(input_feed[name]))
                checked.append(value)
                feeds.append(value)
            else:
                feeds.append(_unwrap(input_feed[name]) if name in input_feed else self._defaults[name])
        if main.shared_symbols and not symbols_agree(main.fed_infos, checked):
            if self._relaxed is None:
                self._relaxed = self._compile(relaxed=True)
            return self._relaxed, feeds
        return main, feeds

    def _check_names(self, input_feed: dict[str, Any]) -> None:
        """Feeds must name inputs (or overridable initializers) and cover every input."""
        known = self._main.feed_infos
        for name in input_feed:
            if name not in known and name not in self._defaults:
                raise InputError(f"'{name}' is not an input of this model; its inputs are: "
                                 f"{', '.join(known) or '(none)'}")
        missing = [n for n in known if n not in input_feed]
        if missing:
            expected = ", ".join(f"{v.name}: {v.type.describe() if v.type else '?'}" for v in self._declared_inputs)
            raise InputError(f"missing input(s) {', '.join(missing)}; the model expects {expected}")

    def _select(self, compiled: _Compiled, output_names: Sequence[str] | None, outs: list[Any],
                export: bool = True) -> list[Any]:
        plan = compiled.plan
        if output_names is None:
            if export and compiled.plain_outputs:
                return outs
            idx = list(range(len(outs)))
        else:
            index = compiled.output_index
            idx = []
            for n in output_names:
                if n not in index:
                    raise InputError(f"'{n}' is not an output of this model; its outputs are: "
                                     f"{', '.join(index)}")
                idx.append(index[n])
        result = []
        for i in idx:
            v = outs[i]
            if i in compiled.const_outputs and isinstance(v, np.ndarray):
                v = v.copy()
            result.append(_export(v, self._output_types.get(plan.output_names[i])) if export else v)
        return result

    async def _run_coroutine(self, output_names: Sequence[str] | None, input_feed: dict[str, Any],
                             run_options: RunOptions | None, export: bool = True,
                             on_device: dict[str, str] | None = None) -> list[Any]:
        compiled, feeds = self._feeds(input_feed)
        if on_device:
            compiled = self._bound(on_device)
        profiling = self._options.enable_profiling
        hooked = self._hooked
        if not hooked and not profiling:  # a plain CPU run: no device hooks, lock or profile to set up
            with threads.limit_runs(self._options.intra_op_num_threads):
                outs = await run_async(compiled.plan, feeds, None, run_options)
            return self._select(compiled, output_names, outs, export)
        profile = Profile(events=[] if self._profile_events is not None else None) if profiling else None
        start_ns = time.perf_counter_ns() if profile is not None else 0
        async with _device_run_lock(bool(hooked)):
            for d in hooked:
                d.run_started()
            try:
                with threads.limit_runs(self._options.intra_op_num_threads):
                    outs = await run_async(compiled.plan, feeds, profile, run_options)
            finally:
                for d in hooked:
                    d.run_finished()
        if profile is not None:
            self.last_profile = profile
            self._record_profile(profile, start_ns, time.perf_counter_ns())
        return self._select(compiled, output_names, outs, export)

    def run_async(self, output_names: Sequence[str] | None, input_feed: dict[str, Any],
                  callback: Callable[[list[Any], Any, str], None] | None = None, user_data: Any = None,
                  run_options: RunOptions | None = None) -> Any:
        """Run the model asynchronously.

        Without `callback`: an awaitable of the outputs (the browser's entry
        point, where GPU readbacks are asynchronous).  With one, as
        onnxruntime: returns at once and later calls `callback(outputs,
        user_data, error_message)` from a worker thread (from the event
        loop in Pyodide, which has no threads), error_message "" on success.
        """
        if callback is None:
            return self._run_coroutine(output_names, input_feed, run_options)
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")

        def finish(outs: list[Any], err: str) -> None:
            callback(outs, user_data, err)

        if sys.platform == "emscripten":
            task = asyncio.ensure_future(self._run_coroutine(output_names, input_feed, run_options))
            task.add_done_callback(lambda t: finish([], str(t.exception())) if t.exception()
                                   else finish(t.result(), ""))
            return None

        def work() -> None:
            try:
                outs = self.run(output_names, input_feed, run_options)
            except Exception as e:  # noqa: BLE001 - handed to the callback, as onnxruntime does
                finish([], f"{type(e).__name__}: {e}")
                return
            finish(outs, "")

        threading.Thread(target=work, name="webinfer-run-async", daemon=True).start()
        return None

    def run(self, output_names: Sequence[str] | None, input_feed: dict[str, Any],
            run_options: RunOptions | None = None) -> list[Any]:
        """Run the model and return the requested outputs (all when `output_names` is None)."""
        return drive(self._run_coroutine(output_names, input_feed, run_options))

    def _run_values(self, output_names: Sequence[str] | None, input_feed: dict[str, Any],
                    run_options: RunOptions | None, on_device: dict[str, str] | None = None) -> list[Any]:
        """`run`, with outputs in webinfer storage (bfloat16 as float32 bits etc.), for OrtValues;
        the names in `on_device` are fed and returned as that device's tensors."""
        return drive(self._run_coroutine(output_names, input_feed, run_options, export=False, on_device=on_device))

    def run_with_ort_values(self, output_names: Sequence[str] | None, input_dict_ort_values: dict[str, OrtValue],
                            run_options: RunOptions | None = None) -> list[OrtValue]:
        """`run` with OrtValues in and out."""
        names = list(output_names) if output_names else list(self._plan.output_names)
        outs = self._run_values(names, input_dict_ort_values, run_options)
        return [OrtValue(v, self._output_elem(n)) for n, v in zip(names, outs)]

    def _output_elem(self, name: str) -> int | None:
        """Output `name`'s ONNX element type, which an OrtValue of its storage needs (bfloat16 & co.)."""
        return getattr(self._output_types.get(name), "elem", None)

    def io_binding(self) -> IOBinding:
        return IOBinding(self)

    def run_with_iobinding(self, iobinding: IOBinding, run_options: RunOptions | None = None) -> None:
        """Run on the binding's inputs; its outputs are then in `iobinding.get_outputs()`."""
        iobinding._run(run_options)


def _fits(shape: tuple[int, ...], spec: _FeedSpec) -> bool:
    """Whether `shape` has the spec's rank and fixed dims."""
    if spec.exact is not None:
        return shape == spec.exact
    return len(shape) == spec.rank and all(shape[a] == d for a, d in spec.fixed)


def _shares_symbols(inputs: Sequence[ValueInfo]) -> bool:
    seen: set[str] = set()
    for v in inputs:
        t = v.type
        names = {d for d in t.shape if isinstance(d, str)} if isinstance(t, TensorType) and t.shape else set()
        if seen & names:
            return True
        seen |= names
    return False


def _unwrap(v: Any) -> Any:
    return v.value if isinstance(v, OrtValue) else v


def _declared_or(declared: Type | None, inferred: Type | None) -> Type | None:
    """The declared input type (its symbolic names, as the file spells them), else the inferred one."""
    if isinstance(declared, TensorType) and declared.elem is not None and declared.shape is not None:
        return declared
    return inferred or declared


def _with_initializers(graph: Graph, overrides: dict[str, Any]) -> Graph:
    """`graph` with initializers replaced (SessionOptions.add_initializer), checked against the originals."""
    if not overrides:
        return graph
    inits = dict(graph.initializers)
    for name, value in overrides.items():
        if name not in inits:
            raise InputError(f"add_initializer: '{name}' is not an initializer of this model")
        old = inits[name]
        array = np.asarray(_unwrap(value))
        if array.shape != old.array.shape or array.dtype != old.array.dtype:
            raise InputError(f"add_initializer: '{name}' is {old.array.dtype}{list(old.array.shape)} in the model, "
                             f"got {array.dtype}{list(array.shape)}")
        inits[name] = replace(old, array=array)
    return replace(graph, initializers=inits)


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
