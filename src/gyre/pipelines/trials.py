"""Hyperparameter trials in parallel on the pipeline executors: ``run_trials(client, train, grid(...))``.

Each trial calls the function with one set of params, as a step attempt on the executor
(local worker processes or Ray tasks, with the same timeout and resources), and is a
tracked run — a child of one run for the whole search — with its params and the metrics
the function returns. The search run records the best trial.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cloudpickle

from gyre.errors import GyreError, InvalidArgument
from gyre.pipelines.executors import Executor, open_executor
from gyre.pipelines.steps import Step
from gyre.pipelines.worker import StepTask, read_output

if TYPE_CHECKING:
    from gyre.client.client import Client


@dataclass
class Trial:
    """One trial: its params, run, metrics (empty if it failed) and error."""

    params: dict[str, Any]
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class TrialsResult:
    """All trials, best first (failed ones last), and the search's run."""

    run_id: str
    objective: str
    trials: list[Trial]

    @property
    def best(self) -> Trial | None:
        return self.trials[0] if self.trials and self.trials[0].ok else None


def grid(**values: Sequence[Any]) -> list[dict[str, Any]]:
    """Every combination: ``grid(lr=[0.1, 0.01], depth=[3, 5])`` -> 4 param sets."""
    names = list(values)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values.values())]


def run_trials(
    client: Client,
    fn: Callable[..., Any] | Step,
    space: Sequence[Mapping[str, Any]],
    *,
    objective: str,
    mode: str = "max",
    experiment: str = "trials",
    name: str | None = None,
    compute: str | None = None,
    executor: Executor | None = None,
    timeout_s: float | None = None,
    cpus: float | None = None,
    memory: int | None = None,
) -> TrialsResult:
    """Run ``fn(**params)`` for every params in ``space``, in parallel; rank by ``objective``.

    Args:
        fn: returns a dict of metrics (or one number, taken as ``objective``).
        mode: ``max`` or ``min``: which way ``objective`` is better.
        compute, executor: as for :func:`~gyre.pipelines.run_pipeline`.
        timeout_s, cpus, memory: per trial, as for a step.
    """
    if mode not in ("max", "min"):
        raise InvalidArgument(f"mode must be 'max' or 'min', got {mode!r}.")
    if not space:
        raise InvalidArgument(
            "No trials to run: pass a non-empty list of param dicts, e.g. grid(lr=[0.1, 0.01])."
        )
    func = fn.fn if isinstance(fn, Step) else fn
    label: str = name or getattr(func, "__name__", None) or "trials"
    store_url = getattr(client.backend.blobs, "url", None)
    if not store_url:
        raise InvalidArgument(
            "Trials read and write the artifact store directly: connect to the project's stores."
        )
    own = executor is None
    runner = executor or open_executor(compute or client.settings.get("backends", "compute"))
    module = getattr(func, "__module__", None) or "__main__"
    modules = [] if module == "__main__" else [(module, getattr(sys.modules.get(module), "__file__", None))]
    trials: list[Trial] = []
    with client.start_run(
        experiment, label, tags={"gyre.trials": label, "gyre.trials.objective": objective}
    ) as search:
        search.log_params({"trials": len(space), "mode": mode})
        pending = {}
        for params in space:
            run = client.start_run(experiment, label, parent_run_id=search.id, capture_environment=False)
            run.log_params(dict(params))
            trial = Trial(dict(params), run.id)
            trials.append(trial)
            task = StepTask(
                label,
                cloudpickle.dumps((func, (), dict(params))),
                store_url,
                modules,
                list(sys.path),
                run.id,
                search.id,
                1,
                timeout_s,
                cpus,
                memory,
            )
            pending[runner.submit(task)] = (trial, run)
        try:
            for future in as_completed(pending):
                trial, run = pending[future]
                try:
                    result = future.result()
                except GyreError as exc:
                    trial.error = f"{type(exc).__name__}: {exc}"
                    run.end("FAILED", trial.error)
                    continue
                if not result.ok or result.digest is None:
                    trial.error = result.error or result.error_type
                    run.end("FAILED", trial.error)
                    continue
                try:
                    returned = _metrics(read_output(client.backend.blobs, result.digest), objective)
                except InvalidArgument as exc:
                    trial.error = exc.message
                    run.end("FAILED", trial.error)
                    continue
                trial.metrics = {k: v for k, v, _, _ in result.metrics} | returned
                run.log_metrics(trial.metrics)
                run.end("FINISHED")
        finally:
            if own:
                runner.close(cancel=True)
            for trial, run in pending.values():
                if run.info.status == "RUNNING" and not trial.metrics and trial.error is None:
                    with contextlib.suppress(GyreError):
                        run.end("KILLED", "the search was interrupted")
        sign = -1.0 if mode == "max" else 1.0
        trials.sort(
            key=lambda t: (not t.ok or objective not in t.metrics, sign * t.metrics.get(objective, 0.0))
        )
        best = trials[0] if trials and trials[0].ok and objective in trials[0].metrics else None
        if best is not None:
            search.log_metric(objective, best.metrics[objective])
            search.set_tags({"gyre.trials.best_run": best.run_id})
    return TrialsResult(search.id, objective, trials)


def _metrics(value: Any, objective: str) -> dict[str, float]:
    if isinstance(value, Mapping):
        return {
            str(k): float(v)
            for k, v in value.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {objective: float(value)}
    raise InvalidArgument(f"A trial returned {type(value).__name__}; return a dict of metrics or a number.")
