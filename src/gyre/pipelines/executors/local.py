"""The local executor: step attempts in worker processes on this machine.

Each worker is a fresh ``python -m gyre.pipelines.worker`` process with two pipes, so that a
timed-out attempt can really be stopped — its process group is killed and a new worker
takes its place — and a worker that dies mid-step is noticed at once. Workers start on
demand, up to ``max_workers`` (default: the CPU count), and serve attempts one at a time,
so independent steps run in parallel. A fully cached run starts none.

Why subprocesses rather than ``multiprocessing``: its ``spawn`` and ``forkserver`` start
methods re-import the parent's ``__main__`` in every worker, which re-runs a user's script
that calls ``pipeline.run()`` without an ``if __name__ == "__main__"`` guard; ``fork`` is
unsafe in a process with threads (the run flushers, the database pool). Workers are
POSIX-only for now (pipes are passed as inherited file descriptors).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

from gyre.errors import GyreError, InvalidArgument
from gyre.pipelines.executors import Executor, StepCancelled, StepTimeout, WorkerLost
from gyre.pipelines.worker import StepResult, StepTask

POLL_S = 0.05  # how often a waiting slot checks for cancellation


class LocalExecutor(Executor):
    """Runs attempts in up to ``max_workers`` worker processes."""

    name = "local"
    capabilities = frozenset({"parallel"})

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
            raise InvalidArgument(f"max_workers must be an integer >= 1, got {max_workers!r}.")
        self.max_workers = max_workers or os.cpu_count() or 1
        self._queue: queue.Queue[tuple[StepTask, Future[StepResult]] | None] = queue.Queue()
        self._slots: list[_Slot] = []
        self._lock = threading.Lock()
        self._outstanding = 0
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> LocalExecutor:
        return cls(**options)

    def __repr__(self) -> str:
        return f"LocalExecutor(max_workers={self.max_workers})"

    def submit(self, task: StepTask) -> Future[StepResult]:
        future: Future[StepResult] = Future()
        with self._lock:
            if self._closed:
                raise InvalidArgument("This executor is closed; open a new one.")
            self._outstanding += 1
            if self._outstanding > len(self._slots) and len(self._slots) < self.max_workers:
                slot = _Slot(self)
                self._slots.append(slot)
                slot.start()
        self._queue.put((task, future))
        return future

    def close(self, cancel: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            slots = list(self._slots)
        if cancel:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[1].set_exception(StepCancelled(f"Step '{item[0].step}' was not started."))
            for slot in slots:
                slot.cancel.set()
        for _ in slots:
            self._queue.put(None)
        for slot in slots:
            slot.join()

    def _done(self) -> None:
        with self._lock:
            self._outstanding -= 1


class _Slot(threading.Thread):
    """One worker process and the thread that feeds it attempts and watches it."""

    def __init__(self, executor: LocalExecutor) -> None:
        super().__init__(name="gyre-step-slot", daemon=True)
        self.executor = executor
        self.cancel = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.tasks: Connection | None = None
        self.results: Connection | None = None

    def run(self) -> None:
        try:
            while True:
                item = self.executor._queue.get()
                if item is None:
                    return
                task, future = item
                try:
                    future.set_result(self._attempt(task))
                except GyreError as exc:
                    future.set_exception(exc)
                except Exception as exc:  # the slot must survive to answer later futures
                    future.set_exception(WorkerLost(f"Step '{task.step}': {type(exc).__name__}: {exc}"))
                finally:
                    self.executor._done()
        finally:
            self._stop()

    def _attempt(self, task: StepTask) -> StepResult:
        if self.cancel.is_set():
            raise StepCancelled(f"Step '{task.step}' was not started.")
        self._ensure_worker()
        assert self.tasks is not None and self.results is not None and self.proc is not None
        try:
            self.tasks.send_bytes(pickle.dumps(task))
        except OSError:
            code = self._stop()
            raise WorkerLost(
                f"The worker process for step '{task.step}' died before it started (exit code {code})."
            ) from None
        deadline = None if task.timeout_s is None else time.monotonic() + task.timeout_s
        while True:
            wait = POLL_S if deadline is None else max(0.0, min(POLL_S, deadline - time.monotonic()))
            if self.results.poll(wait):
                try:
                    result: StepResult = pickle.loads(self.results.recv_bytes())
                    return result
                except (EOFError, OSError):
                    code = self._stop()
                    raise WorkerLost(
                        f"The worker process running step '{task.step}' died (exit code {code})"
                        f"{_signal_name(code)}; nothing was stored for this attempt."
                    ) from None
            if self.cancel.is_set():
                self._stop(kill=True)
                raise StepCancelled(f"Step '{task.step}' was stopped: the pipeline run ended.")
            if deadline is not None and time.monotonic() >= deadline:
                self._stop(kill=True)
                raise StepTimeout(
                    f"Step '{task.step}' ran longer than its timeout of {task.timeout_s:g}s and was stopped."
                )

    def _ensure_worker(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self._stop()
        task_r, task_w = os.pipe()
        result_r, result_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gyre.pipelines.worker", str(task_r), str(result_w)],
                pass_fds=(task_r, result_w),
                stdin=subprocess.DEVNULL,
                # its own process group, so that killing it also stops what the step started
                start_new_session=True,
            )
        finally:
            os.close(task_r)
            os.close(result_w)
        self.tasks = Connection(task_w, readable=False)
        self.results = Connection(result_r, writable=False)

    def _stop(self, kill: bool = False) -> int | None:
        """End the worker (killed if asked, else by closing its pipe); returns its exit code."""
        proc, self.proc = self.proc, None
        for conn in (self.tasks, self.results):
            if conn is not None:
                with contextlib.suppress(OSError):
                    conn.close()
        self.tasks = self.results = None
        if proc is None:
            return None
        if kill and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


def _signal_name(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f", killed by {signal.Signals(-code).name}"
        except ValueError:
            return ""
    return ""
