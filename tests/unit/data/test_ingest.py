"""Batch ingest end to end: files -> validation -> one Delta commit + catalog version, or quarantine."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from gyre.data import catalog
from gyre.data.ingest import ingest_files
from gyre.data.lake import Lake
from gyre.demo import PaymentsConfig, PaymentsGenerator
from gyre.errors import InvalidArgument, NotFound
from gyre.meta import MetaStore
from gyre.meta.schema import Event
from gyre.store import ArtifactStore

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def env(meta: MetaStore, tmp_path: Path) -> tuple[MetaStore, Lake, ArtifactStore]:
    url = f"file://{tmp_path / 'store'}"
    return meta, Lake(url), ArtifactStore(url)


def payments(tmp_path: Path, name: str, start_day: int, days: int = 1) -> tuple[Path, pa.Table]:
    gen = PaymentsGenerator(PaymentsConfig(seed=3, n_users=200, payments_per_hour=40))
    table = gen.history(T0 + timedelta(days=start_day), T0 + timedelta(days=start_day + days))
    path = tmp_path / name
    pq.write_table(table, path)
    return path, table


def test_versions_are_committed_and_cataloged(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    meta, lake, store = env
    p1, t1 = payments(tmp_path, "day1.parquet", 0)
    p2, t2 = payments(tmp_path, "day2.parquet", 1)
    r1 = ingest_files(meta, lake, store, "payments", str(p1), keys=["payment_id"], event_time="ts")
    r2 = ingest_files(meta, lake, store, "payments", str(p2))
    assert (r1.version, r2.version) == (0, 1) and r1.accepted and r2.accepted
    assert lake.read("payments").num_rows == t1.num_rows + t2.num_rows
    assert lake.read("payments", version=0).num_rows == t1.num_rows
    versions = catalog.list_versions(meta, "payments")
    assert [(v.version, v.rows) for v in versions] == [(0, t1.num_rows), (1, t2.num_rows)]
    assert versions[1].min_event_time >= T0 + timedelta(days=1)
    assert versions[0].source == str(p1)
    info = catalog.get_dataset(meta, "payments")
    assert info.expectations, "the first version proposes expectations"
    assert info.keys == ["payment_id"] and info.event_time == "ts"
    with meta.read() as s:
        created = [
            e.payload["version"]
            for e in s.scalars(select(Event).where(Event.type == "dataset.version_created"))
        ]
    assert created == [0, 1]


def test_a_rejected_batch_changes_nothing_and_is_quarantined(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    meta, lake, store = env
    p1, t1 = payments(tmp_path, "day1.parquet", 0)
    ingest_files(meta, lake, store, "payments", str(p1), event_time="ts")
    bad = tmp_path / "bad.parquet"
    pq.write_table(t1.drop(["amount"]), bad)
    result = ingest_files(meta, lake, store, "payments", str(bad))
    assert not result.accepted and result.version is None
    assert [e.check for e in result.report.errors] == ["missing_column"]
    assert lake.version("payments") == 0
    assert [v.version for v in catalog.list_versions(meta, "payments")] == [0]
    record = catalog.get_quarantine(meta, result.quarantine_id)
    assert record.rows == t1.num_rows and record.reasons[0]["column"] == "amount"
    digest = record.location.removeprefix("sha256:")
    assert store.read_bytes(digest) == bad.read_bytes()


def test_dry_run_writes_nothing(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    meta, lake, store = env
    p1, _ = payments(tmp_path, "day1.parquet", 0)
    result = ingest_files(meta, lake, store, "payments", str(p1), dry_run=True)
    assert result.dry_run and result.accepted and result.version is None
    assert not lake.exists("payments")
    with pytest.raises(NotFound):
        catalog.get_dataset(meta, "payments")


def test_bad_input_is_refused_before_anything_is_written(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    meta, lake, store = env
    p1, _ = payments(tmp_path, "day1.parquet", 0)
    with pytest.raises(InvalidArgument, match="event-time column 'when'"):
        ingest_files(meta, lake, store, "payments", str(p1), event_time="when")
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n")
    with pytest.raises(InvalidArgument, match="header but no rows"):
        ingest_files(meta, lake, store, "payments", str(empty))
    with pytest.raises(InvalidArgument, match="Invalid dataset name"):
        ingest_files(meta, lake, store, "../etc", str(p1))
    assert not lake.exists("payments")
    assert catalog.list_datasets(meta) == []


def test_two_ingests_at_once_both_land(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    meta, lake, store = env
    p0, _ = payments(tmp_path, "day0.parquet", 0)
    ingest_files(meta, lake, store, "payments", str(p0), event_time="ts")
    files = [payments(tmp_path, f"day{d}.parquet", d)[0] for d in (1, 2)]
    errors: list[BaseException] = []

    def run(path: Path) -> None:
        try:
            ingest_files(meta, lake, store, "payments", str(path))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(v.version for v in catalog.list_versions(meta, "payments")) == [0, 1, 2]
    assert lake.version("payments") == 2


def test_a_batch_failing_a_value_check_aborts_the_write(env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Rejected after the last batch streamed into the table: the commit never happens."""
    import pyarrow.compute as pc

    meta, lake, store = env
    p1, _ = payments(tmp_path, "day1.parquet", 0)
    ingest_files(meta, lake, store, "payments", str(p1), event_time="ts")
    _, day2 = payments(tmp_path, "unused.parquet", 1)
    holes = day2.set_column(
        day2.schema.get_field_index("user_id"),
        "user_id",
        pc.if_else(pc.less(day2["user_id"], 20), None, day2["user_id"]),
    )
    bad = tmp_path / "holes.parquet"
    pq.write_table(holes, bad)
    result = ingest_files(meta, lake, store, "payments", str(bad))
    assert not result.accepted
    assert any(e.check == "null_fraction" and e.column == "user_id" for e in result.report.errors)
    assert lake.version("payments") == 0
    assert lake.read("payments").num_rows == lake.read("payments", version=0).num_rows
    assert [v.version for v in catalog.list_versions(meta, "payments")] == [0]
    assert catalog.get_quarantine(meta, result.quarantine_id).rows == holes.num_rows
