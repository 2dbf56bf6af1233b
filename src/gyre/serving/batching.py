"""Adaptive micro-batching: concurrent requests to one endpoint share one model call.

One batch per endpoint runs at a time. Requests that arrive while it runs queue up and form
the next batch, so batches grow with load and a lone request never waits: there is no timer
on the common path. A batch holds back only for requests that have started but whose bodies
are still arriving (at most ``max_wait_s``), and it never takes more than ``max_batch_size``
rows (one larger request runs alone).

The batch runs inline in the event loop when it is quick (a fast model and no I/O: a thread
hand-off would cost more than the call), else on the endpoint's own worker thread, so the
loop keeps reading requests meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from gyre.serving.inputs import Prepared


class Job:
    """One request's rows on their way through a batch, and what became of them.

    ``outputs`` and ``ids`` (one per row) are set when the batch succeeds, else ``error``.
    """

    __slots__ = ("error", "future", "ids", "outputs", "prepared", "queued_at", "shadow_of", "started")

    def __init__(self, prepared: Prepared, started: float, shadow_of: list[str] | None = None) -> None:
        self.prepared = prepared
        self.started = started  # time.perf_counter() when the request arrived
        self.shadow_of = shadow_of  # a shadow copy: the served prediction ids, one per row
        self.queued_at = 0.0
        self.outputs: list[Any] | None = None
        self.ids: list[str] | None = None
        self.error: BaseException | None = None
        self.future: asyncio.Future[None] | None = None

    @property
    def n(self) -> int:
        return self.prepared.n


class Batcher:
    """Groups jobs and runs them with ``run`` (which sets each job's outputs or error).

    Args:
        run: runs one batch; must not raise (it records failures on the jobs).
        max_batch_size: most rows per batch.
        max_wait_s: longest a batch waits for requests still arriving.
        executor: where batches run; None runs them inline in the event loop.
    """

    def __init__(
        self,
        run: Callable[[list[Job]], None],
        *,
        max_batch_size: int,
        max_wait_s: float,
        executor: Executor | None = None,
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.executor = executor
        self._queue: deque[Job] = deque()
        self._rows = 0
        self._arriving = 0
        self._busy = False
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.batches = 0
        """How many batches (model calls) have run."""

    @property
    def idle(self) -> bool:
        """Nothing queued, arriving or running."""
        return not (self._queue or self._arriving or self._busy)

    # -- the request side --------------------------------------------------------------------

    def arrive(self) -> None:
        """A request for this endpoint started; it will :meth:`submit` or :meth:`depart`."""
        self._arriving += 1

    def depart(self) -> None:
        """A request that :meth:`arrive` d ended without submitting (it was refused)."""
        self._arriving -= 1
        self._kick()

    async def submit(self, job: Job) -> Job:
        """Queue ``job`` (of a request that :meth:`arrive` d) and wait for its batch to finish."""
        self._arriving -= 1
        loop = asyncio.get_running_loop()
        job.future = loop.create_future()
        job.queued_at = time.monotonic()
        self._queue.append(job)
        self._rows += job.n
        self._kick()
        await job.future
        return job

    # -- the batch side ----------------------------------------------------------------------

    def _kick(self) -> None:
        if self._busy or self._scheduled or not self._queue:
            return
        self._scheduled = True
        # call_soon, not now: the request tasks the loop is about to step get to queue first.
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self._scheduled = False
        if self._busy or not self._queue:
            return
        loop = asyncio.get_running_loop()
        if self._rows < self.max_batch_size and self._arriving > 0:
            waited = time.monotonic() - self._queue[0].queued_at
            if waited < self.max_wait_s:
                if self._timer is None:
                    self._timer = loop.call_later(self.max_wait_s - waited, self._on_timer)
                return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = [self._queue.popleft()]
        rows = batch[0].n
        while self._queue and rows + self._queue[0].n <= self.max_batch_size:
            job = self._queue.popleft()
            batch.append(job)
            rows += job.n
        self._rows -= rows
        self._busy = True
        self.batches += 1
        if self.executor is None:
            try:
                self._run(batch)
            finally:
                self._done(batch)
            return
        future = loop.run_in_executor(self.executor, self._run, batch)
        future.add_done_callback(lambda f: self._done(batch, f.exception() if not f.cancelled() else None))

    def _on_timer(self) -> None:
        self._timer = None
        self._tick()

    def _done(self, batch: list[Job], crash: BaseException | None = None) -> None:
        self._busy = False
        for job in batch:
            if crash is not None and job.error is None and job.outputs is None:
                job.error = crash
            if job.future is not None and not job.future.done():  # not cancelled (client gone)
                job.future.set_result(None)
        self._kick()
