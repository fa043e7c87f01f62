"""The server (MIME types, cross-origin isolation, /models/) and build_wasm.py (cache, checks, reproducibility)."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from .conftest import build_wasm
from .harness import ROOT, DemoServer

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


@pytest.mark.parametrize("path, content_type", [
    ("", "text/html"), ("app.mjs", "text/javascript"), ("pyodide/pyodide.mjs", "text/javascript"),
    ("pyodide/pyodide.asm.wasm", "application/wasm"), ("pyodide/pyodide.asm.js", "text/javascript"),
    ("style.css", "text/css"), ("models/ppocr_det.onnx", "application/octet-stream"),
    ("models/face_detection_short_range.tflite", "application/octet-stream"), ("face.png", "image/png"),
])
def test_server_mime_types_and_isolation(server_url: str, path: str, content_type: str) -> None:
    status, headers, _ = _get(server_url + path)
    assert status == 200
    assert headers["content-type"].split(";")[0] == content_type
    assert headers["cross-origin-opener-policy"] == "same-origin"
    assert headers["cross-origin-embedder-policy"] == "require-corp"


def test_server_models_directory(dist: Path, tmp_path: Path) -> None:
    (tmp_path / "extra.onnx").write_bytes(b"model bytes")
    with DemoServer(dist, models=tmp_path) as server:
        status, _, body = _get(server.url + "models/extra.onnx")
        assert status == 200 and body == b"model bytes"
        status, _, _ = _get(server.url + "models/ppocr_det.onnx")  # the bundle's own models stay reachable
        assert status == 200
        status, _, body = _get(server.url + "api/models")
        names = [m["name"] for m in json.loads(body)]
        assert names[0] == "extra.onnx" and "ppocr_det.onnx" in names
        assert "face_detection_short_range.tflite" in names  # TFLite files are models too
        status, headers, _ = _get(server.url + "models/nope.onnx")
        assert status == 404


def test_server_refuses_missing_bundle(tmp_path: Path) -> None:
    from webinfer.server import create_app
    with pytest.raises(FileNotFoundError, match="build_wasm.py"):
        create_app(tmp_path)


def test_rebuild_with_nothing_changed_is_fast_and_writes_nothing(dist: Path) -> None:
    build_wasm.build()  # catch up with sources edited since the session's build
    t0 = time.perf_counter()
    report = build_wasm.build()
    assert report.written == [] and report.removed == []
    assert time.perf_counter() - t0 < 10
    assert "cache" in report.sources["numpy"] and "cache" in report.sources["pyodide"]


def test_bundle_contents(dist: Path) -> None:
    lock = json.loads((dist / "pyodide" / "pyodide-lock.json").read_text())
    entry = lock["packages"]["webinfer"]
    wheel = dist / "pyodide" / entry["file_name"]
    assert entry["sha256"] == hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "webinfer/session.py" in names
    assert all(f"webinfer/wgsl/{f.name}" in names for f in (ROOT / "wgsl").glob("*.wgsl"))
    numpy = dist / "pyodide" / build_wasm.NUMPY_WHEEL
    assert lock["packages"]["numpy"]["sha256"] == hashlib.sha256(numpy.read_bytes()).hexdigest()
    info = json.loads((dist / "build-info.json").read_text())
    assert info["pyodide"] == "0.27.7" and info["numpy_sha256"] == build_wasm.NUMPY_SHA256
    assert hashlib.sha256((dist / info["face_image"]).read_bytes()).hexdigest() == build_wasm.FACE_IMAGE_SHA256
    assert (dist / info["face_model"]).read_bytes()[4:8] == b"TFL3"


def test_bundle_ships_bytecode_beside_the_unchanged_sources(dist: Path) -> None:
    """python_stdlib.zip and both wheels: every file of the originals with the same bytes, plus an
    unchecked-hash .pyc (flags 0b01) compiled by Pyodide's Python 3.12 for each module (cold start)."""
    assert json.loads((dist / "build-info.json").read_text())["bytecode"] is True
    cache = build_wasm.cache_root()
    lock = json.loads((dist / "pyodide" / "pyodide-lock.json").read_text())
    pairs = [(cache / f"pyodide-{build_wasm.PYODIDE_VERSION}" / "python_stdlib.zip",
              dist / "pyodide" / "python_stdlib.zip", "asyncio/__init__.pyc"),
             (cache / build_wasm.NUMPY_WHEEL, dist / "pyodide" / build_wasm.NUMPY_WHEEL,
              "numpy/__pycache__/__init__.cpython-312.pyc"),
             (None, dist / "pyodide" / lock["packages"]["webinfer"]["file_name"],
              "webinfer/__pycache__/session.cpython-312.pyc")]
    for original, bundled, pyc in pairs:
        got = zipfile.ZipFile(bundled)
        names = set(got.namelist())
        if original is not None:
            with zipfile.ZipFile(original) as z:
                for name in z.namelist():
                    if not name.endswith(".dist-info/RECORD"):
                        assert got.read(name) == z.read(name), f"{bundled.name}: {name} differs"
        data = got.read(pyc)
        assert data[4:8] == (1).to_bytes(4, "little"), f"{pyc}: not an unchecked-hash .pyc"
        assert data[:4] == (3531).to_bytes(2, "little") + b"\r\n", f"{pyc}: not CPython 3.12's magic"
        assert len([n for n in names if n.endswith(".pyc")]) > 0.9 * len([n for n in names if n.endswith(".py")])


def test_wheel_build_is_reproducible(dist: Path, tmp_path: Path) -> None:
    """The same sources give the same wheel bytes (fixed SOURCE_DATE_EPOCH, clean copy)."""
    lock = json.loads((dist / "pyodide" / "pyodide-lock.json").read_text())
    fresh, = build_wasm.with_bytecode([(build_wasm.webinfer_wheel(tmp_path, build_wasm.Report()), "wheel")],
                                      build_wasm.cache_root() / f"pyodide-{build_wasm.PYODIDE_VERSION}", tmp_path,
                                      build_wasm.Report())
    if build_wasm.sources_digest() != json.loads((dist / "build-info.json").read_text())["sources_digest"]:
        pytest.skip("sources changed since the bundle was built (concurrent edits)")
    assert hashlib.sha256(fresh.read_bytes()).hexdigest() == lock["packages"]["webinfer"]["sha256"]


def test_bad_sources_fail_with_a_clear_message(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / build_wasm.NUMPY_WHEEL).write_bytes(b"not the numpy wheel")
    (src / f"pyodide-{build_wasm.PYODIDE_VERSION}.tgz").write_bytes(b"not the tarball")
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(build_wasm.BuildError, match="sha256"):
        build_wasm.numpy_wheel(cache, src, build_wasm.Report())
    with pytest.raises(build_wasm.BuildError, match="integrity"):
        build_wasm.pyodide_tarball(cache, src, build_wasm.Report())
    (src / build_wasm.NUMPY_WHEEL).unlink()
    carrier = src / build_wasm.NUMPY_CARRIER_WHEEL
    with zipfile.ZipFile(carrier, "w") as z:
        z.writestr("something/else.txt", "x")
    with pytest.raises(build_wasm.BuildError, match="holds no"):
        build_wasm.numpy_wheel(cache, src, build_wasm.Report())
    (src / build_wasm.FACE_IMAGE_WHEEL).write_bytes(b"not the scikit-image wheel")
    with pytest.raises(build_wasm.BuildError, match="sha256"):
        build_wasm.face_image(cache, src, build_wasm.Report())


def test_wheel_builds_in_a_fresh_venv(tmp_path: Path) -> None:
    """The README's path from a plain venv: Python 3.11's venv ships setuptools 65.5, older than the
    build-system asks for, so the wheel is built in pip's isolated environment instead of failing."""
    import subprocess
    import venv
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "numpy"], check=True, timeout=600)
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); import build_wasm; "
            "print(build_wasm._build_backend_present()); "
            "print(build_wasm.webinfer_wheel(Path(sys.argv[2]), build_wasm.Report()).name)")
    proc = subprocess.run([str(py), "-c", code, str(ROOT), str(tmp_path / "cache")], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    backend_present, wheel = proc.stdout.split()[-2:]
    assert backend_present == "False"  # the venv's own setuptools (65.5, or none from 3.12) is too old
    assert wheel.startswith("webinfer-") and wheel.endswith("-py3-none-any.whl")
