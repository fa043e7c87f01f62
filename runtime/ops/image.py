"""ImageDecoder: PNG, BMP, PNM and uncompressed/Deflate TIFF, decoded with numpy and zlib.

These formats store pixels plainly (or through zlib, which the standard
library has), so a complete decoder for them is small.  Formats that need a
real codec (JPEG's Huffman/DCT, JPEG 2000's wavelets, WebP's VP8, TIFF's
LZW/JPEG/PackBits compressions, GIF's LZW) are rejected with
UnsupportedOpError naming the format: a partial codec would silently
decode some files wrong.

Every decoder returns uint8 pixels [H, W, 1] (grey sources) or [H, W, 3]
(colour sources); alpha is dropped, 16-bit samples keep their high byte and
low bit depths are scaled to 0..255.  `pixel_format` is applied last.
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import Callable

import numpy as np

from .. import dtypes
from ..errors import InputError, UnsupportedOpError
from ..ir import Type
from ..shapes import InferContext, shape_str, tensor
from .registry import OpContext, op


class _Corrupt(InputError):
    """The encoded stream is truncated or inconsistent."""


def _need(ok: bool, what: str) -> None:
    if not ok:
        raise _Corrupt(what)


def _scale(v: np.ndarray, maxval: int) -> np.ndarray:
    """Samples in 0..maxval as uint8 in 0..255 (rounded)."""
    if maxval == 255:
        return v.astype(np.uint8)
    return ((v.astype(np.int64) * 255 + maxval // 2) // maxval).astype(np.uint8)


def _unpack(raw: np.ndarray, rows: int, row_bytes: int, bits: int, count: int) -> np.ndarray:
    """`count` samples of `bits` bits from each of `rows` byte-aligned rows (MSB first), as int64."""
    data = raw[:rows * row_bytes].reshape(rows, row_bytes)
    if bits == 8:
        return data[:, :count].astype(np.int64)
    if bits == 16:
        return data[:, :2 * count].reshape(rows, count, 2).astype(np.int64) @ np.array([256, 1])
    per_byte = 8 // bits
    shifts = np.arange(8 - bits, -1, -bits)
    vals = (data[:, :, None] >> shifts) & ((1 << bits) - 1)
    return vals.reshape(rows, row_bytes * per_byte)[:, :count].astype(np.int64)


# ------------------------------------------------------------------ PNG

_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_PNG_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


def _unfilter(data: np.ndarray, h: int, row_bytes: int, bpp: int) -> np.ndarray:
    """Undo PNG's per-row filters.

    Sub/Average/Paeth depend on the reconstructed left neighbour, so a row
    cannot be vectorised along itself; instead pixels are reconstructed one
    anti-diagonal at a time (a pixel needs only its left, upper and
    upper-left neighbours, all on earlier diagonals), vectorised over the
    diagonal whatever filter each row uses.
    """
    rows = data.reshape(h, row_bytes + 1)
    kinds = rows[:, 0].astype(np.int64)
    _need(kinds.max(initial=0) <= 4, f"PNG row filter {kinds.max()} is not one of 0..4")
    units = row_bytes // bpp
    filt = rows[:, 1:].reshape(h, units, bpp).astype(np.int64)
    if (kinds == 0).all():
        return rows[:, 1:].copy()
    out = np.zeros((h + 1, units + 1, bpp), dtype=np.int64)
    for t in range(h + units - 1):
        y = np.arange(max(0, t - units + 1), min(h, t + 1))
        x = t - y
        a, b, c = out[y + 1, x], out[y, x + 1], out[y, x]
        k = kinds[y][:, None]
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        pred = np.select([k == 1, k == 2, k == 3, k == 4], [a, b, (a + b) >> 1, paeth], 0)
        out[y + 1, x + 1] = (filt[y, x] + pred) & 255
    return out[1:, 1:].reshape(h, row_bytes).astype(np.uint8)


def _png_pass(raw: np.ndarray, pos: int, w: int, h: int, depth: int, channels: int) -> tuple[np.ndarray, int]:
    """Samples [h, w, channels] of one (sub-)image starting at raw[pos], and the position after it."""
    bits = depth * channels
    row_bytes = (w * bits + 7) // 8
    size = h * (row_bytes + 1)
    _need(raw.size >= pos + size, f"PNG image data is truncated ({raw.size} bytes, need {pos + size})")
    rows = _unfilter(raw[pos:pos + size], h, row_bytes, max(1, bits // 8))
    samples = _unpack(rows.reshape(-1), h, row_bytes, depth, w * channels)
    return samples.reshape(h, w, channels), pos + size


def _decode_png(data: bytes) -> np.ndarray:
    pos, idat = 8, []
    header: tuple[int, ...] | None = None
    palette: np.ndarray | None = None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        _need(len(body) == length and pos + 12 + length <= len(data), f"PNG chunk {kind!r} is truncated")
        crc = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])[0]
        _need(zlib.crc32(kind + body) == crc, f"PNG chunk {kind!r} has a bad CRC")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = np.frombuffer(body, dtype=np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise _Corrupt("PNG has no IHDR or no IDAT chunk")
    w, h, depth, ctype, comp, filt, interlace = header
    _need(ctype in _PNG_DEPTHS and depth in _PNG_DEPTHS[ctype] and comp == 0 and filt == 0 and interlace in (0, 1),
          f"PNG header is invalid (bit depth {depth}, colour type {ctype}, interlace {interlace})")
    _need(w > 0 and h > 0, f"PNG has an empty size {w}x{h}")
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    except zlib.error as e:
        raise _Corrupt(f"PNG image data does not inflate: {e}") from None
    channels = _PNG_CHANNELS[ctype]
    if interlace == 0:
        samples, _ = _png_pass(raw, 0, w, h, depth, channels)
    else:
        samples = np.zeros((h, w, channels), dtype=np.int64)
        pos = 0
        for x0, y0, dx, dy in _ADAM7:
            pw, ph = (w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy
            if pw > 0 and ph > 0:
                samples[y0::dy, x0::dx], pos = _png_pass(raw, pos, pw, ph, depth, channels)
    if ctype == 3:
        if palette is None or int(samples.max()) >= len(palette):
            raise _Corrupt("PNG palette is missing or smaller than the indices used")
        return palette[samples[..., 0]]
    if depth == 16:
        pixels = (samples >> 8).astype(np.uint8)
    else:
        pixels = _scale(samples, (1 << depth) - 1)
    return pixels[..., :1] if ctype in (0, 4) else pixels[..., :3]


# ------------------------------------------------------------------ BMP

def _mask_channel(v: np.ndarray, mask: int) -> np.ndarray:
    if mask == 0:
        return np.zeros(v.shape, dtype=np.uint8)
    shift = (mask & -mask).bit_length() - 1
    return _scale((v & mask) >> shift, mask >> shift)


def _decode_bmp(data: bytes) -> np.ndarray:
    _need(len(data) >= 26, "BMP header is truncated")
    offset, hsize = struct.unpack("<I I", data[10:18])
    if hsize == 12:
        w, h, _, bpp = struct.unpack("<HhHH", data[18:26])
        compression, colors, entry = 0, 0, 3
    else:
        _need(hsize >= 40 and len(data) >= 14 + hsize, "BMP info header is truncated")
        w, h, _, bpp, compression = struct.unpack("<iiHHI", data[18:34])
        colors, entry = struct.unpack("<I", data[46:50])[0], 4
    if compression in (1, 2):
        raise UnsupportedOpError(f"BMP with RLE{8 if compression == 1 else 4} compression is not supported "
                                 "(only uncompressed and bit-field BMPs)")
    if compression not in (0, 3, 6):
        raise UnsupportedOpError(f"BMP with compression {compression} (embedded JPEG/PNG) is not supported")
    _need(w > 0 and h != 0 and bpp in (1, 2, 4, 8, 16, 24, 32), f"BMP header is invalid ({w}x{h}, {bpp} bits)")
    top_down, h = h < 0, abs(h)
    stride = (w * bpp + 31) // 32 * 4
    _need(len(data) >= offset + stride * h, f"BMP pixel data is truncated ({len(data)} bytes)")
    raw = np.frombuffer(data, dtype=np.uint8, count=stride * h, offset=offset)
    if bpp <= 8:
        n = colors or (1 << bpp)
        table_at = 14 + hsize
        _need(len(data) >= table_at + n * entry, "BMP colour table is truncated")
        table = np.frombuffer(data, dtype=np.uint8, count=n * entry, offset=table_at).reshape(n, entry)
        idx = _unpack(raw, h, stride, bpp, w)
        _need(int(idx.max()) < n, f"BMP pixel indices exceed its {n}-entry colour table")
        rgb = table[idx][..., 2::-1]
    elif bpp == 24:
        rgb = raw.reshape(h, stride)[:, :w * 3].reshape(h, w, 3)[..., ::-1]
    else:
        if compression in (3, 6):
            _need(len(data) >= 66, "BMP bit-field masks are truncated")
            masks = struct.unpack("<III", data[54:66])  # after a 40-byte header, or inside a V4/V5 one
        else:
            masks = (0x7C00, 0x3E0, 0x1F) if bpp == 16 else (0xFF0000, 0xFF00, 0xFF)
        word = np.dtype("<u2") if bpp == 16 else np.dtype("<u4")
        v = raw.reshape(h, stride)[:, :w * word.itemsize].copy().view(word).astype(np.int64)
        rgb = np.stack([_mask_channel(v, m) for m in masks], axis=-1)
    return np.ascontiguousarray(rgb if top_down else rgb[::-1])


# ------------------------------------------------------------------ PNM

_PNM_HEADER = re.compile(rb"P([1-6])((?:\s+|#[^\n]*\n)+)")
_TOKEN = re.compile(rb"(?:\s|#[^\n]*(?:\n|$))*(\d+)")


def _decode_pnm(data: bytes) -> np.ndarray:
    kind = data[1] - ord("0")
    pos, fields = 2, []
    for _ in range(2 if kind in (1, 4) else 3):
        m = _TOKEN.match(data, pos)
        if m is None:
            raise _Corrupt("PNM header is truncated")
        fields.append(int(m.group(1)))
        pos = m.end()
    w, h = fields[0], fields[1]
    maxval = fields[2] if len(fields) == 3 else 1
    _need(w > 0 and h > 0 and 0 < maxval < 65536, f"PNM header is invalid ({w}x{h}, maxval {maxval})")
    channels = 3 if kind in (3, 6) else 1
    count = w * h * channels
    if kind <= 3:
        body = re.sub(rb"#[^\n]*", b"", data[pos:])
        if kind == 1:
            digits = np.frombuffer(re.sub(rb"\s", b"", body), dtype=np.uint8)
            values = digits.astype(np.int64) - ord("0")
        else:
            values = np.array(body.split(), dtype=np.int64)
        _need(values.size >= count, f"PNM has {values.size} samples, {w}x{h} needs {count}")
        values = values[:count]
    else:
        pos += 1  # the single whitespace byte ending the header
        if kind == 4:
            row = (w + 7) // 8
            _need(len(data) >= pos + row * h, "PNM bitmap data is truncated")
            values = _unpack(np.frombuffer(data, np.uint8, row * h, pos), h, row, 1, w).reshape(-1)
        else:
            size = 2 if maxval > 255 else 1
            _need(len(data) >= pos + count * size, "PNM pixel data is truncated")
            values = np.frombuffer(data, ">u2" if size == 2 else np.uint8, count, pos).astype(np.int64)
    _need(int(values.max(initial=0)) <= maxval, f"PNM samples exceed maxval {maxval}")
    if kind in (1, 4):
        return np.where(values.reshape(h, w, 1) == 1, 0, 255).astype(np.uint8)
    return _scale(values.reshape(h, w, channels), maxval)


# ------------------------------------------------------------------ TIFF

_TIFF_COMPRESSION = {5: "LZW", 6: "old-style JPEG", 7: "JPEG", 32773: "PackBits", 2: "CCITT RLE",
                     3: "CCITT Group 3", 4: "CCITT Group 4", 34712: "JPEG 2000", 50001: "WebP", 50000: "ZSTD"}
_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}


def _tiff_tags(data: bytes) -> tuple[dict[int, list[int]], str]:
    end = "<" if data[:2] == b"II" else ">"
    magic, ifd = struct.unpack(end + "HI", data[2:8])
    if magic == 43:
        raise UnsupportedOpError("BigTIFF images are not supported")
    _need(ifd + 2 <= len(data), "TIFF directory offset is outside the file")
    (count,) = struct.unpack(end + "H", data[ifd:ifd + 2])
    _need(ifd + 2 + 12 * count <= len(data), "TIFF directory is truncated")
    tags: dict[int, list[int]] = {}
    for i in range(count):
        tag, typ, n, value = struct.unpack(end + "HHI4s", data[ifd + 2 + 12 * i:ifd + 14 + 12 * i])
        code = _TIFF_TYPES.get(typ)
        if code is None:
            continue
        size = struct.calcsize(code) * n
        if size <= 4:
            raw = value[:size]
        else:
            (at,) = struct.unpack(end + "I", value)
            _need(at + size <= len(data), f"TIFF tag {tag} points outside the file")
            raw = data[at:at + size]
        tags[tag] = list(struct.unpack(end + code * n, raw))
    return tags, end


def _decode_tiff(data: bytes) -> np.ndarray:
    tags, end = _tiff_tags(data)

    def first(tag: int, default: int) -> int:
        return tags.get(tag, [default])[0]

    w, h = first(256, 0), first(257, 0)
    compression, photometric = first(259, 1), first(262, -1)
    spp, planar, predictor = first(277, 1), first(284, 1), first(317, 1)
    bits = tags.get(258, [1])
    if compression not in (1, 8, 32946):
        name = _TIFF_COMPRESSION.get(compression, f"scheme {compression}")
        raise UnsupportedOpError(f"TIFF with {name} compression is not supported (only uncompressed and Deflate)")
    if 322 in tags or 324 in tags:
        raise UnsupportedOpError("tiled TIFF images are not supported (only strips)")
    if photometric not in (0, 1, 2, 3):
        raise UnsupportedOpError(f"TIFF photometric interpretation {photometric} (CMYK/YCbCr/Lab...) is not supported")
    depth = bits[0]
    _need(w > 0 and h > 0 and len(set(bits)) == 1 and depth in (1, 2, 4, 8, 16)
          and spp >= (3 if photometric == 2 else 1),
          f"TIFF layout is invalid or unsupported ({w}x{h}, bits {bits}, {spp} samples)")
    if predictor not in (1, 2) or (predictor == 2 and depth not in (8, 16)):
        raise UnsupportedOpError(f"TIFF predictor {predictor} with {depth}-bit samples is not supported")
    offsets, counts = tags.get(273), tags.get(279)
    if offsets is None or counts is None or len(offsets) != len(counts):
        raise _Corrupt("TIFF strips are missing")
    strips = []
    for at, n in zip(offsets, counts):
        _need(at + n <= len(data), "TIFF strip data is truncated")
        chunk = data[at:at + n]
        if compression != 1:
            try:
                chunk = zlib.decompress(chunk)
            except zlib.error as e:
                raise _Corrupt(f"TIFF strip does not inflate: {e}") from None
        strips.append(chunk)
    raw = np.frombuffer(b"".join(strips), dtype=np.uint8)
    planes, per_row = (spp, 1) if planar == 2 else (1, spp)
    row_bytes = (w * per_row * depth + 7) // 8
    _need(raw.size >= planes * h * row_bytes, f"TIFF holds {raw.size} pixel bytes, {w}x{h} needs more")
    if depth == 16 and end == "<":
        raw = raw[:planes * h * row_bytes].reshape(-1, 2)[:, ::-1].reshape(-1)
    parts = [_unpack(raw[p * h * row_bytes:], h, row_bytes, depth, w * per_row).reshape(h, w, per_row)
             for p in range(planes)]
    samples = np.concatenate(parts, axis=-1)
    if predictor == 2:
        samples = np.cumsum(samples, axis=1) & ((1 << depth) - 1)
    if photometric == 3:
        cmap = tags.get(320)
        _need(cmap is not None and len(cmap) == 3 * (1 << depth), "TIFF palette (ColorMap) is missing")
        table = (np.asarray(cmap, dtype=np.int64).reshape(3, -1).T >> 8).astype(np.uint8)
        return table[samples[..., 0]]
    pixels = (samples >> 8).astype(np.uint8) if depth == 16 else _scale(samples, (1 << depth) - 1)
    if photometric == 0:
        pixels = 255 - pixels
    return pixels[..., :3] if photometric == 2 else pixels[..., :1]


# ------------------------------------------------------------------ dispatch

_SUPPORTED = "PNG, BMP, PNM and uncompressed or Deflate TIFF are"
_UNSUPPORTED = ((b"\xff\xd8\xff", "JPEG", "Huffman/DCT"), (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000", "wavelet"),
                (b"\xff\x4f\xff\x51", "JPEG 2000", "wavelet"), (b"GIF8", "GIF", "LZW"))


def _decode(data: bytes) -> np.ndarray:
    """Pixels [H, W, 1|3] of an encoded image, by its signature."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return _decode_png(data)
    if data.startswith(b"BM"):
        return _decode_bmp(data)
    if _PNM_HEADER.match(data):
        return _decode_pnm(data)
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _decode_tiff(data)
    for magic, name, codec in _UNSUPPORTED:
        if data.startswith(magic):
            raise UnsupportedOpError(f"{name} images are not supported: decoding them needs the {codec} codec, "
                                     f"which webinfer does not include ({_SUPPORTED})")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        raise UnsupportedOpError(f"WebP images are not supported: decoding them needs the VP8 codec, which webinfer "
                                 f"does not include ({_SUPPORTED})")
    raise _Corrupt(f"unrecognised image format (first bytes {data[:8]!r}); {_SUPPORTED} supported")


_GREY_WEIGHTS = np.array([19595, 38470, 7471], dtype=np.int64)  # ITU-R 601 luma in 16-bit fixed point


def _to_format(pixels: np.ndarray, fmt: str) -> np.ndarray:
    if fmt == "Grayscale":
        if pixels.shape[-1] == 1:
            return pixels
        return ((pixels.astype(np.int64) @ _GREY_WEIGHTS + 0x8000) >> 16).astype(np.uint8)[..., None]
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return np.ascontiguousarray(pixels[..., ::-1] if fmt == "BGR" else pixels)


def decode_image(data: bytes, pixel_format: str = "RGB") -> np.ndarray:
    """What ImageDecoder computes: the uint8 pixels of an encoded image, [H, W, 3] for "RGB" and "BGR",
    [H, W, 1] for "Grayscale".  Corrupt data raises InputError (a ValueError), formats webinfer has no
    codec for UnsupportedOpError."""
    try:
        pixels = _decode(data)
    except (struct.error, ValueError, IndexError) as e:
        if isinstance(e, InputError):
            raise
        raise _Corrupt(f"corrupt image data ({type(e).__name__}: {e})") from None
    return _to_format(pixels, pixel_format)


def _rule(ctx: InferContext) -> list[Type | None]:
    fmt = ctx.attr("pixel_format", "RGB")
    if fmt not in ("RGB", "BGR", "Grayscale"):
        raise ctx.error(f"pixel_format must be RGB, BGR or Grayscale, got {fmt!r}")
    if ctx.elem(0) not in (None, dtypes.UINT8):
        raise ctx.error(f"encoded_stream must be uint8, got {dtypes.type_name(ctx.elem(0))}")
    shape = ctx.shape(0)
    if shape is not None and len(shape) != 1:
        raise ctx.error(f"encoded_stream must be 1-D, got {shape_str(shape)}")
    return [tensor(dtypes.UINT8, [None, None, 1 if fmt == "Grayscale" else 3])]


@op("ImageDecoder", since=20, infer=_rule)
def image_decoder(ctx: OpContext) -> Callable[[np.ndarray], tuple[np.ndarray]]:
    """Decodes one encoded image (a 1-D uint8 tensor) to [H, W, 3] RGB/BGR or [H, W, 1] grey."""
    fmt = ctx.attr("pixel_format", "RGB")

    def run(encoded: np.ndarray) -> tuple[np.ndarray]:
        return (decode_image(encoded.tobytes(), fmt),)

    return run
