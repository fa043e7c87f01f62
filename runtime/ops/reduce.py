"""Reductions and softmax: Reduce*, ArgMax/ArgMin, Softmax, LogSoftmax, Hardmax, losses."""

from __future__ import annotations
