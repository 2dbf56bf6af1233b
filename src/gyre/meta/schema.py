"""The metadata tables. Alembic migrations (``gyre/meta/migrations``) own the real schema;
these definitions must match the latest migration (a test compares them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every dialect; naive datetimes are refused.

    SQLite has no time zone type, so values are stored there as naive UTC and given
    their zone back on read; PostgreSQL stores ``timestamptz``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Gyre stores timezone-aware UTC times only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json = JSON().with_variant(JSONB(), "postgresql")
ID = String(26)  # ULID: 26 characters, sortable by creation time


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Experiment(Base):
    __tablename__ = "experiments"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(256), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, str]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id"), index=True)
    name: Mapped[str] = mapped_column(String(256))
    status: Mapped[str] = mapped_column(String(16), index=True)
    parent_run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True)
    user: Mapped[str] = mapped_column(String(256))
    start_time: Mapped[datetime] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Where the code and its environment came from (captured by gyre.tracking.capture).
    git_commit: Mapped[str | None] = mapped_column(String(64))
    git_diff_hash: Mapped[str | None] = mapped_column(String(64))
    python_version: Mapped[str | None] = mapped_column(String(64))
    packages_hash: Mapped[str | None] = mapped_column(String(64))
    host: Mapped[str | None] = mapped_column(String(256))
    source: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class RunTag(Base):
    __tablename__ = "run_tags"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    # Runs are found by tag value (a pipeline step's cache key, a reproduction's source): a hash
    # index on PostgreSQL, where a long value would not fit a B-tree entry.
    __table_args__ = (Index("ix_run_tags_value", "value", postgresql_using="hash"),)


class Param(Base):
    __tablename__ = "params"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Metric(Base):
    """One point of a metric's history. ``value`` NULL stands for NaN (SQLite has no NaN)."""

    __tablename__ = "metrics"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(250))
    step: Mapped[int] = mapped_column(BigInteger)
    # Milliseconds since the Unix epoch, UTC: a metric history is a dense time series,
    # and an integer keeps bulk inserts cheap on every dialect.
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_metrics_run_key_step", "run_id", "key", "step"),)


class LatestMetric(Base):
    """The point with the highest step (then latest time) of each metric, for search filters."""

    __tablename__ = "latest_metrics"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    step: Mapped[int] = mapped_column(BigInteger)
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_latest_metrics_key_value", "key", "value"),)


class Artifact(Base):
    """A file or directory tree logged to a run, by content digest."""

    __tablename__ = "artifacts"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    is_dir: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RegisteredModel(Base):
    __tablename__ = "registered_models"
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[dict[str, str]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ModelVersion(Base):
    """An immutable model version: a model package (a directory tree in the artifact store)."""

    __tablename__ = "model_versions"
    model_name: Mapped[str] = mapped_column(
        ForeignKey("registered_models.name", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), index=True)
    artifact_path: Mapped[str | None] = mapped_column(String(1024))
    package_digest: Mapped[str] = mapped_column(String(64))
    flavor: Mapped[str] = mapped_column(String(64))
    signature: Mapped[dict[str, Any] | None] = mapped_column(Json)
    metrics: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    dataset_versions: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(32), default="ready")
    created_by: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ModelAlias(Base):
    __tablename__ = "model_aliases"
    model_name: Mapped[str] = mapped_column(
        ForeignKey("registered_models.name", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AliasHistory(Base):
    """Every move of an alias: from which version to which, who, when and why."""

    __tablename__ = "alias_history"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(256), index=True)
    alias: Mapped[str] = mapped_column(String(128))
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(256))
    reason: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Event(Base):
    """The outbox: one row per state change, written in the change's own transaction."""

    __tablename__ = "events"
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    id: Mapped[str] = mapped_column(ID, unique=True)
    type: Mapped[str] = mapped_column(String(128), index=True)
    subject: Mapped[str] = mapped_column(String(1024))
    payload: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditRecord(Base):
    """Who did what to which thing, and when; written with every event."""

    __tablename__ = "audit"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(128))
    subject: Mapped[str] = mapped_column(String(1024), index=True)
    details: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)


class DatasetRecord(Base):
    """A dataset in the catalog: a Delta table in the lake plus what Gyre knows about it."""

    __tablename__ = "datasets"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    keys: Mapped[list[str]] = mapped_column(Json, default=list)
    event_time: Mapped[str | None] = mapped_column(String(256))
    description: Mapped[str] = mapped_column(Text, default="")
    # Arrow schema as [{"name": ..., "type": ...}], fixed by the first version.
    schema: Mapped[list[dict[str, Any]] | None] = mapped_column(Json)
    expectations: Mapped[list[dict[str, Any]] | None] = mapped_column(Json)
    reference_version: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DatasetVersion(Base):
    """One committed ingest: a Delta table version with its statistics and provenance."""

    __tablename__ = "dataset_versions"
    dataset: Mapped[str] = mapped_column(ForeignKey("datasets.name", ondelete="CASCADE"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    rows: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    schema_hash: Mapped[str] = mapped_column(String(64))
    min_event_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    max_event_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(Text)
    offsets: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    actor: Mapped[str] = mapped_column(String(256))
    validation: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    profile: Mapped[dict[str, Any] | None] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class QuarantineRecord(Base):
    """A rejected batch: why it was refused and where its rows were kept for inspection."""

    __tablename__ = "quarantine"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(BigInteger)
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    location: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ConsumerPosition(Base):
    """How far one controller reaction has read the ``events`` outbox.

    ``position`` is the ``seq`` of the last event the reaction is done with (handled, not
    subscribed, or dead-lettered); every event with a smaller ``seq`` is settled for it. The row
    is advanced in the same transaction as the handler's own writes, under a row lock that is
    the controller's lease on the reaction (see ``gyre.controller.consumer``).
    """

    __tablename__ = "consumer_positions"
    reaction: Mapped[str] = mapped_column(String(128), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    # The controller that last advanced the position, for operators; not used for locking.
    holder: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReactionFailure(Base):
    """A reaction's handler raised on an event: retried with backoff, or dead-lettered.

    While ``dead`` is false the reaction's position stays before ``event_seq`` and the event
    is tried again at ``next_attempt_at``; once ``dead`` the position has moved past it and the
    row is the visible record of the event the reaction gave up on.
    """

    __tablename__ = "reaction_failures"
    reaction: Mapped[str] = mapped_column(
        ForeignKey("consumer_positions.reaction", ondelete="CASCADE"), primary_key=True
    )
    event_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[str] = mapped_column(ID)
    event_type: Mapped[str] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text)
    first_failed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_failed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    dead: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class DefinitionRecord(Base):
    """A registered definition (entity, feature view, …) as ``gyre apply`` last wrote it.

    ``version`` counts the changes to it; each change is also an event and an audit row.
    """

    __tablename__ = "definitions"
    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(Json)
    spec_hash: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    """An API key of the serving and control-plane API: its role, rate limit and the SHA-256 of
    its secret (the secret itself is shown once, at creation, and never stored)."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(ID, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str] = mapped_column(String(64))
    rate_per_s: Mapped[float | None] = mapped_column(Float)
    burst: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(256))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# The monitoring and deployment tables live in modules of their own; importing them registers them on Base.
from gyre.meta import deploy_schema as deploy_schema  # noqa: E402
from gyre.meta import monitoring_schema as monitoring_schema  # noqa: E402
