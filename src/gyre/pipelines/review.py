"""Human review of models that passed their gates: ``gyre models approve | reject NAME VERSION``.

A pipeline declared with ``review=True`` registers its model version without an alias and
with status ``pending_review`` (so ``models:/NAME/latest`` does not resolve to it), and tags
its run ``gyre.review=pending``. The decision is an event in the outbox
(``model.review_approved`` or ``model.review_rejected``, subject ``model:NAME/VERSION``,
with who decided and why in the audit log), written in one transaction with the version's
new status (``ready`` or ``rejected``); approving also points ``challenger`` at the version.
A review's state is therefore the pending run plus its latest decision event: a version's
package and fields stay immutable (only its status moves) and finished runs untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from gyre.errors import Conflict, NotFound
from gyre.meta import MetaStore
from gyre.meta.schema import Event, ModelVersion
from gyre.models import registry
from gyre.tracking import service as tracking

APPROVED = "model.review_approved"
REJECTED = "model.review_rejected"
_STATES = {APPROVED: "approved", REJECTED: "rejected"}


@dataclass
class Review:
    """One held model version and where its review stands."""

    model: str
    version: int
    run_id: str
    pipeline: str
    state: str  # pending | approved | rejected
    reason: str = ""
    decided_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "state": self.state,
            "reason": self.reason,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
        }


def list_reviews(meta: MetaStore, state: str | None = None) -> list[Review]:
    """Every model version held for review (newest first), optionally only those in ``state``."""
    runs = tracking.list_runs(meta, filter="tags.`gyre.review` = 'pending'", max_results=1000)
    reviews = []
    for run in runs:
        name, _, version = run.tags.get("gyre.model", "").rpartition("/")
        if not name or not version.isdigit():
            continue
        review = Review(name, int(version), run.id, run.tags.get("gyre.pipeline", ""), "pending")
        _apply_decision(meta, review)
        if state is None or review.state == state:
            reviews.append(review)
    return reviews


def get_review(meta: MetaStore, name: str, version: int) -> Review:
    """The review of ``name`` version ``version``.

    Raises:
        NotFound: the version was not held for review (or does not exist).
    """
    runs = tracking.list_runs(
        meta,
        filter=f"tags.`gyre.review` = 'pending' and tags.`gyre.model` = '{name}/{version}'",
        max_results=1,
    )
    if not runs:
        registry.get_model_version(meta, name, version)  # NotFound if there is no such version
        raise NotFound(
            f"Model '{name}' version {version} is not held for review; only versions registered by a "
            "pipeline declared with review=True are. 'gyre models show "
            f"{name}' lists its versions."
        )
    run = runs[0]
    review = Review(name, version, run.id, run.tags.get("gyre.pipeline", ""), "pending")
    _apply_decision(meta, review)
    return review


def approve(meta: MetaStore, name: str, version: int, reason: str = "") -> Review:
    """Approve a held version: ``challenger`` points at it, and the decision is recorded.

    Raises:
        NotFound: not held for review.
        Conflict: already decided.
    """
    review = _pending(meta, name, version)
    registry.set_alias(meta, name, "challenger", version, f"review approved: {reason}".rstrip(": "))
    return _decide(meta, review, APPROVED, reason)


def reject(meta: MetaStore, name: str, version: int, reason: str = "") -> Review:
    """Reject a held version: it keeps no alias, and the decision is recorded."""
    return _decide(meta, _pending(meta, name, version), REJECTED, reason)


def _pending(meta: MetaStore, name: str, version: int) -> Review:
    review = get_review(meta, name, version)
    if review.state != "pending":
        raise Conflict(
            f"Model '{name}' version {version} was already {review.state}"
            + (f" ({review.reason})" if review.reason else "")
            + "; a review is decided once."
        )
    return review


def _decide(meta: MetaStore, review: Review, event_type: str, reason: str) -> Review:
    with meta.write() as uow:
        version = uow.session.get(ModelVersion, (review.model, review.version))
        if version is not None:
            version.status = registry.READY if event_type == APPROVED else registry.REJECTED
        uow.record(
            event_type,
            f"model:{review.model}/{review.version}",
            {"name": review.model, "version": review.version, "run_id": review.run_id, "reason": reason},
        )
    return get_review(meta, review.model, review.version)


def _apply_decision(meta: MetaStore, review: Review) -> None:
    with meta.read() as s:
        event = s.scalars(
            select(Event)
            .where(Event.type.in_(list(_STATES)), Event.subject == f"model:{review.model}/{review.version}")
            .order_by(Event.seq.desc())
            .limit(1)
        ).first()
    if event is not None:
        review.state = _STATES[event.type]
        review.reason = str((event.payload or {}).get("reason", ""))
        review.decided_at = event.created_at
