"""The Ray executor: each step attempt is a Ray task, with the step's CPUs and memory as its resources.

``compute = "ray:local"`` starts a Ray instance in this process (stopped when the executor
closes); ``"ray://host:port"`` connects to a running cluster through Ray Client;
``"ray:auto"`` joins the cluster this machine belongs to. If Ray is already initialized
(``ray.init()`` was called), that session is used as it is.

Tasks run :func:`gyre.pipelines.worker.run_task` with Ray's own retries off (the runner
retries, only where a step declares it). A timeout force-cancels the task, which kills its
worker process; a worker that dies mid-step fails the attempt with ``WorkerLost``.

The workers must reach the same artifact store (an ``s3://`` store for a remote cluster)
and import the steps' modules: on a remote cluster ship them with Ray's ``runtime_env``
(``open_executor("ray://…", init_options={"runtime_env": {"working_dir": "."}})``).
"""

from __future__ import annotations

import contextlib
import pickle
import threading
from concurrent.futures import Future
from typing import Any

import ray
from ray import exceptions as ray_errors

from gyre.errors import InvalidArgument
from gyre.pipelines.executors import Executor, StepCancelled, StepTimeout, WorkerLost
from gyre.pipelines.worker import StepResult, StepTask, run_task_bytes


def _run_in_ray(data: bytes) -> bytes:
    return run_task_bytes(data)


class RayExecutor(Executor):
    """Submits attempts as Ray tasks (``num_cpus`` = the step's ``cpus``, default 1; ``memory``)."""

    name = "ray"
    capabilities = frozenset({"parallel", "resources"})

    def __init__(self, address: str | None = "local", init_options: dict[str, Any] | None = None) -> None:
        self.address = address
        self._owns = False
        if not ray.is_initialized():
            options = dict(init_options or {})
            options.setdefault("include_dashboard", False)
            options.setdefault("log_to_driver", True)
            if address not in (None, "local"):
                options["address"] = address
            try:
                ray.init(**options)
            except ConnectionError as exc:
                raise InvalidArgument(f"Cannot reach the Ray cluster at {address!r}: {exc}") from None
            self._owns = True
        self._remote = ray.remote(max_retries=0)(_run_in_ray)
        self._lock = threading.Lock()
        self._running: dict[Future[StepResult], Any] = {}
        self._timed_out: set[int] = set()
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RayExecutor:
        rest = url[len("ray:") :] if url.startswith("ray:") else url
        if rest.startswith("//"):
            address: str | None = "ray:" + rest
        elif rest in ("", "local", "ray"):  # "ray" alone, as [backends] compute allows
            address = "local"
        elif rest == "auto":
            address = "auto"
        else:
            raise InvalidArgument(f"Unknown Ray address {url!r}; use ray:local, ray:auto or ray://host:port.")
        return cls(address, **options)

    def __repr__(self) -> str:
        return f"RayExecutor({self.address!r})"

    def submit(self, task: StepTask) -> Future[StepResult]:
        if self._closed:
            raise InvalidArgument("This executor is closed; open a new one.")
        options: dict[str, Any] = {"num_cpus": task.cpus if task.cpus is not None else 1}
        if task.memory is not None:
            options["memory"] = task.memory
        ref = self._remote.options(**options).remote(pickle.dumps(task))
        future: Future[StepResult] = Future()
        timer = None
        if task.timeout_s is not None:
            timer = threading.Timer(task.timeout_s, self._time_out, (future, ref))
            timer.daemon = True
        with self._lock:
            self._running[future] = ref
        ref.future().add_done_callback(lambda inner: self._finish(inner, future, task, timer))
        if timer is not None:
            timer.start()
        return future

    def close(self, cancel: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            pending = list(self._running.items())
        if cancel:
            for _, ref in pending:
                ray.cancel(ref, force=True)
        for future, _ in pending:
            # an attempt that will not answer is dropped with the session
            with contextlib.suppress(Exception):
                future.exception(timeout=60)
        if self._owns:
            ray.shutdown()

    def _time_out(self, future: Future[StepResult], ref: Any) -> None:
        with self._lock:
            if future not in self._running:
                return
            self._timed_out.add(id(future))
        ray.cancel(ref, force=True)

    def _finish(self, inner: Future[Any], future: Future[StepResult], task: StepTask, timer: Any) -> None:
        if timer is not None:
            timer.cancel()
        with self._lock:
            self._running.pop(future, None)
            timed_out = id(future) in self._timed_out
            self._timed_out.discard(id(future))
        try:
            future.set_result(pickle.loads(inner.result()))
        except ray_errors.TaskCancelledError:
            if timed_out:
                future.set_exception(
                    StepTimeout(
                        f"Step '{task.step}' ran longer than its timeout of {task.timeout_s:g}s "
                        "and was stopped."
                    )
                )
            else:
                future.set_exception(
                    StepCancelled(f"Step '{task.step}' was stopped: the pipeline run ended.")
                )
        except (ray_errors.WorkerCrashedError, ray_errors.NodeDiedError, ray_errors.ObjectLostError) as exc:
            future.set_exception(
                WorkerLost(f"The Ray worker running step '{task.step}' died: {type(exc).__name__}.")
            )
        except Exception as exc:
            future.set_exception(
                WorkerLost(f"Ray could not run step '{task.step}': {type(exc).__name__}: {exc}")
            )
