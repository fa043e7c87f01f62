"""Random ops: RandomNormal/Uniform(Like), Bernoulli, Multinomial, Dropout.

Each node owns one generator, made when the session is built, so
successive runs draw fresh values.  Its seed is the node's `seed`
attribute, else `SessionOptions.random_seed` (or the process seed that
`webinfer.set_seed` sets) mixed with the node's name (two unseeded nodes of
a seeded session draw different streams), else fresh entropy.  The generator is numpy's `RandomState`: with the same seed
it produces exactly what onnx's reference implementation does (its
conformance data for seeded Dropout included), and Pyodide's numpy has it.

None of these ops are folded at load.  bfloat16 outputs are produced as
float32 and rounded by the CPU device (the ops are not storage-aware).
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np

from .. import dtypes
from ..ir import Type
from ..shapes import InferContext, tensor
from ..environment import global_seed
from .registry import OpContext, op

_REAL = {dtypes.FLOAT, dtypes.FLOAT16, dtypes.DOUBLE, dtypes.BFLOAT16}


def generator(ctx: OpContext) -> np.random.RandomState:
    """The node's generator (see the module docstring for where its seed comes from)."""
    seed = ctx.attr("seed", None)
    if seed is not None:
        if not math.isfinite(seed):
            raise ctx.error(f"attribute 'seed' must be a finite number, got {seed}")
        return np.random.RandomState(int(seed) % (1 << 32))
    session_seed = getattr(ctx.options, "random_seed", None)
    if session_seed is None:
        session_seed = global_seed()
    if session_seed is not None:
        name = ctx.node.name or (ctx.node.outputs[0] if ctx.node.outputs else "")
        return np.random.RandomState([int(session_seed) % (1 << 32), zlib.crc32(name.encode())])
    return np.random.RandomState()


def _out_dtype(ctx: OpContext) -> np.dtype:
    """numpy dtype of output 0 as the kernel must produce it (float32 for bfloat16)."""
    return dtypes.storage_dtype(ctx.out_elem(0) or dtypes.FLOAT)


def _real_attr(ctx: InferContext, default: int | None) -> int | None:
    code = ctx.attr("dtype", default)
    if code is not None and code not in _REAL:
        raise ctx.error(f"dtype must be float, float16, double or bfloat16, got {dtypes.type_name(code)}")
    return code


# ------------------------------------------------------------------ generators

def _shape_attr(ctx: Any) -> list[int]:
    shape = list(ctx.attr("shape"))
    if any(d < 0 for d in shape):
        raise ctx.error(f"shape {shape} has negative dimensions")
    return shape


def _random_rule(ctx: InferContext) -> list[Type | None]:
    return [tensor(_real_attr(ctx, dtypes.FLOAT), _shape_attr(ctx))]


def _random_like_rule(ctx: InferContext) -> list[Type | None]:
    return [tensor(_real_attr(ctx, ctx.elem(0)), ctx.shape(0))]


def _normal(ctx: OpContext) -> Any:
    mean, scale = ctx.attr("mean", 0.0), ctx.attr("scale", 1.0)
    rng, dt = generator(ctx), _out_dtype(ctx)
    return lambda shape: (rng.normal(mean, scale, shape).astype(dt),)


def _uniform(ctx: OpContext) -> Any:
    low, high = ctx.attr("low", 0.0), ctx.attr("high", 1.0)
    if not low <= high:
        raise ctx.error(f"low ({low}) must not exceed high ({high})")
    rng, dt = generator(ctx), _out_dtype(ctx)
    return lambda shape: (rng.uniform(low, high, shape).astype(dt),)


@op("RandomNormal", since=1, infer=_random_rule, foldable=False)
def random_normal(ctx: OpContext) -> Any:
    """Samples of N(mean, scale**2) of the `shape` attribute."""
    draw, shape = _normal(ctx), tuple(_shape_attr(ctx))
    return lambda: draw(shape)


@op("RandomUniform", since=1, infer=_random_rule, foldable=False)
def random_uniform(ctx: OpContext) -> Any:
    """Samples of U[low, high) of the `shape` attribute."""
    draw, shape = _uniform(ctx), tuple(_shape_attr(ctx))
    return lambda: draw(shape)


@op("RandomNormalLike", since=1, infer=_random_like_rule, foldable=False)
def random_normal_like(ctx: OpContext) -> Any:
    """Samples of N(mean, scale**2) shaped like the input (whose values are not read)."""
    draw = _normal(ctx)
    return lambda x: draw(x.shape)


@op("RandomUniformLike", since=1, infer=_random_like_rule, foldable=False)
def random_uniform_like(ctx: OpContext) -> Any:
    """Samples of U[low, high) shaped like the input (whose values are not read)."""
    draw = _uniform(ctx)
    return lambda x: draw(x.shape)


# ------------------------------------------------------------------ Bernoulli, Multinomial

def _bernoulli_rule(ctx: InferContext) -> list[Type | None]:
    code = ctx.attr("dtype", ctx.elem(0))
    if code is not None and (code not in dtypes.ELEM_TYPES or code == dtypes.STRING):
        raise ctx.error(f"dtype {code} is not a numeric element type")
    return [tensor(code, ctx.shape(0))]


@op("Bernoulli", since=15, infer=_bernoulli_rule, foldable=False)
def bernoulli(ctx: OpContext) -> Any:
    """1 with probability p (the input), else 0, in the `dtype` attribute's type (default: p's)."""
    rng, dt = generator(ctx), _out_dtype(ctx)
    return lambda p: ((rng.random_sample(p.shape) < p).astype(dt),)


def _multinomial_rule(ctx: InferContext) -> list[Type | None]:
    code = ctx.attr("dtype", dtypes.INT32)
    if code not in (dtypes.INT32, dtypes.INT64):
        raise ctx.error(f"dtype must be int32 or int64, got {dtypes.type_name(code)}")
    n = ctx.attr("sample_size", 1)
    if n < 1:
        raise ctx.error(f"sample_size must be positive, got {n}")
    shape = ctx.shape(0)
    if shape is not None and len(shape) != 2:
        raise ctx.error(f"input must be [batch_size, class_size] log-probabilities, got shape {list(shape)}")
    return [tensor(code, (shape[0] if shape else None, n))]


@op("Multinomial", since=7, infer=_multinomial_rule, foldable=False)
def multinomial(ctx: OpContext) -> Any:
    """`sample_size` class indices per row, drawn from the softmax of the row's unnormalized
    log-probabilities.

    One searchsorted for the whole batch: row r's cumulative distribution is
    shifted to [r, r+1) and its uniform draws likewise.
    """
    rng, dt, n = generator(ctx), _out_dtype(ctx), ctx.attr("sample_size", 1)

    def run(logits: np.ndarray) -> tuple[np.ndarray]:
        batch, classes = logits.shape
        z = logits.astype(np.float64)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        cdf = np.cumsum(p, axis=1)
        cdf /= cdf[:, -1:]
        rows = np.arange(batch, dtype=np.float64)[:, None]
        idx = np.searchsorted((cdf + rows).ravel(), (rng.random_sample((batch, n)) + rows).ravel(), side="right")
        idx = idx.reshape(batch, n) - np.arange(batch)[:, None] * classes
        return (np.minimum(idx, classes - 1).astype(dt),)

    return run


# ------------------------------------------------------------------ Dropout

def _dropout_rule(ctx: InferContext) -> list[Type | None]:
    mask = dtypes.BOOL if ctx.opset >= 10 else ctx.elem(0)
    return [ctx.type(0), tensor(mask, ctx.shape(0))][:ctx.n_out]


@op("Dropout", since=1, infer=_dropout_rule, foldable=False)
def dropout(ctx: OpContext) -> Any:
    """Identity at inference (mask all true).  From opset 12, a true `training_mode` input
    zeroes each element with probability `ratio` and scales the rest by 1 / (1 - ratio)."""
    mask_dtype = np.bool_ if ctx.opset >= 10 else _out_dtype(ctx)
    want_mask = len(ctx.node.outputs) > 1 and ctx.node.outputs[1] != ""
    rng = generator(ctx) if ctx.opset >= 12 else None

    def run(x: np.ndarray, ratio: np.ndarray | None = None,
            training: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        r = 0.5 if ratio is None else float(ratio)
        if rng is None or training is None or not bool(training) or r == 0:
            return (x, np.ones(x.shape, dtype=mask_dtype)) if want_mask else (x,)
        if not 0 <= r < 1:
            raise ValueError(f"ratio must be in [0, 1), got {r}")
        keep = rng.uniform(0.0, 1.0, x.shape) >= r
        y = (x * keep * x.dtype.type(1.0 / (1.0 - r))).astype(x.dtype, copy=False)
        return (y, keep) if want_mask else (y,)

    return run
