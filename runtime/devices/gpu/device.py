"""The GPU device: tensors that stay on the GPU, a buffer pool, pipelines and dispatch.

Two backends implement `Backend` (the few WebGPU calls the runtime needs):
`native.py` through wgpu-py and, in the browser, WebGPU through Pyodide's
`js` module.  Everything above the backend -- tensors, the pool, pipeline
caching, uniforms, bind-group reuse, the kernels -- is shared, so the same
WGSL runs the same way in both places.

How a run flows:

- Weights are uploaded once at plan time; feeds are uploaded lazily when a
  kernel first binds them (a feed the GPU only reads the *values* of, such
  as a Reshape target, never becomes a buffer).
- Every kernel records its dispatches into the one open command encoder; the
  encoder is submitted when a result is read back (only requested outputs, or
  a value a CPU node needs) or when the run ends.
- Intermediate tensors come from a pool of buffers by size class and go back
  to it when the executor drops the last reference (CPython refcounting makes
  that deterministic).  Dispatches in one encoder execute in order, so a
  buffer freed by an earlier dispatch can be the output of a later one in the
  same encoder; only `queue.writeBuffer`, which runs *before* the pending
  encoder, must avoid buffers the pending encoder touches.
- Pipelines are cached by an explicit key (`program`): the WGSL file and
  entry point, the template values fixed for a node (dtype, activation,
  attributes) and, separately, those its builder derives from the input
  shapes (`by_shape`: collapsed rank, the vec4 choice of MatMul, which
  depends on N % 4...).  Shapes and strides themselves arrive as named
  uniforms (uniforms.py), so a shape change compiles a pipeline only where
  it changes a `by_shape` value: a MatMul going from N=8 to N=20 compiles
  nothing, from N=8 to N=13 it compiles its scalar-store variant once.  Each dispatch site keeps its
  own small uniform buffer (rewritten only when the shapes change) and its last
  bind group, so a steady-state run creates no GPU objects at all.
"""

from __future__ import annotations

import importlib.resources
import math
import struct
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from numpy.typing import DTypeLike

from ...errors import DeviceError
from ...ir import TensorType
from ...ops.registry import Kernel, OpContext, OpDef
from .uniforms import PARAM_SLOTS, Uniforms, declare

NAME = "webgpu"

#: Bytes of the per-dispatch uniform block (`P` in common.wgsl): 128 u32 slots.
UNIFORM_BYTES = PARAM_SLOTS * 4


class Unsupported(Exception):
    """Raised by a kernel builder that cannot take a node; the message is the reason recorded."""


# ------------------------------------------------------------------ dtypes

@dataclass(frozen=True)
class StorageType:
    """How a logical (numpy) dtype is held in a GPU buffer."""

    wgsl: str            # element type in WGSL: f32, i32, u32, f16
    storage: np.dtype    # numpy dtype of the buffer contents
    #: The value range survives the narrowing only after a check (int64 -> i32).
    narrowed: bool = False


_I32 = StorageType("i32", np.dtype(np.int32))
_U32 = StorageType("u32", np.dtype(np.uint32))

#: Logical dtype -> storage. WGSL has 32-bit integers only and no bool storage: int64 and
#: uint64 are narrowed (range-checked at upload), 8- and 16-bit integers widened (kernels
#: wrap what they store back to the logical width), bool is one u32 per element.
STORAGE: dict[np.dtype, StorageType] = {
    np.dtype(np.float32): StorageType("f32", np.dtype(np.float32)),
    np.dtype(np.int32): _I32, np.dtype(np.int16): _I32, np.dtype(np.int8): _I32,
    np.dtype(np.int64): StorageType("i32", np.dtype(np.int32), narrowed=True),
    np.dtype(np.uint32): _U32, np.dtype(np.uint16): _U32, np.dtype(np.uint8): _U32,
    np.dtype(np.uint64): StorageType("u32", np.dtype(np.uint32), narrowed=True),
    np.dtype(np.bool_): _U32,
}
F16 = StorageType("f16", np.dtype(np.float16))


def to_storage(array: np.ndarray, st: StorageType, what: str) -> np.ndarray:
    """`array` as the contiguous words a buffer holds (64-bit integers narrowed with a range check)."""
    if st.narrowed and array.size:
        info = np.iinfo(st.storage)
        lo, hi = int(array.min()), int(array.max())
        if lo < info.min or hi > info.max:
            raise DeviceError(f"{what}: {array.dtype} values in [{lo}, {hi}] do not fit the GPU's "
                              f"{st.storage} storage")
    return np.ascontiguousarray(array, dtype=st.storage)


# ------------------------------------------------------------------ backend

@dataclass(frozen=True)
class Limits:
    """The adapter limits kernels and the pool must respect."""

    max_storage_binding: int
    max_workgroups_per_dim: int
    max_workgroup_storage: int
    storage_offset_alignment: int
    max_storage_buffers: int


class Backend(ABC):
    """The WebGPU calls the runtime needs; `native.py` and `browser.py` implement it.

    Handles (buffers, pipelines, bind groups) are the backend's own objects;
    the device above only passes them back.  Commands are recorded into one
    open encoder until `submit`; `read` submits what is pending first.
    """

    #: Human-readable adapter description (vendor, device, backend).
    description: str
    #: True for CPU emulations (lavapipe, SwiftShader): kernels choose variants without shared memory.
    software: bool
    limits: Limits
    features: frozenset[str]
    #: Compiled pipelines by key, shared by every session on this backend.
    programs: dict[tuple, "Program"]
    #: Held from the start to the end of a run: sessions share the one open encoder.
    run_lock: threading.RLock

    @abstractmethod
    def create_buffer(self, size: int, uniform: bool = False) -> Any:
        """A buffer of `size` bytes: storage|copy_src|copy_dst, or uniform|copy_dst."""

    @abstractmethod
    def destroy_buffer(self, handle: Any) -> None:
        """Release a buffer now (the pool trims with it)."""

    @abstractmethod
    def write_buffer(self, handle: Any, offset: int, data: np.ndarray) -> None:
        """queue.writeBuffer: executes before any command not yet submitted."""

    @abstractmethod
    def compile(self, source: str, entry: str, label: str) -> Any:
        """A compute pipeline (auto layout) for `entry` in WGSL `source`; errors name `label`."""

    @abstractmethod
    def bind_group(self, pipeline: Any, entries: Sequence[tuple[Any, int, int]]) -> Any:
        """Bind group 0 of `pipeline`: (buffer, offset, size) for bindings 0 (the uniform block), 1, 2, ..."""

    @abstractmethod
    def dispatch(self, pipeline: Any, bind_group: Any, groups: tuple[int, int, int]) -> None:
        """Record one dispatch into the open encoder."""

    @abstractmethod
    def submit(self) -> None:
        """Submit the open encoder (a no-op when nothing is recorded)."""

    @abstractmethod
    async def read(self, ranges: Sequence[tuple[Any, int, int]]) -> Sequence[bytes | memoryview]:
        """Copy each (buffer, byte offset, size) range into one mappable buffer, submit everything pending
        with it, map it once and return the bytes of each range (sizes and offsets are multiples of 4)."""


def staging_layout(ranges: Sequence[tuple[Any, int, int]]) -> tuple[list[int], int, int]:
    """How `Backend.read` lays the (buffer, offset, size) ranges out in one staging buffer: each range's
    offset there (256-byte aligned), the bytes they span, and the staging buffer's size (a power of two,
    at least 256: the backends pool staging buffers by it)."""
    offsets, total = [], 0
    for _, _, size in ranges:
        offsets.append(total)
        total += -(-size // 256) * 256
    return offsets, total, max(256, 1 << (total - 1).bit_length())


# ------------------------------------------------------------------ buffers

class GpuBuffer:
    """A backend buffer plus what the pool and the hazard rules need to know."""

    __slots__ = ("handle", "size", "last_use", "__weakref__")

    def __init__(self, handle: Any, size: int):
        self.handle = handle
        self.size = size
        #: Serial of the last encoder that bound it (see GpuDevice.serial).
        self.last_use = -1


def size_class(nbytes: int) -> int:
    """Pool size class: multiples of 256 B up to 4 KiB, then 8 steps per power of two (<= 12.5% waste)."""
    n = max(256, nbytes)
    if n <= 4096:
        return -(-n // 256) * 256
    step = 1 << (n.bit_length() - 4)
    return -(-n // step) * step


class BufferPool:
    """Free buffers by size class; tensors give their buffer back when they die."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.free: dict[int, list[GpuBuffer]] = {}
        self.allocated_bytes = 0
        self.in_use_bytes = 0
        self.peak_in_use_bytes = 0
        self.created = 0

    def acquire(self, nbytes: int, not_after: int | None = None) -> GpuBuffer:
        """A buffer of at least `nbytes`; with `not_after`, one no command after that serial touches."""
        cls = size_class(nbytes)
        bucket = self.free.get(cls)
        buf = None
        if bucket:
            if not_after is None:
                buf = bucket.pop()
            else:
                for i in range(len(bucket) - 1, -1, -1):
                    if bucket[i].last_use <= not_after:
                        buf = bucket.pop(i)
                        break
        if buf is None:
            buf = GpuBuffer(self.backend.create_buffer(cls), cls)
            self.allocated_bytes += cls
            self.created += 1
        self.in_use_bytes += cls
        self.peak_in_use_bytes = max(self.peak_in_use_bytes, self.in_use_bytes)
        return buf

    def release(self, buf: GpuBuffer) -> None:
        self.in_use_bytes -= buf.size
        self.free.setdefault(buf.size, []).append(buf)

    def trim(self) -> int:
        """Destroy every free buffer; returns the bytes released."""
        freed = 0
        for bucket in self.free.values():
            for buf in bucket:
                self.backend.destroy_buffer(buf.handle)
                freed += buf.size
        self.free.clear()
        self.allocated_bytes -= freed
        return freed


class Storage:
    """The memory behind one or more tensors (views share it).

    A storage is host-backed (`host` set, no buffer yet) until a kernel binds
    it, pooled (returned to the pool when the last view dies), or dedicated
    (weights: kept for the session).
    """

    __slots__ = ("device", "buffer", "nbytes", "host", "pooled", "__weakref__")

    def __init__(self, device: "GpuDevice", buffer: GpuBuffer | None, nbytes: int, host: np.ndarray | None = None,
                 pooled: bool = True):
        self.device = device
        self.buffer = buffer
        self.nbytes = nbytes
        #: The values, flat, in the logical dtype, when they came from the host.
        self.host = host
        self.pooled = pooled

    def __del__(self) -> None:
        buf = self.buffer
        if buf is not None and self.pooled:
            try:
                self.device.pool.release(buf)
            except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to return it to
                pass


class GpuTensor:
    """A tensor on the GPU: storage, shape, logical dtype and an element offset.

    Reshape, Squeeze, Unsqueeze, Flatten and Identity return views: the same
    storage with another shape.
    """

    __slots__ = ("storage", "shape", "dtype", "offset")

    def __init__(self, storage: Storage, shape: tuple[int, ...], dtype: np.dtype, offset: int = 0):
        self.storage = storage
        self.shape = shape
        self.dtype = dtype
        self.offset = offset

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * storage_type(self.dtype, self.storage.device.f16).storage.itemsize

    @property
    def host(self) -> np.ndarray | None:
        """The values as a numpy array when they came from the host (no GPU round trip), else None."""
        h = self.storage.host
        if h is None:
            return None
        h = h[self.offset:self.offset + self.size].reshape(self.shape)
        return h if h.dtype == self.dtype else h.astype(self.dtype)  # a lossless Cast's view

    def view(self, shape: tuple[int, ...]) -> "GpuTensor":
        return GpuTensor(self.storage, tuple(shape), self.dtype, self.offset)

    def __repr__(self) -> str:
        where = "host-backed" if self.storage.buffer is None else "gpu"
        return f"GpuTensor({self.dtype}{list(self.shape)}, {where})"


def storage_type(dtype: np.dtype, f16: bool) -> StorageType:
    if dtype == np.float16 and f16:
        return F16
    st = STORAGE.get(np.dtype(dtype))
    if st is None:
        raise Unsupported(f"{np.dtype(dtype).name} tensors have no GPU storage type")
    return st


# ------------------------------------------------------------------ programs

_SOURCES: dict[str, str] = {}


def wgsl_source(name: str) -> str:
    """The text of `wgsl/<name>` (package `webinfer.wgsl`), read once."""
    text = _SOURCES.get(name)
    if text is None:
        text = importlib.resources.files("webinfer.wgsl").joinpath(name).read_text(encoding="utf-8")
        _SOURCES[name] = text
    return text


def render(name: str, values: dict[str, Any], includes: Sequence[str] = ()) -> str:
    """common.wgsl, then the `includes` (helpers shared by kernel files), then `name`, with every
    `{{KEY}}` replaced by its value.

    Plain string replacement (no template engine: this runs in Pyodide too);
    a placeholder left unreplaced is a bug and fails loudly here, not in the
    shader compiler.
    """
    text = "\n".join(wgsl_source(f) for f in ("common.wgsl", *includes, name))
    for k, v in values.items():
        text = text.replace("{{" + k + "}}", str(v))
    if "{{" in text:
        start = text.index("{{")
        raise RuntimeError(f"{name}: template value {text[start:text.index('}}', start) + 2]} was not provided")
    return text


@dataclass(frozen=True)
class Program:
    """A compiled pipeline and what it was compiled from: `key` is the whole cache key, `by_shape` the
    template values in it that the builder derived from input shapes (see `GpuDevice.program`)."""

    file: str
    entry: str
    key: tuple
    pipeline: Any
    workgroup: int
    by_shape: tuple[tuple[str, Any], ...] = ()


def pack_params(values: Sequence[int | float]) -> bytes:
    """Uniform words: Python ints as u32 (negatives as two's complement i32), floats as f32."""
    if len(values) > PARAM_SLOTS:
        raise RuntimeError(f"{len(values)} uniform words exceed the {PARAM_SLOTS} of the parameter block")
    fmt = "<" + "".join("f" if isinstance(v, float) else ("i" if v < 0 else "I") for v in values)
    return struct.pack(fmt, *values)


class Site:
    """One place a kernel dispatches from: its uniform buffer and its recent bind groups.

    Created when the node's kernel is built; at steady state (same shapes,
    the pool cycling through the same buffers) a dispatch writes nothing and
    creates nothing.  Several bind groups are kept because the pool's free
    lists need not come back in the same order every run: the buffers a site
    gets settle into a short cycle, not one fixed assignment.
    """

    __slots__ = ("label", "uniform", "params", "bind_groups", "used_serial")

    #: Bind groups kept per site (a few cycles of buffer assignments).
    KEEP = 8

    def __init__(self, label: str):
        self.label = label
        self.uniform: Any = None
        self.params: tuple = ()
        self.bind_groups: dict[tuple, Any] = {}
        self.used_serial = -1


# ------------------------------------------------------------------ device

@dataclass
class Fallback:
    """A node the GPU did not take, and why."""

    node: str
    op_type: str
    reason: str


@dataclass
class RunCounters:
    dispatches: int = 0
    readbacks: int = 0
    uploads: int = 0
    submits: int = 0


@dataclass(frozen=True)
class KernelSpec:
    """One op's GPU implementation (the rows of kernels.py's table)."""

    file: str
    entries: tuple[str, ...]
    build: Callable[[OpContext, "GpuDevice"], Kernel]
    #: Outputs are host-backed metadata (Shape, Size): not GPU-resident.
    host_outputs: bool = False


class GpuDevice:
    """The `webgpu` device (devices/protocol.py): the kernels of the table it is given, over a backend.

    The table (kernels.py's KERNELS, handed in by `open_device`) is not imported from here: the kernel
    modules build on this one."""

    name = NAME
    batched_downloads = True
    run_hooks = True

    def __init__(self, backend: Backend, kernels: Mapping[tuple[str, str], KernelSpec],
                 options: dict[str, Any] | None = None):
        self.backend = backend
        self.kernels = kernels
        self.options = dict(options or {})
        self.limits = backend.limits
        self.f16 = "shader-f16" in backend.features and bool(self.options.get("f16", True))
        #: "regblock" (no shared memory; fastest on CPU emulations), "tiled"/"tiled8" (shared-memory
        #: tiles of 64/128), or "auto" (tiled8 for products of at least 256x256, else tiled).
        self.matmul_variant = self.options.get("matmul_variant") or ("regblock" if backend.software else "auto")
        #: Integer-only nodes whose inputs are all on the host (shape arithmetic) stay on the CPU,
        #: unless the provider option `integer_ops` is "always".
        self.integer_ops = self.options.get("integer_ops", "resident")
        self.pool = BufferPool(backend)
        self.programs = backend.programs
        self.fallbacks: list[Fallback] = []
        self.serial = 0          # encoders submitted so far; the open one has this serial
        self.recorded = 0        # commands recorded into the open encoder
        self.generation = 0      # bumps when buffers are destroyed (bind groups go stale)
        self.total = RunCounters()
        self.last_run: RunCounters | None = None
        self._run_start: RunCounters | None = None
        #: Values produced on the GPU (kept in buffers), by name: decides integer-node placement.
        self.resident: set[str] = set()

    # ------------------------------------------------------------ planner protocol
    def build(self, opdef: OpDef, ctx: OpContext) -> Kernel | None:
        node = ctx.node
        spec = self.kernels.get((node.domain, node.op_type))
        if spec is None:
            self._reject(ctx, "no WGSL kernel for this op")
            return None
        try:
            self._check_types(ctx, spec.host_outputs)
            kernel = spec.build(ctx, self)
        except Unsupported as e:
            self._reject(ctx, str(e))
            return None
        if not spec.host_outputs:
            self.resident.update(o for o in node.outputs if o)
        return kernel

    def upload(self, value: Any) -> Any:
        """A host array as a GPU tensor.

        At plan time (constants) float weights get a dedicated buffer at once, so weights are
        uploaded when the session is created; everything else stays host-backed until a kernel
        binds it (then into a pooled buffer), so a value the GPU only needs the numbers of
        (shapes, axes, scales) never becomes a buffer.
        """
        if isinstance(value, GpuTensor):
            return value
        if not isinstance(value, np.ndarray):
            value = np.asarray(value)
        flat = value.reshape(-1)
        storage = Storage(self, None, 0, flat, pooled=False)
        t = GpuTensor(storage, tuple(value.shape), value.dtype)
        if self._run_start is None and value.dtype.kind == "f" and value.size \
                and np.dtype(value.dtype) in self._storable():
            self.materialize(t, dedicated=True)
        return t

    async def download(self, value: Any) -> Any:
        return (await self.download_many([value]))[0]

    async def download_many(self, values: Sequence[Any]) -> list[Any]:
        """Several tensors back as numpy arrays with one submit and one map (the planner batches a
        run's outputs); host-backed tensors come back without touching the GPU."""
        out: list[Any] = list(values)
        ranges, where = [], []
        for i, value in enumerate(values):
            if not isinstance(value, GpuTensor):
                continue
            host = value.host
            if host is not None:
                out[i] = host
                continue
            if value.size == 0:
                out[i] = np.zeros(value.shape, value.dtype)
                continue
            item = storage_type(value.dtype, self.f16).storage.itemsize
            start = value.offset * item
            begin = start - start % 4
            length = -(-(start + value.size * item - begin) // 4) * 4
            assert value.storage.buffer is not None
            ranges.append((value.storage.buffer.handle, begin, length))
            where.append((i, start - begin))
        if not ranges:
            return out
        self.total.readbacks += len(ranges)
        self._note_submit()
        datas = await self.backend.read(ranges)
        for (i, skip), data in zip(where, datas):
            value = values[i]
            st = storage_type(value.dtype, self.f16)
            arr = np.frombuffer(data, dtype=st.storage, count=value.size, offset=skip)
            arr = arr.astype(value.dtype) if st.storage != value.dtype else arr.copy()
            out[i] = arr.reshape(value.shape)
        return out

    # ------------------------------------------------------------ placement policy
    def _storable(self) -> set[np.dtype]:
        kinds = set(STORAGE)
        if self.f16:
            kinds.add(np.dtype(np.float16))
        return kinds

    def _check_types(self, ctx: OpContext, host_outputs: bool) -> None:
        """Every input and output must have a GPU storage type and constants must fit one storage binding;
        integer-only nodes fed from the host stay there (unless integer_ops="always")."""
        from ... import dtypes
        elems = []
        for i, t in enumerate(list(ctx.in_types) + list(ctx.out_types)):
            if t is None:
                continue
            if not isinstance(t, TensorType):
                raise Unsupported(f"{'input' if i < len(ctx.in_types) else 'output'} is a {type(t).__name__}, "
                                  "not a tensor")
            if t.elem is None:
                raise Unsupported("an input or output has an unknown element type")
            elems.append(t.elem)
        if host_outputs:
            return
        storable = self._storable()
        for e in elems:
            # bfloat16, float8, int4... are held in numpy as bit patterns of other types: not data the GPU can use
            if not dtypes.ELEM_TYPES[e].native or dtypes.storage_dtype(e) not in storable:
                raise Unsupported(f"{dtypes.type_name(e)} tensors have no GPU storage type")
        for i, v in enumerate(ctx.consts):
            if isinstance(v, np.ndarray):
                nbytes = v.size * (2 if v.dtype == np.float16 and self.f16 else 4)
                if nbytes > self.limits.max_storage_binding:
                    raise Unsupported(f"constant input {i} ('{ctx.node.inputs[i]}', {v.dtype}{list(v.shape)}, "
                                      f"{nbytes / 2**20:.0f} MiB) exceeds the adapter's max storage binding "
                                      f"({self.limits.max_storage_binding / 2**20:.0f} MiB)")
        if self.integer_ops == "always":
            return
        floats = any(dtypes.storage_dtype(e).kind == "f" for e in elems)
        on_gpu = any(n in self.resident for n in ctx.node.inputs if n)
        if not floats and not on_gpu:
            raise Unsupported("integer/bool-only node with its inputs on the host (shape arithmetic stays on cpu)")

    def _reject(self, ctx: OpContext, reason: str) -> None:
        node = ctx.node
        self.fallbacks.append(Fallback(node.name or node.outputs[0], node.op_type, reason))

    # ------------------------------------------------------------ tensors
    def empty(self, shape: Sequence[int], dtype: DTypeLike) -> GpuTensor:
        """A fresh pooled tensor (contents undefined) for a kernel's output; empty ones get a
        small buffer too, so kernels can bind them."""
        dtype = np.dtype(dtype)
        st = storage_type(dtype, self.f16)
        shape = tuple(int(d) for d in shape)
        nbytes = math.prod(shape) * st.storage.itemsize
        if nbytes > self.limits.max_storage_binding:
            raise DeviceError(f"a {dtype}{list(shape)} tensor ({nbytes / 2**20:.1f} MiB) exceeds the adapter's "
                              f"maximum storage binding of {self.limits.max_storage_binding / 2**20:.0f} MiB")
        return GpuTensor(Storage(self, self.pool.acquire(max(nbytes, 4)), nbytes), shape, dtype)

    def materialize(self, t: GpuTensor, dedicated: bool = False) -> GpuBuffer:
        """The buffer behind `t`, writing host-backed values into one first."""
        s = t.storage
        if s.buffer is not None:
            return s.buffer
        if s.host is None:
            raise DeviceError(f"tensor {t} has neither a buffer nor host values")
        st = storage_type(s.host.dtype, self.f16)
        data = to_storage(s.host, st, f"a {s.host.dtype}{list(t.shape)} tensor")
        nbytes = data.nbytes
        if nbytes > self.limits.max_storage_binding:
            raise DeviceError(f"a {s.host.dtype}{list(s.host.shape)} tensor ({nbytes / 2**20:.1f} MiB) exceeds the "
                              f"adapter's maximum storage binding of "
                              f"{self.limits.max_storage_binding / 2**20:.0f} MiB")
        if dedicated:
            size = max(16, -(-nbytes // 16) * 16)
            buf = GpuBuffer(self.backend.create_buffer(size), size)
        else:
            # writeBuffer runs before the pending encoder: never reuse a buffer that encoder touches
            buf = self.pool.acquire(max(nbytes, 4), not_after=self.serial - 1 if self.recorded else self.serial)
        s.pooled = not dedicated
        if nbytes % 4:
            data = np.concatenate([data.view(np.uint8), np.zeros(4 - nbytes % 4, np.uint8)])
        if nbytes:
            self.backend.write_buffer(buf.handle, 0, data)
        s.buffer = buf
        s.nbytes = nbytes
        self.total.uploads += 1
        return buf

    # ------------------------------------------------------------ programs and dispatch
    def program(self, file: str, entry: str, workgroup: int, includes: tuple[str, ...] = (), /, *,
                uniforms: Sequence[Uniforms] = (), by_shape: Mapping[str, Any] | None = None,
                **values: Any) -> Program:
        """The pipeline for `entry` of wgsl/`file` (after `includes`), cached by an explicit key.

        `values` are the template values fixed for the node (dtype, activation, attributes: a node
        compiles them once); `by_shape` are those the builder derives from its input shapes, the only
        ones through which a new shape can compile a pipeline.  `uniforms` are the named word layouts
        the file reads (uniforms.py), rendered at its `{{UNIFORMS}}`.
        """
        shape_values = tuple(sorted((by_shape or {}).items()))
        layouts = declare(*uniforms)
        key = (file, entry, workgroup, includes, layouts) + tuple(sorted(values.items())) + shape_values
        prog = self.programs.get(key)
        if prog is None:
            template = {"WG": workgroup, "ENABLE": "enable f16;" if self.f16 else "", **values, **dict(shape_values)}
            if uniforms:
                template["UNIFORMS"] = layouts
            source = render(file, template, includes)
            shown = sorted({**values, **dict(shape_values)}.items())
            label = f"{file}:{entry}[{', '.join(f'{k}={v}' for k, v in shown if len(str(v)) < 40)}]"
            prog = Program(file, entry, key, self.backend.compile(source, entry, label), workgroup, shape_values)
            self.programs[key] = prog
        return prog

    def dispatch(self, site: Site, prog: Program, tensors: Sequence[GpuTensor], params: Sequence[int | float],
                 groups: int | tuple[int, int, int]) -> None:
        """Record `prog` with uniform `params` (binding 0) over `tensors` (bindings 1..n, outputs last).

        `groups` is a workgroup count (spread over x and y past the per-dimension limit; kernels
        rebuild the linear index with `linear_id`) or an explicit (x, y, z).
        """
        if site.used_serial == self.serial and self.recorded:
            # the site's uniform is about to change under a dispatch still pending in this encoder
            self.flush()
        params = tuple(params)
        if site.uniform is None:
            site.uniform = GpuBuffer(self.backend.create_buffer(UNIFORM_BYTES, uniform=True), UNIFORM_BYTES)
        if params != site.params:
            self.backend.write_buffer(site.uniform.handle, 0, np.frombuffer(pack_params(params), np.uint8))
            site.params = params
        entries = [(site.uniform, 0, UNIFORM_BYTES)]
        align = self.limits.storage_offset_alignment
        for t in tensors:
            buf = t.storage.buffer if t.storage.buffer is not None else self.materialize(t)
            item = 4 if t.dtype != np.float16 else 2
            off = t.offset * item
            base = off - off % align
            if base != off:
                raise DeviceError(f"{site.label}: a view at byte offset {off} is not aligned to {align}; "
                                  "kernels bind views at aligned offsets only")
            buf.last_use = self.serial
            entries.append((buf, base, buf.size - base))
        key = (prog.key, self.generation) + tuple((id(b), o) for b, o, _ in entries)
        bind_group = site.bind_groups.get(key)
        if bind_group is None:
            if len(site.bind_groups) >= Site.KEEP:
                site.bind_groups.clear()
            bind_group = self.backend.bind_group(prog.pipeline, [(b.handle, o, s) for b, o, s in entries])
            site.bind_groups[key] = bind_group
        if isinstance(groups, int):
            groups = self.grid(groups)
        self.backend.dispatch(prog.pipeline, bind_group, groups)
        site.used_serial = self.serial
        self.recorded += 1
        self.total.dispatches += 1

    def grid(self, n_groups: int) -> tuple[int, int, int]:
        """`n_groups` workgroups as (x, y, 1) within the per-dimension limit."""
        cap = self.limits.max_workgroups_per_dim
        if n_groups <= cap:
            return (max(1, n_groups), 1, 1)
        y = -(-n_groups // cap)
        if y > cap:
            raise DeviceError(f"{n_groups} workgroups exceed the adapter's grid ({cap} x {cap})")
        return (cap, y, 1)

    def flush(self) -> None:
        """Submit the open encoder."""
        if self.recorded:
            self.backend.submit()
            self._note_submit()

    def _note_submit(self) -> None:
        """A submit happened (explicitly, or inside a readback): start a new encoder serial."""
        if self.recorded:
            self.total.submits += 1
        self.serial += 1
        self.recorded = 0

    # ------------------------------------------------------------ runs and stats
    def run_started(self) -> None:
        """A session run begins: take the backend (its encoder is shared) and start counting."""
        self.backend.run_lock.acquire()
        self._run_start = RunCounters(**vars(self.total))

    def run_finished(self) -> None:
        """Submit what is left (work whose results nobody reads), record this run's counters, release the backend.

        Called on failure too: whatever was recorded is submitted so the next run starts clean.
        """
        try:
            self.flush()
        finally:
            if self._run_start is not None:
                start = self._run_start
                self.last_run = RunCounters(**{k: getattr(self.total, k) - getattr(start, k) for k in vars(start)})
                self._run_start = None
                self.backend.run_lock.release()

    def fallback_reasons(self) -> dict[str, str]:
        return {f.node: f"{f.op_type}: {f.reason}" for f in self.fallbacks}

    def run_stats(self) -> dict[str, Any]:
        """The last run's dispatches, readbacks and submits (None before a run), and the adapter."""
        last = self.last_run
        return {"dispatches_per_run": None if last is None else last.dispatches,
                "readbacks_per_run": None if last is None else last.readbacks,
                "submits_per_run": None if last is None else last.submits,
                "adapter": self.backend.description}

    def trim(self) -> int:
        """Give the pool's free buffers back to the driver (bytes released); cached bind groups go stale."""
        self.generation += 1
        return self.pool.trim()
