"""The reactions Gyre itself runs: how one stage of the loop follows another."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from gyre.controller.deployments import deployment_reaction, deployments_schedule
from gyre.controller.pipelines import pipeline_reaction, pipelines_schedule
from gyre.controller.reactions import EventRecord, Reaction
from gyre.controller.schedules import SCHEDULE_FIRED, Schedule, every
from gyre.meta import UnitOfWork

if TYPE_CHECKING:
    from gyre.controller.deployments import Deployer
    from gyre.controller.pipelines import PipelineLauncher
    from gyre.features.store import FeatureStore
    from gyre.monitoring.engine import AlertEngine

log = logging.getLogger(__name__)

MATERIALIZE = "features.materialize"


def materialize_reaction(features: FeatureStore) -> Reaction:
    """On ``dataset.version_created``: bring the online views over that dataset up to date.

    Incremental from each view's watermark, so one call catches up with every version
    committed since (a burst of pushed versions costs one read of the new files). The online
    store's writes are idempotent, so a retry after a crash repeats nothing visible.
    """

    def handle(uow: UnitOfWork, event: EventRecord) -> None:
        dataset = event.payload.get("dataset")
        views = [v.name for v in features.views().values() if v.online and v.source == dataset]
        if views:
            features.materialize(views)

    return Reaction(
        MATERIALIZE,
        "dataset.version_created",
        handle,
        description="Materialize online feature views when their dataset gets a new version.",
    )


MONITOR_CHECK = "monitoring.check"
MONITOR_SCHEDULE = "monitors"


def monitor_reaction(engine: AlertEngine) -> Reaction:
    """On the ``monitors`` schedule: evaluate the alert rules (drift, quality, latency, stale
    features) and run the actions of those that fire.

    The engine deduplicates and keeps cooldowns in the metadata store, so a retried
    evaluation does not fire an incident twice.
    """

    def handle(uow: UnitOfWork, event: EventRecord) -> None:
        if event.payload.get("schedule") != MONITOR_SCHEDULE:
            return
        # The engine writes alerts in transactions of its own, so it runs once the controller's
        # transaction has committed (SQLite allows one writer): at most once per tick, which a
        # periodic check can afford — the next tick evaluates again.
        if not uow.after_commit:  # several ticks in one batch: evaluating once is enough
            uow.after_commit.append(lambda: _evaluate(engine))

    return Reaction(
        MONITOR_CHECK,
        SCHEDULE_FIRED,
        handle,
        start="now",
        max_attempts=2,
        description="Evaluate alert rules on the monitors schedule.",
    )


def _evaluate(engine: AlertEngine) -> None:
    try:
        engine.evaluate()
    except Exception:  # the next tick tries again; the log says why this one failed
        log.exception("evaluating alert rules failed")


def default_reactions(
    features: FeatureStore,
    engine: AlertEngine | None = None,
    pipelines: PipelineLauncher | None = None,
    deployer: Deployer | None = None,
) -> list[Reaction]:
    """The reactions ``gyre controller`` and ``gyre up`` run."""
    reactions = [materialize_reaction(features)]
    if engine is not None:
        reactions.append(monitor_reaction(engine))
    if pipelines is not None:
        reactions.append(pipeline_reaction(pipelines))
    if deployer is not None:
        reactions.append(deployment_reaction(deployer))
    return reactions


def default_schedules(monitor_every: timedelta = timedelta(minutes=1)) -> list[Schedule]:
    """The schedules ``gyre controller`` and ``gyre up`` keep."""
    return [Schedule(MONITOR_SCHEDULE, every(monitor_every)), pipelines_schedule(), deployments_schedule()]
