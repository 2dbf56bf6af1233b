"""The deployments table: one row per rollout of a model version to an endpoint.

Imported by :mod:`gyre.meta.schema` so that ``Base.metadata`` holds it; migration 0007
creates it. At most one deployment per endpoint is ``running`` (a partial unique index).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from gyre.meta.schema import ID, Base, Json, UTCDateTime


class DeploymentRecord(Base):
    """A rollout of ``candidate_version`` of ``model_name`` to ``endpoint``.

    ``weight`` is the candidate's current share of entities in percent (for a shadow
    deployment, 0: it answers nothing); ``step`` indexes ``steps``; ``history`` lists every
    step taken with its analysis.
    """

    __tablename__ = "deployments"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(256), index=True)
    model_name: Mapped[str] = mapped_column(String(256))
    alias: Mapped[str] = mapped_column(String(256))
    baseline_version: Mapped[int] = mapped_column(Integer)
    candidate_version: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[str] = mapped_column(String(32))
    steps: Mapped[list[float]] = mapped_column(Json, default=list)
    step: Mapped[int] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Float)
    interval_s: Mapped[float] = mapped_column(Float)
    checks: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    history: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    actor: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    step_started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(
            "ux_deployments_running",
            "endpoint",
            unique=True,
            sqlite_where=text("state = 'running'"),
            postgresql_where=text("state = 'running'"),
        ),
    )
