"""Print (or check) the README's table of supported ops, generated from the op registry.

    python tools/op_table.py            # print the markdown table
    python tools/op_table.py --update   # rewrite the table between the markers in README.md

The table lists every registered op with its family module, the opset
versions it has registrations for, and whether a WGSL kernel exists for it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from webinfer.ops import REGISTRY

BEGIN = "<!-- op-table:begin -->"
END = "<!-- op-table:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"


def gpu_ops() -> set[tuple[str, str]]:
    """(domain, op type) of the ops with a WGSL kernel (empty when the GPU package is absent); by
    domain, since com.microsoft's Gelu or Attention are not the ai.onnx ops of the same name."""
    try:
        from webinfer.devices.gpu.kernels import KERNELS
    except ImportError:
        return set()
    return set(KERNELS)


def table() -> str:
    gpu = gpu_ops()
    rows = ["| op | domain | family | registered since opset | WebGPU kernel |", "|---|---|---|---|---|"]
    for (domain, name), versions in sorted(REGISTRY.complete().ops.items(), key=lambda kv: (kv[0][0], kv[0][1].lower())):
        family = versions[-1].build.__module__.rsplit(".", 1)[-1]
        sinces = ", ".join(str(v.since) for v in versions)
        rows.append(f"| {name} | {domain or 'ai.onnx'} | {family} | {sinces} | {'yes' if (domain, name) in gpu else '-'} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--update", action="store_true", help="rewrite README.md in place")
    args = p.parse_args(argv)
    text = table()
    if not args.update:
        print(text)
        return 0
    readme = README.read_text()
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    README.write_text(readme[:start] + "\n" + text + "\n" + readme[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
