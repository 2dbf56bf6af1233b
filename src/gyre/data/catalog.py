"""The dataset catalog in the metadata store: datasets, their versions, and quarantined batches.

The Delta table holds the rows; the catalog holds what Gyre knows about each committed
version (rows, bytes, schema hash, event-time range, source, who, validation summary,
profile). Recording a version emits ``dataset.version_created`` in the same transaction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gyre.data.lake import check_dataset_name
from gyre.errors import AlreadyExists, NotFound, did_you_mean
from gyre.ids import new_id, utcnow
from gyre.meta import MetaStore
from gyre.meta.schema import DatasetRecord, DatasetVersion, QuarantineRecord


@dataclass
class DatasetInfo:
    name: str
    keys: list[str]
    event_time: str | None
    description: str
    schema: list[dict[str, Any]] | None
    expectations: list[dict[str, Any]] | None
    reference_version: int | None
    created_at: datetime
    updated_at: datetime
    latest_version: int | None = None


@dataclass
class DatasetVersionInfo:
    dataset: str
    version: int
    rows: int
    bytes: int
    schema_hash: str
    source: str
    actor: str
    created_at: datetime
    min_event_time: datetime | None = None
    max_event_time: datetime | None = None
    offsets: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] | None = None


@dataclass
class QuarantineInfo:
    id: str
    dataset: str
    source: str
    rows: int
    reasons: list[dict[str, Any]]
    location: str | None
    actor: str
    created_at: datetime


# -- datasets ------------------------------------------------------------------------------


def ensure_dataset(
    meta: MetaStore,
    name: str,
    *,
    keys: list[str] | None = None,
    event_time: str | None = None,
    description: str | None = None,
    expectations: list[dict[str, Any]] | None = None,
) -> tuple[DatasetInfo, bool]:
    """Create the dataset or update its declared fields; returns it and whether anything changed."""
    check_dataset_name(name)
    with meta.write() as uow:
        s = uow.session
        rec = s.get(DatasetRecord, name)
        now = utcnow()
        if rec is None:
            rec = DatasetRecord(
                name=name,
                keys=list(keys or []),
                event_time=event_time,
                description=description or "",
                schema=None,
                expectations=expectations,
                reference_version=None,
                created_at=now,
                updated_at=now,
            )
            s.add(rec)
            uow.record("dataset.created", f"dataset:{name}", {"keys": rec.keys, "event_time": event_time})
            changed = True
        else:
            updates = {
                k: v
                for k, v in {
                    "keys": list(keys) if keys is not None else None,
                    "event_time": event_time,
                    "description": description,
                    "expectations": expectations,
                }.items()
                if v is not None and getattr(rec, k) != v
            }
            for k, v in updates.items():
                setattr(rec, k, v)
            changed = bool(updates)
            if changed:
                rec.updated_at = now
                uow.record("dataset.updated", f"dataset:{name}", {"changed": sorted(updates)})
        s.flush()
        return _dataset_info(s, rec), changed


def get_dataset(meta: MetaStore, name: str) -> DatasetInfo:
    with meta.read() as s:
        return _dataset_info(s, _find(s, name))


def list_datasets(meta: MetaStore) -> list[DatasetInfo]:
    with meta.read() as s:
        return [_dataset_info(s, r) for r in s.scalars(select(DatasetRecord).order_by(DatasetRecord.name))]


def set_reference_version(meta: MetaStore, name: str, version: int | None) -> DatasetInfo:
    """Pin the version new batches are compared with for skew (``None``: the previous version)."""
    with meta.write() as uow:
        rec = _find(uow.session, name)
        if version is not None:
            _get_version(uow.session, name, version)
        rec.reference_version, rec.updated_at = version, utcnow()
        uow.record("dataset.reference_set", f"dataset:{name}", {"version": version})
        return _dataset_info(uow.session, rec)


# -- versions ------------------------------------------------------------------------------


def describe_schema(schema: pa.Schema) -> tuple[list[dict[str, Any]], str]:
    """A schema as the catalog stores it (``[{"name", "type"}]``) and its sha256."""
    described = [{"name": f.name, "type": str(f.type)} for f in schema]
    return described, hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def record_version(
    meta: MetaStore,
    name: str,
    version: int,
    *,
    rows: int,
    bytes: int,
    schema: list[dict[str, Any]],
    schema_hash: str,
    source: str,
    min_event_time: datetime | None = None,
    max_event_time: datetime | None = None,
    offsets: dict[str, Any] | None = None,
    validation: dict[str, Any] | None = None,
    profile: dict[str, Any] | None = None,
    actor: str | None = None,
) -> DatasetVersionInfo:
    """Record a committed Delta version; emits ``dataset.version_created``."""
    with meta.write(actor) as uow:
        s = uow.session
        rec = _find(s, name)
        if s.get(DatasetVersion, (name, version)) is not None:
            raise AlreadyExists(f"Dataset '{name}' already has version {version} in the catalog.")
        if rec.schema is None:
            rec.schema = schema
        row = DatasetVersion(
            dataset=name,
            version=version,
            rows=rows,
            bytes=bytes,
            schema_hash=schema_hash,
            min_event_time=min_event_time,
            max_event_time=max_event_time,
            source=source,
            offsets=offsets or {},
            actor=uow.actor,
            validation=validation or {},
            profile=profile,
            created_at=utcnow(),
        )
        s.add(row)
        rec.updated_at = row.created_at
        uow.record(
            "dataset.version_created",
            f"dataset:{name}@{version}",
            {"dataset": name, "version": version, "rows": rows, "source": source},
        )
        return _version_info(row)


def list_versions(meta: MetaStore, name: str) -> list[DatasetVersionInfo]:
    with meta.read() as s:
        _find(s, name)
        q = select(DatasetVersion).where(DatasetVersion.dataset == name).order_by(DatasetVersion.version)
        return [_version_info(v) for v in s.scalars(q)]


def get_version(meta: MetaStore, name: str, version: int | None = None) -> DatasetVersionInfo:
    """A version's record; ``None`` means the latest."""
    with meta.read() as s:
        _find(s, name)
        if version is None:
            q = select(DatasetVersion).where(DatasetVersion.dataset == name)
            latest = s.scalars(q.order_by(DatasetVersion.version.desc()).limit(1)).first()
            if latest is None:
                raise NotFound(f"Dataset '{name}' has no versions yet; 'gyre ingest {name} FILE' adds one.")
            return _version_info(latest)
        return _version_info(_get_version(s, name, version))


# -- quarantine ----------------------------------------------------------------------------


def record_quarantine(
    meta: MetaStore,
    name: str,
    *,
    source: str,
    rows: int,
    reasons: list[dict[str, Any]],
    location: str | None,
    actor: str | None = None,
) -> QuarantineInfo:
    """Record a rejected batch; emits ``dataset.batch_quarantined``."""
    check_dataset_name(name)
    with meta.write(actor) as uow:
        rec = QuarantineRecord(
            id=new_id(),
            dataset=name,
            source=source,
            rows=rows,
            reasons=reasons,
            location=location,
            actor=uow.actor,
            created_at=utcnow(),
        )
        uow.session.add(rec)
        uow.record(
            "dataset.batch_quarantined",
            f"dataset:{name}",
            {"quarantine_id": rec.id, "rows": rows, "source": source, "reasons": len(reasons)},
        )
        return _quarantine_info(rec)


def list_quarantine(meta: MetaStore, dataset: str | None = None) -> list[QuarantineInfo]:
    with meta.read() as s:
        q = select(QuarantineRecord)
        if dataset is not None:
            q = q.where(QuarantineRecord.dataset == dataset)
        return [_quarantine_info(r) for r in s.scalars(q.order_by(QuarantineRecord.id.desc()))]


def get_quarantine(meta: MetaStore, quarantine_id: str) -> QuarantineInfo:
    with meta.read() as s:
        rec = s.get(QuarantineRecord, quarantine_id)
        if rec is None:
            raise NotFound(f"No quarantined batch {quarantine_id}; 'gyre quarantine list' shows them.")
        return _quarantine_info(rec)


# -- helpers -------------------------------------------------------------------------------


def _find(s: Session, name: str) -> DatasetRecord:
    rec = s.get(DatasetRecord, name)
    if rec is None:
        names = list(s.scalars(select(DatasetRecord.name)))
        raise NotFound(
            f"Dataset '{name}' does not exist; 'gyre datasets list' shows the datasets."
            + did_you_mean(name, names)
        )
    return rec


def _get_version(s: Session, name: str, version: int) -> DatasetVersion:
    row = s.get(DatasetVersion, (name, version))
    if row is None:
        known = list(s.scalars(select(DatasetVersion.version).where(DatasetVersion.dataset == name)))
        listed = ", ".join(map(str, sorted(known))) or "none"
        raise NotFound(f"Dataset '{name}' has no version {version}; it has: {listed}.")
    return row


def _dataset_info(s: Session, r: DatasetRecord) -> DatasetInfo:
    latest = s.scalar(select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset == r.name))
    return DatasetInfo(
        name=r.name,
        keys=list(r.keys or []),
        event_time=r.event_time,
        description=r.description,
        schema=r.schema,
        expectations=r.expectations,
        reference_version=r.reference_version,
        created_at=r.created_at,
        updated_at=r.updated_at,
        latest_version=latest,
    )


def _version_info(v: DatasetVersion) -> DatasetVersionInfo:
    return DatasetVersionInfo(
        dataset=v.dataset,
        version=v.version,
        rows=v.rows,
        bytes=v.bytes,
        schema_hash=v.schema_hash,
        source=v.source,
        actor=v.actor,
        created_at=v.created_at,
        min_event_time=v.min_event_time,
        max_event_time=v.max_event_time,
        offsets=dict(v.offsets or {}),
        validation=dict(v.validation or {}),
        profile=v.profile,
    )


def _quarantine_info(r: QuarantineRecord) -> QuarantineInfo:
    return QuarantineInfo(
        r.id, r.dataset, r.source, r.rows, list(r.reasons or []), r.location, r.actor, r.created_at
    )
