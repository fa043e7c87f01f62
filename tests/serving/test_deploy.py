"""The deployment files, tested as far as this machine allows (no container engine, no cluster):

- Dockerfile: its install step, entry command and health check run in a clean virtual environment
  (no system site-packages) from the wheel built from this checkout; tritonclient then talks to it.
- deploy/kserve: the manifests build into the kserve SDK's own models (every key known, every type
  right) and serialize back with every value kept.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from .conftest import build_repository

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> dict[str, list[str]]:
    """Dockerfile instruction -> the texts of its occurrences (continuation lines joined)."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.setdefault(word.upper(), []).append(rest.strip())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dockerfile_shape() -> None:
    ins = _instructions()
    assert re.fullmatch(r"python:3\.\d+-slim", ins["FROM"][0])
    assert ins["USER"] == ["10001"]  # non-root
    assert "VOLUME" in ins and ins["VOLUME"] == ["/models"]
    health = json.loads(ins["HEALTHCHECK"][0].split("CMD", 1)[1])
    assert "/v2/health/ready" in " ".join(health)
    entry = json.loads(ins["ENTRYPOINT"][0])
    assert entry[:2] == ["webinfer", "serve"] and "/models" in entry


@pytest.mark.slow
def test_dockerfile_install_entry_and_healthcheck_in_a_clean_venv(tmp_path: Path) -> None:
    th = pytest.importorskip("tritonclient.http")
    tg = pytest.importorskip("tritonclient.grpc")
    ins = _instructions()
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True, timeout=300)
    wheel = next(dist.glob("webinfer-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    # The image's install step, with the wheel where the Dockerfile copies it.
    (install,) = [r for r in ins["RUN"] if "pip install" in r]
    spec = re.search(r'"\$\(ls (/tmp/wheels/webinfer-\*\.whl)\)(\[[a-z,]+\])"', install)
    assert spec, install
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}{spec.group(2)}"],
                   check=True, timeout=600)
    # The entry command, on free ports, over a repository of small models.
    models = build_repository(tmp_path / "models")
    http_port, grpc_port = _free_port(), _free_port()
    entry = json.loads(ins["ENTRYPOINT"][0])
    ports = {"8000": str(http_port), "8001": str(grpc_port), "/models": str(models), "0.0.0.0": "127.0.0.1"}
    command = [str(venv / "bin" / entry[0])] + [ports.get(a, a) for a in entry[1:]]
    health = [ports.get(a, a) for a in json.loads(ins["HEALTHCHECK"][0].split("CMD", 1)[1])]
    health = [str(py) if a == "python" else a.replace(":8000/", f":{http_port}/") for a in health]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    assert subprocess.run(health, env=env, capture_output=True, timeout=60).returncode != 0  # nothing listening yet
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while subprocess.run(health, env=env, capture_output=True, timeout=60).returncode != 0:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the health check never passed"
            time.sleep(0.5)
        x = np.random.default_rng(9).standard_normal((2, 4)).astype(np.float32)
        for client, mod in ((th.InferenceServerClient(f"127.0.0.1:{http_port}"), th),
                            (tg.InferenceServerClient(f"127.0.0.1:{grpc_port}"), tg)):
            inputs = [mod.InferInput(n, [2, 4], "FP32") for n in ("x", "y")]
            for i in inputs:
                i.set_data_from_numpy(x)
            np.testing.assert_array_equal(client.infer("pair", inputs).as_numpy("sum"), x + x)
        out = subprocess.run([str(py), "-c", "import webinfer, sys; print(webinfer.__file__)"], capture_output=True,
                             text=True, env=env, check=True).stdout
        assert str(venv) in out  # the wheel's copy, not this checkout's
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("path, klass", [("servingruntime.yaml", "V1alpha1ServingRuntime"),
                                         ("inferenceservice.yaml", "V1beta1InferenceService")])
def test_kserve_manifests_match_the_sdk_models(path: str, klass: str) -> None:
    # In a fresh interpreter: kserve's generated protobuf modules and tritonclient's (imported by the other
    # tests) define the same message names, and one process's default descriptor pool refuses the second.
    r = subprocess.run([sys.executable, str(Path(__file__).with_name("kserve_manifest_check.py")),
                        str(ROOT / "deploy" / "kserve" / path), klass], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_kserve_runtime_starts_webinfer_as_one_named_model() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((ROOT / "deploy" / "kserve" / "servingruntime.yaml").read_text())
    (container,) = doc["spec"]["containers"]
    assert container["command"] == ["webinfer"] and "v2" in doc["spec"]["protocolVersions"]
    from webinfer.cli import build_parser

    args = build_parser().parse_args([a.replace("{{.Name}}", "minilm") for a in container["args"]])
    assert (args.models, args.model_name, args.port, args.grpc_port) == ("/mnt/models", "minilm", 8080, 9000)
    assert container["securityContext"]["runAsNonRoot"] is True
