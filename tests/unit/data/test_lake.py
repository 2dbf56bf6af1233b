"""The lake contract, on a local folder and again on the loopback S3 server (``store_url``)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pytest

from gyre.data.lake import Lake, S3Settings, schema_diff
from gyre.errors import InvalidArgument, NotFound


@pytest.fixture
def lake(store_url: str) -> Lake:
    return Lake(store_url)


def payments(start: int, n: int) -> pa.Table:
    return pa.table(
        {
            "payment_id": pa.array([f"p{i}" for i in range(start, start + n)]),
            "amount": pa.array([float(i) for i in range(start, start + n)]),
            "country": pa.array(["US", "DE"] * (n // 2) + ["FR"] * (n % 2)),
        }
    )


def files_under(lake: Lake, name: str) -> list[str]:
    """Every object under the table's folder (data files and log), on either backend."""
    selector = pafs.FileSelector(lake._table_path(name), recursive=True, allow_not_found=True)
    return sorted(i.path for i in lake.filesystem.get_file_info(selector) if i.type == pafs.FileType.File)


def test_append_versions_and_read_back(lake: Lake) -> None:
    assert not lake.exists("payments")
    assert lake.transaction_version("payments", "x") is None
    assert lake.append("payments", payments(0, 4)) == 0
    assert lake.exists("payments")
    assert lake.append("payments", payments(4, 3)) == 1
    assert lake.version("payments") == 1

    latest = lake.read("payments").sort_by("amount")
    assert latest.column("amount").to_pylist() == [float(i) for i in range(7)]
    assert lake.read("payments", version=0).num_rows == 4
    some = lake.read("payments", columns=["payment_id"], filter=pc.field("amount") >= 5)
    assert some.schema.names == ["payment_id"] and sorted(some.column(0).to_pylist()) == ["p5", "p6"]
    assert lake.schema("payments").names == ["payment_id", "amount", "country"]
    assert lake.scan("payments", 0).count_rows() == 4


def test_scan_is_queryable_by_duckdb(lake: Lake) -> None:
    import duckdb

    lake.append("payments", payments(0, 10))
    ds = lake.scan("payments")  # noqa: F841 - duckdb finds it by name
    assert duckdb.sql("select count(*), sum(amount) from ds").fetchall() == [(10, 45.0)]


def test_time_travel_by_timestamp(lake: Lake) -> None:
    lake.append("payments", payments(0, 2))
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    lake.append("payments", payments(2, 2))
    assert lake.read("payments", as_of=between).num_rows == 2
    assert lake.read("payments", as_of=datetime.now(UTC) + timedelta(seconds=1)).num_rows == 4
    naive_utc = between.replace(tzinfo=None)  # a naive datetime is UTC
    assert lake.read("payments", as_of=naive_utc).num_rows == 2
    with pytest.raises(NotFound, match="no version at or before"):
        lake.read("payments", as_of=between - timedelta(days=1))
    with pytest.raises(InvalidArgument, match="either version or as_of"):
        lake.read("payments", version=0, as_of=between)


def test_history_has_custom_metadata_commit_ids_and_metrics(lake: Lake) -> None:
    lake.append("payments", payments(0, 3), custom_metadata={"source": "a.csv", "gyre.actor": "ana"})
    lake.append("payments", payments(3, 2), custom_metadata={"source": "b.csv"})
    history = lake.history("payments")
    assert [h["version"] for h in history] == [1, 0]  # newest first
    assert history[1]["metadata"] == {"source": "a.csv", "gyre.actor": "ana"}
    assert history[0]["metadata"] == {"source": "b.csv"}
    assert history[0]["operation"] == "WRITE"
    assert history[0]["metrics"]["num_added_rows"] == 2
    assert history[0]["timestamp"] >= history[1]["timestamp"]
    assert history[0]["timestamp"].tzinfo is not None
    assert len({h["commit_id"] for h in history}) == 2
    info = lake.commit_info("payments", 1)
    assert info["rows"] == 2 and info["bytes"] > 0 and info["files"] >= 1
    assert info["metadata"] == {"source": "b.csv"}
    with pytest.raises(NotFound, match="no version 5"):
        lake.commit_info("payments", 5)


def test_app_transaction_is_recorded_with_the_data(lake: Lake) -> None:
    lake.append("events", payments(0, 2), app_transactions={"nats:payments": 41})
    lake.append("events", payments(2, 2), app_transactions={"nats:payments": 42})
    lake.append("events", payments(4, 2))  # another writer's commit does not touch it
    assert lake.transaction_version("events", "nats:payments") == 42
    assert lake.transaction_version("events", "other") is None
    assert lake.commit_info("events", 1)["app_transactions"] == {"nats:payments": 42}
    lake.append("events", payments(6, 2), app_transactions={"a": 1, "b": 2})  # several in one commit
    assert lake.transaction_version("events", "a") == 1 and lake.transaction_version("events", "b") == 2
    with pytest.raises(InvalidArgument, match="app_transactions"):
        lake.append("events", payments(0, 1), app_transactions={"x": "7"})  # type: ignore[dict-item]


def test_schema_mismatch_is_refused_and_changes_nothing(lake: Lake) -> None:
    lake.append("payments", payments(0, 4))
    before = files_under(lake, "payments")
    bad = pa.table(
        {
            "payment_id": pa.array(["x"]),
            "amount": pa.array(["12.5"]),  # retyped
            "channel": pa.array(["web"]),  # extra; country is missing
        }
    )
    with pytest.raises(InvalidArgument) as err:
        lake.append("payments", bad)
    message = str(err.value)
    assert "missing columns 'country'" in message
    assert "extra columns 'channel'" in message
    assert "column 'amount' is string but the table has double" in message
    assert "Nothing was written" in message
    assert lake.version("payments") == 0
    assert files_under(lake, "payments") == before


def test_compatible_batches_are_conformed(lake: Lake) -> None:
    lake.append("t", pa.table({"a": pa.array([1], pa.int64()), "b": pa.array(["x"]), "c": [1.5]}))
    # Other column order, an all-null column, a large_string and an unsigned int all fit.
    v = lake.append(
        "t",
        pa.table(
            {
                "c": [2.5],
                "b": pa.array([None], pa.null()),
                "a": pa.array([2**32 - 1], pa.uint32()),
            }
        ),
    )
    assert v == 1
    lake.append("t", pa.table({"a": [3], "b": pa.array(["z"], pa.large_string()), "c": [3.5]}))
    rows = lake.read("t").sort_by("c").to_pylist()
    assert rows[1] == {"a": 2**32 - 1, "b": None, "c": 2.5}
    assert rows[2]["b"] == "z"


def test_unsigned_columns_are_widened_on_create(lake: Lake) -> None:
    lake.append("u", pa.table({"n": pa.array([2**32 - 1], pa.uint32())}))
    assert lake.schema("u").field("n").type == pa.int64()
    assert lake.read("u").column("n").to_pylist() == [2**32 - 1]


def test_bad_input_is_refused(lake: Lake) -> None:
    for bad in ["../escape", "Payments", "a/b", ""]:
        with pytest.raises(InvalidArgument, match="Invalid dataset name"):
            lake.append(bad, payments(0, 1))
    empty = payments(0, 2).slice(0, 0)
    with pytest.raises(InvalidArgument, match="no rows"):
        lake.append("empty", empty)
    with pytest.raises(InvalidArgument, match="no rows"):
        lake.append("empty", pa.RecordBatchReader.from_batches(empty.schema, iter([])))
    with pytest.raises(InvalidArgument, match="only nulls"):
        lake.append("nulls", pa.table({"a": [1], "b": pa.array([None], pa.null())}))
    with pytest.raises(InvalidArgument, match="reserved"):
        lake.append("meta", payments(0, 1), custom_metadata={"operation": "x"})
    with pytest.raises(InvalidArgument, match="strings to strings"):
        lake.append("meta", payments(0, 1), custom_metadata={"n": 1})  # type: ignore[dict-item]
    assert not any(lake.exists(n) for n in ("empty", "nulls", "meta"))


def test_missing_dataset_and_version(lake: Lake) -> None:
    with pytest.raises(NotFound, match="has no data in the lake"):
        lake.read("nothing")
    lake.append("payments", payments(0, 1))
    with pytest.raises(NotFound, match="no version 3; its latest is 0"):
        lake.read("payments", version=3)
    with pytest.raises(InvalidArgument, match="no column"):
        lake.read("payments", columns=["nope"])


class SourceBroke(Exception):
    pass


def failing_reader(after: int) -> pa.RecordBatchReader:
    """A reader that yields ``after`` batches and then fails, as a malformed file would."""
    table = payments(0, 10)

    def batches() -> Iterator[pa.RecordBatch]:
        for i, batch in enumerate(table.to_batches(max_chunksize=2)):
            if i == after:
                raise SourceBroke("line 7 is malformed")
            yield batch

    return pa.RecordBatchReader.from_batches(table.schema, batches())


def test_a_source_failing_midway_commits_nothing(lake: Lake) -> None:
    with pytest.raises(SourceBroke, match="line 7"):
        lake.append("payments", failing_reader(after=2))
    assert not lake.exists("payments")
    lake.append("payments", payments(0, 2))
    with pytest.raises(SourceBroke):
        lake.append("payments", failing_reader(after=3))
    assert lake.version("payments") == 0
    assert lake.read("payments").num_rows == 2


def test_concurrent_appends_all_land_with_distinct_versions(lake: Lake) -> None:
    lake.append("payments", payments(0, 2))
    writers = 8
    versions: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(i: int) -> None:
        try:
            start.wait()
            versions.append(lake.append("payments", payments(100 * i, 5), custom_metadata={"w": str(i)}))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(versions) == list(range(1, writers + 1))
    assert lake.read("payments").num_rows == 2 + 5 * writers
    # Each writer was told its own version: the commit at that version carries its metadata.
    by_version = {h["version"]: h["metadata"].get("w") for h in lake.history("payments")}
    assert sorted(by_version[v] for v in versions) == sorted(str(i) for i in range(writers))


def test_concurrent_first_appends_create_the_table_once(lake: Lake) -> None:
    versions: list[int] = []
    start = threading.Barrier(4)

    def write(i: int) -> None:
        start.wait()
        versions.append(lake.append("fresh", payments(10 * i, 3)))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == [0, 1, 2, 3]
    assert lake.read("fresh").num_rows == 12


def _append_in_process(store_url: str, name: str, i: int) -> int:
    return Lake(store_url).append(name, payments(1000 * i, 3))


def test_concurrent_appends_from_processes(lake: Lake, store_url: str) -> None:
    lake.append("payments", payments(0, 1))
    # spawn: forking a process that runs deltalake's threads is not safe. The "fresh" dataset
    # does not exist yet: its first appends race to create it.
    jobs = [(store_url, "payments", i) for i in range(1, 4)] + [(store_url, "fresh", i) for i in range(3)]
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        versions = pool.starmap(_append_in_process, jobs)
    assert sorted(versions[:3]) == [1, 2, 3]
    assert sorted(versions[3:]) == [0, 1, 2]
    assert lake.read("payments").num_rows == 1 + 3 * 3
    assert lake.read("fresh").num_rows == 3 * 3


@pytest.mark.integration
@pytest.mark.backend("s3")
def test_loopback_s3_enforces_conditional_put(s3_url: str) -> None:
    """The premise of safe concurrent commits on S3: a PUT with If-None-Match: * on an existing
    key fails. deltalake >= 1.0 relies on it; this checks the test server honours it."""
    import boto3
    from botocore.exceptions import ClientError

    settings = S3Settings.from_env()
    s3 = boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region)
    bucket = s3_url[len("s3://") :].split("/")[0]
    s3.put_object(Bucket=bucket, Key="probe", Body=b"1")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        s3.put_object(Bucket=bucket, Key="probe", Body=b"2", IfNoneMatch="*")


def test_s3_settings_from_env() -> None:
    settings = S3Settings.from_env(
        {
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "s",
            "AWS_DEFAULT_REGION": "eu-west-1",
        }
    )
    options = settings.delta_storage_options()
    assert options == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION": "eu-west-1",
        "AWS_ALLOW_HTTP": "true",
    }
    assert "AWS_S3_ALLOW_UNSAFE_RENAME" not in options
    assert S3Settings.from_env({"AWS_REGION": "a", "AWS_DEFAULT_REGION": "b"}).region == "a"
    assert S3Settings.from_env({}).delta_storage_options() == {}


def test_store_url_is_checked() -> None:
    with pytest.raises(InvalidArgument, match="file:///path or s3://bucket/prefix"):
        Lake("/no/scheme")


def test_schema_diff_compares_stored_types() -> None:
    table = pa.schema([("a", pa.int64()), ("s", pa.string()), ("t", pa.timestamp("us", "UTC"))])
    same = pa.schema([("t", pa.timestamp("ns", "UTC")), ("s", pa.large_string()), ("a", pa.int64())])
    assert not schema_diff(table, same)
    diff = schema_diff(table, pa.schema([("a", pa.int32()), ("s", pa.string()), ("x", pa.bool_())]))
    assert diff.missing == ["t"] and diff.extra == ["x"] and diff.retyped == {"a": ("int64", "int32")}


def test_vacuum_deletes_only_files_no_version_refers_to(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    lake.append("payments", payments(0, 4))
    # What a writer killed before its commit leaves behind: data files no version refers to.
    root = lake._table_path("payments")
    for i in range(2):
        lake.filesystem.copy_file(
            f"{root}/{lake.data_files('payments')[0].path}", f"{root}/part-crashed-{i}.parquet"
        )
    lake.append("payments", payments(4, 2))
    data_files = [f for f in files_under(lake, "payments") if f.endswith(".parquet")]
    referenced = {f.path for f in lake.data_files("payments")}
    assert len(data_files) > len(referenced) == 2

    assert lake.vacuum("payments") == []  # everything is younger than a day
    with pytest.raises(InvalidArgument, match="at least 1 hour"):
        lake.vacuum("payments", older_than=timedelta(minutes=5))

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def,override]
            return datetime.now(tz) + timedelta(days=2)

    monkeypatch.setattr("gyre.data.lake.datetime", Later)
    planned = lake.vacuum("payments", dry_run=True)
    assert len(planned) == len(data_files) - 2 and not set(planned) & referenced
    assert lake.vacuum("payments") == planned
    monkeypatch.undo()
    left = [f for f in files_under(lake, "payments") if f.endswith(".parquet")]
    assert len(left) == 2
    assert lake.version("payments") == 1  # the log is untouched
    assert lake.read("payments", version=0).num_rows == 4 and lake.read("payments").num_rows == 6
