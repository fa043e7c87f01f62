"""webinfer vs onnxruntime on real models, same process, same thread count.

    python benchmarks/bench_models.py [--runs 15] [--threads 0 1 2] [--models minilm16 minilm128 resnet50 ppocr
                                      mobilenetv3_small vad melspec wakeword] [--provider cpu] [--clock wall|cpu]
                                      [--json]

Prints one table: median and p90 latency of each runtime and the ratio
webinfer/onnxruntime (medians).  Models are built by tools/models.py into
the cache dir.  Targets (issue 2): ratio <= 1.5 on MiniLM-128 and ResNet-50
with 1 thread, <= 2.0 everywhere.  Runs alternate between the two runtimes
so load drift on a shared machine hits both alike.

Thread count 0 ("default") leaves each runtime its default: numpy's BLAS
count for webinfer (which splits only big products, see runtime/threads.py),
onnxruntime's own pool.  That is what a user who sets nothing gets, on a
quiet machine or on one whose cores other processes share.

The per-call models (vad, melspec, wakeword: edge packages run them once
per audio chunk, so their time is mostly fixed per-call cost) are timed
over `PER_CALL_RUNS` times as many runs, each the latency of one call;
issue 9 asks for <= 2.0 on them and on MobileNetV3-small (1 thread).

`--clock cpu` times each run by the calling thread's CPU time instead of
the wall clock (1 thread only: both runtimes then compute on that thread).
On a shared machine, time spent waiting for a core then counts for
neither side, which keeps the ratio steadier under load; cache and
memory-bandwidth contention still count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import models as model_builder  # noqa: E402  (tools/models.py)

import webinfer  # noqa: E402
from webinfer.bench import ort_session, session_options, time_alternating  # noqa: E402


def _minilm_feed(seq: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"input_ids": rng.integers(1000, 3000, size=(1, seq)).astype(np.int64),
            "attention_mask": np.ones((1, seq), dtype=np.int64)}


CASES: dict[str, tuple[str, Callable[[], dict[str, np.ndarray]]]] = {
    "minilm16": ("minilm", lambda: _minilm_feed(16)),
    "minilm128": ("minilm", lambda: _minilm_feed(128)),
    "resnet50": ("resnet50", lambda: {"input": np.random.default_rng(0).standard_normal((1, 3, 224, 224),
                                                                                       dtype=np.float32)}),
    "ppocr": ("ppocr_det", lambda: {"x": np.random.default_rng(0).random((1, 3, 640, 640), dtype=np.float32)}),
    "mobilenetv3_small": ("mobilenetv3_small", lambda: {"input": np.random.default_rng(0).standard_normal(
        (1, 3, 224, 224), dtype=np.float32)}),
    "vad": ("vad", lambda: {"input": np.random.default_rng(0).standard_normal((1, 512), dtype=np.float32),
                            "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, np.int64)}),
    "melspec": ("melspec", lambda: {"audio": np.random.default_rng(0).standard_normal((1, 1280), dtype=np.float32)}),
    "wakeword": ("wakeword", lambda: {"embeddings": np.random.default_rng(0).standard_normal((1, 16, 96),
                                                                                            dtype=np.float32)}),
}
#: Models timed per call (see the module docstring), over this many times --runs.
PER_CALL = {"vad", "melspec", "wakeword"}
PER_CALL_RUNS = 20


def bench_case(name: str, threads: int, runs: int, warmup: int, providers: list[str],
               clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    model_name, make_feed = CASES[name]
    path = model_builder.model_path(model_name)
    data = path.read_bytes()
    feed = make_feed()
    t0 = time.perf_counter()
    ours = webinfer.InferenceSession(data, session_options(threads), providers=providers)
    load_ms = (time.perf_counter() - t0) * 1e3
    ref = ort_session(data, threads)
    a = ours.run(None, feed)
    b = ref.run(None, feed)
    # Absolute and relative to the output's largest magnitude: PP-OCR's probability map on a random
    # input is nearly all ~1e-5, where a relative figure alone would overstate a 1e-7 difference.
    diffs = [(float(np.max(np.abs(x - y))), float(np.max(np.abs(y)))) for x, y in zip(a, b)]
    abs_err = max(d for d, _ in diffs)
    err = max(d / (m + 1e-12) for d, m in diffs)
    if name in PER_CALL:
        runs, warmup = runs * PER_CALL_RUNS, warmup * PER_CALL_RUNS
    t_ours, t_ref = time_alternating(lambda: ours.run(None, feed), lambda: ref.run(None, feed), runs, warmup, clock)
    med_o, med_r = statistics.median(t_ours), statistics.median(t_ref)
    return {"case": name, "threads": threads, "webinfer_median_ms": med_o, "onnxruntime_median_ms": med_r,
            "webinfer_p90_ms": float(np.percentile(t_ours, 90)), "onnxruntime_p90_ms": float(np.percentile(t_ref, 90)),
            "ratio": med_o / med_r, "max_rel_diff": err, "max_abs_diff": abs_err,
            "webinfer_load_ms": load_ms}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[0, 1, 2], help="0: each runtime's default")
    p.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--provider", default="cpu")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall clock, or the calling thread's CPU time (with --threads 1 only)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.clock == "cpu" and args.threads != [1]:
        p.error("--clock cpu times the calling thread only: use it with --threads 1")
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    rows = [bench_case(m, t, args.runs, args.warmup, args.provider.split(","), clock)
            for t in args.threads for m in args.models]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<18}{'threads':>8}{'webinfer ms':>13}{'ort ms':>10}{'ratio':>8}{'p90 ours':>10}{'p90 ort':>9}"
          f"{'max abs diff':>14}{'max rel diff':>14}")
    for r in rows:
        print(f"{r['case']:<18}{r['threads'] or 'default':>8}{r['webinfer_median_ms']:>13.3f}{r['onnxruntime_median_ms']:>10.3f}"
              f"{r['ratio']:>8.2f}{r['webinfer_p90_ms']:>10.2f}{r['onnxruntime_p90_ms']:>9.2f}{r['max_abs_diff']:>14.1e}"
              f"{r['max_rel_diff']:>14.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
