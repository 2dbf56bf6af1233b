from datetime import datetime

import pytest
from sqlalchemy import select, text

from gyre.errors import AlreadyExists, BackendUnavailable, SchemaOutdated
from gyre.meta import MetaStore
from gyre.meta.db import SCHEMA_REVISION, alembic_config
from gyre.meta.schema import AuditRecord, Base, Event, Experiment


def test_schema_revision_constant_is_the_migrations_head() -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_REVISION


def test_migrations_match_the_models(meta: MetaStore) -> None:
    """The Alembic migrations create exactly the tables the models declare (no pending diff)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    meta.ensure_schema()
    with meta.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_fresh_database_is_migrated_on_first_use(meta: MetaStore) -> None:
    with meta.read() as s:
        assert s.execute(text("SELECT version_num FROM alembic_version")).scalar() == SCHEMA_REVISION


def test_older_revision_asks_for_upgrade(meta_url: str) -> None:
    first = MetaStore(meta_url)
    first.ensure_schema()
    with first.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    first.close()
    stale = MetaStore(meta_url)
    try:
        with pytest.raises(SchemaOutdated, match="gyre db upgrade"):
            stale.ensure_schema()
    finally:
        stale.close()


def test_record_writes_event_and_audit_in_the_same_transaction(meta: MetaStore) -> None:
    with meta.write(actor="alice") as uow:
        uow.record("thing.created", "thing:1", {"n": 1})
    with pytest.raises(RuntimeError), meta.write() as uow:
        uow.record("thing.created", "thing:2", {})
        raise RuntimeError("boom")
    with meta.read() as s:
        events = s.scalars(select(Event)).all()
        audits = s.scalars(select(AuditRecord)).all()
    assert [e.subject for e in events] == ["thing:1"]
    assert [(a.actor, a.action, a.subject, a.details) for a in audits] == [
        ("alice", "thing.created", "thing:1", {"n": 1})
    ]
    assert events[0].created_at.tzinfo is not None
    assert events[0].created_at.utcoffset().total_seconds() == 0


def test_naive_datetimes_are_refused(meta: MetaStore) -> None:
    with pytest.raises(Exception, match="naive datetime"), meta.write() as uow:
        uow.session.add(
            Experiment(id="x" * 26, name="n", description="", tags={}, created_at=datetime(2026, 1, 1))
        )


def test_integrity_error_becomes_already_exists(meta: MetaStore) -> None:
    from gyre.ids import new_id, utcnow

    with meta.write() as uow:
        uow.session.add(Experiment(id=new_id(), name="dup", description="", tags={}, created_at=utcnow()))
    with pytest.raises(AlreadyExists), meta.write() as uow:
        uow.session.add(Experiment(id=new_id(), name="dup", description="", tags={}, created_at=utcnow()))


def test_unreachable_postgres_is_backend_unavailable() -> None:
    store = MetaStore("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(BackendUnavailable, match="Cannot reach the metadata database"):
        store.ensure_schema()
    store.close()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:
    store = MetaStore(f"sqlite:///{tmp_path / 'm.db'}")
    with store.read() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1
    store.close()


def test_upgrade_from_the_first_revision(meta_url: str) -> None:
    """Every migration step runs on both dialects: stop at 0001, then upgrade to head."""
    from gyre.meta.db import upgrade

    old = MetaStore(meta_url)
    with old.engine.begin() as conn:
        upgrade(conn, "0001")
    try:
        with pytest.raises(SchemaOutdated, match="revision 0001"):
            old.ensure_schema()
        with old.engine.begin() as conn:
            upgrade(conn)
    finally:
        old.close()
    fresh = MetaStore(meta_url)
    fresh.ensure_schema()
    fresh.close()
