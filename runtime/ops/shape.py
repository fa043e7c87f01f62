"""Shapes and data movement: Reshape, Shape, Transpose, Concat, Split, Slice, Pad, Expand, Tile, Squeeze/Unsqueeze, Constant*, Range, ..."""

from __future__ import annotations
