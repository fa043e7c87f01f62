"""Per-call latency of the streaming packages (a tiny model per audio chunk): webinfer vs onnxruntime.

    python tests/compat/bench_calls.py [--calls 300]

Each backend runs in its own subprocess (runner.bind, the same swap as the suite), calling the
package's public per-chunk API on speech-like audio; prints the median and p90 per call and the
ratio webinfer / onnxruntime.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def _time(fn, chunks, warmup=20):
    for c in chunks[:warmup]:
        fn(c)
    ts = []
    for c in chunks[warmup:]:
        t0 = time.perf_counter()
        fn(c)
        ts.append(time.perf_counter() - t0)
    ts = np.array(ts) * 1e3
    return {"median_ms": float(np.median(ts)), "p90_ms": float(np.percentile(ts, 90)), "calls": len(ts)}


def bench(calls):
    import cases
    out = {}

    import torch
    from silero_vad import load_silero_vad
    model = load_silero_vad(onnx=True)
    wav = np.tile(cases.speech_like(), 4)
    chunks = [torch.from_numpy(wav[i:i + 512]) for i in range(0, 512 * (calls + 20), 512)]
    out["silero_vad: OnnxWrapper(chunk of 512 = 32 ms)"] = _time(lambda c: model(c, 16000), chunks)

    import openwakeword
    from openwakeword.model import Model
    paths = [p for p in openwakeword.get_pretrained_model_paths("onnx") if "hey_jarvis" in p]
    audio = (np.tile(cases.speech_like(seconds=4.0, seed=7), 30) * 32767).astype(np.int16)
    chunks = [audio[i:i + 1280] for i in range(0, 1280 * (calls + 20), 1280)]
    np.random.seed(0)
    oww = Model(wakeword_models=paths, inference_framework="onnx")
    out["openwakeword: Model.predict(chunk of 1280 = 80 ms), hey_jarvis"] = _time(oww.predict, chunks)
    np.random.seed(0)
    oww = Model(wakeword_models=paths, inference_framework="onnx", vad_threshold=0.5)
    out["openwakeword: the same with vad_threshold=0.5 (+ silero VAD)"] = _time(oww.predict, chunks)
    return out


def child(backend, calls):
    sys.path.insert(0, HERE)
    import runner
    runner.bind(backend)
    print(json.dumps(bench(calls)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--child", choices=["onnxruntime", "webinfer"])
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.calls)
    res = {}
    for backend in ("onnxruntime", "webinfer"):
        p = subprocess.run([sys.executable, __file__, "--child", backend, "--calls", str(args.calls)],
                           capture_output=True, text=True)
        if p.returncode:
            print(f"{backend} failed:\n{p.stderr[-4000:]}", file=sys.stderr)
            return 1
        res[backend] = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"{'call':66s} {'onnxruntime':>12s} {'webinfer':>12s} {'ratio':>7s}   (median ms per call; p90)")
    for key, ort in res["onnxruntime"].items():
        wi = res["webinfer"][key]
        print(f"{key:66s} {ort['median_ms']:9.3f} ms {wi['median_ms']:9.3f} ms {wi['median_ms'] / ort['median_ms']:6.1f}x"
              f"   (p90 {ort['p90_ms']:.3f} / {wi['p90_ms']:.3f}; {ort['calls']} calls)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
