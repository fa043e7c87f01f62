"""Hostile files found by fuzzing the reader: each fails fast with ModelLoadError.

Built byte by byte with tests/fuzz/mutate.py's encoder, so the files are
exactly what a fuzzer (or an attacker) writes, not what onnx would emit.
"""

from __future__ import annotations

import tracemalloc

import pytest

from tests.fuzz.mutate import msg
from webinfer.errors import ModelLoadError
from webinfer.loader import read_model

VARINT_FIELD_AS_TEXT = 1 << 30


def _model(graph: bytes) -> bytes:
    return msg((1, 8), (7, graph), (8, msg((2, 18))))


def _read_peak(data: bytes) -> tuple[str, int]:
    """The error message reading `data`, and the peak bytes allocated meanwhile."""
    tracemalloc.start()
    try:
        with pytest.raises(ModelLoadError) as info:
            read_model(data)
        return str(info.value), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_text_field_stored_as_number_allocates_nothing() -> None:
    # op_type (a string) written as the varint 2**30: bytes(2**30) used to allocate 1 GiB
    node = msg((1, "x"), (2, "y")) + b"\x20" + bytes([0x80, 0x80, 0x80, 0x80, 0x04])
    data = _model(msg((1, node), (2, "g")))
    assert len(data) < 67
    message, peak = _read_peak(data)
    assert "field 4 (op_type) is stored as varint, expected length-delimited" in message
    assert peak < 1 << 20


def test_repeated_scalars_take_their_own_wire_type_or_packed_only() -> None:
    one_float = b"\x25\0\0\x80?"  # float_data (field 4) as a single fixed32: valid protobuf
    model = read_model(_model(msg((5, msg((1, 1), (2, 1), (8, "t")) + one_float), (2, "g"))))
    assert model.graph.initializers["t"].array.tolist() == [1.0]
    dims_as_fixed32 = b"\x0d\0\0\0\0"
    with pytest.raises(ModelLoadError, match=r"field 1 \(dims\) is stored as fixed32"):
        read_model(_model(msg((5, msg((2, 1), (8, "t")) + dims_as_fixed32), (2, "g"))))


def _deep_type(depth: int) -> bytes:
    t = msg((1, msg((1, 1))))
    for _ in range(depth):
        t = msg((4, msg((1, t))))
    return _model(msg((11, msg((1, "x"), (2, t))), (2, "g")))


def test_deeply_nested_types_are_refused_before_the_stack_overflows() -> None:
    with pytest.raises(ModelLoadError, match="nested more than 100 deep"):
        read_model(_deep_type(3000))
    model = read_model(_deep_type(20))
    assert model.graph.inputs[0].name == "x"


def test_attribute_declared_graph_without_a_graph() -> None:
    node = msg((1, "c"), (2, "y"), (4, "If"), (5, msg((1, "then_branch"), (20, 5))))
    with pytest.raises(ModelLoadError, match="attribute 'then_branch' is declared GRAPH but holds no graph"):
        read_model(_model(msg((1, node), (2, "g"))))


def test_sparse_tensor_claiming_huge_dims_is_refused() -> None:
    values = msg((1, 1), (2, 1), (4, b"\0\0\x80?"), (8, "v"))
    sparse = msg((1, values), (2, msg((1, 1), (2, 7), (7, b"\0"))), (3, b"\xff\xff\xff\xff\x0f"))
    message, peak = _read_peak(_model(msg((15, sparse), (2, "g"))))
    assert "densify to more than 256 MiB" in message
    assert peak < 1 << 20


def test_varint_bits_past_64_are_dropped() -> None:
    # a 10-byte varint carries 70 bits: int64_data overflowed numpy's int64 (OverflowError)
    ten_bytes = bytes([0xFF] * 9 + [0x7F])
    tensor = msg((1, 1), (2, 7), (8, "t")) + b"\x38" + ten_bytes  # int64_data (field 7) = 2**64 - 1
    model = read_model(_model(msg((5, tensor), (2, "g"))))
    assert model.graph.initializers["t"].array.tolist() == [-1]


def test_negative_declared_dims_are_unknown() -> None:
    dims = msg((1, msg((1, 2**64 - 5))), (1, msg((1, 3))))  # dim_value -5, 3
    vi = msg((1, "x"), (2, msg((1, msg((1, 1), (2, dims))))))
    model = read_model(_model(msg((11, vi), (2, "g"))))
    assert model.graph.inputs[0].type.shape == (None, 3)
