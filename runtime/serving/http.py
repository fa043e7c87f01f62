"""The v2 REST endpoints (starlette): health, metadata, config, infer, and `/metrics`.

The handlers parse and answer; models run in their scheduler's threads.
An infer request takes its queue slot before its body is read (a full
queue answers 503 at once), and the body is counted while it streams in:
over the limit is 413 without buffering the rest.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import numpy as np

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..version import __version__
from .codec import decode_http, encode_http, parse_json_body
from .errors import BadRequest, ServingError, TooLarge

if TYPE_CHECKING:
    from .app import Server

#: Extensions /v2 advertises: only those implemented (perf tooling acts on the list).
EXTENSIONS = ["binary_tensor_data", "model_configuration"]


class Cancelled(ServingError):
    """The client went away before its request was read; nobody sees this answer, the metrics count it."""

    status = 400
    reason = "CANCELED"


class SlowBody(ServingError):
    """The body trickled in for longer than the server waits (it holds a queue slot meanwhile)."""

    status = 408
    grpc_code = "DEADLINE_EXCEEDED"


def error(e: ServingError) -> JSONResponse:
    return JSONResponse({"error": str(e)}, status_code=e.status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it (or its decompressed form) passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(f"bad Content-Length {declared!r}")
        if int(declared) > limit:
            raise TooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Cancelled("the client disconnected while sending the request") from None
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding in ("gzip", "deflate"):
        inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as e:
            raise BadRequest(f"body is not valid {encoding}: {e}") from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise TooLarge(f"decompressed request body exceeds the limit of {limit} bytes")
    elif encoding != "identity":
        raise BadRequest(f"unsupported Content-Encoding {encoding!r} (gzip, deflate)")
    return body


def _split(request: Request, body: bytes) -> tuple[memoryview, memoryview]:
    """(JSON header, binary tensors) by Inference-Header-Content-Length; no header: all JSON."""
    view = memoryview(body)
    value = request.headers.get("inference-header-content-length")
    if value is None:
        return view, view[len(view):]
    if not value.isdigit() or not 0 < int(value) <= len(view):
        raise BadRequest(f"Inference-Header-Content-Length {value!r} must be between 1 and the body's "
                         f"{len(view)} bytes")
    n = int(value)
    return view[:n], view[n:]


#: Bytes of tensors above which decoding or encoding moves off the event loop (JSON of a large
#: tensor takes tens of ms; below this, a thread hop costs more than it saves).
OFF_LOOP_BYTES = 256 << 10

T = TypeVar("T")


async def _off_loop(nbytes: int, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)`, in a thread when it handles more than OFF_LOOP_BYTES, so other requests keep moving."""
    if nbytes > OFF_LOOP_BYTES:
        return await asyncio.to_thread(fn, *args)
    return fn(*args)


def routes(server: "Server") -> list[BaseRoute]:
    """The v2 routes of `server` (a model path with or without /versions/{version})."""

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        ok = server.ready()
        return JSONResponse({"ready": ok}, status_code=200 if ok else 400)

    async def metadata(request: Request) -> Response:
        return JSONResponse({"name": "webinfer", "version": __version__, "extensions": EXTENSIONS})

    def lookup(request: Request) -> Any:
        return server.model(request.path_params["model"], request.path_params.get("version", ""))

    async def model_ready(request: Request) -> Response:
        try:
            lookup(request)
        except ServingError:
            return JSONResponse({"ready": False}, status_code=400)
        return JSONResponse({"ready": True})

    async def model_metadata(request: Request) -> Response:
        try:
            return JSONResponse(server.metadata(lookup(request)))
        except ServingError as e:
            return error(e)

    async def model_config(request: Request) -> Response:
        try:
            return JSONResponse(server.model_config(lookup(request)))
        except ServingError as e:
            return error(e)

    async def infer(request: Request) -> Response:
        started = time.perf_counter()
        try:
            model = lookup(request)
        except ServingError as e:
            return error(e)
        scheduler = server.scheduler(model)
        reason = None
        with server.metrics.track(model):
            try:
                slot = scheduler.reserve()
                try:
                    try:
                        body = await asyncio.wait_for(read_body(request, server.config.max_body_bytes),
                                                      server.config.body_timeout_s)
                    except asyncio.TimeoutError:
                        raise SlowBody(f"the request body did not arrive within {server.config.body_timeout_s:g} s") \
                            from None
                    header, blobs = _split(request, body)
                    req = await _off_loop(len(body), decode_http, model, parse_json_body(header), blobs)
                    results = await scheduler.infer(slot, req)
                finally:
                    slot.release()
                size = sum(np.asarray(v).nbytes for v in results.values())
                content, header_length = await _off_loop(size, encode_http, model, req, results)
            except ServingError as e:
                reason = e.reason
                return error(e)
            except Exception as e:  # noqa: BLE001 - an answer that cannot be encoded is still an {"error"}
                reason = "OTHER"
                return error(ServingError(f"model '{model.name}': {type(e).__name__}: {e}"))
            finally:
                server.metrics.finished(model, time.perf_counter() - started, reason)
        if header_length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(header_length)})

    async def metrics(request: Request) -> Response:
        return Response(server.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")

    out: list[BaseRoute] = [Route("/v2/health/live", live), Route("/v2/health/ready", ready), Route("/v2", metadata),
           Route("/metrics", metrics)]
    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        out += [Route(prefix, model_metadata), Route(prefix + "/ready", model_ready),
                Route(prefix + "/config", model_config), Route(prefix + "/infer", infer, methods=["POST"])]

    async def unknown(request: Request) -> Response:
        return JSONResponse({"error": f"no endpoint {request.url.path}"}, status_code=404)

    # Anything else under /v2 (e.g. a model name with an encoded '/') is a 404 of the API, not a request
    # for the demo's static files mounted at '/' (which would answer 405 to a POST).
    out.append(Route("/v2/{rest:path}", unknown, methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]))
    return out
