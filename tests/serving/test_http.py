"""tritonclient HTTP (binary by default, and JSON) and plain JSON over httpx against a real server:
answers equal an in-process InferenceSession.run exactly (same kernels, same inputs)."""

from __future__ import annotations

import gzip
from typing import Any

import numpy as np
import pytest

th = pytest.importorskip("tritonclient.http", reason="tritonclient[http] is in the test extra")
httpx = pytest.importorskip("httpx")


def _pair_inputs(rng: np.random.Generator, n: int = 3, binary: bool = True) -> tuple[list[Any], dict[str, Any]]:
    feed = {k: rng.standard_normal((n, 4)).astype(np.float32) for k in ("x", "y")}
    ins = []
    for k, v in feed.items():
        i = th.InferInput(k, list(v.shape), "FP32")
        i.set_data_from_numpy(v, binary_data=binary)
        ins.append(i)
    return ins, feed


def test_health_and_metadata(server: Any) -> None:
    c = th.InferenceServerClient(server.url)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("pair") and c.is_model_ready("pair", "1")
    assert not c.is_model_ready("broken") and not c.is_model_ready("nope") and not c.is_model_ready("pair", "2")
    meta = c.get_server_metadata()
    assert meta["name"] == "webinfer" and "binary_tensor_data" in meta["extensions"]
    m = c.get_model_metadata("pair_batched")
    assert m["platform"] == "onnx_onnxv1" and m["versions"] == ["1"]
    assert m["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]},
                           {"name": "y", "datatype": "FP32", "shape": [-1, 4]}]
    cfg = c.get_model_config("pair_batched")
    assert cfg["max_batch_size"] == 8 and cfg["input"][0]["dims"] == [4] and "dynamic_batching" in cfg
    assert c.get_model_config("pair")["input"][0]["dims"] == [-1, 4]  # max_batch_size 0: full shape
    with pytest.raises(th.InferenceServerException) as e:
        c.get_model_metadata("broken")
    assert e.value.status() == "404"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("model", ["pair", "pair_batched"])
def test_tritonclient_http_infer_equals_session(server: Any, reference: Any, model: str, binary: bool) -> None:
    rng = np.random.default_rng(1)
    c = th.InferenceServerClient(server.url)
    ins, feed = _pair_inputs(rng, binary=binary)
    expected = dict(zip(["sum", "prod"], reference[model].run(None, feed)))
    r = c.infer(model, ins, request_id="r-7")  # outputs=None: all outputs, binary_data_output=true
    assert r.get_response()["id"] == "r-7"
    for name in ("sum", "prod"):
        np.testing.assert_array_equal(r.as_numpy(name), expected[name])
    outs = [th.InferRequestedOutput("prod", binary_data=binary)]
    r = c.infer(model, ins, outputs=outs)
    assert [o["name"] for o in r.get_response()["outputs"]] == ["prod"]
    assert ("data" in r.get_response()["outputs"][0]) == (not binary)
    np.testing.assert_array_equal(r.as_numpy("prod"), expected["prod"])


def test_tritonclient_http_bytes_bool_fp16_round_trip(server: Any, reference: Any) -> None:
    rng = np.random.default_rng(2)
    feed = {"s": np.array([b"hello", b"", "gr\u00fc\u00dfe".encode()], dtype=object),
            "b": rng.random((3, 3)) > 0.5, "h": rng.standard_normal((3, 2)).astype(np.float16)}
    expected = reference["mixed"].run(None, feed)
    c = th.InferenceServerClient(server.url)
    for binary in (True, False):
        ins = []
        for k, dt in (("s", "BYTES"), ("b", "BOOL"), ("h", "FP16")):
            i = th.InferInput(k, list(feed[k].shape), dt)
            i.set_data_from_numpy(feed[k], binary_data=binary or dt == "FP16")
            ins.append(i)
        r = c.infer("mixed", ins, outputs=[th.InferRequestedOutput(n, binary_data=binary)
                                           for n in ("s_out", "b_out", "h_out")])
        got = [r.as_numpy(n) for n in ("s_out", "b_out", "h_out")]
        assert [bytes(v) if not isinstance(v, str) else v.encode() for v in got[0]] == list(expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_array_equal(got[2].astype(np.float16), expected[2])


def test_tritonclient_http_gzip_request(server: Any, reference: Any) -> None:
    rng = np.random.default_rng(3)
    ins, feed = _pair_inputs(rng)
    r = th.InferenceServerClient(server.url).infer("pair", ins, request_compression_algorithm="gzip")
    np.testing.assert_array_equal(r.as_numpy("sum"), reference["pair"].run(["sum"], feed)[0])


def test_plain_json_over_httpx(server: Any, reference: Any) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    y = rng.standard_normal((2, 4)).astype(np.float32)
    body = {"id": "42", "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": x.tolist()},
                                   {"name": "y", "shape": [2, 4], "datatype": "FP32", "data": y.reshape(-1).tolist()}],
            "outputs": [{"name": "sum"}]}
    r = httpx.post(f"http://{server.url}/v2/models/pair/infer", json=body, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    out = r.json()
    assert out["model_name"] == "pair" and out["id"] == "42" and [o["name"] for o in out["outputs"]] == ["sum"]
    got = np.array(out["outputs"][0]["data"], dtype=np.float32).reshape(out["outputs"][0]["shape"])
    np.testing.assert_array_equal(got, reference["pair"].run(["sum"], {"x": x, "y": y})[0])
    r = httpx.post(f"http://{server.url}/v2/models/pair/versions/1/infer", json=body, timeout=30)
    assert r.status_code == 200
    assert httpx.get(f"http://{server.url}/v2/health/ready").status_code == 200


def test_gzip_of_a_plain_json_body(server: Any) -> None:
    body = b'{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]},' \
           b'{"name":"y","shape":[1,4],"datatype":"FP32","data":[1,1,1,1]}]}'
    r = httpx.post(f"http://{server.url}/v2/models/pair/infer", content=gzip.compress(body),
                   headers={"Content-Encoding": "gzip"}, timeout=30)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [2, 3, 4, 5]


def test_the_demo_stays_one_mount_of_the_same_app(tmp_path: Any, repository: Any) -> None:
    from .conftest import ServerThread

    dist = tmp_path / "dist"
    (dist / "models").mkdir(parents=True)
    (dist / "index.html").write_text("<title>demo</title>")
    with ServerThread(repository, dist=dist) as s:
        page = httpx.get(f"http://{s.url}/")
        assert page.status_code == 200 and "demo" in page.text
        assert page.headers["cross-origin-opener-policy"] == "same-origin"  # the demo's own headers
        assert httpx.get(f"http://{s.url}/models/pair.onnx").status_code == 200  # --models, served as files
        assert httpx.get(f"http://{s.url}/v2/models/pair").json()["name"] == "pair"


def test_large_tensors_are_coded_off_the_event_loop(server: Any, reference: Any) -> None:
    """Over OFF_LOOP_BYTES, decoding and encoding run in a thread: the answer is the same."""
    from webinfer.serving.http import OFF_LOOP_BYTES

    rng = np.random.default_rng(12)
    n = OFF_LOOP_BYTES // 16 + 100  # rows of 16 bytes: each input, and each output, is over the threshold
    ins, feed = _pair_inputs(rng, n=n)
    for binary in (True, False):
        outs = [th.InferRequestedOutput(k, binary_data=binary) for k in ("sum", "prod")]
        r = th.InferenceServerClient(server.url, network_timeout=120).infer("pair", ins, outputs=outs)
        want = reference["pair"].run(None, feed)
        np.testing.assert_array_equal(r.as_numpy("sum"), want[0])
        np.testing.assert_array_equal(r.as_numpy("prod"), want[1])
