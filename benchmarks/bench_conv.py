"""Conv micro-benchmark: webinfer vs onnxruntime on single-node models, one thread each.

    python benchmarks/bench_conv.py [--runs 30] [--only resnet|ppocr] [--json]

Layers are the convs that dominate ResNet-50 (224x224) and PP-OCRv4 text
detection (640x640), with constant weights and bias as exported models have
them.  Runs alternate between the two runtimes so load drift on a shared
machine hits both alike; the table gives median times and the ratio
webinfer / onnxruntime.

One thread: onnxruntime's intra-op pool is set to 1, and numpy's BLAS is
limited with threadpoolctl when installed; without it the OpenBLAS/MKL/OMP
thread variables are set to 1 before numpy is imported (done below, so the
limit holds either way).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any, Iterator  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

import webinfer  # noqa: E402


@dataclass(frozen=True)
class Layer:
    name: str
    op: str
    x: tuple[int, ...]
    w: tuple[int, ...]
    attrs: dict[str, Any] = field(default_factory=dict)


def _conv(name: str, c: int, m: int, k: int, size: int, stride: int = 1, group: int = 1) -> Layer:
    p = k // 2
    return Layer(name, "Conv", (1, c, size, size), (m, c // group, k, k),
                 dict(strides=[stride] * 2, pads=[p] * 4, group=group))


LAYERS: dict[str, list[Layer]] = {
    "resnet": [
        _conv("conv1 7x7/2", 3, 64, 7, 224, 2),
        _conv("l1 1x1 64->64", 64, 64, 1, 56),
        _conv("l1 3x3 64", 64, 64, 3, 56),
        _conv("l1 1x1 64->256", 64, 256, 1, 56),
        _conv("l2 3x3/2 128", 128, 128, 3, 56, 2),
        _conv("l2 3x3 128", 128, 128, 3, 28),
        _conv("l2 1x1 512->128", 512, 128, 1, 28),
        _conv("l3 3x3 256", 256, 256, 3, 14),
        _conv("l3 1x1 256->1024", 256, 1024, 1, 14),
        _conv("l3 1x1 1024->256", 1024, 256, 1, 14),
        _conv("l4 3x3 512", 512, 512, 3, 7),
        _conv("l4 1x1 512->2048", 512, 2048, 1, 7),
    ],
    "ppocr": [
        _conv("stem 3x3/2", 3, 16, 3, 640, 2),
        _conv("dw 3x3 16@320", 16, 16, 3, 320, group=16),
        _conv("dw 3x3/2 32@320", 32, 32, 3, 320, 2, group=32),
        _conv("dw 3x3 48@160", 48, 48, 3, 160, group=48),
        _conv("dw 5x5 192@40", 192, 192, 5, 40, group=192),
        _conv("dw 5x5 384@20", 384, 384, 5, 20, group=384),
        _conv("1x1 16->32 @320", 16, 32, 1, 320),
        _conv("1x1 192->192 @40", 192, 192, 1, 40),
        _conv("3x3 96->24 @160", 96, 24, 3, 160),
        _conv("3x3 96->24 @80", 96, 24, 3, 80),
        Layer("convT 2x2/2 24@160", "ConvTranspose", (1, 24, 160, 160), (24, 24, 2, 2), dict(strides=[2, 2])),
        Layer("convT 2x2/2 24->1@320", "ConvTranspose", (1, 24, 320, 320), (24, 1, 2, 2), dict(strides=[2, 2])),
    ],
}


@contextlib.contextmanager
def one_blas_thread() -> Iterator[str]:
    """Limit numpy's BLAS to one thread; yields how."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield "OPENBLAS/OMP/MKL_NUM_THREADS=1 (threadpoolctl not installed)"
        return
    with threadpool_limits(limits=1):
        yield "threadpoolctl"


def _model(layer: Layer, rng: np.random.Generator) -> tuple[bytes, dict[str, np.ndarray]]:
    x = rng.standard_normal(layer.x).astype(np.float32)
    w = (rng.standard_normal(layer.w) * 0.1).astype(np.float32)
    m = layer.w[0] if layer.op == "Conv" else layer.w[1] * layer.attrs.get("group", 1)
    b = rng.standard_normal(m).astype(np.float32)
    node = helper.make_node(layer.op, ["x", "w", "b"], ["y"], **layer.attrs)
    graph = helper.make_graph([node], layer.name, [helper.make_tensor_value_info("x", 1, layer.x)],
                              [helper.make_tensor_value_info("y", 1, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString(), {"x": x}


def bench_layer(layer: Layer, runs: int, rng: np.random.Generator) -> dict[str, Any]:
    data, feed = _model(layer, rng)
    ours = webinfer.InferenceSession(data)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    ref = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    a, b = ours.run(None, feed)[0], ref.run(None, feed)[0]
    err = float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12))
    t_ours, t_ref = [], []
    for _ in range(3):
        ours.run(None, feed)
        ref.run(None, feed)
    for _ in range(runs):
        t0 = time.perf_counter()
        ours.run(None, feed)
        t1 = time.perf_counter()
        ref.run(None, feed)
        t2 = time.perf_counter()
        t_ours.append((t1 - t0) * 1e3)
        t_ref.append((t2 - t1) * 1e3)
    mo, mr = statistics.median(t_ours), statistics.median(t_ref)
    return {"layer": layer.name, "op": layer.op, "x": list(layer.x), "w": list(layer.w), "webinfer_ms": mo,
            "onnxruntime_ms": mr, "ratio": mo / mr, "max_rel_err": err}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--only", choices=sorted(LAYERS), action="append")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    with one_blas_thread() as how:
        for group in args.only or sorted(LAYERS, reverse=True):
            for layer in LAYERS[group]:
                rows.append({"model": group, **bench_layer(layer, args.runs, rng)})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"one thread: onnxruntime intra_op_num_threads=1, numpy BLAS via {how}; median of {args.runs} runs")
    print(f"{'model':7} {'layer':24} {'webinfer ms':>12} {'ort ms':>9} {'ratio':>6} {'rel err':>8}")
    for r in rows:
        print(f"{r['model']:7} {r['layer']:24} {r['webinfer_ms']:12.3f} {r['onnxruntime_ms']:9.3f} "
              f"{r['ratio']:6.2f} {r['max_rel_err']:8.1e}")
    for group in sorted({r["model"] for r in rows}, reverse=True):
        sel = [r for r in rows if r["model"] == group]
        total_o, total_r = sum(r["webinfer_ms"] for r in sel), sum(r["onnxruntime_ms"] for r in sel)
        print(f"{group:7} {'(sum of layers)':24} {total_o:12.3f} {total_r:9.3f} {total_o / total_r:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
