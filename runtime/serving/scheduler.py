"""Per-model bounded queue, instances and dynamic batching.

The event loop only moves requests: each instance (one session) has a
worker task that takes the next request -- or, with dynamic batching, the
next batch -- off the model's queue and runs it in a thread of the model's
executor, so a slow model never blocks other requests or models.

Admission happens before the request's body is read: `reserve()` takes a
slot or raises `Unavailable` (503), so a full queue costs no buffering.
The slot is given back when the request leaves the queue for a worker (or
fails before it got there).

Batching follows Triton's dynamic batcher: requests whose inputs agree on
every dim but the first are concatenated up to `max_batch_size`; a
preferred size, when one can be formed, is sent at once; otherwise the
batch waits while its oldest request is younger than `max_queue_delay`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .codec import InferRequest
from .errors import ModelFailed, ServingError, Unavailable
from .repository import Model


class Observer(Protocol):
    """What the scheduler reports (the metrics implement it)."""

    def queued(self, model: Model, depth: int) -> None: ...
    def executed(self, model: Model, jobs: int, rows: int, queue_s: list[float], compute_s: float) -> None: ...


class Slot:
    """One admitted request's place in its model's queue; `release` is idempotent."""

    __slots__ = ("scheduler", "held")

    def __init__(self, scheduler: "Scheduler"):
        self.scheduler = scheduler
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.scheduler.admitted -= 1


@dataclass(eq=False)
class _Job:
    request: InferRequest
    slot: Slot
    future: asyncio.Future
    enqueued: float
    deadline: float
    #: Per input, by name: (name, shape without the batch dim, dtype); requests batch together only when
    #: these agree.
    key: tuple[Any, ...] = field(default=())


class Scheduler:
    """The queue and workers of one model."""

    def __init__(self, model: Model, observer: Observer):
        self.model = model
        self.observer = observer
        self.admitted = 0
        self.pending: deque[_Job] = deque()
        self.pool = ThreadPoolExecutor(max_workers=len(model.sessions), thread_name_prefix=f"webinfer-{model.name}")
        self._arrived: asyncio.Event | None = None
        self._workers: list[asyncio.Task] = []

    def reserve(self) -> Slot:
        """A queue slot, or 503 when `max_queue_size` requests are already admitted."""
        if self.admitted >= self.model.config.max_queue_size:
            raise Unavailable(f"model '{self.model.name}': exceeds maximum queue size "
                              f"({self.model.config.max_queue_size})")
        self.admitted += 1
        return Slot(self)

    async def infer(self, slot: Slot, request: InferRequest) -> dict[str, np.ndarray]:
        """Queue the request and wait for its outputs, at most until its deadline."""
        loop = asyncio.get_running_loop()
        if not self._workers:
            self._arrived = asyncio.Event()
            self._workers = [loop.create_task(self._work(s)) for s in self.model.sessions]
        now = time.perf_counter()
        timeout = request.timeout_s or self.model.config.timeout_s
        key = tuple((k, a.shape[1:], a.dtype) for k, a in sorted(request.feeds.items())) if self.model.config.batching \
            else ()
        job = _Job(request, slot, loop.create_future(), now, now + timeout, key)
        self.pending.append(job)
        self.observer.queued(self.model, len(self.pending))
        assert self._arrived is not None
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout)
        except asyncio.TimeoutError:
            raise Unavailable(f"model '{self.model.name}': request timed out after {timeout:g} s") from None
        finally:
            if not job.future.done():
                job.future.cancel()  # a worker that still finds it queued skips it

    async def _next(self) -> list[_Job]:
        """The next job, or batch of jobs, to run; skips those whose caller gave up or whose time ran out."""
        assert self._arrived is not None
        while True:
            while not self.pending:
                self._arrived.clear()
                await self._arrived.wait()
            now = time.perf_counter()
            first = self.pending[0]
            if first.future.done() or now > first.deadline:
                self._drop(self.pending.popleft(), now)
                continue
            batching = self.model.config.batching
            if batching is None:
                return [self._take(self.pending.popleft())]
            jobs, rows = self._compatible(first)
            limit = self.model.config.max_batch_size
            wait = first.enqueued + batching.max_queue_delay_s - now
            if rows >= limit or rows in batching.preferred_sizes or wait <= 0:
                chosen = self._prefer(jobs, batching.preferred_sizes)
                for j in chosen:
                    self.pending.remove(j)
                return [self._take(j) for j in chosen]
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except asyncio.TimeoutError:
                pass

    def _compatible(self, first: _Job) -> tuple[list[_Job], int]:
        """Queued jobs (oldest first) that can join `first` within max_batch_size, and their rows."""
        limit = self.model.config.max_batch_size
        jobs, rows = [], 0
        for j in self.pending:
            if j.key == first.key and not j.future.done() and rows + j.request.batch <= limit:
                jobs.append(j)
                rows += j.request.batch
                if rows == limit:
                    break
        return jobs, rows

    @staticmethod
    def _prefer(jobs: list[_Job], preferred: tuple[int, ...]) -> list[_Job]:
        """The longest prefix of `jobs` whose rows are a preferred size, else all of them."""
        total, best = 0, None
        for i, j in enumerate(jobs):
            total += j.request.batch
            if total in preferred:
                best = i + 1
        return jobs[:best] if best else jobs

    def _take(self, job: _Job) -> _Job:
        job.slot.release()
        self.observer.queued(self.model, len(self.pending))
        return job

    def _drop(self, job: _Job, now: float) -> None:
        job.slot.release()
        self.observer.queued(self.model, len(self.pending))
        if not job.future.done():
            job.future.set_exception(Unavailable(
                f"model '{self.model.name}': request timed out in the queue after {now - job.enqueued:.3f} s"))

    async def _work(self, session: Any) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._next()
            started = time.perf_counter()
            queue_s = [started - j.enqueued for j in jobs]
            try:
                results = await loop.run_in_executor(self.pool, run_requests, self.model, session,
                                                     [j.request for j in jobs])
            except Exception as e:  # noqa: BLE001 - the executor itself failed: every job is told, the worker goes on
                results = [e] * len(jobs)
            finally:
                self.observer.executed(self.model, len(jobs), sum(j.request.batch for j in jobs), queue_s,
                                       time.perf_counter() - started)
            for j, r in zip(jobs, results):
                if j.future.done():
                    continue
                if isinstance(r, Exception):
                    j.future.set_exception(r if isinstance(r, ServingError) else ModelFailed(
                        f"model '{self.model.name}' failed: {type(r).__name__}: {r}"))
                else:
                    j.future.set_result(r)

    async def close(self) -> None:
        """Stop the workers; requests still queued get 503."""
        for t in self._workers:
            t.cancel()
        for t in self._workers:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass
        self._workers = []
        while self.pending:
            j = self.pending.popleft()
            if not j.future.done():
                j.future.set_exception(Unavailable("server shutting down"))
        self.pool.shutdown(wait=False, cancel_futures=True)


def run_requests(model: Model, session: Any, requests: list[InferRequest]) -> list[dict[str, np.ndarray] | Exception]:
    """Run requests of `model` on `session` (in a worker thread): one as it is, several concatenated on
    the batch dim, split back per request.  Each request gets its outputs or its own exception.

    When a batch raises (a bad request in it, or shapes that do not concatenate), its requests run
    again one by one, so only those that fail alone get the error: a bad request costs its batch mates
    a second run, never their answer.  Shared by the scheduler and the Ray Serve deployment."""
    if len(requests) > 1:
        try:
            return _run_batch(model, session, requests)
        except Exception:  # noqa: BLE001 - isolated below: each request gets its own outcome
            pass
    out: list[dict[str, np.ndarray] | Exception] = []
    for r in requests:
        wanted = [n for n, _ in r.outputs]
        try:
            out.append(dict(zip(wanted, session.run(wanted, r.feeds))))
        except Exception as e:  # noqa: BLE001 - the request's own failure, reported to it alone
            out.append(e)
    return out


def _run_batch(model: Model, session: Any, requests: list[InferRequest]) -> list[dict[str, np.ndarray] | Exception]:
    names = [s.name for s in model.outputs]
    feeds = {k: np.concatenate([r.feeds[k] for r in requests]) for k in requests[0].feeds}
    outs = session.run(names, feeds)
    rows = [r.batch for r in requests]
    total = sum(rows)
    for n, o in zip(names, outs):
        if np.ndim(o) == 0 or np.shape(o)[0] != total:
            raise ModelFailed(f"model '{model.name}': output '{n}' has shape {list(np.shape(o))}, not a "
                              f"leading batch dim of {total}; it cannot be batched (set max_batch_size 0)")
    bounds = np.cumsum(rows)[:-1]
    parts = [np.split(o, bounds) for o in outs]
    return [{n: parts[k][i] for k, n in enumerate(names)} for i in range(len(requests))]
