"""The WebAssembly GEMM kernels' speed inside Pyodide, under Node.js and in Chromium, each build it can run.

    python benchmarks/bench_wasm_gemm.py [--runs 15] [--json]

Builds the bundle (build_wasm.py), then times benchmarks/browser/gemm_bench.py
in Pyodide: under Node.js (tests/browser/node_python.mjs; Node 20 validates
SIMD128 only) and on a Chromium page's main thread (relaxed SIMD and SIMD128).
Medians of `--runs` products with B packed ahead, as constant weights are;
numpy's matmul (no BLAS in Pyodide) on 128x384x1536 for comparison.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import build_wasm  # noqa: E402
from tests.browser.harness import DemoServer, launch_options  # noqa: E402

BENCH = ROOT / "benchmarks" / "browser" / "gemm_bench.py"
NODE_PYTHON = ROOT / "tests" / "browser" / "node_python.mjs"
PAGES = ROOT / "tests" / "browser" / "pages"


def node_results(dist: Path, runs: int) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        return []
    proc = subprocess.run([node, str(NODE_PYTHON), str(dist), str(BENCH), f"m.measure('simd128', {runs})"],
                          capture_output=True, text=True, timeout=600, check=True)
    return [{"where": "node", **json.loads(proc.stdout.strip().splitlines()[-1])}]


def chromium_results(dist: Path, runs: int) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    out = []
    with DemoServer(dist, mounts={"/tests": PAGES}) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(**launch_options())
        page = browser.new_page()
        page.set_default_timeout(300_000)
        page.goto(server.url + "tests/python.html")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=180_000)
        page.evaluate("(src) => { window.pyodide.FS.mkdirTree('/work/py'); "
                      "window.pyodide.FS.writeFile('/work/py/gemm_bench.py', src); }", BENCH.read_text())
        for variant in build_wasm.WASM_VARIANTS:
            code = ("import sys, json\nsys.path.insert(0, '/work/py')\nimport gemm_bench\n"
                    f"json.dumps(await gemm_bench.measure({variant!r}, {runs}))")
            out.append({"where": "chromium", **json.loads(page.evaluate("(c) => window.runPython(c)", code))})
        browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    dist = ROOT / "web" / "dist"
    build_wasm.build(dist)
    results = node_results(dist, args.runs) + chromium_results(dist, args.runs)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'where':<10}{'backend':<20}{'M x K x N':<17}{'median ms':>10}{'GFLOP/s':>9}{'pack ms':>9}{'numpy ms':>10}")
    for res in results:
        for r in res["rows"]:
            shape = "x".join(map(str, r["shape"]))
            numpy_ms = f"{r['numpy_ms']:.0f}" if "numpy_ms" in r else "-"
            print(f"{res['where']:<10}{res['backend']:<20}{shape:<17}{r['ms']:>10.2f}{r['gflops']:>9.1f}"
                  f"{r['pack_ms']:>9.2f}{numpy_ms:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
