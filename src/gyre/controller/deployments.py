"""Rollouts the controller drives: a new challenger rolls out, steps advance, alerts roll back.

One reaction, ``deployments.rollouts``, on three kinds of events:

- ``schedule.fired`` of the ``deployments`` schedule (every few seconds): every running
  deployment whose step has been held for its interval is analysed and moved (next step,
  promote, roll back: :func:`gyre.deploy.rollout.tick`), and every endpoint whose policy is
  ``on_challenger="auto"`` and whose model has a ``challenger`` no deployment has tried yet
  gets a rollout. That check is level-triggered on purpose: a challenger registered while no
  controller ran, or whose event was handled by a controller that died before starting the
  rollout, still rolls out at the next tick.
- ``model.alias_set`` to ``challenger``: the same, at once rather than at the next tick.
- ``deployment.rollback_requested`` (an alert's ``Rollback`` action): the endpoint's traffic
  goes back (:func:`gyre.deploy.rollout.rollback`).

The work runs after the controller's transaction commits (``UnitOfWork.after_commit``): a
rollout fetches and loads the candidate's package, which must hold no transaction, and the
deploy functions write in transactions of their own (SQLite has one writer). Every move is
conditional on the state it was decided from, so controllers ticking at once do not repeat it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from gyre.controller.reactions import EventRecord, Reaction
from gyre.controller.schedules import SCHEDULE_FIRED, Schedule, every
from gyre.data.lake import Lake
from gyre.deploy import rollout
from gyre.errors import GyreError
from gyre.meta import MetaStore, UnitOfWork
from gyre.store import ArtifactStore

log = logging.getLogger(__name__)

DEPLOYMENTS_SCHEDULE = "deployments"
ROLLOUTS = "deployments.rollouts"


@dataclass
class Deployer:
    """What the rollouts need: the stores, and where model packages are cached."""

    meta: MetaStore
    store: ArtifactStore
    lake: Lake
    cache_dir: Path

    def reconcile(self) -> None:
        """Advance due deployments and start rollouts for untried challengers; failures are
        logged (the next tick tries again), never raised into the controller."""
        try:
            rollout.tick(self.meta, self.lake)
            rollout.start_pending_challengers(self.meta, self.store, cache_dir=self.cache_dir)
        except Exception:
            log.exception("Driving the deployments failed; the next tick tries again")

    def roll_back(self, endpoint: str, reason: str) -> None:
        try:
            d = rollout.rollback(self.meta, endpoint, reason)
            log.warning("Rolled back endpoint '%s' to version %s: %s", endpoint, d.baseline_version, reason)
        except GyreError as exc:
            log.warning(
                "Rollback of endpoint '%s' requested (%s) but not done: %s", endpoint, reason, exc.message
            )


def deployments_schedule(interval: timedelta = timedelta(seconds=5)) -> Schedule:
    """The controller schedule whose ticks analyse and advance running deployments."""
    return Schedule(DEPLOYMENTS_SCHEDULE, every(interval))


def deployment_reaction(deployer: Deployer) -> Reaction:
    """Drive rollouts on the ``deployments`` schedule, on new challengers and on rollback
    requests; the work runs once the controller's transaction has committed."""

    def handle(uow: UnitOfWork, event: EventRecord) -> None:
        if event.type == "deployment.rollback_requested":
            endpoint = str(event.payload.get("endpoint", ""))
            reason = str(event.payload.get("reason") or "an alert asked for it")
            uow.after_commit.append(lambda: deployer.roll_back(endpoint, reason))
            return
        if event.type == SCHEDULE_FIRED and event.payload.get("schedule") != DEPLOYMENTS_SCHEDULE:
            return
        if event.type == "model.alias_set" and event.payload.get("alias") != rollout.CHALLENGER:
            return
        if deployer.reconcile not in uow.after_commit:  # several in one batch: once is enough
            uow.after_commit.append(deployer.reconcile)

    return Reaction(
        ROLLOUTS,
        [SCHEDULE_FIRED, "model.alias_set", "deployment.rollback_requested"],
        handle,
        start="now",
        max_attempts=2,
        description="Roll out new challengers, advance canaries, and roll back on request.",
    )
