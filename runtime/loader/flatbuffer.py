"""A small, bounds-checked flatbuffer reader (the wire format of `.tflite` files).

Reading is driven by the caller's schema (which field slot holds what), so
the reader only has to make every offset safe: each table, vtable, vector
and string is checked to lie inside the buffer before a byte of it is read,
and the number of tables visited is capped, so a malformed or hostile file
(truncated, offsets out of range, tables pointing back at themselves) ends in
a `ModelLoadError` instead of an IndexError, a huge allocation or a hang.
numpy-only, so it runs inside Pyodide.
"""

from __future__ import annotations

import struct

import numpy as np

from ..errors import ModelLoadError

#: Tables a single file may make the reader visit: far above any real model
#: (MediaPipe's largest has ~1,500), low enough that a cyclic or exploding file stops quickly.
MAX_TABLES = 5_000_000


class Buffer:
    """The file's bytes plus a visit budget shared by every table read from them."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = bytes(data) if not isinstance(data, bytes) else data
        self.size = len(self.data)
        self.visits = 0

    def check(self, pos: int, length: int, what: str) -> None:
        """Raise unless bytes [pos, pos+length) lie inside the file."""
        if pos < 0 or length < 0 or pos + length > self.size:
            raise ModelLoadError(f"malformed flatbuffer: {what} at offset {pos} (+{length} bytes) lies outside "
                                 f"the {self.size}-byte file (truncated or corrupt .tflite?)")

    def u32(self, pos: int, what: str) -> int:
        self.check(pos, 4, what)
        return struct.unpack_from("<I", self.data, pos)[0]

    def i32(self, pos: int, what: str) -> int:
        self.check(pos, 4, what)
        return struct.unpack_from("<i", self.data, pos)[0]

    def root(self, what: str = "root table") -> "Table":
        """The root table: the first uoffset of the file."""
        return self.table_at(self.u32(0, what), what)

    def table_at(self, pos: int, what: str) -> "Table":
        self.visits += 1
        if self.visits > MAX_TABLES:
            raise ModelLoadError(f"malformed flatbuffer: more than {MAX_TABLES} tables visited "
                                 f"(cyclic references?) while reading {what}")
        return Table(self, pos, what)


class Table:
    """One flatbuffer table: field slots read through its vtable, each checked against the buffer."""

    __slots__ = ("buf", "pos", "what", "_vt", "_vt_len")

    def __init__(self, buf: Buffer, pos: int, what: str) -> None:
        self.buf, self.pos, self.what = buf, pos, what
        vt = pos - buf.i32(pos, f"{what} vtable offset")
        buf.check(vt, 4, f"{what} vtable")
        vt_len, obj_len = struct.unpack_from("<HH", buf.data, vt)
        if vt_len < 4 or vt_len % 2:
            raise ModelLoadError(f"malformed flatbuffer: {what} has a vtable of {vt_len} bytes")
        buf.check(vt, vt_len, f"{what} vtable")
        buf.check(pos, max(obj_len, 4), f"{what} table")
        self._vt, self._vt_len = vt, vt_len

    def _field(self, slot: int) -> int:
        """Absolute position of field `slot`, or 0 when the field is absent (default)."""
        at = 4 + 2 * slot
        if at >= self._vt_len:
            return 0
        off = struct.unpack_from("<H", self.buf.data, self._vt + at)[0]
        return self.pos + off if off else 0

    def scalar(self, slot: int, fmt: str, default: float | int | bool = 0) -> float | int | bool:
        """A scalar field (struct format `fmt`, e.g. 'b', 'i', 'f', '?'), or its schema default."""
        p = self._field(slot)
        if not p:
            return default
        self.buf.check(p, struct.calcsize(fmt), f"{self.what} field {slot}")
        return struct.unpack_from("<" + fmt, self.buf.data, p)[0]

    def _target(self, slot: int) -> int:
        """Where the uoffset in field `slot` points, or 0 when absent."""
        p = self._field(slot)
        if not p:
            return 0
        return p + self.buf.u32(p, f"{self.what} field {slot}")

    def table(self, slot: int, what: str) -> "Table | None":
        t = self._target(slot)
        return self.buf.table_at(t, f"{self.what}.{what}") if t else None

    def _vector(self, slot: int, item_size: int, what: str) -> tuple[int, int] | None:
        """(start, count) of the vector in field `slot`, checked to fit in the file."""
        t = self._target(slot)
        if not t:
            return None
        count = self.buf.u32(t, f"{self.what}.{what} length")
        self.buf.check(t + 4, count * item_size, f"{self.what}.{what} ({count} items)")
        return t + 4, count

    def tables(self, slot: int, what: str) -> list["Table"]:
        """A vector of tables (empty when absent)."""
        v = self._vector(slot, 4, what)
        if v is None:
            return []
        start, count = v
        return [self.buf.table_at(p + self.buf.u32(p, what), f"{self.what}.{what}[{i}]")
                for i, p in enumerate(range(start, start + 4 * count, 4))]

    def array(self, slot: int, dtype: str, what: str) -> np.ndarray | None:
        """A vector of scalars as a read-only numpy view of the file (None when absent)."""
        dt = np.dtype(dtype).newbyteorder("<")
        v = self._vector(slot, dt.itemsize, what)
        if v is None:
            return None
        start, count = v
        return np.frombuffer(self.buf.data, dt, count, start)

    def ints(self, slot: int, what: str, dtype: str = "i4") -> list[int]:
        """A vector of integers as a list (empty when absent)."""
        a = self.array(slot, dtype, what)
        return [] if a is None else [int(x) for x in a]

    def bytes(self, slot: int, what: str) -> memoryview | None:
        """A [ubyte] vector as a zero-copy view (None when absent)."""
        v = self._vector(slot, 1, what)
        if v is None:
            return None
        start, count = v
        return memoryview(self.buf.data)[start:start + count]

    def string(self, slot: int, what: str) -> str:
        raw = self.bytes(slot, what)
        return "" if raw is None else bytes(raw).decode("utf-8", "replace")
