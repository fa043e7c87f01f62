"""Long-run fuzzing of the loader and kernel builders (issue 9, item 6).

    python tools/fuzz.py --cases 20000 --seed 0 [--workers 2] [--timeout 10] [--memory-mb 1024]
    python tools/fuzz.py --seed 0 --show 1234          # replay one case with its traceback
    python tools/fuzz.py --seed 0 --show 1234 --write case.onnx
    python tools/fuzz.py --atheris /tmp/corpus -runs=100000 -timeout=10 -rss_limit_mb=2048

Every case is a mutated model (tests/fuzz/mutate.py: byte, protobuf-tree and
semantic mutations of the onnx backend suite's node models, plus generated
hostile models).  Workers are forked once the corpus is built, each with an
address-space cap; a worker that passes the per-case time limit is killed
and counted as a hang (at load, or at run: a model may loop forever by its
own semantics, a Loop whose condition never turns false), one that dies is counted as a memory blow-up (or a
crash), and either is replaced.  The report counts ok / documented error
(by class) / undocumented exception (by type and location) / memory
blow-up / hang, with the first case indices of every bucket for --show.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy loads: one BLAS thread per worker

import argparse
import collections
import multiprocessing
import multiprocessing.connection
import sys
import time
import traceback
import warnings
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.fuzz import mutate, runner  # noqa: E402


def _worker(conn: Any, seed: int, memory: int) -> None:
    """Run the case indices sent on `conn`, answering (index, outcome)."""
    warnings.simplefilter("ignore")
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    runner.limit_memory(memory)
    while True:
        index = conn.recv()
        if index is None:
            return
        _, data = mutate.case(seed, index)
        try:
            outcome = runner.run_case(data, lambda: conn.send((index, "running")))
        except MemoryError:  # so short of memory that classifying the failure failed too
            outcome = ("memory", "worker out of memory")
        conn.send((index, outcome))


class Pool:
    """Forked workers fed one case at a time; hung or dead ones are replaced."""

    def __init__(self, n: int, seed: int, memory: int, timeout: float):
        self.ctx = multiprocessing.get_context("fork")
        self.seed, self.memory, self.timeout = seed, memory, timeout
        self.workers: list[dict[str, Any]] = [self._spawn() for _ in range(n)]

    def _spawn(self) -> dict[str, Any]:
        parent, child = self.ctx.Pipe()
        proc = self.ctx.Process(target=_worker, args=(child, self.seed, self.memory), daemon=True)
        proc.start()
        child.close()
        return {"proc": proc, "conn": parent, "index": None, "since": 0.0, "phase": "load"}

    def run(self, indices: range) -> Any:
        """Yield (index, outcome) for every index, in completion order."""
        todo = iter(indices)
        pending = len(indices)
        for w in self.workers:
            self._feed(w, todo)
        while pending:
            busy = {w["conn"]: w for w in self.workers if w["index"] is not None}
            ready = multiprocessing.connection.wait(list(busy), timeout=0.5)
            for conn in ready:
                w = busy[conn]
                try:
                    index, outcome = conn.recv()
                    if outcome == "running":
                        w["phase"] = "run"
                        continue
                except (EOFError, OSError):
                    index = w["index"]
                    code = w["proc"].exitcode if w["proc"].join(1) is None else None
                    outcome = ("memory", f"worker died (exit {code})") if code in (-9, None, 1) else (
                        "crash", f"exit {code}")
                    self._replace(w)
                yield index, outcome
                pending -= 1
                w["index"] = None
                self._feed(w, todo)
            now = time.monotonic()
            for w in self.workers:
                if w["index"] is not None and w["conn"] not in ready and now - w["since"] > self.timeout:
                    index, phase = w["index"], w["phase"]
                    self._replace(w)
                    yield index, ("hang", phase)
                    pending -= 1
                    w["index"] = None
                    self._feed(w, todo)

    def _feed(self, w: dict[str, Any], todo: Any) -> None:
        index = next(todo, None)
        if index is not None:
            w["conn"].send(index)
            w["index"], w["since"], w["phase"] = index, time.monotonic(), "load"

    def _replace(self, w: dict[str, Any]) -> None:
        w["proc"].kill()
        w["proc"].join()
        w["conn"].close()
        w.update(self._spawn())

    def close(self) -> None:
        for w in self.workers:
            w["conn"].send(None)
            w["proc"].join(5)


def fuzz(cases: int, seed: int, workers: int, timeout: float, memory_mb: int, start: int = 0,
         progress: bool = True) -> dict[tuple[str, ...], list[int]]:
    """Run `cases` cases; return {outcome: [case indices]}."""
    mutate.corpus()  # built once, before forking, so every worker shares it
    pool = Pool(workers, seed, memory_mb << 20, timeout)
    results: dict[tuple[str, ...], list[int]] = collections.defaultdict(list)
    t0 = time.monotonic()
    try:
        for n, (index, outcome) in enumerate(pool.run(range(start, start + cases)), 1):
            results[outcome].append(index)
            if progress and n % 1000 == 0:
                bad = sum(len(v) for k, v in results.items() if k[0] not in ("ok", "documented"))
                print(f"  {n} cases, {bad} failures, {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    finally:
        pool.close()
    return results


def report(results: dict[tuple[str, ...], list[int]], seed: int) -> str:
    """The counts, grouped: ok / documented by class / undocumented by type and location / memory / hang."""
    total = sum(len(v) for v in results.values())
    lines = [f"cases: {total} (seed {seed})"]
    groups = collections.defaultdict(list)
    for outcome, idx in results.items():
        groups[outcome[0]].append((outcome[1:], idx))
    for kind in ("ok", "documented", "undocumented", "memory", "hang", "crash"):
        items = sorted(groups.get(kind, []), key=lambda kv: -len(kv[1]))
        lines.append(f"{kind}: {sum(len(i) for _, i in items)}")
        if kind == "ok":
            continue
        for detail, idx in items:
            examples = ", ".join(str(i) for i in sorted(idx)[:3])
            lines.append(f"    {len(idx):6d}  {' '.join(detail) or '-'}   (--show {examples})")
    return "\n".join(lines)


def show(seed: int, index: int, write: str | None, memory_mb: int) -> None:
    """Replay one case in this process, under the workers' memory cap, printing its outcome and traceback."""
    desc, data = mutate.case(seed, index)
    runner.limit_memory(memory_mb << 20)
    print(f"case {index} (seed {seed}): {desc}, {len(data)} bytes")
    if write:
        with open(write, "wb") as f:
            f.write(data)
    import webinfer
    try:
        sess = webinfer.InferenceSession(data)
        feed = runner._feed(sess)
        if feed is not None:
            sess.run(None, feed)
        print("ok")
    except Exception:  # noqa: BLE001 - the traceback is what --show is for
        traceback.print_exc()


def atheris_main(corpus_dir: str, libfuzzer_args: list[str]) -> None:
    """Coverage-guided fuzzing of raw model bytes with atheris (optional: `pip install atheris`).

    Runs in this process: an undocumented exception, a MemoryError while
    loading, or a libFuzzer -timeout / -rss_limit_mb overrun is a finding.
    `corpus_dir` is seeded with the backend suite's node models when empty.
    """
    import atheris

    import webinfer

    os.makedirs(corpus_dir, exist_ok=True)
    if not os.listdir(corpus_dir):
        for name, model in mutate.corpus():
            with open(os.path.join(corpus_dir, name), "wb") as f:
                f.write(model.SerializeToString())

    def one(data: bytes) -> None:
        try:
            sess = webinfer.InferenceSession(data)
        except webinfer.WebinferError as e:
            if runner._memory_error(e) is not None:  # loading allocated past the cap: a finding
                raise
            return
        feed = runner._feed(sess)
        if feed is None:
            return
        try:
            sess.run(None, feed)
        except webinfer.WebinferError:
            pass

    warnings.simplefilter("ignore")
    atheris.instrument_all()
    atheris.Setup([sys.argv[0], corpus_dir, *libfuzzer_args], one)
    atheris.Fuzz()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=20000)
    p.add_argument("--start", type=int, default=0, help="first case index (to split a run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per case before it counts as a hang")
    p.add_argument("--memory-mb", type=int, default=1024, help="address space a worker may add to its start")
    p.add_argument("--show", type=int, help="replay this case index in-process")
    p.add_argument("--write", help="with --show: also write the model bytes here")
    p.add_argument("--atheris", metavar="CORPUS_DIR",
                   help="coverage-guided in-process fuzzing with atheris; extra arguments go to libFuzzer "
                        "(e.g. -runs=100000 -timeout=10 -rss_limit_mb=2048)")
    args, extra = p.parse_known_args(argv)
    if args.atheris:
        atheris_main(args.atheris, extra)
        return 0
    if extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.show is not None:
        show(args.seed, args.show, args.write, args.memory_mb)
        return 0
    results = fuzz(args.cases, args.seed, args.workers, args.timeout, args.memory_mb, args.start)
    print(report(results, args.seed))
    return 0 if all(k[0] in ("ok", "documented") for k in results) else 1


if __name__ == "__main__":
    sys.exit(main())
