"""Sequences and optionals: Sequence*, SplitToSequence, ConcatFromSequence, Optional*."""

from __future__ import annotations
