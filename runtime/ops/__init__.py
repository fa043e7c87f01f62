"""Ops, one module per family, registered in `REGISTRY`.

Where does op X live? In the module named after its family (listed below);
`python tools/op_table.py` prints the whole table (the one in README.md).

Importing this package registers the families most models use; the others
(`DEFERRED`) are imported on the first lookup of an op none of the first
answers, or by `REGISTRY.complete()`.  Importing them all cost about a third
of `import webinfer` in Pyodide, on the demo's path to its first result.
"""

import importlib

from . import (attention, cast, conv, elementwise, indexing, matmul, norm, pool, reduce, resize,  # noqa: F401
               shape)
from .registry import REGISTRY, OpContext, op, register

#: Families imported when first needed (each op lives in exactly one family, so no op can be served by
#: an older version here while a newer one waits there).
DEFERRED = ("contrib_transformer", "control", "detection", "image", "ml", "nbits", "qlinear", "quant", "random",
            "rnn", "sequence", "signal", "text", "training")


def _import_deferred() -> None:
    for family in DEFERRED:
        importlib.import_module(f"{__name__}.{family}")


REGISTRY.pending = _import_deferred

__all__ = ["REGISTRY", "OpContext", "op", "register"]
