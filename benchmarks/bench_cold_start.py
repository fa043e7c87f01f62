"""Cold start of the demo page on the CPU path: page to first result, and where the time goes.

    python benchmarks/bench_cold_start.py [--repeats 3] [--json]

Opens the demo page with `?providers=cpu` (the WebGPU adapter is not asked
for: what a browser without WebGPU gets) in a fresh browser context each
time (empty HTTP cache), and prints, per visit and as medians: Chromium's
start (once, listed apart); the page's script starting (ms from navigation:
`page`, off the critical path since index.html starts the worker itself) and
the worker beginning to load Pyodide (ms from navigation: `worker`); the
worker's stages: Pyodide
and the numpy and webinfer wheels (fetched while it starts, installed once
it is up: `pyodide`), `import numpy, webinfer` (`webinfer`), the wasm kernels compiled and warmed
up (`kernels`), the demo module, the WebGPU adapter (0: not asked for);
then waiting for the model's bytes (fetched in parallel from the start),
the session load, the first detection, and the page's own marks: runtime
ready and first result, in ms since navigation began.  A second
visit in the same context shows what the HTTP cache adds.
`--compare-without-bytecode` also serves a copy of the bundle with the .py-only
stdlib and wheels (what it shipped before bytecode was compiled ahead) and
alternates visits between the two, so both see the same machine load.
`--baseline DIR` does the same with an earlier build's web/dist copied to DIR
(`cp -r web/dist DIR` before a change): a before/after of the change.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import build_wasm  # noqa: E402
from tests.browser.harness import DemoServer, launch_options  # noqa: E402

#: The breakdown's columns: the worker's stages (webinfer.mjs STAGES, then the adapter), then the page's.
#: `numpy` (the wheels loaded after Pyodide) is only in builds before they were loaded with it (--baseline).
STAGES = ["page", "worker", "pyodide", "numpy", "webinfer", "kernels", "demo", "webgpu", "modelFetchWait",
          "modelLoad", "firstRun"]


def visit(context: Any, url: str) -> dict[str, Any]:
    """One navigation to the demo page on the CPU path, until its first detection is drawn."""
    page = context.new_page()
    try:
        page.goto(url + "?providers=cpu")
        page.wait_for_function("() => ['ready', 'failed'].includes(document.body.dataset.state)", timeout=300_000)
        if page.get_attribute("body", "data-state") != "ready":
            raise RuntimeError(f"the demo page failed: {page.inner_text('#error')}")
        t = page.evaluate("window.webinferDemo.state.timings")
        provider = page.inner_text("#det-provider")
        if provider != "cpu":
            raise RuntimeError(f"the first detection ran on {provider}, not the cpu")
        return {"first_result_ms": t["firstResultMs"], "ready_ms": t["readyMs"], **t["stages"]}
    finally:
        page.close()


def without_bytecode(dist: Path, out: Path) -> Path:
    """A copy of dist serving the .py-only originals (Pyodide's python_stdlib.zip, the upstream numpy wheel,
    the plain webinfer wheel) under its lock file: the build before bytecode compiled ahead, to compare."""
    shutil.copytree(dist, out)
    cache = build_wasm.cache_root()
    lock_path = out / "pyodide" / "pyodide-lock.json"
    lock = json.loads(lock_path.read_text())
    shutil.copyfile(cache / f"pyodide-{build_wasm.PYODIDE_VERSION}" / "python_stdlib.zip",
                    out / "pyodide" / "python_stdlib.zip")
    shutil.copyfile(cache / build_wasm.NUMPY_WHEEL, out / "pyodide" / build_wasm.NUMPY_WHEEL)
    wheel = build_wasm.webinfer_wheel(cache, build_wasm.Report())
    shutil.copyfile(wheel, out / "pyodide" / wheel.name)
    lock["packages"]["numpy"]["sha256"] = build_wasm.NUMPY_SHA256
    lock["packages"]["webinfer"]["sha256"] = build_wasm.sha256_bytes(wheel.read_bytes())
    lock_path.write_text(json.dumps(lock))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="fresh-context visits (each followed by a cached one)")
    p.add_argument("--compare-without-bytecode", action="store_true",
                   help="also the same bundle with .py-only stdlib and wheels, visits alternating")
    p.add_argument("--baseline", type=Path, help="also an earlier build's web/dist copied here, visits alternating")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from playwright.sync_api import sync_playwright

    dist = ROOT / "web" / "dist"
    build_wasm.build(dist)
    #: variant -> (fresh visits, cached visits)
    results: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        dists = {"build": dist}
        if args.baseline:
            if not (args.baseline / "index.html").is_file():
                p.error(f"--baseline {args.baseline}: no index.html there (copy a built web/dist)")
            dists["baseline"] = args.baseline
        if args.compare_without_bytecode:
            dists["no-bytecode"] = without_bytecode(dist, Path(tmp) / "dist")
        urls = {name: stack.enter_context(DemoServer(d)).url for name, d in dists.items()}
        pw = stack.enter_context(sync_playwright())
        t0 = time.perf_counter()
        browser = pw.chromium.launch(**launch_options())
        browser.new_page().close()
        chromium_ms = (time.perf_counter() - t0) * 1e3
        for i in range(args.repeats):
            order = list(urls) if i % 2 == 0 else list(reversed(urls))  # alternate which goes first
            for name in order:
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                try:
                    fresh, cached = results.setdefault(name, ([], []))
                    fresh.append(visit(context, urls[name]))
                    cached.append(visit(context, urls[name]))
                finally:
                    context.close()
        browser.close()

    if args.json:
        print(json.dumps({"chromium_ms": chromium_ms,
                          "variants": {k: {"fresh": f, "cached": c} for k, (f, c) in results.items()}}, indent=2))
        return 0
    print(f"Chromium start (not counted below): {chromium_ms:.0f} ms; demo page ?providers=cpu, PP-OCRv4 det "
          f"on the 288x512 sample; ms")
    cols = STAGES + ["ready_ms", "first_result_ms"]
    width = {c: max(9, len(c) + 1) for c in cols}
    head = f"{'visit':<22}" + "".join(f"{c.removesuffix('_ms'):>{width[c]}}" for c in cols)
    print(head)
    print("-" * len(head))
    for variant, (cold, cached) in results.items():
        for name, visits in (("fresh", cold), ("cached", cached)):
            label = f"{variant} {name}"
            for v in visits:
                print(f"{label:<22}" + "".join(f"{v.get(c, float('nan')):>{width[c]}.0f}" for c in cols))
            med = {c: statistics.median(v.get(c, float("nan")) for v in visits) for c in cols}
            print(f"{label + ' median':<22}" + "".join(f"{med[c]:>{width[c]}.0f}" for c in cols))
    for variant, (cold, _) in results.items():
        print(f"{variant}: page to first result, fresh context, median: "
              f"{statistics.median(v['first_result_ms'] for v in cold) / 1e3:.2f} s (target <= 3 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
