"""Load time (session creation) of webinfer with and without fusion, beside onnxruntime's.

    python benchmarks/bench_load.py [--runs 5] [--models synthetic4000 bert_base] [--json]

Loading runs the passes (folding, cleanup, fusion) and the planner on the
whole graph, so a pass that costs more than linear time shows here first:
large transformer exports have tens of thousands of nodes.  Models:

- synthetic4000: 400 transformer MLP blocks of 10 nodes each (MatMul + bias,
  the exporters' erf GELU, MatMul + bias, residual Add), built in memory:
  every block gives the fusion rules work.  Target (issue 11): <= 0.5 s.
- bert_base: a 12-layer BERT-base with random weights, exported with torch
  by tools/models.py into the cache dir (offline, nothing downloaded).

Each runtime loads the model from bytes already in memory (file reading is
not timed); the table gives medians over `--runs` loads, alternating the
runtimes so load drift on a shared machine hits all alike.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import models as model_builder  # noqa: E402  (tools/models.py)

import webinfer  # noqa: E402
from webinfer.options import GraphOptimizationLevel  # noqa: E402

BLOCKS, HIDDEN = 400, 8


def synthetic(blocks: int = BLOCKS, hidden: int = HIDDEN) -> bytes:
    """`blocks` MLP blocks of 10 nodes each, x -> x + W2 @ gelu(W1 @ x + b1) + b2, with seeded weights."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    const("sqrt2", np.array(math.sqrt(2))), const("one", np.array(1.0)), const("half", np.array(0.5))
    x = "x"
    for i in range(blocks):
        w1 = const(f"w1_{i}", rng.standard_normal((hidden, hidden)) * 0.1)
        b1 = const(f"b1_{i}", rng.standard_normal(hidden) * 0.1)
        w2 = const(f"w2_{i}", rng.standard_normal((hidden, hidden)) * 0.1)
        b2 = const(f"b2_{i}", rng.standard_normal(hidden) * 0.1)
        p = f"b{i}_"
        nodes += [helper.make_node("MatMul", [x, w1], [p + "mm1"]),
                  helper.make_node("Add", [p + "mm1", b1], [p + "h"]),
                  helper.make_node("Div", [p + "h", "sqrt2"], [p + "div"]),
                  helper.make_node("Erf", [p + "div"], [p + "erf"]),
                  helper.make_node("Add", [p + "erf", "one"], [p + "erf1"]),
                  helper.make_node("Mul", [p + "h", p + "erf1"], [p + "gx"]),
                  helper.make_node("Mul", [p + "gx", "half"], [p + "gelu"]),
                  helper.make_node("MatMul", [p + "gelu", w2], [p + "mm2"]),
                  helper.make_node("Add", [p + "mm2", b2], [p + "mlp"]),
                  helper.make_node("Add", [x, p + "mlp"], [p + "out"])]
        x = p + "out"
    graph = helper.make_graph(nodes, "synthetic", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", hidden])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["n", hidden])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


MODELS: dict[str, Callable[[], bytes]] = {
    "synthetic4000": synthetic,
    "bert_base": lambda: model_builder.model_path("bert_base").read_bytes(),
}


def _webinfer(level: int) -> Callable[[bytes], Any]:
    def load(data: bytes) -> Any:
        return webinfer.InferenceSession(data, webinfer.SessionOptions(graph_optimization_level=level))
    return load


def _onnxruntime(data: bytes) -> Any:
    import onnxruntime as ort
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


LOADERS: dict[str, Callable[[bytes], Any]] = {
    "webinfer fused": _webinfer(GraphOptimizationLevel.ORT_ENABLE_ALL),
    "webinfer unfused": _webinfer(GraphOptimizationLevel.ORT_ENABLE_BASIC),
    "onnxruntime": _onnxruntime,
}


def measure(data: bytes, runs: int) -> dict[str, float]:
    """Median load seconds of each loader over `runs` alternating loads."""
    times: dict[str, list[float]] = {name: [] for name in LOADERS}
    for _ in range(runs):
        for name, load in LOADERS.items():
            t0 = time.perf_counter()
            load(data)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", nargs="*", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    for name in args.models:
        data = MODELS[name]()
        results[name] = measure(data, args.runs)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'model':<16}" + "".join(f"{name:>18}" for name in LOADERS) + "   (median s, session creation)")
    for name, medians in results.items():
        print(f"{name:<16}" + "".join(f"{medians[k]:>18.3f}" for k in LOADERS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
