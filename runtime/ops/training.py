"""The ai.onnx.preview.training domain: the optimizers Adagrad, Adam and Momentum.

Each optimizer takes a learning rate R and a step count T (scalars), then n
tensors to optimise followed by their gradients and their n-tensor states
(in groups: X1..Xn, G1..Gn, S1..Sn, ...), and returns the new tensors
followed by the new states.  Scalar coefficients are computed once per
call in float64; array arithmetic stays in the tensors' dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import dtypes
from ..errors import ShapeInferenceError
from ..ir import Type
from ..shapes import InferContext, dims_compatible, shape_str, tensor
from .registry import OpContext, op

TRAINING = "ai.onnx.preview.training"

#: update(attrs, r, t, x, g, *states) -> (x_new, *states_new)
Update = Callable[..., tuple[np.ndarray, ...]]


def _adagrad(a: dict[str, Any], r: float, t: int, x: np.ndarray, g: np.ndarray,
             h: np.ndarray) -> tuple[np.ndarray, ...]:
    rate = r / (1 + t * a["decay_factor"])
    g = a["norm_coefficient"] * x + g
    h_new = h + g * g
    return x - rate * g / (np.sqrt(h_new) + a["epsilon"]), h_new


def _adam(a: dict[str, Any], r: float, t: int, x: np.ndarray, g: np.ndarray, v: np.ndarray,
          h: np.ndarray) -> tuple[np.ndarray, ...]:
    alpha, beta = a["alpha"], a["beta"]
    g = a["norm_coefficient"] * x + g
    v_new = alpha * v + (1 - alpha) * g
    h_new = beta * h + (1 - beta) * (g * g)
    rate = r * math.sqrt(1 - beta ** t) / (1 - alpha ** t) if t > 0 else r
    x_new = x - rate * (v_new / (np.sqrt(h_new) + a["epsilon"]))
    return (1 - a["norm_coefficient_post"]) * x_new, v_new, h_new


def _momentum(a: dict[str, Any], r: float, t: int, x: np.ndarray, g: np.ndarray,
              v: np.ndarray) -> tuple[np.ndarray, ...]:
    alpha = a["alpha"]
    g = a["norm_coefficient"] * x + g
    v_new = alpha * v + (a["beta"] if t > 0 else 1.0) * g
    if a["mode"] == "nesterov":
        return x - r * (g + alpha * v_new), v_new
    return x - r * v_new, v_new


@dataclass(frozen=True)
class Optimizer:
    update: Update
    #: Inputs per optimised tensor (X, G and the states).
    group: int
    #: Attribute defaults (None: required).
    attrs: dict[str, Any]


OPTIMIZERS = {
    "Adagrad": Optimizer(_adagrad, 3, {"decay_factor": 0.0, "epsilon": 1e-6, "norm_coefficient": 0.0}),
    "Adam": Optimizer(_adam, 4, {"alpha": 0.9, "beta": 0.999, "epsilon": 1e-6, "norm_coefficient": 0.0,
                                 "norm_coefficient_post": 0.0}),
    "Momentum": Optimizer(_momentum, 3, {"alpha": None, "beta": None, "mode": None, "norm_coefficient": None}),
}


def _count(n_in: int, n_out: int, group: int, where: str) -> int:
    """How many tensors a node optimises, checking its input/output counts."""
    n = (n_in - 2) // group
    if n < 1 or n_in != 2 + n * group or n_out != n * (group - 1):
        raise ShapeInferenceError(
            f"{where}expected R, T, then {group} groups of n tensors ({group - 1} groups of outputs); "
            f"got {n_in} inputs and {n_out} outputs")
    return n


def _source(j: int, i: int, n: int) -> int:
    """Which tensor input (after R and T) output group j, item i takes its type from:
    the optimised tensor for j = 0, else the state it replaces (group j + 1; group 1 is G)."""
    return i if j == 0 else (j + 1) * n + i


def _rule(spec: Optimizer) -> Callable[[InferContext], list[Type | None]]:
    def rule(ctx: InferContext) -> list[Type | None]:
        n = _count(ctx.n_in, ctx.n_out, spec.group, f"{ctx.node.label()}: ")
        for i, what in ((0, "R"), (1, "T")):
            shape = ctx.shape(i)
            if shape is not None and (len(shape) > 1 or (len(shape) == 1 and shape[0] not in (1, None))):
                raise ctx.error(f"{what} must be a scalar, got shape {list(shape)}")
        if ctx.elem(1) not in (None, dtypes.INT64):
            raise ctx.error(f"T must be int64, got {dtypes.type_name(ctx.elem(1))}")
        for i in range(n):
            shapes = [ctx.shape(2 + k * n + i) for k in range(spec.group)]
            known = [s for s in shapes if s is not None]
            if any(len(s) != len(known[0]) or not all(map(dims_compatible, s, known[0])) for s in known):
                raise ctx.error(f"tensor {i}, its gradient and its states must have one shape, got "
                                f"{', '.join(shape_str(s) for s in shapes)}")
        sources = [_source(j, i, n) for j in range(spec.group - 1) for i in range(n)]
        return [tensor(ctx.elem(2 + k), ctx.shape(2 + k)) for k in sources]

    return rule


def _builder(spec: Optimizer) -> Callable[[OpContext], Callable[..., tuple[np.ndarray, ...]]]:
    def build(ctx: OpContext) -> Callable[..., tuple[np.ndarray, ...]]:
        n = _count(len(ctx.node.inputs), len(ctx.node.outputs), spec.group, f"{ctx.node.label()}: ")
        attrs = {k: ctx.attr(k) if d is None else ctx.attr(k, d) for k, d in spec.attrs.items()}
        if "mode" in attrs and attrs["mode"] not in ("standard", "nesterov"):
            raise ctx.error(f"mode must be 'standard' or 'nesterov', got {attrs['mode']!r}")

        def run(r: np.ndarray, t: np.ndarray, *tensors: np.ndarray) -> tuple[np.ndarray, ...]:
            rate, step = float(np.asarray(r).reshape(())), int(np.asarray(t).reshape(()))
            results = [spec.update(attrs, rate, step, *tensors[i::n]) for i in range(n)]
            return tuple(np.asarray(res[j], dtype=tensors[_source(j, i, n)].dtype)
                         for j in range(spec.group - 1) for i, res in enumerate(results))

        return run

    return build


for _name, _spec in OPTIMIZERS.items():
    op(_name, since=1, domain=TRAINING, infer=_rule(_spec))(_builder(_spec))
