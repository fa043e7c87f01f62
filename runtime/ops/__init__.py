"""Ops, one module per family; importing this package registers them all in `REGISTRY`.

Where does op X live? In the module named after its family (listed below);
`python tools/op_table.py` prints the whole table (the one in README.md).
"""

from . import (attention, cast, contrib_transformer, control, conv, detection, elementwise, image,  # noqa: F401
               indexing, matmul, ml, nbits, norm, pool, qlinear, quant, random, reduce, resize, rnn, sequence,
               shape, signal, text, training)
from .registry import REGISTRY, OpContext, op, register

__all__ = ["REGISTRY", "OpContext", "op", "register"]
