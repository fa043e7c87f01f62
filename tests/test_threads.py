"""threads.py: a run holds BLAS to one thread and shares big products with helper threads itself.

Why (measured on a 2-core machine shared with other processes, load
average 4-10): OpenBLAS splits any product above 262,144 multiply-adds over
its threads, statically, and the caller waits for each worker's share,
which on busy cores waits for the scheduler's tick.  A [128, 384] @ [384,
384] product took 16-19 ms on 2 threads against 0.38 ms on one; MiniLM at
128 tokens took 141-1,037 ms (median) on BLAS's 2 default threads, burning
10x the CPU time of the 40-89 ms it takes on one.  With products shared
(`share`, then from 2^24 multiply-adds), MiniLM at 8 x 128 tokens took 599
ms against onnxruntime's 600 ms (default threads both, load 8.5), where
BLAS's split took 1,016 ms; ResNet-50 took 217 ms against 237 (load 11).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from onnx import TensorProto, helper

import webinfer
from webinfer import blas, threads

threadpoolctl = pytest.importorskip("threadpoolctl", reason="limiting BLAS's threads needs threadpoolctl")


def blas_counts() -> list[int]:
    counts = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert counts, "numpy's BLAS is not visible to threadpoolctl"
    return counts


def default_threads() -> int:
    return min(max(blas_counts()), threads.usable_cores())


def test_outside_runs_nothing_is_shared() -> None:
    assert threads.run_threads() == 0
    assert threads.share_parts(100 * threads.SHARE_WORK, 4096) == 1


@pytest.mark.parametrize("requested", [0, 1, 2, 3])
def test_a_run_holds_blas_to_one_thread_and_shares_only_big_products(requested: int) -> None:
    before = blas_counts()
    allowed = requested or default_threads()
    with threads.limit_runs(requested):
        assert blas_counts() == [1] * len(before)
        assert threads.run_threads() == allowed
        assert threads.share_parts(threads.SHARE_WORK - 1, 4096) == 1
        want = 1 if allowed == 1 else allowed * threads.PARTS_PER_THREAD
        assert threads.share_parts(threads.SHARE_WORK, 4096) == want
        assert threads.share_parts(threads.SHARE_WORK, 40) == min(want, 2)  # parts of at least 16 lines
    assert blas_counts() == before
    assert threads.run_threads() == 0


def test_nested_run_restores_the_outer_runs_count() -> None:
    with threads.limit_runs(3):
        with threads.limit_runs(2):
            assert threads.run_threads() == 2
        assert threads.run_threads() == 3
        assert blas_counts() == [1] * len(blas_counts())


def test_overlapping_runs_keep_blas_held_until_the_last_ends() -> None:
    """A server runs sessions in several threads: one run ending must not free BLAS under another."""
    before = blas_counts()
    started, finish, seen = threading.Event(), threading.Event(), []

    def other_run() -> None:
        with threads.limit_runs(0):
            started.set()
            finish.wait(10)
            seen.append(threads.run_threads())

    worker = threading.Thread(target=other_run)
    worker.start()
    assert started.wait(10)
    with threads.limit_runs(2):
        assert threads.run_threads() == 2
    assert blas_counts() == [1] * len(before)  # the other run is still going
    finish.set()
    worker.join(10)
    assert seen == [default_threads()]  # each thread's run keeps its own count
    assert blas_counts() == before


def test_share_runs_every_part_once_and_raises_a_parts_error() -> None:
    done: list[int] = []
    with threads.limit_runs(2):
        threads.share(7, done.append)
        assert sorted(done) == list(range(7))

        def failing(i: int) -> None:
            if i == 3:
                raise ValueError("part 3")
        with pytest.raises(ValueError, match="part 3"):
            threads.share(5, failing)


def test_caller_takes_every_part_when_no_helper_gets_a_core() -> None:
    """The point of sharing: busy helpers (here: all blocked) cost the caller nothing but the hand-out."""
    pool = threads._helpers()
    release = threading.Event()
    blockers = [pool.submit(release.wait, 10) for _ in range(pool._max_workers)]
    try:
        ran_on: list[int] = []
        with threads.limit_runs(4):
            threads.share(8, lambda i: ran_on.append(threading.get_ident()))
        assert ran_on == [threading.get_ident()] * 8
    finally:
        release.set()
        for b in blockers:
            b.result(10)


@pytest.mark.parametrize("cols", [200, 1024])
def test_shared_accumulate_matches_numpy(cols: int) -> None:
    """C += A @ B for [256, 256] @ [256, cols]: 1024 columns are over SHARE_WORK (shared in column bands)."""
    rng = np.random.default_rng(cols)
    a = rng.standard_normal((256, 256)).astype(np.float32)
    b = rng.standard_normal((256, cols)).astype(np.float32)
    c = rng.standard_normal((256, cols)).astype(np.float32)
    want = c.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    assert (256 * 256 * cols >= threads.SHARE_WORK) == (cols == 1024)
    with threads.limit_runs(2):
        blas.accumulate(a, b, c)
    np.testing.assert_allclose(c, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("requested", [0, 2])
@pytest.mark.parametrize("m", [8, 40, 300])
def test_products_on_both_sides_of_the_threshold_match_onnxruntime(requested: int, m: int) -> None:
    """[m, 512] @ a constant [512, 1024], then @ a runtime [1024, 256]: at 300 rows both are shared, the
    first in column bands (more columns than rows), the second in row bands; 8 and 40 rows are not."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(m)
    w = helper.make_tensor("w", TensorProto.FLOAT, [512, 1024],
                           rng.standard_normal((512, 1024)).astype(np.float32).ravel())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("MatMul", ["y", "v"], ["z"])],
                              "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", 512]),
                                     helper.make_tensor_value_info("v", TensorProto.FLOAT, [1024, 256])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    feed = {"x": rng.standard_normal((m, 512)).astype(np.float32),
            "v": rng.standard_normal((1024, 256)).astype(np.float32) / 16}
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    sess = webinfer.InferenceSession(model, webinfer.SessionOptions(intra_op_num_threads=requested))
    got = sess.run(None, feed)[0]
    assert (m * 512 * 1024 >= threads.SHARE_WORK) == (m * 1024 * 256 >= threads.SHARE_WORK) == (m == 300)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("view", ["transposed", "sliced", "reversed"])
def test_shared_products_take_strided_feeds(view: str) -> None:
    """The shared product (both MatMuls over SHARE_WORK, odd sizes) on non-contiguous feeds: a transposed
    x, every other column of a wider array, or rows in reverse order; the runtime v likewise."""
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(7)
    m, k, n, p = 301, 509, 1031, 257
    w = helper.make_tensor("w", TensorProto.FLOAT, [k, n], rng.standard_normal((k, n)).astype(np.float32).ravel())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("MatMul", ["y", "v"], ["z"])],
                              "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k]),
                                     helper.make_tensor_value_info("v", TensorProto.FLOAT, [n, p])],
                              [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()

    def strided(shape: tuple[int, int], scale: float = 1.0) -> np.ndarray:
        if view == "transposed":
            return (scale * rng.standard_normal(shape[::-1])).astype(np.float32).T
        if view == "sliced":
            return (scale * rng.standard_normal((shape[0], 2 * shape[1]))).astype(np.float32)[:, ::2]
        return (scale * rng.standard_normal(shape)).astype(np.float32)[::-1]

    feed = {"x": strided((m, k)), "v": strided((n, p), 1 / 16)}
    assert not feed["x"].flags.c_contiguous and not feed["v"].flags.c_contiguous
    assert m * k * n >= threads.SHARE_WORK and m * n * p >= threads.SHARE_WORK
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feed)[0]
    got = webinfer.InferenceSession(model, webinfer.SessionOptions(intra_op_num_threads=2)).run(None, feed)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("transposed", [False, True])
def test_shared_accumulate_takes_a_transposed_operand(transposed: bool) -> None:
    """C += A @ B over SHARE_WORK in column bands, with A or B given as a transposed view (odd sizes)."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((257, 257)).astype(np.float32)
    b = rng.standard_normal((1029, 257)).astype(np.float32).T
    if transposed:
        a = np.ascontiguousarray(a.T).T
        b = np.ascontiguousarray(b)
    c = rng.standard_normal((257, 1029)).astype(np.float32)
    want = c.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    assert 257 * 257 * 1029 >= threads.SHARE_WORK
    with threads.limit_runs(2):
        blas.accumulate(a, b, c)
    np.testing.assert_allclose(c, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("fields, cpus", [(["max", "100000"], None), (["-1", "100000"], None),
                                          (["150000", "100000"], 1.5), (["200000", "100000"], 2.0),
                                          (["bogus"], None), (["0", "100000"], None)])
def test_cgroup_quota(fields: list[str], cpus: float | None) -> None:
    assert threads.parse_quota(fields) == cpus


def test_usable_cores_at_most_the_affinity() -> None:
    import os
    assert 1 <= threads.usable_cores() <= len(os.sched_getaffinity(0))


def test_a_forked_child_gets_its_own_helpers() -> None:
    """The parent's helper threads do not exist in a fork: the child makes a pool of its own, and shares."""
    import multiprocessing
    threads._helpers()
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply(_share_in_child) == list(range(6))


def _share_in_child() -> list[int]:
    done: list[int] = []
    with threads.limit_runs(2):
        threads.share(6, done.append)
    return sorted(done)
