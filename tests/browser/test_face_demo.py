"""A TFLite model in the page: MediaPipe's BlazeFace short-range, dropped in and as the face demo.

The reference is native webinfer (tests/models checks it against LiteRT).
Tolerances: the raw outputs to atol 5e-4 (measured: at most 7e-5 on cpu
and on SwiftShader; the regressors are in input pixels, up to about 100, and
Pyodide's numpy has no BLAS, the wasm GEMM and the GPU sum in other orders),
the decoded faces to 1 pixel on the 512x512 photo.  On WebGPU (SwiftShader in headless Chromium) when the page
has an adapter, on the CPU provider always.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import webinfer

from .conftest import DemoPage, _import_path, build_wasm, demo_py
from .harness import ROOT
from .test_demo_page import _counter, _drop_file, _set_providers, _wait_counter

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

face_py = _import_path("face_demo", ROOT / "web" / "src" / "face_demo.py")
MODEL = "face_detection_short_range.tflite"


@pytest.fixture(scope="module")
def model_bytes(dist: Path) -> bytes:
    return (dist / "models" / MODEL).read_bytes()


def _run_outputs(dp: DemoPage) -> dict[str, np.ndarray]:
    """The last run of the dropped-in model: its outputs from the .npy files the page offers."""
    files = dp.page.evaluate("""() => {
        const out = {};
        for (const [name, bytes] of Object.entries(window.webinferDemo.state.lastRun.npy)) {
            let s = "";
            for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
            out[name] = btoa(s);
        }
        return out;
    }""")
    return {k: np.load(io.BytesIO(base64.b64decode(v)), allow_pickle=False) for k, v in files.items()}


def _check_run(dp: DemoPage, model: bytes, providers: list[str]) -> None:
    run = dp.page.evaluate("window.webinferDemo.state.lastRun")
    assert run["providers"] == providers
    assert [(o["name"], o["shape"]) for o in run["outputs"]] == [("regressors", [1, 896, 16]),
                                                                 ("classificators", [1, 896, 1])]
    sess = webinfer.InferenceSession(model, providers=["cpu"])
    feed = demo_py.make_feed(sess, {"input": [1, 128, 128, 3]}, {})
    assert float(np.abs(feed["input"]).mean()) > 0.1  # random data, not zeros
    ref = dict(zip(["regressors", "classificators"], sess.run(None, feed)))
    got = _run_outputs(dp)
    print(f"\n{MODEL} in the page on {providers}: max |page - native| " +
          ", ".join(f"{k} {float(np.abs(got[k] - ref[k]).max()):.2e}" for k in ref) +
          f"; p50 {run['latency']['p50']:.1f} ms")
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=0, atol=5e-4, err_msg=f"{name} on {providers}")


def test_dropped_tflite_model_runs_in_the_page_and_matches_native(demo: DemoPage, model_bytes: bytes) -> None:
    """The generic path: a .tflite dropped like an .onnx, its NHWC interface shown, run on random inputs."""
    _set_providers(demo, "cpu")
    before = _counter(demo, "runs")
    _drop_file(demo, MODEL, model_bytes)
    _wait_counter(demo, "runs", before)
    assert demo.page.inner_text("#model-name") == MODEL
    summary = demo.page.evaluate("window.webinferDemo.state.user")
    assert summary["inputs"][0]["shape"] == [1, 128, 128, 3] and summary["info"]["producer"].startswith("TFLite")
    _check_run(demo, model_bytes, ["cpu"])

    _set_providers(demo, "webgpu,cpu")
    if not demo.page.evaluate("window.webinferDemo.state.adapter.available"):
        return  # the CPU run above is the whole check: this browser has no WebGPU adapter
    _settle(demo)
    before = _counter(demo, "runs")
    demo.page.fill("#model-repeats", "1")
    demo.page.click("#model-run")
    _wait_counter(demo, "runs", before)
    assert demo.page.evaluate("window.webinferDemo.state.user.nodes_gpu") > 0
    _check_run(demo, model_bytes, ["webgpu", "cpu"])


@pytest.fixture(scope="module")
def native_faces(dist: Path, model_bytes: bytes) -> list[dict[str, Any]]:
    img = demo_py.read_png((dist / "face.png").read_bytes())
    faces, _ = face_py.run_session(webinfer.InferenceSession(model_bytes, providers=["cpu"]), img)
    return faces


def _settle(dp: DemoPage) -> None:
    """Wait until nothing is in flight: a providers change reloads the dropped-in model and reruns the face
    panel after the text detector's run, which is all `_set_providers` waits for."""
    dp.page.wait_for_function("""() => !document.getElementById('providers').disabled &&
        document.getElementById('face-stats').dataset.state !== 'running'""", timeout=180_000)


def _face_run(dp: DemoPage) -> dict[str, Any]:
    _settle(dp)
    before = _counter(dp, "faces")
    dp.page.click("#face-run")
    _wait_counter(dp, "faces", before)
    assert dp.page.get_attribute("#face-stats", "data-state") == "done", dp.page.inner_text("#error")
    return dp.page.evaluate("window.webinferDemo.state.faceDemo.result")


def _check_faces(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want) >= 1
    for a, b in zip(got, want):
        for k in ("x0", "y0", "x1", "y1"):
            assert abs(a[k] - b[k]) <= 1.0, (k, a, b)
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], rtol=0, atol=1.0)
        assert abs(a["score"] - b["score"]) <= 1e-3


@pytest.mark.parametrize("providers", ["cpu", "webgpu,cpu"])
def test_face_demo_finds_the_face_and_draws_it(demo: DemoPage, native_faces: list[dict[str, Any]],
                                               providers: str, artifacts: Path) -> None:
    """Saves the panel as test-artifacts/face-<provider>.png."""
    _set_providers(demo, providers)
    if providers != "cpu" and not demo.page.evaluate("window.webinferDemo.state.adapter.available"):
        pytest.skip("this Chromium has no WebGPU adapter (the cpu case ran the face demo)")
    _settle(demo)
    demo.page.evaluate("""async () => window.webinferDemo.state.faceDemo.setImage(
        new Uint8Array(await (await fetch("face.png")).arrayBuffer()))""")  # the bundled photo, whatever ran before
    result = _face_run(demo)
    print(f"\nface demo on {providers}: {len(result['faces'])} face(s), p50 {result['latency']['p50']:.1f} ms, "
          f"box {[round(result['faces'][0][k], 1) for k in ('x0', 'y0', 'x1', 'y1')] if result['faces'] else None}")
    assert result["providers"] == providers.split(",")
    assert (result["width"], result["height"]) == (512, 512)
    _check_faces(result["faces"], native_faces)
    # The astronaut's face: upper middle of the photo, about 90 pixels wide, the eyes above the mouth.
    face = result["faces"][0]
    assert 150 < face["x0"] < face["x1"] < 300 and 50 < face["y0"] < face["y1"] < 200 and face["score"] > 0.8
    (rx, ry), (lx, ly), _, (mx, my) = face["keypoints"][:4]
    assert face["x0"] < rx < lx < face["x1"] and max(ry, ly) < my < face["y1"]
    assert demo.page.inner_text("#face-count") == "1"
    # Drawn: the box's top edge is the stroke colour on the canvas.
    r, g, b, _ = demo.page.evaluate("""({x, y}) => Array.from(document.getElementById('face-canvas')
        .getContext('2d').getImageData(x, y, 1, 1).data)""",
                                    {"x": round((face["x0"] + face["x1"]) / 2), "y": round(face["y0"])})
    assert b > 180 and b > r + 80, (r, g, b)
    if providers != "cpu":
        assert result["gpu"]["dispatches"] > 0, result["gpu"]
    # The graph view offers the TFLite model's optimized graph.
    demo.page.select_option("#graph-model", label=MODEL)
    session = demo.page.evaluate("window.webinferDemo.state.faceDemo.session")
    assert demo.page.locator("#graph svg g.node").count() == session["nodes_total"]
    assert demo.page.inner_text("#graph-title") == f"of {MODEL}"
    demo.page.locator("#face-card").screenshot(path=str(artifacts / f"face-{providers.split(',')[0]}.png"))


def test_face_demo_on_another_photo(demo: DemoPage, dist: Path, model_bytes: bytes) -> None:
    """A photo of another shape (letterboxed to 128x128 with padding) chosen with "Another photo…"."""
    img = demo_py.read_png((dist / "face.png").read_bytes())[:300, ::-1]  # wide, mirrored
    png = build_wasm.encode_png(np.ascontiguousarray(img))
    want, _ = face_py.run_session(webinfer.InferenceSession(model_bytes, providers=["cpu"]), img)
    _settle(demo)
    before = _counter(demo, "faces")
    demo.page.set_input_files("#face-image", files=[{"name": "wide.png", "mimeType": "image/png", "buffer": png}])
    _wait_counter(demo, "faces", before)
    _settle(demo)
    result = demo.page.evaluate("window.webinferDemo.state.faceDemo.result")
    assert (result["width"], result["height"]) == (512, 300)
    _check_faces(result["faces"], want)
    face = result["faces"][0]
    assert 512 - 300 < face["x0"] < face["x1"] < 512 - 150  # mirrored: the face moved right
