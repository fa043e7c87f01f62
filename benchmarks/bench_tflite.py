"""webinfer cpu vs ai-edge-litert (LiteRT) on MediaPipe's .tflite models, 1 thread, same process.

    python benchmarks/bench_tflite.py [--runs 15] [--models face_detection_short_range ...] [--json]

One row per model: median latency of each runtime (runs alternate between
the two, so load drift on a shared machine hits both alike), the ratio
webinfer/LiteRT of the medians, the same for the calling thread's CPU time
(both run in the calling thread at 1 thread; CPU time leaves out the waits
for a core that wall time counts on a loaded machine), and the Transposes: how many the
translated graph has (a pair around every NHWC conv/pool/resize island),
how many are left in the plan after the layout pass
(runtime/passes/layout.py), their share of webinfer's run time (from
one profiled run), and webinfer's CPU time with the layout pass switched
off (each NHWC island keeps its Transpose pair).  The last line gives the median ratio (target, issue 13:
<= 2.0).  Models are built by tools/models.py (`mediapipe`) into the cache.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import models as model_builder  # noqa: E402  (tools/models.py)

import webinfer  # noqa: E402
from webinfer import passes  # noqa: E402
from webinfer.bench import session_options  # noqa: E402
from webinfer.loader import load_model  # noqa: E402

#: LiteRT cannot run face_landmark_with_attention (three MediaPipe custom ops it lacks), nor can webinfer.
SKIPPED = {"face_landmark_with_attention"}


def _feed(session: Any) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {i.name: rng.uniform(-1, 1, [d or 1 for d in i.shape]).astype(np.float32) for i in session.get_inputs()}


def bench(path: Path, runs: int) -> dict[str, Any]:
    from ai_edge_litert.interpreter import Interpreter

    ours = webinfer.InferenceSession(str(path), sess_options=session_options(1), providers=["CPUExecutionProvider"])
    feed = _feed(ours)
    lite = Interpreter(model_path=str(path), num_threads=1)
    lite.allocate_tensors()
    inputs = {d["name"]: d["index"] for d in lite.get_input_details()}

    def run_lite() -> None:
        for name, value in feed.items():
            lite.set_tensor(inputs[name], value)
        lite.invoke()

    for _ in range(2):
        ours.run(None, feed)
        run_lite()
    t_ours, t_lite, c_ours, c_lite = [], [], [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.thread_time()
        ours.run(None, feed)
        t1, c1 = time.perf_counter(), time.thread_time()
        run_lite()
        t2, c2 = time.perf_counter(), time.thread_time()
        t_ours.append((t1 - t0) * 1e3)
        t_lite.append((t2 - t1) * 1e3)
        c_ours.append((c1 - c0) * 1e3)
        c_lite.append((c2 - c1) * 1e3)
    with _layout_pass_off():
        unsunk = webinfer.InferenceSession(str(path), sess_options=session_options(1),
                                           providers=["CPUExecutionProvider"])
    for _ in range(2):
        unsunk.run(None, feed)
    c_unsunk = []
    for _ in range(runs):
        c0 = time.thread_time()
        unsunk.run(None, feed)
        c_unsunk.append((time.thread_time() - c0) * 1e3)
    options = session_options(1)
    options.enable_profiling = True
    profiled = webinfer.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    profiled.run(None, feed)
    profiled.run(None, feed)
    profile = profiled.last_profile
    assert profile is not None
    total = sum(profile.op_ms.values()) or 1.0
    planned = len(_transposes(profile))
    loaded = sum(1 for n in load_model(str(path)).graph.nodes if n.op_type == "Transpose")
    med_ours, med_lite = statistics.median(t_ours), statistics.median(t_lite)
    cpu_ours, cpu_lite = statistics.median(c_ours), statistics.median(c_lite)
    return {"model": path.stem, "webinfer_ms": med_ours, "litert_ms": med_lite, "ratio": med_ours / med_lite,
            "webinfer_cpu_ms": cpu_ours, "litert_cpu_ms": cpu_lite, "cpu_ratio": cpu_ours / cpu_lite,
            "transposes_loaded": loaded, "transposes_planned": planned,
            "no_layout_cpu_ms": statistics.median(c_unsunk),
            "transpose_share": profile.op_ms.get("Transpose", 0.0) / total}


@contextlib.contextmanager
def _layout_pass_off() -> Iterator[None]:
    """Sessions made inside skip the layout pass (patched out of the optimizer for the comparison column)."""
    saved = passes.sink_transposes
    passes.sink_transposes = lambda graph: graph
    try:
        yield
    finally:
        passes.sink_transposes = saved


def _transposes(profile: Any) -> set[str]:
    """Names of the Transpose nodes a profiled run executed."""
    return {e[0] for e in (profile.events or []) if e[1] == "Transpose"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--models", nargs="*", help="model names (file stems); default: all LiteRT runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    paths = [p for p in model_builder.build_mediapipe(model_builder.cache_dir())
             if p.stem not in SKIPPED and (not args.models or p.stem in args.models)]
    rows = [bench(p, args.runs) for p in paths]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'model':32} {'webinfer ms':>11} {'litert ms':>9} {'ratio':>6} {'cpu ms':>7} {'cpu ms':>7} "
          f"{'cpu ratio':>9} {'T loaded':>8} {'T plan':>6} {'T share':>7} {'no-layout cpu ms':>16}")
    for r in rows:
        print(f"{r['model']:32} {r['webinfer_ms']:11.2f} {r['litert_ms']:9.2f} {r['ratio']:6.2f} "
              f"{r['webinfer_cpu_ms']:7.2f} {r['litert_cpu_ms']:7.2f} {r['cpu_ratio']:9.2f} "
              f"{r['transposes_loaded']:8d} {r['transposes_planned']:6d} {r['transpose_share']:7.1%} "
              f"{r['no_layout_cpu_ms']:16.2f}")
    print(f"median ratio webinfer/litert (1 thread): wall {statistics.median(r['ratio'] for r in rows):.2f}, "
          f"thread cpu time {statistics.median(r['cpu_ratio'] for r in rows):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
