"""Prometheus metrics for `/metrics`, through prometheus-client, in base units (seconds, bytes).

Every name and what Triton calls it are in the README's serving section.
prometheus-client's Summary exports no quantiles, so P50/P90/P99 come from
`LatencyWindow`: the latencies of the last `WINDOW_S` seconds, sorted at
scrape time and exposed as a summary family with `quantile` labels.  Each
app gets its own registry (tests run several servers in one process).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from collections import deque
from typing import Any, Callable, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from .repository import Model

LATENCY_BUCKETS = (.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
QUANTILES = (0.5, 0.9, 0.99)
WINDOW_S = 60.0
#: At most this many latencies per model stay in the window (a bound on memory at any rate).
WINDOW_MAX = 100_000
LABELS = ("model", "version")


class LatencyWindow:
    """Latencies of the last `span` seconds; thread-safe (gRPC and HTTP record from different threads)."""

    def __init__(self, span: float = WINDOW_S, cap: int = WINDOW_MAX):
        self.span = span
        self.samples: deque[tuple[float, float]] = deque(maxlen=cap)
        self.lock = threading.Lock()

    def add(self, seconds: float, now: float | None = None) -> None:
        with self.lock:
            self.samples.append((time.monotonic() if now is None else now, seconds))

    def values(self, now: float | None = None) -> np.ndarray:
        """The latencies still inside the window (older ones are dropped)."""
        cutoff = (time.monotonic() if now is None else now) - self.span
        with self.lock:
            while self.samples and self.samples[0][0] < cutoff:
                self.samples.popleft()
            return np.array([v for _, v in self.samples], dtype=np.float64)


def _mallinfo() -> dict[str, int] | None:
    """glibc's allocator figures: the arena webinfer's `enable_cpu_mem_arena` keeps (None off glibc)."""
    if sys.platform != "linux":
        return None

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]
    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = MallInfo2
    m = fn()
    return {"in_use": m.uordblks + m.hblkhd, "free": m.fordblks, "mmapped": m.hblkhd}


class _Collector:
    """Figures read at scrape time: windowed quantiles, CPU utilisation, the arena, webgpu."""

    def __init__(self, metrics: "ServerMetrics"):
        self.metrics = metrics
        self.last_cpu = (time.monotonic(), sum(os.times()[:2]))

    def _cpu_utilization(self) -> float:
        now, cpu = time.monotonic(), sum(os.times()[:2])
        then, cpu0 = self.last_cpu
        self.last_cpu = (now, cpu)
        return 0.0 if now <= then else (cpu - cpu0) / (now - then) / (os.cpu_count() or 1)

    def collect(self) -> Iterator[Metric]:
        window = Metric("webinfer_request_latency_window_seconds",
                        f"End-to-end request latency quantiles over the last {WINDOW_S:g} s", "summary")
        for (model, version), win in list(self.metrics.windows.items()):
            values = win.values()
            labels = {"model": model, "version": version}
            if values.size:
                for q, v in zip(QUANTILES, np.quantile(values, QUANTILES)):
                    window.add_sample(window.name, dict(labels, quantile=str(q)), float(v))
            window.add_sample(window.name + "_count", labels, float(values.size))
            window.add_sample(window.name + "_sum", labels, float(values.sum()))
        yield window
        yield GaugeMetricFamily("webinfer_cpu_utilization",
                                "Process CPU time over wall time since the previous scrape, 0-1 of all cores",
                                value=self._cpu_utilization())
        arena = _mallinfo()
        if arena is not None:
            g = GaugeMetricFamily("webinfer_memory_arena_bytes", "The C heap numpy's tensors live in (glibc)",
                                  labels=["state"])
            for state, v in arena.items():
                g.add_metric([state], float(v))
            yield g
        yield from self._webgpu()

    def _webgpu(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("webinfer_gpu_info", "1 per model instance on a WebGPU adapter",
                                 labels=["model", "adapter"])
        pool = GaugeMetricFamily("webinfer_gpu_buffer_pool_bytes", "The WebGPU buffer pool of a model instance",
                                 labels=["model", "instance", "state"])
        dispatches = GaugeMetricFamily("webinfer_gpu_dispatches_per_run", "Compute dispatches of the last run",
                                       labels=["model", "instance"])
        for model in self.metrics.models():
            for i, sess in enumerate(model.sessions):
                gpu = next((d for d in getattr(sess, "_devices", ()) if getattr(d, "name", "") == "webgpu"), None)
                if gpu is None:
                    continue
                stats = sess.device_stats()
                info.add_metric([model.name, str(stats.get("adapter"))], 1.0)
                p = gpu.pool
                for state, v in (("allocated", p.allocated_bytes), ("in_use", p.in_use_bytes),
                                 ("peak_in_use", p.peak_in_use_bytes)):
                    pool.add_metric([model.name, str(i), state], float(v))
                if stats.get("dispatches_per_run") is not None:
                    dispatches.add_metric([model.name, str(i)], float(stats["dispatches_per_run"]))
        yield from (info, pool, dispatches)


class ServerMetrics:
    """The server's metrics; the scheduler and the front ends report into it."""

    def __init__(self, models: Callable[[], list[Model]]):
        self.models = models
        self.registry = CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.requests = Counter("webinfer_inference_requests", "Inference requests by outcome and failure reason",
                                [*LABELS, "outcome", "reason"], registry=r)
        self.inferences = Counter("webinfer_inferences", "Inferences (a batch of n counts n)", LABELS, registry=r)
        self.executions = Counter("webinfer_executions", "Model executions (avg batch = inferences/executions)",
                                  LABELS, registry=r)
        self.request_s = Histogram("webinfer_request_duration_seconds", "End-to-end request time", LABELS,
                                   buckets=LATENCY_BUCKETS, registry=r)
        self.queue_s = Histogram("webinfer_queue_duration_seconds", "Time from queued to executing", LABELS,
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.compute_s = Histogram("webinfer_compute_duration_seconds", "Model execution time (a batch once)",
                                   LABELS, buckets=LATENCY_BUCKETS, registry=r)
        self.batch = Histogram("webinfer_batch_size", "Rows per model execution", LABELS, buckets=BATCH_BUCKETS,
                               registry=r)
        self.pending = Gauge("webinfer_pending_requests", "Requests queued, not yet executing", LABELS, registry=r)
        self.inflight = Gauge("webinfer_inflight_requests", "Requests being handled (queued, running, encoding)",
                              LABELS, registry=r)
        self.windows: dict[tuple[str, str], LatencyWindow] = {}
        r.register(_Collector(self))

    def queued(self, model: Model, depth: int) -> None:
        self.pending.labels(model.name, model.version).set(depth)

    def executed(self, model: Model, jobs: int, rows: int, queue_s: list[float], compute_s: float) -> None:
        labels = (model.name, model.version)
        self.executions.labels(*labels).inc()
        self.inferences.labels(*labels).inc(rows)
        self.batch.labels(*labels).observe(rows)
        self.compute_s.labels(*labels).observe(compute_s)
        for q in queue_s:
            self.queue_s.labels(*labels).observe(q)

    def finished(self, model: Model, seconds: float, reason: str | None) -> None:
        """One request of a loaded model answered: `reason` None on success, else the failure's label."""
        labels = (model.name, model.version)
        self.requests.labels(*labels, "failure" if reason else "success", reason or "").inc()
        self.request_s.labels(*labels).observe(seconds)
        if reason is None:
            key = labels
            win = self.windows.get(key)
            if win is None:
                win = self.windows.setdefault(key, LatencyWindow())
            win.add(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def track(self, model: Model) -> Any:
        """Context manager counting the request as in flight."""
        return self.inflight.labels(model.name, model.version).track_inprogress()
