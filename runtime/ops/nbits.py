"""onnxruntime's MatMulNBits (com.microsoft): A @ W with W stored as 2-8 bit blocks along K.

transformers.js ships such files as `model_q4.onnx` and `model_q4f16.onnx`, and
onnxruntime's `MatMulNBitsQuantizer` writes them.  W is constant in every such file,
so it is dequantized once at load into a float32 [K, N] matrix and the node runs as a
plain GEMM (gemm.py); the output keeps A's dtype (float16 for q4f16).  `accuracy_level`
is accepted: it only lets onnxruntime quantize A internally, which webinfer does not
do (its float32 product is the more accurate one).
"""

from __future__ import annotations

import numpy as np

from .. import dtypes, gemm
from ..errors import UnsupportedOpError
from ..ir import Type
from ..shapes import InferContext, dims_compatible, shape_str, tensor
from .registry import Kernel, OpContext, op

MS = "com.microsoft"


def _attrs(ctx: InferContext | OpContext) -> tuple[int, int, int, int]:
    """(K, N, bits, block_size), checked."""
    k, n = int(ctx.attr("K")), int(ctx.attr("N"))
    bits, block = int(ctx.attr("bits", 4)), int(ctx.attr("block_size"))
    if k < 1 or n < 1:
        raise ctx.error(f"K and N must be positive, got K={k}, N={n}")
    if bits not in (2, 4, 8):
        raise ctx.error(f"bits must be 2, 4 or 8, got {bits}")
    if block < 16 or block & (block - 1):
        raise ctx.error(f"block_size must be a power of two >= 16, got {block}")
    prepacked = int(ctx.attr("weight_prepacked", 0))
    if prepacked:
        raise ctx.error(f"weight_prepacked={prepacked} is a CUDA-specific layout; only 0 is supported")
    return k, n, bits, block


def _rule(ctx: InferContext) -> list[Type | None]:
    k, n, bits, block = _attrs(ctx)
    blocks = -(-k // block)
    a, b = ctx.shape(0), ctx.shape(1)
    if ctx.elem(1) not in (None, dtypes.UINT8):
        raise ctx.error(f"B must be uint8 (packed), got {dtypes.type_name(ctx.elem(1))}")
    if ctx.elem(0) not in (None, dtypes.FLOAT, dtypes.FLOAT16):
        raise ctx.error(f"A must be float or float16, got {dtypes.type_name(ctx.elem(0))}")
    if b is not None and not (len(b) == 3 and all(dims_compatible(d, e) for d, e in
                                                  zip(b, (n, blocks, block * bits // 8)))):
        raise ctx.error(f"B has shape {shape_str(b)}, expected [N, k_blocks, blob_size] = "
                        f"[{n}, {blocks}, {block * bits // 8}] for K={k}, N={n}, bits={bits}, block_size={block}")
    if a is None:
        return [tensor(ctx.elem(0))]
    if not a or not dims_compatible(a[-1], k):
        raise ctx.error(f"A {shape_str(a)} must have last dimension K={k}")
    return [tensor(ctx.elem(0), tuple(a[:-1]) + (n,))]


def unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The first `count` values along the last axis of bit-packed uint8 bytes, low bits first."""
    per = 8 // bits
    mask = (1 << bits) - 1
    shifts = np.arange(per, dtype=np.uint8) * bits
    values = (packed[..., None] >> shifts) & mask
    return values.reshape(packed.shape[:-1] + (packed.shape[-1] * per,))[..., :count]


def dequantize_weights(ctx: OpContext, b: np.ndarray, scales: np.ndarray, zp: np.ndarray | None,
                       k: int, n: int, bits: int, block: int) -> np.ndarray:
    """W as float32 [K, N]: (q - zero_point) * scale per block of K."""
    blocks = -(-k // block)
    if b.shape != (n, blocks, block * bits // 8):
        raise ctx.error(f"B has shape {list(b.shape)}, expected [{n}, {blocks}, {block * bits // 8}]")
    q = unpack(b, bits, block).reshape(n, blocks * block)[:, :k].astype(np.float32)
    if scales.size != n * blocks:
        raise ctx.error(f"scales has shape {list(scales.shape)}, expected [{n}, {blocks}] (N, k_blocks)")
    s = scales.reshape(n, blocks).astype(np.float32)
    if zp is None:
        z = np.full((n, blocks), float(1 << (bits - 1)), np.float32)
    elif zp.dtype == np.uint8:
        width = -(-blocks * bits // 8)
        if zp.size != n * width:
            raise ctx.error(f"zero_points has shape {list(zp.shape)}, expected packed [{n}, {width}]")
        z = unpack(zp.reshape(n, width), bits, blocks).astype(np.float32)
    else:
        if zp.size != n * blocks:
            raise ctx.error(f"zero_points has shape {list(zp.shape)}, expected [{n}, {blocks}]")
        z = zp.reshape(n, blocks).astype(np.float32)
    group = np.arange(k) // block
    w = (q - z[:, group]) * s[:, group]
    return np.ascontiguousarray(w.T)


@op("MatMulNBits", since=1, domain=MS, infer=_rule)
def matmul_nbits(ctx: OpContext) -> Kernel:
    """Y = A @ dequantize(B) (+ bias); W dequantized once at load when B, scales, zero points and
    g_idx are constants (always, in exported files), else per call."""
    k, n, bits, block = _attrs(ctx)
    level = int(ctx.attr("accuracy_level", 0))
    if level not in range(5):
        raise ctx.error(f"accuracy_level must be 0..4, got {level}")
    if len(ctx.node.inputs) > 4 and ctx.node.inputs[4]:
        raise ctx.error("the deprecated g_idx input (act-order groups) is not supported; re-export without it",
                        UnsupportedOpError)
    present = [i for i in range(1, min(len(ctx.node.inputs), 4)) if ctx.node.inputs[i]]
    #: W [K, N], made at load from the constant weights
    loaded = None
    if all(ctx.const(i) is not None for i in present):
        loaded = dequantize_weights(ctx, ctx.const(1), ctx.const(2), ctx.const(3), k, n, bits, block)

    def run(a: np.ndarray, b: np.ndarray, scales: np.ndarray, zp: np.ndarray | None = None,
            g_idx: np.ndarray | None = None, bias: np.ndarray | None = None) -> tuple[np.ndarray]:
        if a.ndim < 1 or a.shape[-1] != k:
            raise ctx.error(f"A {list(a.shape)} must have last dimension K={k}")
        w = loaded if loaded is not None else dequantize_weights(ctx, b, scales, zp, k, n, bits, block)
        rows = a.reshape(-1, k).astype(np.float32, copy=False)
        y = gemm.matmul(rows, w)
        if bias is not None:
            if bias.shape != (n,):
                raise ctx.error(f"bias has shape {list(bias.shape)}, expected [{n}]")
            y += bias.astype(np.float32, copy=False)
        return (y.reshape(a.shape[:-1] + (n,)).astype(a.dtype, copy=False),)

    return run
