"""deploy/ray: the Ray Serve deployment on a real local Ray instance, called with tritonclient.http."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_ray_serve_deployment_answers_v2_infer(repository: Path, reference: Any) -> None:
    ray = pytest.importorskip("ray", reason="ray[serve] is in the test extra")
    from ray import serve

    th = pytest.importorskip("tritonclient.http")
    deploy = str(ROOT / "deploy" / "ray")
    # Ray's workers import the deployment's module by name: they inherit this environment.
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (deploy, saved) if p)
    sys.path.insert(0, deploy)
    import webinfer_deployment

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = webinfer_deployment.build({"model_path": str(repository / "pair.onnx"), "model_name": "pair",
                                         "max_batch_size": "8"})
        serve.run(app, name="pair", route_prefix="/v2/models/pair")
        client = th.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=120)
        assert client.is_model_ready("pair")
        assert client.get_model_metadata("pair")["inputs"][0]["shape"] == [-1, 4]
        rng = np.random.default_rng(11)
        for binary in (True, False):
            feed = {k: rng.standard_normal((3, 4)).astype(np.float32) for k in ("x", "y")}
            inputs = []
            for k, v in feed.items():
                i = th.InferInput(k, [3, 4], "FP32")
                i.set_data_from_numpy(v, binary_data=binary)
                inputs.append(i)
            r = client.infer("pair", inputs)
            want = reference["pair"].run(None, feed)
            np.testing.assert_array_equal(r.as_numpy("sum"), want[0])
            np.testing.assert_array_equal(r.as_numpy("prod"), want[1])
        bad = th.InferInput("x", [3, 5], "FP32")
        bad.set_data_from_numpy(np.ones((3, 5), np.float32))
        with pytest.raises(th.InferenceServerException) as e:
            client.infer("pair", [bad, inputs[1]])
        assert e.value.status() == "400" and "does not match the model's [-1, 4]" in e.value.message()
    finally:
        serve.shutdown()
        ray.shutdown()
        sys.path.remove(deploy)
        if saved is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = saved
