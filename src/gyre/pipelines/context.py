"""What a running step can reach: ``gyre.pipelines.current_step()``.

Steps run in worker processes (or on Ray), away from the tracking client, so what a step
logs here is collected in the worker and written to the step's run (and the pipeline's run)
by the process that runs the pipeline when the attempt ends.

A reproduction (``gyre reproduce``) runs the steps with ``pins``: the dataset versions the
original run read. Reads through :func:`gyre.pipelines.read_dataset` and
``client.get_training_set`` inside a step take those versions instead of the latest
(:func:`pinned_versions`), and record what they read (:func:`record_read`).
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from gyre.errors import InvalidArgument

_CURRENT: ContextVar[StepContext | None] = ContextVar("gyre_current_step", default=None)


@dataclass
class StepContext:
    """The running step: its name, its run's id, the attempt (from 1), and what it logged.

    Outside a pipeline run (a step function called directly, as in a unit test) the context
    is detached: ``run_id`` is None and what is logged stays on this object.

    Attributes:
        pins: dataset name -> the version this step must read (a reproduction's); empty in
            an ordinary run, where reads take the latest version.
        store_url: the project's store (artifacts and lake), None when detached.
    """

    step: str | None = None
    run_id: str | None = None
    pipeline_run_id: str | None = None
    attempt: int = 1
    metrics: list[tuple[str, float, int, int]] = field(default_factory=list)
    dataset_versions: dict[str, int] = field(default_factory=dict)
    pins: dict[str, int] = field(default_factory=dict)
    store_url: str | None = None

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Record a metric on the step's run and on the pipeline's run (gates read the latter)."""
        if not isinstance(key, str) or not key:
            raise InvalidArgument(f"Metric key must be a non-empty string, got {key!r}.")
        self.metrics.append((key, float(value), step or 0, time.time_ns() // 1_000_000))

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        for key, value in metrics.items():
            self.log_metric(key, value, step)

    def log_dataset_versions(self, versions: dict[str, int]) -> None:
        """Record dataset versions read (a returned training set's are recorded by themselves)."""
        self.dataset_versions.update({str(k): int(v) for k, v in versions.items()})


def current_step() -> StepContext:
    """The running step's context (a detached one outside a pipeline run)."""
    ctx = _CURRENT.get()
    if ctx is None:
        ctx = StepContext()
        _CURRENT.set(ctx)
    return ctx


def pinned_versions() -> dict[str, int]:
    """The dataset versions the running step must read (empty outside a reproduction)."""
    ctx = _CURRENT.get()
    return dict(ctx.pins) if ctx is not None else {}


def record_read(versions: dict[str, int]) -> None:
    """Record dataset versions read on the running step's lineage (nothing outside a step)."""
    ctx = _CURRENT.get()
    if ctx is not None and versions:
        ctx.log_dataset_versions(versions)


def enter(ctx: StepContext) -> Any:
    return _CURRENT.set(ctx)


def leave(token: Any) -> None:
    _CURRENT.reset(token)
