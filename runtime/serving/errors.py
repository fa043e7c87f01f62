"""Errors a request can meet, each with the HTTP status and gRPC code the v2 protocol gives it.

The mapping is Triton's (http_server.cc HttpCodeFromError, grpc_utils.cc):
a bad request is 400 / INVALID_ARGUMENT, an unknown model 404 / NOT_FOUND,
a full queue or a server still loading 503 / UNAVAILABLE, a model that
raised 500 / INTERNAL.  Handlers raise these; the HTTP and gRPC front ends
turn them into `{"error": ...}` bodies and status codes, so no front end
decides a status on its own.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base: `status` is the HTTP status, `grpc_code` the name of the grpc.StatusCode member,
    `reason` the failure label the metrics count it under (Triton's REJECTED/CANCELED/BACKEND/OTHER)."""

    status = 500
    grpc_code = "INTERNAL"
    reason = "OTHER"


class BadRequest(ServingError):
    """The request is malformed or does not fit the model (names, shapes, datatypes, sizes)."""

    status = 400
    grpc_code = "INVALID_ARGUMENT"


class TooLarge(BadRequest):
    """The body is over the server's limit (checked while reading, before buffering it)."""

    status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class NotFound(ServingError):
    """No model of that name (or version) was loaded at start-up."""

    status = 404
    grpc_code = "NOT_FOUND"


class Unavailable(ServingError):
    """The model's queue is full, the request's deadline passed, or the model is not ready."""

    status = 503
    grpc_code = "UNAVAILABLE"
    reason = "REJECTED"


class ModelFailed(ServingError):
    """The model raised while running the request (or the batch it was part of)."""

    status = 500
    grpc_code = "INTERNAL"
    reason = "BACKEND"
