"""The `webinfer` command line: info, run, bench (in-process, through cli.main)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from webinfer.cli import main


@pytest.fixture
def model_path(tmp_path):
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
    path = tmp_path / "net.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return path


def test_info_json_counts_flops(model_path, capsys) -> None:
    assert main(["info", str(model_path), "--dim", "n=2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["op_histogram"] == {"Conv": 1, "Relu": 1}
    assert info["parameters"] == 4 * 3 * 3 * 3
    assert info["inputs"][0]["shape"] == [2, 3, 8, 8]
    assert info["outputs"][0]["shape"] == [2, 4, 8, 8]
    assert info["flops"] == 2 * (2 * 4 * 8 * 8) * 27 + 2 * 4 * 8 * 8


def test_info_text_mentions_symbolic_dims(model_path, capsys) -> None:
    assert main(["info", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert "Conv" in out and "[n, 3, 8, 8]" in out and "--dim" in out


def test_run_writes_outputs(model_path, tmp_path, capsys) -> None:
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out_dir = tmp_path / "out"
    assert main(["run", str(model_path), "--input", f"x={tmp_path / 'x.npy'}", "--output-dir", str(out_dir)]) == 0
    y = np.load(out_dir / "y.npy")
    assert y.shape == (1, 4, 8, 8) and (y >= 0).all()
    assert "y: float32[1, 4, 8, 8]" in capsys.readouterr().out


def test_bench_json_against_onnxruntime(model_path, capsys) -> None:
    assert main(["bench", str(model_path), "--runs", "3", "--warmup", "1", "--dim", "n=1", "--threads", "1",
                 "--compare", "onnxruntime", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("median_ms", "p90_ms", "peak_bytes", "ratio_vs_onnxruntime"):
        assert result[key] > 0
    assert result["inputs"] == {"x": [1, 3, 8, 8]}


def test_errors_are_one_line(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not protobuf")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("webinfer: error: not a valid ONNX model")
