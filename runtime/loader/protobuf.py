"""A minimal protobuf wire-format decoder.

The runtime must import inside Pyodide, where neither `onnx` nor `protobuf`
is available, so ONNX files are decoded here from the wire format directly.
Only what ONNX needs is supported: varints, fixed32/64 and length-delimited
fields, packed or unpacked repeated scalars.  Length-delimited payloads are
returned as `memoryview` slices of the input, so tensor bytes are never
copied while decoding.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Iterator

from ..errors import ModelLoadError

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5
_UINT64_MASK = (1 << 64) - 1

#: Deepest message nesting decoded (protobuf's own parsers stop at 100 too):
#: a hostile file nests If bodies or sequence types until the stack overflows.
MAX_DEPTH = 100

#: The wire types each field kind may arrive in (repeated scalars packed or not).
_WIRE_TYPES: dict[str, tuple[int, ...]] = {
    "int": (VARINT,), "uint": (VARINT,), "float": (FIXED32,), "double": (FIXED64,),
    "bytes": (LEN,), "str": (LEN,), "message": (LEN,), "message_list": (LEN,),
    "int_list": (VARINT, LEN), "uint_list": (VARINT, LEN), "float_list": (FIXED32, LEN),
    "double_list": (FIXED64, LEN), "bytes_list": (LEN,), "str_list": (LEN,),
}
_WIRE_NAMES = {VARINT: "varint", FIXED64: "fixed64", LEN: "length-delimited", FIXED32: "fixed32"}


def read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    """Decode one unsigned varint at `pos`; return (value, next position)."""
    if pos >= len(buf):
        raise ModelLoadError("truncated protobuf data (a value is cut off at the end)")
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    pos += 1
    while True:
        if pos >= len(buf):
            raise ModelLoadError("truncated varint in protobuf data")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _UINT64_MASK, pos  # bits past 64 are dropped, as protobuf does
        shift += 7
        if shift > 70:
            raise ModelLoadError("varint longer than 10 bytes in protobuf data")


def to_signed64(value: int) -> int:
    """Reinterpret an unsigned 64-bit varint as two's-complement int64."""
    return value - (1 << 64) if value >= (1 << 63) else value


def iter_fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield (field number, wire type, raw value) for every field in `buf`.

    Varints are yielded as unsigned ints, fixed32/fixed64 as 4/8-byte
    memoryviews and length-delimited fields as memoryviews.  The value is
    typed Any: which of the two it is follows from the wire type, which the
    callers check against the field's kind first.
    """
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == VARINT:
            value: int | memoryview
            value, pos = read_varint(buf, pos)
        elif wire == LEN:
            size, pos = read_varint(buf, pos)
            if pos + size > end:
                raise ModelLoadError(
                    f"protobuf field {field} claims {size} bytes but only {end - pos} remain "
                    "(truncated or corrupt file)"
                )
            value = buf[pos:pos + size]
            pos += size
        elif wire == FIXED32:
            value = buf[pos:pos + 4]
            pos += 4
        elif wire == FIXED64:
            value = buf[pos:pos + 8]
            pos += 8
        else:
            raise ModelLoadError(f"unsupported protobuf wire type {wire} for field {field}")
        if pos > end:
            raise ModelLoadError("truncated protobuf message")
        if field == 0:
            raise ModelLoadError("protobuf field number 0 is invalid (not an ONNX file?)")
        yield field, wire, value


def unpack_varints(buf: memoryview) -> list[int]:
    """Decode a packed run of varints (e.g. repeated int64)."""
    out = []
    pos, end = 0, len(buf)
    while pos < end:
        value, pos = read_varint(buf, pos)
        out.append(value)
    return out


@dataclass(frozen=True)
class Field:
    """Schema of one message field: its name and how to decode it.

    kind is one of: "int" (signed int64 varint), "uint", "float", "double",
    "bytes", "str", "message" (decoded with `message`), "int_list",
    "float_list", "double_list", "uint_list", "bytes_list", "str_list",
    "message_list".
    """

    name: str
    kind: str
    message: "Schema | None" = None

    @property
    def nested(self) -> "Schema":
        """The schema a "message"/"message_list" field decodes with (declaring one is the table's job)."""
        if self.message is None:
            raise AssertionError(f"field {self.name} ({self.kind}) declares no message schema")
        return self.message


Schema = dict[int, Field]


def _scalar(kind: str, wire: int, value: Any) -> object:
    if kind in ("int", "uint"):
        return to_signed64(value) if kind == "int" else value
    if kind == "float":
        return struct.unpack("<f", value)[0]
    if kind == "double":
        return struct.unpack("<d", value)[0]
    if kind == "bytes":
        return value
    if kind == "str":
        return bytes(value).decode("utf-8")
    raise AssertionError(kind)


def _extend_list(out: list[Any], kind: str, wire: int, value: Any) -> None:
    if kind == "int_list" or kind == "uint_list":
        vals = unpack_varints(value) if wire == LEN else [value]
        if kind == "int_list":
            vals = [to_signed64(v) for v in vals]
        out.extend(vals)
    elif kind == "float_list":
        if wire == LEN:
            out.extend(struct.unpack(f"<{len(value) // 4}f", value))
        else:
            out.append(struct.unpack("<f", value)[0])
    elif kind == "double_list":
        if wire == LEN:
            out.extend(struct.unpack(f"<{len(value) // 8}d", value))
        else:
            out.append(struct.unpack("<d", value)[0])
    elif kind == "bytes_list":
        out.append(bytes(value))
    elif kind == "str_list":
        out.append(bytes(value).decode("utf-8"))
    else:
        raise AssertionError(kind)


def decode(buf: memoryview, schema: Schema, what: str, depth: int = 0) -> dict[str, Any]:
    """Decode a message into a dict keyed by field name.

    Unknown fields are skipped (forward compatibility, as protobuf does).
    Repeated fields are always present as lists, so callers never special-case
    absence.  A known field in a wire type its kind cannot take (a string
    stored as a varint would otherwise read as a length to allocate) and
    nesting deeper than `MAX_DEPTH` are errors.  Errors name the message
    being decoded.
    """
    if depth > MAX_DEPTH:
        raise ModelLoadError(f"in {what}: messages nested more than {MAX_DEPTH} deep")
    msg: dict[str, Any] = {}
    for listed in schema.values():
        if listed.kind.endswith("_list"):
            msg[listed.name] = []
    try:
        for number, wire, value in iter_fields(buf):
            f = schema.get(number)
            if f is None:
                continue
            kind = f.kind
            if wire not in _WIRE_TYPES[kind]:
                raise ModelLoadError(
                    f"field {number} ({f.name}) is stored as {_WIRE_NAMES.get(wire, wire)}, expected "
                    f"{' or '.join(_WIRE_NAMES[w] for w in _WIRE_TYPES[kind])}")
            if kind == "message":
                msg[f.name] = decode(value, f.nested, f.name, depth + 1)
            elif kind == "message_list":
                msg[f.name].append(decode(value, f.nested, f.name, depth + 1))
            elif kind.endswith("_list"):
                _extend_list(msg[f.name], kind, wire, value)
            else:
                msg[f.name] = _scalar(kind, wire, value)
    except ModelLoadError as e:
        if what and not str(e).startswith("in "):
            raise ModelLoadError(f"in {what}: {e}") from None
        raise
    except (struct.error, UnicodeDecodeError, IndexError) as e:
        raise ModelLoadError(f"in {what}: malformed protobuf data ({e})") from None
    return msg

