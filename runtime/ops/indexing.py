"""Indexing, scatter and selection: Gather*, Scatter*, NonZero, Compress, Unique, TopK, CumSum, ..."""

from __future__ import annotations
