"""ONNX ModelProto bytes -> `ir.Model`.

The message layouts below are the field numbers of onnx/onnx.proto3 (only
what inference needs).  Tensor payloads stay zero-copy views of the input
bytes where the stored layout allows it; external data (`.onnx.data` files)
is read from a base directory, refusing paths that escape it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from ..errors import ModelLoadError, ModelNotFoundError
from ..ir import (AttrRef, Function, Graph, MapType, Model, Node, OptionalType, SequenceType,
                  Tensor, TensorType, Type, ValueInfo)
from .. import dtypes
from .protobuf import Field, Schema, decode
from .tflite import is_tflite, read_tflite

# ----------------------------------------------------------------------- schemas
ENTRY: Schema = {1: Field("key", "str"), 2: Field("value", "str")}
OPSET: Schema = {1: Field("domain", "str"), 2: Field("version", "int")}
DIM: Schema = {1: Field("dim_value", "int"), 2: Field("dim_param", "str"), 3: Field("denotation", "str")}
SHAPE: Schema = {1: Field("dim", "message_list", DIM)}
TYPE: Schema = {}
TENSOR_TYPE: Schema = {1: Field("elem_type", "int"), 2: Field("shape", "message", SHAPE)}
ELEM_TYPE: Schema = {1: Field("elem_type", "message", TYPE)}
MAP_TYPE: Schema = {1: Field("key_type", "int"), 2: Field("value_type", "message", TYPE)}
TYPE.update({
    1: Field("tensor_type", "message", TENSOR_TYPE),
    4: Field("sequence_type", "message", ELEM_TYPE),
    5: Field("map_type", "message", MAP_TYPE),
    8: Field("sparse_tensor_type", "message", TENSOR_TYPE),
    9: Field("optional_type", "message", ELEM_TYPE),
})
VALUE_INFO: Schema = {1: Field("name", "str"), 2: Field("type", "message", TYPE), 3: Field("doc_string", "str")}
TENSOR: Schema = {
    1: Field("dims", "int_list"), 2: Field("data_type", "int"), 3: Field("segment", "bytes"),
    4: Field("float_data", "float_list"), 5: Field("int32_data", "int_list"),
    6: Field("string_data", "bytes_list"), 7: Field("int64_data", "int_list"), 8: Field("name", "str"),
    9: Field("raw_data", "bytes"), 10: Field("double_data", "double_list"),
    11: Field("uint64_data", "uint_list"), 13: Field("external_data", "message_list", ENTRY),
    14: Field("data_location", "int"),
}
SPARSE_TENSOR: Schema = {1: Field("values", "message", TENSOR), 2: Field("indices", "message", TENSOR),
                         3: Field("dims", "int_list")}
GRAPH: Schema = {}
ATTRIBUTE: Schema = {
    1: Field("name", "str"), 21: Field("ref_attr_name", "str"), 20: Field("type", "int"),
    2: Field("f", "float"), 3: Field("i", "int"), 4: Field("s", "bytes"), 5: Field("t", "message", TENSOR),
    6: Field("g", "message", GRAPH), 22: Field("sparse_tensor", "message", SPARSE_TENSOR),
    14: Field("tp", "message", TYPE), 7: Field("floats", "float_list"), 8: Field("ints", "int_list"),
    9: Field("strings", "bytes_list"), 10: Field("tensors", "message_list", TENSOR),
    11: Field("graphs", "message_list", GRAPH), 23: Field("sparse_tensors", "message_list", SPARSE_TENSOR),
    15: Field("type_protos", "message_list", TYPE),
}
NODE: Schema = {
    1: Field("input", "str_list"), 2: Field("output", "str_list"), 3: Field("name", "str"),
    4: Field("op_type", "str"), 7: Field("domain", "str"), 8: Field("overload", "str"),
    5: Field("attribute", "message_list", ATTRIBUTE),
}
GRAPH.update({
    1: Field("node", "message_list", NODE), 2: Field("name", "str"), 10: Field("doc_string", "str"),
    5: Field("initializer", "message_list", TENSOR), 15: Field("sparse_initializer", "message_list", SPARSE_TENSOR),
    11: Field("input", "message_list", VALUE_INFO), 12: Field("output", "message_list", VALUE_INFO),
    13: Field("value_info", "message_list", VALUE_INFO),
})
FUNCTION: Schema = {
    1: Field("name", "str"), 4: Field("input", "str_list"), 5: Field("output", "str_list"),
    6: Field("attribute", "str_list"), 11: Field("attribute_proto", "message_list", ATTRIBUTE),
    7: Field("node", "message_list", NODE), 9: Field("opset_import", "message_list", OPSET),
    10: Field("domain", "str"), 13: Field("overload", "str"),
}
MODEL: Schema = {
    1: Field("ir_version", "int"), 8: Field("opset_import", "message_list", OPSET),
    2: Field("producer_name", "str"), 3: Field("producer_version", "str"), 4: Field("domain", "str"),
    5: Field("model_version", "int"), 6: Field("doc_string", "str"), 7: Field("graph", "message", GRAPH),
    14: Field("metadata_props", "message_list", ENTRY), 25: Field("functions", "message_list", FUNCTION),
}

ATTR_FLOAT, ATTR_INT, ATTR_STRING, ATTR_TENSOR, ATTR_GRAPH = 1, 2, 3, 4, 5
ATTR_FLOATS, ATTR_INTS, ATTR_STRINGS, ATTR_TENSORS, ATTR_GRAPHS = 6, 7, 8, 9, 10
ATTR_SPARSE_TENSOR, ATTR_SPARSE_TENSORS, ATTR_TYPE_PROTO, ATTR_TYPE_PROTOS = 11, 12, 13, 14
_ATTR_NAMES = {ATTR_TENSOR: "TENSOR", ATTR_GRAPH: "GRAPH", ATTR_SPARSE_TENSOR: "SPARSE_TENSOR"}
#: Attribute kinds whose value is one message with no meaningful default.
_SINGLE_FIELD = {ATTR_TENSOR: "t", ATTR_GRAPH: "g", ATTR_SPARSE_TENSOR: "sparse_tensor"}
#: Densifying a sparse tensor allocates what its dims claim, not what the file
#: holds: refuse claims beyond this rather than exhaust memory.
MAX_SPARSE_DENSE_BYTES = 1 << 28


class _Reader:
    """Converts decoded messages to IR; holds where external data lives."""

    def __init__(self, base_dir: str | None):
        self.base_dir = base_dir

    # -------------------------------------------------------------- tensors
    def tensor(self, msg: dict[str, Any], what: str = "tensor") -> Tensor:
        name = msg.get("name", "") or what
        code = msg.get("data_type", 0)
        if code == dtypes.UNDEFINED:
            raise ModelLoadError(f"tensor '{name}' has no data_type")
        t = dtypes.elem_type(code)
        dims = msg["dims"]
        if any(d < 0 for d in dims):
            raise ModelLoadError(f"tensor '{name}' has negative dims {dims}")
        count = math.prod(dims)
        if msg.get("segment") is not None:
            raise ModelLoadError(f"tensor '{name}' is segmented, which ONNX inference does not use")
        raw: memoryview | bytes | np.ndarray | None
        if msg.get("data_location", 0) == 1:
            raw = self.external(msg, name)
        else:
            raw = msg.get("raw_data")
        try:
            arr = self._tensor_array(msg, t, count, raw, name)
        except ValueError as e:
            raise ModelLoadError(f"tensor '{name}' ({t.name}{list(dims)}): {e}") from None
        return Tensor(arr.reshape(dims), code)

    def _tensor_array(self, msg: dict[str, Any], t: dtypes.ElemType, count: int,
                      raw: memoryview | bytes | np.ndarray | None, name: str) -> np.ndarray:
        code = t.code
        if code == dtypes.STRING:
            data = msg["string_data"]
            if len(data) != count:
                raise ValueError(f"holds {len(data)} strings, shape needs {count}")
            arr = np.empty(count, dtype=object)
            arr[:] = [s.decode("utf-8", errors="surrogateescape") for s in data]
            return arr
        if raw is not None:
            if t.bits < 8:
                return dtypes.unpack_bits(np.frombuffer(raw, dtype=np.uint8), count, code)
            itemsize = t.storage.itemsize
            if len(raw) != count * itemsize:
                raise ValueError(f"raw_data has {len(raw)} bytes, shape needs {count * itemsize}")
            arr = np.frombuffer(raw, dtype=t.storage.newbyteorder("<"), count=count)
            if arr.ctypes.data % max(itemsize, 1):
                arr = arr.copy()  # BLAS and friends want aligned data
            return arr
        if code in (dtypes.FLOAT, dtypes.COMPLEX64):
            data = np.asarray(msg["float_data"], dtype=np.float32)
            if code == dtypes.COMPLEX64:
                data = data.view(np.complex64)
        elif code in (dtypes.DOUBLE, dtypes.COMPLEX128):
            data = np.asarray(msg["double_data"], dtype=np.float64)
            if code == dtypes.COMPLEX128:
                data = data.view(np.complex128)
        elif code == dtypes.INT64:
            data = np.asarray(msg["int64_data"], dtype=np.int64)
        elif code in (dtypes.UINT32, dtypes.UINT64):
            data = np.asarray(msg["uint64_data"], dtype=np.uint64).astype(t.storage)
        else:
            ints = np.asarray(msg["int32_data"], dtype=np.int64)
            if t.bits < 8:
                return dtypes.unpack_bits((ints & 0xFF).astype(np.uint8), count, code)
            if code in (dtypes.FLOAT16, dtypes.BFLOAT16, dtypes.UINT16, dtypes.INT16):
                data = (ints & 0xFFFF).astype(np.uint16).view(t.storage)
            elif t.storage.itemsize == 1:
                data = (ints & 0xFF).astype(np.uint8).view(t.storage)
                if code == dtypes.BOOL:
                    data = data != 0
            else:
                data = ints.astype(t.storage)
        if data.size != count:
            raise ValueError(f"holds {data.size} values, shape needs {count}")
        return data

    def external(self, msg: dict[str, Any], name: str) -> np.ndarray:
        info = {e.get("key"): e.get("value") for e in msg["external_data"]}
        location = info.get("location")
        if not location:
            raise ModelLoadError(f"tensor '{name}' uses external data but gives no location")
        if self.base_dir is None:
            raise ModelLoadError(
                f"tensor '{name}' keeps its data in external file '{location}', but the model was "
                "given as bytes: pass a path, or external_data_dir= to InferenceSession")
        base = os.path.realpath(self.base_dir)
        path = os.path.realpath(os.path.join(base, location))
        if os.path.commonpath([base, path]) != base:
            raise ModelLoadError(f"tensor '{name}': external data path '{location}' escapes the model directory")
        if not os.path.isfile(path):
            raise ModelLoadError(f"tensor '{name}': external data file '{path}' not found")
        offset = int(info.get("offset") or 0)
        size = os.path.getsize(path)
        length = int(info["length"]) if info.get("length") else size - offset
        if offset + length > size:
            raise ModelLoadError(
                f"tensor '{name}': external data [{offset}, {offset + length}) lies beyond the end "
                f"of '{location}' ({size} bytes)")
        if length == 0:
            return np.empty(0, dtype=np.uint8)
        return np.memmap(path, dtype=np.uint8, mode="r", offset=offset, shape=(length,))

    def sparse(self, msg: dict[str, Any]) -> Tensor:
        """Densify a SparseTensorProto (webinfer computes on dense tensors)."""
        if "values" not in msg:
            raise ModelLoadError(f"sparse tensor (dims {msg['dims']}) has no values")
        values = self.tensor(msg["values"], "sparse values")
        name = msg["values"].get("name", "") or "sparse tensor"
        dims = msg["dims"]
        nbytes = math.prod(dims) * values.array.dtype.itemsize
        if any(d < 0 for d in dims) or nbytes > MAX_SPARSE_DENSE_BYTES:
            raise ModelLoadError(f"sparse tensor '{name}': dims {dims} are negative or densify to more than "
                                 f"{MAX_SPARSE_DENSE_BYTES >> 20} MiB ({nbytes} bytes)")
        dense = np.zeros(dims, dtype=values.array.dtype)
        if "indices" in msg:
            idx = self.tensor(msg["indices"], "sparse indices").array.astype(np.int64)
            try:
                flat = idx if idx.ndim == 1 else np.ravel_multi_index(tuple(idx.T), dims)
                dense.reshape(-1)[flat] = values.array.reshape(-1)
            except (ValueError, IndexError) as e:
                raise ModelLoadError(f"sparse tensor '{name}' (dims {dims}): indices {list(idx.shape)} do not "
                                     f"fit its values {list(values.array.shape)}: {e}") from None
        return Tensor(dense, values.elem)

    # ---------------------------------------------------------------- types
    def type(self, msg: dict[str, Any] | None) -> Type | None:
        if not msg:
            return None
        if "tensor_type" in msg or "sparse_tensor_type" in msg:
            tt = msg["tensor_type"] if "tensor_type" in msg else msg["sparse_tensor_type"]
            elem = tt.get("elem_type") or None
            if elem is not None:
                dtypes.elem_type(elem)  # an unknown code is a load error here, not a KeyError later
            shape_msg = tt.get("shape")
            shape = None
            if shape_msg is not None:
                shape = tuple(_dim(d) for d in shape_msg["dim"])
            return TensorType(elem, shape)
        if "sequence_type" in msg:
            return SequenceType(self.type(msg["sequence_type"].get("elem_type")))
        if "optional_type" in msg:
            return OptionalType(self.type(msg["optional_type"].get("elem_type")))
        if "map_type" in msg:
            m = msg["map_type"]
            return MapType(m.get("key_type", 0), self.type(m.get("value_type")))
        return None

    def value_info(self, msg: dict[str, Any]) -> ValueInfo:
        name = msg.get("name", "")
        t = msg.get("type")
        try:
            return ValueInfo(name, self.type(t), msg.get("doc_string", ""), _denotations(t))
        except ModelLoadError as e:
            raise ModelLoadError(f"value '{name}': {e}") from None

    # ------------------------------------------------------------ attributes
    def attribute(self, msg: dict[str, Any], node: str) -> Any:
        name = msg.get("name", "")
        if msg.get("ref_attr_name"):
            return AttrRef(msg["ref_attr_name"])
        kind = msg.get("type", 0)
        if kind == 0:  # old writers omit the type: infer it from the field present
            kind = next((k for k, f in ((ATTR_FLOAT, "f"), (ATTR_INT, "i"), (ATTR_STRING, "s"),
                                         (ATTR_TENSOR, "t"), (ATTR_GRAPH, "g")) if f in msg), 0)
            kind = kind or next((k for k, f in ((ATTR_FLOATS, "floats"), (ATTR_INTS, "ints"),
                                                (ATTR_STRINGS, "strings"), (ATTR_TENSORS, "tensors"),
                                                (ATTR_GRAPHS, "graphs")) if msg[f]), 0)
        if kind == ATTR_FLOAT:
            return float(msg.get("f", 0.0))
        if kind == ATTR_INT:
            return int(msg.get("i", 0))
        if kind == ATTR_STRING:
            return bytes(msg.get("s", b"")).decode("utf-8", errors="surrogateescape")
        if kind in _SINGLE_FIELD and _SINGLE_FIELD[kind] not in msg:
            raise ModelLoadError(f"node '{node}': attribute '{name}' is declared {_ATTR_NAMES[kind]} "
                                 f"but holds no {_ATTR_NAMES[kind].lower()}")
        if kind == ATTR_TENSOR:
            return self.tensor(msg["t"], f"attribute {name}")
        if kind == ATTR_GRAPH:
            return self.graph(msg["g"])
        if kind == ATTR_SPARSE_TENSOR:
            return self.sparse(msg["sparse_tensor"])
        if kind == ATTR_TYPE_PROTO:
            return self.type(msg.get("tp"))
        if kind == ATTR_FLOATS:
            return [float(v) for v in msg["floats"]]
        if kind == ATTR_INTS:
            return list(msg["ints"])
        if kind == ATTR_STRINGS:
            return [s.decode("utf-8", errors="surrogateescape") for s in msg["strings"]]
        if kind == ATTR_TENSORS:
            return [self.tensor(t, f"attribute {name}") for t in msg["tensors"]]
        if kind == ATTR_GRAPHS:
            return [self.graph(g) for g in msg["graphs"]]
        if kind == ATTR_SPARSE_TENSORS:
            return [self.sparse(t) for t in msg["sparse_tensors"]]
        if kind == ATTR_TYPE_PROTOS:
            return [self.type(t) for t in msg["type_protos"]]
        raise ModelLoadError(f"node '{node}': attribute '{name}' has unknown type {kind}")

    def node(self, msg: dict[str, Any]) -> Node:
        name = msg.get("name", "")
        op_type = msg.get("op_type", "")
        if not op_type:
            raise ModelLoadError(f"node '{name or msg['output']}' has no op_type")
        attrs = {}
        for a in msg["attribute"]:
            attrs[a.get("name", "")] = self.attribute(a, name or op_type)
        domain = msg.get("domain", "")
        return Node(op_type, list(msg["input"]), list(msg["output"]), attrs, name,
                    "" if domain == "ai.onnx" else domain)

    def graph(self, msg: dict[str, Any]) -> Graph:
        inits: dict[str, Tensor] = {}
        for t in msg["initializer"]:
            self._add_initializer(inits, t.get("name", ""), self.tensor(t))
        for s in msg["sparse_initializer"]:
            self._add_initializer(inits, s.get("values", {}).get("name", ""), self.sparse(s))
        return Graph(
            nodes=[self.node(n) for n in msg["node"]],
            inputs=[self.value_info(v) for v in msg["input"]],
            outputs=[self.value_info(v) for v in msg["output"]],
            initializers=inits,
            value_info={v.get("name", ""): self.value_info(v) for v in msg["value_info"]},
            name=msg.get("name", ""),
            doc=msg.get("doc_string", ""),
        )

    @staticmethod
    def _add_initializer(inits: dict[str, Tensor], name: str, tensor: Tensor) -> None:
        """Two initializers of one name would leave which one wins to file order."""
        if name in inits:
            raise ModelLoadError(f"initializer '{name}' is defined twice")
        inits[name] = tensor

    def function(self, msg: dict[str, Any]) -> Function:
        defaults = {}
        for a in msg["attribute_proto"]:
            defaults[a.get("name", "")] = self.attribute(a, msg.get("name", ""))
        return Function(
            name=msg.get("name", ""), domain=msg.get("domain", ""),
            inputs=list(msg["input"]), outputs=list(msg["output"]),
            attr_names=list(msg["attribute"]) + list(defaults), attr_defaults=defaults,
            nodes=[self.node(n) for n in msg["node"]],
            opsets={o.get("domain", ""): o.get("version", 0) for o in msg["opset_import"]},
            overload=msg.get("overload", ""),
        )


def read_model(data: bytes | bytearray | memoryview, base_dir: str | None = None) -> Model:
    """Decode ONNX ModelProto bytes (or a TFLite flatbuffer, recognised by its 'TFL3' identifier).

    `base_dir` is where external data files are looked up (the model file's
    directory); tensors keep zero-copy views of `data`, so keep it alive.
    """
    buf = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    if len(buf) == 0:
        raise ModelLoadError("model is empty (0 bytes)")
    if is_tflite(buf):
        return read_tflite(buf)
    try:
        msg = decode(buf, MODEL, "ModelProto")
    except ModelLoadError as e:
        raise ModelLoadError(f"not a valid ONNX model: {e}") from None
    if "graph" not in msg:
        raise ModelLoadError("not an ONNX model: no graph found (is this an .onnx file?)")
    reader = _Reader(base_dir)
    opsets: dict[str, int] = {}
    for o in msg["opset_import"]:
        dom = o.get("domain", "")
        opsets["" if dom == "ai.onnx" else dom] = int(o.get("version", 0))
    if not opsets:
        opsets[""] = 1  # IR version 1-2 files have no opset_import; ONNX treats that as opset 1
    functions = {}
    for f in msg["functions"]:
        fn = reader.function(f)
        functions[(fn.domain, fn.name, fn.overload)] = fn
    return Model(
        graph=reader.graph(msg["graph"]),
        opsets=opsets,
        ir_version=msg.get("ir_version", 0),
        producer=msg.get("producer_name", ""),
        producer_version=msg.get("producer_version", ""),
        domain=msg.get("domain", ""),
        model_version=msg.get("model_version", 0),
        doc=msg.get("doc_string", ""),
        functions=functions,
        metadata={e.get("key", ""): e.get("value", "") for e in msg["metadata_props"]},
    )


def _denotations(t: dict[str, Any] | None) -> tuple[str, ...]:
    """The denotation of each dim of a tensor type (e.g. DATA_BATCH), '' where none is given."""
    shape = ((t or {}).get("tensor_type") or {}).get("shape")
    if not shape or not any(d.get("denotation") for d in shape["dim"]):
        return ()
    return tuple(d.get("denotation", "") for d in shape["dim"])


def _dim(d: dict[str, Any]) -> int | str | None:
    """One dimension of a declared shape: a size, a symbol, or None (unknown).

    A negative dim_value (Paddle exports write -1 for "any size") is an
    unknown dim, as onnxruntime reads it, not a size to check feeds against.
    """
    if "dim_value" in d:
        value = d["dim_value"]
        return value if value >= 0 else None
    return d.get("dim_param") or None


def load_model(source: str | os.PathLike | bytes | bytearray | memoryview | Any,
               external_data_dir: str | None = None) -> Model:
    """Read a model from a path, bytes, or a binary file-like object."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise ModelNotFoundError(f"model file '{path}' not found")
        with open(path, "rb") as f:
            data = f.read()
        return read_model(data, external_data_dir or os.path.dirname(os.path.abspath(path)))
    if isinstance(source, (bytes, bytearray, memoryview)):
        return read_model(source, external_data_dir)
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise ModelLoadError("model file object must be opened in binary mode")
        name = getattr(source, "name", None)
        base = external_data_dir or (os.path.dirname(os.path.abspath(name)) if isinstance(name, str) else None)
        return read_model(data, base)
    if hasattr(source, "SerializeToString"):  # an onnx.ModelProto, for convenience
        return read_model(source.SerializeToString(), external_data_dir)
    raise TypeError(f"cannot load a model from {type(source).__name__}: give a path, bytes or a file object")
