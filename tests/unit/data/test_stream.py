"""Stream ingest without a server: URL parsing, the dedupe window, record ids, option checks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from gyre.data import catalog
from gyre.data.lake import Lake
from gyre.data.records import to_table
from gyre.data.stream import RecentIds, StreamResult, consume_nats, parse_nats_url, record_id
from gyre.errors import InvalidArgument
from gyre.meta import MetaStore


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[MetaStore, Lake]]:
    meta = MetaStore(f"sqlite:///{tmp_path / 'meta.db'}", actor="tester")
    yield meta, Lake(f"file://{tmp_path / 'store'}")
    meta.close()


# -- URLs ----------------------------------------------------------------------------------------


def test_url_with_subject() -> None:
    a = parse_nats_url("nats://127.0.0.1:4222/payments")
    assert (a.server, a.subject, a.source) == (
        "nats://127.0.0.1:4222",
        "payments",
        "nats://127.0.0.1:4222/payments",
    )


def test_url_defaults_and_wildcards() -> None:
    a = parse_nats_url("nats://broker/orders.eu.*")
    assert a.server == "nats://broker:4222" and a.subject == "orders.eu.*"
    assert parse_nats_url("tls://broker:7422/orders.>").source == "tls://broker:7422/orders.>"
    assert parse_nats_url("nats://[::1]:4222/x").server == "nats://[::1]:4222"


def test_credentials_connect_but_are_never_shown() -> None:
    a = parse_nats_url("nats://alice:s3cret@broker:4222/payments")
    assert a.server == "nats://alice:s3cret@broker:4222"
    assert "s3cret" not in a.source and "alice" not in a.display


def test_subject_may_be_passed_separately() -> None:
    assert parse_nats_url("nats://broker:4222", subject="payments").subject == "payments"
    assert parse_nats_url("nats://broker:4222/payments", subject="payments").subject == "payments"
    with pytest.raises(InvalidArgument, match="names subject 'a', but subject 'b'"):
        parse_nats_url("nats://broker:4222/a", subject="b")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nats://127.0.0.1:4222", "names no subject"),
        ("nats://127.0.0.1:4222/", "names no subject"),
        ("127.0.0.1:4222/payments", "Not a NATS URL"),
        ("http://127.0.0.1:4222/payments", "Unsupported stream URL"),
        ("nats://127.0.0.1:notaport/payments", "Invalid port"),
        ("nats:///payments", "No host"),
        ("nats://h:4222/pay ments", "Invalid NATS subject"),
        ("nats://h:4222/a..b", "Invalid NATS subject"),
        ("nats://h:4222/a.>.b", "Invalid NATS subject"),
        ("nats://h:4222/a?x=1", "query"),
    ],
)
def test_bad_urls_say_what_to_write(url: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        parse_nats_url(url)
    assert "nats://" in str(info.value)


# -- the dedupe window ---------------------------------------------------------------------------


def test_window_forgets_the_oldest_id_first() -> None:
    window = RecentIds(3)
    for key in (1, 2, 3):
        window.add(key)
    window.add(4)
    assert 1 not in window and all(k in window for k in (2, 3, 4)) and len(window) == 3


def test_readding_an_id_makes_it_the_newest() -> None:
    window = RecentIds(3)
    for key in ("a", "b", "c", "a", "d"):
        window.add(key)
    assert "a" in window and "b" not in window


def test_window_is_bounded_under_many_ids() -> None:
    window = RecentIds(1000)
    for key in range(100_000):
        window.add(key)
    assert len(window) == 1000 and 98_999 not in window and 99_000 in window


def test_empty_window_remembers_nothing() -> None:
    window = RecentIds(0)
    window.add(1)
    assert 1 not in window and len(window) == 0
    with pytest.raises(InvalidArgument):
        RecentIds(-1)


def test_record_ids() -> None:
    assert record_id({"id": 7}, "id") == 7
    assert record_id({"id": "p-7"}, "id") == "p-7"
    for bad, message in [({}, "has no 'id'"), ({"id": None}, "has no 'id'"), ({"id": [1]}, "list")]:
        with pytest.raises(InvalidArgument, match=message):
            record_id(bad, "id")
    with pytest.raises(InvalidArgument, match="bool"):
        record_id({"id": True}, "id")


def test_result_is_plain_data() -> None:
    r = StreamResult("events", "nats://h:4222/e", stream="S", versions=[0, 1], last_seq=9)
    assert r.to_dict()["versions"] == [0, 1] and r.to_dict()["last_seq"] == 9


# -- checks made before connecting ---------------------------------------------------------------


def test_a_new_dataset_needs_an_id_field(stores: tuple[MetaStore, Lake]) -> None:
    meta, lake = stores
    with pytest.raises(InvalidArgument, match="--id-field"):
        consume_nats(meta, lake, "events", "nats://127.0.0.1:1/events")
    with pytest.raises(InvalidArgument, match="names no subject"):
        consume_nats(meta, lake, "events", "nats://127.0.0.1:1", id_field="id")


def test_the_id_field_defaults_to_the_single_key(stores: tuple[MetaStore, Lake]) -> None:
    meta, lake = stores
    catalog.ensure_dataset(meta, "pairs", keys=["a", "b"])
    with pytest.raises(InvalidArgument, match="has keys a, b"):
        consume_nats(meta, lake, "pairs", "nats://127.0.0.1:1/pairs")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch": 0}, "batch"),
        ({"max_wait_s": 0}, "max_wait_s"),
        ({"stream": "a.b"}, "stream name"),
        ({"durable": "x y"}, "durable"),
    ],
)
def test_bad_options(stores: tuple[MetaStore, Lake], options: dict[str, object], message: str) -> None:
    meta, lake = stores
    with pytest.raises(InvalidArgument, match=message):
        consume_nats(meta, lake, "events", "nats://127.0.0.1:1/e", id_field="id", **options)  # type: ignore[arg-type]


# -- JSON records into a table -------------------------------------------------------------------


def test_a_new_dataset_takes_every_field_of_every_record() -> None:
    table = to_table("events", [{"id": 1}, {"id": 2, "v": 0.5}], None)
    assert table.column_names == ["id", "v"] and table["v"].to_pylist() == [None, 0.5]


def test_records_are_cast_to_the_dataset_schema() -> None:
    schema = pa.schema([("id", pa.int64()), ("ts", pa.timestamp("us", tz="UTC"))])
    table = to_table("events", [{"id": 1, "ts": "2024-01-01T00:00:00+00:00"}], schema)
    assert table.schema == schema and table["ts"][0].as_py() == datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidArgument, match="colour"):
        to_table("events", [{"id": 1, "colour": "red"}], schema)
    with pytest.raises(InvalidArgument, match="do not fit"):
        to_table("events", [{"id": "x"}], schema)
