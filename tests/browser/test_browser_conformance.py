"""onnx's node conformance cases run inside Pyodide, in the demo page's worker, on both providers.

The cases (model + inputs + expected outputs) are built by the onnx package
natively and handed to the demo page's worker, which loads and runs each
one with the providers asked for and returns the outputs as .npy bytes (the
same path the page's "download .npy" links use).  They are compared with
onnx's expected outputs at each case's own tolerances.  The counts are
written to test-artifacts/browser_conformance.json.

- Every op of the bundled model, on cpu and on webgpu.
- Every op with a WGSL kernel, on webgpu: the browser's WebGPU through
  webinfer's browser backend, where Tint (the browsers' WGSL compiler) and
  the adapter (SwiftShader here) differ from native wgpu.

On webgpu, integer nodes may run on the GPU (as in tests/gpu), and with an
adapter every case must run entirely on the GPU except those
tests/gpu/known_failures.py lists (the same placement as natively) and
float16 ones where the adapter has no shader-f16.

This is also where 32-bit numpy (wasm32: np.intp is int32) or a missing
Pyodide module would show up, which the native suite cannot see.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from webinfer.devices.gpu.kernels import GPU_OPS

from tests.conformance.known_failures import KNOWN_FAILURES
from tests.gpu.known_failures import GPU_KNOWN_FAILURES

from .conftest import DemoPage

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def _npy_b64(a: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def onnx_cases() -> list[Any]:
    """onnx's node cases (built in memory by `collect_testcases`, with the tolerances its runner applies)."""
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators overflow on purpose (cast tests, log(0), ...)
        return sorted(collect_testcases(), key=lambda c: c.name)


def _cases(all_cases: list[Any], ops: set[str] | frozenset[str]) -> list[dict[str, Any]]:
    """Every node case whose graph uses only `ops` (default domain), with its first data set."""
    cases = []
    for tc in all_cases:
        graph = tc.model.graph
        used = {(n.domain or "", n.op_type) for n in graph.node}
        if not used or not tc.data_sets or any(d not in ("", "ai.onnx") or op not in ops for d, op in used):
            continue
        inputs, outputs = tc.data_sets[0]
        # .npy files carry plain numeric tensors: string, sequence and bfloat16/float8 cases stay native-only.
        if not all(isinstance(a, np.ndarray) and a.dtype.kind in "biufc" and a.dtype.isnative
                   and type(a.dtype).__module__ == "numpy.dtypes" for a in [*inputs, *outputs]):
            continue
        inits = {t.name for t in graph.initializer}
        in_names = [i.name for i in graph.input if i.name not in inits]
        cases.append({"name": tc.name, "model": tc.model.SerializeToString(), "rtol": tc.rtol, "atol": tc.atol,
                      "inputs": dict(zip(in_names, inputs)),
                      "outputs": dict(zip([o.name for o in graph.output], outputs))})
    return cases


@pytest.fixture(scope="module")
def bundled_ops(dist: Path) -> set[str]:
    from webinfer.info import load_info
    return {op for op in load_info(str(dist / "models" / "ppocr_det.onnx"))["op_histogram"] if "." not in op}


def _known(name: str, known: dict[str, str] = KNOWN_FAILURES) -> str | None:
    for pattern, reason in known.items():
        if re.search(pattern, f"{name}_cpu"):
            return reason
    return None


def _run_in_worker(demo: DemoPage, cases: list[dict[str, Any]], providers: list[str]) -> list[dict[str, Any]]:
    """Load and run each case in the demo's worker; its outputs as base64 .npy, placement and fallback reasons."""
    payload = [{"name": c["name"], "model": base64.b64encode(c["model"]).decode(),
                "npy": {k: _npy_b64(v) for k, v in c["inputs"].items()}} for c in cases]
    options = {"webgpu": {"integer_ops": "always"}} if "webgpu" in providers else {}
    return demo.page.evaluate("""async ({cases, providers, options}) => {
        const worker = window.webinferDemo.state.worker;
        const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const b64 = (u8) => { let s = ""; for (let i = 0; i < u8.length; i += 0x8000)
            s += String.fromCharCode(...u8.subarray(i, i + 0x8000)); return btoa(s); };
        const out = [];
        for (const c of cases) {
            let id = null;
            try {
                const summary = await worker.call("load", {bytes: bytes(c.model), name: c.name, providers,
                                                           providerOptions: options});
                id = summary.id;
                const npy = Object.fromEntries(Object.entries(c.npy).map(([k, v]) => [k, bytes(v)]));
                const r = await worker.call("run", {id, shapes: {}, npy, repeats: 1});
                out.push({name: c.name, providers: r.providers, nodes_gpu: summary.nodes_gpu,
                          nodes_total: summary.nodes_total, reasons: summary.fallback_reasons,
                          outputs: Object.fromEntries(Object.entries(r.npy).map(([k, v]) => [k, b64(v)]))});
            } catch (err) {
                out.push({name: c.name, error: err.message});
            } finally {
                if (id !== null) await worker.call("release", {id});
            }
        }
        return out;
    }""", {"cases": payload, "providers": providers, "options": options})


def _check_and_report(demo: DemoPage, label: str, ops: set[str] | frozenset[str], cases: list[dict[str, Any]],
                      providers: list[str], artifacts: Path, known: dict[str, str]) -> None:
    """Compare with onnx's expected outputs, write the counts, fail on an unexpected failure (or placement)."""
    results = _run_in_worker(demo, cases, providers)
    passed, failed, used, off_gpu = [], {}, set(), {}
    for case, res in zip(cases, results):
        name = case["name"]
        try:
            if "error" in res:
                raise AssertionError(res["error"])
            used.update(res["providers"])
            if res["nodes_gpu"] < res["nodes_total"]:
                off_gpu[name] = res["reasons"]
            for out_name, expected in case["outputs"].items():
                got = np.load(io.BytesIO(base64.b64decode(res["outputs"][out_name])), allow_pickle=False)
                assert got.dtype == expected.dtype, f"{out_name}: dtype {got.dtype}, expected {expected.dtype}"
                np.testing.assert_allclose(got, expected, rtol=case["rtol"], atol=case["atol"], err_msg=out_name)
            passed.append(name)
        except AssertionError as e:
            failed[name] = str(e).strip().splitlines()[0][:300]
    unexpected = {n: r for n, r in failed.items() if _known(n, known) is None}
    all_on_gpu = [n for n in passed if n not in off_gpu]
    entry = {"ops": sorted(ops), "cases": len(cases), "passed": len(passed), "failed": failed,
             "providers_used": sorted(used)}
    if "webgpu" in providers:
        entry.update(passed_all_on_gpu=len(all_on_gpu), not_all_on_gpu=off_gpu)
    report_path = artifacts / "browser_conformance.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report[label] = entry
    report_path.write_text(json.dumps(report, indent=1, sort_keys=True))
    gpu_note = f", {len(all_on_gpu)} of them with every node on the GPU" if "webgpu" in providers else ""
    print(f"\nbrowser conformance, {label} (ran on {sorted(used)}): {len(passed)}/{len(cases)} node cases of "
          f"{len(ops)} ops passed{gpu_note}")
    assert not unexpected, f"{len(unexpected)} node case(s) failed in Pyodide: {unexpected}"
    if "webgpu" in providers and demo.page.evaluate("window.webinferDemo.state.adapter.available"):
        # The same placement as the native GPU suite: only its known cases leave the GPU, and float16
        # ones on an adapter without shader-f16 (SwiftShader).
        stray = {n: r for n, r in off_gpu.items() if _known(n, GPU_KNOWN_FAILURES) is None
                 and not all("float16 tensors have no GPU storage type" in why for why in r.values())}
        assert not stray, f"node case(s) not entirely on the browser's GPU: {stray}"


@pytest.mark.parametrize("providers", [["cpu"], ["webgpu", "cpu"]], ids=["cpu", "webgpu"])
def test_node_cases_of_bundled_ops_in_pyodide(demo: DemoPage, onnx_cases: list[Any], bundled_ops: set[str],
                                              providers: list[str], artifacts: Path) -> None:
    cases = _cases(onnx_cases, bundled_ops)
    assert len(cases) > 50, f"too few node cases found for {sorted(bundled_ops)}"
    _check_and_report(demo, "+".join(providers), bundled_ops, cases, providers, artifacts, KNOWN_FAILURES)


def test_node_cases_of_every_gpu_kernel_on_browser_webgpu(demo: DemoPage, onnx_cases: list[Any],
                                                          artifacts: Path) -> None:
    """Every case whose ops all have a WGSL kernel, on the browser's WebGPU (~800 cases, ~20 s)."""
    if not demo.page.evaluate("window.webinferDemo.state.adapter.available"):
        pytest.skip("this Chromium offers no WebGPU adapter: the webgpu provider falls back to the cpu")
    cases = _cases(onnx_cases, GPU_OPS)
    assert len(cases) > 500, f"too few node cases found for the {len(GPU_OPS)} ops with a WGSL kernel"
    _check_and_report(demo, "webgpu+cpu, every op with a WGSL kernel", GPU_OPS, cases, ["webgpu", "cpu"], artifacts,
                      KNOWN_FAILURES)
