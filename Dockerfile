# webinfer's inference server: the v2 API over HTTP (8000) and gRPC (8001), /metrics on the HTTP port.
#
#   python -m build --wheel            # or: pip wheel --no-deps -w dist .
#   docker build -t webinfer-serve .
#   docker run -p 8000:8000 -p 8001:8001 -v $PWD/models:/models:ro webinfer-serve
#
# The numpy CPU path needs nothing else.  The WebGPU path (provider "webgpu" in a model's config.json)
# needs the gpu extra, a Vulkan loader and driver in the image (libvulkan1) and, on NVIDIA, the container
# toolkit's graphics capability: not verified (no container engine on the build machines).
# tests/serving/test_deploy.py runs this file's install step, entry command and health check in a
# clean virtual environment from the built wheel.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin webinfer

COPY dist/webinfer-*.whl /tmp/wheels/
RUN pip install "$(ls /tmp/wheels/webinfer-*.whl)[serve]" && rm -rf /tmp/wheels

# Mount the model repository here, read-only: .onnx files, or folders with model.onnx + config.json.
RUN mkdir /models
VOLUME /models

USER 10001
EXPOSE 8000 8001

HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]

ENTRYPOINT ["webinfer", "serve", "--host", "0.0.0.0", "--port", "8000", "--grpc-port", "8001", "--models", "/models"]
