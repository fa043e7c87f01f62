"""`webinfer quantize`: smaller copies of a float32 ONNX model, written with numpy alone.

It runs wherever webinfer runs, the browser included (a page can shrink a dropped model and
offer the result for download), so it edits the file at the protobuf wire level
(loader/writer.py): untouched fields are copied byte for byte and only the weights it
replaces, and the nodes that read them, are re-encoded.  Modes:

- `int8`: weight-only, per channel.  Each large float32 initializer becomes int8 plus a float32
  scale per output channel (symmetric, zero point 0) and a `DequantizeLinear` node that
  restores the original name, so every consumer is unchanged.  The channel axis is the output
  axis of the consumer (MatMul: last, Gemm: by transB, Conv: 0; else 0, a row of an embedding
  table).  Files below opset 13 get per-tensor scales (per-axis DequantizeLinear is opset 13).
- `int4`: the weights of MatMul nodes become onnxruntime's `MatMulNBits` (4-bit, blocks of
  `block_size` along K, asymmetric with packed uint8 zero points, as its MatMulNBitsQuantizer
  and transformers.js q4 files); other tensors stay float32.
- `fp16`: float16 storage.  Each large float32 initializer is stored as float16 (saturated to
  ±65504) and a `Cast` to float32 restores it, so the interface and all arithmetic stay float32
  (unlike onnxruntime's float16 converter, which also computes in float16); webinfer folds the
  Casts once at load.

Initializers under `MIN_ELEMENTS` values and 1-D ones (biases, norms) stay float32: they weigh little.

onnxruntime runs int8 files at its default optimization level with a rewrite of its own: it
fuses DequantizeLinear -> MatMul into a product that also quantizes the activations to 8 bits,
so its outputs differ from the file's exact meaning (which webinfer computes, and onnxruntime
too at ORT_ENABLE_BASIC) by about what dynamic quantization costs (cosine ~0.99 on MiniLM).
`compare` reports what the change costs: cosine of every output against the float32 model's,
and top-1 agreement for (batch, classes) outputs, on random inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import dtypes
from .errors import ModelLoadError
from .ir import Graph
from .loader import protobuf, writer
from .loader.model import read_model

MODES = ("int8", "int4", "fp16")
#: Initializers with fewer values stay float32.
MIN_ELEMENTS = 1024
MS = "com.microsoft"


@dataclass
class _Rewrite:
    """What the quantizer changes in the top-level graph."""

    drop: set[str] = field(default_factory=set)
    initializers: list[bytes] = field(default_factory=list)
    #: New nodes, placed before the graph's own (they read initializers only).
    nodes: list[bytes] = field(default_factory=list)
    #: Node index (file order) -> its replacement.
    replace: dict[int, bytes] = field(default_factory=dict)
    #: Opsets the new nodes need: domain -> minimum version.
    opsets: dict[str, int] = field(default_factory=dict)


class _Names:
    """Fresh value names that collide with none in the graph."""

    def __init__(self, graph: Graph):
        self.used = set(graph.initializers) | {v.name for v in graph.inputs} | {v.name for v in graph.outputs}
        for n in graph.nodes:
            self.used.update(n.inputs)
            self.used.update(n.outputs)

    def __call__(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            name, i = f"{base}_{i}", i + 1
        self.used.add(name)
        return name


def _consumers(graph: Graph) -> dict[str, list[tuple[int, int]]]:
    """Value name -> (node index, input position) of every reader in the top-level graph."""
    uses: dict[str, list[tuple[int, int]]] = {}
    for i, n in enumerate(graph.nodes):
        for j, name in enumerate(n.inputs):
            if name:
                uses.setdefault(name, []).append((i, j))
    return uses


def _nested_reads(graph: Graph) -> set[str]:
    """Names read inside the subgraphs (If branches, Loop/Scan bodies) of `graph`'s nodes, at any depth:
    an outer initializer they read must keep its name."""
    names: set[str] = set()
    for n in graph.nodes:
        for value in n.attrs.values():
            for g in value if isinstance(value, list) else [value]:
                if isinstance(g, Graph):
                    names.update(i for m in g.nodes for i in m.inputs)
                    names |= _nested_reads(g)
    return names


def _candidates(graph: Graph) -> list[str]:
    """Large float32 matrices (rank >= 2: weights and tables, not biases) that are not also
    (overridable) graph inputs."""
    inputs = {v.name for v in graph.inputs}
    return [name for name, t in graph.initializers.items()
            if t.elem == dtypes.FLOAT and t.array.ndim >= 2 and t.array.size >= MIN_ELEMENTS and name not in inputs]


def _channel_axis(graph: Graph, uses: list[tuple[int, int]], rank: int) -> int:
    """The output-channel axis of a weight for its consumers (0 when they disagree or are not products)."""
    axes = set()
    for i, j in uses:
        n = graph.nodes[i]
        if n.op_type == "MatMul" and j == 1 and not n.domain:
            axes.add(rank - 1)
        elif n.op_type == "Gemm" and j == 1 and not n.domain:
            axes.add(0 if n.attrs.get("transB", 0) else 1)
        else:
            axes.add(0)
    return axes.pop() if len(axes) == 1 else 0


def _int8(graph: Graph, opset: int, rw: _Rewrite, names: _Names) -> None:
    uses = _consumers(graph)
    per_axis = opset >= 13
    for name in _candidates(graph):
        w = graph.initializers[name].array.astype(np.float32, copy=False)
        axis = _channel_axis(graph, uses.get(name, []), w.ndim) if per_axis else None
        if axis is None:
            peak = np.abs(w).max(initial=0.0)
        else:
            peak = np.abs(w).max(axis=tuple(a for a in range(w.ndim) if a != axis), initial=0.0)
        scale = (np.where(peak > 0, peak, 1.0) / 127.0).astype(np.float32)
        shaped = scale if axis is None else scale.reshape([-1 if a == axis else 1 for a in range(w.ndim)])
        q = np.clip(np.rint(w / shaped), -127, 127).astype(np.int8)
        q_name, s_name = names(f"{name}_int8"), names(f"{name}_scale")
        rw.drop.add(name)
        rw.initializers += [writer.tensor(q_name, q, dtypes.INT8), writer.tensor(s_name, scale, dtypes.FLOAT)]
        attrs = {} if axis is None else {"axis": axis}
        rw.nodes.append(writer.node("DequantizeLinear", [q_name, s_name], [name], names(f"{name}_dequantize"),
                                    attrs=attrs))
    rw.opsets[""] = 10


def pack4(values: np.ndarray) -> np.ndarray:
    """Pairs of 4-bit values along the last axis (even length) packed low nibble first."""
    v = values.astype(np.uint8)
    return (v[..., 0::2] | (v[..., 1::2] << 4)).astype(np.uint8)


def quantize_blocks4(w: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """W [K, N] as MatMulNBits' (B [N, blocks, block/2] uint8, scales [N, blocks] float32,
    zero points [N, ceil(blocks/2)] uint8): asymmetric 4-bit blocks whose range includes 0."""
    k, n = w.shape
    blocks = -(-k // block)
    wt = np.zeros((n, blocks * block), np.float32)
    wt[:, :k] = w.T
    wb = wt.reshape(n, blocks, block)
    lo, hi = np.minimum(wb.min(axis=-1), 0.0), np.maximum(wb.max(axis=-1), 0.0)
    scale = ((hi - lo) / 15.0).astype(np.float32)
    scale[scale == 0] = 1.0
    zp = np.clip(np.rint(-lo / scale), 0, 15)
    q = np.clip(np.rint(wb / scale[..., None]) + zp[..., None], 0, 15)
    zp_even = np.zeros((n, blocks + blocks % 2), np.float32)
    zp_even[:, :blocks] = zp
    return pack4(q), scale, pack4(zp_even)


def _int4(graph: Graph, block: int, rw: _Rewrite, names: _Names) -> None:
    if block < 16 or block & (block - 1):
        raise ValueError(f"block_size must be a power of two >= 16, got {block}")
    uses = _consumers(graph)
    nested = _nested_reads(graph)
    for name in _candidates(graph):
        w = graph.initializers[name].array
        readers = uses.get(name, [])
        if w.ndim != 2 or not readers or name in nested or any(graph.nodes[i].op_type != "MatMul" or graph.nodes[i].domain or j != 1
                                             for i, j in readers):
            continue
        k, n = w.shape
        b, scales, zp = quantize_blocks4(w.astype(np.float32, copy=False), block)
        b_name, s_name, z_name = names(f"{name}_Q4"), names(f"{name}_scales"), names(f"{name}_zero_points")
        rw.drop.add(name)
        rw.initializers += [writer.tensor(b_name, b, dtypes.UINT8), writer.tensor(s_name, scales, dtypes.FLOAT),
                            writer.tensor(z_name, zp, dtypes.UINT8)]
        for i, _ in readers:
            mm = graph.nodes[i]
            rw.replace[i] = writer.node("MatMulNBits", [mm.inputs[0], b_name, s_name, z_name], mm.outputs,
                                        mm.name or names("MatMulNBits"), MS,
                                        {"K": k, "N": n, "bits": 4, "block_size": block})
        rw.opsets[MS] = 1


def _fp16(graph: Graph, rw: _Rewrite, names: _Names) -> None:
    for name in _candidates(graph):
        w = graph.initializers[name].array
        half = np.clip(w, -65504.0, 65504.0).astype(np.float16)
        h_name = names(f"{name}_fp16")
        rw.drop.add(name)
        rw.initializers.append(writer.tensor(h_name, half, dtypes.FLOAT16))
        rw.nodes.append(writer.node("Cast", [h_name], [name], names(f"{name}_cast"), attrs={"to": dtypes.FLOAT}))
    rw.opsets[""] = 6


def _name_of(msg: memoryview, name_field: int) -> str:
    for f, wire, value in protobuf.iter_fields(msg):
        if f == name_field and wire == protobuf.LEN:
            return bytes(value).decode()
    return ""


def _graph_bytes(buf: memoryview, rw: _Rewrite) -> bytes:
    """GraphProto with the rewrite applied: node (1), initializer (5) and input (11) fields edited."""
    out = bytearray()
    index = 0
    for f, wire, value in protobuf.iter_fields(buf):
        if f == 1 and wire == protobuf.LEN:
            if index == 0:
                out += b"".join(writer.len_field(1, n) for n in rw.nodes)
            out += writer.len_field(1, rw.replace[index]) if index in rw.replace else writer.raw_field(f, wire, value)
            index += 1
        elif f in (5, 11) and wire == protobuf.LEN and _name_of(value, 8 if f == 5 else 1) in rw.drop:
            continue
        else:
            out += writer.raw_field(f, wire, value)
    if index == 0:
        out += b"".join(writer.len_field(1, n) for n in rw.nodes)
    out += b"".join(writer.len_field(5, t) for t in rw.initializers)
    return bytes(out)


def _model_bytes(data: bytes, rw: _Rewrite) -> bytes:
    out = bytearray()
    needed = dict(rw.opsets)
    for f, wire, value in protobuf.iter_fields(memoryview(data)):
        if f == 7 and wire == protobuf.LEN:
            out += writer.len_field(7, _graph_bytes(value, rw))
            continue
        if f == 8 and wire == protobuf.LEN:
            fields = {g: v for g, _, v in protobuf.iter_fields(value)}
            domain = bytes(fields.get(1, b"")).decode()
            domain = "" if domain == "ai.onnx" else domain
            version = int(fields.get(2, 0))
            if domain in needed:
                if version < needed.pop(domain):
                    raise ModelLoadError(f"opset {version} of '{domain or 'ai.onnx'}' is too old for the nodes "
                                         "this mode adds")
        out += writer.raw_field(f, wire, value)
    for domain, version in needed.items():
        out += writer.len_field(8, writer.opset_id(domain, version))
    return bytes(out)


def quantize_model(data: bytes, mode: str, block_size: int = 32, changed: list[str] | None = None) -> bytes:
    """The bytes of `data`'s model with its weights in `mode` (see the module docstring); the
    names of the weights it rewrote are appended to `changed` when given."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    try:
        model = read_model(data)
    except ModelLoadError as e:
        if "external" not in str(e):
            raise
        raise ModelLoadError(f"webinfer quantize rewrites single-file models; this one keeps weights in external "
                             f"data files ({e})") from None
    names = _Names(model.graph)
    rw = _Rewrite()
    if mode == "int8":
        _int8(model.graph, model.opsets.get("", 1), rw, names)
    elif mode == "int4":
        _int4(model.graph, block_size, rw, names)
    else:
        _fp16(model.graph, rw, names)
    if changed is not None:
        changed.extend(sorted(rw.drop))
    return _model_bytes(bytes(data), rw)


# ------------------------------------------------------------ accuracy against float32

@dataclass
class Agreement:
    """How one output of the quantized model compares with the float32 model's."""

    name: str
    cosine_min: float
    cosine_mean: float
    #: Share of rows with the same argmax, for outputs shaped like a classifier's (batch, classes)
    #: and not named like an embedding or hidden state; else None.
    top1: float | None


def _classifier_like(name: str, value: np.ndarray) -> bool:
    lname = name.lower()
    return value.ndim == 2 and value.shape[1] > 1 and not any(w in lname for w in ("embed", "hidden", "state"))


def _feed(sess: Any, seed: int) -> dict[str, np.ndarray]:
    """bench.py's random inputs with unknown leading dims 2 and the others 16 (a short batch of
    short sequences); token type / segment ids are zeros, valid for every type vocabulary."""
    from .bench import random_feed

    inputs = sess.get_inputs()
    dims = {d: (2 if i == 0 else 16) for arg in inputs for i, d in enumerate(arg.shape or []) if isinstance(d, str)}
    feed = random_feed(inputs, dims, seed, default_dim=16)
    for name, value in feed.items():
        if "type" in name.lower() or "segment" in name.lower():
            feed[name] = np.zeros_like(value)
    return feed


def compare(reference: bytes, quantized: bytes, seeds: int = 3) -> list[Agreement]:
    """Each float output of `quantized` against `reference` (float32) on random inputs, in webinfer."""
    from .session import InferenceSession

    ref_sess, q_sess = InferenceSession(reference), InferenceSession(quantized)
    names = [o.name for o in ref_sess.get_outputs()]
    cos: dict[str, list[np.ndarray]] = {n: [] for n in names}
    top: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for seed in range(seeds):
        feed = _feed(ref_sess, seed)
        for name, a, b in zip(names, ref_sess.run(None, feed), q_sess.run(None, feed)):
            a, b = np.asarray(a), np.asarray(b)
            if a.dtype.kind != "f" or not a.size:
                continue
            width = a.shape[-1] if a.ndim and a.shape[-1] > 1 else a[:1].size if a.ndim else 1
            rows_a = a.reshape(-1, width).astype(np.float64)
            rows_b = b.reshape(rows_a.shape).astype(np.float64)
            norms = np.linalg.norm(rows_a, axis=1) * np.linalg.norm(rows_b, axis=1)
            cos[name].append(np.where(norms > 0, (rows_a * rows_b).sum(1) / np.where(norms > 0, norms, 1), 1.0))
            if _classifier_like(name, a):
                top[name].append(a.argmax(1) == b.argmax(1))
    return [Agreement(n, float(np.concatenate(cos[n]).min()), float(np.concatenate(cos[n]).mean()),
                      float(np.concatenate(top[n]).mean()) if top[n] else None)
            for n in names if cos[n]]


def describe_size(before: int, after: int) -> str:
    """`90.4 MB -> 23.0 MB (25% of the original)`."""
    return f"{before / 1e6:.1f} MB -> {after / 1e6:.1f} MB ({after / before:.0%} of the original)"
