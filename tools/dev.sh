#!/usr/bin/env bash
# One entry point for a fresh machine: installs what is needed, then does the job.
#   bash tools/dev.sh demo   # set up, build the models, run the CLI demo on PP-OCRv4 det
#   bash tools/dev.sh test   # set up and run the whole test suite
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

setup_system() {
    # Debian packages: software Vulkan (wgpu GPU tests without a GPU) and Chromium (browser tests).
    local need=()
    for pkg in mesa-vulkan-drivers libvulkan1 chromium; do
        dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
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

setup_models() {
    "$PY" tools/models.py
}

case "${1:-}" in
    demo)
        setup_system; setup_python; setup_models
        model="${WEBINFER_CACHE:-$HOME/.cache/webinfer/models}/ppocr_det.onnx"
        webinfer info "$model" --dim p2o.DynamicDimension.0=1 --dim p2o.DynamicDimension.1=640 \
            --dim p2o.DynamicDimension.2=640
        webinfer bench "$model" --dim p2o.DynamicDimension.0=1 --dim p2o.DynamicDimension.1=640 \
            --dim p2o.DynamicDimension.2=640 --runs 10 --threads 1 --compare onnxruntime
        ;;
    test)
        setup_system; setup_python; setup_models
        shift
        "$PY" -m pytest -q -n 2 "$@"
        ;;
    setup)
        setup_system; setup_python; setup_models
        ;;
    *)
        echo "usage: bash tools/dev.sh demo|test|setup" >&2
        exit 2
        ;;
esac
