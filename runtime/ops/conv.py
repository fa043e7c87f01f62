"""Convolutions: Conv, ConvTranspose, DeformConv, Col2Im, ConvInteger."""

from __future__ import annotations
