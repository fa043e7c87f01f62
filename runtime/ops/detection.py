"""Detection: NonMaxSuppression."""

from __future__ import annotations
