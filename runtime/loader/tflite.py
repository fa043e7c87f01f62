"""TFLite (LiteRT) flatbuffer bytes -> `ir.Model`, the same IR the ONNX reader produces.

Each builtin op maps onto ONNX ops of the same semantics, so shape
inference, passes, planning and both devices serve TFLite files unchanged.
TFLite is NHWC with OHWI conv weights: weights are converted to ONNX's
layouts once here; the layout-sensitive ops (conv, pool, resize,
depth-to-space) run in NCHW between a Transpose in and a Transpose out,
and the `layout` pass (runtime/passes/layout.py) cancels those pairs and
sinks the rest through elementwise ops, so they do not cost a copy per op.

Weights behind DEQUANTIZE (float16, int8) and DENSIFY (sparse) are
materialised at load.  Quantised (int8/uint8) activations are read through
DequantizeLinear and written through QuantizeLinear around a float op (the
QDQ form), per tensor or per channel as the file says.

Graph inputs and outputs keep the file's tensor names, NHWC shapes and types.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

import numpy as np

from .. import dtypes
from ..errors import ModelLoadError, UnsupportedOpError
from ..ir import Graph, Model, Node, Tensor, TensorType, ValueInfo
from . import tflite_schema as S
from .flatbuffer import Buffer, Table

#: The ONNX opset the translated graph is written against (ReduceMean's axes are an attribute there).
OPSET = 17
TO_NCHW, TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def is_tflite(data: bytes | bytearray | memoryview) -> bool:
    """Whether `data` is a TFLite flatbuffer: its file identifier (bytes 4..8) is 'TFL3'."""
    return len(data) >= 8 and bytes(data[4:8]) == S.FILE_IDENTIFIER


def read_tflite(data: bytes | bytearray | memoryview) -> Model:
    """Decode a `.tflite` file into a Model (its first subgraph is the graph run)."""
    buf = Buffer(data)
    if buf.size < 8:
        raise ModelLoadError(f"not a TFLite model: {buf.size} bytes is too short for a flatbuffer")
    root = buf.root("Model")
    subgraphs = root.tables(S.MODEL_SUBGRAPHS, "subgraphs")
    if not subgraphs:
        raise ModelLoadError("malformed TFLite model: it has no subgraph")
    graph = _Translator(buf, root, subgraphs[0]).graph()
    return Model(graph=graph, opsets={"": OPSET}, producer="TFLite",
                 producer_version=str(root.scalar(S.MODEL_VERSION, "I", 0)),
                 doc=root.string(S.MODEL_DESCRIPTION, "description"))


class _TensorInfo:
    """One TFLite tensor's declaration: name, type, shape, buffer, quantisation, sparsity."""

    def __init__(self, t: Table, index: int) -> None:
        self.index = index
        self.name = t.string(S.TENSOR_NAME, "name") or f"tensor_{index}"
        self.type = int(t.scalar(S.TENSOR_TYPE, "b", 0))
        self.shape = t.ints(S.TENSOR_SHAPE, "shape")
        self.buffer = int(t.scalar(S.TENSOR_BUFFER, "I", 0))
        q = t.table(S.TENSOR_QUANTIZATION, "quantization")
        scale = q.array(S.QUANT_SCALE, "f4", "scale") if q is not None else None
        self.scale = None if scale is None or scale.size == 0 else scale.astype(np.float32)
        zp = q.array(S.QUANT_ZERO_POINT, "i8", "zero_point") if q is not None else None
        self.zero_point = None if zp is None or zp.size == 0 else zp
        self.quant_axis = int(q.scalar(S.QUANT_DIMENSION, "i", 0)) if q is not None else 0
        self.sparsity = t.table(S.TENSOR_SPARSITY, "sparsity")
        if self.type not in S.TENSOR_TYPES:
            self.elem, self.np_dtype = None, None
        else:
            self.elem, code = S.TENSOR_TYPES[self.type]
            self.np_dtype = np.dtype(code)

    @property
    def quantized(self) -> bool:
        """An integer tensor holding quantised reals (it has scales)."""
        return self.scale is not None and self.type in (3, 7, 9)

    def describe(self) -> str:
        return f"'{self.name}' {S.TENSOR_TYPE_NAMES.get(self.type, self.type)}{self.shape}"


class _Translator:
    """Walks one subgraph's operators and emits the IR nodes for each."""

    def __init__(self, buf: Buffer, root: Table, sub: Table) -> None:
        self.buf = buf
        self.buffers = root.tables(S.MODEL_BUFFERS, "buffers")
        self.codes = root.tables(S.MODEL_OPERATOR_CODES, "operator_codes")
        self.tensors = [_TensorInfo(t, i) for i, t in enumerate(sub.tables(S.SUBGRAPH_TENSORS, "tensors"))]
        self.sub = sub
        self.nodes: list[Node] = []
        self.inits: dict[str, Tensor] = {}
        self.consts: dict[int, np.ndarray] = {}
        self._names: dict[int, str] = {}
        self._taken: set[str] = set()
        self._float: dict[int, str] = {}
        self._nchw: dict[int, str] = {}
        self._pending: list[Node] = []
        self.label = ""
        #: The first output tensor of the operator being translated: what its nodes are named after.
        self.base = ""

    # ------------------------------------------------------------ tensors

    def tensor(self, i: int) -> _TensorInfo:
        if not 0 <= i < len(self.tensors):
            raise ModelLoadError(f"malformed TFLite model: {self.label or 'subgraph'} refers to tensor {i} "
                                 f"of {len(self.tensors)}")
        return self.tensors[i]

    def name(self, i: int) -> str:
        """The IR value of tensor `i` as stored (its file name, made unique)."""
        if i not in self._names:
            self._names[i] = self.fresh(self.tensor(i).name)
        return self._names[i]

    def fresh(self, base: str) -> str:
        """`base`, or `base_1`, `base_2`, ...: a value name not used yet."""
        name, k = base, 0
        while name in self._taken:
            k += 1
            name = f"{base}_{k}"
        self._taken.add(name)
        return name

    def const(self, i: int) -> np.ndarray | None:
        """Tensor `i`'s stored value (raw, not dequantised), or None when it is computed at run time."""
        if i in self.consts:
            return self.consts[i]
        t = self.tensor(i)
        if t.buffer == 0:
            return None
        if t.buffer >= len(self.buffers):
            raise ModelLoadError(f"malformed TFLite model: tensor {t.describe()} refers to buffer {t.buffer} "
                                 f"of {len(self.buffers)}")
        b = self.buffers[t.buffer]
        raw = b.bytes(S.BUFFER_DATA, "data")
        if raw is None or len(raw) == 0:
            offset, size = int(b.scalar(S.BUFFER_OFFSET, "Q", 0)), int(b.scalar(S.BUFFER_SIZE, "Q", 0))
            if offset <= 1:
                return None
            self.buf.check(offset, size, f"buffer {t.buffer} of tensor {t.describe()}")
            raw = memoryview(self.buf.data)[offset:offset + size]
        if t.np_dtype is None:
            raise UnsupportedOpError(f"tensor {t.describe()}: element type not supported")
        if t.sparsity is not None:
            arr = self._densify(t, np.frombuffer(raw, t.np_dtype.newbyteorder("<")))
        else:
            count = int(np.prod(t.shape)) if t.shape else 1
            if len(raw) != count * t.np_dtype.itemsize:
                raise ModelLoadError(f"malformed TFLite model: tensor {t.describe()} has {len(raw)} bytes of data, "
                                     f"expected {count * t.np_dtype.itemsize}")
            arr = np.frombuffer(raw, t.np_dtype.newbyteorder("<")).reshape(t.shape)
        self.consts[i] = arr
        return arr

    def const_float(self, i: int) -> np.ndarray | None:
        """Tensor `i`'s stored value as float32 reals (quantised values dequantised), or None."""
        arr = self.const(i)
        if arr is None:
            return None
        t = self.tensor(i)
        if t.scale is not None and arr.dtype.kind in "iu":
            return _dequantize(arr, t).astype(np.float32)
        return arr.astype(np.float32) if arr.dtype == np.float16 else arr

    def required_const(self, i: int, what: str) -> np.ndarray:
        arr = self.const(i)
        if arr is None:
            raise UnsupportedOpError(f"{self.label}: {what} (tensor {self.tensor(i).describe()}) must be a constant")
        return arr

    def add_init(self, base: str, value: np.ndarray | np.generic) -> str:
        name = self.fresh(base)
        arr = np.asarray(value)
        arr = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)  # (which would make a scalar 1-D)
        self.inits[name] = Tensor(arr, dtypes.from_numpy(arr.dtype))
        return name

    def fval(self, i: int) -> str:
        """Tensor `i` as a float (or plain integer) IR value: quantised tensors go through DequantizeLinear."""
        if i in self._float:
            return self._float[i]
        t = self.tensor(i)
        c = self.const_float(i)
        if c is not None:
            name = self.add_init(t.name, c)
        elif t.quantized:
            name = self.fresh(f"{t.name}_dequantized")
            scale, zp = self._qparams(t)
            self.nodes.append(Node("DequantizeLinear", [self.name(i), scale, zp], [name],
                                   self._qaxis(t), name=name))
        else:
            name = self.name(i)
        self._float[i] = name
        return name

    def fout(self, i: int) -> str:
        """Where an op writes tensor `i`'s reals: the tensor itself, or a temporary QuantizeLinear reads."""
        t = self.tensor(i)
        if not t.quantized:
            self._float[i] = self.name(i)
            return self.name(i)
        # Readers dequantize the stored integers (fval), so they see the rounding and saturation LiteRT does.
        tmp = self.fresh(f"{t.name}_float")
        scale, zp = self._qparams(t)
        self._pending.append(Node("QuantizeLinear", [tmp, scale, zp], [self.name(i)], self._qaxis(t),
                                  name=f"{t.name}_quantize"))
        return tmp

    def _qparams(self, t: _TensorInfo) -> tuple[str, str]:
        assert t.scale is not None and t.np_dtype is not None
        zp = t.zero_point if t.zero_point is not None else np.zeros(t.scale.shape, np.int64)
        scale = t.scale if t.scale.size > 1 else t.scale.reshape(())
        zp = zp.astype(t.np_dtype) if zp.size > 1 else zp.reshape(()).astype(t.np_dtype)
        return self.add_init(f"{t.name}_scale", scale), self.add_init(f"{t.name}_zero_point", zp)

    @staticmethod
    def _qaxis(t: _TensorInfo) -> dict[str, Any]:
        return {"axis": t.quant_axis} if t.scale is not None and t.scale.size > 1 else {}

    def nchw(self, i: int) -> str:
        """Tensor `i` (rank 4, NHWC) transposed to NCHW, once per tensor."""
        if i not in self._nchw:
            if len(self.tensor(i).shape) != 4:
                raise ModelLoadError(f"{self.label}: input {self.tensor(i).describe()} must have rank 4 (NHWC)")
            self._nchw[i] = self.emit("Transpose", [self.fval(i)], perm=TO_NCHW, base=f"{self.tensor(i).name}_nchw")
        return self._nchw[i]

    def emit(self, op: str, inputs: list[str], out: str | None = None, base: str = "", **attrs: Any) -> str:
        """Append one node; returns its output (a fresh name unless `out` is given)."""
        out = out or self.fresh(base or f"{self.base}/{op}")
        self.nodes.append(Node(op, inputs, [out], attrs, name=out))
        return out

    def activation(self, y: str, code: int, out: str | None = None) -> str:
        """A fused activation (`code`: ActivationFunctionType) applied to `y`, written to `out`."""
        if code == 0:
            return self.emit("Identity", [y], out) if out else y
        if code == 1:
            return self.emit("Relu", [y], out)
        if code in (2, 3):
            lo, hi = (-1.0, 1.0) if code == 2 else (0.0, 6.0)
            return self.emit("Clip", [y, self.add_init("clip_min", np.float32(lo)),
                                      self.add_init("clip_max", np.float32(hi))], out)
        if code == 4:
            return self.emit("Tanh", [y], out)
        raise UnsupportedOpError(f"{self.label}: fused activation {S.ACTIVATIONS.get(code, code)} is not supported")

    def emit_act(self, op: str, inputs: list[str], i: int, act: int, **attrs: Any) -> None:
        """`op` then fused activation `act`, written to tensor `i` (no Identity when there is none)."""
        if act == 0:
            self.emit(op, inputs, self.fout(i), **attrs)
        else:
            self.activation(self.emit(op, inputs, **attrs), act, self.fout(i))

    def to_nhwc(self, y: str, i: int, act: int = 0) -> None:
        """Write NCHW result `y` (after fused activation `act`) to NHWC tensor `i`."""
        self.emit("Transpose", [self.activation(y, act)], self.fout(i), perm=TO_NHWC)

    # ------------------------------------------------------------ graph

    def graph(self) -> Graph:
        sub = self.sub
        inputs = sub.ints(S.SUBGRAPH_INPUTS, "inputs")
        outputs = sub.ints(S.SUBGRAPH_OUTPUTS, "outputs")
        for i in inputs + outputs:
            self.name(i)  # the interface keeps the file's names: claimed before any helper value is named
        for k, op in enumerate(sub.tables(S.SUBGRAPH_OPERATORS, "operators")):
            self.operator(k, op)
        return Graph(self.nodes, [self._info(i) for i in inputs], [self._info(i) for i in outputs],
                     self.inits, name=sub.string(S.SUBGRAPH_NAME, "name") or "main")

    def _info(self, i: int) -> ValueInfo:
        t = self.tensor(i)
        if t.elem is None:
            raise UnsupportedOpError(f"graph tensor {t.describe()}: element type not supported")
        return ValueInfo(self.name(i), TensorType(t.elem, tuple(d if d >= 0 else None for d in t.shape)))

    def operator(self, k: int, op: Table) -> None:
        idx = int(op.scalar(S.OPERATOR_OPCODE, "I", 0))
        if not 0 <= idx < len(self.codes):
            raise ModelLoadError(f"malformed TFLite model: operator {k} uses opcode {idx} of {len(self.codes)}")
        code = self.codes[idx]
        builtin = max(int(code.scalar(S.OPCODE_BUILTIN, "i", 0)), int(code.scalar(S.OPCODE_DEPRECATED_BUILTIN, "b", 0)))
        ins = op.ints(S.OPERATOR_INPUTS, "inputs")
        outs = op.ints(S.OPERATOR_OUTPUTS, "outputs")
        first = self.tensor(outs[0]).name if outs else str(k)
        if builtin == S.CUSTOM:
            custom = code.string(S.OPCODE_CUSTOM, "custom_code")
            self.label = f"TFLite custom op {custom} (operator {k}, output '{first}')"
            rule = CUSTOM_OPS.get(custom)
            if rule is None:
                raise UnsupportedOpError(f"{self.label}: custom op '{custom}' is not supported "
                                         f"(supported custom ops: {', '.join(sorted(CUSTOM_OPS))})")
            opts: Any = op.bytes(S.OPERATOR_CUSTOM_OPTIONS, "custom_options")
        else:
            name = S.BUILTIN_NAMES.get(builtin, f"builtin {builtin}")
            self.label = f"TFLite {name} (operator {k}, output '{first}')"
            rule = BUILTIN_OPS.get(name)
            if rule is None:
                shapes = ", ".join(self.tensor(i).describe() for i in ins if i >= 0)
                raise UnsupportedOpError(f"{self.label}: op {name} is not supported (inputs: {shapes})")
            opts = op.table(S.OPERATOR_OPTIONS, "builtin_options")
        if not outs:
            raise ModelLoadError(f"malformed TFLite model: {self.label} has no outputs")
        self.base = first
        try:
            rule(self, ins, outs, opts)
        except IndexError:
            raise ModelLoadError(f"malformed TFLite model: {self.label} has too few inputs ({len(ins)})") from None
        self.nodes.extend(self._pending)
        self._pending.clear()

    # ------------------------------------------------------------ sparse weights

    def _densify(self, t: _TensorInfo, values: np.ndarray) -> np.ndarray:
        """Expand a sparse (TACO-format) constant to its dense shape, as TFLite's FormatConverter does."""
        sp = t.sparsity
        assert sp is not None
        order = sp.ints(S.SPARSITY_TRAVERSAL_ORDER, "traversal_order")
        block_map = sp.ints(S.SPARSITY_BLOCK_MAP, "block_map")
        metas = sp.tables(S.SPARSITY_DIM_METADATA, "dim_metadata")
        rank = len(t.shape)
        dense_bytes = int(np.prod(t.shape, dtype=np.float64)) * values.dtype.itemsize
        if any(d < 0 for d in t.shape) or dense_bytes > max(64 * self.buf.size, 1 << 20):
            raise ModelLoadError(f"malformed TFLite model: sparse tensor {t.describe()} would densify to "
                                 f"{dense_bytes} bytes, more than 64x the {self.buf.size}-byte file")
        if len(order) != len(metas) or len(order) < rank or sorted(order) != list(range(len(order))):
            raise ModelLoadError(f"malformed TFLite model: tensor {t.describe()} has inconsistent sparsity metadata")
        block_sizes = []
        for m in metas[rank:]:
            block_sizes.append(int(m.scalar(S.DIM_DENSE_SIZE, "i", 0)))
        #: per traversal level: the (expanded) dimension it walks, and its dense size or CSR segments/indices
        dims: list[int] = []
        levels: list[tuple[int, np.ndarray | None, np.ndarray | None]] = []
        for level, m in enumerate(metas):
            fmt = int(m.scalar(S.DIM_FORMAT, "b", 0))
            if fmt == S.DIM_DENSE:
                levels.append((int(m.scalar(S.DIM_DENSE_SIZE, "i", 0)), None, None))
            else:
                levels.append((0, _index_vector(m, S.DIM_SEGMENTS_TYPE, S.DIM_SEGMENTS, t),
                               _index_vector(m, S.DIM_INDICES_TYPE, S.DIM_INDICES, t)))
            dims.append(order[level])
        # Walk the levels: each stored value's coordinate per level so far, and its position at this level.
        coords = np.zeros((1, 0), np.int64)
        parents = np.zeros(1, np.int64)
        for size, seg, ind in levels:
            if seg is None or ind is None:
                if size < 0 or len(parents) * size > dense_bytes:
                    raise ModelLoadError(f"malformed TFLite model: tensor {t.describe()} dense level of size {size}")
                child = np.arange(size, dtype=np.int64)
                coords = np.concatenate([np.repeat(coords, size, 0), np.tile(child, len(coords))[:, None]], 1)
                parents = (np.repeat(parents, size) * size + np.tile(child, len(parents)))
            else:
                if parents.size and (parents.max() + 1 >= seg.size):
                    raise ModelLoadError(f"malformed TFLite model: tensor {t.describe()} sparse segments too short")
                starts, ends = seg[parents], seg[parents + 1]
                counts = ends - starts
                if (counts < 0).any() or (ends.max(initial=0) > ind.size):
                    raise ModelLoadError(f"malformed TFLite model: tensor {t.describe()} sparse segments out of range")
                pos = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if counts.sum() else \
                    np.zeros(0, np.int64)
                coords = np.concatenate([np.repeat(coords, counts, 0), ind[pos][:, None].astype(np.int64)], 1)
                parents = pos.astype(np.int64)
        if len(coords) != values.size:
            raise ModelLoadError(f"malformed TFLite model: tensor {t.describe()} has {values.size} sparse values "
                                 f"for {len(coords)} positions")
        # Back to dense coordinates: original dim d = order[level]; block levels add block offsets.
        dense = np.zeros(t.shape, values.dtype)
        full = np.zeros((len(coords), rank), np.int64)
        for level, d in enumerate(dims):
            if d < rank:
                block = block_map.index(d) if d in block_map else None
                scale = block_sizes[block] if block is not None else 1
                full[:, d] += coords[:, level] * scale
            else:
                full[:, block_map[d - rank]] += coords[:, level]
        if (full >= np.array(t.shape)).any():
            raise ModelLoadError(f"malformed TFLite model: tensor {t.describe()} sparse index out of range")
        dense[tuple(full.T)] = values
        return dense


def _index_vector(m: Table, type_slot: int, slot: int, t: _TensorInfo) -> np.ndarray:
    kind = int(m.scalar(type_slot, "B", 0))
    if kind not in S.SPARSE_INDEX_DTYPES:
        raise ModelLoadError(f"malformed TFLite model: tensor {t.describe()} sparse index vector type {kind}")
    inner = m.table(slot, "sparse index vector")
    arr = inner.array(0, S.SPARSE_INDEX_DTYPES[kind], "values") if inner is not None else None
    if arr is None:
        raise ModelLoadError(f"malformed TFLite model: tensor {t.describe()} sparse index vector is missing")
    return arr.astype(np.int64)


def _dequantize(q: np.ndarray, t: _TensorInfo) -> np.ndarray:
    """Reals of quantised constant `q`: (q - zero_point) * scale, per channel along its quantised axis."""
    assert t.scale is not None
    zp = t.zero_point if t.zero_point is not None else np.zeros(1, np.int64)
    shape = [1] * q.ndim
    if t.scale.size > 1:
        if not 0 <= t.quant_axis < q.ndim or q.shape[t.quant_axis] != t.scale.size:
            raise ModelLoadError(f"malformed TFLite model: tensor {t.describe()} has {t.scale.size} scales "
                                 f"for axis {t.quant_axis}")
        shape[t.quant_axis] = t.scale.size
    scale = t.scale.reshape(shape) if t.scale.size > 1 else t.scale.reshape(())
    zp = zp.reshape(shape) if zp.size > 1 else zp.reshape(())
    return (q.astype(np.float64) - zp) * scale


# ---------------------------------------------------------------- op rules

Rule = Callable[[_Translator, list[int], list[int], Any], None]
BUILTIN_OPS: dict[str, Rule] = {}
CUSTOM_OPS: dict[str, Rule] = {}


def builtin(*names: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        for n in names:
            BUILTIN_OPS[n] = fn
        return fn
    return register


def _opt(opts: Table | None, slot: int, fmt: str, default: Any = 0) -> Any:
    return opts.scalar(slot, fmt, default) if opts is not None else default


def _same_pads(tr: _Translator, x: int, kernel: list[int], strides: list[int], dilations: list[int],
               padding: int) -> dict[str, Any]:
    """TFLite SAME/VALID padding as explicit ONNX pads (TF puts the odd pixel at the end)."""
    if padding == S.PADDING_VALID:
        return {"pads": [0, 0, 0, 0]}
    if padding != S.PADDING_SAME:
        raise ModelLoadError(f"{tr.label}: unknown padding {padding}")
    spatial = tr.tensor(x).shape[1:3]
    if any(d < 0 for d in spatial):
        return {"auto_pad": "SAME_UPPER"}
    begin, end = [], []
    for n, k, s, d in zip(spatial, kernel, strides, dilations):
        out = -(-n // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return {"pads": begin + end}


@builtin("CONV_2D")
def _conv(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    w = tr.const_float(ins[1])
    if w is None or w.ndim != 4:
        raise UnsupportedOpError(f"{tr.label}: weights must be a constant OHWI tensor")
    strides = [int(_opt(o, 2, "i", 1)), int(_opt(o, 1, "i", 1))]
    dil = [int(_opt(o, 5, "i", 1)), int(_opt(o, 4, "i", 1))]
    cin = tr.tensor(ins[0]).shape[3]
    group = cin // w.shape[3] if w.shape[3] and cin > 0 and cin % w.shape[3] == 0 else 1
    args = [tr.nchw(ins[0]), tr.add_init(f"{tr.tensor(ins[1]).name}_oihw", w.transpose(0, 3, 1, 2))]
    if len(ins) > 2 and ins[2] >= 0:
        args.append(tr.fval(ins[2]))
    y = tr.emit("Conv", args, kernel_shape=list(w.shape[1:3]), strides=strides, dilations=dil, group=group,
                **_same_pads(tr, ins[0], list(w.shape[1:3]), strides, dil, int(_opt(o, 0, "b", 0))))
    tr.to_nhwc(y, outs[0], int(_opt(o, 3, "b", 0)))


@builtin("DEPTHWISE_CONV_2D")
def _depthwise(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    w = tr.const_float(ins[1])
    if w is None or w.ndim != 4 or w.shape[0] != 1:
        raise UnsupportedOpError(f"{tr.label}: weights must be a constant [1,H,W,C*M] tensor")
    cin = tr.tensor(ins[0]).shape[3]
    if cin <= 0 or w.shape[3] % cin:
        raise ModelLoadError(f"{tr.label}: {w.shape[3]} output channels is not a multiple of {cin} input channels")
    strides = [int(_opt(o, 2, "i", 1)), int(_opt(o, 1, "i", 1))]
    dil = [int(_opt(o, 6, "i", 1)), int(_opt(o, 5, "i", 1))]
    args = [tr.nchw(ins[0]), tr.add_init(f"{tr.tensor(ins[1]).name}_oihw", w[0].transpose(2, 0, 1)[:, None])]
    if len(ins) > 2 and ins[2] >= 0:
        args.append(tr.fval(ins[2]))
    y = tr.emit("Conv", args, kernel_shape=list(w.shape[1:3]), strides=strides, dilations=dil, group=cin,
                **_same_pads(tr, ins[0], list(w.shape[1:3]), strides, dil, int(_opt(o, 0, "b", 0))))
    tr.to_nhwc(y, outs[0], int(_opt(o, 4, "b", 0)))


def _transpose_conv(tr: _Translator, x: int, w_index: int, bias: int, out: int, strides: list[int],
                    padding: int, act: int) -> None:
    """ConvTranspose from NHWC `x` and OHWI weights to `out`, sized by `out`'s declared shape."""
    w = tr.const_float(w_index)
    if w is None or w.ndim != 4:
        raise UnsupportedOpError(f"{tr.label}: weights must be a constant OHWI tensor")
    in_hw, out_hw = tr.tensor(x).shape[1:3], tr.tensor(out).shape[1:3]
    if any(d < 0 for d in [*in_hw, *out_hw]):
        raise UnsupportedOpError(f"{tr.label}: dynamic spatial sizes are not supported")
    begin, end, extra = [], [], []
    for n, m, k, s in zip(in_hw, out_hw, w.shape[1:3], strides):
        total = (n - 1) * s + k - m
        before = max(total, 0) // 2 if padding == S.PADDING_SAME else 0
        after = total - before
        extra.append(max(-after, 0))
        begin.append(before)
        end.append(max(after, 0))
    args = [tr.nchw(x), tr.add_init(f"{tr.tensor(w_index).name}_iohw", w.transpose(3, 0, 1, 2))]
    if bias >= 0:
        args.append(tr.fval(bias))
    y = tr.emit("ConvTranspose", args, kernel_shape=list(w.shape[1:3]), strides=strides, pads=begin + end,
                output_padding=extra)
    tr.to_nhwc(y, out, act)


@builtin("TRANSPOSE_CONV")
def _tconv(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    strides = [int(_opt(o, 2, "i", 1)), int(_opt(o, 1, "i", 1))]
    bias = ins[3] if len(ins) > 3 else -1
    _transpose_conv(tr, ins[2], ins[1], bias, outs[0], strides, int(_opt(o, 0, "b", 0)), int(_opt(o, 3, "b", 0)))


def _custom_transpose_conv_bias(tr: _Translator, ins: list[int], outs: list[int], opts: Any) -> None:
    """MediaPipe's Convolution2DTransposeBias: options are a TfLiteTransposeConvParams struct
    (padding: 1 SAME / 2 VALID, stride_width, stride_height as int32)."""
    if opts is None or len(opts) < 12 or len(ins) < 3:
        raise ModelLoadError(f"{tr.label}: needs 3 inputs and 12 bytes of options")
    padding, sw, sh = struct.unpack_from("<iii", bytes(opts[:12]))
    if padding not in (1, 2) or sw < 1 or sh < 1:
        raise ModelLoadError(f"{tr.label}: bad options padding={padding} strides=({sh}, {sw})")
    _transpose_conv(tr, ins[0], ins[1], ins[2], outs[0], [sh, sw],
                    S.PADDING_SAME if padding == 1 else S.PADDING_VALID, 0)


CUSTOM_OPS["Convolution2DTransposeBias"] = _custom_transpose_conv_bias


@builtin("MAX_POOL_2D", "AVERAGE_POOL_2D")
def _pool(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    strides = [int(_opt(o, 2, "i", 1)), int(_opt(o, 1, "i", 1))]
    kernel = [int(_opt(o, 4, "i", 1)), int(_opt(o, 3, "i", 1))]
    op = "MaxPool" if tr.label.startswith("TFLite MAX_POOL") else "AveragePool"
    if kernel == tr.tensor(ins[0]).shape[1:3] and tr.tensor(outs[0]).shape[1:3] == [1, 1]:
        # One window over the whole image (squeeze-excite blocks): a mean/max over H and W, which the
        # layout pass keeps in NCHW and the devices run as a reduction instead of a 16k-tap window.
        reduce = "ReduceMax" if op == "MaxPool" else "ReduceMean"
        tr.emit_act(reduce, [tr.fval(ins[0])], outs[0], int(_opt(o, 5, "b", 0)), axes=[1, 2], keepdims=1)
        return
    y = tr.emit(op, [tr.nchw(ins[0])], kernel_shape=kernel, strides=strides,
                **_same_pads(tr, ins[0], kernel, strides, [1, 1], int(_opt(o, 0, "b", 0))))
    tr.to_nhwc(y, outs[0], int(_opt(o, 5, "b", 0)))


@builtin("FULLY_CONNECTED")
def _fc(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    if int(_opt(o, 1, "b", 0)) != 0:
        raise UnsupportedOpError(f"{tr.label}: shuffled weights format is not supported")
    w_shape = tr.tensor(ins[1]).shape
    if len(w_shape) != 2:
        raise ModelLoadError(f"{tr.label}: weights {tr.tensor(ins[1]).describe()} must be [units, depth]")
    x = tr.fval(ins[0])
    if len(tr.tensor(ins[0]).shape) != 2:
        x = tr.emit("Reshape", [x, tr.add_init("fc_shape", np.array([-1, w_shape[1]], np.int64))])
    args = [x, tr.fval(ins[1])]
    if len(ins) > 2 and ins[2] >= 0:
        args.append(tr.fval(ins[2]))
    out_shape = tr.tensor(outs[0]).shape
    if len(out_shape) == 2:
        tr.emit_act("Gemm", args, outs[0], int(_opt(o, 0, "b", 0)), transB=1)
        return
    y = tr.activation(tr.emit("Gemm", args, transB=1), int(_opt(o, 0, "b", 0)))
    tr.emit("Reshape", [y, tr.add_init("fc_out_shape", np.array(out_shape, np.int64))], tr.fout(outs[0]))


def _binary(onnx_op: str, act_slot: int | None = 0) -> Rule:
    def rule(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
        act = int(_opt(o, act_slot, "b", 0)) if act_slot is not None else 0
        tr.emit_act(onnx_op, [tr.fval(ins[0]), tr.fval(ins[1])], outs[0], act)
    return rule


for _name, _onnx, _slot in (("ADD", "Add", 0), ("MUL", "Mul", 0), ("SUB", "Sub", 0), ("DIV", "Div", 0),
                            ("MAXIMUM", "Max", None), ("MINIMUM", "Min", None), ("POW", "Pow", None)):
    BUILTIN_OPS[_name] = _binary(_onnx, _slot)


def _unary(onnx_op: str, **attrs: Any) -> Rule:
    def rule(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
        tr.emit(onnx_op, [tr.fval(ins[0])], tr.fout(outs[0]), **attrs)
    return rule


for _name, _onnx in (("LOGISTIC", "Sigmoid"), ("HARD_SWISH", "HardSwish"), ("RELU", "Relu"), ("TANH", "Tanh"),
                     ("EXP", "Exp"), ("SQRT", "Sqrt"), ("ABS", "Abs"), ("NEG", "Neg"), ("FLOOR", "Floor"),
                     ("CEIL", "Ceil"), ("LOG", "Log"), ("SIN", "Sin"), ("COS", "Cos"), ("ELU", "Elu"),
                     ("GELU", "Gelu")):
    BUILTIN_OPS[_name] = _unary(_onnx)


@builtin("RELU6", "RELU_N1_TO_1")
def _relu_n(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    tr.activation(tr.fval(ins[0]), 3 if tr.label.startswith("TFLite RELU6") else 2, tr.fout(outs[0]))


@builtin("RSQRT")
def _rsqrt(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    tr.emit("Reciprocal", [tr.emit("Sqrt", [tr.fval(ins[0])])], tr.fout(outs[0]))


@builtin("SQUARED_DIFFERENCE")
def _sqdiff(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    d = tr.emit("Sub", [tr.fval(ins[0]), tr.fval(ins[1])])
    tr.emit("Mul", [d, d], tr.fout(outs[0]))


@builtin("LEAKY_RELU")
def _leaky(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    tr.emit("LeakyRelu", [tr.fval(ins[0])], tr.fout(outs[0]), alpha=float(_opt(o, 0, "f", 0.0)))


@builtin("PRELU")
def _prelu(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    tr.emit("PRelu", [tr.fval(ins[0]), tr.fval(ins[1])], tr.fout(outs[0]))


@builtin("SOFTMAX")
def _softmax(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    x = tr.fval(ins[0])
    beta = float(_opt(o, 0, "f", 1.0))
    if beta != 1.0:
        x = tr.emit("Mul", [x, tr.add_init("softmax_beta", np.float32(beta))])
    tr.emit("Softmax", [x], tr.fout(outs[0]), axis=-1)


@builtin("DEQUANTIZE", "QUANTIZE", "DENSIFY")
def _requantize(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    """Constant inputs (float16/int8/sparse weights) become float32 constants at load; a run-time input
    is read as reals (DequantizeLinear when quantised) and written as the output tensor stores them."""
    c = tr.const_float(ins[0])
    out = tr.tensor(outs[0])
    if c is not None and not out.quantized:
        tr.consts[outs[0]] = c
        return
    tr.emit("Identity", [tr.fval(ins[0])], tr.fout(outs[0]))


@builtin("PAD", "PADV2")
def _pad(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    pads = tr.required_const(ins[1], "paddings").astype(np.int64).reshape(-1, 2)
    args = [tr.fval(ins[0]), tr.add_init("pads", np.concatenate([pads[:, 0], pads[:, 1]]))]
    if len(ins) > 2 and ins[2] >= 0:
        args.append(tr.fval(ins[2]))
    tr.emit("Pad", args, tr.fout(outs[0]), mode="constant")


@builtin("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD")
def _reduce(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    axes = [int(a) for a in tr.required_const(ins[1], "axes").reshape(-1)]
    keep = int(bool(_opt(o, 0, "?", False)))
    op = {"MEAN": "ReduceMean", "SUM": "ReduceSum", "REDUCE_MAX": "ReduceMax", "REDUCE_MIN": "ReduceMin",
          "REDUCE_PROD": "ReduceProd"}[tr.label.split()[1]]
    if op == "ReduceSum":
        tr.emit(op, [tr.fval(ins[0]), tr.add_init("axes", np.array(axes, np.int64))], tr.fout(outs[0]),
                keepdims=keep)
    else:
        tr.emit(op, [tr.fval(ins[0])], tr.fout(outs[0]), axes=axes, keepdims=keep)


@builtin("RESHAPE")
def _reshape(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    out_shape = tr.tensor(outs[0]).shape
    shape = tr.const(ins[1]) if len(ins) > 1 and ins[1] >= 0 else None
    if out_shape and all(d >= 0 for d in out_shape) or (not out_shape and shape is None):
        target = np.array(out_shape, np.int64)
    elif shape is not None:
        target = shape.astype(np.int64).reshape(-1)
    else:
        target = np.array(o.ints(0, "new_shape") if o is not None else out_shape, np.int64)
    tr.emit("Reshape", [tr.fval(ins[0]), tr.add_init("shape", target)], tr.fout(outs[0]))


@builtin("SQUEEZE")
def _squeeze(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    _reshape(tr, ins[:1], outs, None)


@builtin("EXPAND_DIMS")
def _expand_dims(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    _reshape(tr, ins[:1], outs, None)


@builtin("CONCATENATION")
def _concat(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    axis = int(_opt(o, 0, "i", 0))
    rank = len(tr.tensor(outs[0]).shape)
    tr.emit_act("Concat", [tr.fval(i) for i in ins], outs[0], int(_opt(o, 1, "b", 0)),
                axis=axis + rank if axis < 0 else axis)


@builtin("TRANSPOSE")
def _transpose(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    perm = [int(p) for p in tr.required_const(ins[1], "perm").reshape(-1)]
    tr.emit("Transpose", [tr.fval(ins[0])], tr.fout(outs[0]), perm=perm)


@builtin("STRIDED_SLICE")
def _strided_slice(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    begin = [int(v) for v in tr.required_const(ins[1], "begin").reshape(-1)]
    end = [int(v) for v in tr.required_const(ins[2], "end").reshape(-1)]
    strides = [int(v) for v in tr.required_const(ins[3], "strides").reshape(-1)] if len(ins) > 3 else [1] * len(begin)
    bmask, emask, ellipsis, newax, shrink = (int(_opt(o, s, "i", 0)) for s in range(5))
    if ellipsis or newax:
        raise UnsupportedOpError(f"{tr.label}: ellipsis_mask/new_axis_mask are not supported")
    offset = bool(_opt(o, 5, "?", False))
    big = np.iinfo(np.int64).max
    starts, ends = [], []
    for a, (b, e, s) in enumerate(zip(begin, end, strides)):
        if offset:
            e = b + e
        if bmask >> a & 1:
            b = 0 if s > 0 else -1
        if shrink >> a & 1:
            e, s = (b + 1 if b != -1 else big), 1
            strides[a] = 1
        elif emask >> a & 1:
            e = big if s > 0 else -big
        starts.append(b)
        ends.append(e)
    args = [tr.fval(ins[0]), tr.add_init("starts", np.array(starts, np.int64)),
            tr.add_init("ends", np.array(ends, np.int64)), tr.add_init("axes", np.arange(len(starts), dtype=np.int64)),
            tr.add_init("steps", np.array(strides, np.int64))]
    if not shrink:
        tr.emit("Slice", args, tr.fout(outs[0]))
        return
    axes = [a for a in range(len(starts)) if shrink >> a & 1]
    tr.emit("Squeeze", [tr.emit("Slice", args), tr.add_init("squeeze_axes", np.array(axes, np.int64))],
            tr.fout(outs[0]))


@builtin("SLICE")
def _slice(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    begin = tr.required_const(ins[1], "begin").astype(np.int64).reshape(-1)
    size = tr.required_const(ins[2], "size").astype(np.int64).reshape(-1)
    ends = np.where(size < 0, np.iinfo(np.int64).max, begin + size)
    tr.emit("Slice", [tr.fval(ins[0]), tr.add_init("starts", begin), tr.add_init("ends", ends)], tr.fout(outs[0]))


@builtin("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR")
def _resize(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    size = [int(v) for v in tr.required_const(ins[1], "size").reshape(-1)]
    shape = tr.tensor(ins[0]).shape
    bilinear = tr.label.startswith("TFLite RESIZE_BILINEAR")
    align, half = (bool(_opt(o, 2, "?", False)), bool(_opt(o, 3, "?", False))) if bilinear else \
        (bool(_opt(o, 0, "?", False)), bool(_opt(o, 1, "?", False)))
    coord = "align_corners" if align else "half_pixel" if half else "asymmetric"
    attrs: dict[str, Any] = {"mode": "linear" if bilinear else "nearest", "coordinate_transformation_mode": coord}
    if not bilinear:
        # TF rounds align_corners coordinates half up, floors the others; half_pixel + round-half-up
        # is TF's floor((x + 0.5) * in / out).
        attrs["nearest_mode"] = "round_prefer_ceil" if align or half else "floor"
    sizes = tr.add_init("sizes", np.array([shape[0], shape[3], *size], np.int64))
    y = tr.emit("Resize", [tr.nchw(ins[0]), "", "", sizes], **attrs)
    tr.to_nhwc(y, outs[0])


@builtin("DEPTH_TO_SPACE", "SPACE_TO_DEPTH")
def _depth_space(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    op = "DepthToSpace" if tr.label.startswith("TFLite DEPTH_TO") else "SpaceToDepth"
    extra = {"mode": "DCR"} if op == "DepthToSpace" else {}
    y = tr.emit(op, [tr.nchw(ins[0])], blocksize=int(_opt(o, 0, "i", 1)), **extra)
    tr.to_nhwc(y, outs[0])


@builtin("GATHER")
def _gather(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    if int(_opt(o, 1, "i", 0)):
        raise UnsupportedOpError(f"{tr.label}: batch_dims is not supported")
    tr.emit("Gather", [tr.fval(ins[0]), tr.fval(ins[1])], tr.fout(outs[0]), axis=int(_opt(o, 0, "i", 0)))


@builtin("PACK")
def _pack(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    axis = int(_opt(o, 1, "i", 0))
    rank = len(tr.tensor(outs[0]).shape)
    axis = axis + rank if axis < 0 else axis
    ax = tr.add_init("pack_axis", np.array([axis], np.int64))
    parts = [tr.emit("Unsqueeze", [tr.fval(i), ax]) for i in ins]
    tr.emit("Concat", parts, tr.fout(outs[0]), axis=axis)


@builtin("ARG_MAX", "ARG_MIN")
def _arg(tr: _Translator, ins: list[int], outs: list[int], o: Table | None) -> None:
    axis = int(tr.required_const(ins[1], "axis").reshape(-1)[0])
    op = "ArgMax" if tr.label.startswith("TFLite ARG_MAX") else "ArgMin"
    y = tr.emit(op, [tr.fval(ins[0])], axis=axis, keepdims=0)
    out = tr.tensor(outs[0])
    tr.emit("Cast", [y], tr.fout(outs[0]), to=out.elem or dtypes.INT64)
