"""The ai.onnx.preview.training domain: Adagrad, Adam, Momentum."""

from __future__ import annotations
