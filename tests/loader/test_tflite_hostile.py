"""Malformed .tflite files: truncated, offsets out of range, tables pointing back at their parents, byte
flips.  Each must end in a webinfer error (ModelLoadError for a broken flatbuffer) naming what is wrong,
never an IndexError/struct.error from deep inside the reader, a huge allocation or a hang."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import webinfer
from webinfer.errors import ModelLoadError, WebinferError
from webinfer.loader import flatbuffer
from webinfer.loader import tflite_schema as S

pytest.importorskip("ai_edge_litert.schema_py_generated", reason="the test files are built with LiteRT's schema")
from tests.loader.tflite_files import Op, Spec, build, options  # noqa: E402

F32 = np.float32


def small_model() -> bytes:
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 2)).astype(np.float16)
    return build(Spec({"x": ([1, 5, 5, 2], F32)}, {"y": ([1, 5, 5, 4], F32)},
                      [Op("DEQUANTIZE", ["w16"], ["w"]),
                       Op("CONV_2D", ["x", "w", "b"], ["y"], options("Conv2DOptions", padding=0, strideW=1,
                                                                      strideH=1, fusedActivationFunction=1))],
                      {"w16": w, "b": np.ones(4, F32)}, intermediates={"w": ([4, 3, 3, 2], F32)}))


def field_pos(table: flatbuffer.Table, slot: int) -> int:
    """Where field `slot` of `table` is stored in the file."""
    return table._field(slot)


def patch_u32(data: bytes, pos: int, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<I", out, pos, value & 0xFFFFFFFF)
    return bytes(out)


def test_the_model_loads_and_runs() -> None:
    session = webinfer.InferenceSession(small_model())
    y = session.run(None, {"x": np.ones((1, 5, 5, 2), F32)})[0]
    assert y.shape == (1, 5, 5, 4) and np.isfinite(y).all()


def test_truncated_files_raise_model_load_error() -> None:
    data = small_model()
    failures = 0
    for cut in range(0, len(data), max(1, len(data) // 97)):
        try:
            webinfer.InferenceSession(data[:cut])
        except ModelLoadError:
            failures += 1
        except WebinferError as e:
            pytest.fail(f"cut at {cut}: {type(e).__name__} instead of ModelLoadError: {e}")
    assert failures >= 90


def test_tiny_prefixes_are_not_mistaken() -> None:
    for data in (b"", b"\x00" * 4, b"\x00\x00\x00\x00TFL3"):
        with pytest.raises(ModelLoadError):
            webinfer.InferenceSession(data)


def test_root_offset_out_of_range() -> None:
    data = patch_u32(small_model(), 0, 0xFFFFFFF0)
    with pytest.raises(ModelLoadError, match="outside the .*-byte file"):
        webinfer.InferenceSession(data)


def test_vector_length_out_of_range() -> None:
    """A huge element count is refused before anything is allocated."""
    data = small_model()
    root = flatbuffer.Buffer(data).root()
    pos = field_pos(root, S.MODEL_BUFFERS)
    target = pos + struct.unpack_from("<I", data, pos)[0]
    with pytest.raises(ModelLoadError, match="buffers .*outside"):
        webinfer.InferenceSession(patch_u32(data, target, 0x3FFFFFFF))


def test_tensor_buffer_index_out_of_range() -> None:
    data = small_model()
    buf = flatbuffer.Buffer(data)
    sub = buf.root().tables(S.MODEL_SUBGRAPHS, "subgraphs")[0]
    tensors = sub.tables(S.SUBGRAPH_TENSORS, "tensors")
    w16 = next(t for t in tensors if t.string(S.TENSOR_NAME, "name") == "w16")
    with pytest.raises(ModelLoadError, match="refers to buffer 999"):
        webinfer.InferenceSession(patch_u32(data, field_pos(w16, S.TENSOR_BUFFER), 999))


def test_cyclic_table_reference() -> None:
    """The subgraph's first operator points back at the subgraph itself: read as an operator, its
    fields are offsets, not indices, and the reader says so instead of looping or crashing."""
    data = small_model()
    buf = flatbuffer.Buffer(data)
    sub = buf.root().tables(S.MODEL_SUBGRAPHS, "subgraphs")[0]
    pos = field_pos(sub, S.SUBGRAPH_OPERATORS)
    vector = pos + struct.unpack_from("<I", data, pos)[0]
    first = vector + 4
    with pytest.raises(ModelLoadError):
        webinfer.InferenceSession(patch_u32(data, first, sub.pos - first))


def test_self_referencing_vtable() -> None:
    """A table whose vtable offset is 0 (its vtable would be itself) is refused."""
    data = small_model()
    root_pos = struct.unpack_from("<I", data, 0)[0]
    with pytest.raises(ModelLoadError, match="vtable"):
        webinfer.InferenceSession(patch_u32(data, root_pos, 0))


def test_table_visit_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file making the reader visit more tables than the budget stops with an error saying so."""
    monkeypatch.setattr(flatbuffer, "MAX_TABLES", 5)
    with pytest.raises(ModelLoadError, match="cyclic"):
        webinfer.InferenceSession(small_model())


def test_byte_flips_end_in_webinfer_errors() -> None:
    """Seeded single-byte corruptions: each loads (a flip in a float weight is still a model) or raises
    a webinfer error; none escapes as a Python or numpy exception."""
    data = small_model()
    rng = np.random.default_rng(1)
    for _ in range(300):
        corrupt = bytearray(data)
        corrupt[int(rng.integers(8, len(data)))] = int(rng.integers(0, 256))
        try:
            webinfer.InferenceSession(bytes(corrupt))
        except WebinferError:
            pass
