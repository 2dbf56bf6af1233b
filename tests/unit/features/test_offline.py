"""Point-in-time retrieval, case by case: the edges of TTL and windows, ties, nulls, time zones."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from gyre.data.lake import Lake
from gyre.errors import InvalidArgument, NotFound
from gyre.features import offline
from gyre.features.offline import _Gather, _packed_span, get_training_set
from gyre.features.spec import ColumnFeature, ViewSpec, WindowFeature

T0 = datetime(2024, 1, 1)  # naive: UTC
US = timedelta(microseconds=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ts(values: list[datetime | None], unit: str = "us", tz: str | None = None) -> pa.Array:
    return pa.array(values, pa.timestamp(unit, tz))


def view(
    columns: tuple[str, ...] = ("v",),
    windows: tuple[tuple[str, str, int], ...] = (),
    *,
    name: str = "uv",
    keys: tuple[str, ...] = ("user_id",),
    source: str = "events",
    ttl_s: int | None = None,
) -> ViewSpec:
    return ViewSpec(
        name=name,
        entity="user",
        join_keys=keys,
        source=source,
        event_time="ts",
        ttl_s=ttl_s,
        columns=tuple(ColumnFeature(c, c) for c in columns),
        windows=tuple(WindowFeature(f"{col}_{fn}", col, fn, w) for col, fn, w in windows),
    )


def entities(user_ids: list[int | None], times: list[datetime], **more: pa.Array) -> pa.Table:
    return pa.table({"user_id": pa.array(user_ids, pa.int64()), "event_timestamp": ts(times), **more})


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(f"file://{tmp_path / 'store'}")


def test_latest_value_at_or_before_t(lake: Lake) -> None:
    lake.append(
        "events",
        pa.table(
            {"user_id": [1, 1, 1, 2], "ts": ts([at(0), at(10), at(20), at(5)]), "v": [1.0, 2.0, 3.0, 9.0]}
        ),
    )
    ent = entities([1, 1, 1, 1, 2, 2], [at(-1), at(0), at(9.999999), at(10), at(100), at(4)])
    out = get_training_set(lake, ent, [view()])
    assert out.table.column_names == ["user_id", "event_timestamp", "v"]
    assert out.table.column("v").to_pylist() == [None, 1.0, 1.0, 2.0, 9.0, None]
    assert out.dataset_versions == {"events": 0}


def test_ttl_edge_is_excluded(lake: Lake) -> None:
    lake.append("events", pa.table({"user_id": [1], "ts": ts([at(0)]), "v": [7]}))
    ent = entities([1, 1, 1], [at(59) + 999_999 * US, at(60) - US, at(60)])
    out = get_training_set(lake, ent, [view(ttl_s=60)])
    # valid for event times in (t - 60s, t]: an event exactly 60 s old has expired
    assert out.table.column("v").to_pylist() == [7, 7, None]


def test_window_edges_and_every_aggregation(lake: Lake) -> None:
    lake.append(
        "events",
        pa.table(
            {
                "user_id": [1, 1, 1, 1, 1],
                "ts": ts([at(0), at(1), at(5), at(10), at(10)]),
                "v": pa.array([100, 4, None, 2, 4], pa.int32()),
            }
        ),
    )
    fns = ("count", "sum", "mean", "min", "max", "count_distinct")
    spec = view(columns=(), windows=tuple(("v", fn, 10) for fn in fns))
    ent = entities([1, 1, 1, 1], [at(10), at(9), at(19.5), at(-5)])
    table = get_training_set(lake, ent, [spec]).table
    # t=10 covers (0, 10]: the event at exactly t - w is out, the ones at t are in
    assert table.column("v_count").to_pylist() == [4, 3, 2, 0]
    assert table.column("v_sum").to_pylist() == [10, 104, 6, None]
    assert table.column("v_mean").to_pylist() == [10 / 3, 52.0, 3.0, None]
    assert table.column("v_min").to_pylist() == [2, 4, 2, None]
    assert table.column("v_max").to_pylist() == [4, 100, 4, None]
    assert table.column("v_count_distinct").to_pylist() == [2, 2, 2, 0]
    types = {f.name: f.type for f in table.schema}
    assert types["v_count"] == types["v_count_distinct"] == types["v_sum"] == pa.int64()
    assert types["v_mean"] == pa.float64()
    assert types["v_min"] == types["v_max"] == pa.int32()


def test_all_null_window_is_null_but_counts_rows(lake: Lake) -> None:
    lake.append(
        "events",
        pa.table({"user_id": [1, 1], "ts": ts([at(1), at(2)]), "v": pa.array([None, None], pa.float64())}),
    )
    fns = ("count", "sum", "mean", "min", "max", "count_distinct")
    table = get_training_set(
        lake, entities([1], [at(3)]), [view(columns=(), windows=tuple(("v", f, 60) for f in fns))]
    ).table
    assert table.to_pylist()[0] == {
        "user_id": 1,
        "event_timestamp": at(3),
        "v_count": 2,
        "v_sum": None,
        "v_mean": None,
        "v_min": None,
        "v_max": None,
        "v_count_distinct": 0,
    }
    assert table.schema.field("v_sum").type == pa.float64()


def test_min_max_keep_the_column_type(lake: Lake) -> None:
    seen = [at(1).replace(tzinfo=UTC), at(2).replace(tzinfo=UTC)]
    lake.append(
        "events",
        pa.table(
            {
                "user_id": [1, 1],
                "ts": ts([at(1), at(2)]),
                "seen": ts(seen, tz="UTC"),
                "day": pa.array([date(2024, 1, 2), date(2024, 1, 1)]),
                "v": pa.array([1.5, -2.5], pa.float32()),
            }
        ),
    )
    spec = view(
        columns=("seen",),
        windows=(("seen", "max", 60), ("day", "min", 60), ("v", "min", 60), ("v", "sum", 60)),
    )
    table = get_training_set(lake, entities([1], [at(3)]), [spec]).table
    stored = lake.schema("events")
    for name, column in [("seen", "seen"), ("seen_max", "seen"), ("day_min", "day"), ("v_min", "v")]:
        assert table.schema.field(name).type == stored.field(column).type
    assert table.schema.field("v_sum").type == pa.float64()
    assert table.drop_columns(["user_id", "event_timestamp"]).to_pylist()[0] == {
        "seen": seen[1],
        "seen_max": seen[1],
        "day_min": date(2024, 1, 1),
        "v_min": -2.5,
        "v_sum": -1.0,
    }


def test_nan_is_a_value(lake: Lake) -> None:
    # As in SQL engines (and the online lookup): NaN sorts above every number, is one distinct value.
    nan = float("nan")
    values = [1.0, nan, nan, 2.0, None]
    lake.append("events", pa.table({"user_id": [1] * 5, "ts": ts([at(1)] * 5), "v": values}))
    fns = ("count", "count_distinct", "min", "max", "sum")
    spec = view(columns=(), windows=tuple(("v", fn, 60) for fn in fns))
    row = get_training_set(lake, entities([1], [at(2)]), [spec]).table.to_pylist()[0]
    assert (row["v_count"], row["v_count_distinct"], row["v_min"]) == (5, 3, 1.0)
    assert row["v_max"] != row["v_max"] and row["v_sum"] != row["v_sum"]


def test_ties_go_to_the_row_ingested_last(lake: Lake) -> None:
    # within one file: the later row; across versions: the later version, even if it sorts first
    lake.append(
        "events", pa.table({"user_id": [1, 1, 2, 2], "ts": ts([at(5)] * 4), "v": ["a", "b", "z", "y"]})
    )
    lake.append("events", pa.table({"user_id": [2, 3], "ts": ts([at(5), at(5)]), "v": ["c", "d"]}))
    out = get_training_set(lake, entities([1, 2, 3], [at(5)] * 3), [view()])
    assert out.table.column("v").to_pylist() == ["b", "c", "d"]
    assert out.dataset_versions == {"events": 1}


def test_winning_null_value_is_taken(lake: Lake) -> None:
    lake.append("events", pa.table({"user_id": [1, 1], "ts": ts([at(1), at(2)]), "v": [5, None]}))
    out = get_training_set(lake, entities([1, 1], [at(1), at(2)]), [view()])
    assert out.table.column("v").to_pylist() == [5, None]


def test_rows_with_null_event_time_are_ignored(lake: Lake) -> None:
    lake.append("events", pa.table({"user_id": [1, 1], "ts": ts([at(1), None]), "v": [5, 6]}))
    out = get_training_set(lake, entities([1], [at(10)]), [view(windows=(("v", "count", 60),))])
    assert out.table.select(["v", "v_count"]).to_pylist() == [{"v": 5, "v_count": 1}]


def test_no_history_null_key_duplicates_and_row_order(lake: Lake) -> None:
    lake.append("events", pa.table({"user_id": [1, 2], "ts": ts([at(0), at(0)]), "v": [10, 20]}))
    ent = entities(
        [2, None, 1, 9, 2, 1], [at(1), at(1), at(1), at(1), at(1), at(-1)], label=pa.array(list("abcdef"))
    )
    out = get_training_set(lake, ent, [view(windows=(("v", "count", 60), ("v", "sum", 60)))]).table
    assert out.column_names == ["user_id", "event_timestamp", "label", "v", "v_count", "v_sum"]
    assert out.column("label").to_pylist() == list("abcdef")
    assert out.column("v").to_pylist() == [20, None, 10, None, 20, None]
    assert out.column("v_count").to_pylist() == [1, 0, 1, 0, 1, 0]
    assert out.column("v_sum").to_pylist() == [20, None, 10, None, 20, None]


def test_multi_key_entities(lake: Lake) -> None:
    lake.append(
        "pairs",
        pa.table(
            {
                "user_id": [1, 1, 2, 2],
                "merchant": ["m1", "m2", "m1", None],
                "ts": ts([at(0), at(1), at(2), at(3)]),
                "v": [1, 2, 3, 4],
            }
        ),
    )
    spec = view(keys=("user_id", "merchant"), source="pairs", windows=(("v", "count", 60),))
    ent = pa.table(
        {
            "merchant": ["m1", "m2", "m1", "m2", None],
            "user_id": pa.array([1, 1, 2, 2, 2], pa.int32()),  # another integer width than the lake's
            "event_timestamp": ts([at(10)] * 5),
        }
    )
    out = get_training_set(lake, ent, [spec]).table
    assert out.column("v").to_pylist() == [1, 2, 3, None, None]
    assert out.column("v_count").to_pylist() == [1, 1, 1, 0, 0]


def test_time_zones_and_units(lake: Lake) -> None:
    paris = ZoneInfo("Europe/Paris")
    # The lake's event times are tz-aware (UTC storage); entity times come naive and in Paris time.
    lake.append(
        "events",
        pa.table(
            {
                "user_id": [1, 1],
                "ts": ts([at(0).replace(tzinfo=UTC), at(10).replace(tzinfo=UTC)], tz="UTC"),
                "v": [1, 2],
            }
        ),
    )
    edge = at(10).replace(tzinfo=UTC)
    naive = pa.table({"user_id": [1, 1], "event_timestamp": ts([at(10) - US, at(10)], unit="ns")})
    paris_times = [(edge - US).astimezone(paris), edge.astimezone(paris)]
    aware = pa.table({"user_id": [1, 1], "event_timestamp": ts(paris_times, tz="Europe/Paris")})
    seconds = pa.table({"user_id": [1, 1], "event_timestamp": ts([at(9), at(10)], unit="s", tz="UTC")})
    for ent in (naive, aware, seconds):
        out = get_training_set(lake, ent, [view(windows=(("v", "count", 10),))]).table
        assert out.column("v").to_pylist() == [1, 2]
        assert out.column("v_count").to_pylist() == [1, 1]
        assert out.schema.field("event_timestamp").type == ent.schema.field("event_timestamp").type


def test_nanoseconds_compare_at_microsecond_precision(lake: Lake) -> None:
    lake.append("events", pa.table({"user_id": [1], "ts": ts([at(1)]), "v": [1]}))
    base = pa.scalar(at(1), pa.timestamp("ns")).value
    ent = pa.table(
        {"user_id": [1, 1], "event_timestamp": pa.array([base - 1, base + 999], pa.timestamp("ns"))}
    )
    assert get_training_set(lake, ent, [view()]).table.column("v").to_pylist() == [None, 1]


def test_naive_event_times_in_the_lake_are_utc(lake: Lake) -> None:
    lake.append("events", pa.table({"user_id": [1], "ts": ts([at(10)]), "v": [1]}))
    ent = pa.table(
        {
            "user_id": [1, 1],
            "event_timestamp": ts([at(10).replace(tzinfo=UTC) - US, at(10).replace(tzinfo=UTC)], tz="UTC"),
        }
    )
    assert get_training_set(lake, ent, [view()]).table.column("v").to_pylist() == [None, 1]


def test_as_known_at_hides_a_late_backfill(lake: Lake) -> None:
    lake.append("events", pa.table({"user_id": [1], "ts": ts([at(0)]), "v": [1]}))
    time.sleep(0.01)  # commit times have millisecond precision
    lake.append(
        "events", pa.table({"user_id": [1, 1], "ts": ts([at(5), at(6)]), "v": [2, 3]})
    )  # the backfill
    first, backfill = lake.data_files("events")
    assert first.committed_at < backfill.committed_at
    # Entity times between the two commits: the backfill's rows have older event times, but
    # were not known yet.
    between = (first.committed_at + (backfill.committed_at - first.committed_at) / 2).replace(tzinfo=None)
    after = backfill.committed_at.replace(tzinfo=None)
    ent = entities([1, 1], [between, after])
    spec = view(windows=(("v", "count", 10**9), ("v", "max", 10**9)), ttl_s=None)
    naive = get_training_set(lake, ent, [spec]).table
    assert naive.select(["v", "v_count", "v_max"]).to_pylist() == [{"v": 3, "v_count": 3, "v_max": 3}] * 2
    known = get_training_set(lake, ent, [spec], as_known_at=True).table
    assert known.select(["v", "v_count", "v_max"]).to_pylist() == [
        {"v": 1, "v_count": 1, "v_max": 1},
        {"v": 3, "v_count": 3, "v_max": 3},  # committed exactly at t: known
    ]


def test_as_known_at_event_after_commit(lake: Lake) -> None:
    # Rows recorded ahead of their event time become visible at the event time, not at commit.
    future = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)
    lake.append("events", pa.table({"user_id": [1], "ts": ts([future]), "v": [1]}))
    ent = entities([1, 1], [future - US, future])
    out = get_training_set(lake, ent, [view(windows=(("v", "sum", 60),))], as_known_at=True).table
    assert out.select(["v", "v_sum"]).to_pylist() == [{"v": None, "v_sum": None}, {"v": 1, "v_sum": 1}]


def test_pinned_version(lake: Lake) -> None:
    lake.append("events", pa.table({"user_id": [1], "ts": ts([at(0)]), "v": [1]}))
    lake.append("events", pa.table({"user_id": [1], "ts": ts([at(1)]), "v": [2]}))
    ent = entities([1], [at(5)])
    pinned = get_training_set(lake, ent, [view()], versions={"events": 0, "other": 3})
    assert pinned.table.column("v").to_pylist() == [1]
    assert pinned.dataset_versions == {"events": 0}
    assert get_training_set(lake, ent, [view()]).dataset_versions == {"events": 1}
    with pytest.raises(NotFound, match="no version 7"):
        get_training_set(lake, ent, [view()], versions={"events": 7})


def test_several_views_and_full_names(lake: Lake) -> None:
    lake.append("events", pa.table({"user_id": [1], "ts": ts([at(0)]), "v": pa.array([1.5], pa.float32())}))
    lake.append("profiles", pa.table({"user_id": [1], "ts": ts([at(0)]), "v": ["x"]}))
    first, second = view(name="a"), view(name="b", source="profiles", windows=(("v", "max", 60),))
    ent = entities([1, 2], [at(1), at(1)])
    with pytest.raises(InvalidArgument, match="full_names=True"):
        get_training_set(lake, ent, [first, second])
    out = get_training_set(lake, ent, [first, second], full_names=True)
    assert out.table.column_names == ["user_id", "event_timestamp", "a__v", "b__v", "b__v_max"]
    assert out.table.schema.field("a__v").type == pa.float32()
    assert out.table.schema.field("b__v").type == out.table.schema.field("b__v_max").type == pa.string()
    assert out.table.select(["a__v", "b__v", "b__v_max"]).to_pylist() == [
        {"a__v": 1.5, "b__v": "x", "b__v_max": "x"},
        {"a__v": None, "b__v": None, "b__v_max": None},
    ]
    assert out.dataset_versions == {"events": 0, "profiles": 0}


def test_empty_entity_df(lake: Lake) -> None:
    lake.append("events", pa.table({"user_id": [1], "ts": ts([at(0)]), "v": [1]}))
    out = get_training_set(lake, entities([], []), [view(windows=(("v", "count", 60),))]).table
    assert out.num_rows == 0
    assert out.schema.field("v").type == pa.int64() and out.schema.field("v_count").type == pa.int64()


def test_bad_inputs(lake: Lake) -> None:
    lake.append("events", pa.table({"user_id": [1], "ts": ts([at(0)]), "v": [1], "name": ["a"]}))
    ent = entities([1], [at(1)])
    with pytest.raises(InvalidArgument, match="no column 'user_id'"):
        get_training_set(lake, ent.drop_columns(["user_id"]), [view()])
    with pytest.raises(InvalidArgument, match="no timestamp column 'when'"):
        get_training_set(lake, ent, [view()], timestamp_column="when")
    with pytest.raises(InvalidArgument, match="'event_timestamp' must be a timestamp, got string"):
        get_training_set(lake, ent.set_column(1, "event_timestamp", pa.array(["2024-01-01"])), [view()])
    with pytest.raises(InvalidArgument, match="'event_timestamp' has 1 null value"):
        get_training_set(lake, entities([1, 1], [at(1), None]), [view()])
    with pytest.raises(
        InvalidArgument, match=r"view 'uv': feature 'nope' .* columns are: user_id, ts, v, name"
    ):
        get_training_set(lake, ent, [view(columns=("nope",))])
    with pytest.raises(InvalidArgument, match="sum needs a numeric column"):
        get_training_set(lake, ent, [view(windows=(("name", "sum", 60),))])
    with pytest.raises(InvalidArgument, match="requested twice"):
        get_training_set(lake, ent, [view(), view()], full_names=True)
    with pytest.raises(InvalidArgument, match="entity_df already has"):
        get_training_set(lake, ent.append_column("v", pa.array([0])), [view()])
    with pytest.raises(InvalidArgument, match="is string in entity_df but int64"):
        get_training_set(lake, ent.set_column(0, "user_id", pa.array(["1"])), [view()])
    with pytest.raises(InvalidArgument, match="pyarrow Table"):
        get_training_set(lake, ent.to_pylist(), [view()])
    with pytest.raises(NotFound):
        get_training_set(lake, ent, [view(source="missing")])


def test_gather_across_chunks_is_a_plain_take() -> None:
    # Chunk by chunk (empty chunks included), in the asked order, with repeats and null positions.
    column = pa.chunked_array([["a", None, "c"], [], ["d", "e"], ["f"]])
    positions = pa.chunked_array([[5, None, 0, 3, 3, 1], [None, 4, 2]], pa.int64())
    gather = _Gather(positions)
    want = ["f", None, "a", "d", "d", None, None, "e", "c"]
    assert gather.take(column).to_pylist() == column.combine_chunks().take(positions).to_pylist() == want
    # Another column with the same chunks reuses the plan; one with other chunks gets its own.
    numbers = pa.chunked_array([[0, 1, 2], [], [3, 4], [5]])
    assert gather.take(numbers).to_pylist() == [5, None, 0, 3, 3, 1, None, 4, 2]
    assert gather.take(pa.chunked_array([[0, 1], [2, 3, 4, 5]])).to_pylist() == [
        5,
        None,
        0,
        3,
        3,
        1,
        None,
        4,
        2,
    ]
    assert gather.take(pa.chunked_array([list("abcdef")])).to_pylist() == [
        "f",
        None,
        "a",
        "d",
        "d",
        "b",
        None,
        "e",
        "c",
    ]
    assert _Gather(pa.chunked_array([], pa.int64())).take(column).to_pylist() == []


def test_packed_span_covers_what_an_entity_row_can_pick() -> None:
    us = pa.chunked_array([[100, None, 400, 900]], pa.int64())
    # No TTL: from the first event to the last entity time (later events are never picked).
    span = _packed_span(us, pa.chunked_array([[500, 50]], pa.int64()), None, rows=4)
    assert (span.lo, span.hi, span.bits) == (100, 500, 2)
    # A TTL of 1 s drops what is stale for every entity row.
    day = 86_400 * 1_000_000
    span = _packed_span(pa.chunked_array([[0, 10 * day]]), pa.chunked_array([[5 * day]]), 1, rows=2)
    assert (span.lo, span.hi, span.bits) == (5 * day - 999_999, 5 * day, 1)
    # Too wide to pack (positions take 40 bits, a century of microseconds 52): grouped instead.
    century = 100 * 365 * day
    assert (
        _packed_span(pa.chunked_array([[0, century]]), pa.chunked_array([[century]]), None, 1 << 40) is None
    )
    # Nothing to pick.
    assert _packed_span(pa.chunked_array([[None]], pa.int64()), pa.chunked_array([[1]]), None, 1) is None
    assert _packed_span(pa.chunked_array([[10]]), pa.chunked_array([[5]]), None, 1) is None


def test_centuries_of_event_times_with_many_rows(lake: Lake) -> None:
    # Events every 20 days over 270 years (53 bits of microseconds) and 5,001 rows (13 bits of
    # positions): too wide to pack into one BIGINT, so the grouped query answers.
    n = 5_000
    times = [datetime(1800, 1, 1) + timedelta(days=20 * i) for i in range(n)]
    lake.append(
        "events", pa.table({"user_id": [i % 3 for i in range(n)], "ts": ts(times), "v": list(range(n))})
    )
    # A tie with user 0's last event, ingested last.
    lake.append("events", pa.table({"user_id": [0], "ts": ts([times[4998]]), "v": [-1]}))
    micros = pa.chunked_array([[(t - T0) // US for t in times]])
    assert _packed_span(micros, micros, None, n + 1) is None
    ent = entities([0, 1, 2, 0], [datetime(2100, 1, 1), times[-1], times[0], times[4997]])
    out = get_training_set(lake, ent, [view()])
    assert out.table.column("v").to_pylist() == [-1, 4999, None, 4995]


def _plans_used(monkeypatch: pytest.MonkeyPatch, *builders: str) -> list[str]:
    """The names of ``builders`` (query builders of the offline module) as they get called."""
    used: list[str] = []
    for name in builders:
        build = getattr(offline, name)
        monkeypatch.setattr(offline, name, lambda *a, _b=build, _n=name: used.append(_n) or _b(*a))
    return used


@pytest.mark.parametrize(("hot", "plan"), [(True, "_window_frame_sql"), (False, "_window_join_sql")])
def test_window_plan_follows_how_many_rows_the_windows_hold(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, hot: bool, plan: str
) -> None:
    # 4,000 events in one day, on one key (each entity row's window holds thousands of them:
    # window frames) or spread over 1,000 keys (a few each: the range join).
    n = 4_000
    users = [0] * n if hot else [i % 1_000 for i in range(n)]
    times = [at(20 * i) for i in range(n)]
    lake.append("events", pa.table({"user_id": users, "ts": ts(times), "v": [1.0] * n}))
    used = _plans_used(monkeypatch, "_window_frame_sql", "_window_join_sql")
    ent = entities([0] * 200, [at(20 * n)] * 200)
    out = get_training_set(lake, ent, [view(windows=(("v", "count", 86_400),))])
    assert used == [plan]
    assert out.table.column("v_count").to_pylist() == [n if hot else 4] * 200


def test_source_rows_far_outside_the_packed_span(lake: Lake) -> None:
    # A TTL narrows the span to the entity times: rows centuries away are left out of the
    # packing (they could only ever be stale or in the future), never overflow it.
    n = 5_000
    times = [datetime(1800, 1, 1) + timedelta(days=20 * i) for i in range(n)]
    lake.append("events", pa.table({"user_id": [0] * n, "ts": ts(times), "v": list(range(n))}))
    lake.append("events", pa.table({"user_id": [0, 0], "ts": ts([at(0), at(30)]), "v": [-1, -2]}))
    ent = entities([0, 0, 0], [at(29), at(31), at(3_600)])
    out = get_training_set(lake, ent, [view(ttl_s=60)])
    assert out.table.column("v").to_pylist() == [-1, -2, None]


@pytest.mark.parametrize(("hot", "plan"), [(True, "_latest_sql"), (False, "_latest_join_sql")])
def test_latest_plan_follows_how_many_rows_a_ttl_holds(
    lake: Lake, monkeypatch: pytest.MonkeyPatch, hot: bool, plan: str
) -> None:
    # As for windows: few rows within the TTL of each entity row's time (spread keys) take the
    # join, thousands (one hot key) the ASOF join. Both pick the latest, ties to the last ingested.
    # (The join is considered beside few entity rows only: here 101 against 4,001 source rows.)
    n = 4_000
    users = [0] * n if hot else [i % 1_000 for i in range(n)]
    lake.append(
        "events", pa.table({"user_id": users, "ts": ts([at(20 * i) for i in range(n)]), "v": list(range(n))})
    )
    lake.append("events", pa.table({"user_id": [0], "ts": ts([at(20 * (n - 1000))]), "v": [-1]}))  # a tie
    used = _plans_used(monkeypatch, "_latest_sql", "_latest_join_sql")
    ent = entities([0] * 100 + [1], [at(20 * (n - 1000))] * 100 + [at(10**6)])
    out = get_training_set(lake, ent, [view(ttl_s=86_400)])
    assert used == [plan]
    # User 0's latest at that time is the tie, ingested last; user 1's last event is a day stale.
    assert out.table.column("v").to_pylist() == [-1] * 100 + [None]
