"""WGSL kernels and whole models on whatever WebGPU adapter is present, with references.

    python benchmarks/bench_gpu.py [--only matmul conv attention rows models] [--sizes 256 512 1024]
                                   [--reps N] [--json FILE]

Kernels are timed on the device: inputs are uploaded once, the node's kernel
is recorded `reps` times and a 4-byte readback waits for the GPU, so the
figure is dispatch-to-completion throughput (GFLOP/s), not transfers.
Variants run side by side (matmul schedules `regblock`, `tiled` and `tiled8`, row
schedules `serial` and `wg`) so the choice per adapter is measured.  The
reference is the same work in numpy on the CPU (BLAS for MatMul, webinfer's
numpy kernels for Conv and attention) and, where a CUDA GPU and PyTorch or
CuPy are installed, on that GPU.  Whole models compare the webgpu provider
with the cpu provider and onnxruntime (CPU).

Defaults adapt to the adapter: on software Vulkan (lavapipe) the sizes stay
small, since it reaches ~1 GFLOP/s; pass --sizes 256 512 1024 2048 4096 on a
real GPU (the issue's target: MatMul 4096^3 at >= 50% of the reference's
FP32 rate there).
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
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import models as model_builder  # noqa: E402  (tools/models.py)

import webinfer  # noqa: E402
from webinfer.devices.gpu import GpuTensor, open_device  # noqa: E402
from webinfer.executor import drive  # noqa: E402

#: ResNet-50 conv layers (batch 1, 224x224 input): name, C, M, H=W, kernel, stride, pad.
RESNET50_CONVS = [
    ("conv1 7x7/2", 3, 64, 224, 7, 2, 3),
    ("res2 1x1 64->256", 64, 256, 56, 1, 1, 0),
    ("res2 3x3 64", 64, 64, 56, 3, 1, 1),
    ("res3 3x3/2 128", 128, 128, 56, 3, 2, 1),
    ("res4 3x3 256", 256, 256, 14, 3, 1, 1),
    ("res5 1x1 512->2048", 512, 2048, 7, 1, 1, 0),
    ("res5 3x3 512", 512, 512, 7, 3, 1, 1),
]


def median_time(fn: Callable[[], Any], reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def model_bytes(node: Any, inputs: dict[str, np.ndarray], opset: int = 17) -> bytes:
    """A one-node model with `inputs` as graph inputs."""
    vis = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(a.shape)) for n, a in inputs.items()]
    out = helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)
    g = helper.make_graph([node], "g", vis, [out])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]).SerializeToString()


class NodeTimer:
    """One node as a session on the webgpu provider alone; times its kernel with inputs resident on the GPU."""

    def __init__(self, node: Any, inputs: dict[str, np.ndarray], opset: int = 17,
                 options: dict[str, Any] | None = None):
        so = webinfer.SessionOptions(provider_options={"webgpu": dict(options or {})})
        self.sess = webinfer.InferenceSession(model_bytes(node, inputs, opset), so, providers=["webgpu"])
        self.dev = next(d for d in self.sess._devices if d.name == "webgpu")
        step = next(s for s in self.sess.plan.steps if s.node.op_type == node.op_type)
        self.fn = step.fn
        self.args = [self.dev.upload(inputs[n]) for n in node.input]
        for t in self.args:
            self.dev.materialize(t)

    def seconds(self, reps: int) -> float:
        """Median seconds per kernel call over `reps` calls recorded back to back."""
        def batch() -> None:
            out = None
            for _ in range(reps):
                out = self.fn(*self.args)[0]
            assert isinstance(out, GpuTensor)
            drive(self.dev.download(GpuTensor(out.storage, (1,), out.dtype)))  # waits for the GPU
        self.dev.run_started()
        try:
            batch()
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                batch()
                times.append((time.perf_counter() - t0) / reps)
        finally:
            self.dev.run_finished()
        return statistics.median(times)


def cuda_matmul() -> Callable[[int], float] | None:
    """Seconds per n^3 float32 matmul on a CUDA GPU with PyTorch or CuPy (FP32, TF32 off), if present."""
    try:
        import torch
        if torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = False

            def run_torch(n: int) -> float:
                a = torch.randn(n, n, device="cuda")
                b = torch.randn(n, n, device="cuda")
                torch.cuda.synchronize()
                return median_time(lambda: (a @ b, torch.cuda.synchronize()), 10)
            return run_torch
    except ImportError:
        pass
    try:
        import cupy

        def run_cupy(n: int) -> float:
            a = cupy.random.standard_normal((n, n), dtype=cupy.float32)
            b = cupy.random.standard_normal((n, n), dtype=cupy.float32)
            return median_time(lambda: (a @ b, cupy.cuda.Device().synchronize()), 10)
        return run_cupy
    except ImportError:
        return None


def bench_matmul(sizes: list[int], reps: int) -> list[dict[str, Any]]:
    rows = []
    cuda = cuda_matmul()
    for n in sizes:
        rng = np.random.default_rng(n)
        a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
        flops = 2.0 * n ** 3
        row: dict[str, Any] = {"kernel": f"MatMul {n}^3", "mflop": flops / 1e6,
                               "numpy_cpu": flops / median_time(lambda: a @ b, 5) / 1e9}
        for variant in ("regblock", "tiled", "tiled8"):
            t = NodeTimer(helper.make_node("MatMul", ["a", "b"], ["y"]), {"a": a, "b": b},
                          options={"matmul_variant": variant})
            row[variant] = flops / t.seconds(reps) / 1e9
        if cuda is not None:
            row["cuda_reference"] = flops / cuda(n) / 1e9
        rows.append(row)
    return rows


def bench_conv(reps: int, scale: int) -> list[dict[str, Any]]:
    rows = []
    for name, c, m, hw, k, s, p in RESNET50_CONVS:
        hw = max(k, hw // scale)
        rng = np.random.default_rng(c * m)
        x = rng.standard_normal((1, c, hw, hw), dtype=np.float32)
        w = rng.standard_normal((m, c, k, k), dtype=np.float32) * 0.05
        out = (hw + 2 * p - k) // s + 1
        flops = 2.0 * m * out * out * c * k * k
        node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4)
        cpu = webinfer.InferenceSession(model_bytes(node, {"x": x, "w": w}))
        row: dict[str, Any] = {"kernel": f"Conv {name} @{hw}", "mflop": flops / 1e6,
                               "numpy_cpu": flops / median_time(lambda: cpu.run(None, {"x": x, "w": w}), 3) / 1e9}
        variants = ("regblock", "tiled", "tiled8") if k == 1 and s == 1 else ("direct",)
        for variant in variants:
            opts = {"matmul_variant": variant} if variant != "direct" else {}
            row[variant] = flops / NodeTimer(node, {"x": x, "w": w}, options=opts).seconds(reps) / 1e9
        rows.append(row)
    return rows


def bench_attention(seqs: list[int], reps: int) -> list[dict[str, Any]]:
    rows = []
    heads, d = 12, 64
    for seq in seqs:
        rng = np.random.default_rng(seq)
        q, k, v = (rng.standard_normal((1, heads, seq, d), dtype=np.float32) for _ in range(3))
        flops = 4.0 * heads * seq * seq * d
        node = helper.make_node("Attention", ["q", "k", "v"], ["y"])
        feeds = {"q": q, "k": k, "v": v}
        cpu = webinfer.InferenceSession(model_bytes(node, feeds, 23))
        row: dict[str, Any] = {"kernel": f"Attention seq {seq} (12 heads x 64)", "mflop": flops / 1e6,
                               "numpy_cpu": flops / median_time(lambda: cpu.run(None, feeds), 3) / 1e9,
                               "fused": flops / NodeTimer(node, feeds, 23).seconds(reps) / 1e9}
        rows.append(row)
    return rows


def bench_rows(reps: int) -> list[dict[str, Any]]:
    """LayerNorm and Softmax in both row schedules; 'GFLOP/s' counts ~5 flops per element."""
    rows = []
    cases = [("LayerNorm 128x384", "LayerNormalization", (128, 384)),
             ("Softmax 1536x128 (attention scores)", "Softmax", (12 * 128, 128)),
             ("LayerNorm 4096x768", "LayerNormalization", (4096, 768))]
    for name, op, shape in cases:
        rng = np.random.default_rng(0)
        feeds = {"x": rng.standard_normal(shape, dtype=np.float32)}
        if op == "LayerNormalization":
            feeds.update(s=np.ones(shape[-1], np.float32), b=np.zeros(shape[-1], np.float32))
        node = helper.make_node(op, list(feeds), ["y"], axis=-1)
        flops = 5.0 * math.prod(shape)
        cpu = webinfer.InferenceSession(model_bytes(node, feeds))
        row: dict[str, Any] = {"kernel": name, "mflop": flops / 1e6,
                               "numpy_cpu": flops / median_time(lambda: cpu.run(None, feeds), 5) / 1e9}
        for schedule in ("serial", "wg"):
            row[schedule] = flops / NodeTimer(node, feeds, options={"row_schedule": schedule}).seconds(reps) / 1e9
        rows.append(row)
    return rows


def bench_models(software: bool, runs: int) -> list[dict[str, Any]]:
    from webinfer.bench import ort_session
    rows = []
    seq = 128
    rng = np.random.default_rng(0)
    cases = [("minilm", f"MiniLM seq {seq}", {"input_ids": rng.integers(1000, 3000, (1, seq)).astype(np.int64),
                                              "attention_mask": np.ones((1, seq), np.int64)})]
    size = 320 if software else 640
    cases.append(("ppocr_det", f"PP-OCRv4 det {size}x{size}", {"x": rng.random((1, 3, size, size), dtype=np.float32)}))
    for name, label, feed in cases:
        try:
            data = model_builder.model_path(name).read_bytes()
        except Exception as e:  # noqa: BLE001 - a model that cannot be built here is reported, not fatal
            rows.append({"model": label, "error": f"{type(e).__name__}: {e}"})
            continue
        gpu = webinfer.InferenceSession(data, providers=["webgpu", "cpu"])
        cpu = webinfer.InferenceSession(data)
        ort = ort_session(data, None)
        row: dict[str, Any] = {"model": label}
        row["webgpu_ms"] = median_time(lambda: gpu.run(None, feed), runs) * 1e3
        row["cpu_ms"] = median_time(lambda: cpu.run(None, feed), runs) * 1e3
        row["onnxruntime_cpu_ms"] = median_time(lambda: ort.run(None, feed), runs) * 1e3
        stats = gpu.device_stats()
        row.update({k: stats[k] for k in ("nodes_on_gpu", "nodes_total", "dispatches_per_run", "readbacks_per_run")})
        rows.append(row)
    return rows


def print_table(title: str, rows: list[dict[str, Any]], key: str) -> None:
    if not rows:
        return
    cols = [c for c in rows[0] if c not in (key,)]
    for r in rows[1:]:
        cols += [c for c in r if c not in cols and c != key]
    print(f"\n{title}")
    width = max(len(str(r.get(key, ""))) for r in rows) + 2
    widths = [max(12, len(c) + 2) for c in cols]
    print(f"{key:<{width}}" + "".join(f"{c:>{w}}" for c, w in zip(cols, widths)))
    for r in rows:
        cells = []
        for c, w in zip(cols, widths):
            v = r.get(c, "")
            cells.append(f"{v:>{w}.3f}" if isinstance(v, float) else f"{str(v):>{w}}")
        print(f"{str(r.get(key)):<{width}}" + "".join(cells))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="*", choices=["matmul", "conv", "attention", "rows", "models"])
    p.add_argument("--sizes", nargs="*", type=int, help="MatMul sizes (default: by adapter)")
    p.add_argument("--reps", type=int, default=None, help="kernel calls per timing (default: by adapter)")
    p.add_argument("--json", help="also write the results to this file")
    args = p.parse_args(argv)
    dev = open_device({})
    software = dev.backend.software
    only = set(args.only or ["matmul", "conv", "attention", "rows", "models"])
    reps = args.reps or (2 if software else 20)
    sizes = args.sizes or ([256, 512, 1024] if software else [256, 512, 1024, 2048, 4096])
    print(f"adapter: {dev.backend.description}  software={software}  preferred matmul={dev.matmul_variant}")
    print("kernel figures are GFLOP/s (higher is better); model figures are median ms")
    results: dict[str, Any] = {"adapter": dev.backend.description, "software": software}
    if "matmul" in only:
        results["matmul"] = bench_matmul(sizes, reps)
        print_table("MatMul float32 (GFLOP/s)", results["matmul"], "kernel")
    if "conv" in only:
        results["conv"] = bench_conv(reps, 4 if software else 1)
        print_table("ResNet-50 conv layers (GFLOP/s)" + (", spatial size / 4 on software Vulkan" if software else ""),
                    results["conv"], "kernel")
    if "attention" in only:
        results["attention"] = bench_attention([128, 512], reps)
        print_table("Fused attention (GFLOP/s)", results["attention"], "kernel")
    if "rows" in only:
        results["rows"] = bench_rows(reps)
        print_table("Row kernels by schedule (GFLOP/s, ~5 flop/element)", results["rows"], "kernel")
    if "models" in only:
        results["models"] = bench_models(software, 3 if software else 10)
        print_table("Whole models (median ms)", results["models"], "model")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
