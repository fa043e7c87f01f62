"""threads.py: a run holds BLAS to one thread and gives several only to products big enough to pay for them.

Why (measured on a 2-core machine shared with other processes, load
average 4-6): OpenBLAS splits any product above 262,144 multiply-adds over
its threads, and the caller and its workers spin while waiting for each
other.  MiniLM at 128 tokens took 141-234 ms (median) on BLAS's 2 default
threads, burning 10x the CPU time of the 40 ms it takes when each product
runs on one thread; a [128, 384] @ [384, 384] product took 18.9 ms on 2
threads against 0.38 ms on one.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from onnx import TensorProto, helper

import webinfer
from webinfer import threads

threadpoolctl = pytest.importorskip("threadpoolctl", reason="limiting BLAS's threads needs threadpoolctl")


def blas_counts() -> list[int]:
    counts = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert counts, "numpy's BLAS is not visible to threadpoolctl"
    return counts


def test_outside_runs_blas_keeps_its_own_count() -> None:
    before = blas_counts()
    assert threads.split_threads(threads.SPLIT_WORK) == 0
    with threads.split(threads.SPLIT_WORK):
        assert blas_counts() == before


@pytest.mark.parametrize("requested", [0, 2, 3])
def test_a_run_splits_only_big_products(requested: int) -> None:
    before = blas_counts()
    allowed = requested or min(max(before), threads.usable_cores())
    with threads.limit_runs(requested):
        assert blas_counts() == [1] * len(before)
        assert threads.split_threads(threads.SPLIT_WORK - 1) == 1
        assert threads.split_threads(threads.SPLIT_WORK) == allowed
        with threads.split(threads.SPLIT_WORK - 1):
            assert blas_counts() == [1] * len(before)
        with threads.split(threads.SPLIT_WORK):
            assert blas_counts() == [allowed] * len(before)
        assert blas_counts() == [1] * len(before)
    assert blas_counts() == before
    assert threads.split_threads(threads.SPLIT_WORK) == 0


def test_one_thread_session_never_splits() -> None:
    with threads.limit_runs(1):
        assert threads.split_threads(10 * threads.SPLIT_WORK) == 1


def test_nested_run_restores_the_outer_runs_count() -> None:
    with threads.limit_runs(3):
        with threads.limit_runs(2):
            assert threads.split_threads(threads.SPLIT_WORK) == 2
        assert threads.split_threads(threads.SPLIT_WORK) == 3
        assert blas_counts() == [1] * len(blas_counts())


def test_overlapping_runs_keep_blas_held_until_the_last_ends() -> None:
    """A server runs sessions in several threads: one run ending must not free BLAS under another."""
    before = blas_counts()
    started, finish, seen = threading.Event(), threading.Event(), []

    def other_run() -> None:
        with threads.limit_runs(0):
            started.set()
            finish.wait(10)
            seen.append(threads.split_threads(threads.SPLIT_WORK))

    worker = threading.Thread(target=other_run)
    worker.start()
    assert started.wait(10)
    with threads.limit_runs(2):
        assert threads.split_threads(threads.SPLIT_WORK) == 2
    assert blas_counts() == [1] * len(before)  # the other run is still going
    finish.set()
    worker.join(10)
    assert seen == [min(max(before), threads.usable_cores())]  # each thread's run keeps its own allowance
    assert blas_counts() == before


@pytest.mark.parametrize("requested", [0, 2])
@pytest.mark.parametrize("m", [8, 128, 600])
def test_products_on_both_sides_of_the_threshold_match_onnxruntime(requested: int, m: int) -> None:
    """[m, 512] @ [512, 512]: 600 rows is above SPLIT_WORK (split over threads), 8 and 128 below."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(m)
    w = helper.make_tensor("w", TensorProto.FLOAT, [512, 512], rng.standard_normal((512, 512)).astype(np.float32).ravel())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("MatMul", ["y", "v"], ["z"])],
                              "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", 512]),
                                     helper.make_tensor_value_info("v", TensorProto.FLOAT, [512, 512])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    feed = {"x": rng.standard_normal((m, 512)).astype(np.float32),
            "v": rng.standard_normal((512, 512)).astype(np.float32) / 16}
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    sess = webinfer.InferenceSession(model, webinfer.SessionOptions(intra_op_num_threads=requested))
    got = sess.run(None, feed)[0]
    assert (m * 512 * 512 >= threads.SPLIT_WORK) == (m == 600)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("fields, cpus", [(["max", "100000"], None), (["-1", "100000"], None),
                                          (["150000", "100000"], 1.5), (["200000", "100000"], 2.0),
                                          (["bogus"], None), (["0", "100000"], None)])
def test_cgroup_quota(fields: list[str], cpus: float | None) -> None:
    assert threads.parse_quota(fields) == cpus


def test_usable_cores_at_most_the_affinity() -> None:
    import os
    assert 1 <= threads.usable_cores() <= len(os.sched_getaffinity(0))
