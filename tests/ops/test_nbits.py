"""com.microsoft.MatMulNBits against onnxruntime on random packed weights.

Tolerance: webinfer dequantizes W exactly ((q - zp) * scale is one float32 rounding) and
multiplies in float32; onnxruntime's blocked kernels sum in another order: rtol/atol 1e-4
relative to outputs of magnitude ~1-10 (float16 A: 2e-2, A's own precision).
"""

from __future__ import annotations

import numpy as np
import pytest

from webinfer.errors import WebinferError

from .contrib_util import one_node, run_ours

RNG = np.random.default_rng(4)


@pytest.fixture(autouse=True)
def _same_data_in_any_order() -> None:
    """Each test draws the same data however the tests are ordered or split between workers."""
    global RNG
    RNG = np.random.default_rng(4)


def _pack(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack values (< 2**bits) along the last axis, low bits first, as onnxruntime stores them."""
    per = 8 // bits
    pad = (-values.shape[-1]) % per
    v = np.concatenate([values, np.zeros(values.shape[:-1] + (pad,), values.dtype)], axis=-1).astype(np.uint8)
    v = v.reshape(values.shape[:-1] + (-1, per))
    return np.bitwise_or.reduce(v << (np.arange(per, dtype=np.uint8) * bits), axis=-1).astype(np.uint8)


def _case(k: int, n: int, bits: int, block: int, zp: str, dtype: type = np.float32,
          bias: bool = False) -> tuple[dict, dict, list[str]]:
    blocks = -(-k // block)
    q = RNG.integers(0, 1 << bits, (n, blocks, block))
    q[:, -1, k - (blocks - 1) * block:] = 0  # the padding past K
    init = {"B": _pack(q, bits), "scales": RNG.uniform(0.01, 0.1, (n, blocks)).astype(dtype)}
    names = ["A", "B", "scales"]
    if zp == "packed":
        init["zp"] = _pack(RNG.integers(0, 1 << bits, (n, blocks)), bits)
        names.append("zp")
    elif zp == "float":
        init["zp"] = RNG.uniform(0, (1 << bits) - 1, (n, blocks)).astype(dtype)
        names.append("zp")
    else:
        names.append("")
    names.append("")  # g_idx
    if bias:
        init["bias"] = RNG.normal(0, 1, n).astype(dtype)
        names.append("bias")
    while names[-1] == "":
        names.pop()
    feed = {"A": RNG.normal(0, 1, (2, 3, k)).astype(dtype)}
    return feed, init, names


@pytest.mark.parametrize("bits,zp", [(4, "none"), (4, "packed"), (4, "float"), (8, "none"), (8, "packed"), (2, "none"),
                                     (2, "packed")])
@pytest.mark.parametrize("k,n,block", [(64, 24, 32), (100, 17, 16), (96, 5, 64)])
def test_matmul_nbits(bits: int, k: int, n: int, block: int, zp: str) -> None:
    """(onnxruntime's CPU kernel refuses 8-bit weights with float zero points.)"""
    feed, init, names = _case(k, n, bits, block, zp, bias=True)
    ours, ref = one_node("MatMulNBits", feed, init, names, K=k, N=n, bits=bits, block_size=block)
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-4, atol=1e-4)


def test_matmul_nbits_float16() -> None:
    feed, init, names = _case(128, 33, 4, 32, "packed", np.float16)
    ours, ref = one_node("MatMulNBits", feed, init, names, K=128, N=33, bits=4, block_size=32)
    assert ours[0].dtype == np.float16
    np.testing.assert_allclose(ours[0].astype(np.float32), ref[0].astype(np.float32), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("level", [0, 1, 4])
def test_matmul_nbits_accuracy_level(level: int) -> None:
    """accuracy_level 4 lets onnxruntime quantize A to int8 blocks: ~1% relative error there."""
    feed, init, names = _case(128, 40, 4, 32, "packed")
    ours, ref = one_node("MatMulNBits", feed, init, names, K=128, N=40, bits=4, block_size=32,
                         accuracy_level=level)
    tol = 3e-2 if level == 4 else 1e-4
    np.testing.assert_allclose(ours[0], ref[0], rtol=tol, atol=tol * np.abs(ref[0]).max())


def test_matmul_nbits_errors() -> None:
    feed, init, names = _case(64, 8, 4, 32, "packed")
    with pytest.raises(WebinferError, match=r"MatMulNBits node 'n'.*B has shape \[8,2,16\], expected .*\[8, 4, 8\]"):
        run_ours("MatMulNBits", feed, init, names, K=64, N=8, bits=4, block_size=16)
    with pytest.raises(WebinferError, match=r"block_size must be a power of two >= 16, got 24"):
        run_ours("MatMulNBits", feed, init, names, K=64, N=8, bits=4, block_size=24)
    with pytest.raises(WebinferError, match=r"bits must be 2, 4 or 8, got 3"):
        run_ours("MatMulNBits", feed, init, names, K=64, N=8, bits=3, block_size=32)
    init["g_idx"] = (np.arange(64) // 32).astype(np.int32)
    with pytest.raises(WebinferError, match=r"g_idx input .* is not supported"):
        run_ours("MatMulNBits", feed, init, names + ["g_idx"], K=64, N=8, bits=4, block_size=32)
