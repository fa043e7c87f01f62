"""End to end in Chromium: the demo page, its bundled model, dropped-in and malformed models.

All tests share one page (one Pyodide load, see conftest.py).  Results are
compared with native webinfer on the same inputs: the probability map of
PP-OCRv4 det to 1e-3 (Pyodide's numpy has no BLAS and the GPU sums in yet
another order), the dropped-in model's outputs to 1e-5.  The demo model
runs on the browser's WebGPU when headless Chromium offers an adapter
(SwiftShader, a CPU emulation: seconds per run, so the page's own runs go
once and the latency test repeats twice).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import webinfer

from .conftest import DemoPage, demo_py
from .harness import launch_options

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def small_model(seed: int = 0) -> bytes:
    """MatMul + Add + Relu + Softmax with a symbolic batch: small enough to run instantly in Pyodide."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["z"]),
         helper.make_node("Relu", ["z"], ["r"]), helper.make_node("Softmax", ["r"], ["y"], axis=-1)],
        "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture(scope="module")
def native_detection(dist: Path) -> dict[str, Any]:
    """PP-OCRv4 det on the bundled sample, natively: the reference for the page."""
    img = demo_py.read_png((dist / "sample.png").read_bytes())
    h, w = img.shape[:2]
    sess = webinfer.InferenceSession((dist / "models" / "ppocr_det.onnx").read_bytes(), providers=["cpu"])
    prob = sess.run(None, {sess.get_inputs()[0].name: demo_py.ppocr_preprocess(img)})[0][0, 0, :h, :w]
    return {"prob": prob, "boxes": demo_py.detect_boxes(prob, (h, w)), "hw": (h, w)}


def _counter(dp: DemoPage, name: str) -> int:
    return dp.page.evaluate(f"window.webinferDemo.state.counters.{name}")


def _wait_counter(dp: DemoPage, name: str, above: int, timeout_ms: int = 180_000) -> None:
    dp.page.wait_for_function(f"() => window.webinferDemo.state.counters.{name} > {above}", timeout=timeout_ms)


def _set_providers(dp: DemoPage, value: str) -> None:
    """Choose the providers and wait for the demo model to be reloaded and run with them."""
    if dp.page.input_value("#providers") == value:
        return
    before = _counter(dp, "detections")
    dp.page.select_option("#providers", value)
    _wait_counter(dp, "detections", before)
    dp.wait_detection()


def _drop_file(dp: DemoPage, name: str, data: bytes) -> None:
    """A real drag-and-drop onto the drop zone, with the file built in the page."""
    dp.page.evaluate("""({name, b64}) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, {type: "application/octet-stream"}));
        const zone = document.getElementById("dropzone");
        for (const type of ["dragenter", "dragover", "drop"]) {
            zone.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
        }
    }""", {"name": name, "b64": base64.b64encode(data).decode()})


def _check_detection(dp: DemoPage, native: dict[str, Any]) -> dict[str, Any]:
    got = dp.detection()
    h, w = native["hw"]
    assert (got["height"], got["width"]) == (h, w)
    prob = np.frombuffer(base64.b64decode(got["prob"]), dtype=np.float32).reshape(h, w)
    np.testing.assert_allclose(prob, native["prob"], rtol=0, atol=1e-3)
    assert len(got["boxes"]) == len(native["boxes"]) >= 4
    for a, b in zip(got["boxes"], native["boxes"]):
        for k in ("x0", "y0", "x1", "y1"):
            assert abs(a[k] - b[k]) <= 1.0, (a, b)
    return got


def test_demo_model_runs_and_matches_native(demo: DemoPage, native_detection: dict[str, Any]) -> None:
    """With the default providers (webgpu, cpu): on the browser's WebGPU when it has an adapter (SwiftShader
    in headless Chromium here), the same WGSL kernels as native; without one, on the CPU with a notice."""
    _set_providers(demo, "webgpu,cpu")
    demo.wait_detection()
    got = _check_detection(demo, native_detection)
    summary = demo.page.evaluate("window.webinferDemo.state.demo")
    adapter = demo.page.evaluate("window.webinferDemo.state.adapter")
    assert summary["requested_providers"] == ["webgpu", "cpu"]
    assert got["providers"] == summary["providers"]
    assert int(demo.page.inner_text("#det-boxes")) == len(native_detection["boxes"])
    if adapter["available"]:
        assert summary["providers"] == ["webgpu", "cpu"], summary["notice"]
        assert summary["nodes_gpu"] > 0
        assert got["gpu"]["dispatches"] > 0 and got["gpu"]["readbacks"] >= 1, got["gpu"]
        assert demo.page.is_hidden("#notice")
        assert demo.page.inner_text("#provider-badge") == \
            f"webgpu: {summary['nodes_gpu']}/{summary['nodes_total']} nodes on GPU"
        assert "WebGPU adapter: " in demo.page.inner_text("#footer") and "none (" not in demo.page.inner_text("#footer")
    else:
        assert summary["providers"] == ["cpu"] and summary["nodes_gpu"] == 0 and got["gpu"] is None
        assert demo.page.is_visible("#notice")
        assert "no WebGPU adapter: running on CPU" in demo.page.inner_text("#notice")
        assert adapter["problem"] in demo.page.inner_text("#notice")
    assert demo.page.inner_text("#det-gpu") == f"{summary['nodes_gpu']} of {summary['nodes_total']}"


def test_without_an_adapter_the_page_runs_on_cpu_with_a_notice(browser_type: Any, server_url: str,
                                                                native_detection: dict[str, Any]) -> None:
    """Chromium without --enable-unsafe-webgpu has navigator.gpu but no adapter: webinfer's device does not
    open, the demo model runs on the cpu (same results) and the page says why.  A browser of its own."""
    opts = launch_options()
    browser = browser_type.launch(**{**opts, "args": [a for a in opts["args"] if a != "--enable-unsafe-webgpu"]})
    try:
        page = browser.new_page()
        page.goto(server_url)
        page.wait_for_function("() => ['ready', 'failed'].includes(document.body.dataset.state)", timeout=240_000)
        assert page.get_attribute("body", "data-state") == "ready", page.inner_text("#error")
        adapter = page.evaluate("window.webinferDemo.state.adapter")
        assert adapter == {"available": False, "problem": "navigator.gpu.requestAdapter() returned no adapter"}
        assert page.is_visible("#notice")
        assert page.inner_text("#notice") == f"no WebGPU adapter: running on CPU ({adapter['problem']})"
        summary = page.evaluate("window.webinferDemo.state.demo")
        assert summary["providers"] == ["cpu"] and summary["requested_providers"] == ["webgpu", "cpu"]
        assert page.inner_text("#det-gpu") == f"0 of {summary['nodes_total']}"
        gemm = page.evaluate("window.webinferDemo.state.versions.gemm")
        assert gemm.startswith("wasm-") and page.inner_text("#provider-badge") == f"cpu ({gemm})"
        assert "WebGPU adapter: none (" in page.inner_text("#footer")
        _check_detection(DemoPage(page, server_url), native_detection)
    finally:
        browser.close()


def test_demo_model_on_cpu_provider(demo: DemoPage, native_detection: dict[str, Any]) -> None:
    _set_providers(demo, "cpu")
    got = _check_detection(demo, native_detection)
    assert got["providers"] == ["cpu"]
    assert demo.page.is_hidden("#notice")
    assert demo.page.inner_text("#det-provider") == "cpu"
    _set_providers(demo, "webgpu,cpu")


def test_latency_and_graph_view(demo: DemoPage) -> None:
    demo.wait_detection()
    before = _counter(demo, "detections")
    demo.page.fill("#det-repeats", "2")
    demo.page.click("#det-run")
    _wait_counter(demo, "detections", before)
    det = demo.wait_detection()
    assert len(det["times_ms"]) == 2
    assert det["latency"]["p50"] <= det["latency"]["p90"]
    assert demo.page.inner_text("#det-p50").endswith(("ms", "s"))
    assert demo.page.locator("#det-runs span").count() == 2
    demo.page.select_option("#graph-model", label="PP-OCRv4 det (demo)")
    summary = demo.page.evaluate("window.webinferDemo.state.demo")
    assert demo.page.locator("#histogram .hist-row").count() == len(summary["info"]["op_histogram"])
    assert demo.page.locator("#graph svg g.node").count() == summary["nodes_total"]
    assert demo.page.locator("#graph svg path.edge").count() >= summary["nodes_total"] - 1


def test_dropped_model_runs(demo: DemoPage, tmp_path: Path) -> None:
    model = small_model()
    before = _counter(demo, "runs")
    _drop_file(demo, "small.onnx", model)
    _wait_counter(demo, "runs", before)
    run = demo.page.evaluate("window.webinferDemo.state.lastRun")
    assert run["outputs"][0]["name"] == "y" and run["outputs"][0]["shape"] == [1, 4]
    assert demo.page.inner_text("#model-name") == "small.onnx"

    # Now with an uploaded .npy for the input: the outputs must match native webinfer.
    x = np.random.default_rng(7).standard_normal((3, 8)).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, x)
    demo.page.set_input_files("#model-inputs input.npy[data-input='x']",
                              files=[{"name": "x.npy", "mimeType": "application/octet-stream",
                                      "buffer": buf.getvalue()}])
    before = _counter(demo, "runs")
    demo.page.click("#model-run")
    _wait_counter(demo, "runs", before)
    out = demo.page.evaluate("window.webinferDemo.state.lastRun")["outputs"][0]
    ref = webinfer.InferenceSession(model, providers=["cpu"]).run(None, {"x": x})[0]
    assert out["shape"] == [3, 4] and out["dtype"] == "float32"
    np.testing.assert_allclose(out["head"], ref.ravel()[:8], rtol=0, atol=1e-5)
    np.testing.assert_allclose([out["min"], out["max"], out["mean"]], [ref.min(), ref.max(), ref.mean()],
                               rtol=0, atol=1e-5)
    assert demo.page.locator("#model-outputs tbody tr").count() == 1


def test_malformed_file_shows_error_and_page_keeps_working(demo: DemoPage) -> None:
    errors = _counter(demo, "errors")
    demo.page.set_input_files("#model-file", files=[{"name": "broken.onnx", "mimeType": "application/octet-stream",
                                                    "buffer": b"\x08\x07this is not a protobuf model\xff\xff"}])
    _wait_counter(demo, "errors", errors)
    assert demo.page.is_visible("#error")
    assert "broken.onnx" in demo.page.inner_text("#error-title")
    assert "ModelLoadError" in demo.page.inner_text("#error-message")
    assert not demo.page_errors, demo.page_errors

    # The page keeps working: the demo model runs again and a good model loads and runs.
    demo.page.fill("#det-repeats", "1")
    before = _counter(demo, "detections")
    demo.page.click("#det-run")
    _wait_counter(demo, "detections", before)
    demo.wait_detection()
    runs = _counter(demo, "runs")
    demo.page.set_input_files("#model-file", files=[{"name": "small2.onnx", "mimeType": "application/octet-stream",
                                                    "buffer": small_model(seed=3)}])
    _wait_counter(demo, "runs", runs)
    assert demo.page.inner_text("#model-name") == "small2.onnx"
    assert demo.page.is_hidden("#error")


def test_screenshot_after_a_run(demo: DemoPage, artifacts: Path) -> None:
    """Saved as test-artifacts/demo.png: the page after the bundled model and a dropped-in model ran."""
    demo.wait_detection()
    if demo.page.evaluate("window.webinferDemo.state.lastRun") is None:
        runs = _counter(demo, "runs")
        _drop_file(demo, "small.onnx", small_model())
        _wait_counter(demo, "runs", runs)
    demo.page.evaluate("document.getElementById('error').hidden = true")
    demo.page.select_option("#graph-model", label="PP-OCRv4 det (demo)")
    target = artifacts / "demo.png"
    demo.page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 20_000
