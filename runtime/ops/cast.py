"""Type conversion: Cast, CastLike, BitCast."""

from __future__ import annotations
