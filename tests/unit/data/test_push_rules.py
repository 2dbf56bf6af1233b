"""Pushed records meet the dataset's declared schema and its row expectations at the edge; the
buffer groups them into commits, trims what the lake has, and reads files older Gyres wrote."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import gyre
from gyre.data import catalog
from gyre.data.lake import Lake
from gyre.data.push import PushBuffer
from gyre.data.validation import AllowedValues, MaxNullFraction, ValueRange
from gyre.definitions import Definitions
from gyre.errors import InvalidArgument
from gyre.meta import MetaStore
from gyre.project import apply


@pytest.fixture
def buffer(tmp_path: Path) -> PushBuffer:
    meta = MetaStore(f"sqlite:///{tmp_path / 'meta.db'}")
    payments = gyre.Dataset(
        "payments",
        keys=["id"],
        event_time="ts",
        schema={"id": "int64", "amount": "double", "country": "string", "ts": "timestamp[tz=UTC]"},
        expectations=[
            ValueRange("amount", min=0),
            AllowedValues("country", ("DE", "FR")),
            MaxNullFraction("id", 0),
            ValueRange("amount", max=1e6, severity="warning"),  # warnings never refuse a request
        ],
    )
    apply(meta, Definitions([payments]))
    buf = PushBuffer(tmp_path / "push.db", meta, Lake(f"file://{tmp_path / 'store'}"))
    yield buf
    buf.close()
    meta.close()


def test_the_declared_schema_types_the_first_push(buffer: PushBuffer) -> None:
    buffer.append("payments", [{"id": 1, "amount": 5, "country": "DE", "ts": "2026-11-26T10:00:00Z"}])
    buffer.flush()
    table = buffer.lake.read("payments")
    assert str(table.schema.field("ts").type) == "timestamp[us, tz=UTC]"
    assert table.schema.field("amount").type == "double"
    assert table["ts"][0].as_py() == datetime(2026, 11, 26, 10, tzinfo=UTC)
    info = catalog.get_version(buffer.meta, "payments", 0)
    assert info.max_event_time == datetime(2026, 11, 26, 10, tzinfo=UTC)


def test_row_expectations_refuse_the_request_naming_record_field_and_rule(buffer: PushBuffer) -> None:
    good = {"id": 1, "amount": 5.0, "country": "DE", "ts": "2026-11-26T10:00:00Z"}
    bad = [good, {**good, "id": 2, "amount": -3.0}, {**good, "id": 3, "country": "XX"}, {**good, "id": None}]
    with pytest.raises(InvalidArgument) as err:
        buffer.append("payments", bad)
    message = str(err.value)
    assert "'amount' breaks value_range >= 0 in 1 record(s) (record 1: -3.0)" in message
    assert "'country' breaks allowed_values [DE, FR] in 1 record(s) (record 2: 'XX')" in message
    assert "'id' breaks not_null in 1 record(s) (record 3" in message
    assert buffer.pending("payments") == 0  # nothing of the request was stored
    with pytest.raises(InvalidArgument, match="'ts'"):
        buffer.append("payments", [{**good, "ts": "not a time"}])
    assert buffer.append("payments", [good, {**good, "id": 2, "amount": 2e6}]) == 2  # a warning passes


def test_a_flush_commits_what_was_buffered_when_it_began(buffer: PushBuffer) -> None:
    """Records arriving while a group commits wait for the next flush: a steady stream makes
    one version a round, not a commit after every commit."""
    record = {"id": 1, "amount": 5.0, "country": "DE", "ts": "2026-11-26T10:00:00Z"}
    append = buffer.lake.append
    arrivals = iter(range(2, 5))

    def append_while_records_arrive(*args: object, **kwargs: object) -> int:
        version = append(*args, **kwargs)  # type: ignore[arg-type]
        arrived = next(arrivals, None)
        if arrived is not None:  # a request answered during the commit
            buffer.append("payments", [{**record, "id": arrived}])
        return version

    buffer.lake.append = append_while_records_arrive  # type: ignore[method-assign]
    buffer.append("payments", [record])
    assert buffer.flush() == {"payments": [0]}
    assert buffer.pending("payments") == 1
    assert buffer.flush() == {"payments": [1]}
    assert buffer.flush() == {"payments": [2]}
    assert buffer.flush() == {"payments": [3]} and buffer.pending("payments") == 0
    assert sorted(buffer.lake.read("payments")["id"].to_pylist()) == [1, 2, 3, 4]


def test_the_buffer_file_is_reused_after_each_flush(buffer: PushBuffer) -> None:
    """Appends never checkpoint (that is the flush's job), so the WAL stops growing once a flush
    has moved what it holds into the table and SQLite starts it over."""
    record = {"id": 1, "amount": 5.0, "country": "DE", "ts": "2026-11-26T10:00:00Z"}
    wal = buffer.path.with_name(buffer.path.name + "-wal")
    sizes = []
    for _ in range(3):
        for i in range(300):
            buffer.append("payments", [{**record, "id": i}])
        buffer.flush()
        sizes.append(wal.stat().st_size)
    assert sizes[2] <= sizes[0] * 1.2, sizes
    assert buffer.lake.read("payments").num_rows == 900 and buffer.pending() == 0


def test_groups_hold_whole_appends_up_to_max_rows(buffer: PushBuffer) -> None:
    record = {"amount": 5.0, "country": "DE", "ts": "2026-11-26T10:00:00Z"}
    buffer.max_rows = 5
    for start in (0, 3, 6, 8):  # appends of 3, 3, 2 and 4 records
        size = {0: 3, 3: 3, 6: 2, 8: 4}[start]
        assert buffer.append("payments", [{**record, "id": start + i} for i in range(size)]) == size
    assert buffer.pending("payments") == buffer.pending() == 12
    assert buffer.flush() == {"payments": [0, 1, 2]}  # 3 | 3+2 | 4: no append is split
    assert [v.rows for v in catalog.list_versions(buffer.meta, "payments")] == [3, 5, 4]
    assert sorted(buffer.lake.read("payments")["id"].to_pylist()) == list(range(12))
    assert buffer.pending() == 0


def test_a_buffer_file_from_an_older_gyre_is_committed(tmp_path: Path, buffer: PushBuffer) -> None:
    """Files written before appends became one row each hold a record per row, without ``n``:
    reopened, they gain the column and their records are committed like new ones."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "dataset TEXT NOT NULL, payload TEXT NOT NULL)"
    )
    for i in range(3):
        payload = f'{{"id": {i}, "amount": 1.0, "country": "FR", "ts": "2026-11-26T10:00:00Z"}}'
        old.execute("INSERT INTO records (dataset, payload) VALUES ('payments', ?)", (payload,))
    old.commit()
    old.close()
    reopened = PushBuffer(path, buffer.meta, buffer.lake)
    try:
        assert reopened.pending("payments") == 3
        reopened.append("payments", [{"id": 3, "amount": 2.0, "country": "DE", "ts": "2026-11-26T11:00:00Z"}])
        assert reopened.flush() == {"payments": [0]} and reopened.pending() == 0
    finally:
        reopened.close()
    assert sorted(buffer.lake.read("payments")["id"].to_pylist()) == [0, 1, 2, 3]


def test_a_trimmed_buffer_never_reuses_a_position(buffer: PushBuffer) -> None:
    """Commits are marked with the last position they hold: were a position used again after
    the buffer was emptied, its new record would count as committed and never reach the lake."""
    record = {"amount": 5.0, "country": "DE", "ts": "2026-11-26T10:00:00Z"}
    for i in range(3):
        buffer.append("payments", [{**record, "id": i}])
        assert buffer.flush() == {"payments": [i]} and buffer.pending() == 0
    assert sorted(buffer.lake.read("payments")["id"].to_pylist()) == [0, 1, 2]
    reopened = PushBuffer(buffer.path, buffer.meta, buffer.lake)  # a restart reads the same file
    try:
        reopened.append("payments", [{**record, "id": 3}])
        assert reopened.flush() == {"payments": [3]}
    finally:
        reopened.close()
    assert sorted(buffer.lake.read("payments")["id"].to_pylist()) == [0, 1, 2, 3]


def test_the_wal_starts_over_while_appends_keep_coming(buffer: PushBuffer) -> None:
    """Trims checkpoint beside a steady stream of appends; the WAL must still start over (a
    checkpoint that appends always overtake never lets it), so the file stays bounded."""
    record = {"amount": 5.0, "country": "DE", "ts": "2026-11-26T10:00:00Z"}
    wal = buffer.path.with_name(buffer.path.name + "-wal")
    buffer.wal_reset_bytes = 256 << 10
    stop = threading.Event()
    appended = [0]

    def append_forever() -> None:
        while not stop.is_set():
            buffer.append("payments", [{**record, "id": appended[0]}])
            appended[0] += 1

    writer = threading.Thread(target=append_forever)
    writer.start()
    sizes = []
    try:
        for _ in range(12):
            time.sleep(0.05)
            buffer.flush()
            sizes.append(wal.stat().st_size)
    finally:
        stop.set()
        writer.join()
    buffer.flush()
    assert buffer.lake.read("payments").num_rows == appended[0] and buffer.pending() == 0
    assert max(sizes[6:]) <= 2 * max(sizes[:6]), sizes
