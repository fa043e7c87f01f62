"""Mutated ONNX models for fuzzing the loader and the kernel builders.

Shared by the hypothesis test (tests/fuzz/test_fuzz.py) and the long-run
harness (tools/fuzz.py), so both find the same classes of bugs:

- byte mutations: flips, truncation, insertion, duplicated slices;
- protobuf-tree mutations on a generic wire-format tree (independent of
  webinfer's own reader, so the two cannot share a bug): change a field's
  wire type, set a varint or a length to a huge value, drop or duplicate
  fields, swap a length-delimited payload for another;
- semantic mutations on the `onnx` proto: attributes of the wrong type,
  dropped inputs, duplicated outputs, huge dims in initializers and
  declared shapes, and generated models with huge ConstantOfShape/Expand/
  Tile/Range sizes, doubling symbolic dims, deep If nesting, deep types.

`case(seed, index)` is a pure function of its arguments: a failing case is
reproduced from the two numbers a report prints.
"""

from __future__ import annotations

import copy
import functools
import random
import warnings
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper

#: Corpus models larger than this are left out: mutations of small files
#: reach the same code, and every case stays cheap.
MAX_SEED_BYTES = 4096

HUGE = [2**31 - 1, 2**31, 2**32, 2**40, 2**62, 2**63 - 1, -1, -(2**62), 10**9, 65536]


# ----------------------------------------------------------------- wire format
def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("bad varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


Node = list  # [field, wire, value]; value: int, bytes, or list[Node] for a parsed submessage


def parse_tree(buf: bytes, depth: int = 0) -> list[Node]:
    """Parse bytes as a message; length-delimited fields that parse as messages become subtrees."""
    out: list[Node] = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise ValueError("field 0")
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("overrun")
            raw = buf[pos:pos + size]
            pos += size
            value = raw
            if depth < 12 and raw:
                try:
                    value = parse_tree(raw, depth + 1)
                except ValueError:
                    value = raw
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        else:
            raise ValueError("wire type")
        out.append([field, wire, value])
    return out


def encode_tree(tree: list[Node]) -> bytes:
    out = bytearray()
    for field, wire, value in tree:
        out += _varint(field << 3 | wire)
        if wire == 0:
            out += _varint(value if isinstance(value, int) else len(value))
        elif wire == 2:
            payload = encode_tree(value) if isinstance(value, list) else bytes(value) if not isinstance(value, int) else b""
            out += _varint(len(payload)) + payload
        else:
            raw = value if isinstance(value, (bytes, bytearray)) else b""
            out += bytes(raw).ljust(4 if wire == 5 else 8, b"\0")[:4 if wire == 5 else 8]
    return bytes(out)


def msg(*fields: tuple[int, object]) -> bytes:
    """Encode (field, value) pairs: int -> varint, bytes/str -> length-delimited."""
    out = bytearray()
    for field, value in fields:
        if isinstance(value, int):
            out += _varint(field << 3) + _varint(value)
        else:
            raw = value.encode() if isinstance(value, str) else value
            out += _varint(field << 3 | 2) + _varint(len(raw)) + raw
    return bytes(out)


def _all_nodes(tree: list[Node]) -> list[Node]:
    nodes: list[Node] = []
    stack = [tree]
    while stack:
        t = stack.pop()
        for n in t:
            nodes.append(n)
            if isinstance(n[2], list):
                stack.append(n[2])
    return nodes


def _tree_mutation(rng: random.Random, data: bytes) -> bytes:
    try:
        tree = parse_tree(data)
    except ValueError:
        return _byte_mutation(rng, data)
    nodes = _all_nodes(tree)
    if not nodes:
        return data
    for _ in range(rng.randint(1, 3)):
        n = rng.choice(nodes)
        r = rng.random()
        if r < 0.25:  # a field of another wire type: a string stored as a number, a number as bytes
            n[1] = rng.choice([w for w in (0, 1, 2, 5) if w != n[1]])
            if n[1] == 0:
                n[2] = rng.choice(HUGE + [0, 1, 7])
            elif n[1] == 2 and isinstance(n[2], int):
                n[2] = _varint(n[2])
        elif r < 0.45 and n[1] == 0:
            n[2] = rng.choice(HUGE + [0, 1, 2, 3, 255])
        elif r < 0.55:
            n[0] = rng.randint(1, 30)
        elif r < 0.7:  # drop or duplicate a sibling
            parent = next((t for t in [tree] + [m[2] for m in nodes if isinstance(m[2], list)]
                           if any(x is n for x in t)), None)
            if parent is not None:
                i = next(i for i, x in enumerate(parent) if x is n)
                if rng.random() < 0.5:
                    parent.pop(i)
                else:
                    parent.insert(i, [n[0], n[1], n[2]])
        elif r < 0.85:
            other = rng.choice(nodes)
            n[1], n[2] = other[1], copy.deepcopy(other[2])  # a copy: an ancestor would make a cycle
        else:
            n[1], n[2] = 2, rng.randbytes(rng.randint(0, 12))
    return encode_tree(tree)


def _byte_mutation(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            buf = bytearray(rng.randbytes(8))
        r = rng.random()
        i = rng.randrange(len(buf))
        if r < 0.4:
            buf[i] ^= 1 << rng.randrange(8)
        elif r < 0.55:
            buf[i] = rng.choice([0x00, 0x7F, 0x80, 0xFF, 0x0A, 0x12, 0x08])
        elif r < 0.7:
            del buf[rng.randrange(len(buf)):]
        elif r < 0.85:
            buf[i:i] = rng.randbytes(rng.randint(1, 6))
        else:
            j = rng.randrange(len(buf))
            buf[i:i] = buf[j:j + rng.randint(1, 32)]
    return bytes(buf)


# --------------------------------------------------------------- semantic ones
def _random_attr(rng: random.Random, name: str) -> onnx.AttributeProto:
    kind = rng.randrange(9)
    if kind == 0:
        return helper.make_attribute(name, rng.choice([0.5, -1.0, 1e30, float("nan")]))
    if kind == 1:
        return helper.make_attribute(name, rng.choice(HUGE + [0, 1, -2, 3]))
    if kind == 2:
        return helper.make_attribute(name, rng.choice(["", "x", "NOTSET", "constant"]))
    if kind == 3:
        return helper.make_attribute(name, [rng.choice(HUGE + [0, 1, -1]) for _ in range(rng.randint(1, 4))])
    if kind == 4:
        return helper.make_attribute(name, [rng.random() for _ in range(rng.randint(1, 4))])
    if kind == 5:
        return helper.make_attribute(name, ["a", "b"][:rng.randint(1, 2)])
    if kind == 6:
        return helper.make_attribute(name, helper.make_tensor("t", TensorProto.INT64, [2], [1, 2]))
    if kind == 7:
        return helper.make_attribute(name, helper.make_graph([], "g", [], []))
    a = helper.make_attribute(name, 1)
    a.type = rng.choice([0, 11, 12, 13, 14])
    return a


def _graphs(graph: onnx.GraphProto) -> list[onnx.GraphProto]:
    """`graph` and every subgraph in its nodes' attributes (If branches, Loop/Scan bodies)."""
    out = [graph]
    for node in graph.node:
        for a in node.attribute:
            for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                out.extend(_graphs(sub))
    return out


def _semantic_mutation(rng: random.Random, model: onnx.ModelProto) -> bytes:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = rng.choice(_graphs(m.graph))
    names = [v.name for v in g.input] + [t.name for t in g.initializer] + [o for n in g.node for o in n.output]
    for _ in range(rng.randint(1, 2)):
        r = rng.random()
        node = rng.choice(g.node) if len(g.node) else None
        if node is None:
            break
        if r < 0.3:  # an attribute of the wrong type (existing name, or a name the op reads)
            if len(node.attribute) and rng.random() < 0.8:
                i = rng.randrange(len(node.attribute))
                new = _random_attr(rng, node.attribute[i].name)
                node.attribute[i].CopyFrom(new)
            else:
                node.attribute.append(_random_attr(rng, rng.choice(
                    ["axis", "axes", "perm", "to", "mode", "value", "kernel_shape", "pads", "strides",
                     "keepdims", "epsilon", "alpha", "then_branch", "body", "dtype", "shape"])))
        elif r < 0.4 and len(node.input):  # a required input left out
            if rng.random() < 0.5:
                node.input[rng.randrange(len(node.input))] = ""
            else:
                del node.input[-1]
        elif r < 0.55 and names and len(node.output):  # two definitions of one name
            node.output[rng.randrange(len(node.output))] = rng.choice(names)
        elif r < 0.75:  # huge or negative numbers where sizes live
            ints = [t for t in g.initializer if t.data_type in (TensorProto.INT64, TensorProto.INT32)]
            if ints:
                t = rng.choice(ints)
                arr = onnx.numpy_helper.to_array(t).copy()
                if arr.size:
                    arr.reshape(-1)[rng.randrange(arr.size)] = rng.choice(HUGE)
                    t.CopyFrom(onnx.numpy_helper.from_array(arr, t.name))
            else:
                for a in node.attribute:
                    if a.type == onnx.AttributeProto.INTS and len(a.ints):
                        a.ints[rng.randrange(len(a.ints))] = rng.choice(HUGE)
                    elif a.type == onnx.AttributeProto.INT:
                        a.i = rng.choice(HUGE)
        elif r < 0.85:
            vis = list(g.input) + list(g.output)
            if vis:
                v = rng.choice(vis)
                dims = v.type.tensor_type.shape.dim
                if len(dims):
                    dims[rng.randrange(len(dims))].dim_value = rng.choice(HUGE)
                else:
                    v.type.tensor_type.elem_type = rng.choice([0, 8, 16, 23, 99])
        elif r < 0.92:
            node.op_type = rng.choice(["If", "Loop", "Scan", "Reshape", "Expand", "Tile", "Range",
                                       "ConstantOfShape", "Conv", "Gemm", "Split", "Concat", "Cast",
                                       "Resize", "Pad", "Slice", "Gather", "NonZero", "TopK"])
        else:
            m.opset_import[0].version = rng.choice([1, 6, 11, 13, 18, 21, 99, 10**6])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return m.SerializeToString()


def _model(nodes: list, inputs: list, outputs: list, inits: list = (), opset: int = 18) -> bytes:
    graph = helper.make_graph(nodes, "fuzz", inputs, outputs, list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


def _i64(name: str, values: list[int]) -> TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def _out(name: str, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, None)


def _huge_sizes(rng: random.Random) -> bytes:
    """ConstantOfShape / Expand / Tile / Range asked for more than memory holds."""
    big = [rng.choice(HUGE[:6] + [1 << 20, 1 << 16, 3]) for _ in range(rng.randint(1, 3))]
    kind = rng.randrange(4)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    if kind == 0:
        return _model([helper.make_node("ConstantOfShape", ["s"], ["y"])], [], [_out("y")], [_i64("s", big)])
    if kind == 1:
        return _model([helper.make_node("Expand", ["x", "s"], ["y"])], [x], [_out("y")], [_i64("s", big)])
    if kind == 2:
        return _model([helper.make_node("Tile", ["x", "s"], ["y"])], [x], [_out("y")], [_i64("s", big[:1])])
    delta = rng.choice([1, 0, -1, 1e-30])
    elem = TensorProto.INT64 if isinstance(delta, int) else TensorProto.FLOAT
    lim = rng.choice(HUGE)
    mk = (lambda n, v: helper.make_tensor(n, elem, [], [v]))
    return _model([helper.make_node("Range", ["a", "b", "c"], ["y"])], [], [_out("y", elem)],
                  [mk("a", 0), mk("b", lim), mk("c", delta)])


def _doubling_dims(rng: random.Random) -> bytes:
    """Shape values added to and multiplied by themselves: symbolic dims double per node."""
    depth = rng.randint(10, 80)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "m"])
    nodes = [helper.make_node("Shape", ["x"], ["s0"])]
    for i in range(depth):
        nodes.append(helper.make_node(rng.choice(["Add", "Mul", "Sub"]), [f"s{i}", f"s{i}"], [f"s{i + 1}"]))
    nodes.append(helper.make_node("ConstantOfShape", [f"s{depth}"], ["y"]))
    return _model(nodes, [x], [_out("y")])


def _if_graph(depth: int) -> bytes:
    """A GraphProto whose single If node nests `depth` more levels, as raw bytes (protobuf
    libraries refuse to build such depths)."""
    out_vi = msg((1, "y"), (2, msg((1, msg((1, TensorProto.FLOAT))))))
    leaf = graph = msg((1, msg((2, "y"), (4, "Constant"),
                        (5, msg((1, "value"), (20, 4), (5, msg((2, TensorProto.FLOAT), (4, b"\0\0\x80?"))))))),
                (2, "leaf"), (12, out_vi))
    for _ in range(depth):
        node = msg((1, "c"), (2, "y"), (4, "If"),
                   (5, msg((1, "then_branch"), (20, 5), (6, graph))),
                   (5, msg((1, "else_branch"), (20, 5), (6, leaf))))
        graph = msg((1, node), (2, "level"), (12, out_vi))
    return graph


def _deep_if(rng: random.Random) -> bytes:
    depth = rng.choice([3, 50, 200, 1000, 3000])
    cond_vi = msg((1, "c"), (2, msg((1, msg((1, TensorProto.BOOL), (2, b""))))))
    graph = _if_graph(depth) + msg((11, cond_vi))
    return msg((1, 8), (7, graph), (8, msg((2, 18))))


def _deep_type(rng: random.Random) -> bytes:
    depth = rng.choice([10, 200, 1000, 5000])
    t = msg((1, msg((1, TensorProto.FLOAT))))
    for _ in range(depth):
        t = msg((rng.choice([4, 9]), msg((1, t))))
    vi = msg((1, "x"), (2, t))
    graph = msg((1, msg((1, "x"), (2, "y"), (4, "Identity"))), (2, "g"), (11, vi), (12, msg((1, "y"))))
    return msg((1, 8), (7, graph), (8, msg((2, 18))))


GENERATORS: list[Callable[[random.Random], bytes]] = [_huge_sizes, _doubling_dims, _deep_if, _deep_type]


# -------------------------------------------------------------------- corpus
@functools.lru_cache(maxsize=1)
def corpus() -> list[tuple[str, onnx.ModelProto]]:
    """The onnx backend suite's node models (built in memory), the small ones."""
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    out = []
    for c in cases:
        if c.model.ByteSize() <= MAX_SEED_BYTES:
            out.append((c.name, c.model))
    return out


def case(seed: int, index: int) -> tuple[str, bytes]:
    """The `index`-th mutated model of run `seed`: (description, bytes)."""
    rng = random.Random(seed * 1_000_003 + index)
    r = rng.random()
    if r < 0.12:
        gen = rng.choice(GENERATORS)
        data = gen(rng)
        if rng.random() < 0.3:
            data = _tree_mutation(rng, data)
        return gen.__name__.lstrip("_"), data
    name, model = rng.choice(corpus())
    if r < 0.4:
        return f"{name}/bytes", _byte_mutation(rng, model.SerializeToString())
    if r < 0.7:
        return f"{name}/tree", _tree_mutation(rng, model.SerializeToString())
    return f"{name}/semantic", _semantic_mutation(rng, model)
