"""The demo's Python side, natively: PNG decoding, box post-processing, graph layout, feeds."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

import webinfer
from webinfer.executor import drive

from .conftest import build_wasm, demo_py
from .test_demo_page import small_model


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _png_with_filters(img: np.ndarray, filters: list[int]) -> bytes:
    """A reference encoder applying PNG filter `filters[y]` to row y (the decoder must undo all five)."""
    h, w, c = img.shape
    rows = img.reshape(h, w * c).astype(int)
    raw = bytearray()
    for y in range(h):
        f, cur = filters[y], rows[y]
        prev = rows[y - 1] if y else np.zeros_like(cur)
        out = []
        for x in range(w * c):
            a = cur[x - c] if x >= c else 0
            b = prev[x]
            d = prev[x - c] if x >= c else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, d)][f]
            out.append((cur[x] - pred) & 0xFF)
        raw += bytes([f]) + bytes(out)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2 if c == 3 else 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


@pytest.mark.parametrize("channels", [3, 4])
def test_read_png_all_filters(channels: int) -> None:
    img = np.random.default_rng(channels).integers(0, 256, size=(10, 7, channels), dtype=np.uint8)
    data = _png_with_filters(img, [0, 1, 2, 3, 4, 4, 3, 2, 1, 0])
    np.testing.assert_array_equal(demo_py.read_png(data), img[..., :3])


def test_sample_image_roundtrip() -> None:
    img = build_wasm.sample_image()
    assert img.shape == (*build_wasm.SAMPLE_SIZE, 3)
    np.testing.assert_array_equal(demo_py.read_png(build_wasm.encode_png(img)), img)
    assert build_wasm.encode_png(img) == build_wasm.encode_png(build_wasm.sample_image())


def _flood_boxes(mask: np.ndarray) -> set[tuple[int, int, int, int]]:
    """Reference 8-connected components by flood fill."""
    seen = np.zeros_like(mask, dtype=bool)
    boxes = set()
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        stack, ys, xs = [(y, x)], [], []
        seen[y, x] = True
        while stack:
            cy, cx = stack.pop()
            ys.append(cy)
            xs.append(cx)
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = cy + dy, cx + dx
                    if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
        boxes.add((min(xs), min(ys), max(xs) + 1, max(ys) + 1))
    return boxes


@pytest.mark.parametrize("seed", range(5))
def test_connected_boxes_match_flood_fill(seed: int) -> None:
    mask = np.random.default_rng(seed).random((40, 60)) > 0.62
    got = {b[:4] for b in demo_py.connected_boxes(mask)}
    assert got == _flood_boxes(mask)


def test_detect_boxes_unclips_and_filters() -> None:
    prob = np.zeros((64, 96), dtype=np.float32)
    prob[20:30, 10:50] = 0.9  # a text region: 40 x 10
    prob[40:42, 60:62] = 0.95  # too small
    prob[50:60, 60:90] = 0.4  # above the pixel threshold, below the box threshold
    boxes = demo_py.detect_boxes(prob, (64, 96))
    assert len(boxes) == 1
    d = 40 * 10 * 1.5 / (2 * 50)
    b = boxes[0]
    assert (b["x0"], b["y0"], b["x1"], b["y1"]) == pytest.approx((10 - d, 20 - d, 50 + d, 30 + d))
    assert b["score"] == pytest.approx(0.9)


def test_load_and_run_summaries() -> None:
    summary = demo_py.load(small_model(), "small.onnx", ["webgpu", "cpu"], adapter_problem="no adapter here")
    assert summary["providers"] == ["cpu"]
    assert summary["notice"].startswith(demo_py.CPU_FALLBACK_NOTICE) and "no adapter here" in summary["notice"]
    assert summary["inputs"][0]["default_shape"] == [1, 8]
    graph = summary["graph"]  # the optimized graph (fusion may merge MatMul+Add+Relu): still one chain
    n = len(graph["nodes"])
    assert n == summary["nodes_total"] and graph["nodes"][-1]["op"] == "Softmax"
    assert [node["layer"] for node in graph["nodes"]] == list(range(n))
    assert graph["edges"] == [[i, i + 1] for i in range(n - 1)]
    assert all(node["device"] == "cpu" for node in graph["nodes"])
    result = drive(demo_py.run(summary["id"], {"x": [2, 8]}, {}, 3))
    assert result["outputs"][0]["shape"] == [2, 4] and len(result["times_ms"]) == 3
    assert result["latency"]["p50"] <= result["latency"]["p90"]
    cpu_only = demo_py.load(small_model(), "small.onnx", ["cpu"])
    assert cpu_only["notice"] is None
    with pytest.raises(webinfer.ModelLoadError):
        demo_py.load(b"garbage", "bad.onnx", ["cpu"])


def test_load_without_describe_then_describe() -> None:
    """The page's first model loads without the info and graph layout; `describe_session` adds the same
    ones a describing load gives."""
    full = demo_py.load(small_model(), "small.onnx", ["cpu"])
    quick = demo_py.load(small_model(), "small.onnx", ["cpu"], describe=False)
    assert "info" not in quick and "graph" not in quick
    extra = demo_py.describe_session(quick["id"])
    assert extra["info"] == full["info"] and extra["graph"] == full["graph"]
    assert extra["info"]["nodes"] >= 1 and extra["info"]["op_histogram"]
    assert demo_py.SESSIONS[quick["id"]].summary["info"] == full["info"]


def test_init_webgpu_describes_the_adapter_or_why_not() -> None:
    """The worker's first call: natively it opens wgpu-py's device (the same `init_webgpu` as in the browser)."""
    from webinfer.devices.gpu import open_device

    adapter = drive(demo_py.init_webgpu(4.0))
    try:
        open_device({})
    except webinfer.DeviceError as e:
        assert adapter == {"available": False, "problem": str(e)}
        return
    assert adapter["available"] and adapter["description"]
    assert set(adapter) == {"available", "vendor", "architecture", "description", "fallback"}
