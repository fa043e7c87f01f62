"""Run inside Pyodide by tests/browser/test_quantize_pyodide.py: `webinfer quantize` on numpy alone."""

from __future__ import annotations

import base64
import hashlib

from webinfer.quantize import MODES, quantize_model


async def run(model_b64: str) -> dict[str, str]:
    """sha256 of each mode's output for the model given as base64 (async: node_python.mjs awaits it)."""
    data = base64.b64decode(model_b64)
    return {mode: hashlib.sha256(quantize_model(data, mode)).hexdigest() for mode in MODES}
