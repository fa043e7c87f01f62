"""Size, accuracy and latency of small-model variants: `webinfer quantize` outputs and the files
onnxruntime's own tools write with com.microsoft ops, for webinfer and onnxruntime.

    python benchmarks/bench_contrib.py [--runs 15] [--threads 1] [--models minilm mobilenetv3_small resnet50]
                                       [--clock wall|cpu] [--json]

Variants (built into a temp dir from tools/models.py's float32 files):
  fp32            the float32 file
  wi-int8/int4/fp16  `webinfer quantize --mode ...`
  ort-q4          onnxruntime's MatMulNBitsQuantizer (block 32, asymmetric): MatMulNBits
  ort-fused       MiniLM through onnxruntime.transformers.optimizer (model_type bert, opt_level 1)
  ort-qop         MobileNetV3 through quantize_static in QOperator format (QLinearConv, QLinearAdd, ...)
Accuracy is each runtime's output against its own float32 output on the benchmark input
(cosine, worst row of the first output; top-1 for the classifier).  Latency: medians over
`--runs` rounds that run every variant in both runtimes in turn, in this one process (load
drift on a shared machine hits all alike); `vs fp32` is webinfer's median over webinfer's
float32 median.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import models as model_builder  # noqa: E402  (tools/models.py)

import webinfer  # noqa: E402
from webinfer.bench import ort_session, session_options  # noqa: E402
from webinfer.quantize import quantize_model  # noqa: E402


def _minilm_feed() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"input_ids": rng.integers(1000, 3000, size=(1, 128)).astype(np.int64),
            "attention_mask": np.ones((1, 128), dtype=np.int64)}


def _image_feed() -> dict[str, np.ndarray]:
    return {"input": np.random.default_rng(0).standard_normal((1, 3, 224, 224), dtype=np.float32)}


def _ort_q4(src: Path, out: Path) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    q = MatMulNBitsQuantizer(onnx.load(str(src)), block_size=32, is_symmetric=False)
    q.process()
    q.model.save_model_to_file(str(out), use_external_data_format=False)


def _ort_fused(src: Path, out: Path) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    optimize_model(str(src), model_type="bert", num_heads=12, hidden_size=384, opt_level=1,
                   use_gpu=False).save_model_to_file(str(out))


def _ort_qop(src: Path, out: Path) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{"input": np.random.default_rng(i).standard_normal((1, 3, 224, 224),
                                                                                  dtype=np.float32)} for i in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    quantize_static(str(src), str(out), Reader(), quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)


MODELS: dict[str, tuple[Callable[[], dict[str, np.ndarray]], dict[str, Callable[[Path, Path], None]]]] = {
    "minilm": (_minilm_feed, {"ort-q4": _ort_q4, "ort-fused": _ort_fused}),
    "mobilenetv3_small": (_image_feed, {"ort-qop": _ort_qop}),
    "resnet50": (_image_feed, {}),
}


def _accuracy(out: np.ndarray, ref: np.ndarray) -> str:
    if out.ndim == 2 and out.shape[0] == 1 and out.shape[1] >= 100:
        return "top-1 same" if out.argmax() == ref.argmax() else "top-1 differs"
    a = out.reshape(-1, out.shape[-1]).astype(np.float64)
    b = ref.reshape(-1, ref.shape[-1]).astype(np.float64)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return f"cos {cos.min():.4f}"


#: The clock `_time` reads: wall time, or this process's CPU time (`--clock cpu`), which other
#: processes competing for the cores do not inflate (both runtimes compute on the calling thread
#: with one thread, so CPU time is their work).
CLOCK: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def _time(fn: Callable[[], Any]) -> float:
    t = _clock()
    fn()
    return (_clock() - t) * 1e3


def bench_model(name: str, threads: int, runs: int, tmp: Path) -> list[dict[str, Any]]:
    feed_of, builders = MODELS[name]
    feed = feed_of()
    src = model_builder.model_path(name)
    files = {"fp32": src}
    for mode in ("int8", "int4", "fp16"):
        path = tmp / f"{name}_wi_{mode}.onnx"
        path.write_bytes(quantize_model(src.read_bytes(), mode))
        files[f"wi-{mode}"] = path
    for label, build in builders.items():
        path = tmp / f"{name}_{label}.onnx"
        build(src, path)
        files[label] = path
    sessions, rows, base = {}, [], {}
    for label, path in files.items():
        data = path.read_bytes()
        ours = webinfer.InferenceSession(data, session_options(threads), providers=["cpu"])
        ref = ort_session(data, threads)
        out_o, out_r = ours.run(None, feed)[0], ref.run(None, feed)[0]
        if label == "fp32":
            base = {"webinfer": out_o, "onnxruntime": out_r}
        sessions[label] = (ours, ref)
        rows.append({"model": name, "variant": label, "mb": len(data) / 1e6,
                     "acc_webinfer": _accuracy(out_o, base["webinfer"]),
                     "acc_onnxruntime": _accuracy(out_r, base["onnxruntime"])})
    times: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in sessions}
    for i in range(runs + 1):  # round-robin over variants and runtimes: load drift hits all alike
        for label, (ours, ref) in sessions.items():
            t_o, t_r = _time(lambda: ours.run(None, feed)), _time(lambda: ref.run(None, feed))
            if i:  # the first round warms up
                times[label][0].append(t_o)
                times[label][1].append(t_r)
    for r in rows:
        t_o, t_r = times[r["variant"]]
        r["webinfer_ms"], r["onnxruntime_ms"] = statistics.median(t_o), statistics.median(t_r)
    fp32_ms = rows[0]["webinfer_ms"]
    for r in rows:
        r["ratio"] = r["webinfer_ms"] / r["onnxruntime_ms"]
        r["vs_fp32"] = r["webinfer_ms"] / fp32_ms
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", nargs="+", default=["minilm", "mobilenetv3_small"], choices=list(MODELS))
    p.add_argument("--clock", choices=list(CLOCK), default="wall",
                   help="cpu: process CPU time, steadier than wall time on a loaded machine (1 thread only)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    global _clock
    if args.clock == "cpu" and args.threads != 1:
        p.error("--clock cpu measures one-thread runs only")
    _clock = CLOCK[args.clock]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [r for m in args.models for r in bench_model(m, args.threads, args.runs, Path(tmp))]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<18}{'variant':<11}{'MB':>7}  {'accuracy webinfer':<18}{'accuracy ort':<16}"
          f"{'webinfer ms':>12}{'ort ms':>9}{'ratio':>7}{'vs fp32':>8}")
    for r in rows:
        print(f"{r['model']:<18}{r['variant']:<11}{r['mb']:>7.1f}  {r['acc_webinfer']:<18}{r['acc_onnxruntime']:<16}"
              f"{r['webinfer_ms']:>12.2f}{r['onnxruntime_ms']:>9.2f}{r['ratio']:>7.2f}{r['vs_fp32']:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
