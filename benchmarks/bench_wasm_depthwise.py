"""wasm/conv.c's depthwise conv against an earlier revision's, under Node.js and in Chromium.

    python benchmarks/bench_wasm_depthwise.py [--against main] [--rounds 41] [--json]

Compiles wasm/conv.c of the checkout ("head") and of `--against` ("base",
with that revision's simd_math.h) with build_wasm.py's flags and checks, then
times both in one engine, interleaved (benchmarks/browser/depthwise_bench.js):
Node.js (SIMD128; Node 20 has no relaxed SIMD) and Chromium (relaxed SIMD and
SIMD128).  Layers: MobileNetV3-small's depthwise convs at 224x224, HardSwish
fused.  Prints medians per layer, head/base speed-up, and the largest
difference between the two builds' outputs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import build_wasm  # noqa: E402
from tests.browser.harness import launch_options  # noqa: E402

BENCH = ROOT / "benchmarks" / "browser" / "depthwise_bench.js"


def builds(against: str, variant: str) -> dict[str, list[int]]:
    """{"base": bytes of `against`'s conv.c, "head": the checkout's} for one variant, as lists for JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("conv.c", "simd_math.h"):
            text = subprocess.run(["git", "-C", str(ROOT), "show", f"{against}:wasm/{name}"], capture_output=True,
                                  text=True, check=True).stdout
            (Path(tmp) / name).write_text(text)
        base = build_wasm.compile_kernel(Path(tmp) / "conv.c", variant)
    head = build_wasm.compile_kernel(ROOT / "wasm" / "conv.c", variant)
    return {"base": list(base), "head": list(head)}


def in_node(args: dict[str, Any]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        raise SystemExit("node is not installed (apt-get install nodejs)")
    script = f"const f = {BENCH.read_text()};\nconst a = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n" \
             "f(a).then((r) => console.log(JSON.stringify(r)));"
    proc = subprocess.run([node, "-e", script], input=json.dumps(args), capture_output=True, text=True,
                          timeout=600, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", default="main", help="the git revision whose wasm/conv.c is the base")
    p.add_argument("--rounds", type=int, default=41, help="timed rounds per build and layer (10 calls each)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from playwright.sync_api import sync_playwright

    results: dict[str, list[dict[str, Any]]] = {}
    results["node simd128"] = in_node({"bytes": builds(args.against, "simd128"), "rounds": args.rounds})
    with sync_playwright() as pw:
        browser = pw.chromium.launch(**launch_options())
        page = browser.new_page()
        for variant in ("relaxed", "simd128"):
            results[f"chromium {variant}"] = page.evaluate(
                BENCH.read_text(), {"bytes": builds(args.against, variant), "rounds": args.rounds})
        browser.close()
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"depthwise2d: base = wasm/conv.c at {args.against}, head = the checkout; medians of {args.rounds} "
          "rounds of 10 calls, ms (Chromium's timer is coarse: 0.1 ms steps)")
    for where, rows in results.items():
        print(f"\n{where}\n{'layer':<30}{'base ms':>9}{'head ms':>9}{'speed-up':>10}{'max|diff|':>11}")
        for r in rows:
            print(f"{r['layer']:<30}{r['base_ms']:>9.3f}{r['head_ms']:>9.3f}{r['base_ms'] / r['head_ms']:>9.2f}x"
                  f"{r['max_diff']:>11.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
