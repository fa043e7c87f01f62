"""`webinfer serve` under load, next to KServe's ModelServer wrapping onnxruntime on the same models.

    python benchmarks/bench_serve.py [--peer-python PYTHON | --no-peer] [--models small minilm]
                                     [--concurrency 1 4 16] [--duration 6] [--repeats 1] [--soak 5000]
                                     [--no-faults] [--json] [--instances N] [--intra-op-threads T]

Localhost only, bounded (about `duration` x `repeats` seconds per point and
server; with repeats the servers take turns, and the table gives medians).  Both servers
run as subprocesses; one closed-loop driver (asyncio + httpx, v2 JSON
requests, fixed seeded inputs, 5 warm-up requests before each point) measures
throughput and client-side P50/P90/P99 latency at each concurrency for

- `small`: a generated MLP (256 -> 256 -> 64, float32, batch 1 per request);
- `minilm`: all-MiniLM-L6-v2 at seq 128 (~/.cache/webinfer/models/minilm.onnx,
  made by tools/models.py), asking for `sentence_embedding` only;

with webinfer's dynamic batching off and on (max_batch_size 16, max queue
delay 2 ms / 5 ms), and KServe + onnxruntime (`--peer-python`: a python with
`kserve` and `onnxruntime`, by default this one when it has them; KServe's
ModelServer has no in-process batcher, and binds 0.0.0.0: it has no host
option).
webinfer's models take the server's default instances and threads (one
instance on all usable cores) unless `--instances` / `--intra-op-threads`
set them; the peer keeps onnxruntime's default intra-op threads.
The ratio column is webinfer's throughput over the peer's at the same
concurrency.  The avg batch column comes from webinfer's own counters
(Δinferences / Δexecutions on /metrics), ms/row from its compute time
(Δ webinfer_compute_duration_seconds_sum / Δinferences).

Then a soak (`--soak` requests on `small` batched, concurrency 8: errors,
answers matched to requests by id, RSS at the start and end from /metrics)
and a fault run (disconnects mid-body and before the answer, oversize and
partial bodies, a model raising inside batches next to good requests),
each with its counts, then a check that the server still answers and holds
no queued or in-flight request.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

CACHE = Path(os.environ.get("WEBINFER_CACHE", Path.home() / ".cache" / "webinfer" / "models"))
MAX_BODY = 1 << 20


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mlp(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array((rng.standard_normal((256, 256)) / 16).astype(np.float32), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((256, 64)) / 16).astype(np.float32), "w2")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
                           helper.make_node("MatMul", ["r", "w2"], ["y"])], "mlp",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 256])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64])], initializer=[w1, w2])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _lookup(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    table = helper.make_tensor("table", TensorProto.FLOAT, [10, 3], np.arange(30, dtype=np.float32).tolist())
    g = helper.make_graph([helper.make_node("Gather", ["table", "idx"], ["rows"])], "lookup",
                          [helper.make_tensor_value_info("idx", TensorProto.INT64, ["N"])],
                          [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["N", 3])], initializer=[table])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def build_repository(root: Path, models: list[str], serving: dict[str, int] | None = None) -> dict[str, Path]:
    """webinfer's repository (each model plain and `<name>_batched`, with the `serving` config keys) and the
    files the peer loads."""
    files: dict[str, Path] = {}
    if "small" in models:
        files["small"] = root / "small.onnx"
        _mlp(files["small"])
    if "minilm" in models:
        files["minilm"] = CACHE / "minilm.onnx"
        if not files["minilm"].is_file():
            raise SystemExit(f"{files['minilm']} is missing: build it with `python tools/models.py minilm`")
    delays = {"small": 2000, "minilm": 5000}
    repo = root / "repo"
    for name, path in files.items():
        for suffix, cfg in (("", {}), ("_batched", {"max_batch_size": 16, "max_queue_size": 256, "dynamic_batching": {
                "max_queue_delay_microseconds": delays[name]}})):
            d = repo / (name + suffix)
            d.mkdir(parents=True)
            (d / "model.onnx").symlink_to(path.resolve())
            # A deadline far past any point's length: a slow model queues, it is not timed out mid-benchmark.
            (d / "config.json").write_text(json.dumps({"max_queue_size": 256, "timeout_seconds": 600, **cfg,
                                                       **(serving or {})}))
    d = repo / "lookup"
    d.mkdir()
    _lookup(d / "model.onnx")
    (d / "config.json").write_text(json.dumps({"max_batch_size": 16, "max_queue_size": 256,
                                               "dynamic_batching": {"max_queue_delay_microseconds": 5000}}))
    return files


def request_body(model: str, rng: np.random.Generator) -> dict[str, Any]:
    if model == "small":
        return {"inputs": [{"name": "x", "shape": [1, 256], "datatype": "FP32",
                            "data": rng.standard_normal(256).astype(np.float32).tolist()}],
                "outputs": [{"name": "y"}]}
    ids = rng.integers(1000, 30000, 128).tolist()
    ids[0], ids[-1] = 101, 102
    return {"inputs": [{"name": "input_ids", "shape": [1, 128], "datatype": "INT64", "data": ids},
                       {"name": "attention_mask", "shape": [1, 128], "datatype": "INT64", "data": [1] * 128}],
            "outputs": [{"name": "sentence_embedding"}]}


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before it was ready ({url})")
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise SystemExit(f"{url} not ready after {timeout:g} s")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        text = r.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def counter(samples: dict, name: str, model: str) -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and dict(labels).get("model") == model)


HEADERS = {"Content-Type": "application/json"}


async def warm_up(url: str, model: str, body: bytes, n: int = 5) -> None:
    """A few requests before a point is measured (and before its counters are read)."""
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for _ in range(n):
            r = await client.post(f"/v2/models/{model}/infer", content=body, headers=HEADERS)
            if r.status_code != 200:
                raise SystemExit(f"{url}/v2/models/{model}/infer: warm-up got {r.status_code}: {r.text[:300]}")


async def closed_loop(url: str, model: str, body: bytes, concurrency: int, duration: float) -> dict[str, Any]:
    """`concurrency` clients, each sending its next request when the last is answered, for `duration` s."""
    import httpx

    headers = HEADERS
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as client:
        path = f"/v2/models/{model}/infer"
        latencies: list[float] = []
        errors = 0
        stop = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                t0 = time.perf_counter_ns()
                r = await client.post(path, content=body, headers=headers)
                if r.status_code == 200:
                    latencies.append((time.perf_counter_ns() - t0) / 1e6)
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    q = np.percentile(latencies, [50, 90, 99]) if latencies else [float("nan")] * 3
    return {"requests": len(latencies), "errors": errors, "throughput": len(latencies) / elapsed,
            "p50_ms": float(q[0]), "p90_ms": float(q[1]), "p99_ms": float(q[2])}


def load_table(args: argparse.Namespace, ours: str, peer: str | None) -> list[dict[str, Any]]:
    """Each point `--repeats` times, the servers taking turns (load drift on a shared machine then hits
    them alike); each figure is the median over the windows, the avg batch is over all of them."""
    rows = []
    for model in args.models:
        body = json.dumps(request_body(model, np.random.default_rng(0))).encode()
        for c in args.concurrency:
            targets = [("webinfer", ours, model), ("webinfer+batching", ours, model + "_batched")]
            if peer:
                targets.append(("kserve+onnxruntime", peer, model))
            windows: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in targets}
            batches = {label: [0.0, 0.0, 0.0] for label, _, _ in targets}
            for _, url, name in targets:
                asyncio.run(warm_up(url, name, body))
            for _ in range(args.repeats):
                for label, url, name in targets:
                    before = scrape(url) if url == ours else None
                    res = asyncio.run(closed_loop(url, name, body, c, args.duration))
                    if before is not None:
                        after = scrape(url)
                        for i, metric in enumerate(("webinfer_inferences_total", "webinfer_executions_total",
                                                    "webinfer_compute_duration_seconds_sum")):
                            batches[label][i] += counter(after, metric, name) - counter(before, metric, name)
                    windows[label].append(res)
                    print(f"  {model:<7} c={c:<3} {label:<20} {res['throughput']:8.1f}/s  p50 {res['p50_ms']:8.1f}  "
                          f"p90 {res['p90_ms']:8.1f}  p99 {res['p99_ms']:8.1f} ms  errors {res['errors']}  "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)
            point: dict[str, Any] = {}
            for label, runs in windows.items():
                res = {k: float(np.median([r[k] for r in runs])) for k in ("throughput", "p50_ms", "p90_ms", "p99_ms")}
                res.update(requests=sum(r["requests"] for r in runs), errors=sum(r["errors"] for r in runs),
                           windows=len(runs))
                infers, execs, compute_s = batches[label]
                if label != "kserve+onnxruntime":
                    res["avg_batch"] = infers / execs if execs else float("nan")
                    res["compute_ms_per_row"] = 1e3 * compute_s / infers if infers else float("nan")
                point[label] = dict(res, server=label, model=model, concurrency=c)
            peer_tp = point.get("kserve+onnxruntime", {}).get("throughput")
            for r in point.values():
                r["ratio_vs_peer"] = r["throughput"] / peer_tp if peer_tp else None
                rows.append(r)
    return rows


async def soak(url: str, n: int, concurrency: int = 8) -> dict[str, Any]:
    import httpx

    rss0 = scrape(url).get(("process_resident_memory_bytes", ()), 0.0)
    rng = np.random.default_rng(1)
    base = request_body("small", rng)
    answered: dict[str, int] = {}
    errors = 0
    todo = iter(range(n))
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        async def worker() -> None:
            nonlocal errors
            for i in todo:
                rid = f"soak-{i}"
                r = await client.post("/v2/models/small_batched/infer", json=dict(base, id=rid))
                if r.status_code != 200:
                    errors += 1
                    continue
                got = r.json()["id"]
                answered[got] = answered.get(got, 0) + 1
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    rss1 = scrape(url).get(("process_resident_memory_bytes", ()), 0.0)
    exactly_once = len(answered) == n - errors and all(v == 1 for v in answered.values()) and all(
        f"soak-{i}" in answered for i in range(n) if errors == 0)
    return {"requests": n, "errors": errors, "seconds": elapsed, "answered_exactly_once": exactly_once,
            "rss_start_mb": rss0 / 1e6, "rss_end_mb": rss1 / 1e6,
            "rss_growth": (rss1 - rss0) / rss0 if rss0 else float("nan")}


def _raw(port: int, data: bytes, read: bool, shutdown: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        if not read:
            return b""
        out = b""
        while b"\r\n\r\n" not in out:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def faults(url: str, port: int) -> dict[str, Any]:
    import concurrent.futures

    import httpx

    counts: dict[str, Any] = {}
    good = json.dumps(request_body("small", np.random.default_rng(2))).encode()
    head = (f"POST /v2/models/small_batched/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(good)}\r\n\r\n").encode()
    for _ in range(50):  # gone mid-body
        _raw(port, head + good[:len(good) // 2], read=False)
    counts["disconnect_mid_body"] = 50
    for _ in range(50):  # whole request sent, gone before the answer
        _raw(port, head + good, read=False)
    counts["disconnect_before_answer"] = 50
    partial = [_raw(port, head + good[:100], read=True, shutdown=True) for _ in range(20)]
    counts["partial_body"] = {"sent": 20, "answered_200": sum(p.startswith(b"HTTP/1.1 200") for p in partial)}
    over = [_raw(port, b"POST /v2/models/small/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                 % (MAX_BODY + 1), read=True) for _ in range(20)]
    counts["oversize_declared"] = {"sent": 20, "413": sum(o.startswith(b"HTTP/1.1 413") for o in over)}

    def chunked() -> Any:
        for _ in range(MAX_BODY // 65536 + 2):
            yield b" " * 65536
    codes = [httpx.post(url + "/v2/models/small/infer", content=chunked(), timeout=60).status_code for _ in range(5)]
    counts["oversize_chunked"] = {"sent": 5, "413": codes.count(413)}

    def lookup(i: int) -> int:
        idx = [99] if i % 4 == 0 else [i % 10]
        return httpx.post(url + "/v2/models/lookup/infer", timeout=60, json={
            "inputs": [{"name": "idx", "shape": [1], "datatype": "INT64", "data": idx}]}).status_code
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lookup, range(400)))
    bad = [c for i, c in enumerate(codes) if i % 4 == 0]
    ok = [c for i, c in enumerate(codes) if i % 4]
    counts["model_raising_mid_batch"] = {"bad_sent": len(bad), "bad_500": bad.count(500), "good_sent": len(ok),
                                         "good_200": ok.count(200)}
    before = scrape(url)
    counts["lookup_avg_batch"] = counter(before, "webinfer_inferences_total", "lookup") / max(
        1.0, counter(before, "webinfer_executions_total", "lookup"))
    time.sleep(1.0)
    after = scrape(url)
    counts["after"] = {
        "good_request": httpx.post(url + "/v2/models/small/infer", content=good,
                                   headers={"Content-Type": "application/json"}).status_code,
        "pending": sum(v for (n, _), v in after.items() if n == "webinfer_pending_requests"),
        "inflight": sum(v for (n, _), v in after.items() if n == "webinfer_inflight_requests"),
        "canceled_counted": sum(v for (n, labels), v in after.items()
                                if n == "webinfer_inference_requests_total" and dict(labels).get("reason") == "CANCELED"),
    }
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["small", "minilm"], choices=["small", "minilm"])
    p.add_argument("--concurrency", nargs="+", type=int, default=[1, 4, 16])
    p.add_argument("--duration", type=float, default=6.0, help="seconds per window")
    p.add_argument("--repeats", type=int, default=1, help="windows per point and server, taken in turns")
    p.add_argument("--peer-python", help="python of a venv with kserve + onnxruntime (default: this python when "
                                         "it has kserve, as the test extra installs it)")
    p.add_argument("--no-peer", action="store_true", help="no KServe rows")
    p.add_argument("--soak", type=int, default=5000, help="soak requests (0: no soak)")
    p.add_argument("--no-faults", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--instances", type=int, help="instances of each webinfer model (default: the server's)")
    p.add_argument("--intra-op-threads", type=int, help="BLAS threads per instance (default: the server's)")
    args = p.parse_args()
    serving = {k: v for k, v in (("instances", args.instances), ("intra_op_threads", args.intra_op_threads))
               if v is not None}
    if any(c < 1 or c > 64 for c in args.concurrency):
        raise SystemExit("--concurrency values must be in 1..64")
    tmp = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    procs: list[subprocess.Popen] = []
    try:
        files = build_repository(tmp, args.models if args.soak == 0 else sorted(set(args.models) | {"small"}), serving)
        port = _free_port()
        ours = f"http://127.0.0.1:{port}"
        procs.append(subprocess.Popen([sys.executable, "-m", "webinfer.cli", "serve", "--models", str(tmp / "repo"),
                                       "--port", str(port), "--max-body-bytes", str(MAX_BODY)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        peer = None
        if args.peer_python is None and not args.no_peer and importlib.util.find_spec("kserve") is not None:
            args.peer_python = sys.executable
        if args.peer_python and not args.no_peer:
            peer_port = _free_port()
            peer = f"http://127.0.0.1:{peer_port}"
            procs.append(subprocess.Popen([args.peer_python, str(Path(__file__).with_name("kserve_peer.py")),
                                           "--port", str(peer_port), *(f"{k}={v}" for k, v in files.items())],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_ready(peer, procs[-1])
        wait_ready(ours, procs[0])
        print(f"load: {args.repeats} x {args.duration:g} s per point, closed loop, JSON requests; machine load "
              f"{os.getloadavg()[0]:.1f}; webinfer config {serving or 'default'}", flush=True)
        result: dict[str, Any] = {"load": load_table(args, ours, peer)}
        if args.soak:
            result["soak"] = asyncio.run(soak(ours, args.soak))
            print("soak:", json.dumps(result["soak"]), flush=True)
        if not args.no_faults:
            result["faults"] = faults(ours, port)
            print("faults:", json.dumps(result["faults"]), flush=True)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print(f"\n{'model':<8}{'c':>4}  {'server':<20}{'infer/s':>9}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
                  f"{'avg batch':>10}{'ms/row':>8}{'vs peer':>9}{'errors':>7}")
            for r in result["load"]:
                ratio = f"{r['ratio_vs_peer']:.2f}" if r.get("ratio_vs_peer") else "-"
                batch = f"{r['avg_batch']:.2f}" if "avg_batch" in r else "-"
                per_row = f"{r['compute_ms_per_row']:.1f}" if "compute_ms_per_row" in r else "-"
                print(f"{r['model']:<8}{r['concurrency']:>4}  {r['server']:<20}{r['throughput']:>9.1f}"
                      f"{r['p50_ms']:>9.1f}{r['p90_ms']:>9.1f}{r['p99_ms']:>9.1f}{batch:>10}{per_row:>8}{ratio:>9}"
                      f"{r['errors']:>7}")
        return 0
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
