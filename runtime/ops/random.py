"""Random ops: RandomNormal/Uniform(Like), Bernoulli, Multinomial, Dropout."""

from __future__ import annotations
