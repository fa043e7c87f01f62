"""Resampling: Resize, Upsample, GridSample, AffineGrid."""

from __future__ import annotations
