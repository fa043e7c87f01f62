"""tritonclient.grpc, unchanged, against the server's gRPC port: answers equal InferenceSession.run."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

tg = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is in the test extra")
grpc = pytest.importorskip("grpc")


def _inputs(feed: dict[str, np.ndarray], types: dict[str, str]) -> list[Any]:
    ins = []
    for k, v in feed.items():
        i = tg.InferInput(k, list(v.shape), types[k])
        i.set_data_from_numpy(v)
        ins.append(i)
    return ins


def test_grpc_health_metadata_config(server: Any) -> None:
    c = tg.InferenceServerClient(server.grpc_url)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("pair") and not c.is_model_ready("broken") and not c.is_model_ready("nope")
    meta = c.get_server_metadata(as_json=True)
    assert meta["name"] == "webinfer" and "binary_tensor_data" in meta["extensions"]
    m = c.get_model_metadata("pair_batched", as_json=True)
    assert m["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}  # int64 as JSON strings
    cfg = c.get_model_config("pair_batched", as_json=True)["config"]
    assert cfg["max_batch_size"] == 8 and cfg["input"][0]["dims"] == ["4"]
    assert cfg["dynamic_batching"]["preferred_batch_size"] == [8]
    with pytest.raises(tg.InferenceServerException) as e:
        c.get_model_metadata("nope")
    assert e.value.status() == "StatusCode.NOT_FOUND"


@pytest.mark.parametrize("model", ["pair", "pair_batched"])
def test_grpc_infer_equals_session(server: Any, reference: Any, model: str) -> None:
    rng = np.random.default_rng(5)
    feed = {k: rng.standard_normal((3, 4)).astype(np.float32) for k in ("x", "y")}
    expected = dict(zip(["sum", "prod"], reference[model].run(None, feed)))
    c = tg.InferenceServerClient(server.grpc_url)
    r = c.infer(model, _inputs(feed, {"x": "FP32", "y": "FP32"}), request_id="g1")
    assert r.get_response().id == "g1"
    for name in ("sum", "prod"):
        np.testing.assert_array_equal(r.as_numpy(name), expected[name])
    r = c.infer(model, _inputs(feed, {"x": "FP32", "y": "FP32"}), outputs=[tg.InferRequestedOutput("prod")])
    assert [o.name for o in r.get_response().outputs] == ["prod"]
    np.testing.assert_array_equal(r.as_numpy("prod"), expected["prod"])


def test_grpc_bytes_bool_fp16(server: Any, reference: Any) -> None:
    rng = np.random.default_rng(6)
    feed = {"s": np.array([b"a", b"", b"xyz" * 10], dtype=object), "b": rng.random((3, 3)) > 0.5,
            "h": rng.standard_normal((3, 2)).astype(np.float16)}
    expected = reference["mixed"].run(None, feed)
    r = tg.InferenceServerClient(server.grpc_url).infer("mixed", _inputs(feed, {"s": "BYTES", "b": "BOOL",
                                                                               "h": "FP16"}))
    assert list(r.as_numpy("s_out")) == list(expected[0])
    np.testing.assert_array_equal(r.as_numpy("b_out"), expected[1])
    np.testing.assert_array_equal(r.as_numpy("h_out"), expected[2])


def test_grpc_errors_map_to_status_codes(server: Any) -> None:
    c = tg.InferenceServerClient(server.grpc_url)
    x = np.ones((1, 4), np.float32)
    cases = [("nope", {"x": x, "y": x}, "FP32", "NOT_FOUND"),
             ("pair", {"x": x}, "FP32", "INVALID_ARGUMENT"),
             ("pair", {"x": x.astype(np.float64), "y": x.astype(np.float64)}, "FP64", "INVALID_ARGUMENT"),
             ("pair", {"x": np.ones((1, 5), np.float32), "y": x}, "FP32", "INVALID_ARGUMENT")]
    for model, feed, dt, code in cases:
        with pytest.raises(tg.InferenceServerException) as e:
            c.infer(model, _inputs(feed, {k: dt for k in feed}))
        assert e.value.status() == f"StatusCode.{code}", e.value.message()
    with pytest.raises(tg.InferenceServerException) as e:
        c.infer("lookup", _inputs({"idx": np.array([42], np.int64)}, {"idx": "INT64"}))
    assert e.value.status() == "StatusCode.INTERNAL"
    # Streaming and statistics are not served: UNIMPLEMENTED, as Triton's default servicer answers.
    with pytest.raises(tg.InferenceServerException) as e:
        c.get_inference_statistics("pair")
    assert e.value.status() == "StatusCode.UNIMPLEMENTED"
    np.testing.assert_array_equal(c.infer("pair", _inputs({"x": x, "y": x}, {"x": "FP32", "y": "FP32"})).as_numpy(
        "sum"), 2 * x)


def test_grpc_message_limit_is_the_body_limit(repository: Any) -> None:
    from .conftest import ServerThread

    with ServerThread(repository, grpc=True, max_body_bytes=4096) as s:
        c = tg.InferenceServerClient(s.grpc_url)
        big = np.ones((2000, 4), np.float32)  # 32 kB of tensor
        with pytest.raises(tg.InferenceServerException) as e:
            c.infer("pair", _inputs({"x": big, "y": big}, {"x": "FP32", "y": "FP32"}))
        assert e.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        small = np.ones((1, 4), np.float32)
        r = c.infer("pair", _inputs({"x": small, "y": small}, {"x": "FP32", "y": "FP32"}))
        np.testing.assert_array_equal(r.as_numpy("sum"), 2 * small)


def test_grpc_typed_contents(server: Any, reference: Any) -> None:
    """Inputs in InferTensorContents (what clients other than tritonclient send) instead of raw bytes."""
    from webinfer.serving.grpc_service import PB

    x = np.random.default_rng(13).standard_normal((2, 4)).astype(np.float32)
    req = PB["ModelInferRequest"](model_name="pair")
    for name in ("x", "y"):
        t = req.inputs.add(name=name, datatype="FP32", shape=[2, 4])
        t.contents.fp32_contents.extend(x.reshape(-1).tolist())
    channel = grpc.insecure_channel(server.grpc_url)
    infer = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                                request_serializer=PB["ModelInferRequest"].SerializeToString,
                                response_deserializer=PB["ModelInferResponse"].FromString)
    resp = infer(req, timeout=30)
    assert [o.name for o in resp.outputs] == ["sum", "prod"] and len(resp.raw_output_contents) == 2
    got = np.frombuffer(resp.raw_output_contents[0], np.float32).reshape(2, 4)
    np.testing.assert_array_equal(got, reference["pair"].run(["sum"], {"x": x, "y": x})[0])
    bad = PB["ModelInferRequest"](model_name="lookup")
    bad.inputs.add(name="idx", datatype="INT64", shape=[2]).contents.int64_contents.extend([1])
    with pytest.raises(grpc.RpcError) as e:
        infer(bad, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "needs 2 elements" in e.value.details()
    channel.close()
