"""The v2 gRPC API (`inference.GRPCInferenceService`) on grpc.aio, in the HTTP server's event loop.

The protobuf messages are described here, field by field, with the
protobuf runtime's descriptor API: no generated `_pb2` modules (their
gencode pins a protobuf major version) and no grpcio-tools at run time.
Names and field numbers are those of the Open Inference Protocol's
`open_inference_grpc.proto` and Triton's `grpc_service.proto` /
`model_config.proto` (wire-compatible with tritonclient); only the
messages of the RPCs served are described, and ModelConfig only with the
fields this server fills.  RPCs not served answer UNIMPLEMENTED.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable

import grpc
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

from ..version import __version__
from .codec import InferRequest, array_from_bytes, check_input
from .datatypes import NUMPY, encode_bytes, from_numpy
from .errors import BadRequest, ServingError
from .http import EXTENSIONS

if TYPE_CHECKING:
    from .app import Server

F = descriptor_pb2.FieldDescriptorProto
STRING, BOOL, INT32, INT64, UINT32, UINT64 = F.TYPE_STRING, F.TYPE_BOOL, F.TYPE_INT32, F.TYPE_INT64, F.TYPE_UINT32, \
    F.TYPE_UINT64
FLOAT, DOUBLE, BYTES, MESSAGE, ENUM = F.TYPE_FLOAT, F.TYPE_DOUBLE, F.TYPE_BYTES, F.TYPE_MESSAGE, F.TYPE_ENUM
REPEATED = "repeated"
PARAMS = "map<InferParameter>"

#: message -> fields (name, number, type, "repeated" | "" | PARAMS, type name for messages/enums).
MESSAGES: dict[str, list[tuple[Any, ...]]] = {
    "ServerLiveRequest": [], "ServerLiveResponse": [("live", 1, BOOL)],
    "ServerReadyRequest": [], "ServerReadyResponse": [("ready", 1, BOOL)],
    "ModelReadyRequest": [("name", 1, STRING), ("version", 2, STRING)],
    "ModelReadyResponse": [("ready", 1, BOOL)],
    "ServerMetadataRequest": [],
    "ServerMetadataResponse": [("name", 1, STRING), ("version", 2, STRING), ("extensions", 3, STRING, REPEATED)],
    "ModelMetadataRequest": [("name", 1, STRING), ("version", 2, STRING)],
    "ModelMetadataResponse": [("name", 1, STRING), ("versions", 2, STRING, REPEATED), ("platform", 3, STRING),
                              ("inputs", 4, MESSAGE, REPEATED, "ModelMetadataResponse.TensorMetadata"),
                              ("outputs", 5, MESSAGE, REPEATED, "ModelMetadataResponse.TensorMetadata")],
    "ModelMetadataResponse.TensorMetadata": [("name", 1, STRING), ("datatype", 2, STRING),
                                             ("shape", 3, INT64, REPEATED)],
    "InferParameter": [("bool_param", 1, BOOL, "oneof"), ("int64_param", 2, INT64, "oneof"),
                       ("string_param", 3, STRING, "oneof"), ("double_param", 4, DOUBLE, "oneof"),
                       ("uint64_param", 5, UINT64, "oneof")],
    "InferTensorContents": [("bool_contents", 1, BOOL, REPEATED), ("int_contents", 2, INT32, REPEATED),
                            ("int64_contents", 3, INT64, REPEATED), ("uint_contents", 4, UINT32, REPEATED),
                            ("uint64_contents", 5, UINT64, REPEATED), ("fp32_contents", 6, FLOAT, REPEATED),
                            ("fp64_contents", 7, DOUBLE, REPEATED), ("bytes_contents", 8, BYTES, REPEATED)],
    "ModelInferRequest": [("model_name", 1, STRING), ("model_version", 2, STRING), ("id", 3, STRING),
                          ("parameters", 4, MESSAGE, PARAMS),
                          ("inputs", 5, MESSAGE, REPEATED, "ModelInferRequest.InferInputTensor"),
                          ("outputs", 6, MESSAGE, REPEATED, "ModelInferRequest.InferRequestedOutputTensor"),
                          ("raw_input_contents", 7, BYTES, REPEATED)],
    "ModelInferRequest.InferInputTensor": [("name", 1, STRING), ("datatype", 2, STRING), ("shape", 3, INT64, REPEATED),
                                           ("parameters", 4, MESSAGE, PARAMS),
                                           ("contents", 5, MESSAGE, "", "InferTensorContents")],
    "ModelInferRequest.InferRequestedOutputTensor": [("name", 1, STRING), ("parameters", 2, MESSAGE, PARAMS)],
    "ModelInferResponse": [("model_name", 1, STRING), ("model_version", 2, STRING), ("id", 3, STRING),
                           ("parameters", 4, MESSAGE, PARAMS),
                           ("outputs", 5, MESSAGE, REPEATED, "ModelInferResponse.InferOutputTensor"),
                           ("raw_output_contents", 6, BYTES, REPEATED)],
    "ModelInferResponse.InferOutputTensor": [("name", 1, STRING), ("datatype", 2, STRING),
                                             ("shape", 3, INT64, REPEATED), ("parameters", 4, MESSAGE, PARAMS),
                                             ("contents", 5, MESSAGE, "", "InferTensorContents")],
    "ModelConfigRequest": [("name", 1, STRING), ("version", 2, STRING)],
    "ModelConfigResponse": [("config", 1, MESSAGE, "", "ModelConfig")],
    "ModelConfig": [("name", 1, STRING), ("platform", 2, STRING), ("backend", 17, STRING),
                    ("max_batch_size", 4, INT32), ("input", 5, MESSAGE, REPEATED, "ModelInput"),
                    ("output", 6, MESSAGE, REPEATED, "ModelOutput"),
                    ("instance_group", 7, MESSAGE, REPEATED, "ModelInstanceGroup"),
                    ("dynamic_batching", 11, MESSAGE, "", "ModelDynamicBatching")],
    "ModelInput": [("name", 1, STRING), ("data_type", 2, ENUM, "", "DataType"), ("dims", 4, INT64, REPEATED)],
    "ModelOutput": [("name", 1, STRING), ("data_type", 2, ENUM, "", "DataType"), ("dims", 3, INT64, REPEATED)],
    "ModelInstanceGroup": [("name", 1, STRING), ("kind", 4, ENUM, "", "ModelInstanceGroup.Kind"),
                           ("count", 2, INT32)],
    "ModelDynamicBatching": [("preferred_batch_size", 1, INT32, REPEATED),
                             ("max_queue_delay_microseconds", 2, UINT64)],
}
ENUMS = {
    "DataType": ["TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64", "TYPE_INT8",
                 "TYPE_INT16", "TYPE_INT32", "TYPE_INT64", "TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_STRING",
                 "TYPE_BF16"],
    "ModelInstanceGroup.Kind": ["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"],
}
#: RPC -> (request, response) message names.
RPCS = {"ServerLive": "ServerLive", "ServerReady": "ServerReady", "ModelReady": "ModelReady",
        "ServerMetadata": "ServerMetadata", "ModelMetadata": "ModelMetadata", "ModelConfig": "ModelConfig",
        "ModelInfer": "ModelInfer"}
SERVICE = "inference.GRPCInferenceService"


def _file() -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto of MESSAGES and ENUMS (nested ones under their parent)."""
    fd = descriptor_pb2.FileDescriptorProto(name="webinfer/inference.proto", package="inference", syntax="proto3")
    protos: dict[str, Any] = {}
    for full in MESSAGES:
        parent, _, leaf = full.rpartition(".")
        protos[full] = (protos[parent].nested_type if parent else fd.message_type).add(name=leaf)
    for full, values in ENUMS.items():
        parent, _, leaf = full.rpartition(".")
        e = (protos[parent].enum_type if parent else fd.enum_type).add(name=leaf)
        for i, v in enumerate(values):
            e.value.add(name=v, number=i)
    for full, fields in MESSAGES.items():
        msg = protos[full]
        for name, number, ftype, *rest in fields:
            kind = rest[0] if rest else ""
            f = msg.field.add(name=name, number=number, type=ftype, label=F.LABEL_REPEATED if kind in (
                REPEATED, PARAMS) else F.LABEL_OPTIONAL)
            if kind == "oneof":
                if not msg.oneof_decl:
                    msg.oneof_decl.add(name="parameter_choice")
                f.oneof_index = 0
            if kind == PARAMS:
                entry = msg.nested_type.add(name="ParametersEntry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=STRING, label=F.LABEL_OPTIONAL)
                entry.field.add(name="value", number=2, type=MESSAGE, label=F.LABEL_OPTIONAL,
                                type_name=".inference.InferParameter")
                f.type_name = f".inference.{full}.ParametersEntry"
            elif len(rest) > 1:
                f.type_name = f".inference.{rest[1]}"
    return fd


def _classes() -> dict[str, Any]:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file())
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{name}"))
            for name in MESSAGES}


PB = _classes()

#: v2 datatype -> InferTensorContents field for typed (non-raw) inputs; FP16 has none (raw only).
TYPED = {"BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
         "UINT64": "uint64_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
         "INT64": "int64_contents", "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}


def _param(p: Any) -> Any:
    which = p.WhichOneof("parameter_choice")
    return getattr(p, which) if which else None


def decode(model: Any, req: Any) -> InferRequest:
    """A ModelInferRequest as an InferRequest: tensors from raw_input_contents (parallel to inputs) or
    from typed contents, each checked against shape x datatype before use."""
    raw = req.raw_input_contents
    if raw and len(raw) != len(req.inputs):
        raise BadRequest(f"raw_input_contents has {len(raw)} entries for {len(req.inputs)} inputs")
    seen: dict[str, Any] = {}
    feeds: dict[str, np.ndarray] = {}
    for i, t in enumerate(req.inputs):
        spec, dims = check_input(model, seen, t.name, t.datatype, list(t.shape))
        if raw:
            feeds[spec.name] = array_from_bytes(spec, dims, raw[i])
            continue
        field = TYPED.get(spec.datatype)
        if field is None:
            raise BadRequest(f"input '{spec.name}': {spec.datatype} travels only in raw_input_contents")
        values = getattr(t.contents, field)
        if len(values) != math.prod(dims):
            raise BadRequest(f"input '{spec.name}': shape {list(dims)} needs {math.prod(dims)} elements, "
                             f"contents hold {len(values)}")
        try:
            arr = np.array(list(values), dtype=NUMPY[spec.datatype])
        except (OverflowError, ValueError) as e:  # e.g. 300 in uint_contents of a UINT8 input
            raise BadRequest(f"input '{spec.name}': contents do not fit {spec.datatype}: {e}") from None
        feeds[spec.name] = arr.reshape(dims)
    missing = [s.name for s in model.inputs if s.name not in feeds]
    if missing:
        raise BadRequest(f"model '{model.name}' needs input(s) {missing}")
    names = {s.name for s in model.outputs}
    wanted = [o.name for o in req.outputs] or [s.name for s in model.outputs]
    for n in wanted:
        if n not in names:
            raise BadRequest(f"model '{model.name}' has no output {n!r}; its outputs: {sorted(names)}")
    if len(set(wanted)) != len(wanted):
        raise BadRequest("an output is requested twice")
    timeout = _param(req.parameters["timeout"]) if "timeout" in req.parameters else None
    if timeout is not None and (type(timeout) is not int or timeout < 0):
        raise BadRequest(f"parameter 'timeout' must be a non-negative integer of microseconds, got {timeout!r}")
    batch = 1
    if model.config.max_batch_size:
        sizes = {a.shape[0] for a in feeds.values()}
        if len(sizes) != 1:
            raise BadRequest("inputs disagree on the batch (leading) dim")
        batch = sizes.pop()
    return InferRequest(req.id or None, feeds, [(n, True) for n in wanted], timeout / 1e6 if timeout else None, batch)


def encode(model: Any, request: InferRequest, results: dict[str, np.ndarray]) -> Any:
    out = PB["ModelInferResponse"](model_name=model.name, model_version=model.version, id=request.id or "")
    for name, _ in request.outputs:
        arr = np.asarray(results[name])
        datatype = from_numpy(arr.dtype)
        out.outputs.add(name=name, datatype=datatype, shape=list(arr.shape))
        out.raw_output_contents.append(encode_bytes(arr) if datatype == "BYTES" else np.ascontiguousarray(
            arr, arr.dtype.newbyteorder("<")).tobytes())
    return out


class Service:
    """The RPC handlers; errors become the status codes Triton uses (errors.ServingError.grpc_code)."""

    def __init__(self, server: "Server"):
        self.server = server

    async def _abort(self, context: Any, e: ServingError) -> None:
        await context.abort(getattr(grpc.StatusCode, e.grpc_code), str(e))

    async def ServerLive(self, request: Any, context: Any) -> Any:
        return PB["ServerLiveResponse"](live=True)

    async def ServerReady(self, request: Any, context: Any) -> Any:
        return PB["ServerReadyResponse"](ready=self.server.ready())

    async def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            self.server.model(request.name, request.version)
        except ServingError:
            return PB["ModelReadyResponse"](ready=False)
        return PB["ModelReadyResponse"](ready=True)

    async def ServerMetadata(self, request: Any, context: Any) -> Any:
        return PB["ServerMetadataResponse"](name="webinfer", version=__version__, extensions=EXTENSIONS)

    async def ModelMetadata(self, request: Any, context: Any) -> Any:
        try:
            model = self.server.model(request.name, request.version)
        except ServingError as e:
            await self._abort(context, e)
        return json_format.ParseDict(self.server.metadata(model), PB["ModelMetadataResponse"]())

    async def ModelConfig(self, request: Any, context: Any) -> Any:
        try:
            model = self.server.model(request.name, request.version)
        except ServingError as e:
            await self._abort(context, e)
        return json_format.ParseDict({"config": self.server.model_config(model)}, PB["ModelConfigResponse"]())

    async def ModelInfer(self, request: Any, context: Any) -> Any:
        started = time.perf_counter()
        try:
            model = self.server.model(request.model_name, request.model_version)
        except ServingError as e:
            await self._abort(context, e)
        scheduler = self.server.scheduler(model)
        reason = None
        with self.server.metrics.track(model):
            try:
                slot = scheduler.reserve()
                try:
                    req = decode(model, request)
                    results = await scheduler.infer(slot, req)
                finally:
                    slot.release()
                return encode(model, req, results)
            except ServingError as e:
                reason = e.reason
                await self._abort(context, e)
            except Exception as e:  # noqa: BLE001 - an answer that cannot be encoded is still a status
                reason = "OTHER"
                await self._abort(context, ServingError(f"model '{model.name}': {type(e).__name__}: {e}"))
            finally:
                self.server.metrics.finished(model, time.perf_counter() - started, reason)


def _handler(fn: Callable[..., Any], rpc: str) -> Any:
    return grpc.unary_unary_rpc_method_handler(fn, request_deserializer=PB[f"{rpc}Request"].FromString,
                                               response_serializer=PB[f"{rpc}Response"].SerializeToString)


async def start_grpc(server: "Server", host: str, port: int) -> tuple[Any, int]:
    """Start the gRPC server (port 0: one the OS picks); returns it and its port.  The message size
    limits are the HTTP body limit."""
    limit = server.config.max_body_bytes
    g = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                 ("grpc.max_send_message_length", limit)])
    service = Service(server)
    g.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        SERVICE, {rpc: _handler(getattr(service, rpc), rpc) for rpc in RPCS}),))
    bound = g.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"gRPC could not bind {host}:{port}")
    await g.start()
    return g, bound
