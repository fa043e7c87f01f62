"""webinfer's browser WebGPU backend (devices/gpu/browser.py), driven from Python on a page's main thread.

The demo page always opens the device first (its worker awaits
`init_webgpu`); these tests cover what the page does not: a session
created without that call (the device opened through JSPI's `run_sync`),
WebGPU's asynchronous validation errors surfacing as `DeviceError`, a
`requestAdapter()` that never answers (timeout, CPU fallback, the failure
remembered for sessions, retried by another `init_webgpu`), and readbacks
that leave the event loop free.  One page, one
Pyodide load for the module; `navigator.gpu.requestAdapter` is patched so
that low-power requests hang, as some drivers do.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import webinfer

from .conftest import demo_py
from .test_demo_page import small_model

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


class PyPage:
    """A page running Pyodide + webinfer on its main thread."""

    def __init__(self, page: Any):
        self.page = page
        self.adapter: bool = page.evaluate("""async () => {
            if (!navigator.gpu) return false;
            const real = navigator.gpu.requestAdapter.bind(navigator.gpu);
            navigator.gpu.requestAdapter = (options) =>
                options?.powerPreference === "low-power" ? new Promise(() => {}) : real(options);
            window.ticks = 0;
            setInterval(() => { window.ticks += 1; }, 5);
            return Boolean(await real());
        }""")

    def run(self, code: str) -> Any:
        """Run Python (top-level await allowed) that assigns `result`; return it through JSON."""
        return json.loads(self.page.evaluate("(code) => window.runPython(code)",
                                             code + "\nimport json as _json\n_json.dumps(result)"))


@pytest.fixture(scope="module")
def py(browser: Any, server_url: str) -> Iterator[PyPage]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(server_url + "tests/python.html")
    page.wait_for_function("document.body.dataset.state === 'ready'", timeout=120_000)
    yield PyPage(page)
    context.close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_session_without_init_opens_the_device_through_jspi(py: PyPage) -> None:
    if not py.adapter:
        pytest.skip("this Chromium offers no WebGPU adapter")
    model = small_model(seed=4)
    x = np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32)
    got = py.run(f"""
import base64, numpy as np, webinfer
from pyodide.ffi import can_run_sync
from webinfer.devices import gpu
gpu._BACKENDS.clear(); gpu._FAILURES.clear()  # as if nothing had opened the device yet
sess = webinfer.InferenceSession(base64.b64decode("{_b64(model)}"), providers=["webgpu", "cpu"])
x = np.frombuffer(base64.b64decode("{_b64(x.tobytes())}"), dtype=np.float32).reshape(3, 8)
y = (await sess.run_async(None, {{"x": x}}))[0]
shared = (await gpu.init_webgpu()) is sess._devices[0].backend
result = {{"jspi": can_run_sync(), "providers": sess.get_providers(), "stats": sess.device_stats(),
          "y": y.tolist(), "shared": shared}}
""")
    assert got["jspi"], "Chromium + Pyodide 0.27 support JSPI: run_sync should be available under runPythonAsync"
    assert got["providers"] == ["WebGpuExecutionProvider", "CPUExecutionProvider"] and got["shared"]
    stats = got["stats"]
    assert stats["nodes_on_gpu"] == stats["nodes_total"] and stats["dispatches_per_run"] > 0
    assert "browser WebGPU" in stats["adapter"]
    ref = webinfer.InferenceSession(model, providers=["cpu"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.array(got["y"], dtype=np.float32), ref, rtol=0, atol=1e-5)


def test_wgsl_errors_raise_device_error_naming_the_pipeline(py: PyPage) -> None:
    if not py.adapter:
        pytest.skip("this Chromium offers no WebGPU adapter")
    got = py.run("""
import numpy as np, webinfer
from webinfer.devices import gpu
backend = await gpu.init_webgpu()
buf = backend.create_buffer(256)
backend.compile("@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }", "main", "broken.wgsl:main[T=f32]")
try:
    await backend.read([(buf, 0, 16)])
    error = None
except webinfer.DeviceError as e:
    error = str(e)
backend.write_buffer(buf, 0, np.arange(4, dtype=np.float32))
again = np.frombuffer((await backend.read([(buf, 0, 16)]))[0], dtype=np.float32).tolist()
result = {"error": error, "again": again}
""")
    assert got["error"] is not None and "broken.wgsl:main[T=f32]" in got["error"], got["error"]
    assert got["again"] == [0.0, 1.0, 2.0, 3.0]  # reported once; the backend keeps working


def test_adapter_timeout_falls_back_to_cpu_and_is_remembered(py: PyPage) -> None:
    model = small_model(seed=6)
    got = py.run(f"""
import base64, time, warnings, webinfer
from webinfer.devices import gpu
try:
    await gpu.init_webgpu({{"power_preference": "low-power"}}, timeout_s=0.3)
    error = None
except webinfer.DeviceError as e:
    error = str(e)
opts = webinfer.SessionOptions(provider_options={{"webgpu": {{"power_preference": "low-power"}}}})
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    sess = webinfer.InferenceSession(base64.b64decode("{_b64(model)}"), opts, providers=["webgpu", "cpu"])
t0 = time.perf_counter()
try:
    await gpu.init_webgpu({{"power_preference": "low-power"}}, timeout_s=0.3)
except webinfer.DeviceError:
    pass
retry_s = time.perf_counter() - t0
result = {{"error": error, "providers": sess.get_providers(), "warnings": [str(w.message) for w in caught],
          "nodes_on_gpu": sess.device_stats()["nodes_on_gpu"], "retry_s": retry_s}}
""")
    if py.adapter:
        assert got["error"] == "navigator.gpu.requestAdapter() gave no answer within 0.3 s"
    assert got["providers"] == ["CPUExecutionProvider"] and got["nodes_on_gpu"] == 0
    # The session did not wait again (its own timeout would be 4 s): the remembered reason is the warning.
    assert any(w.startswith("webgpu provider unavailable, running on cpu: ") and got["error"] in w
               for w in got["warnings"]), got["warnings"]
    if py.adapter:
        assert got["retry_s"] >= 0.25  # an explicit init_webgpu does ask again


def test_readback_leaves_the_event_loop_free_and_sync_run_is_refused(py: PyPage, dist: Path) -> None:
    """PP-OCR (a small input: SwiftShader is slow) on the page's main thread: JS timers fire while the
    run awaits the GPU; the synchronous `run` cannot wait on a promise and says what to use instead."""
    if not py.adapter:
        pytest.skip("this Chromium offers no WebGPU adapter")
    img = np.random.default_rng(0).integers(0, 256, size=(64, 96, 3), dtype=np.uint8)
    x = demo_py.ppocr_preprocess(img)
    got = py.run(f"""
import base64, js, numpy as np, webinfer
from pyodide.http import pyfetch
model = await (await pyfetch("/models/ppocr_det.onnx")).bytes()
sess = webinfer.InferenceSession(model, providers=["webgpu", "cpu"])
x = np.frombuffer(base64.b64decode("{_b64(x.tobytes())}"), dtype=np.float32).reshape({list(x.shape)})
await sess.run_async(None, {{"x": x}})  # compiles the pipelines
before = js.window.ticks
y = (await sess.run_async(None, {{"x": x}}))[0]
ticks = js.window.ticks - before
try:
    sess.run(None, {{"x": x}})
    refused = None
except RuntimeError as e:
    refused = str(e)
again = (await sess.run_async(None, {{"x": x}}))[0]
result = {{"ticks": ticks, "refused": refused, "same": bool(np.array_equal(y, again)),
          "y": base64.b64encode(np.ascontiguousarray(y, dtype=np.float32).tobytes()).decode(),
          "on_gpu": sess.device_stats()["nodes_on_gpu"]}}
""")
    assert got["on_gpu"] > 0
    assert got["ticks"] >= 1, "no JS timer ran while the GPU worked: the readback blocked the event loop"
    assert got["refused"] is not None and "await session.run_async" in got["refused"]
    assert got["same"]
    ref = webinfer.InferenceSession((dist / "models" / "ppocr_det.onnx").read_bytes(), providers=["cpu"]) \
        .run(None, {"x": x})[0]
    y = np.frombuffer(base64.b64decode(got["y"]), dtype=np.float32).reshape(ref.shape)
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-3)
