"""The peer of bench_serve.py: KServe's Python ModelServer wrapping onnxruntime, one model per file.

    python benchmarks/kserve_peer.py --port 8090 NAME=model.onnx [NAME=model.onnx ...]

A separate process (any python with kserve and onnxruntime: the test extra
installs both, or a venv of its own); bench_serve.py starts it.  `predict` is a
plain function, so KServe runs it in its thread pool, as a stock
onnxruntime-backed custom model does; onnxruntime uses its default
intra-op threads.  KServe's ModelServer has no in-process batcher (KServe
batches in a separate agent container), so the peer runs each request alone.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import kserve
import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse

#: numpy dtype -> v2 datatype for the outputs these models have.
DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64", np.dtype(np.float64): "FP64"}


class OrtModel(kserve.Model):
    """One onnxruntime session behind the v2 protocol."""

    def __init__(self, name: str, path: str):
        super().__init__(name)
        self.session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        self.ready = True

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None,
                response_headers: dict[str, str] | None = None) -> InferResponse:
        feeds = {i.name: i.as_numpy() for i in payload.inputs}
        wanted = [o.name for o in payload.request_outputs] if payload.request_outputs else None
        names = wanted or [o.name for o in self.session.get_outputs()]
        outs = self.session.run(names, feeds)
        results = []
        for name, arr in zip(names, outs):
            out = InferOutput(name=name, shape=list(arr.shape), datatype=DATATYPES[arr.dtype])
            out.set_data_from_numpy(arr, binary_data=False)
            results.append(out)
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("models", nargs="+", metavar="NAME=PATH")
    args = p.parse_args()
    models: list[Any] = [OrtModel(*m.split("=", 1)) for m in args.models]
    server = kserve.ModelServer(http_port=args.port, enable_grpc=False, workers=1, enable_latency_logging=False)
    # No per-request log lines (webinfer's server writes none either): the comparison is of serving, not logging.
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start(models)


if __name__ == "__main__":
    main()
