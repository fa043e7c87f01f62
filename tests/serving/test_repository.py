"""The model repository: files and folders, configs, failures left out and reported."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from webinfer.serving.repository import ConfigError, Repository, discover, read_config

from .conftest import _save, pair_model


def test_discover_reports_failures_and_keeps_the_rest(repository: Path) -> None:
    repo = Repository()
    repo.load_all(repository)
    assert sorted(repo.models) == ["lookup", "mixed", "pair", "pair2", "pair_batched"]
    assert "wire type" in repo.failed["broken"]
    assert "'max_batch_size' must be an integer" in repo.failed["badconfig"]
    assert len(repo.models["pair2"].sessions) == 2
    lookup = repo.models["lookup"].config
    assert lookup.path.name == "model.onnx" and lookup.max_batch_size == 16 and lookup.max_queue_size == 4


@pytest.mark.parametrize("cfg, message", [
    ({"max_batch": 4}, "unknown config key"),
    ({"name": "../x"}, "must match"),
    ({"dynamic_batching": {}}, "needs 'max_batch_size' > 0"),
    ({"max_batch_size": 4, "dynamic_batching": {"preferred_batch_size": [8]}}, "sizes in 1..4"),
    ({"max_batch_size": 4, "dynamic_batching": {"delay": 3}}, "keys among"),
    ({"instances": 0}, "'instances' must be an integer >= 1"),
    ({"timeout_seconds": -1}, "positive number"),
])
def test_bad_configs_are_named(cfg: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        read_config("m", Path("m.onnx"), cfg)


def test_batching_needs_a_dynamic_leading_dim(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "fixed", [x], [y])
    _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "fixed" / "model.onnx")
    (tmp_path / "fixed" / "config.json").write_text(json.dumps({"max_batch_size": 4}))
    repo = Repository()
    repo.load_all(tmp_path)
    assert not repo.models and "dynamic leading (batch) dim" in repo.failed["fixed"]


def test_single_file_repository(tmp_path: Path) -> None:
    path = _save(pair_model(), tmp_path / "solo.onnx")
    configs, failed = discover(path)
    assert [c.name for c in configs] == ["solo"] and not failed


def test_model_with_two_instances_serves_concurrent_requests(server: Any, reference: Any) -> None:
    import concurrent.futures

    import httpx

    x = np.random.default_rng(8).standard_normal((2, 4)).astype(np.float32)
    body = {"inputs": [{"name": n, "shape": [2, 4], "datatype": "FP32", "data": x.reshape(-1).tolist()}
                       for n in ("x", "y")]}
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        rs = list(pool.map(lambda _: httpx.post(f"http://{server.url}/v2/models/pair2/infer", json=body), range(8)))
    assert time.perf_counter() - t0 < 30
    want = reference["pair"].run(["sum"], {"x": x, "y": x})[0]
    for r in rs:
        assert r.status_code == 200
        np.testing.assert_array_equal(np.array(r.json()["outputs"][0]["data"], np.float32).reshape(2, 4), want)
    cfg = httpx.get(f"http://{server.url}/v2/models/pair2/config").json()
    assert cfg["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]


def test_one_model_served_under_a_given_name(repository: Path) -> None:
    configs, _ = discover(repository / "pair_batched", name="isvc")
    assert [(c.name, c.max_batch_size) for c in configs] == [("isvc", 8)]  # its config.json still applies
    configs, _ = discover(repository / "pair.onnx", name="isvc")
    assert [c.name for c in configs] == ["isvc"]
    repo = Repository()
    repo.load_all(repository, name="isvc")  # a folder of models is not one model
    assert not repo.models and "no model.onnx" in repo.failed["isvc"]
