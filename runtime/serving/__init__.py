"""The inference server: the Open Inference Protocol (KServe v2) over HTTP and gRPC.

`webinfer serve --models DIR` loads every model in DIR (`repository`), puts
a bounded queue and an executor in front of each (`scheduler`), and speaks
v2 over HTTP (`http`, starlette) and optionally gRPC (`grpc_service`), with
Prometheus metrics (`metrics`).  Tensors cross the wire through `codec`,
which checks every size before it allocates.  The browser demo
(`webinfer.server`) stays one mount of the same app.
"""

from __future__ import annotations

from .app import ServerConfig, create_app, serve

__all__ = ["ServerConfig", "create_app", "serve"]
