"""The `webinfer` command: info, run, bench (and serve, with the `serve` extra).

    webinfer info MODEL [--dim NAME=N] [--provider P] [--json]
    webinfer run MODEL --input NAME=FILE.npy ... [--provider P] [--output-dir DIR]
    webinfer bench MODEL [--provider P] [--runs N] [--warmup N] [--threads T]
                         [--dim NAME=N] [--compare onnxruntime] [--json]
    webinfer serve [--host 127.0.0.1] [--port 8000] [--models DIR] [--dist DIR]
    webinfer quantize MODEL OUT --mode int8|int4|fp16 [--block-size 32] [--no-check] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .version import __version__
from .bench import ort_session, peak_bytes, random_feed, session_options, time_calls
from .errors import WebinferError
from .info import load_info
from .providers import short_names
from .session import InferenceSession


def _dims(items: Sequence[str]) -> dict[str, int]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.lstrip("-").isdigit():
            raise SystemExit(f"--dim expects NAME=INT, got {item!r}")
        out[name] = int(value)
    return out


def _providers(p: str) -> list[str]:
    return [x.strip() for x in p.split(",") if x.strip()]


def _placement_info(model: str, providers: list[str]) -> dict[str, Any]:
    """Where each node would run on `providers`, and why nodes fall back to the cpu (webinfer info --provider)."""
    sess = InferenceSession(model, providers=providers)
    stats = sess.device_stats()
    by_reason: dict[str, dict[str, Any]] = {}
    for node, reason in stats["fallback_reasons"].items():
        op, _, why = reason.partition(": ")
        entry = by_reason.setdefault(f"{op}: {why}", {"op": op, "reason": why, "nodes": []})
        entry["nodes"].append(node)
    return {"providers": short_names(sess.get_providers()), "nodes_total": stats["nodes_total"],
            "nodes_on_gpu": stats["nodes_on_gpu"], "fallback_ops": stats["fallback_ops"],
            "fallbacks": sorted(by_reason.values(), key=lambda e: -len(e["nodes"])),
            "adapter": stats.get("adapter")}


def cmd_info(args: argparse.Namespace) -> int:
    info = load_info(args.model, _dims(args.dim))
    if args.provider:
        info["placement"] = _placement_info(args.model, _providers(args.provider))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"model:      {args.model}")
    print(f"producer:   {info['producer'] or '-'} (IR {info['ir_version']})")
    print(f"opsets:     {', '.join(f'{k} {v}' for k, v in info['opsets'].items())}")
    for kind in ("inputs", "outputs"):
        print(f"{kind}:")
        for a in info[kind]:
            shape = "?" if a["shape"] is None else "[" + ", ".join("?" if d is None else str(d) for d in a["shape"]) + "]"
            print(f"  {a['name']:<24} {a['type']:<18} {shape}")
    print(f"nodes:      {info['nodes']}")
    print(f"parameters: {info['parameters']:,} ({info['parameter_bytes'] / 1e6:.1f} MB)")
    if info["flops"] is not None:
        print(f"FLOPs:      {info['flops'] / 1e9:.3f} G")
    else:
        print(f"FLOPs:      >= {info['flops_known_part'] / 1e9:.3f} G ({info['nodes_with_unknown_flops']} nodes have "
              "symbolic shapes: bind them with --dim NAME=N)")
    print("ops:")
    for op, n in info["op_histogram"].items():
        print(f"  {op:<28} {n}")
    if "placement" in info:
        pl = info["placement"]
        print(f"placement on {','.join(pl['providers'])}: {pl['nodes_on_gpu']} of {pl['nodes_total']} nodes (after "
              f"optimization) on webgpu{' (' + pl['adapter'] + ')' if pl['adapter'] else ''}")
        if pl["fallbacks"]:
            print("falls back to cpu:")
            for e in pl["fallbacks"]:
                print(f"  {e['op']:<20} x{len(e['nodes']):<4} {e['reason']}")
    return 0


def _load_inputs(items: Sequence[str]) -> dict[str, np.ndarray]:
    feed = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--input expects NAME=FILE.npy, got {item!r}")
        if not os.path.isfile(path):
            raise SystemExit(f"--input {name}: file '{path}' not found")
        feed[name] = np.load(path, allow_pickle=False)
    return feed


def cmd_run(args: argparse.Namespace) -> int:
    sess = InferenceSession(args.model, providers=_providers(args.provider))
    feed = _load_inputs(args.input)
    outputs = sess.run(None, feed)
    names = [o.name for o in sess.get_outputs()]
    out_dir = Path(args.output_dir) if args.output_dir else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    for name, value in zip(names, outputs):
        arr = np.asarray(value)
        print(f"{name}: {arr.dtype}{list(arr.shape)}")
        with np.printoptions(threshold=20, edgeitems=3, precision=5):
            print(f"  {arr}")
        if out_dir:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            np.save(out_dir / f"{safe}.npy", arr)
    if out_dir:
        print(f"saved {len(outputs)} output(s) to {out_dir}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    with open(args.model, "rb") as f:
        model_bytes = f.read()
    providers = _providers(args.provider)
    sess = InferenceSession(model_bytes, session_options(args.threads), providers=providers)
    feed = _load_inputs(args.input)
    missing = [i for i in sess.get_inputs() if i.name not in feed]
    feed.update(random_feed(missing, _dims(args.dim), seed=0))
    result: dict[str, Any] = {"model": args.model, "provider": ",".join(short_names(sess.get_providers())),
                              "threads": args.threads, "runs": args.runs,
                              "inputs": {k: list(v.shape) for k, v in feed.items()}}
    ours = time_calls(lambda: sess.run(None, feed), args.runs, args.warmup)
    result.update(median_ms=ours.median_ms, p90_ms=ours.p90_ms, min_ms=ours.min_ms, first_run_ms=ours.first_ms,
                  peak_bytes=peak_bytes(lambda: sess.run(None, feed)))
    placement = sess.get_placement()
    result["nodes_total"] = len(placement)
    if "webgpu" in short_names(sess.get_providers()):
        stats = sess.device_stats()
        for key in ("nodes_on_gpu", "dispatches_per_run", "readbacks_per_run", "submits_per_run", "fallback_ops",
                    "adapter"):
            result[key] = stats.get(key)
    if args.compare:
        if args.compare != "onnxruntime":
            raise SystemExit("--compare supports only 'onnxruntime'")
        ort = ort_session(model_bytes, args.threads)
        ref = time_calls(lambda: ort.run(None, feed), args.runs, args.warmup)
        result["onnxruntime"] = {"median_ms": ref.median_ms, "p90_ms": ref.p90_ms, "min_ms": ref.min_ms,
                                 "first_run_ms": ref.first_ms}
        result["ratio_vs_onnxruntime"] = ours.median_ms / ref.median_ms
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.model}  provider={result['provider']}  threads={args.threads or 'default'}  runs={args.runs}")
    print(f"inputs: {', '.join(f'{k}{v}' for k, v in result['inputs'].items())}")
    print(f"{'runtime':<14}{'median ms':>11}{'p90 ms':>10}{'first ms':>10}")
    print(f"{'webinfer':<14}{ours.median_ms:>11.2f}{ours.p90_ms:>10.2f}{ours.first_ms:>10.1f}")
    if args.compare:
        r = result["onnxruntime"]
        print(f"{'onnxruntime':<14}{r['median_ms']:>11.2f}{r['p90_ms']:>10.2f}{r['first_run_ms']:>10.1f}")
        print(f"ratio webinfer/onnxruntime (median): {result['ratio_vs_onnxruntime']:.2f}")
    print(f"peak memory during a run: {result['peak_bytes'] / 1e6:.1f} MB; nodes: {result['nodes_total']}")
    if "nodes_on_gpu" in result:
        print(f"webgpu ({result['adapter']}): {result['nodes_on_gpu']} of {result['nodes_total']} nodes on the GPU, "
              f"{result['dispatches_per_run']} dispatches and {result['readbacks_per_run']} readbacks per run")
        if result["fallback_ops"]:
            print("on the cpu: " + ", ".join(f"{op} x{n}" for op, n in result["fallback_ops"].items()))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .serving import ServerConfig, serve
    except ImportError as e:
        raise SystemExit(f"webinfer serve needs the serve extra: pip install 'webinfer[serve]' ({e})") from e
    config = ServerConfig(models=Path(args.models).expanduser() if args.models else None, grpc_port=args.grpc_port,
                          host=args.host, max_body_bytes=args.max_body_bytes,
                          dist=Path(args.dist) if args.dist else None, model_name=args.model_name)
    try:
        serve(config, args.port)
    except FileNotFoundError as e:
        raise SystemExit(f"webinfer serve: {e}") from e
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from .quantize import compare, describe_size, quantize_model

    data = Path(args.model).read_bytes()
    changed: list[str] = []
    try:
        out = quantize_model(data, args.mode, args.block_size, changed)
    except ValueError as e:
        raise SystemExit(f"webinfer quantize: {e}") from e
    Path(args.out).write_bytes(out)
    agreement = [] if args.no_check else compare(data, out)
    if args.json:
        print(json.dumps({"mode": args.mode, "bytes_before": len(data), "bytes_after": len(out),
                          "weights_changed": changed, "outputs": [vars(a) for a in agreement]}, indent=2))
        return 0
    print(f"{args.mode}: {describe_size(len(data), len(out))} -> {args.out}")
    if changed:
        print(f"  {len(changed)} weight tensors rewritten")
    else:
        print("  no weights to rewrite in this mode (int4 takes MatMul weights only; every mode skips 1-D tensors "
              "and those under 1,024 values)")
    for a in agreement:
        top1 = "" if a.top1 is None else f", top-1 agreement {a.top1:.1%}"
        print(f"  output '{a.name}' vs float32 (random inputs): cosine min {a.cosine_min:.5f} "
              f"mean {a.cosine_mean:.5f}{top1}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="webinfer", description="ONNX inference with numpy and WebGPU kernels")
    p.add_argument("--version", action="version", version=f"webinfer {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="inputs, outputs, opsets, op histogram, parameters, FLOPs")
    info.add_argument("model")
    info.add_argument("--dim", action="append", default=[], metavar="NAME=N", help="bind a symbolic dimension")
    info.add_argument("--json", action="store_true")
    info.add_argument("--provider", help="also show where nodes would run on these providers (e.g. webgpu,cpu) "
                                         "and why any fall back to the cpu")
    info.set_defaults(func=cmd_info)

    run = sub.add_parser("run", help="run a model on .npy inputs")
    run.add_argument("model")
    run.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy")
    run.add_argument("--provider", default="cpu", help="comma-separated, in priority order (default: cpu)")
    run.add_argument("--output-dir")
    run.set_defaults(func=cmd_run)

    bench = sub.add_parser("bench", help="latency on random (or given) inputs, optionally against onnxruntime")
    bench.add_argument("model")
    bench.add_argument("--provider", default="cpu")
    bench.add_argument("--runs", type=int, default=20)
    bench.add_argument("--warmup", type=int, default=3)
    bench.add_argument("--threads", type=int, default=None, help="BLAS / onnxruntime intra-op threads")
    bench.add_argument("--dim", action="append", default=[], metavar="NAME=N")
    bench.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy")
    bench.add_argument("--compare", choices=["onnxruntime"])
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=cmd_bench)

    serve = sub.add_parser("serve", help="serve the models of a directory over the v2 inference protocol "
                                         "(HTTP, optionally gRPC) and the browser demo (web/dist)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--port", type=int, default=8000, help="HTTP port (v2 API, /metrics, demo)")
    serve.add_argument("--grpc-port", type=int, help="also serve the v2 gRPC API on this port (e.g. 8001)")
    serve.add_argument("--models", help="a model file, or a directory of models (.onnx files, or folders with "
                                        "model.onnx and an optional config.json); also served at /models/")
    serve.add_argument("--model-name", help="serve --models (a file or one model's folder) as this single model, "
                                            "as KServe starts a runtime")
    serve.add_argument("--max-body-bytes", type=int, default=64 << 20,
                       help="largest HTTP request body and gRPC message (default 64 MiB)")
    serve.add_argument("--dist", help="the bundle built by build_wasm.py (default: web/dist of this checkout)")
    serve.set_defaults(func=cmd_serve)

    quant = sub.add_parser("quantize", help="write a smaller model (int8, int4 or fp16 weights) and report "
                                            "its size and accuracy against the float32 one")
    quant.add_argument("model")
    quant.add_argument("out")
    quant.add_argument("--mode", required=True, choices=["int8", "int4", "fp16"],
                       help="int8: per-channel weights + DequantizeLinear; int4: MatMul weights as "
                            "com.microsoft.MatMulNBits; fp16: float16 weights + Cast (computes in float32)")
    quant.add_argument("--block-size", type=int, default=32, help="int4 block length along K (default 32)")
    quant.add_argument("--no-check", action="store_true", help="skip the accuracy comparison")
    quant.add_argument("--json", action="store_true")
    quant.set_defaults(func=cmd_quantize)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except WebinferError as e:
        print(f"webinfer: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
