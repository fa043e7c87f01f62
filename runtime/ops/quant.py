"""Quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinear* ops."""

from __future__ import annotations
