"""RNN, GRU and LSTM against onnxruntime on random data."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import webinfer
from webinfer.errors import ShapeInferenceError

from .util import check_node, make_model

RNG = np.random.default_rng(7)
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def _inputs(op: str, seq: int = 5, batch: int = 3, size: int = 4, hidden: int = 6, n_dir: int = 1,
            layout: int = 0, lens: list[int] | None = None, states: bool = False,
            peepholes: bool = False) -> dict[str, np.ndarray]:
    g = GATES[op]

    def rnd(*shape: int) -> np.ndarray:
        return RNG.uniform(-0.5, 0.5, shape).astype(np.float32)

    ins = {"X": rnd(batch, seq, size) if layout else rnd(seq, batch, size),
           "W": rnd(n_dir, g * hidden, size), "R": rnd(n_dir, g * hidden, hidden), "B": rnd(n_dir, 2 * g * hidden)}
    if lens is not None or states or peepholes:
        ins["sequence_lens"] = np.array(lens if lens is not None else [seq] * batch, dtype=np.int32)
    state = (batch, n_dir, hidden) if layout else (n_dir, batch, hidden)
    if states or peepholes:
        ins["initial_h"] = rnd(*state)
        if op == "LSTM":
            ins["initial_c"] = rnd(*state)
    if peepholes:
        ins["P"] = rnd(n_dir, 3 * hidden)
    return ins


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_directions_with_sequence_lens(op: str, direction: str) -> None:
    n_dir = 2 if direction == "bidirectional" else 1
    ins = _inputs(op, n_dir=n_dir, lens=[5, 2, 3], states=True)
    check_node(op, ins, n_outputs=3 if op == "LSTM" else 2, hidden_size=6, direction=direction,
               rtol=1e-4, atol=1e-5)


def _run_ours(op: str, ins: dict[str, np.ndarray], n_out: int, **attrs: object) -> list[np.ndarray]:
    outs = [f"y{i}" for i in range(n_out)]
    model = make_model([helper.make_node(op, list(ins), outs, **attrs)], ins, outs)
    options = webinfer.SessionOptions(strict_shape_checks=True)
    return webinfer.InferenceSession(model.SerializeToString(), options).run(None, ins)


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_batch_first_layout(op: str) -> None:
    """onnxruntime has no layout=1: compare with our layout=0 on transposed data
    (layout 0 itself is checked against onnxruntime above)."""
    n_out = 3 if op == "LSTM" else 2
    ins = _inputs(op, n_dir=2, lens=[5, 2, 4], states=True)
    ref = _run_ours(op, ins, n_out, hidden_size=6, direction="bidirectional")
    batch_first = dict(ins, X=ins["X"].transpose(1, 0, 2), initial_h=ins["initial_h"].transpose(1, 0, 2))
    if op == "LSTM":
        batch_first["initial_c"] = ins["initial_c"].transpose(1, 0, 2)
    ours = _run_ours(op, batch_first, n_out, hidden_size=6, direction="bidirectional", layout=1)
    np.testing.assert_allclose(ours[0], ref[0].transpose(2, 0, 1, 3), rtol=1e-6)
    for a, b in zip(ours[1:], ref[1:]):
        np.testing.assert_allclose(a, b.transpose(1, 0, 2), rtol=1e-6)


def test_gru_linear_before_reset_and_clip() -> None:
    check_node("GRU", _inputs("GRU"), n_outputs=2, hidden_size=6, linear_before_reset=1, clip=0.3,
               rtol=1e-4, atol=1e-5)


def test_lstm_peepholes_input_forget() -> None:
    check_node("LSTM", _inputs("LSTM", peepholes=True, lens=[4, 5, 1]), n_outputs=3, hidden_size=6,
               input_forget=1, rtol=1e-4, atol=1e-5)


def test_activations_with_alpha_beta() -> None:
    """Parameters are consumed in order by the activations that take them."""
    check_node("LSTM", _inputs("LSTM"), n_outputs=3, hidden_size=6,
               activations=["HardSigmoid", "LeakyRelu", "ScaledTanh"],
               activation_alpha=[0.3, 0.05, 1.5], activation_beta=[0.4, 0.7], rtol=1e-4, atol=1e-5)
    check_node("GRU", _inputs("GRU", n_dir=2), n_outputs=2, hidden_size=6, direction="bidirectional",
               activations=["Sigmoid", "Affine", "HardSigmoid", "Softsign"],
               activation_alpha=[0.8, 0.25], activation_beta=[0.1, 0.45], rtol=1e-4, atol=1e-5)


def test_weights_as_graph_inputs_and_missing_bias() -> None:
    """Runtime (not constant) weights and an absent B take the per-run path."""
    ins = _inputs("RNN")
    del ins["B"]
    check_node("RNN", ins, n_outputs=2, hidden_size=6, activations=["Relu"], rtol=1e-4, atol=1e-5)


def test_bad_weight_shape_is_a_clear_error() -> None:
    ins = _inputs("GRU")
    ins["W"] = ins["W"][:, :10]
    node = helper.make_node("GRU", list(ins), ["Y", "Y_h"], hidden_size=6, name="gru1")
    model = make_model([node], ins, ["Y", "Y_h"])
    with pytest.raises(ShapeInferenceError, match=r"GRU node 'gru1': W has shape \[1,10,4\]"):
        webinfer.InferenceSession(model.SerializeToString())


def test_bad_direction_is_a_clear_error() -> None:
    ins = _inputs("RNN")
    node = helper.make_node("RNN", list(ins), ["Y"], hidden_size=6, direction="sideways", name="r1")
    model = make_model([node], ins, ["Y"])
    with pytest.raises(ShapeInferenceError, match="RNN node 'r1': direction must be forward"):
        webinfer.InferenceSession(model.SerializeToString())
