"""The edge run: web/node/run.mjs runs the bundled wheel in Pyodide under Node.js (no WebGPU there: the cpu
provider, with a notice when webgpu was asked for); outputs match native."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

import webinfer

from .harness import ROOT
from .test_demo_page import small_model

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

RUN_MJS = ROOT / "web" / "node" / "run.mjs"


def _run(node: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([node, str(RUN_MJS), *args], capture_output=True, text=True, timeout=300)


def test_node_run_matches_native(dist: Path, node_path: str, tmp_path: Path) -> None:
    model = tmp_path / "small.onnx"
    model.write_bytes(small_model(seed=5))
    x = np.random.default_rng(11).standard_normal((5, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = _run(node_path, str(model), "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", str(tmp_path / "out"),
                "--dist", str(dist))
    assert proc.returncode == 0, proc.stderr
    assert "y: float32[5, 4]" in proc.stdout
    assert "providers: cpu" in proc.stdout
    got = np.load(tmp_path / "out" / "y.npy")
    ref = webinfer.InferenceSession(str(model), providers=["cpu"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_node_run_reports_errors(dist: Path, node_path: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not a model\xff")
    proc = _run(node_path, str(bad), "--dist", str(dist))
    assert proc.returncode == 1
    assert "ModelLoadError" in proc.stderr
    proc = _run(node_path, str(tmp_path / "missing.onnx"), "--dist", str(dist))
    assert proc.returncode == 2 and "not found" in proc.stderr


def test_node_run_without_webgpu_falls_back_to_cpu_with_notice(dist: Path, node_path: str, tmp_path: Path) -> None:
    """Node.js has no navigator.gpu: webgpu,cpu runs on the cpu (same outputs) and says why; webgpu alone fails."""
    model = tmp_path / "small.onnx"
    model.write_bytes(small_model(seed=2))
    x = np.random.default_rng(3).standard_normal((2, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = _run(node_path, str(model), "--input", f"x={tmp_path / 'x.npy'}", "--provider", "webgpu,cpu",
                "--output-dir", str(tmp_path / "out"), "--dist", str(dist))
    assert proc.returncode == 0, proc.stderr
    assert "providers: cpu;" in proc.stdout
    assert "notice: webgpu unavailable, running on cpu: navigator.gpu is missing" in proc.stderr
    ref = webinfer.InferenceSession(str(model), providers=["cpu"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(np.load(tmp_path / "out" / "y.npy"), ref, rtol=0, atol=1e-6)
    proc = _run(node_path, str(model), "--input", f"x={tmp_path / 'x.npy'}", "--provider", "webgpu",
                "--dist", str(dist))
    assert proc.returncode == 1 and "DeviceError: navigator.gpu is missing" in proc.stderr
