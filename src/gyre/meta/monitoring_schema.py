"""The monitoring tables: reference profiles, drift and quality time series, feedback, alerts.

Imported by :mod:`gyre.meta.schema` so that ``Base.metadata`` holds them; migration 0006
creates them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gyre.meta.schema import ID, Base, Json, UTCDateTime


class ModelReference(Base):
    """A reference profile of a model version (``kind``: ``training`` data or ``predictions``):
    a Gyre profile as JSON in the artifact store, by digest."""

    __tablename__ = "model_references"
    model_name: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[list[str]] = mapped_column(Json, default=list)
    source: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DriftReportRecord(Base):
    """One drift comparison: a window of an endpoint's predictions for one model version
    against its reference, or one dataset version against another. Ordered by ``window_end``
    they are the drift time series."""

    __tablename__ = "drift_reports"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    endpoint: Mapped[str | None] = mapped_column(String(256))
    model_name: Mapped[str | None] = mapped_column(String(256))
    model_version: Mapped[int | None] = mapped_column(Integer)
    dataset: Mapped[str | None] = mapped_column(String(64), index=True)
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int | None] = mapped_column(Integer)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rows: Mapped[int] = mapped_column(BigInteger)
    tested: Mapped[int] = mapped_column(Integer)
    drifted: Mapped[int] = mapped_column(Integer)
    insufficient: Mapped[int] = mapped_column(Integer)
    results: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)

    __table_args__ = (Index("ix_drift_reports_endpoint_window", "endpoint", "model_version", "window_end"),)


class QualityReportRecord(Base):
    """Live quality of one model version behind an endpoint over a window, from the labels
    received so far (``labelled`` of ``predictions``)."""

    __tablename__ = "quality_reports"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(256))
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    predictions: Mapped[int] = mapped_column(BigInteger)
    labelled: Mapped[int] = mapped_column(BigInteger)
    task: Mapped[str] = mapped_column(String(32))
    metrics: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)

    __table_args__ = (Index("ix_quality_reports_endpoint_window", "endpoint", "model_version", "window_end"),)


class FeedbackRecord(Base):
    """The true label of one logged prediction, joined to it when it arrived.

    One row per prediction: a second label is refused unless sent as a correction, which
    replaces the label and counts ``revision`` up.
    """

    __tablename__ = "feedback"
    prediction_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(256))
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[int] = mapped_column(Integer)
    predicted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    prediction: Mapped[Any] = mapped_column(Json, nullable=True)
    label: Mapped[Any] = mapped_column(Json)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    source: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_feedback_endpoint_predicted_at", "endpoint", "predicted_at"),)


class AlertState(Base):
    """Where one alert rule stands for one subject (an endpoint, a feature view): ``firing``
    or ``resolved``, and when it last notified (for the cooldown)."""

    __tablename__ = "alert_states"
    rule: Mapped[str] = mapped_column(String(256), primary_key=True)
    subject: Mapped[str] = mapped_column(String(512), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_evaluated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    details: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


class AlertHistoryRecord(Base):
    """Every change of an alert's state (``firing``, ``resolved``), with what its actions did."""

    __tablename__ = "alert_history"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    rule: Mapped[str] = mapped_column(String(256), index=True)
    subject: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
