"""Pushed records meet the dataset's declared schema and its row expectations at the edge; the
buffer groups them into commits exactly once, deletes the segments the lake holds, and commits
what files older Gyres wrote."""

from __future__ import annotations

import json
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
from gyre.data.records import to_table
from gyre.data.segments import list_segments, segment_path
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
    buf = PushBuffer(tmp_path / "push", meta, Lake(f"file://{tmp_path / 'store'}"))
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


def segments(buffer: PushBuffer) -> list[tuple[int, int]]:
    return list_segments(buffer.path)


def roll_often(buffer: PushBuffer, segment_bytes: int = 2048) -> None:
    """Make the buffer's writer start a new segment every few appends."""
    buffer.append("payments", [RECORD])  # takes the slot
    assert buffer._writer is not None
    buffer._writer.segment_bytes = segment_bytes


RECORD = {"id": 0, "amount": 5.0, "country": "DE", "ts": "2026-11-26T10:00:00Z"}


def test_committed_segments_are_deleted_whole(buffer: PushBuffer) -> None:
    """Sealed segments go once the lake holds them; the one being written stays."""
    roll_often(buffer)
    for i in range(1, 300):
        buffer.append("payments", [{**RECORD, "id": i}])
    assert len(segments(buffer)) > 10
    buffer.flush()
    assert segments(buffer) == [(0, buffer._writer.number)]  # type: ignore[union-attr]
    assert buffer.lake.read("payments").num_rows == 300 and buffer.pending() == 0
    buffer.close()  # frees the slot: its last segment is committed and removed too
    assert segments(buffer) == []


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


@pytest.mark.parametrize("layout", ["a record per row", "an append per row"])
def test_a_buffer_file_from_an_older_gyre_is_committed_once(layout: str, buffer: PushBuffer) -> None:
    """Gyre buffered in SQLite before segments: what the old file holds past the lake's
    ``gyre-push`` mark is committed on the first flush, the rest skipped, and the file deleted."""
    old = sqlite3.connect(buffer.path.with_suffix(".db"))
    old.execute(
        "CREATE TABLE records (seq INTEGER PRIMARY KEY, dataset TEXT NOT NULL, payload TEXT NOT NULL)"
    )
    for i in range(4):
        record = {**RECORD, "id": i}
        payload = json.dumps(record if layout == "a record per row" else [record])
        old.execute("INSERT INTO records (dataset, payload) VALUES ('payments', ?)", (payload,))
    old.commit()
    old.close()
    # The old buffer had committed its first row before it stopped.
    buffer.lake.append(
        "payments",
        to_table("payments", [RECORD], buffer._rules("payments").schema),
        app_transactions={"gyre-push": 1},
    )
    assert buffer.flush() == {"payments": [1]}
    assert sorted(buffer.lake.read("payments")["id"].to_pylist()) == [0, 1, 2, 3]
    assert not list(buffer.path.parent.glob("push.db*"))
    assert buffer.flush() == {}


def test_a_slot_never_reuses_a_position(buffer: PushBuffer) -> None:
    """Commits are marked with the last position they hold: were a position used again after
    the slot's segments were all deleted, its new record would count as committed and be lost."""
    for i in range(3):
        buffer.append("payments", [{**RECORD, "id": i}])
        assert buffer.flush() == {"payments": [i]} and buffer.pending() == 0
    buffer.close()
    assert segments(buffer) == []
    reopened = PushBuffer(buffer.path, buffer.meta, buffer.lake)  # a restart takes the same slot
    try:
        reopened.append("payments", [{**RECORD, "id": 3}])
        assert reopened.flush() == {"payments": [3]}
    finally:
        reopened.close()
    assert sorted(buffer.lake.read("payments")["id"].to_pylist()) == [0, 1, 2, 3]


def test_writers_of_several_processes_are_committed_once_each(buffer: PushBuffer) -> None:
    """Each writer has a slot; any buffer may flush; a flush that read frames another one
    committed meanwhile skips them; one commit marks every slot it holds."""
    other = PushBuffer(buffer.path, buffer.meta, buffer.lake)
    flusher = PushBuffer(buffer.path, buffer.meta, buffer.lake)  # reads, never appends
    try:
        for i in range(0, 20, 2):
            buffer.append("payments", [{**RECORD, "id": i}])
            other.append("payments", [{**RECORD, "id": i + 1}])
        assert {slot for slot, _ in segments(buffer)} == {0, 1}
        flusher._read_new({})  # reads everything, then the other flushes first
        assert buffer.flush() == {"payments": [0]}
        assert flusher.flush() == {}
        info = buffer.lake.commit_info("payments", 0)
        assert set(info["app_transactions"]) == {"gyre-push/0", "gyre-push/1"}
        other.append("payments", [{**RECORD, "id": 20}])
        assert flusher.flush() == {"payments": [1]}
    finally:
        other.close()
        flusher.close()
    ids = buffer.lake.read("payments")["id"].to_pylist()
    assert sorted(ids) == list(range(21))


def test_a_torn_append_at_the_end_of_a_sealed_segment_is_skipped(
    buffer: PushBuffer, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash mid-write leaves a partial frame (never acknowledged): the frames before it are
    committed, the rest of that segment skipped with a warning."""
    for i in range(3):
        buffer.append("payments", [{**RECORD, "id": i}])
    slot, number = segments(buffer)[0]
    assert buffer._writer is not None
    buffer._writer.close()  # as if its process died: the slot is free, the segment sealed
    buffer._writer = None
    path = segment_path(buffer.path, slot, number)
    with open(path, "ab") as f:
        f.write(b"\x20\x00\x00\x00torn")
    late = PushBuffer(buffer.path, buffer.meta, buffer.lake)
    try:
        with caplog.at_level("WARNING"):
            assert late.flush() == {"payments": [0]}
        assert "cut short" in caplog.text
        assert segments(late) == []
    finally:
        late.close()
    assert sorted(buffer.lake.read("payments")["id"].to_pylist()) == [0, 1, 2]


def test_segments_stay_few_while_appends_keep_coming(buffer: PushBuffer) -> None:
    """Flushes beside a steady stream of appends commit every record once and delete the
    segments behind the writer, so the directory stays bounded."""
    roll_often(buffer, 4096)
    stop = threading.Event()
    appended = [1]

    def append_forever() -> None:
        while not stop.is_set():
            buffer.append("payments", [{**RECORD, "id": appended[0]}])
            appended[0] += 1

    writer = threading.Thread(target=append_forever)
    writer.start()
    counts = []
    try:
        for _ in range(12):
            time.sleep(0.05)
            buffer.flush()
            counts.append(len(segments(buffer)))
    finally:
        stop.set()
        writer.join()
    buffer.flush()
    assert buffer.lake.read("payments").num_rows == appended[0] and buffer.pending() == 0
    assert buffer._writer is not None
    # Kept: the one being written; written meanwhile: dozens (a segment every ~60 appends).
    assert segments(buffer) == [(0, buffer._writer.number)]
    assert max(counts) <= 10 < buffer._writer.number, (counts, buffer._writer.number)


def test_records_that_could_not_create_the_table_are_refused_at_the_edge(buffer: PushBuffer) -> None:
    """A dataset with no table and no declared schema takes its types from the first commit: a
    field that is only null there has none, so the request is refused rather than acknowledged
    and then stuck."""
    with pytest.raises(InvalidArgument, match="'note' hold only nulls.*Nothing was stored.*schema"):
        buffer.append("events", [{"id": 1, "note": None}])
    assert buffer.pending() == 0
    assert buffer.append("events", [{"id": 1, "note": "ok"}]) == 1


def test_a_dataset_whose_commit_fails_does_not_hold_back_the_others(buffer: PushBuffer) -> None:
    """Its records stay buffered (acknowledged, retried every round); the others are committed."""
    buffer.append("payments", [{**RECORD, "amount": "not a number"}], checked=True)  # fails at commit
    buffer.append("events", [{"id": 1}])
    with pytest.raises(InvalidArgument):
        buffer.flush()
    assert buffer.lake.read("events")["id"].to_pylist() == [1]
    assert buffer.pending("payments") == 1 and buffer.pending("events") == 0
