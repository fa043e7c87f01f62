"""The ai.onnx.ml domain: TreeEnsemble, LabelEncoder, ArrayFeatureExtractor, Binarizer, ..."""

from __future__ import annotations
