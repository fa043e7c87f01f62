"""Dynamic batching: concurrent requests run as one batch, and each gets what it would get alone."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import numpy as np
import pytest

th = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is in the test extra")
httpx = pytest.importorskip("httpx")


def _infer(url: str, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    c = th.InferenceServerClient(url, network_timeout=60)
    ins = []
    for k, v in feed.items():
        i = th.InferInput(k, list(v.shape), "FP32")
        i.set_data_from_numpy(v)
        ins.append(i)
    r = c.infer("pair_batched", ins)
    return {n: r.as_numpy(n) for n in ("sum", "prod")}


def _counter(server: Any, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://{server.url}/metrics").text
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and s.labels.get("model") == "pair_batched":
                return s.value
    return 0.0


def test_batched_results_equal_unbatched(server: Any, reference: Any) -> None:
    rng = np.random.default_rng(7)
    feeds = [{k: rng.standard_normal((rows, 4)).astype(np.float32) for k in ("x", "y")}
             for rows in (1, 2, 1, 3, 1, 1, 2, 1) * 2]
    execs, infers = _counter(server, "webinfer_executions_total"), _counter(server, "webinfer_inferences_total")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda f: _infer(server.url, f), feeds))
    for feed, got in zip(feeds, results):
        want = reference["pair"].run(["sum", "prod"], feed)  # the model alone, unbatched
        np.testing.assert_array_equal(got["sum"], want[0])
        np.testing.assert_array_equal(got["prod"], want[1])
    d_exec = _counter(server, "webinfer_executions_total") - execs
    d_inf = _counter(server, "webinfer_inferences_total") - infers
    assert d_inf == sum(f["x"].shape[0] for f in feeds)
    assert d_exec < len(feeds), f"{len(feeds)} concurrent requests ran in {d_exec} executions: no batching"


def test_batch_over_max_batch_size_is_400(server: Any) -> None:
    x = {"name": "x", "shape": [9, 4], "datatype": "FP32", "data": [0.5] * 36}
    r = httpx.post(f"http://{server.url}/v2/models/pair_batched/infer", json={"inputs": [x, dict(x, name="y")]})
    assert r.status_code == 400 and "exceeds the model's max_batch_size 8" in r.json()["error"]


def test_scheduler_prefers_preferred_sizes() -> None:
    from webinfer.serving.scheduler import Scheduler

    class J:
        def __init__(self, rows: int):
            self.request = type("R", (), {"batch": rows})()

    jobs = [J(1), J(2), J(1), J(3)]
    assert Scheduler._prefer(jobs, (4,)) == jobs[:3]
    assert Scheduler._prefer(jobs, (3, 7)) == jobs
    assert Scheduler._prefer(jobs, (5,)) == jobs


def test_a_failing_request_does_not_fail_its_batch_mates(server: Any, reference: Any) -> None:
    """lookup batches for up to 20 ms: bad indices in the same batch fail alone."""
    import concurrent.futures

    def call(i: int) -> httpx.Response:
        idx = [99] if i % 3 == 0 else [i % 10]
        return httpx.post(f"http://{server.url}/v2/models/lookup/infer", timeout=30,
                          json={"inputs": [{"name": "idx", "shape": [1], "datatype": "INT64", "data": idx}]})

    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # lookup's queue holds 4
        rs = list(pool.map(call, range(12)))
    for i, r in enumerate(rs):
        if i % 3 == 0:
            assert r.status_code == 500 and "failed" in r.json()["error"]
        else:
            want = reference["lookup"].run(None, {"idx": np.array([i % 10], np.int64)})[0]
            assert r.status_code == 200 and r.json()["outputs"][0]["data"] == want.reshape(-1).tolist()
