"""Every malformed-request class gets its 4xx (or 503/500) with an {"error"} naming what is wrong,
and the server keeps serving afterwards."""

from __future__ import annotations

import gzip
import json
import socket
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")

from .conftest import ServerThread  # noqa: E402

X = {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
Y = {"name": "y", "shape": [1, 4], "datatype": "FP32", "data": [5, 6, 7, 8]}


def _post(server: Any, model: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"http://{server.url}/v2/models/{model}/infer", content=content, headers=headers or {},
                      timeout=30)


def _binary(header: dict[str, Any], blobs: bytes) -> tuple[bytes, dict[str, str]]:
    h = json.dumps(header).encode()
    return h + blobs, {"Inference-Header-Content-Length": str(len(h))}


def _still_serving(server: Any) -> None:
    r = _post(server, "pair", {"inputs": [X, Y]})
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [6, 8, 10, 12]


def _raw(server: Any, request: bytes, read: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(request)
        if not read:
            return b""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


BAD_JSON = [
    ("not json", b"{inputs", "not valid JSON"),
    ("not an object", b"[1, 2]", "must be an object"),
    ("no inputs", {"inputs": []}, "non-empty 'inputs'"),
    ("missing input", {"inputs": [X]}, "needs input(s) ['y']"),
    ("unknown input", {"inputs": [X, Y, dict(X, name="z")]}, "has no input 'z'"),
    ("duplicate input", {"inputs": [X, Y, X]}, "given twice"),
    ("wrong datatype", {"inputs": [dict(X, datatype="INT32"), Y]}, "does not match the model's FP32"),
    ("wrong rank", {"inputs": [dict(X, shape=[4]), Y]}, "does not match the model's [-1, 4]"),
    ("wrong fixed dim", {"inputs": [dict(X, shape=[2, 2]), Y]}, "does not match the model's [-1, 4]"),
    ("negative dim", {"inputs": [dict(X, shape=[-1, 4]), Y]}, "non-negative integers"),
    ("float dim", {"inputs": [dict(X, shape=[1.0, 4]), Y]}, "non-negative integers"),
    ("too few elements", {"inputs": [dict(X, data=[1, 2, 3]), Y]}, "needs 4 elements"),
    ("ragged data", {"inputs": [dict(X, data=[[1, 2], [3]]), Y]}, "does not hold FP32"),
    ("strings for FP32", {"inputs": [dict(X, data=["a", "b", "c", "d"]), Y]}, "does not hold FP32"),
    ("no data", {"inputs": [{k: v for k, v in X.items() if k != "data"}, Y]}, "neither 'data'"),
    ("unknown output", {"inputs": [X, Y], "outputs": [{"name": "nope"}]}, "has no output 'nope'"),
    ("bad timeout", {"inputs": [X, Y], "parameters": {"timeout": "soon"}}, "timeout"),
    ("deep nesting", b'{"inputs":' + b"[" * 150_000 + b"]" * 150_000 + b"}", "nested too deeply"),
]


@pytest.mark.parametrize("body, message", [(b, m) for _, b, m in BAD_JSON], ids=[i for i, _, _ in BAD_JSON])
def test_bad_json_request_is_400(server: Any, body: Any, message: str) -> None:
    r = _post(server, "pair", body)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    _still_serving(server)


def _bin_inputs(x_size: int, y_size: int, shape: list[int] | None = None) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": shape or [1, 4], "datatype": "FP32",
                        "parameters": {"binary_data_size": x_size}},
                       {"name": "y", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": y_size}}]}


def test_bad_binary_requests_are_400(server: Any) -> None:
    x = np.arange(4, dtype=np.float32).tobytes()
    cases = [
        (_binary(_bin_inputs(16, 16), x + x), None),  # well-formed: the control
        (_binary(_bin_inputs(16, 20), x + x), "add up to 36 bytes, but 32 bytes follow"),
        (_binary(_bin_inputs(12, 20), x + x), "needs 16 bytes, got 12"),
        (_binary(_bin_inputs(16, 16, [1 << 40, 4]), x + x), "needs 17592186044416 bytes, got 16"),
        (_binary(_bin_inputs(-1, 16), x + x), "binary_data_size must be a non-negative integer"),
    ]
    for (body, headers), message in cases:
        r = _post(server, "pair", body, headers)
        if message is None:
            assert r.status_code == 200, r.text
        else:
            assert r.status_code == 400 and message in r.json()["error"], r.text
    body, _ = _binary(_bin_inputs(16, 16), x + x)
    for value in ("99999", "0", "-3", "abc"):
        r = _post(server, "pair", body, {"Inference-Header-Content-Length": value})
        assert r.status_code == 400 and "Inference-Header-Content-Length" in r.json()["error"]
    _still_serving(server)


def test_bytes_length_prefix_overrun_is_400(server: Any) -> None:
    header = {"inputs": [{"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 9}},
                         {"name": "b", "shape": [2, 3], "datatype": "BOOL", "data": [True] * 6},
                         {"name": "h", "shape": [2, 2], "datatype": "FP16", "data": [1, 2, 3, 4]}]}
    body, headers = _binary(header, struct.pack("<I", 1) + b"a" + struct.pack("<I", 1000))
    r = _post(server, "mixed", body, headers)
    assert r.status_code == 400 and "claims 1000 bytes" in r.json()["error"]
    _still_serving(server)


def test_unknown_model_and_version_are_404(server: Any) -> None:
    r = _post(server, "nope", {"inputs": [X, Y]})
    assert r.status_code == 404 and "unknown model 'nope'" in r.json()["error"]
    r = httpx.post(f"http://{server.url}/v2/models/pair/versions/3/infer", json={"inputs": [X, Y]})
    assert r.status_code == 404 and "no version '3'" in r.json()["error"]
    r = _post(server, "..%2F..%2Fetc%2Fpasswd", {"inputs": [X, Y]})
    assert r.status_code == 404


def test_model_that_raises_is_500_and_others_go_on(server: Any, reference: Any) -> None:
    idx = {"name": "idx", "shape": [2], "datatype": "INT64"}
    r = _post(server, "lookup", {"inputs": [dict(idx, data=[1, 99])]})
    assert r.status_code == 500 and "model 'lookup' failed" in r.json()["error"]
    r = _post(server, "lookup", {"inputs": [dict(idx, data=[1, 9])]})
    assert r.status_code == 200
    expected = reference["lookup"].run(None, {"idx": np.array([1, 9], dtype=np.int64)})[0]
    assert r.json()["outputs"][0]["data"] == expected.reshape(-1).tolist()
    _still_serving(server)


def test_full_queue_is_503_before_the_body_is_read(server: Any) -> None:
    srv = server.app.state.server
    scheduler = srv.scheduler(srv.model("lookup"))
    slots = [scheduler.reserve() for _ in range(4)]  # max_queue_size 4
    try:
        # Headers announce a 50 MB body that never comes: the answer must not wait for it.
        reply = _raw(server, b"POST /v2/models/lookup/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 50000000\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 503"), reply[:200]
        assert b"exceeds maximum queue size" in _post(server, "lookup", {"inputs": []}).content
    finally:
        for s in slots:
            s.release()
    r = _post(server, "lookup", {"inputs": [{"name": "idx", "shape": [1], "datatype": "INT64", "data": [3]}]})
    assert r.status_code == 200


def test_queue_timeout_is_503(server: Any) -> None:
    # lookup waits up to 20 ms for a batch; a 1 us deadline passes first.
    body = {"inputs": [{"name": "idx", "shape": [1], "datatype": "INT64", "data": [3]}],
            "parameters": {"timeout": 1}}
    r = _post(server, "lookup", body)
    assert r.status_code == 503 and "timed out" in r.json()["error"]
    _still_serving(server)


def test_disconnect_mid_body_leaks_nothing(server: Any) -> None:
    srv = server.app.state.server
    scheduler = srv.scheduler(srv.model("pair"))
    for _ in range(5):
        _raw(server, b"POST /v2/models/pair/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inp",
             read=False)
    _still_serving(server)
    deadline = time.monotonic() + 10
    while scheduler.admitted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scheduler.admitted == 0 and not scheduler.pending


@pytest.fixture(scope="module")
def small_server(repository: Path) -> Any:
    with ServerThread(repository, max_body_bytes=4096, body_timeout_s=1.0) as s:
        yield s


def test_body_limit_is_413_declared_chunked_and_gzip(small_server: Any) -> None:
    big = {"inputs": [dict(X, data=[1.0] * 4), Y], "pad": "x" * 5000}
    r = _post(small_server, "pair", big)
    assert r.status_code == 413 and "exceeds the limit of 4096 bytes" in r.json()["error"]

    def chunks() -> Any:
        for _ in range(100):
            yield b" " * 1000
    r = httpx.post(f"http://{small_server.url}/v2/models/pair/infer", content=chunks(), timeout=30)
    assert r.status_code == 413
    bomb = gzip.compress(b'{"inputs": [' + b" " * 3_000_000 + b"]}")
    assert len(bomb) < 4096
    r = _post(small_server, "pair", bomb, {"Content-Encoding": "gzip"})
    assert r.status_code == 413 and "decompressed" in r.json()["error"]
    _still_serving(small_server)


def test_a_body_that_trickles_in_is_408_and_frees_its_slot(small_server: Any) -> None:
    srv = small_server.app.state.server
    scheduler = srv.scheduler(srv.model("pair"))
    t0 = time.monotonic()
    reply = _raw(small_server, b"POST /v2/models/pair/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"in")
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert time.monotonic() - t0 < 20 and scheduler.admitted == 0
    _still_serving(small_server)
