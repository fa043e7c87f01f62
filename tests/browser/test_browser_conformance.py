"""onnx's node conformance cases for every op of the bundled model, run inside Pyodide in the page's worker.

The cases (model + inputs + expected outputs) are built by the onnx package
natively and handed to the demo page's worker, which loads and runs each
one with the providers asked for and returns the outputs as .npy bytes (the
same path the page's "download .npy" links use).  They are compared with
onnx's expected outputs at each case's own tolerances.  The count
per provider is written to test-artifacts/browser_conformance.json.

This is where 32-bit numpy (wasm32: np.intp is int32) or a missing
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

from tests.conformance.known_failures import KNOWN_FAILURES

from .conftest import DemoPage

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

def _npy_b64(a: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode()


def _cases(ops: set[str]) -> list[dict[str, Any]]:
    """Every node case whose graph uses only `ops` (default domain), with its first data set.

    onnx builds its node cases in memory (`collect_testcases`), with the
    tolerances its runner applies to each.
    """
    import warnings

    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the case generators overflow on purpose (cast tests, log(0), ...)
        all_cases = collect_testcases()
    cases = []
    for tc in sorted(all_cases, key=lambda c: c.name):
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
def node_cases(bundled_ops: set[str]) -> list[dict[str, Any]]:
    return _cases(bundled_ops)


@pytest.fixture(scope="module")
def bundled_ops(dist: Path) -> set[str]:
    from webinfer.info import load_info
    return {op for op in load_info(str(dist / "models" / "ppocr_det.onnx"))["op_histogram"] if "." not in op}


def _known(name: str) -> str | None:
    for pattern, reason in KNOWN_FAILURES.items():
        if re.search(pattern, f"{name}_cpu"):
            return reason
    return None


@pytest.mark.parametrize("providers", [["cpu"], ["webgpu", "cpu"]], ids=["cpu", "webgpu"])
def test_node_cases_of_bundled_ops_in_pyodide(demo: DemoPage, bundled_ops: set[str], node_cases: list[dict[str, Any]],
                                              providers: list[str], artifacts: Path) -> None:
    cases = node_cases
    assert len(cases) > 50, f"too few node cases found for {sorted(bundled_ops)}"
    payload = [{"name": c["name"], "model": base64.b64encode(c["model"]).decode(),
                "npy": {k: _npy_b64(v) for k, v in c["inputs"].items()}} for c in cases]
    results = demo.page.evaluate("""async ({cases, providers}) => {
        const worker = window.webinferDemo.state.worker;
        const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const b64 = (u8) => { let s = ""; for (let i = 0; i < u8.length; i += 0x8000)
            s += String.fromCharCode(...u8.subarray(i, i + 0x8000)); return btoa(s); };
        const out = [];
        for (const c of cases) {
            let id = null;
            try {
                const summary = await worker.call("load", {bytes: bytes(c.model), name: c.name, providers});
                id = summary.id;
                const npy = Object.fromEntries(Object.entries(c.npy).map(([k, v]) => [k, bytes(v)]));
                const r = await worker.call("run", {id, shapes: {}, npy, repeats: 1});
                out.push({name: c.name, providers: r.providers,
                          outputs: Object.fromEntries(Object.entries(r.npy).map(([k, v]) => [k, b64(v)]))});
            } catch (err) {
                out.push({name: c.name, error: err.message});
            } finally {
                if (id !== null) await worker.call("release", {id});
            }
        }
        return out;
    }""", {"cases": payload, "providers": providers})

    passed, failed, used = [], {}, set()
    for case, res in zip(cases, results):
        name = case["name"]
        try:
            if "error" in res:
                raise AssertionError(res["error"])
            used.update(res["providers"])
            for out_name, expected in case["outputs"].items():
                got = np.load(io.BytesIO(base64.b64decode(res["outputs"][out_name])), allow_pickle=False)
                assert got.dtype == expected.dtype, f"{out_name}: dtype {got.dtype}, expected {expected.dtype}"
                np.testing.assert_allclose(got, expected, rtol=case["rtol"], atol=case["atol"], err_msg=out_name)
            passed.append(name)
        except AssertionError as e:
            failed[name] = str(e).strip().splitlines()[0][:300]
    unexpected = {n: r for n, r in failed.items() if _known(n) is None}
    report_path = artifacts / "browser_conformance.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    report["+".join(providers)] = {"ops": sorted(bundled_ops), "cases": len(cases), "passed": len(passed),
                                   "failed": failed, "providers_used": sorted(used)}
    report_path.write_text(json.dumps(report, indent=1, sort_keys=True))
    print(f"\nbrowser conformance ({'+'.join(providers)}, ran on {sorted(used)}): {len(passed)}/{len(cases)} "
          f"node cases of {len(bundled_ops)} ops passed")
    assert not unexpected, f"{len(unexpected)} node case(s) failed in Pyodide: {unexpected}"
