from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from gyre.data import catalog as c
from gyre.errors import AlreadyExists, InvalidArgument, NotFound
from gyre.meta import MetaStore
from gyre.meta.schema import Event

SCHEMA = [{"name": "payment_id", "type": "string"}, {"name": "amount", "type": "double"}]


def test_ensure_dataset_creates_then_updates_only_what_changed(meta: MetaStore) -> None:
    ds, changed = c.ensure_dataset(meta, "payments", keys=["payment_id"], event_time="ts")
    assert changed and ds.keys == ["payment_id"] and ds.latest_version is None
    _, changed = c.ensure_dataset(meta, "payments", keys=["payment_id"], event_time="ts")
    assert not changed
    ds, changed = c.ensure_dataset(meta, "payments", description="card payments")
    assert changed and ds.description == "card payments" and ds.event_time == "ts"
    assert [d.name for d in c.list_datasets(meta)] == ["payments"]


@pytest.mark.parametrize("bad", ["Payments", "1x", "a-b", "../x", "x" * 64])
def test_dataset_names_are_checked(meta: MetaStore, bad: str) -> None:
    with pytest.raises(InvalidArgument, match="Invalid dataset name"):
        c.ensure_dataset(meta, bad)


def test_versions_are_recorded_with_an_event(meta: MetaStore) -> None:
    c.ensure_dataset(meta, "payments", keys=["payment_id"], event_time="ts")
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    v = c.record_version(
        meta,
        "payments",
        0,
        rows=10,
        bytes=100,
        schema=SCHEMA,
        schema_hash="h",
        source="a.csv",
        min_event_time=t0,
        max_event_time=t1,
        validation={"ok": True},
    )
    assert (v.version, v.rows, v.min_event_time, v.actor) == (0, 10, t0, meta.actor)
    c.record_version(meta, "payments", 1, rows=5, bytes=50, schema=SCHEMA, schema_hash="h", source="b.csv")
    assert [x.version for x in c.list_versions(meta, "payments")] == [0, 1]
    assert c.get_version(meta, "payments").version == 1
    assert c.get_dataset(meta, "payments").schema == SCHEMA
    with pytest.raises(AlreadyExists):
        c.record_version(meta, "payments", 1, rows=5, bytes=50, schema=SCHEMA, schema_hash="h", source="b")
    with meta.read() as s:
        events = [e.payload for e in s.scalars(select(Event).where(Event.type == "dataset.version_created"))]
    assert [e["version"] for e in events] == [0, 1]


def test_reference_version_and_lookups(meta: MetaStore) -> None:
    c.ensure_dataset(meta, "payments")
    with pytest.raises(NotFound, match="no versions yet"):
        c.get_version(meta, "payments")
    c.record_version(meta, "payments", 0, rows=1, bytes=1, schema=SCHEMA, schema_hash="h", source="x")
    assert c.set_reference_version(meta, "payments", 0).reference_version == 0
    with pytest.raises(NotFound, match="has no version 4; it has: 0"):
        c.set_reference_version(meta, "payments", 4)
    with pytest.raises(NotFound, match="Did you mean 'payments'"):
        c.get_dataset(meta, "payment")


def test_quarantine(meta: MetaStore) -> None:
    q = c.record_quarantine(
        meta,
        "payments",
        source="bad.csv",
        rows=3,
        reasons=[{"column": "amount", "check": "type"}],
        location=None,
    )
    assert c.get_quarantine(meta, q.id).reasons == [{"column": "amount", "check": "type"}]
    assert [x.id for x in c.list_quarantine(meta, "payments")] == [q.id]
    assert c.list_quarantine(meta, "other") == []
    with pytest.raises(NotFound):
        c.get_quarantine(meta, "nope")
