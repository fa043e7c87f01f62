"""Pooling: Max/Average/Lp/Global pools, MaxUnpool, RoiAlign, MaxRoiPool."""

from __future__ import annotations
