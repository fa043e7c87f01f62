"""Attention and transformer blocks: Attention, RotaryEmbedding, ..."""

from __future__ import annotations
