"""The definitions registry: what ``gyre apply`` registered, by kind and name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from gyre.errors import NotFound, did_you_mean
from gyre.ids import utcnow
from gyre.meta.db import MetaStore
from gyre.meta.schema import DefinitionRecord


@dataclass(frozen=True)
class Registered:
    """One registered definition."""

    kind: str
    name: str
    spec: dict[str, Any]
    spec_hash: str
    version: int
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "spec_hash": self.spec_hash,
            "spec": self.spec,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


@dataclass(frozen=True)
class Change:
    """One step of a plan: ``create``, ``update`` or ``delete`` a definition."""

    action: str
    kind: str
    name: str
    spec: dict[str, Any] | None = None
    spec_hash: str | None = None
    fields: tuple[str, ...] = ()


def list_registered(meta: MetaStore, kind: str | None = None) -> list[Registered]:
    with meta.read() as s:
        query = select(DefinitionRecord).order_by(DefinitionRecord.kind, DefinitionRecord.name)
        if kind is not None:
            query = query.where(DefinitionRecord.kind == kind)
        return [_info(r) for r in s.scalars(query)]


def get_registered(meta: MetaStore, kind: str, name: str) -> Registered:
    with meta.read() as s:
        rec = s.get(DefinitionRecord, (kind, name))
        if rec is None:
            names = list(s.scalars(select(DefinitionRecord.name).where(DefinitionRecord.kind == kind)))
            raise NotFound(
                f"No {kind.replace('_', ' ')} named '{name}' is registered; run 'gyre apply' after "
                "declaring it in the project's definitions." + did_you_mean(name, names)
            )
        return _info(rec)


def apply_changes(meta: MetaStore, changes: list[Change]) -> None:
    """Write ``changes`` in one transaction, each with a ``definition.*`` event."""
    with meta.write() as uow:
        s = uow.session
        now = utcnow()
        for c in changes:
            rec = s.get(DefinitionRecord, (c.kind, c.name))
            subject = f"{c.kind}:{c.name}"
            if c.action == "delete":
                if rec is not None:
                    s.delete(rec)
                    uow.record("definition.deleted", subject, {"kind": c.kind, "name": c.name})
                continue
            assert c.spec is not None and c.spec_hash is not None
            if rec is None:
                rec = DefinitionRecord(
                    kind=c.kind,
                    name=c.name,
                    spec=c.spec,
                    spec_hash=c.spec_hash,
                    version=1,
                    created_at=now,
                    updated_at=now,
                )
                s.add(rec)
            elif rec.spec_hash != c.spec_hash:
                rec.spec, rec.spec_hash, rec.version, rec.updated_at = (
                    c.spec,
                    c.spec_hash,
                    rec.version + 1,
                    now,
                )
            else:
                continue
            uow.record(
                f"definition.{'created' if rec.version == 1 else 'updated'}",
                subject,
                {"kind": c.kind, "name": c.name, "version": rec.version, "spec_hash": c.spec_hash},
            )


def _info(r: DefinitionRecord) -> Registered:
    return Registered(r.kind, r.name, r.spec, r.spec_hash, r.version, r.created_at, r.updated_at)
