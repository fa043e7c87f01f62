"""Ops, one module per family; importing this package registers them all in `REGISTRY`.

Where does op X live? In the module named after its family (listed below);
`webinfer info --ops` prints the whole table.
"""

from . import (attention, cast, control, conv, detection, elementwise, image, indexing, matmul, ml,  # noqa: F401
               norm, pool, qlinear, quant, random, reduce, resize, rnn, sequence, shape, signal, text, training)
from .registry import REGISTRY, OpContext, op, register

__all__ = ["REGISTRY", "OpContext", "op", "register"]
