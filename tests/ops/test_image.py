"""ImageDecoder on images encoded here from known pixels (onnxruntime has no ImageDecoder).

The encoders below are deliberately plain: they cover every PNG filter
type, interlacing, bit depth and colour type, BMP's palette/24-bit/
bit-field layouts, every PNM variant and uncompressed/Deflate TIFF.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from onnx import helper

import webinfer
from tests.ops.util import make_model

rng = np.random.default_rng(0)
H, W = 13, 11


def decode(data: bytes, pixel_format: str = "RGB") -> np.ndarray:
    feed = {"x": np.frombuffer(data, dtype=np.uint8)}
    node = helper.make_node("ImageDecoder", ["x"], ["y"], name="dec", pixel_format=pixel_format)
    options = webinfer.SessionOptions(strict_shape_checks=True)
    sess = webinfer.InferenceSession(make_model([node], feed, ["y"], opset=20).SerializeToString(), options)
    return sess.run(None, feed)[0]


# ------------------------------------------------------------------ PNG

def _pack(samples: np.ndarray, depth: int) -> np.ndarray:
    """Rows of samples [h, n] as PNG row bytes."""
    if depth == 16:
        return samples.astype(">u2").view(np.uint8).reshape(samples.shape[0], -1)
    if depth == 8:
        return samples.astype(np.uint8)
    per = 8 // depth
    n = samples.shape[1]
    padded = np.zeros((samples.shape[0], -(-n // per) * per), dtype=np.int64)
    padded[:, :n] = samples
    groups = padded.reshape(samples.shape[0], -1, per)
    return (groups << (8 - depth - depth * np.arange(per))).sum(axis=-1).astype(np.uint8)


def _filter(rows: np.ndarray, bpp: int, first_kind: int) -> bytes:
    """Filter each row with type (first_kind + row) % 5."""
    out = []
    prev = np.zeros(rows.shape[1], dtype=np.int64)
    for i, row in enumerate(rows.astype(np.int64)):
        kind = (first_kind + i) % 5
        a = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        c = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        b = prev
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        pred = [np.zeros_like(a), a, b, (a + b) // 2, paeth][kind]
        out.append(bytes([kind]) + ((row - pred) % 256).astype(np.uint8).tobytes())
        prev = row
    return b"".join(out)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def encode_png(samples: np.ndarray, depth: int, ctype: int, palette: np.ndarray | None = None,
               interlace: int = 0) -> bytes:
    h, w, ch = samples.shape
    bpp = max(1, ch * depth // 8)
    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        subs = [samples[y0::dy, x0::dx] for x0, y0, dx, dy in passes if x0 < w and y0 < h]
        raw = b"".join(_filter(_pack(sub.reshape(sub.shape[0], -1), depth), bpp, k) for k, sub in enumerate(subs))
    else:
        raw = _filter(_pack(samples.reshape(h, w * ch), depth), bpp, 0)
    body = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace))
    if palette is not None:
        body += _chunk(b"PLTE", palette.astype(np.uint8).tobytes())
    return body + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


@pytest.mark.parametrize("interlace", [0, 1])
@pytest.mark.parametrize("depth", [8, 16])
def test_png_rgb_and_rgba(depth: int, interlace: int) -> None:
    samples = rng.integers(0, 1 << depth, (H, W, 4))
    want = (samples[..., :3] >> (depth - 8)).astype(np.uint8)
    np.testing.assert_array_equal(decode(encode_png(samples[..., :3], depth, 2, interlace=interlace)), want)
    np.testing.assert_array_equal(decode(encode_png(samples, depth, 6, interlace=interlace)), want)


@pytest.mark.parametrize("depth", [1, 2, 4, 8, 16])
def test_png_grey(depth: int) -> None:
    samples = rng.integers(0, 1 << depth, (H, W, 1))
    want = (samples >> 8 if depth == 16 else samples * (255 // ((1 << depth) - 1))).astype(np.uint8)
    data = encode_png(samples, depth, 0, interlace=depth % 2)
    np.testing.assert_array_equal(decode(data, "Grayscale"), want)
    np.testing.assert_array_equal(decode(data, "BGR"), np.repeat(want, 3, axis=-1))


@pytest.mark.parametrize("depth", [1, 4, 8])
def test_png_palette_bgr_and_grey(depth: int) -> None:
    palette = rng.integers(0, 256, (1 << depth, 3))
    idx = rng.integers(0, 1 << depth, (H, W, 1))
    rgb = palette[idx[..., 0]].astype(np.uint8)
    data = encode_png(idx, depth, 3, palette=palette)
    np.testing.assert_array_equal(decode(data, "BGR"), rgb[..., ::-1])
    grey = (rgb.astype(np.int64) @ np.array([19595, 38470, 7471]) + 0x8000) >> 16
    np.testing.assert_array_equal(decode(data, "Grayscale"), grey[..., None].astype(np.uint8))


# ------------------------------------------------------------------ BMP

def encode_bmp(pixels: np.ndarray, bpp: int, top_down: bool = False) -> bytes:
    """pixels: [h, w, 3] RGB (bpp 24/32) or [h, w] palette indices (bpp 8, a grey ramp palette)."""
    h, w = pixels.shape[:2]
    stride = (w * bpp + 31) // 32 * 4
    rows = pixels if top_down else pixels[::-1]
    if bpp == 8:
        palette = np.stack([np.arange(256)] * 3 + [np.zeros(256, int)], axis=1).astype(np.uint8).tobytes()
        data = rows.astype(np.uint8)
        extra, compression = palette, 0
    elif bpp == 24:
        data = rows[..., ::-1].reshape(h, w * 3).astype(np.uint8)
        extra, compression = b"", 0
    else:
        v = (rows[..., 0].astype(np.uint32) << 16) | (rows[..., 1].astype(np.uint32) << 8) | rows[..., 2]
        data = (v << 8).astype("<u4").view(np.uint8).reshape(h, w * 4)
        extra, compression = struct.pack("<III", 0xFF000000, 0xFF0000, 0xFF00), 3
    body = np.zeros((h, stride), np.uint8)
    body[:, :data.shape[1]] = data
    offset = 14 + 40 + len(extra)
    info = struct.pack("<IiiHHIIiiII", 40, w, -h if top_down else h, 1, bpp, compression, body.size, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", offset + body.size, 0, 0, offset) + info + extra + body.tobytes()


@pytest.mark.parametrize("bpp, top_down", [(24, False), (24, True), (32, False)])
def test_bmp_colour(bpp: int, top_down: bool) -> None:
    rgb = rng.integers(0, 256, (H, W, 3))
    np.testing.assert_array_equal(decode(encode_bmp(rgb, bpp, top_down)), rgb.astype(np.uint8))


def test_bmp_palette() -> None:
    idx = rng.integers(0, 256, (H, W))
    np.testing.assert_array_equal(decode(encode_bmp(idx, 8), "Grayscale"), idx[..., None].astype(np.uint8))


# ------------------------------------------------------------------ PNM

@pytest.mark.parametrize("kind, maxval", [(6, 255), (6, 1000), (3, 255), (5, 255), (2, 15), (4, 1), (1, 1)])
def test_pnm(kind: int, maxval: int) -> None:
    channels = 3 if kind in (3, 6) else 1
    v = rng.integers(0, maxval + 1, (H, W, channels))
    header = f"P{kind}\n# a comment\n{W} {H}\n" + ("" if kind in (1, 4) else f"{maxval}\n")
    if kind in (1, 2, 3):
        body = " ".join(str(int(x)) for x in v.reshape(-1)).encode()
    elif kind == 4:
        body = np.packbits(v[..., 0].astype(np.uint8), axis=1).tobytes()
    else:
        body = v.astype(">u2" if maxval > 255 else np.uint8).tobytes()
    want = np.where(v == 1, 0, 255) if kind in (1, 4) else (v * 255 + maxval // 2) // maxval
    fmt = "RGB" if channels == 3 else "Grayscale"
    np.testing.assert_array_equal(decode(header.encode() + body, fmt), want.astype(np.uint8))


# ------------------------------------------------------------------ TIFF

def encode_tiff(rgb: np.ndarray, deflate: bool) -> bytes:
    h, w, _ = rgb.shape
    body = rgb.astype(np.uint8)
    if deflate:
        body = np.diff(body.astype(np.int64), axis=1, prepend=0) % 256  # predictor 2
        strip = zlib.compress(body.astype(np.uint8).tobytes())
    else:
        strip = body.tobytes()
    entries = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 3, None), (259, 3, 1, 8 if deflate else 1), (262, 3, 1, 2),
               (273, 4, 1, None), (277, 3, 1, 3), (278, 3, 1, h), (279, 4, 1, len(strip)), (284, 3, 1, 1),
               (317, 3, 1, 2 if deflate else 1)]
    ifd_size = 2 + 12 * len(entries) + 4
    bits_at = 8 + ifd_size
    strip_at = bits_at + 6
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        value = {258: bits_at, 273: strip_at}.get(tag, value)
        packed = struct.pack("<H", value) + b"\0\0" if typ == 3 and count == 1 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, typ, count) + packed
    return b"II*\0" + struct.pack("<I", 8) + ifd + b"\0\0\0\0" + struct.pack("<HHH", 8, 8, 8) + strip


@pytest.mark.parametrize("deflate", [False, True])
def test_tiff(deflate: bool) -> None:
    rgb = rng.integers(0, 256, (H, W, 3))
    np.testing.assert_array_equal(decode(encode_tiff(rgb, deflate)), rgb.astype(np.uint8))


# ------------------------------------------------------------------ errors

def test_jpeg_is_unsupported_and_names_format_and_node() -> None:
    with pytest.raises(webinfer.WebinferError, match=r"ImageDecoder node 'dec'.*JPEG images are not supported"):
        decode(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(32))


def test_corrupt_png_names_node() -> None:
    data = bytearray(encode_png(rng.integers(0, 256, (4, 4, 3)), 8, 2))
    data[40] ^= 0xFF
    with pytest.raises(webinfer.WebinferError, match=r"ImageDecoder node 'dec'.*bad CRC"):
        decode(bytes(data))


def test_bad_pixel_format_names_node() -> None:
    feed = {"x": np.zeros(4, np.uint8)}
    node = helper.make_node("ImageDecoder", ["x"], ["y"], name="dec", pixel_format="CMYK")
    with pytest.raises(webinfer.ShapeInferenceError, match=r"ImageDecoder node 'dec'.*pixel_format"):
        webinfer.InferenceSession(make_model([node], feed, ["y"], opset=20).SerializeToString())
