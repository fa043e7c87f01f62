"""/metrics parses with prometheus-client's own parser and moves as requests arrive."""

from __future__ import annotations

from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
parser = pytest.importorskip("prometheus_client.parser")

X = {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": list(range(8))}
Y = {"name": "y", "shape": [2, 4], "datatype": "FP32", "data": list(range(8, 16))}


def _scrape(server: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = httpx.get(f"http://{server.url}/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in parser.text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_move(server: Any) -> None:
    before = _scrape(server)
    m = {"model": "pair", "version": "1"}
    for _ in range(5):
        assert httpx.post(f"http://{server.url}/v2/models/pair/infer", json={"inputs": [X, Y]}).status_code == 200
    assert httpx.post(f"http://{server.url}/v2/models/pair/infer", json={"inputs": [X]}).status_code == 400
    after = _scrape(server)
    ok = dict(m, outcome="success", reason="")
    bad = dict(m, outcome="failure", reason="OTHER")
    assert _get(after, "webinfer_inference_requests_total", **ok) - _get(before, "webinfer_inference_requests_total",
                                                                         **ok) == 5
    assert _get(after, "webinfer_inference_requests_total", **bad) - _get(before, "webinfer_inference_requests_total",
                                                                          **bad) == 1
    assert _get(after, "webinfer_executions_total", **m) - _get(before, "webinfer_executions_total", **m) == 5
    assert _get(after, "webinfer_inferences_total", **m) - _get(before, "webinfer_inferences_total", **m) == 5
    assert _get(after, "webinfer_request_duration_seconds_count", **m) - _get(
        before, "webinfer_request_duration_seconds_count", **m) == 6
    for hist in ("webinfer_queue_duration_seconds", "webinfer_compute_duration_seconds", "webinfer_batch_size"):
        assert _get(after, hist + "_count", **m) - _get(before, hist + "_count", **m) == 5
        assert _get(after, hist + "_bucket", **m, le="+Inf") == _get(after, hist + "_count", **m)
    window = [_get(after, "webinfer_request_latency_window_seconds", **m, quantile=q) for q in ("0.5", "0.9", "0.99")]
    assert 0 < window[0] <= window[1] <= window[2] < 30
    assert _get(after, "webinfer_request_latency_window_seconds_count", **m) >= 5
    assert _get(after, "webinfer_pending_requests", **m) == 0 and _get(after, "webinfer_inflight_requests", **m) == 0
    assert _get(after, "process_resident_memory_bytes") > 10e6
    assert 0 <= _get(after, "webinfer_cpu_utilization") <= 1
    assert _get(after, "webinfer_memory_arena_bytes", state="in_use") > 0


def test_latency_window_forgets_old_samples() -> None:
    from webinfer.serving.metrics import LatencyWindow

    w = LatencyWindow(span=10.0)
    for i in range(100):
        w.add(float(i), now=float(i))
    values = w.values(now=100.0)
    assert values.tolist() == [float(i) for i in range(90, 100)]


@pytest.mark.gpu
def test_webgpu_figures_on_metrics(tmp_path: Any) -> None:
    """A model on the webgpu provider: adapter, buffer-pool bytes and dispatches per run on /metrics."""
    import json

    import numpy as np

    from webinfer.devices.gpu import open_device
    from webinfer.errors import DeviceError

    from .conftest import ServerThread, _save, pair_model

    try:
        open_device({})
    except DeviceError as e:
        pytest.skip(f"no WebGPU adapter: {e}")
    _save(pair_model(), tmp_path / "gpu_pair" / "model.onnx")
    (tmp_path / "gpu_pair" / "config.json").write_text(json.dumps({"provider": "webgpu,cpu"}))
    with ServerThread(tmp_path) as server:
        x = np.random.default_rng(10).standard_normal((2, 4)).astype(np.float32)
        body = {"inputs": [{"name": n, "shape": [2, 4], "datatype": "FP32", "data": x.reshape(-1).tolist()}
                           for n in ("x", "y")]}
        r = httpx.post(f"http://{server.url}/v2/models/gpu_pair/infer", json=body, timeout=60)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(np.array(r.json()["outputs"][0]["data"], np.float32).reshape(2, 4), x + x,
                                   rtol=1e-6)
        samples = _scrape(server)
    info = [dict(labels) for (name, labels) in samples if name == "webinfer_gpu_info"]
    assert info and info[0]["model"] == "gpu_pair" and info[0]["adapter"] not in ("", "None")
    assert _get(samples, "webinfer_gpu_dispatches_per_run", model="gpu_pair", instance="0") >= 1
    assert _get(samples, "webinfer_gpu_buffer_pool_bytes", model="gpu_pair", instance="0", state="allocated") > 0
