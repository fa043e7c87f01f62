"""A webinfer model as a Ray Serve deployment that speaks the v2 infer protocol (JSON and binary tensors).

    serve run deploy/ray/webinfer_deployment.py:build model_path=/models/minilm/model.onnx model_name=minilm

Ray does what one `webinfer serve` process cannot: replicas on several
machines, routing and autoscaling.  Each replica is a process holding one
webinfer session; `@serve.batch` takes the place of webinfer's in-process
batcher (requests are concatenated on the batch dim and split back, as the
server's scheduler does, with the same helper).  Requests reach it at
`/v2/models/<name>/infer` (and the model's metadata and ready endpoints),
so tritonclient.http works against Ray's HTTP proxy unchanged.  The gRPC
API is not routed through Ray (its gRPC proxy maps RPC names to methods
differently): run `webinfer serve --grpc-port` for that.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from webinfer.serving.app import Server
from webinfer.serving.codec import InferRequest, decode_http, encode_http, parse_json_body
from webinfer.serving.errors import BadRequest, ModelFailed, ServingError
from webinfer.serving.repository import load, read_config
from webinfer.serving.scheduler import run_requests

#: The largest request body a replica reads (the server's default too).
MAX_BODY = 64 << 20


@serve.deployment(max_ongoing_requests=16, ray_actor_options={"num_cpus": 1},
                  autoscaling_config={"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 4})
class WebinferModel:
    """One replica: one session of the model, v2 endpoints under /v2/models/<name>."""

    def __init__(self, model_path: str, model_name: str, max_batch_size: int = 8):
        self.model = load(read_config(model_name, Path(model_path), {"max_batch_size": max_batch_size}))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
    async def _infer(self, requests: list[InferRequest]) -> list[dict[str, Any] | Exception]:
        """Concatenate on the batch dim, run in a thread (the replica's loop keeps serving), split back."""
        return await asyncio.to_thread(run_requests, self.model, self.model.sessions[0], requests)

    async def __call__(self, request: Request) -> Response:
        tail = request.url.path.rstrip("/").split(f"/v2/models/{self.model.name}", 1)[-1]
        if request.method == "GET":
            if tail == "":
                return JSONResponse(Server.metadata(self.model))
            if tail == "/ready":
                return JSONResponse({"ready": True})
            if tail == "/config":
                return JSONResponse(Server.model_config(self.model))
            return JSONResponse({"error": f"no such endpoint {request.url.path}"}, status_code=404)
        if tail != "/infer":
            return JSONResponse({"error": f"no such endpoint {request.url.path}"}, status_code=404)
        try:
            body = await request.body()
            if len(body) > MAX_BODY:
                raise BadRequest(f"request body exceeds the limit of {MAX_BODY} bytes")
            n = request.headers.get("inference-header-content-length")
            if n is not None and (not n.isdigit() or not 0 < int(n) <= len(body)):
                raise BadRequest(f"Inference-Header-Content-Length {n!r} must be between 1 and {len(body)}")
            split = int(n) if n is not None else len(body)
            view = memoryview(body)
            req = decode_http(self.model, parse_json_body(view[:split]), view[split:])
            if self.model.config.max_batch_size and req.batch > self.model.config.max_batch_size:
                raise BadRequest(f"batch {req.batch} exceeds max_batch_size {self.model.config.max_batch_size}")
            result = await self._infer(req)
            if isinstance(result, Exception):
                raise result if isinstance(result, ServingError) else ModelFailed(
                    f"model '{self.model.name}' failed: {type(result).__name__}: {result}")
            content, header_length = encode_http(self.model, req, result)
        except ServingError as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        if header_length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(header_length)})


def build(args: dict[str, str]) -> Any:
    """`serve run ...:build model_path=... model_name=...`: the application, routed at /v2/models/<name>."""
    return WebinferModel.bind(args["model_path"], args["model_name"], int(args.get("max_batch_size", 8)))
