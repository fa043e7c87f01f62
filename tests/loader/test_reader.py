"""Our protobuf reader against the `onnx` package, on every model of onnx's test suite.

Every node case, plus the simple / pytorch-converted / pytorch-operator /
real collections: node types, names, inputs, outputs, attributes (values
included), initializers (bit-exact), graph interface types, opsets, and
nested subgraphs and functions all have to agree.
"""

from __future__ import annotations

import math
import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx.backend.test.loader import load_model_tests

from webinfer import dtypes
from webinfer.errors import ModelLoadError
from webinfer.ir import AttrRef, Graph, Model, Tensor, TensorType
from webinfer.loader import load_model, read_model


def _tensor_equal(ref: onnx.TensorProto, ours: Tensor) -> None:
    expected = dtypes.import_array(numpy_helper.to_array(ref), ref.data_type)
    assert ours.elem == ref.data_type
    assert ours.array.shape == expected.shape
    if expected.dtype == object:
        assert list(ours.array.reshape(-1)) == list(expected.reshape(-1))
    else:
        assert ours.array.dtype == expected.dtype
        assert ours.array.reshape(-1).view(np.uint8).tobytes() == \
            np.ascontiguousarray(expected).reshape(-1).view(np.uint8).tobytes()


def _attr_equal(ref: onnx.AttributeProto, ours: object) -> None:
    if ref.ref_attr_name:
        assert ours == AttrRef(ref.ref_attr_name)
        return
    value = onnx.helper.get_attribute_value(ref)
    kind = ref.type
    A = onnx.AttributeProto
    if kind == A.FLOAT:
        assert ours == pytest.approx(value, nan_ok=True) or (math.isnan(value) and math.isnan(ours))
    elif kind in (A.INT, A.INTS):
        assert ours == list(value) if kind == A.INTS else ours == value
    elif kind == A.FLOATS:
        assert np.allclose(ours, value, equal_nan=True) if value else ours == []
    elif kind == A.STRING:
        assert ours == value.decode("utf-8")
    elif kind == A.STRINGS:
        assert ours == [v.decode("utf-8") for v in value]
    elif kind == A.TENSOR:
        _tensor_equal(value, ours)
    elif kind == A.TENSORS:
        assert len(ours) == len(value)
        for r, o in zip(value, ours):
            _tensor_equal(r, o)
    elif kind == A.GRAPH:
        _graph_equal(value, ours)
    elif kind == A.GRAPHS:
        for r, o in zip(value, ours):
            _graph_equal(r, o)


def _type_equal(ref: onnx.TypeProto, ours: object) -> None:
    if ref.HasField("tensor_type"):
        assert isinstance(ours, TensorType)
        assert (ours.elem or 0) == ref.tensor_type.elem_type
        if ref.tensor_type.HasField("shape"):
            dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                         for d in ref.tensor_type.shape.dim)
            assert ours.shape == dims
        else:
            assert ours.shape is None


def _graph_equal(ref: onnx.GraphProto, ours: Graph) -> None:
    assert ours.name == ref.name
    assert [n.op_type for n in ours.nodes] == [n.op_type for n in ref.node]
    for rn, on in zip(ref.node, ours.nodes):
        assert on.name == rn.name and on.inputs == list(rn.input) and on.outputs == list(rn.output)
        assert on.domain == ("" if rn.domain == "ai.onnx" else rn.domain)
        assert set(on.attrs) == {a.name for a in rn.attribute}
        for a in rn.attribute:
            _attr_equal(a, on.attrs[a.name])
    assert [v.name for v in ours.inputs] == [v.name for v in ref.input]
    assert [v.name for v in ours.outputs] == [v.name for v in ref.output]
    for rv, ov in zip(list(ref.input) + list(ref.output), ours.inputs + ours.outputs):
        _type_equal(rv.type, ov.type)
    assert set(ours.initializers) == {t.name for t in ref.initializer} | {s.values.name for s in ref.sparse_initializer}
    for t in ref.initializer:
        _tensor_equal(t, ours.initializers[t.name])


def _model_equal(ref: onnx.ModelProto, ours: Model) -> None:
    assert ours.ir_version == ref.ir_version
    assert ours.opsets == {("" if o.domain == "ai.onnx" else o.domain): o.version for o in ref.opset_import}
    assert ours.producer == ref.producer_name
    assert len(ours.functions) == len(ref.functions)
    for f in ref.functions:
        fn = ours.functions[(f.domain, f.name, f.overload)]
        assert fn.inputs == list(f.input) and fn.outputs == list(f.output)
        assert [n.op_type for n in fn.nodes] == [n.op_type for n in f.node]
    _graph_equal(ref.graph, ours.graph)


def _suite_models() -> list[tuple[str, onnx.ModelProto]]:
    out = [(c.name, c.model) for c in load_model_tests(kind="node")]
    for kind in ("simple", "pytorch-converted", "pytorch-operator"):
        for c in load_model_tests(kind=kind):
            out.append((c.name, onnx.load(os.path.join(c.model_dir, "model.onnx"))))
    light = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    for f in sorted(os.listdir(light)):
        if f.endswith(".onnx"):
            out.append((f, onnx.load(os.path.join(light, f))))
    return out


def test_reader_matches_onnx_on_the_whole_suite() -> None:
    models = _suite_models()
    assert len(models) > 2000
    failures = []
    for name, proto in models:
        try:
            _model_equal(proto, read_model(proto.SerializeToString()))
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures[:20])


def test_external_data(tmp_path) -> None:
    w = np.random.default_rng(0).standard_normal((64, 32)).astype(np.float32)
    node = onnx.helper.make_node("MatMul", ["x", "w"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 64])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 32])],
                                   [numpy_helper.from_array(w, "w")])
    model = onnx.helper.make_model(graph)
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.onnx.data", size_threshold=0)
    ours = load_model(str(path))
    np.testing.assert_array_equal(ours.graph.initializers["w"].array, w)
    with pytest.raises(ModelLoadError, match="external file 'm.onnx.data'"):
        read_model(path.read_bytes())


def test_external_data_cannot_escape_the_model_dir(tmp_path) -> None:
    t = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[1], data_location=onnx.TensorProto.EXTERNAL)
    t.external_data.add(key="location", value="../../etc/passwd")
    graph = onnx.helper.make_graph([], "g", [], [onnx.helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [1])],
                                   [t])
    data = onnx.helper.make_model(graph).SerializeToString()
    with pytest.raises(ModelLoadError, match="escapes the model directory"):
        read_model(data, str(tmp_path))


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"\x00\x01\x02", "field number 0"),
    (b"hello world, not a model", "wire type"),
    (b"\x3a\xff\xff\x03", "claims"),
    (onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])).SerializeToString()[:-3], "truncated|claims"),
])
def test_malformed_bytes_raise_model_load_error(data: bytes, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        read_model(data)


def test_tensor_size_mismatch_is_reported() -> None:
    t = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[3], raw_data=b"\x00" * 8)
    graph = onnx.helper.make_graph([], "g", [], [onnx.helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [3])],
                                   [t])
    with pytest.raises(ModelLoadError, match="tensor 'w'.*raw_data has 8 bytes, shape needs 12"):
        read_model(onnx.helper.make_model(graph).SerializeToString())
