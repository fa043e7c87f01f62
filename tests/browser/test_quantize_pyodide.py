"""`webinfer quantize` inside Pyodide (Node.js, the bundled wheel): the same bytes as natively, for every
mode, so a page can shrink a model the user drops and offer the file for download."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from webinfer.quantize import MODES, quantize_model

from ..test_quantize import _small_model

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

HERE = Path(__file__).resolve().parent


def test_quantize_in_pyodide_gives_the_native_bytes(dist: Path, node_path: str) -> None:
    data = _small_model()
    expression = f"m.run({base64.b64encode(data).decode()!r})"
    proc = subprocess.run([node_path, str(HERE / "node_python.mjs"), str(dist), str(HERE / "quantize_checks.py"),
                           expression], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {mode: hashlib.sha256(quantize_model(data, mode)).hexdigest() for mode in MODES}
