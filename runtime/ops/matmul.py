"""Matrix products: MatMul, Gemm, Einsum, Det, integer and quantized matmuls."""

from __future__ import annotations
