"""Pipelines: ``@gyre.pipeline`` and ``@gyre.step``, caching, retries, executors, triggers, gates, review.

A pipeline is a plain function that calls steps; the data flow between the calls is the
graph (:mod:`~gyre.pipelines.graph`). A run (:mod:`~gyre.pipelines.runner`) is a tracked run
with a child run per step; step outputs are content-addressed artifacts, reused when a
step's code, inputs and params are unchanged (:mod:`~gyre.pipelines.cache`). Steps run on an
executor chosen by ``[backends] compute`` (:mod:`~gyre.pipelines.executors`). When every step
succeeded, gates (:mod:`~gyre.pipelines.gates`) decide whether the model is registered as
``challenger``, held for review (:mod:`~gyre.pipelines.review`) or rejected
(:mod:`~gyre.pipelines.outcome`). Triggers (:mod:`~gyre.pipelines.triggers`) are evaluated by
the controller (:mod:`gyre.controller.pipelines`), which applies each pipeline's concurrency
policy as ``gyre run`` does (:mod:`~gyre.pipelines.concurrency`). A step reads lake data with
:func:`read_dataset`, recording the version it read, so :func:`reproduce` can run a pipeline
run again on the same data. :func:`run_trials` runs hyperparameter trials in parallel on the
same executors.

Example::

    @gyre.step
    def load(rows: int) -> pd.DataFrame: ...

    @gyre.step(retries=2, timeout_s=600)
    def train(df: pd.DataFrame) -> Model: ...

    @gyre.pipeline(gates=[gyre.gates.MetricThreshold("auc", ">=", 0.8)], label="is_fraud")
    def fraud(rows: int = 10_000):
        model = train(load(rows))
        return {"model": model}

    fraud.run(gyre.connect(), rows=5_000)
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from gyre._lazy import lazy_exports

_EXPORTS = {
    "AlertFired": "gyre.pipelines.triggers",
    "BeatsChampion": "gyre.pipelines.gates",
    "DataCheck": "gyre.pipelines.gates",
    "DataVersion": "gyre.pipelines.triggers",
    "DemographicParity": "gyre.pipelines.gates",
    "EqualOpportunity": "gyre.pipelines.gates",
    "Gate": "gyre.pipelines.gates",
    "MetricThreshold": "gyre.pipelines.gates",
    "NewData": "gyre.pipelines.triggers",
    "Pipeline": "gyre.pipelines.definition",
    "PipelineRun": "gyre.pipelines.runner",
    "Schedule": "gyre.pipelines.triggers",
    "Step": "gyre.pipelines.steps",
    "StepContext": "gyre.pipelines.context",
    "StepEvent": "gyre.pipelines.runner",
    "cancel_run": "gyre.pipelines.runner",
    "current_step": "gyre.pipelines.context",
    "decide_concurrency": "gyre.pipelines.triggers",
    "grid": "gyre.pipelines.trials",
    "open_executor": "gyre.pipelines.executors",
    "pipeline": "gyre.pipelines.definition",
    "read_dataset": "gyre.pipelines.data",
    "reproduce": "gyre.pipelines.reproduce",
    "run_pipeline": "gyre.pipelines.runner",
    "run_trials": "gyre.pipelines.trials",
    "step": "gyre.pipelines.steps",
}
_SUBMODULES = {"gates", "triggers", "review"}

__all__ = sorted([*_EXPORTS, "gates"])

if TYPE_CHECKING:
    from gyre.pipelines import gates as gates
    from gyre.pipelines.context import StepContext as StepContext
    from gyre.pipelines.context import current_step as current_step
    from gyre.pipelines.data import read_dataset as read_dataset
    from gyre.pipelines.definition import Pipeline as Pipeline
    from gyre.pipelines.definition import pipeline as pipeline
    from gyre.pipelines.executors import open_executor as open_executor
    from gyre.pipelines.gates import BeatsChampion as BeatsChampion
    from gyre.pipelines.gates import DataCheck as DataCheck
    from gyre.pipelines.gates import DemographicParity as DemographicParity
    from gyre.pipelines.gates import EqualOpportunity as EqualOpportunity
    from gyre.pipelines.gates import Gate as Gate
    from gyre.pipelines.gates import MetricThreshold as MetricThreshold
    from gyre.pipelines.reproduce import reproduce as reproduce
    from gyre.pipelines.runner import PipelineRun as PipelineRun
    from gyre.pipelines.runner import StepEvent as StepEvent
    from gyre.pipelines.runner import cancel_run as cancel_run
    from gyre.pipelines.runner import run_pipeline as run_pipeline
    from gyre.pipelines.steps import Step as Step
    from gyre.pipelines.steps import step as step
    from gyre.pipelines.trials import grid as grid
    from gyre.pipelines.trials import run_trials as run_trials
    from gyre.pipelines.triggers import AlertFired as AlertFired
    from gyre.pipelines.triggers import DataVersion as DataVersion
    from gyre.pipelines.triggers import NewData as NewData
    from gyre.pipelines.triggers import Schedule as Schedule
    from gyre.pipelines.triggers import decide_concurrency as decide_concurrency

_getattr, __dir__ = lazy_exports("gyre.pipelines", globals(), _EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:  # ``gyre.gates`` is this package's ``gates`` module
        return import_module(f"gyre.pipelines.{name}")
    return _getattr(name)
