"""Where step attempts run, chosen by ``[backends] compute``: ``local``, ``ray:local``, ``ray://host:port``.

An executor takes :class:`~gyre.pipelines.worker.StepTask` objects and returns futures of
:class:`~gyre.pipelines.worker.StepResult`. It owns the attempt's isolation and its timeout:
a timed-out attempt is really stopped (its process killed, its Ray task force-cancelled) and
its future fails with :class:`StepTimeout`; a worker that dies mid-step fails it with
:class:`WorkerLost`. Retries, caching and tracking live above, in the runner, the same for
every executor.

One module per executor, imported when chosen; a missing optional dependency is an error
that names the extra to install.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future
from importlib import import_module
from types import TracebackType
from typing import TYPE_CHECKING, Any

from gyre.errors import GyreError, InvalidArgument

if TYPE_CHECKING:
    from gyre.pipelines.worker import StepResult, StepTask

# scheme -> (module:class, extra that installs its dependencies)
EXECUTORS: dict[str, tuple[str, str | None]] = {
    "local": ("gyre.pipelines.executors.local:LocalExecutor", None),
    "ray": ("gyre.pipelines.executors.ray:RayExecutor", "ray"),
}


class StepTimeout(GyreError):
    """An attempt ran past its step's ``timeout_s`` and was stopped."""

    code = "step_timeout"


class WorkerLost(GyreError):
    """The process (or Ray worker) running an attempt died before it answered."""

    code = "worker_lost"


class StepCancelled(GyreError):
    """The attempt was stopped because the pipeline run ended (another step failed, or it was cancelled)."""

    code = "step_cancelled"


class Executor(ABC):
    """Runs step attempts. Use as a context manager, or call :meth:`close`.

    ``capabilities`` declares what it honours beyond running tasks: ``"resources"`` (a
    step's cpus/memory reach the scheduler) and ``"parallel"`` (independent steps overlap).
    """

    name: str
    capabilities: frozenset[str] = frozenset()

    @abstractmethod
    def submit(self, task: StepTask) -> Future[StepResult]:
        """Start one attempt. The future fails with StepTimeout, WorkerLost or StepCancelled;
        an exception raised by the step itself is a result with ``ok=False``, not a failure."""

    @abstractmethod
    def close(self, cancel: bool = False) -> None:
        """Release workers. ``cancel=True`` stops running attempts (their futures fail with
        StepCancelled); otherwise it waits for them."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(cancel=exc is not None)


def open_executor(url: str = "local", **options: Any) -> Executor:
    """The executor for a ``[backends] compute`` value.

    Args:
        url: ``local`` (worker processes on this machine), ``ray:local`` (a Ray cluster started
            in this process), ``ray://host:port`` (a running Ray cluster's client address) or
            ``ray:auto`` (the cluster this machine belongs to).
        options: passed to the executor (e.g. ``max_workers`` for ``local``).
    """
    scheme = url.split(":", 1)[0] if url else "local"
    entry = EXECUTORS.get(scheme)
    if entry is None:
        raise InvalidArgument(
            f"Unknown compute backend {url!r}; use one of: local, ray:local, ray://host:port."
        )
    target, extra = entry
    module_name, _, cls_name = target.partition(":")
    try:
        module = import_module(module_name)
    except ImportError as exc:
        if extra is None:
            raise
        raise InvalidArgument(
            f"The {scheme} executor needs `pip install 'gyre-ml[{extra}]'` ({exc})."
        ) from None
    executor: Executor = getattr(module, cls_name).from_url(url, **options)
    return executor
