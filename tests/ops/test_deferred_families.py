"""The op families `import webinfer` leaves for later (ops.DEFERRED) register on the first lookup that
needs them: a model using one loads and matches onnxruntime, and listing the table sees them all."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from webinfer import ops
from webinfer.errors import UnsupportedOpError
from webinfer.ir import Node


def test_deferred_family_imported_on_first_lookup() -> None:
    # A fresh interpreter: this one's tests have imported every family already.
    script = textwrap.dedent("""
        import sys
        import numpy as np
        import onnxruntime as ort
        from onnx import TensorProto, helper
        import webinfer
        from webinfer import ops

        deferred = [f"webinfer.ops.{f}" for f in ops.DEFERRED]
        assert "webinfer.ops.rnn" in deferred
        assert "webinfer.ops.rnn" not in sys.modules, "rnn imported by `import webinfer`"
        rng = np.random.default_rng(3)
        feed = {"X": rng.uniform(-1, 1, (5, 2, 3)).astype(np.float32),
                "W": rng.uniform(-1, 1, (1, 4, 3)).astype(np.float32),
                "R": rng.uniform(-1, 1, (1, 4, 4)).astype(np.float32)}
        ins = [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in feed.items()]
        out = helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)
        node = helper.make_node("RNN", ["X", "W", "R"], ["Y"], hidden_size=4)
        model = helper.make_model(helper.make_graph([node], "rnn", ins, [out]),
                                  opset_imports=[helper.make_opsetid("", 21)], ir_version=10).SerializeToString()
        got = webinfer.InferenceSession(model, providers=["cpu"]).run(None, feed)[0]
        want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert ops.REGISTRY.pending is None and all(m in sys.modules for m in deferred)
        print("ok")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_complete_registers_every_family() -> None:
    families = {d.build.__module__.rsplit(".", 1)[1] for v in ops.REGISTRY.complete().ops.values() for d in v}
    assert set(ops.DEFERRED) <= families
    assert ops.REGISTRY.pending is None


def test_unknown_op_still_a_clear_error_after_complete() -> None:
    with pytest.raises(UnsupportedOpError, match="NoSuchOp is not supported"):
        ops.REGISTRY.lookup(Node("NoSuchOp", ["x"], ["y"], {}), 21)
