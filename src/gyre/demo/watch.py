"""Following the loop as the platform records it: the ``events`` outbox, read from a position.

Nothing here drives the platform. The controller reacts to alerts, runs the retraining, rolls
the challenger out and promotes it; :class:`Watch` reads the events those steps write (the
same ones the controller consumes), prints each as a timeline line and keeps the instants the
summary needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from gyre.demo.project import DRIFT_RULE, ENDPOINT, MODEL, PIPELINE, QUALITY_RULE
from gyre.demo.timeline import Timeline
from gyre.meta import MetaStore
from gyre.meta.schema import Event

FAILED_DEPLOYMENT = ("deployment.rolled_back", "deployment.rejected")


@dataclass
class Milestones:
    """When each step of the loop happened, as the platform recorded it."""

    drift_at: datetime | None = None
    alert: dict[str, Any] | None = None  # the drift alert's alert.fired payload
    detected_at: datetime | None = None
    quality_alert_at: datetime | None = None  # the live AUC alert fired
    triggered: dict[str, Any] | None = None  # the pipeline.triggered payload of the retrain
    retrained_version: int | None = None
    retrained_at: datetime | None = None  # the retrained version became challenger
    deployment: dict[str, Any] | None = None  # the deployment.started payload
    deployment_started_at: datetime | None = None
    promoted_at: datetime | None = None
    failure: str | None = None  # why the loop cannot close (a rejected model, a rollback)
    skipped: list[str] = field(default_factory=list)


class Watch:
    """Reads new events of ``meta`` on each :meth:`poll` and reports the loop's steps.

    Args:
        meta: the project's metadata store.
        timeline: where the steps are printed.
        runs: ``runs.get(run_id)`` of a client, to read a pipeline run's outcome tags.
    """

    def __init__(self, meta: MetaStore, timeline: Timeline, runs: Any) -> None:
        self.meta = meta
        self.timeline = timeline
        self.runs = runs
        self.seen = Milestones()
        self._position = 0
        self._first_version: int | None = None

    def skip_to_now(self, first_version: int) -> None:
        """Ignore what happened so far (the setup printed itself); ``first_version`` serves."""
        self._first_version = first_version
        with self.meta.read() as s:
            self._position = s.scalar(select(func.max(Event.seq))) or 0

    def poll(self) -> None:
        """Handle every event written since the last poll, in order."""
        with self.meta.read() as s:
            rows = s.scalars(select(Event).where(Event.seq > self._position).order_by(Event.seq)).all()
            events = [(r.seq, r.type, r.subject, dict(r.payload or {}), r.created_at) for r in rows]
        for seq, kind, subject, payload, at in events:
            self._position = seq
            handler = _HANDLERS.get(kind)
            if handler is not None:
                handler(self, subject, payload, at)

    # -- handlers ---------------------------------------------------------------------------

    def _alert_fired(self, subject: str, p: dict[str, Any], at: datetime) -> None:
        details = p.get("details") or {}
        self.timeline.say(f"alert '{p.get('rule')}' fired on {p.get('subject')}: {p.get('message')}", "alert")
        if self.seen.drift_at is None:
            return
        if p.get("rule") == DRIFT_RULE and self.seen.alert is None:
            self.seen.alert, self.seen.detected_at = {**p, "features": details.get("features", [])}, at
        elif p.get("rule") == QUALITY_RULE and self.seen.quality_alert_at is None:
            self.seen.quality_alert_at = at

    def _alert_resolved(self, subject: str, p: dict[str, Any], at: datetime) -> None:
        self.timeline.say(f"alert '{p.get('rule')}' resolved: {p.get('message')}", "ok")

    def _triggered(self, subject: str, p: dict[str, Any], at: datetime) -> None:
        self.timeline.say(
            f"controller starts pipeline '{p.get('pipeline')}' ({p.get('trigger')})",
            "move",
            str(p.get("reason")),
        )
        if p.get("pipeline") == PIPELINE and p.get("alert_id") and self.seen.triggered is None:
            self.seen.triggered = p

    def _skipped(self, subject: str, p: dict[str, Any], at: datetime) -> None:
        self.timeline.say(f"pipeline '{p.get('pipeline')}' not started: {p.get('skipped')}", "warn")
        self.seen.skipped.append(str(p.get("skipped")))

    def _run_ended(self, subject: str, p: dict[str, Any], at: datetime) -> None:
        run = self.runs.get(subject.removeprefix("run:"))
        if run.tags.get("gyre.pipeline") != PIPELINE or run.parent_run_id:
            return
        outcome = run.tags.get("gyre.outcome")
        if run.status != "FINISHED":
            self.seen.failure = (
                f"pipeline run {run.id} ended {run.status}: {(run.error or '').strip()[-300:]}"
            )
            self.timeline.say(f"pipeline run {run.id} {run.status}", "alert", (run.error or "")[-300:])
            return
        for gate in json.loads(run.tags.get("gyre.gates") or "[]"):
            self.timeline.say(f"gate {gate['gate']}: {gate['reason']}", "ok" if gate["passed"] else "alert")
        if outcome != "registered":
            self.seen.failure = (
                f"the retrained model was not registered: {run.tags.get('gyre.outcome.reason')}"
            )
            self.timeline.say(
                f"pipeline run {run.id}: {outcome}", "alert", run.tags.get("gyre.outcome.reason", "")
            )

    def _alias_set(self, subject: str, p: dict[str, Any], at: datetime) -> None:
        if p.get("name") != MODEL:
            return
        version, alias = int(p["to_version"]), p.get("alias")
        self.timeline.say(f"{MODEL} v{version} is now {alias}", "move", str(p.get("reason") or ""))
        if alias == "challenger" and version != self._first_version and self.seen.retrained_version is None:
            self.seen.retrained_version, self.seen.retrained_at = version, at

    def _deployment(self, subject: str, p: dict[str, Any], at: datetime, kind: str) -> None:
        if p.get("endpoint") != ENDPOINT:
            return
        candidate = p.get("candidate_version")
        analysis = (p.get("analysis") or {}).get("summary", "")
        if kind == "deployment.started":
            steps = ", ".join(f"{s:g}%" for s in p.get("steps") or [])
            self.timeline.say(f"{p.get('strategy')} of v{candidate} on '{ENDPOINT}' starts: {steps}", "move")
            if self.seen.deployment is None:
                self.seen.deployment, self.seen.deployment_started_at = p, at
        elif kind == "deployment.step":
            self.timeline.say(
                f"canary step passed; v{candidate} now answers {p.get('weight'):g}% of users",
                "move",
                analysis,
            )
        elif kind == "deployment.promoted":
            self.timeline.say(f"v{candidate} promoted on '{ENDPOINT}'", "ok", analysis)
            if self.seen.promoted_at is None:
                self.seen.promoted_at = at
        elif kind in FAILED_DEPLOYMENT:
            reason = p.get("reason") or analysis
            self.timeline.say(f"deployment of v{candidate}: {kind.split('.')[1]}", "alert", str(reason))
            self.seen.failure = (
                f"the canary of v{candidate} was {kind.split('.')[1].replace('_', ' ')}: {reason}"
            )


def _deployment_handler(kind: str) -> Any:
    return lambda w, subject, p, at: w._deployment(subject, p, at, kind)


_HANDLERS: dict[str, Any] = {
    "alert.fired": Watch._alert_fired,
    "alert.resolved": Watch._alert_resolved,
    "pipeline.triggered": Watch._triggered,
    "pipeline.run_skipped": Watch._skipped,
    "run.finished": Watch._run_ended,
    "run.failed": Watch._run_ended,
    "model.alias_set": Watch._alias_set,
    **{
        kind: _deployment_handler(kind)
        for kind in ("deployment.started", "deployment.step", "deployment.promoted", *FAILED_DEPLOYMENT)
    },
}
