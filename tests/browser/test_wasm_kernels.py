"""The WebAssembly kernels (wasm/*.c): how build_wasm.py builds and checks them, their results inside
Pyodide under Node.js and in Chromium against numpy float64 (tests/browser/wasm_checks.py, one file for
both), the demo's Web Worker running on them, and whole models under Node.js against onnxruntime."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from .conftest import build_wasm
from .harness import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

HERE = Path(__file__).resolve().parent
CHECKS = HERE / "wasm_checks.py"
NODE_PYTHON = HERE / "node_python.mjs"
KERNEL_FILES = {f"{src.stem}-{v}.wasm" for src in (ROOT / "wasm").glob("*.c") for v in build_wasm.WASM_VARIANTS}


def test_kernels_build_byte_identical_and_safe(tmp_path: Path) -> None:
    """Two builds from different folders give the same bytes; each imports only env.memory, has no data."""
    first = build_wasm.wasm_kernels()
    shutil.copytree(ROOT / "wasm", tmp_path / "elsewhere")
    assert build_wasm.wasm_kernels(tmp_path / "elsewhere") == first
    assert set(first) == KERNEL_FILES
    for name, data in first.items():
        assert build_wasm.wasm_imports(data) == [("env", "memory", 2)], name
        assert build_wasm._DATA not in build_wasm.wasm_sections(data), name
        family = name.rsplit("-", 1)[0]
        assert set(build_wasm.wasm_exports(data)) == {"gemm": {"pack_b", "gemm_packed"}, "elementwise": {"gelu", "bias_act", "binary"},
                                                         "conv": {"depthwise2d", "im2col_panels"},
                                                         "qgemm": {"pack_i8", "qgemm"},
                                                         "rows": {"softmax", "layernorm"}}[family]


@pytest.mark.parametrize("source, message", [
    ("static const float T[5] = {1, 2, 3, 4, 5};\n"
     "__attribute__((export_name(\"f\"))) float f(unsigned i) { return T[i % 5]; }", "data segment"),
    ("void g(float *p);\n"
     "__attribute__((export_name(\"f\"))) float f(unsigned i) { float t[64]; g(t); return t[i % 64]; }\n"
     "__attribute__((noinline)) void g(float *p) { for (int j = 0; j < 64; j++) p[j] = j; }", "stack pointer"),
    ("__attribute__((export_name(\"f\"))) float f(float x) { return x; }\n"
     "__attribute__((export_name(\"h\"))) float h(float x) { return -x; }\n", None),
])
def test_build_rejects_kernels_that_would_write_pyodide_memory(tmp_path: Path, source: str,
                                                               message: str | None) -> None:
    (tmp_path / "k.c").write_text(source)
    if message is None:
        assert set(build_wasm.wasm_exports(build_wasm.compile_kernel(tmp_path / "k.c", "simd128"))) == {"f", "h"}
        return
    with pytest.raises(build_wasm.BuildError, match=message):
        build_wasm.compile_kernel(tmp_path / "k.c", "simd128")


def test_wheel_ships_the_kernels(dist: Path) -> None:
    import zipfile
    lock = json.loads((dist / "pyodide" / "pyodide-lock.json").read_text())
    names = zipfile.ZipFile(dist / "pyodide" / lock["packages"]["webinfer"]["file_name"]).namelist()
    assert {f"webinfer/wasm/{n}" for n in KERNEL_FILES} <= set(names)
    assert not any(n.endswith(".c") for n in names)


def _node_python(node: str, dist: Path, expression: str) -> Any:
    proc = subprocess.run([node, str(NODE_PYTHON), str(dist), str(CHECKS), expression], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_kernels_under_node(dist: Path, node_path: str) -> None:
    """Node.js 20 (V8 11.3) has no relaxed SIMD: feature detection picks the SIMD128 build."""
    got = _node_python(node_path, dist, 'm.check(["relaxed", "simd128"])')
    assert got["failures"] == [] and got["count"] > 300, got
    assert got["backend"] == "wasm-simd128"
    assert _node_python(node_path, dist, "m.sync_load()") == "wasm-simd128"  # without init_wasm


@pytest.fixture(scope="module")
def page(browser: Any, server_url: str) -> Iterator[Any]:
    """tests/python.html: Pyodide with webinfer on a page's main thread, wasm_checks.py in its file system."""
    context = browser.new_context()
    pg = context.new_page()
    pg.set_default_timeout(180_000)
    pg.goto(server_url + "tests/python.html")
    pg.wait_for_function("document.body.dataset.state === 'ready'", timeout=180_000)
    pg.evaluate("(src) => { window.pyodide.FS.mkdirTree('/work/py'); "
                "window.pyodide.FS.writeFile('/work/py/wasm_checks.py', src); }", CHECKS.read_text())
    yield pg
    context.close()


def _page_check(page: Any, variants: list[str]) -> dict:
    code = ("import sys, json\nsys.path.insert(0, '/work/py')\nimport wasm_checks\n"
            f"json.dumps(await wasm_checks.check({variants!r}))")
    return json.loads(page.evaluate("(code) => window.runPython(code)", code))


def test_loader_initialises_the_kernels_in_chromium(page: Any) -> None:
    """webinfer.mjs awaited init_wasm: Chromium validates relaxed SIMD, so that build runs."""
    got = page.evaluate("() => window.runPython('from webinfer import gemm\\ngemm.describe()')")
    assert got == "wasm-relaxed-simd"


@pytest.mark.parametrize("variant, backend", [("relaxed", "wasm-relaxed-simd"), ("simd128", "wasm-simd128")])
def test_kernels_in_chromium(page: Any, variant: str, backend: str) -> None:
    got = _page_check(page, [variant])
    assert got["failures"] == [] and got["count"] > 300, got
    assert got["backend"] == backend


def test_first_product_loads_the_kernels_without_init_in_chromium(page: Any) -> None:
    """No init_wasm awaited: the first product compiles synchronously, which Chromium 156 allows on a
    page's main thread for these modules."""
    code = "import sys\nsys.path.insert(0, '/work/py')\nimport wasm_checks\nawait wasm_checks.sync_load()"
    assert page.evaluate("(c) => window.runPython(c)", code) == "wasm-relaxed-simd"


def test_demo_worker_runs_on_the_kernels(demo: Any) -> None:
    """The demo's CPU path (its Web Worker) loads the relaxed build; the footer says so."""
    assert "CPU GEMM wasm-relaxed-simd" in demo.page.inner_text("#footer")


def test_switching_the_kernels_off_falls_back_to_numpy(page: Any) -> None:
    got = _page_check(page, [])
    assert got["backend"] == "numpy" and "switched off" in got["failures"][0]
    assert _page_check(page, ["relaxed", "simd128"])["backend"] == "wasm-relaxed-simd"


def _feed(model: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    if model == "minilm":
        return {"input_ids": rng.integers(100, 30000, (1, 16)).astype(np.int64),
                "attention_mask": np.ones((1, 16), np.int64)}
    if model == "ppocr_det":
        return {"x": rng.random((1, 3, 96, 160), dtype=np.float32)}
    return {"input": rng.random((1, 3, 224, 224), dtype=np.float32)}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["minilm", "ppocr_det", "mobilenetv3_small"])
def test_model_under_node_matches_onnxruntime(dist: Path, node_path: str, tmp_path: Path, model: str) -> None:
    """Whole models through web/node/run.mjs, their MatMul/Gemm/attention (MiniLM-L6 at 16 tokens) and conv
    (PP-OCRv4 det, MobileNetV3-small) products on the kernels, against native onnxruntime.  Tolerance: 1e-4
    absolute and relative, float32 sums in another order than onnxruntime's."""
    ort = pytest.importorskip("onnxruntime")
    path = Path.home() / ".cache" / "webinfer" / "models" / f"{model}.onnx"
    if not path.exists():
        pytest.skip(f"{path.name} is not built (python tools/models.py {model})")
    feed = _feed(model)
    args = []
    for name, value in feed.items():
        np.save(tmp_path / f"{name}.npy", value)
        args += ["--input", f"{name}={tmp_path / f'{name}.npy'}"]
    proc = subprocess.run([node_path, str(ROOT / "web" / "node" / "run.mjs"), str(path), *args, "--output-dir",
                           str(tmp_path / "out"), "--dist", str(dist)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GEMM: wasm-simd128" in proc.stdout
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for out, want in zip(sess.get_outputs(), sess.run(None, feed)):
        got = np.load(tmp_path / "out" / f"{''.join(c if c.isalnum() or c in '-_.' else '_' for c in out.name)}.npy")
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=out.name)
