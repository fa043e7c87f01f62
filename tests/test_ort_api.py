"""The onnxruntime Python surface: each call made on webinfer and on onnxruntime, compared.

Code written for onnxruntime ports by swapping the import, so wherever both
runtimes can take the same call the tests run it on both (parametrized over
the module) and compare results, errors and the classes `except` clauses
catch.  Tolerances: 1e-5 relative, 1e-6 absolute (float32 kernels).
"""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import webinfer

RNG = np.random.default_rng(7)
RUNTIMES = pytest.mark.parametrize("rt", [webinfer, ort], ids=["webinfer", "onnxruntime"])


def _mlp(doc: str = "") -> bytes:
    w = RNG.standard_normal((8, 4)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")], doc_string=doc)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    model.domain = "org.example"
    return model.SerializeToString()


def _x(rows: int = 3) -> np.ndarray:
    return RNG.standard_normal((rows, 8)).astype(np.float32)


def _cpu(rt: Any, data: bytes, options: Any = None) -> Any:
    return rt.InferenceSession(data, options, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------ module surface
MODULE_NAMES = ["InferenceSession", "SessionOptions", "RunOptions", "GraphOptimizationLevel", "ExecutionMode",
                "ExecutionOrder", "NodeArg", "ModelMetadata", "OrtValue", "IOBinding", "get_available_providers",
                "get_all_providers", "get_device", "get_version_string", "get_build_info", "set_seed",
                "set_default_logger_severity", "set_default_logger_verbosity", "disable_telemetry_events",
                "enable_telemetry_events", "capi"]


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_module_names_exist_as_in_onnxruntime(name: str) -> None:
    assert hasattr(ort, name)
    assert hasattr(webinfer, name)


def test_capi_modules_import_like_onnxruntime() -> None:
    from webinfer.capi import _pybind_state, onnxruntime_inference_collection, onnxruntime_pybind11_state
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state
    for name in ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException",
                 "InvalidProtobuf", "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail"):
        assert hasattr(ort_state, name) and hasattr(onnxruntime_pybind11_state, name)
        assert getattr(_pybind_state, name) is getattr(onnxruntime_pybind11_state, name)
    assert onnxruntime_inference_collection.InferenceSession is webinfer.InferenceSession


def test_import_swap_reaches_capi_submodules() -> None:
    """`sys.modules["onnxruntime"] = webinfer` then onnxruntime-style imports, in a fresh interpreter."""
    import subprocess
    import sys
    code = ("import sys, webinfer; sys.modules['onnxruntime'] = webinfer\n"
            "import onnxruntime\n"
            "from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, NoSuchFile\n"
            "from onnxruntime.capi._pybind_state import get_available_providers\n"
            "from onnxruntime.capi.onnxruntime_inference_collection import OrtValue\n"
            "assert onnxruntime.get_device() == 'CPU'\n"
            "assert 'CPUExecutionProvider' in get_available_providers()\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@RUNTIMES
def test_module_functions(rt: Any) -> None:
    assert rt.get_device() == "CPU"
    assert isinstance(rt.get_version_string(), str) and isinstance(rt.get_build_info(), str)
    assert rt.get_available_providers()[-1] == "CPUExecutionProvider"
    assert {"CUDAExecutionProvider", "WebGpuExecutionProvider", "CPUExecutionProvider"} <= set(rt.get_all_providers())
    rt.disable_telemetry_events()
    rt.enable_telemetry_events()
    rt.set_default_logger_verbosity(0)


def test_logger_severity_filters_warnings() -> None:
    options = webinfer.SessionOptions()
    options.optimized_model_filepath = "/nonexistent/optimized.onnx"
    try:
        webinfer.set_default_logger_severity(3)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            webinfer.InferenceSession(_mlp(), options)
        assert not [w for w in caught if "optimized_model_filepath" in str(w.message)]
    finally:
        webinfer.set_default_logger_severity(2)
    with pytest.warns(RuntimeWarning, match="optimized_model_filepath is not supported"):
        webinfer.InferenceSession(_mlp(), options)
    with pytest.raises(ValueError):
        webinfer.set_default_logger_severity(7)


# ------------------------------------------------------------------ errors
@RUNTIMES
def test_errors_are_caught_by_onnxruntime_classes(rt: Any, tmp_path: Path) -> None:
    """The same `except` clauses catch both runtimes' errors."""
    state = rt.capi.onnxruntime_pybind11_state if rt is ort else webinfer.capi.onnxruntime_pybind11_state
    with pytest.raises(state.NoSuchFile):
        rt.InferenceSession(str(tmp_path / "missing.onnx"))
    with pytest.raises(state.InvalidProtobuf):
        rt.InferenceSession(b"\x08\x07garbage that is no model")
    foo = helper.make_model(helper.make_graph(
        [helper.make_node("FooOp", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]), opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises((state.InvalidGraph, state.NotImplemented)):
        rt.InferenceSession(foo.SerializeToString())
    sess = _cpu(rt, _mlp())
    with pytest.raises(state.InvalidArgument):
        sess.run(None, {"x": np.ones((3, 7), np.float32)})
    with pytest.raises(state.InvalidArgument):
        sess.run(None, {"x": np.ones((3, 8), np.float64)})
    with pytest.raises(state.InvalidArgument):
        sess.run(["nope"], {"x": _x()})


# ------------------------------------------------------------------ providers
@RUNTIMES
def test_unavailable_providers_warn_and_cpu_runs(rt: Any) -> None:
    x = _x()
    for providers in (["CUDAExecutionProvider", "CPUExecutionProvider"], ["CUDAExecutionProvider"]):
        with pytest.warns(UserWarning, match="CUDAExecutionProvider"):
            sess = rt.InferenceSession(_mlp(), providers=providers)
        assert sess.get_providers() == ["CPUExecutionProvider"]
        assert sess.run(None, {"x": x})[0].shape == (3, 4)


@RUNTIMES
def test_provider_options_forms(rt: Any) -> None:
    sess = rt.InferenceSession(_mlp(), providers=[("CPUExecutionProvider", {})])
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert set(sess.get_provider_options()) == {"CPUExecutionProvider"}


def test_provider_options_length_mismatch() -> None:
    """onnxruntime reports this, then retries on the CPU; webinfer raises (the options would be lost)."""
    with pytest.raises(ValueError, match="should be the same length"):
        webinfer.InferenceSession(_mlp(), providers=["CPUExecutionProvider"], provider_options=[{}, {}])


def test_short_names_and_implicit_cpu() -> None:
    assert webinfer.InferenceSession(_mlp(), providers=["cpu"]).get_providers() == ["CPUExecutionProvider"]
    assert webinfer.InferenceSession(_mlp()).get_providers() == ["CPUExecutionProvider"]
    options = webinfer.SessionOptions()
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="disable_cpu_ep_fallback"):
        webinfer.InferenceSession(_mlp(), options, providers=["CUDAExecutionProvider"])


def test_set_providers_replans() -> None:
    sess = webinfer.InferenceSession(_mlp(), providers=["cpu"])
    x = _x()
    before = sess.run(None, {"x": x})[0]
    sess.set_providers(["CPUExecutionProvider"], [{}])
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], before)


# ------------------------------------------------------------------ options
@RUNTIMES
def test_session_options_fields(rt: Any) -> None:
    so = rt.SessionOptions()
    so.inter_op_num_threads = 2
    so.intra_op_num_threads = 1
    so.execution_mode = rt.ExecutionMode.ORT_PARALLEL
    so.execution_order = rt.ExecutionOrder.PRIORITY_BASED
    so.enable_mem_pattern = False
    so.enable_mem_reuse = False
    so.enable_cpu_mem_arena = False
    so.use_deterministic_compute = True
    so.log_severity_level = 3
    so.log_verbosity_level = 0
    so.logid = "test"
    so.graph_optimization_level = rt.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    with pytest.raises(RuntimeError, match="does not have configuration with key"):
        so.get_session_config_entry("no.such.key")
    with pytest.raises(AttributeError):
        so.no_such_option = 1
    data, x = _mlp(), _x()
    np.testing.assert_allclose(rt.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0],
                               _cpu(ort, data).run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)


def test_every_onnxruntime_option_name_exists() -> None:
    """Every public attribute of onnxruntime's SessionOptions/RunOptions exists here, except the ones
    that load native code or pick devices by hardware (listed; the README says why)."""
    native_only = {"add_provider", "add_provider_for_devices", "set_provider_selection_policy",
                   "set_provider_selection_policy_delegate", "set_ep_context_data_read_func",
                   "clear_ep_context_data_read_func", "add_external_initializers_from_files_in_memory"}
    for ours, theirs in ((webinfer.SessionOptions(), ort.SessionOptions()), (webinfer.RunOptions(), ort.RunOptions())):
        missing = {n for n in dir(theirs) if not n.startswith("_")} - set(dir(ours)) - native_only
        assert not missing, f"{type(ours).__name__} lacks {sorted(missing)}"


@RUNTIMES
def test_free_dimension_override(rt: Any) -> None:
    so = rt.SessionOptions()
    so.add_free_dimension_override_by_name("batch", 3)
    sess = rt.InferenceSession(_mlp(), so, providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].shape == [3, 8]
    assert sess.run(None, {"x": _x(3)})[0].shape == (3, 4)
    with pytest.raises(ValueError if rt is webinfer else Exception, match="(?i)dim|shape"):
        sess.run(None, {"x": _x(2)})


@RUNTIMES
def test_add_initializer(rt: Any) -> None:
    w = RNG.standard_normal((8, 4)).astype(np.float32)
    so = rt.SessionOptions()
    value = rt.OrtValue.ortvalue_from_numpy(w)
    so.add_initializer("w", value)
    x = _x()
    got = rt.InferenceSession(_mlp(), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, np.maximum(x @ w, 0), rtol=1e-5, atol=1e-6)


@RUNTIMES
def test_run_options_terminate(rt: Any) -> None:
    sess = _cpu(rt, _mlp())
    ro = rt.RunOptions()
    ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    assert ro.get_run_config_entry("memory.enable_memory_arena_shrinkage") == "cpu:0"
    ro.terminate = True
    state = rt.capi.onnxruntime_pybind11_state if rt is ort else webinfer.capi.onnxruntime_pybind11_state
    with pytest.raises(state.Fail, match="(?i)terminat"):
        sess.run(None, {"x": _x()}, ro)
    ro.terminate = False
    assert sess.run(None, {"x": _x()}, ro)[0].shape == (3, 4)


# ------------------------------------------------------------------ declared shapes
def _relu_model(shape: list[Any]) -> bytes:
    vi = helper.make_tensor_value_info("x", TensorProto.FLOAT, None)
    dims = vi.type.tensor_type.shape.dim
    for d in shape:
        dim = dims.add()
        if isinstance(d, int):
            dim.dim_value = d
        else:
            dim.dim_param = d
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [vi],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_paddle_style_declared_dims_accept_any_size() -> None:
    """dim_value -1 and one name ('?') on several axes are no constraints, as in onnxruntime."""
    data = _relu_model([-1, 3, "?", "?"])
    x = RNG.standard_normal((2, 3, 5, 7)).astype(np.float32)
    np.testing.assert_array_equal(webinfer.InferenceSession(data).run(None, {"x": x})[0],
                                  _cpu(ort, data).run(None, {"x": x})[0])


def test_shared_symbol_across_inputs_may_differ() -> None:
    """Two inputs naming the same dim may be fed different sizes (onnxruntime checks only fixed dims):
    the session then runs a plan made without assuming they are equal."""
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 4])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 4])
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Shape", ["s"], ["shape"])]
    graph = helper.make_graph(nodes, "g", [a, b], [helper.make_tensor_value_info("s", TensorProto.FLOAT, None),
                                                   helper.make_tensor_value_info("shape", TensorProto.INT64, None)])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    sess = webinfer.InferenceSession(data)
    feeds = [{"a": RNG.standard_normal((3, 4)).astype(np.float32), "b": RNG.standard_normal((3, 4)).astype(np.float32)},
             {"a": RNG.standard_normal((3, 4)).astype(np.float32), "b": RNG.standard_normal((1, 4)).astype(np.float32)}]
    for feed in feeds + feeds:
        ours, ref = sess.run(None, feed), _cpu(ort, data).run(None, feed)
        for o, r in zip(ours, ref):
            np.testing.assert_allclose(o, r, rtol=1e-6)


# ------------------------------------------------------------------ OrtValue / IOBinding
@RUNTIMES
def test_ortvalue(rt: Any) -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    v = rt.OrtValue.ortvalue_from_numpy(a)
    assert (v.element_type(), v.data_type(), v.shape(), v.device_name()) == (1, "tensor(float)", [2, 3], "cpu")
    assert v.has_value() and v.is_tensor() and not v.is_tensor_sequence() and v.tensor_size_in_bytes() == 24
    assert v.data_ptr() == a.ctypes.data
    a[0, 0] = 100
    assert v.numpy()[0, 0] == 100  # shares memory with the array
    z = rt.OrtValue.ortvalue_from_shape_and_type([2, 2], np.int64)
    assert z.data_type() == "tensor(int64)" and z.numpy().dtype == np.int64
    z.update_inplace(np.full((2, 2), 5, np.int64))
    assert z.numpy().tolist() == [[5, 5], [5, 5]]
    with pytest.raises(RuntimeError, match="size"):
        z.update_inplace(np.ones(3, np.int64))
    t = rt.OrtValue.ortvalue_from_numpy(a.T)  # a strided view: copied into a contiguous tensor
    np.testing.assert_array_equal(t.numpy(), a.T)


@RUNTIMES
def test_run_with_ort_values(rt: Any) -> None:
    data, x = _mlp(), _x()
    sess = _cpu(rt, data)
    outs = sess.run_with_ort_values(["y"], {"x": rt.OrtValue.ortvalue_from_numpy(x)})
    assert len(outs) == 1 and outs[0].shape() == [3, 4]
    np.testing.assert_allclose(outs[0].numpy(), _cpu(ort, data).run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)


@RUNTIMES
def test_io_binding(rt: Any) -> None:
    data, x = _mlp(), _x()
    ref = _cpu(ort, data).run(None, {"x": x})[0]
    sess = _cpu(rt, data)
    binding = sess.io_binding()
    binding.bind_cpu_input("x", x)
    binding.bind_output("y")
    sess.run_with_iobinding(binding)
    np.testing.assert_allclose(binding.copy_outputs_to_cpu()[0], ref, rtol=1e-5, atol=1e-6)
    assert binding.get_outputs()[0].shape() == [3, 4]
    # outputs written into the caller's buffer, inputs read from a raw pointer
    out = np.zeros((3, 4), np.float32)
    xin = x.copy()
    binding.clear_binding_inputs()
    binding.clear_binding_outputs()
    binding.bind_input("x", "cpu", 0, np.float32, list(xin.shape), xin.ctypes.data)
    binding.bind_output("y", "cpu", 0, np.float32, list(out.shape), out.ctypes.data)
    sess.run_with_iobinding(binding)
    binding.synchronize_outputs()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
    # an OrtValue bound as the output buffer
    target = rt.OrtValue.ortvalue_from_shape_and_type([3, 4], np.float32)
    binding.clear_binding_outputs()
    binding.bind_ortvalue_output("y", target)
    sess.run_with_iobinding(binding)
    np.testing.assert_allclose(target.numpy(), ref, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ async, profiling, metadata
@RUNTIMES
def test_run_async_with_callback(rt: Any) -> None:
    data, x = _mlp(), _x()
    sess = _cpu(rt, data)
    done = threading.Event()
    got: dict[str, Any] = {}

    def callback(outputs: list[Any], user_data: Any, err: str) -> None:
        got.update(outputs=outputs, user_data=user_data, err=err)
        done.set()

    assert sess.run_async(None, {"x": x}, callback, "token") is None
    assert done.wait(60)
    assert got["user_data"] == "token" and not got["err"]
    np.testing.assert_allclose(got["outputs"][0], _cpu(ort, data).run(None, {"x": x})[0], rtol=1e-5, atol=1e-6)
    done.clear()
    sess.run_async(None, {"x": np.ones((3, 7), np.float32)}, callback, None)
    assert done.wait(60) and got["err"]


def test_run_async_awaitable_without_callback() -> None:
    import asyncio
    sess = webinfer.InferenceSession(_mlp())
    x = _x()
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.extend(asyncio.run(sess.run_async(None, {"x": x}))))
    thread.start()
    thread.join(60)
    np.testing.assert_allclose(result[0], sess.run(None, {"x": x})[0])


@RUNTIMES
def test_end_profiling_writes_a_chrome_trace(rt: Any, tmp_path: Path) -> None:
    so = rt.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "prof")
    sess = rt.InferenceSession(_mlp(), so, providers=["CPUExecutionProvider"])
    assert sess.get_profiling_start_time_ns() > 0
    for _ in range(2):
        sess.run(None, {"x": _x()})
    path = Path(sess.end_profiling())
    assert path.name.startswith("prof") and path.suffix == ".json"
    events = json.loads(path.read_text())
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    assert len(nodes) >= 2 and all(isinstance(e["args"]["op_name"], str) for e in nodes)
    assert all({"ts", "dur", "ph", "pid", "tid"} <= set(e) and e["ph"] == "X" for e in nodes)


@RUNTIMES
def test_modelmeta(rt: Any) -> None:
    meta = _cpu(rt, _mlp(doc="what the graph does")).get_modelmeta()
    assert (meta.graph_name, meta.graph_description, meta.domain) == ("mlp", "what the graph does", "org.example")


def test_set_seed_makes_random_ops_repeatable() -> None:
    node = helper.make_node("RandomNormal", [], ["y"], shape=[4], dtype=TensorProto.FLOAT)
    graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    try:
        webinfer.set_seed(123)
        first = webinfer.InferenceSession(data).run(None, {})[0]
        webinfer.set_seed(123)
        again = webinfer.InferenceSession(data).run(None, {})[0]
    finally:
        from webinfer import environment
        environment._GLOBAL_SEED.clear()
    np.testing.assert_array_equal(first, again)
