"""Infer requests and responses on the wire: JSON, the binary tensor extension, gRPC raw contents.

Every size is checked before anything is allocated: the JSON header length
against the body, the sum of `binary_data_size` against what follows it,
each dim a non-negative int, `prod(shape) * itemsize` against the tensor's
bytes (Python ints: no overflow), BYTES length prefixes against what is
left.  Errors name the input and the shapes, and come as `BadRequest`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from .datatypes import NUMPY, decode_bytes, encode_bytes, from_numpy
from .errors import BadRequest
from .repository import Model, TensorSpec


@dataclass
class InferRequest:
    """A decoded request: the feeds in the model's input order, the outputs asked for (name, binary?)."""

    id: str | None
    feeds: dict[str, np.ndarray]
    outputs: list[tuple[str, bool]]
    timeout_s: float | None = None
    #: Rows on the leading dim (1 when the model has no batch dim): what dynamic batching adds up.
    batch: int = 1


def _shape(name: str, shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)) or any(type(d) is not int or d < 0 for d in shape):
        raise BadRequest(f"input '{name}': shape must be a list of non-negative integers, got {shape!r}")
    return tuple(shape)


def check_input(model: Model, seen: dict[str, TensorSpec], name: Any, datatype: Any, shape: Any) -> tuple[
        TensorSpec, tuple[int, ...]]:
    """The model's spec of input `name` after checking the request's datatype and shape fit it."""
    if not isinstance(name, str):
        raise BadRequest(f"every input needs a string 'name', got {name!r}")
    spec = next((s for s in model.inputs if s.name == name), None)
    if spec is None:
        raise BadRequest(f"model '{model.name}' has no input '{name}'; its inputs: {[s.name for s in model.inputs]}")
    if name in seen:
        raise BadRequest(f"input '{name}' is given twice")
    seen[name] = spec
    dims = _shape(name, shape)
    if datatype != spec.datatype:
        raise BadRequest(f"input '{name}': datatype {datatype!r} does not match the model's {spec.datatype}")
    if len(dims) != len(spec.shape) or any(m != -1 and m != d for m, d in zip(spec.shape, dims)):
        raise BadRequest(f"input '{name}': shape {list(dims)} does not match the model's {list(spec.shape)}")
    limit = model.config.max_batch_size
    if limit and dims[0] > limit:
        raise BadRequest(f"input '{name}': batch {dims[0]} exceeds the model's max_batch_size {limit}")
    return spec, dims


def array_from_bytes(spec: TensorSpec, dims: tuple[int, ...], buf: bytes | memoryview) -> np.ndarray:
    """The tensor in `buf` (little-endian, row-major), once its size agrees with shape x datatype."""
    count = math.prod(dims)
    if spec.datatype == "BYTES":
        return decode_bytes(buf, count, spec.name).reshape(dims)
    dtype = NUMPY[spec.datatype].newbyteorder("<")
    expected = count * dtype.itemsize
    if len(buf) != expected:
        raise BadRequest(f"input '{spec.name}': shape {list(dims)} of {spec.datatype} needs {expected} bytes, "
                         f"got {len(buf)}")
    return np.frombuffer(buf, dtype=dtype).reshape(dims)


def _array_from_json(spec: TensorSpec, dims: tuple[int, ...], data: Any) -> np.ndarray:
    if not isinstance(data, list):
        raise BadRequest(f"input '{spec.name}': 'data' must be a (flat or nested) list")
    try:
        if spec.datatype == "BYTES":
            flat = np.array(data, dtype=object).reshape(-1)
            arr = np.array([v.encode("utf-8") if isinstance(v, str) else v for v in flat], dtype=object)
            if any(not isinstance(v, bytes) for v in arr):
                raise ValueError("BYTES elements must be strings")
        else:
            arr = np.array(data, dtype=NUMPY[spec.datatype])
    except (ValueError, TypeError, OverflowError) as e:
        raise BadRequest(f"input '{spec.name}': 'data' does not hold {spec.datatype} values of shape "
                         f"{list(dims)}: {e}") from None
    if arr.size != math.prod(dims):
        raise BadRequest(f"input '{spec.name}': shape {list(dims)} needs {math.prod(dims)} elements, "
                         f"'data' holds {arr.size}")
    return arr.reshape(dims)


def _params(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise BadRequest(f"{where}: 'parameters' must be an object")
    return params


def _timeout(params: dict[str, Any]) -> float | None:
    t = params.get("timeout")
    if t is None:
        return None
    if type(t) is not int or t < 0:
        raise BadRequest(f"parameter 'timeout' must be a non-negative integer of microseconds, got {t!r}")
    return t / 1e6 if t else None


def _batch(model: Model, feeds: dict[str, np.ndarray]) -> int:
    if not model.config.max_batch_size:
        return 1
    sizes = {a.shape[0] for a in feeds.values()}
    if len(sizes) != 1:
        raise BadRequest(f"inputs disagree on the batch (leading) dim: "
                         f"{ {k: a.shape[0] for k, a in feeds.items()} }")
    return sizes.pop()


def _requested(model: Model, requested: Iterable[tuple[Any, bool]]) -> list[tuple[str, bool]]:
    names = {s.name for s in model.outputs}
    out: list[tuple[str, bool]] = []
    for name, binary in requested:
        if name not in names:
            raise BadRequest(f"model '{model.name}' has no output {name!r}; its outputs: "
                             f"{[s.name for s in model.outputs]}")
        if any(n == name for n, _ in out):
            raise BadRequest(f"output '{name}' is requested twice")
        out.append((name, binary))
    return out


def _finish(model: Model, feeds: dict[str, np.ndarray]) -> int:
    missing = [s.name for s in model.inputs if s.name not in feeds]
    if missing:
        raise BadRequest(f"model '{model.name}' needs input(s) {missing}")
    return _batch(model, feeds)


def parse_json_body(header: bytes | memoryview) -> dict[str, Any]:
    """The request's JSON object (deep nesting is a 400, not a crash)."""
    try:
        body = json.loads(bytes(header))
    except RecursionError:
        raise BadRequest("request JSON is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"request is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest("request JSON must be an object")
    return body


def decode_http(model: Model, body: dict[str, Any], blobs: memoryview) -> InferRequest:
    """A v2 JSON request whose binary inputs (`binary_data_size`) follow in `blobs`, in `inputs` order."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("request needs a non-empty 'inputs' list")
    rid = body.get("id")
    if rid is not None and not isinstance(rid, str):
        raise BadRequest(f"'id' must be a string, got {rid!r}")
    params = _params(body, "request")
    sizes = []
    for i, t in enumerate(inputs):
        if not isinstance(t, dict):
            raise BadRequest(f"inputs[{i}] must be an object")
        n = _params(t, f"input {t.get('name')!r}").get("binary_data_size")
        if n is not None and (type(n) is not int or n < 0):
            raise BadRequest(f"input {t.get('name')!r}: binary_data_size must be a non-negative integer, got {n!r}")
        sizes.append(n)
    if sum(n or 0 for n in sizes) != len(blobs):
        raise BadRequest(f"the inputs' binary_data_size add up to {sum(n or 0 for n in sizes)} bytes, "
                         f"but {len(blobs)} bytes follow the JSON header")
    seen: dict[str, TensorSpec] = {}
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for t, n in zip(inputs, sizes):
        spec, dims = check_input(model, seen, t.get("name"), t.get("datatype"), t.get("shape"))
        if n is not None:
            if "data" in t:
                raise BadRequest(f"input '{spec.name}' has both 'data' and binary_data_size")
            feeds[spec.name] = array_from_bytes(spec, dims, blobs[offset:offset + n])
            offset += n
        elif "data" in t:
            feeds[spec.name] = _array_from_json(spec, dims, t["data"])
        else:
            raise BadRequest(f"input '{spec.name}' has neither 'data' nor binary_data_size")
    default_binary = params.get("binary_data_output", False) is True
    outs = body.get("outputs")
    if outs is None:
        requested = [(s.name, default_binary) for s in model.outputs]
    else:
        if not isinstance(outs, list) or any(not isinstance(o, dict) for o in outs):
            raise BadRequest("'outputs' must be a list of objects")
        requested = _requested(model, ((o.get("name"), _params(o, f"output {o.get('name')!r}").get(
            "binary_data", default_binary) is True) for o in outs))
    return InferRequest(rid, feeds, requested, _timeout(params), _finish(model, feeds))


def encode_http(model: Model, request: InferRequest, results: dict[str, np.ndarray]) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length."""
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for name, binary in request.outputs:
        arr = np.asarray(results[name])
        datatype = from_numpy(arr.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        if binary:
            blob = encode_bytes(arr) if datatype == "BYTES" else np.ascontiguousarray(arr, arr.dtype.newbyteorder(
                "<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        elif datatype == "BYTES":
            entry["data"] = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                             for v in arr.reshape(-1)]
        else:
            entry["data"] = arr.reshape(-1).tolist()
        outputs.append(entry)
    response: dict[str, Any] = {"model_name": model.name, "model_version": model.version, "outputs": outputs}
    if request.id is not None:
        response["id"] = request.id
    header = json.dumps(response, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
