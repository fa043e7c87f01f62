"""InferenceSession: the onnxruntime-compatible surface, feeds, errors, memory."""

from __future__ import annotations

import asyncio
import concurrent.futures
import io

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import webinfer
from webinfer.errors import (InputError, InputTypeError, ModelLoadError, NodeExecutionError, ShapeInferenceError,
                             UnsupportedOpError)


def _mlp(dims: tuple = ("batch", 8)) -> bytes:
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 16)).astype(np.float32)
    w2 = rng.standard_normal((16, 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _expected(x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort
    return ort.InferenceSession(_mlp(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_sources_path_bytes_fileobj(tmp_path) -> None:
    data = _mlp()
    path = tmp_path / "mlp.onnx"
    path.write_bytes(data)
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    for source in (str(path), path, data, io.BytesIO(data), open(path, "rb")):
        (y,) = webinfer.InferenceSession(source).run(None, {"x": x})
        np.testing.assert_allclose(y, _expected(x), rtol=1e-5, atol=1e-6)


def test_metadata_like_onnxruntime() -> None:
    sess = webinfer.InferenceSession(_mlp(), providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    assert (inp.name, inp.type, inp.shape) == ("x", "tensor(float)", ["batch", 8])
    (out,) = sess.get_outputs()
    assert (out.name, out.type, out.shape) == ("y", "tensor(float)", ["batch", 4])  # inferred through the graph
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert sess.get_modelmeta().graph_name == "mlp"
    assert set(sess.get_placement().values()) == {"cpu"}


def test_run_async_and_output_selection() -> None:
    sess = webinfer.InferenceSession(_mlp())
    x = np.ones((2, 8), np.float32)
    # in its own thread: a Playwright test on the same xdist worker may leave an event loop running here
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        (y,) = pool.submit(asyncio.run, sess.run_async(["y"], {"x": x})).result()
    np.testing.assert_allclose(y, _expected(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="'z' is not an output"):
        sess.run(["z"], {"x": x})


@pytest.mark.parametrize("feed, error, message", [
    ({"x": np.ones((2, 8), np.float64)}, InputTypeError, "input 'x' has element type float64 but the model expects float"),
    ({"x": np.ones((2, 7), np.float32)}, InputError, r"input 'x' has shape \[2, 7\].*dimension 1 must be 8"),
    ({"x": np.ones((8,), np.float32)}, InputError, "rank 1.*expects rank 2"),
    ({"x": np.ones((2, 8), np.float32), "q": np.ones(1)}, InputError, "'q' is not an input of this model"),
    ({}, InputError, "missing input"),
])
def test_bad_feeds_are_clear(feed: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        webinfer.InferenceSession(_mlp()).run(None, feed)


def test_bad_feed_errors_are_valueerror_and_typeerror() -> None:
    sess = webinfer.InferenceSession(_mlp())
    with pytest.raises(ValueError):
        sess.run(None, {"x": np.ones((2, 7), np.float32)})
    with pytest.raises(TypeError):
        sess.run(None, {"x": np.ones((2, 8), np.int32)})


def test_unknown_op_names_node() -> None:
    node = helper.make_node("FancyOp", ["x"], ["y"], name="fancy1", domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    with pytest.raises(UnsupportedOpError, match="FancyOp node 'fancy1'.*not supported"):
        webinfer.InferenceSession(model.SerializeToString())


def test_impossible_shapes_fail_at_load() -> None:
    node = helper.make_node("Add", ["a", "b"], ["c"], name="add1")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3]),
                                            helper.make_tensor_value_info("b", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)])
    with pytest.raises(ShapeInferenceError, match=r"Add node 'add1'.*cannot broadcast shapes \[2,3\] and \[4\]"):
        webinfer.InferenceSession(helper.make_model(graph).SerializeToString())


def test_runtime_failure_names_node_op_and_shapes() -> None:
    """Shapes only known at run time: the failing node and its inputs are named."""
    node = helper.make_node("Add", ["a", "b"], ["c"], name="add_dyn")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n"]),
                                            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["m"])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, None)])
    sess = webinfer.InferenceSession(helper.make_model(graph).SerializeToString())
    with pytest.raises(NodeExecutionError, match=r"Add node 'add_dyn'.*a: float32\[3\], b: float32\[4\]"):
        sess.run(None, {"a": np.ones(3, np.float32), "b": np.ones(4, np.float32)})


def test_missing_producer_is_a_load_error() -> None:
    node = helper.make_node("Relu", ["nowhere"], ["y"], name="r")
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    with pytest.raises(ModelLoadError, match="input 'nowhere' is not a graph input"):
        webinfer.InferenceSession(helper.make_model(graph).SerializeToString())


def test_unknown_provider_warns_and_is_skipped() -> None:
    """As onnxruntime: a provider this runtime lacks warns, and the CPU runs the model."""
    with pytest.warns(UserWarning, match="Specified provider 'CUDAExecutionProvider' is not in available"):
        sess = webinfer.InferenceSession(_mlp(), providers=["CUDAExecutionProvider"])
    assert sess.get_providers() == ["CPUExecutionProvider"]


def test_overridable_initializer_defaults_and_override() -> None:
    w = np.array([2.0], np.float32)
    node = helper.make_node("Mul", ["x", "w"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3]),
                                            helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
                              [numpy_helper.from_array(w, "w")])
    sess = webinfer.InferenceSession(helper.make_model(graph).SerializeToString())
    assert [i.name for i in sess.get_inputs()] == ["x"]
    x = np.arange(3, dtype=np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], x * 2)
    np.testing.assert_array_equal(sess.run(None, {"x": x, "w": np.array([5.0], np.float32)})[0], x * 5)


def test_constant_outputs_are_copies() -> None:
    node = helper.make_node("Constant", [], ["y"], value=numpy_helper.from_array(np.arange(4, dtype=np.float32)))
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    sess = webinfer.InferenceSession(helper.make_model(graph).SerializeToString())
    first = sess.run(None, {})[0]
    first[:] = -1
    np.testing.assert_array_equal(sess.run(None, {})[0], np.arange(4, dtype=np.float32))


def test_intermediates_are_freed() -> None:
    """A chain of 40 elementwise ops on 4 MB tensors keeps only a couple alive at once."""
    n, size = 40, (1024, 1024)
    nodes = [helper.make_node("Sin" if i % 2 else "Cos", [f"t{i}"], [f"t{i + 1}"]) for i in range(n)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, list(size))],
                              [helper.make_tensor_value_info(f"t{n}", TensorProto.FLOAT, list(size))])
    options = webinfer.SessionOptions(enable_profiling=True)
    sess = webinfer.InferenceSession(helper.make_model(graph).SerializeToString(), options)
    sess.run(None, {"t0": np.ones(size, np.float32)})
    one = 4 * 1024 * 1024
    assert sess.last_profile is not None
    assert sess.last_profile.peak_live_bytes <= 3 * one  # the sum of all activations would be 41 MB


def test_intra_op_num_threads_limits_blas_during_runs() -> None:
    """intra_op_num_threads=n holds numpy's BLAS to n threads while a run lasts, then restores it."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from webinfer import threads

    def blas_counts() -> list[int]:
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    before = blas_counts()
    assert before, "numpy's BLAS is not visible to threadpoolctl"
    with threads.limit_runs(1):
        assert blas_counts() == [1] * len(before)
    assert blas_counts() == before
    assert threads.blas_threads(1) == 1
    assert threads.blas_threads(0) == max(before)


def _two_inputs(dims_a: list, dims_b: list) -> bytes:
    nodes = [helper.make_node("Add", ["a", "b"], ["y"])]
    graph = helper.make_graph(nodes, "add", [helper.make_tensor_value_info("a", TensorProto.FLOAT, dims_a),
                                             helper.make_tensor_value_info("b", TensorProto.FLOAT, dims_b)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_plain_feeds_skip_the_general_checks(monkeypatch) -> None:
    """Plain arrays of the model's dtype and fixed dims (any strides) pass without `check_feed`; the rest
    still get its errors."""
    import onnxruntime as ort

    from webinfer import session as session_module
    calls = []
    real = session_module.check_feed
    monkeypatch.setattr(session_module, "check_feed", lambda *a: calls.append(a) or real(*a))
    sess = webinfer.InferenceSession(_mlp())
    ref = ort.InferenceSession(_mlp(), providers=["CPUExecutionProvider"])
    base = np.random.default_rng(2).standard_normal((16, 9)).astype(np.float32)
    for x in (base[:5, :8], base[:8, :5].T, base[::-3, 8:0:-1], base[:0, :8]):
        (y,) = sess.run(None, {"x": x})
        np.testing.assert_allclose(y, ref.run(None, {"x": np.ascontiguousarray(x)})[0], rtol=1e-5, atol=1e-5)
    assert not calls
    with pytest.raises(InputTypeError, match="element type float64"):
        sess.run(None, {"x": base[:2, :8].astype(np.float64)})
    with pytest.raises(InputError, match="dimension 1 must be 8"):
        sess.run(None, {"x": base[:2, :7]})
    assert len(calls) == 2


def test_shared_dim_names_are_compared_on_the_fast_path(monkeypatch) -> None:
    """Inputs sharing a symbolic dim name pass the plain-feed checks only when the dims agree; feeds that
    disagree run the relaxed plan, as through the general checks."""
    from webinfer import session as session_module
    calls = []
    real = session_module.check_feed
    monkeypatch.setattr(session_module, "check_feed", lambda *a: calls.append(a) or real(*a))
    sess = webinfer.InferenceSession(_two_inputs(["n", 4], ["n", 4]))
    assert sess._main.fast_feeds is not None and sess._main.fast_feeds.agree == ((1, 0, 0, 0),)
    a, b = np.ones((3, 4), np.float32), np.full((3, 4), 2, np.float32)
    np.testing.assert_allclose(sess.run(None, {"a": a, "b": b})[0], a + b)
    assert not calls and sess._relaxed is None
    np.testing.assert_allclose(sess.run(None, {"a": a, "b": b[:1]})[0], a + b[:1])
    assert len(calls) == 2 and sess._relaxed is not None
