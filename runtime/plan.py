"""Planning: an optimized graph becomes a flat list of steps over numbered slots.

The plan fixes, once per session: the order of nodes, the device of each
node (first provider that can run it), the kernel of each node (attributes
parsed, constants specialised), transfers between devices, and the last use
of every value so the executor drops it right after (peak memory stays near
the largest live set, not the sum of all activations).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .checks import check_outputs
from .devices.protocol import Device
from .errors import UnsupportedOpError
from .ir import Graph, Node, Tensor, TensorType, Type, node_subgraphs
from .ops.registry import AsyncKernel, Kernel, OpContext, Registry, consuming
from .passes import optimize
from .shapes import GraphTypes, infer_graph


#: The device that holds feeds, constants and outputs.
HOST = "cpu"

#: Runs a plan on its feeds and returns its outputs: the executor's `run_sync`, handed to the planner by
#: the session (the planner does not import the executor, which imports the planner's types).
RunPlan = Callable[["Plan", Sequence[Any]], list[Any]]


@dataclass(slots=True)
class Step:
    fn: Kernel | AsyncKernel
    ins: tuple[int, ...]
    outs: tuple[int, ...]
    free: tuple[int, ...]
    node: Node
    device: str
    #: The fn returns an awaitable (device readbacks).
    is_async: bool = False
    #: A shape-only step whose outputs the shape cache keeps (see ShapeCache).
    capture: bool = False
    #: (input position, kernel variant that may write into that input's buffer), kept only where
    #: the input dies at this step; the executor uses the variant when nothing else holds the buffer.
    consume: tuple[int, Kernel] | None = None


@dataclass
class ShapeCache:
    """Results that depend only on the feeds' shapes, computed once per distinct shapes.

    Exporters compute Reshape/Expand targets at run time (Shape -> Gather ->
    Unsqueeze -> Concat ...): a hundred tiny steps per run in a transformer.
    When the shapes they read are known (symbolically) in terms of the
    feeds' dims, their results are a function of the feed shapes alone, so
    a run with shapes seen before skips them and takes the cached values.
    """

    #: The plan's steps without the shape-only ones (frees recomputed for this list).
    steps: list[Step]
    #: Slots that shape-only steps fill and other steps read, in cache-entry order.
    slots: list[int]
    entries: "OrderedDict[tuple, list[Any]]" = field(default_factory=OrderedDict)
    limit: int = 16


@dataclass
class Plan:
    steps: list[Step]
    slot_names: list[str]
    #: Constant value per slot (weights), None elsewhere.
    initial: list[Any]
    input_names: list[str]
    input_slots: list[int]
    output_names: list[str]
    output_slots: list[int]
    types: GraphTypes
    placement: dict[str, str] = field(default_factory=dict)
    shape_cache: ShapeCache | None = None


@dataclass
class Planner:
    """Builds plans for one session: the op table, opsets and devices in priority order, and the
    executor's `run` for the subplans of control-flow ops."""

    registry: Registry
    opsets: dict[str, int]
    devices: Sequence[Device]
    run: RunPlan
    options: Any = None
    strict: bool = False

    def compile(self, graph: Graph, types: GraphTypes, input_names: list[str] | None = None,
                output_names: list[str] | None = None, on_device: Mapping[str, str] | None = None) -> Plan:
        """Plan `graph`. Inputs are its declared inputs (initializers listed as
        inputs too: the caller supplies their defaults), or `input_names`, e.g.
        a subgraph's formal inputs followed by its captured names.

        `on_device` names inputs fed as, and outputs returned as, tensors of
        a device (name -> device name; IOBinding's device bindings): they
        skip the host, so a run's outputs can feed the next run in place.
        """
        on_device = dict(on_device or {})
        if input_names is None:
            input_names = [v.name for v in graph.inputs]
        if output_names is None:
            output_names = [v.name for v in graph.outputs]
        slots: dict[tuple[str, str], int] = {}
        slot_names: list[str] = []
        initial: list[Any] = []
        steps: list[Step] = []
        placement: dict[str, str] = {}
        location: dict[str, str] = {}
        by_name = {d.name: d for d in self.devices}

        def new_slot(name: str, device: str, value: Any = None) -> int:
            slots[(name, device)] = len(slot_names)
            slot_names.append(name)
            initial.append(value)
            return slots[(name, device)]

        def slot_on(name: str, device: str) -> int:
            """Slot of `name` on `device`, adding a transfer if it lives elsewhere."""
            if (name, device) in slots:
                return slots[(name, device)]
            src = location[name]
            src_slot = slots[(name, src)]
            if initial[src_slot] is not None:  # a constant (on the host): upload once, now
                return new_slot(name, device, by_name[device].upload(initial[src_slot]))
            dst = new_slot(name, device)
            if device == HOST:
                steps.append(Step(_downloader(by_name[src]), (src_slot,), (dst,), (),
                                  _transfer_node(name, src, device), src, is_async=True))
            else:
                up = by_name[device].upload
                steps.append(Step(lambda x, up=up: (up(x),), (src_slot,), (dst,), (),
                                  _transfer_node(name, src, device), device))
            return dst

        input_slots = []
        for name in input_names:
            where = on_device.get(name, HOST)
            input_slots.append(new_slot(name, where))
            location[name] = where
        for name, t in graph.initializers.items():
            if (name, HOST) not in slots:
                new_slot(name, HOST, t.array)
                location[name] = HOST
        overridable = {v.name for v in graph.inputs}
        #: What a subgraph may take as its own constants: this graph's initializers that no feed overrides.
        constants = {n: t for n, t in graph.initializers.items() if n not in overridable}

        for node in graph.topological_nodes():
            opset = self.opsets.get(node.domain, 0)
            opdef = self.registry.lookup(node, opset)
            ctx = OpContext(node, opset, [types.types.get(n) if n else None for n in node.inputs],
                            [types.types.get(n) if n else None for n in node.outputs],
                            [_const_value(graph, types, n, overridable) for n in node.inputs],
                            compile_subgraph=lambda g, in_types=None, t=types: self.compile_subgraph(
                                g, t, in_types, constants),
                            options=self.options)
            kernel, device = None, None
            for dev in self.devices:
                kernel = dev.build(opdef, ctx)
                if kernel is not None:
                    device = dev.name
                    break
            if kernel is None or device is None:
                raise UnsupportedOpError(f"{node.label()}: no provider can run it")
            placement[node.name or node.outputs[0]] = device
            captured = [n for g in node_subgraphs(node) for n in g.free_names()]
            captured = list(dict.fromkeys(n for n in captured if n in location))
            ins = tuple(slot_on(n, device) if n else -1 for n in list(node.inputs) + captured)
            consume = consuming(kernel)
            if captured:
                kernel = _with_outer(kernel, len(node.inputs), captured)
                consume = None
            outs = tuple(new_slot(n, device) if n else -1 for n in node.outputs)
            for n in node.outputs:
                if n:
                    location[n] = device
            if self.strict:
                kernel = _checked(kernel, ctx)
                consume = None if consume is None else (consume[0], _checked(consume[1], ctx))
            steps.append(Step(kernel, ins, outs, (), node, device, consume=consume))
        # a device that can read several tensors back at once gets the outputs in one step (one GPU submit)
        batched: dict[str, list[str]] = {}
        for n in dict.fromkeys(output_names):
            src = location.get(n, HOST)
            if src != HOST and n not in on_device and (n, HOST) not in slots and initial[slots[(n, src)]] is None \
                    and by_name[src].batched_downloads:
                batched.setdefault(src, []).append(n)
        for src, names in batched.items():
            if len(names) > 1:
                ins = tuple(slots[(n, src)] for n in names)
                outs = tuple(new_slot(n, HOST) for n in names)
                node = Node("Transfer", names, names, {"from": src, "to": HOST}, name=f"{src}->{HOST}:outputs")
                steps.append(Step(_batch_downloader(by_name[src]), ins, outs, (), node, src, is_async=True))
        output_slots = [slot_on(n, on_device.get(n, HOST)) for n in output_names]
        _assign_frees(steps, initial, set(output_slots))
        cache = _shape_cache(steps, initial, input_names, types, set(output_slots), self.registry, self.opsets)
        return Plan(steps, slot_names, initial, list(input_names), input_slots, list(output_names),
                    output_slots, types, placement, cache)

    def compile_subgraph(self, graph: Graph, outer: GraphTypes, in_types: list[Type | None] | None = None,
                         constants: Mapping[str, Tensor] | None = None) -> "SubPlan":
        """A subgraph (If branch, Loop/Scan body) as a callable plan on the host, optimized as the main
        graph is (for the options' level), on a copy: each set of input types gets its own rewrite.

        Outer `constants` the subgraph reads become its own initializers, so its kernels are built
        knowing them (weights prepared once, shape arithmetic folded) instead of receiving them as
        captured values on every call.
        """
        inputs = {v.name: t for v, t in zip(graph.inputs, in_types)} if in_types is not None else None

        def infer(g: Graph, opsets: dict[str, int]) -> GraphTypes:
            return infer_graph(g, opsets, self.registry, inputs, outer, self.strict)

        level = getattr(self.options, "graph_optimization_level", 0)
        graph = graph.copy()
        graph.initializers.update((n, constants[n]) for n in graph.free_names() if constants and n in constants)
        host = [d for d in self.devices if d.name == HOST]
        graph, types, opsets = optimize(graph, level, self.opsets, self.registry, infer(graph, self.opsets),
                                        host[0].build, infer)
        captured = graph.free_names()
        host_only = Planner(self.registry, opsets, host, self.run, self.options, self.strict)
        plan = host_only.compile(graph, types, [v.name for v in graph.inputs] + captured)
        return SubPlan(plan, len(graph.inputs), captured, self.run)


@dataclass
class SubPlan:
    """A compiled subgraph: call with its formal inputs and the captured outer values; the executor runs it."""

    plan: Plan
    n_inputs: int
    captured: list[str]
    run: RunPlan

    def __call__(self, inputs: Sequence[Any], outer: dict[str, Any]) -> list[Any]:
        feeds = list(inputs) + [None] * (self.n_inputs - len(inputs)) + [outer.get(n) for n in self.captured]
        return self.run(self.plan, feeds)

    @property
    def output_types(self) -> list[Type | None]:
        return [self.plan.types.types.get(n) for n in self.plan.output_names]


def _downloader(device: Device) -> AsyncKernel:
    async def download(x: Any) -> tuple[Any]:
        return (await device.download(x),)

    return download


def _batch_downloader(device: Device) -> AsyncKernel:
    async def download(*xs: Any) -> list[Any]:
        return await device.download_many(xs)

    return download


def _transfer_node(name: str, src: str, dst: str) -> Node:
    return Node("Transfer", [name], [name], {"from": src, "to": dst}, name=f"{src}->{dst}:{name}")


def _with_outer(kernel: Kernel, n_inputs: int, captured: list[str]) -> Kernel:
    """Kernels of ops with subgraphs take the captured outer values as `outer=`."""

    def run(*args: Any) -> Any:
        return kernel(*args[:n_inputs], outer=dict(zip(captured, args[n_inputs:])))

    return run


def _const_value(graph: Graph, types: GraphTypes, name: str, overridable: set[str]) -> Any:
    if not name:
        return None
    if name in graph.initializers and name not in overridable:
        return graph.initializers[name].array
    v = types.values.get(name)
    return v if isinstance(v, np.ndarray) else None


_SHAPE_SOURCES = {("", "Shape"), ("", "Size")}
_TOKENS = re.compile(r"[\s()+\-*/,]+")
_FUNCTIONS = {"min"}


def _shape_cache(steps: list[Step], initial: list[Any], input_names: list[str], types: GraphTypes,
                 outputs: set[int], registry: Registry, opsets: dict[str, int]) -> ShapeCache | None:
    """Find the steps computing only from feed shapes (see ShapeCache); None if there are none.

    The feeds are the plan's inputs: for a subgraph, its formal inputs and the
    outer values it captures, whose dims (named in the enclosing scope) are
    as much part of the cache key as the graph inputs'.
    """
    feed_types = [types.types.get(n) for n in input_names]
    symbols = {d for t in feed_types if isinstance(t, TensorType) and t.shape for d in t.shape if isinstance(d, str)}

    def from_feed_dims(name: str) -> bool:
        t = types.types.get(name)
        if not isinstance(t, TensorType) or t.shape is None:
            return False
        return all(isinstance(d, int) or (isinstance(d, str) and all(
            tok.isdigit() or tok in symbols or tok in _FUNCTIONS for tok in _TOKENS.split(d) if tok))
            for d in t.shape)

    shape_slots: set[int] = set()
    shape_steps: list[Step] = []
    for step in steps:
        node = step.node
        if step.is_async or step.device != HOST or node_subgraphs(node) or any(o in outputs for o in step.outs):
            continue
        key = (node.domain, node.op_type)
        if key in _SHAPE_SOURCES:
            ok = bool(node.inputs) and from_feed_dims(node.inputs[0])
        else:
            opdef = registry.ops.get(key)
            ok = (opdef is not None and registry.lookup(node, opsets.get(node.domain, 0)).foldable
                  and all(i < 0 or i in shape_slots or initial[i] is not None for i in step.ins))
        if ok:
            shape_slots.update(o for o in step.outs if o >= 0)
            shape_steps.append(step)
    if not shape_steps:
        return None
    skipped = {id(s) for s in shape_steps}
    rest = [Step(s.fn, s.ins, s.outs, (), s.node, s.device, s.is_async, consume=s.consume)
            for s in steps if id(s) not in skipped]
    read = {i for s in rest for i in s.ins} | outputs
    boundary = sorted(shape_slots & read)
    for step in shape_steps:
        step.capture = any(o in read for o in step.outs)
    _assign_frees(rest, initial, outputs)
    return ShapeCache(rest, boundary)


def _assign_frees(steps: list[Step], initial: list[Any], keep: set[int]) -> None:
    """Record, on the step that reads a slot last, that the slot can be dropped.

    A step's consuming variant is dropped unless its input dies there.
    """
    last: dict[int, int] = {}
    for i, step in enumerate(steps):
        for s in step.ins:
            if s >= 0:
                last[s] = i
        for s in step.outs:
            if s >= 0 and s not in last:
                last[s] = i  # produced but never read: drop at once
    frees: dict[int, list[int]] = {}
    for s, i in last.items():
        if s not in keep and initial[s] is None:
            frees.setdefault(i, []).append(s)
    for i, fs in frees.items():
        steps[i].free = tuple(fs)
    for step in steps:
        c = step.consume
        if c is not None and not (c[0] < len(step.ins) and step.ins[c[0]] in step.free):
            step.consume = None


def _checked(kernel: Kernel, ctx: OpContext) -> Kernel:
    """Strict mode: compare every output with its inferred type (tests the shape rules)."""

    def run(*args: Any, **kw: Any) -> Any:
        res = kernel(*args, **kw)
        if hasattr(res, "__await__"):
            return res
        check_outputs(ctx, [_host_stub(r) for r in res])
        return res

    return run


def _host_stub(value: Any) -> Any:
    """A device tensor as a zero-cost numpy stand-in of its shape and dtype, for the strict checks."""
    if isinstance(value, np.ndarray) or not (hasattr(value, "shape") and hasattr(value, "dtype")):
        return value
    return np.broadcast_to(np.zeros((), value.dtype), value.shape)
