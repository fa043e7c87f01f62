"""Normalizations: BatchNormalization, LayerNormalization, GroupNormalization, RMSNormalization, InstanceNormalization, LRN, ..."""

from __future__ import annotations
