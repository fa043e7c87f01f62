"""webinfer (Pyodide) next to onnxruntime-web in the same Chromium, on the same models and inputs.

    python benchmarks/bench_browser.py [--models ppocr minilm128 mobilenetv3] [--runs 5] [--warmup 5]
                                       [--gpu-runs 2] [--gpu-warmup 0] [--ort-threads 1 default]
                                       [--node] [--node-warmup 8] [--timeout 300] [--cold 1] [--json]

One table: runtime init (Pyodide + numpy + webinfer, and for webgpu opening
webinfer's device; onnxruntime-web's module import), session load, first
run, median and p90 latency, the largest difference of the first output
from native onnxruntime on the same inputs, and for webinfer the nodes on
the GPU and the GPU dispatches per run.  Rows: webinfer cpu (numpy in
Pyodide, matrix products, convs, epilogues, softmax and LayerNorm on the
WebAssembly SIMD kernels: gemm.py, wasm_ops.py), webinfer
cpu-numpy (the same with the kernels switched off: numpy's BLAS-less matmul,
what the cpu path was before them), webinfer webgpu (the browser's WebGPU through webinfer's browser
backend, the same WGSL kernels as native), onnxruntime-web `wasm`, and its
`webgpu` EP; the webgpu rows need an adapter (headless Chromium offers
SwiftShader, a CPU emulation of a GPU: seconds per run, so they repeat
`--gpu-runs` times, and their numbers say nothing about real GPUs; compare
the two webgpu rows with each other).  Then the cold page-to-first-result
time of the demo page (fresh browser context, nothing cached: Pyodide,
numpy, the model, the first detection).

onnxruntime-web is pinned (ORT_WEB_VERSION, integrity from the npm registry)
and unpacked into ~/.cache/webinfer/wasm.  Each case runs in a fresh page,
so one runtime's memory or a timeout cannot skew the next.  Threads: webinfer
in Pyodide is single-threaded; onnxruntime-web's wasm rows run once per
`--ort-threads` entry (a number, or `default`: its own choice,
min(4, ceil(cores / 2)), which the `thr` column shows; more than one needs
cross-origin isolation, which the bench server's COOP/COEP headers give).

`--node` adds the same comparison under Node.js (benchmarks/browser/bench_node.mjs,
one process per row): webinfer from the bundle (Pyodide + the wheel, the
SIMD128 kernels: Node 20 has no relaxed SIMD) against onnxruntime-web's wasm
backend.  onnxruntime-web under Node tiers its code up over several runs,
so those rows warm up `--node-warmup` times.
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

import build_wasm  # noqa: E402
import models as model_builder  # noqa: E402
from tests.browser.harness import DemoServer, launch_options  # noqa: E402

ORT_WEB_VERSION = "1.30.0"
#: `npm view onnxruntime-web@1.30.0 dist.integrity`
ORT_WEB_INTEGRITY = "sha512-q0y+JrrtukXSzsBWEMccVfqX25LRmosXHF+CaRJmg8pZClzcV7svNc4rKY3jL02Vb7QmRMDs1SigqR4CXAfKYQ=="


def _minilm_feed() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"input_ids": rng.integers(1000, 3000, size=(1, 128)).astype(np.int64),
            "attention_mask": np.ones((1, 128), dtype=np.int64)}


#: case -> (model name in tools/models.py, feed maker)
CASES: dict[str, tuple[str, Callable[[], dict[str, np.ndarray]]]] = {
    "ppocr": ("ppocr_det", lambda: {"x": np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)}),
    "minilm128": ("minilm", _minilm_feed),
    "mobilenetv3": ("mobilenetv3_small",
                    lambda: {"input": np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)}),
}


def ort_web_dir(cache: Path) -> Path:
    """onnxruntime-web's dist/ (the .mjs and .wasm files), from `npm pack`, verified, cached."""
    out = cache / f"onnxruntime-web-{ORT_WEB_VERSION}"
    stamp = out / ".integrity"
    if stamp.exists() and stamp.read_text() == ORT_WEB_INTEGRITY:
        return out
    name = f"onnxruntime-web-{ORT_WEB_VERSION}.tgz"
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        tgz = cache / name
        if not (tgz.exists() and build_wasm.sri_sha512(tgz) == ORT_WEB_INTEGRITY):
            build_wasm._run(["npm", "pack", f"onnxruntime-web@{ORT_WEB_VERSION}", "--pack-destination", tmp,
                             "--loglevel", "error"])
            got = Path(tmp) / name
            actual = build_wasm.sri_sha512(got)
            if actual != ORT_WEB_INTEGRITY:
                raise build_wasm.BuildError(f"onnxruntime-web@{ORT_WEB_VERSION} has integrity {actual}, "
                                            f"expected {ORT_WEB_INTEGRITY}")
            got.replace(tgz)
        staging = Path(tmp) / "dist"
        staging.mkdir()
        with tarfile.open(tgz) as t:
            for m in t.getmembers():
                rel = m.name.removeprefix("package/dist/")
                if m.isfile() and m.name.startswith("package/dist/") and rel.endswith((".mjs", ".wasm")):
                    (staging / rel).write_bytes(t.extractfile(m).read())  # type: ignore[union-attr]
        (staging / ".integrity").write_text(ORT_WEB_INTEGRITY)
        if out.exists():
            shutil.rmtree(out)
        staging.replace(out)
    return out


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def native_reference(model: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, feed)[0], dtype=np.float32)


def run_case(browser: Any, base: str, fn: str, args: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """One case in a fresh page; {'error': ...} on failure or timeout."""
    page = browser.new_page()
    try:
        page.goto(base + "bench/bench.html")
        page.wait_for_function("document.body.dataset.state === 'ready'", timeout=30_000)
        page.set_default_timeout(timeout_s * 1000)
        return page.evaluate(f"""async (args) => {{
            const timeout = new Promise((_, reject) =>
                setTimeout(() => reject(new Error("timed out after {timeout_s:.0f} s")), {timeout_s * 1000}));
            try {{
                return await Promise.race([window.bench.{fn}(args), timeout]);
            }} catch (err) {{
                const lines = String(err?.message ?? err).trim().split("\\n");  // a Python traceback: its last line
                return {{error: lines[lines.length - 1]}};
            }}
        }}""", args)
    except Exception as e:  # noqa: BLE001 - reported in the table, the other cases go on
        return {"error": str(e).splitlines()[0]}
    finally:
        page.close()


def run_node(args: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """One Node.js row (benchmarks/browser/bench_node.mjs) in its own process; {'error': ...} on failure."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(args, f)
    try:
        proc = subprocess.run(["node", str(ROOT / "benchmarks" / "browser" / "bench_node.mjs"), f.name],
                              capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    except FileNotFoundError:
        return {"error": "node is not installed"}
    finally:
        Path(f.name).unlink()
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if "Error" in ln and len(ln) < 500] or \
            proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return {"error": f"exit {proc.returncode}: {lines[-1].strip()}"}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as e:
        return {"error": f"unreadable reply ({e}): {proc.stdout[-200:]!r}"}


def _threads(value: str) -> int | None:
    """An --ort-threads entry: a thread count, or None for onnxruntime-web's default."""
    return None if value == "default" else int(value)


def cold_start(browser: Any, base: str) -> dict[str, float]:
    """The demo page in a fresh context (empty HTTP cache): navigation to the first detection drawn."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        t0 = time.perf_counter()
        page.goto(base)
        page.wait_for_function("() => ['ready', 'failed'].includes(document.body.dataset.state)", timeout=300_000)
        wall = (time.perf_counter() - t0) * 1e3
        timings = page.evaluate("window.webinferDemo.state.timings")
        return {"first_result_ms": timings.get("firstResultMs") or float("nan"),
                "runtime_ready_ms": timings.get("readyMs") or float("nan"), "wall_ms": wall,
                "state": page.get_attribute("body", "data-state")}
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=5,
                   help="warm-up runs after the first (onnxruntime-web's large module tiers up over several)")
    p.add_argument("--gpu-runs", type=int, default=2, help="timed runs of the webgpu rows (SwiftShader is slow)")
    p.add_argument("--gpu-warmup", type=int, default=0, help="warm-up runs of the webgpu rows, after the first run")
    p.add_argument("--ort-threads", nargs="+", default=["1", "default"],
                   help="onnxruntime-web wasm thread counts, one row each ('default': its own choice)")
    p.add_argument("--node", action="store_true", help="also webinfer and onnxruntime-web wasm under Node.js")
    p.add_argument("--node-warmup", type=int, default=8, help="warm-up runs of the Node.js rows")
    p.add_argument("--timeout", type=float, default=300, help="seconds per case")
    p.add_argument("--cold", type=int, default=1, help="cold page-to-first-result measurements")
    p.add_argument("--skip", nargs="*", default=[], help="rows to leave out, e.g. ort-web:webgpu")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from playwright.sync_api import sync_playwright

    dist = ROOT / "web" / "dist"
    build_wasm.build(dist)
    ort_dir = ort_web_dir(build_wasm.cache_root())
    models_dir = model_builder.cache_dir()
    paths = {c: model_builder.model_path(CASES[c][0]) for c in args.models}

    rows: list[dict[str, Any]] = []
    with DemoServer(dist, models_dir, {"/ort": ort_dir, "/bench": ROOT / "benchmarks" / "browser"}) as server, \
            sync_playwright() as pw:
        browser = pw.chromium.launch(**launch_options())
        probe = browser.new_page()
        probe.goto(server.url + "bench/bench.html")
        probe.wait_for_function("document.body.dataset.state === 'ready'")
        adapter = probe.evaluate("window.bench.adapterInfo()")
        probe.close()
        threads = [_threads(t) for t in args.ort_threads]
        # (runtime, ep, onnxruntime-web threads or None: its default)
        runtimes: list[tuple[str, str, int | None]] = [("webinfer", "cpu", None), ("webinfer", "cpu-numpy", None)]
        if adapter:
            runtimes.append(("webinfer", "webgpu", None))
        runtimes += [("ort-web", "wasm", t) for t in threads]
        if adapter:
            runtimes.append(("ort-web", "webgpu", 1))
        if args.node:
            runtimes += [("webinfer", "node-cpu", None)] + [("ort-web", "node-wasm", t) for t in threads]
        runtimes = [r for r in runtimes if f"{r[0]}:{r[1]}" not in args.skip]
        for case in args.models:
            feed = CASES[case][1]()
            ref = native_reference(paths[case], feed)
            feeds = [{"name": k, "dtype": str(v.dtype), "shape": list(v.shape), "b64": _b64(v)} for k, v in feed.items()]
            for runtime, ep, n_threads in runtimes:
                gpu = ep == "webgpu"
                common = {"modelUrl": f"/models/{paths[case].name}", "feeds": feeds,
                          "runs": args.gpu_runs if gpu else args.runs,
                          "warmup": args.gpu_warmup if gpu else args.warmup}
                if ep.startswith("node-"):
                    res = run_node({"runtime": "webinfer" if runtime == "webinfer" else "ort", "dist": str(dist),
                                    "ortDir": str(ort_dir), "modelPath": str(paths[case]), "feeds": feeds,
                                    "runs": args.runs, "warmup": args.node_warmup, "threads": n_threads},
                                   args.timeout)
                elif runtime == "webinfer":
                    res = run_case(browser, server.url, "runWebinfer",
                                   {**common, "providers": ["webgpu", "cpu"] if ep == "webgpu" else ["cpu"],
                                    "wasmVariants": [] if ep == "cpu-numpy" else None},
                                   args.timeout)
                    if "error" not in res and ep.removesuffix("-numpy") not in res["providers"]:
                        res = {"error": f"fell back to {','.join(res['providers'])}: webinfer could not open "
                                        "this browser's WebGPU device"}
                else:
                    res = run_case(browser, server.url, "runOrt", {**common, "ep": ep, "threads": n_threads},
                                   args.timeout)
                row: dict[str, Any] = {"model": case, "runtime": runtime, "ep": ep,
                                       "asked_threads": "default" if n_threads is None else n_threads}
                if "error" in res:
                    row["error"] = res["error"]
                else:
                    out = np.frombuffer(base64.b64decode(res["output"]), dtype=np.float32)
                    diff = float(np.max(np.abs(out - ref.ravel()))) if out.size == ref.size else float("nan")
                    row.update(init_ms=res["init_ms"], load_ms=res["load_ms"], first_ms=res["first_ms"],
                               gemm=res.get("gemm", "-"),
                               median_ms=statistics.median(res["times_ms"]),
                               p90_ms=float(np.percentile(res["times_ms"], 90)), max_abs_diff=diff,
                               runs=len(res["times_ms"]), threads=res.get("threads", 1))
                    if runtime == "webinfer":
                        row.update(nodes_gpu=res["nodes_gpu"], nodes_total=res["nodes_total"],
                                   dispatches=res["dispatches"])
                rows.append(row)
                print(f"  {case} {runtime}:{ep} threads={row['asked_threads']} done", file=sys.stderr, flush=True)
        cold = [cold_start(browser, server.url) for _ in range(args.cold)]
        browser.close()

    if args.json:
        print(json.dumps({"adapter": adapter, "ort_web": ORT_WEB_VERSION, "ort_threads": args.ort_threads,
                          "rows": rows, "cold": cold}, indent=2))
        return 0
    print(f"Chromium, WebGPU adapter: {adapter or 'none'}; onnxruntime-web {ORT_WEB_VERSION} "
          f"(wasm threads: {', '.join(args.ort_threads)}); runs={args.runs} warmup={args.warmup}, "
          f"webgpu rows runs={args.gpu_runs} warmup={args.gpu_warmup}"
          + (f", Node.js rows warmup={args.node_warmup}" if args.node else ""))
    head = f"{'model':<13}{'runtime:ep':<19}{'thr':>4}{'init ms':>9}{'load ms':>9}{'first ms':>10}{'median ms':>11}" \
           f"{'p90 ms':>9}{'max|diff|':>11}{'GPU nodes':>11}{'dispatches':>12}  GEMM"
    print(head)
    print("-" * len(head))
    for r in rows:
        name = f"{r['runtime']}:{r['ep']}"
        if "error" in r:
            print(f"{r['model']:<13}{name:<19}{r['asked_threads']!s:>4}  {r['error'][:200]}")
            continue
        nodes = f"{r['nodes_gpu']}/{r['nodes_total']}" if "nodes_gpu" in r else "-"
        dispatches = r.get("dispatches")
        print(f"{r['model']:<13}{name:<19}{r['threads']:>4}{r['init_ms']:>9.0f}{r['load_ms']:>9.0f}{r['first_ms']:>10.0f}"
              f"{r['median_ms']:>11.1f}{r['p90_ms']:>9.1f}{r['max_abs_diff']:>11.1e}{nodes:>11}"
              f"{dispatches if dispatches is not None else '-':>12}  {r.get('gemm', '-')}")
    for case in args.models:
        ok = [r for r in rows if r["model"] == case and "error" not in r]
        for ours_ep, peer_ep in (("cpu", "wasm"), ("node-cpu", "node-wasm")):
            ours = next((r for r in ok if r["runtime"] == "webinfer" and r["ep"] == ours_ep), None)
            for peer in (r for r in ok if r["runtime"] == "ort-web" and r["ep"] == peer_ep):
                if ours:
                    print(f"{case}: webinfer {ours_ep} / onnxruntime-web {peer_ep} ({peer['asked_threads']} threads: "
                          f"{peer['threads']}) = {ours['median_ms'] / peer['median_ms']:.2f}x")
        by = {(r["runtime"], r["ep"]): r for r in ok}
        ours, peer = by.get(("webinfer", "webgpu")), by.get(("ort-web", "webgpu"))
        if ours and peer:
            print(f"{case}: webinfer webgpu median / onnxruntime-web webgpu median = "
                  f"{ours['median_ms'] / peer['median_ms']:.2f}x (same adapter; target <= 2x)")
    for c in cold:
        print(f"cold page-to-first-result (demo page, fresh context): {c['first_result_ms'] / 1e3:.2f} s "
              f"(runtime ready at {c['runtime_ready_ms'] / 1e3:.2f} s; state {c['state']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
