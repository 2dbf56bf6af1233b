"""The ``deployments`` table as plain records."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gyre.errors import NotFound, did_you_mean
from gyre.meta import MetaStore
from gyre.meta.deploy_schema import DeploymentRecord
from gyre.serving.routing import Split

RUNNING = "running"
PROMOTED = "promoted"  # the candidate took the alias
ROLLED_BACK = "rolled_back"  # traffic went back to the baseline (before or after promotion)
COMPLETED = "completed"  # a shadow deployment passed its analysis (nothing promoted)
REJECTED = "rejected"  # a shadow deployment failed its analysis
STATES = (RUNNING, PROMOTED, ROLLED_BACK, COMPLETED, REJECTED)


@dataclass(frozen=True)
class DeploymentInfo:
    """One deployment, as ``gyre deployments show`` prints it."""

    id: str
    endpoint: str
    model_name: str
    alias: str
    baseline_version: int
    candidate_version: int
    strategy: str
    steps: list[float]
    step: int
    weight: float
    interval_s: float
    checks: dict[str, Any]
    state: str
    reason: str
    history: list[dict[str, Any]]
    actor: str
    created_at: datetime
    step_started_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def split(self) -> Split:
        """The traffic split servers apply while it runs."""
        return Split(
            baseline=self.baseline_version,
            candidate=self.candidate_version,
            weight=self.weight,
            shadow=self.strategy == "shadow",
            deployment=self.id,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def info(r: DeploymentRecord) -> DeploymentInfo:
    return DeploymentInfo(
        id=r.id,
        endpoint=r.endpoint,
        model_name=r.model_name,
        alias=r.alias,
        baseline_version=r.baseline_version,
        candidate_version=r.candidate_version,
        strategy=r.strategy,
        steps=list(r.steps),
        step=r.step,
        weight=r.weight,
        interval_s=r.interval_s,
        checks=dict(r.checks),
        state=r.state,
        reason=r.reason,
        history=list(r.history),
        actor=r.actor,
        created_at=r.created_at,
        step_started_at=r.step_started_at,
        updated_at=r.updated_at,
        finished_at=r.finished_at,
    )


def running(s: Session, endpoint: str | None = None) -> list[DeploymentRecord]:
    q = select(DeploymentRecord).where(DeploymentRecord.state == RUNNING)
    if endpoint is not None:
        q = q.where(DeploymentRecord.endpoint == endpoint)
    return list(s.scalars(q.order_by(DeploymentRecord.id)))


def list_deployments(
    meta: MetaStore, endpoint: str | None = None, *, state: str | None = None, limit: int = 100
) -> list[DeploymentInfo]:
    """Deployments, newest first."""
    q = select(DeploymentRecord)
    if endpoint is not None:
        q = q.where(DeploymentRecord.endpoint == endpoint)
    if state is not None:
        q = q.where(DeploymentRecord.state == state)
    with meta.read() as s:
        return [info(r) for r in s.scalars(q.order_by(DeploymentRecord.id.desc()).limit(limit))]


def get_deployment(meta: MetaStore, ref: str) -> DeploymentInfo:
    """A deployment by id, or an endpoint's newest deployment by the endpoint's name."""
    with meta.read() as s:
        r = s.get(DeploymentRecord, ref)
        if r is None:
            r = s.scalars(
                select(DeploymentRecord)
                .where(DeploymentRecord.endpoint == ref)
                .order_by(DeploymentRecord.id.desc())
                .limit(1)
            ).first()
        if r is None:
            endpoints = list(s.scalars(select(DeploymentRecord.endpoint).distinct()))
            raise NotFound(
                f"No deployment with id or endpoint '{ref}'."
                + did_you_mean(ref, endpoints)
                + " 'gyre deployments list' shows them."
            )
        return info(r)
