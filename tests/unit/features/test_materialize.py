"""Materialization from a real lake into the online store, and online lookup of what it wrote.

Runs on SQLite and again on a real Redis (``online_store``).
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gyre.data.lake import Lake
from gyre.errors import InvalidArgument, NotFound
from gyre.features._parquet import with_dictionaries
from gyre.features.lookup import OnlineLookup
from gyre.features.materialize import _entity_keys, _json_objects, encode_orders, materialize
from gyre.features.online import OnlineStore
from gyre.features.online.base import encode_order
from gyre.features.online.codec import decode_values, encode_values, entity_key, to_us
from gyre.features.spec import ColumnFeature, ViewSpec, WindowFeature

BASE = datetime(2024, 1, 1)
US = timedelta(microseconds=1)
SCHEMA = pa.schema(
    [("user_id", pa.int64()), ("ts", pa.timestamp("us")), ("amount", pa.float64()), ("country", pa.string())]
)
FUNCTIONS = ("count", "sum", "mean", "min", "max", "count_distinct")


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def rows(*items: tuple[Any, ...]) -> pa.Table:
    """(user_id, seconds or None, amount, country) tuples as a payments table."""
    users, secs, amounts, countries = zip(*items, strict=True) if items else ((), (), (), ())
    return pa.table(
        {
            "user_id": list(users),
            "ts": [at(s) if s is not None else None for s in secs],
            "amount": list(amounts),
            "country": list(countries),
        },
        schema=SCHEMA,
    )


def make_view(
    name: str = "activity",
    *,
    ttl_s: int | None = None,
    windows: tuple[WindowFeature, ...] | None = None,
    columns: tuple[ColumnFeature, ...] | None = None,
) -> ViewSpec:
    if windows is None:
        windows = (
            *(WindowFeature(f"amount_{f}_10s", "amount", f, 10) for f in FUNCTIONS),
            WindowFeature("amount_count_60s", "amount", "count", 60),
            WindowFeature("country_count_distinct_60s", "country", "count_distinct", 60),
        )
    if columns is None:
        columns = (ColumnFeature("country", "country"), ColumnFeature("last_amount", "amount"))
    return ViewSpec(
        name=name,
        entity="user",
        join_keys=("user_id",),
        source="payments",
        event_time="ts",
        ttl_s=ttl_s,
        columns=columns,
        windows=windows,
    )


def get(store: OnlineStore, view: ViewSpec, users: list[Any], when: datetime) -> list[dict[str, Any]]:
    refs = [f"{view.name}:{n}" for n in view.feature_names]
    return OnlineLookup(store, [view]).get([{"user_id": u} for u in users], refs, at=when)


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(f"file://{tmp_path / 'store'}")


# -- full and incremental ----------------------------------------------------------------------


def test_full_and_incremental_runs_give_the_same_lookups(lake: Lake, online_store: OnlineStore) -> None:
    incremental, full = make_view("inc", ttl_s=30), make_view("full", ttl_s=30)
    batches = [
        rows((1, 0, 1.0, "US"), (1, 5, None, "DE"), (2, 3, 2.0, None), (3, None, 9.0, "XX")),
        rows((1, 5, 4.0, "FR"), (2, 12, 3.0, "US"), (4, 15, -1.0, "GB"), (1, 18, 6.0, "US")),
        rows((2, 12, 5.0, "DE"), (1, 25, None, None), (4, 2, 7.0, "old"), (3, 26, 1.5, "FR")),
    ]
    results = []
    for n, batch in enumerate(batches):
        lake.append("payments", batch)
        results.append(materialize(lake, online_store, [incremental], now=at(10 * (n + 1) + 5))["inc"])
    assert [r.full for r in results] == [True, False, False]
    assert [(r.since, r.version, r.files, r.rows) for r in results[1:]] == [
        (0, 1, 1, 4),
        (1, 2, 1, 4),
    ]
    rebuilt = materialize(lake, online_store, [full], full=True, now=at(35))["full"]
    assert (rebuilt.full, rebuilt.reason, rebuilt.files, rebuilt.rows) == (True, "requested", 3, 12)

    for when in (at(35), at(36), at(40.5), at(45), at(60)):
        assert get(online_store, incremental, [1, 2, 3, 4, 5], when) == get(
            online_store, full, [1, 2, 3, 4, 5], when
        )
    got = {u: r for u, r in zip([1, 2, 3, 4], get(online_store, full, [1, 2, 3, 4], at(35)), strict=True)}
    assert got[1]["country"] is None and got[1]["last_amount"] is None  # the row at 25 has nulls
    assert got[2]["country"] == "DE" and got[2]["last_amount"] == 5.0  # tie at 12: the later version
    assert got[4]["country"] == "GB"  # the backfilled row at 2 is older
    assert got[3]["amount_count_60s"] == 1 and got[3]["amount_sum_10s"] == 1.5
    assert got[1]["amount_count_60s"] == 5  # 0, 5, 5, 18, 25 (nulls counted)
    assert got[1]["amount_count_10s"] == 0  # (25, 35]: the row at 25 is just out


def test_an_up_to_date_view_reads_nothing(lake: Lake, online_store: OnlineStore) -> None:
    view = make_view()
    lake.append("payments", rows((1, 0, 1.0, "US")))
    materialize(lake, online_store, [view], now=at(1))
    again = materialize(lake, online_store, [view], now=at(2))["activity"]
    assert (again.full, again.files, again.rows, again.since, again.version) == (False, 0, 0, 0, 0)


def test_rerun_after_a_crash_before_the_watermark(
    lake: Lake, online_store: OnlineStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    view, clean = make_view("crashy"), make_view("clean")
    lake.append("payments", rows((1, 0, 1.0, "US"), (2, 1, 2.0, "DE")))
    materialize(lake, online_store, [view, clean], now=at(5))
    lake.append("payments", rows((1, 3, 3.0, "FR"), (2, 1, 4.0, "GB"), (1, 4, None, "IT")))

    original = online_store.set_watermark

    def crash(name: str, version: int, *, fingerprint: str = "") -> None:
        if name == "crashy":
            raise RuntimeError("killed")
        original(name, version, fingerprint=fingerprint)

    monkeypatch.setattr(online_store, "set_watermark", crash)
    with pytest.raises(RuntimeError, match="killed"):
        materialize(lake, online_store, [view], now=at(5))
    monkeypatch.undo()
    assert online_store.get_watermark("crashy") == 0  # the writes landed, the watermark did not

    rerun = materialize(lake, online_store, [view], now=at(6))["crashy"]
    assert (rerun.full, rerun.since, rerun.files) == (False, 0, 1)  # the same files again
    materialize(lake, online_store, [clean], now=at(6))
    for when in (at(6), at(9), at(14.5)):
        assert get(online_store, view, [1, 2], when) == get(online_store, clean, [1, 2], when)
    assert get(online_store, view, [1], at(6))[0]["amount_count_10s"] == 3  # not double-counted


# -- semantics ---------------------------------------------------------------------------------


def test_ttl_edges(lake: Lake, online_store: OnlineStore) -> None:
    view = make_view(ttl_s=10, windows=())
    lake.append("payments", rows((1, 0, 1.0, "US")))
    materialize(lake, online_store, [view], now=at(0))
    assert get(online_store, view, [1], at(0)) == [{"country": "US", "last_amount": 1.0}]
    assert get(online_store, view, [1], at(10) - US) == [{"country": "US", "last_amount": 1.0}]
    # Valid while event_time > at - ttl: at exactly ttl later it has expired.
    assert get(online_store, view, [1], at(10)) == [{"country": None, "last_amount": None}]


def test_window_edges(lake: Lake, online_store: OnlineStore) -> None:
    view = make_view(windows=(WindowFeature("n", "amount", "count", 10),), columns=())
    lake.append(
        "payments", rows((1, 0, 1.0, "US"), (1, 5, 2.0, "US"), (1, 10, 3.0, "US"), (1, 11, 4.0, "US"))
    )
    materialize(lake, online_store, [view], now=at(0))  # windows are exact from `now` on
    # The window at t is (t - 10 s, t]: the event at t - 10 s is out, the one at t is in.
    assert get(online_store, view, [1], at(10)) == [{"n": 2}]
    assert get(online_store, view, [1], at(10) - US) == [{"n": 2}]  # 0 is still in: (-0.000001, 9.999999]
    assert get(online_store, view, [1], at(11) - US) == [{"n": 2}]
    assert get(online_store, view, [1], at(11)) == [{"n": 3}]
    assert get(online_store, view, [1], at(15)) == [{"n": 2}]
    assert get(online_store, view, [1], at(21)) == [{"n": 0}]


def test_window_functions(lake: Lake, online_store: OnlineStore) -> None:
    view = make_view(columns=())
    lake.append(
        "payments",
        rows((1, 1, 4.0, "US"), (1, 2, None, None), (1, 3, 1.0, "US"), (1, 4, 7.0, "DE"), (2, 1, None, None)),
    )
    materialize(lake, online_store, [view], now=at(5))
    one, two, three = get(online_store, view, [1, 2, 3], at(5))
    assert one == {
        "amount_count_10s": 4,
        "amount_sum_10s": 12.0,
        "amount_mean_10s": 4.0,
        "amount_min_10s": 1.0,
        "amount_max_10s": 7.0,
        "amount_count_distinct_10s": 3,
        "amount_count_60s": 4,
        "country_count_distinct_60s": 2,
    }
    assert two == {
        "amount_count_10s": 1,
        "amount_sum_10s": None,
        "amount_mean_10s": None,
        "amount_min_10s": None,
        "amount_max_10s": None,
        "amount_count_distinct_10s": 0,
        "amount_count_60s": 1,
        "country_count_distinct_60s": 0,
    }
    assert three == {**two, "amount_count_10s": 0, "amount_count_60s": 0}


def test_ties_go_to_the_row_ingested_last(lake: Lake, online_store: OnlineStore) -> None:
    view = make_view(windows=())
    lake.append("payments", rows((1, 5, 1.0, "a"), (1, 5, 2.0, "b"), (2, 5, 3.0, "z"), (2, 5, 4.0, "y")))
    lake.append("payments", rows((2, 5, None, None), (3, 5, 5.0, "c")))
    materialize(lake, online_store, [view], now=at(5))
    assert get(online_store, view, [1, 2, 3], at(5)) == [
        {"country": "b", "last_amount": 2.0},  # the later row of the file
        {"country": None, "last_amount": None},  # the later version, though its values are null
        {"country": "c", "last_amount": 5.0},
    ]


def test_latest_rows_over_a_wide_time_span(lake: Lake, online_store: OnlineStore) -> None:
    """Two centuries x 2,000 rows do not pack into 64 bits (the wider path); ties still go to
    the row ingested last, across versions too."""
    old, new = datetime(1900, 1, 1), datetime(2100, 1, 1)
    batches = []
    for version in range(2):
        n = 1000
        users = [i % 7 for i in range(n)]
        times = [new if i % 50 == version else old + timedelta(days=i) for i in range(n)]
        batches.append(
            pa.table(
                {"user_id": users, "ts": times, "amount": [float(version * n + i) for i in range(n)]},
                schema=SCHEMA.remove(3),
            )
        )
        lake.append("payments", batches[-1])
    view = make_view(columns=(ColumnFeature("last_amount", "amount"),), windows=())
    materialize(lake, online_store, [view], now=at(0))
    rows_in_order = [r for batch in batches for r in batch.to_pylist()]
    want = {}
    for position, r in enumerate(rows_in_order):  # the latest time, then the last ingested
        best = want.get(r["user_id"])
        if best is None or (r["ts"], position) > best[0]:
            want[r["user_id"]] = ((r["ts"], position), r["amount"])
    got = get(online_store, view, list(range(7)), datetime(2200, 1, 1))
    assert [row["last_amount"] for row in got] == [want[u][1] for u in range(7)]


def test_dictionary_encoded_strings(lake: Lake, online_store: OnlineStore) -> None:
    """Category strings (a string key, a string feature) read as dictionaries give the values
    plain strings give, and a file of unique strings turns that off for its column."""
    n = 3000
    categories = pa.table(
        {
            "account": [f"acct-{i % 40}" for i in range(n)],
            "ts": [BASE + timedelta(seconds=i % 500) for i in range(n)],
            "plan": [["free", "pro", None, "team é"][i % 4] for i in range(n)],
            "amount": [float(i) for i in range(n)],
        }
    )
    unique = categories.set_column(2, "plan", pa.array([f"custom-plan-{i:06d}" for i in range(n)]))
    view = ViewSpec(
        "accounts",
        "account",
        ("account",),
        "accounts",
        "ts",
        None,
        (ColumnFeature("plan", "plan"), ColumnFeature("amount", "amount")),
        (),
    )
    refs = ["accounts:plan", "accounts:amount"]
    rows = [{"account": f"acct-{i}"} for i in range(41)]
    for version, table in enumerate([categories, unique]):
        lake.append("accounts", table)
        dataset = lake.open_files("accounts", lake.data_files("accounts"))
        schema, _ = with_dictionaries(dataset.schema, list(dataset.get_fragments()), ["account", "plan"])
        assert [pa.types.is_dictionary(schema.field(c).type) for c in ("account", "plan")] == [
            True,
            version == 0,
        ]
        materialize(lake, online_store, [view], now=at(1000))
        everything = lake.open_files("accounts", lake.data_files("accounts")).to_table()
        want: dict[str, tuple[Any, ...]] = {}
        for position, r in enumerate(everything.to_pylist()):
            if r["account"] not in want or (r["ts"], position) > want[r["account"]][0]:
                want[r["account"]] = ((r["ts"], position), r["plan"], r["amount"])
        got = OnlineLookup(online_store, [view]).get(rows, refs, at=at(1000))
        assert got[:40] == [
            {"plan": want[r["account"]][1], "amount": want[r["account"]][2]} for r in rows[:40]
        ]
        assert got[40] == {"plan": None, "amount": None}


def test_small_batches_and_reductions_change_nothing(
    lake: Lake, online_store: OnlineStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streamed batches, several reductions and flushes per run (memory bounds met with tiny
    sizes) leave the store as one pass over everything does."""
    for version in range(3):
        lake.append(
            "payments",
            rows(
                *((u % 13, (u * 7 + version) % 40, float(u + 100 * version), f"c{u % 3}") for u in range(90))
            ),
        )
    whole, small = make_view("whole"), make_view("small")
    materialize(lake, online_store, [whole], now=at(45))
    monkeypatch.setattr("gyre.features.materialize.BATCH_ROWS", 7)
    monkeypatch.setattr("gyre.features.materialize.REDUCE_ROWS", 20)
    monkeypatch.setattr("gyre.features.materialize.WRITE_ROWS", 3)
    result = materialize(lake, online_store, [small], now=at(45))["small"]
    # Several flushes: keys are created, then replaced by later winners.
    assert result.rows == 270 and result.latest_written > 13
    for when in (at(20), at(45)):
        assert get(online_store, whole, list(range(14)), when) == get(
            online_store, small, list(range(14)), when
        )


def test_lookups_at_times(lake: Lake, online_store: OnlineStore) -> None:
    view = make_view(ttl_s=100, windows=(WindowFeature("n", "amount", "count", 60),))
    lake.append("payments", rows((1, 10, 1.0, "US"), (1, 20, 2.0, "DE")))
    materialize(lake, online_store, [view], now=at(20))
    refs = ["activity:country", "activity:n"]
    lookup = OnlineLookup(online_store, [view])
    assert lookup.get([{"user_id": 1}], refs, at=at(20)) == [{"country": "DE", "n": 2}]
    assert lookup.get([{"user_id": 1}], refs, at=at(75)) == [{"country": "DE", "n": 1}]
    # An aware time means the same instant as its naive UTC twin.
    eastern = at(75).replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=-5)))
    assert lookup.get([{"user_id": 1}], refs, at=eastern) == [{"country": "DE", "n": 1}]
    # Default: now, long after the data (the TTL has passed, the window is empty).
    assert lookup.get([{"user_id": 1}], refs) == [{"country": None, "n": 0}]
    # Before the latest row's event time the store cannot know the older value: null, never the future one.
    assert lookup.get([{"user_id": 1}], refs, at=at(15))[0]["country"] is None


def test_rows_without_event_time_or_key_are_ignored(lake: Lake, online_store: OnlineStore) -> None:
    view = make_view(windows=(WindowFeature("n", "amount", "count", 60),))
    lake.append("payments", rows((1, 1, 1.0, "US"), (1, None, 2.0, "late"), (None, 2, 3.0, "nobody")))
    result = materialize(lake, online_store, [view], now=at(2))["activity"]
    assert (result.rows, result.latest_written, result.events_written) == (3, 1, 1)
    assert get(online_store, view, [1, None], at(2)) == [
        {"country": "US", "last_amount": 1.0, "n": 1},
        {"country": None, "last_amount": None, "n": 0},
    ]


def test_events_outside_the_window_are_not_kept(lake: Lake, online_store: OnlineStore) -> None:
    view = make_view(windows=(WindowFeature("n", "amount", "count", 10),), columns=())
    lake.append("payments", rows((1, 0, 1.0, "US"), (1, 5, 1.0, "US"), (1, 30, 1.0, "US")))
    first = materialize(lake, online_store, [view], now=at(12))["activity"]
    assert first.events_written == 2  # the event at 0 s is out of every window from now on
    second = materialize(lake, online_store, [view], now=at(20))["activity"]
    assert second.events_trimmed == 1
    # What is left: the event at 30 s, with no values (a count needs none).
    assert online_store.read_events("activity", [entity_key([1])], -(10**18), 10**18) == [
        [(to_us(at(30)), {})]
    ]
    assert get(online_store, view, [1], at(30)) == [{"n": 1}]


def test_a_changed_definition_rebuilds(lake: Lake, online_store: OnlineStore) -> None:
    lake.append("payments", rows((1, 1, 1.0, "US")))
    materialize(lake, online_store, [make_view(columns=(ColumnFeature("country", "country"),))], now=at(1))
    lake.append("payments", rows((2, 2, 2.0, "DE")))
    view = make_view()  # now also last_amount
    result = materialize(lake, online_store, [view], now=at(2))["activity"]
    assert (result.full, result.reason, result.files) == (True, "definition changed", 2)
    assert [r["last_amount"] for r in get(online_store, view, [1, 2], at(2))] == [1.0, 2.0]
    # A TTL is applied when reading, so changing it needs no rebuild.
    again = materialize(lake, online_store, [make_view(ttl_s=5)], now=at(2))["activity"]
    assert not again.full


def test_a_rewritten_dataset_rebuilds(lake: Lake, online_store: OnlineStore) -> None:
    from deltalake import DeltaTable

    view = make_view(windows=(WindowFeature("n", "amount", "count", 60),))
    lake.append("payments", rows((1, 1, 1.0, "US"), (1, 2, 50.0, "DE"), (2, 1, 3.0, "FR")))
    materialize(lake, online_store, [view], now=at(2))
    DeltaTable(lake.table_uri("payments")).delete("amount > 10")  # e.g. an erasure
    result = materialize(lake, online_store, [view], now=at(3))["activity"]
    assert (result.full, result.reason) == (True, "dataset rewritten")
    assert get(online_store, view, [1, 2], at(3)) == [
        {"country": "US", "last_amount": 1.0, "n": 1},
        {"country": "FR", "last_amount": 3.0, "n": 1},
    ]


def test_composite_and_string_keys(lake: Lake, online_store: OnlineStore) -> None:
    view = ViewSpec(
        name="pair",
        entity="pair",
        join_keys=("user", "merchant"),
        source="pairs",
        event_time="ts",
        ttl_s=None,
        columns=(ColumnFeature("v", "v"),),
        windows=(WindowFeature("n", "v", "count", 60),),
    )
    users = ["u1", 'q"uote', "back\\slash", "tab\there", "é✓"]
    lake.append(
        "pairs",
        pa.table(
            {
                "user": users,
                "merchant": [7, 7, 8, 9, 10],
                "ts": [at(1)] * 5,
                "v": [1, 2, 3, 4, 5],
            }
        ),
    )
    materialize(lake, online_store, [view], now=at(1))
    entity_rows = [{"user": u, "merchant": m} for u, m in zip(users, [7, 7, 8, 9, 10], strict=True)]
    got = OnlineLookup(online_store, [view]).get(
        [*entity_rows, {"user": "u1", "merchant": 8}], ["pair:v", "pair:n"], at=at(1)
    )
    assert got == [{"v": i + 1, "n": 1} for i in range(5)] + [{"v": None, "n": 0}]


def test_event_time_types(lake: Lake, online_store: OnlineStore) -> None:
    nanos = pa.table(
        {
            "user_id": [1, 1],
            "ts": pa.array(
                [at(1).replace(tzinfo=UTC), at(2).replace(tzinfo=UTC)], pa.timestamp("ns", tz="UTC")
            ),
            "amount": [1.0, 2.0],
        }
    )
    lake.append("nanos", nanos)
    days = pa.table({"user_id": [1, 1], "day": [date(2024, 1, 1), date(2024, 1, 2)], "amount": [1.0, 2.0]})
    lake.append("days", days)
    window = (WindowFeature("n", "amount", "count", 86400),)
    by_ts = ViewSpec("by_ts", "u", ("user_id",), "nanos", "ts", None, (ColumnFeature("a", "amount"),), window)
    by_day = ViewSpec(
        "by_day", "u", ("user_id",), "days", "day", None, (ColumnFeature("a", "amount"),), window
    )
    materialize(lake, online_store, [by_ts, by_day], now=at(2))
    lookup = OnlineLookup(online_store, [by_ts, by_day])
    refs = ["by_ts:a", "by_ts:n", "by_day:a", "by_day:n"]
    # Nanoseconds are truncated to microseconds; a date is its midnight (UTC). At 00:00:02 the
    # latest day row (Jan 2) is still in the future, so the store cannot say the value then.
    assert lookup.get([{"user_id": 1}], refs, at=at(2), full_names=True) == [
        {"by_ts__a": 2.0, "by_ts__n": 2, "by_day__a": None, "by_day__n": 1}
    ]
    assert lookup.get([{"user_id": 1}], refs, at=datetime(2024, 1, 2), full_names=True) == [
        {"by_ts__a": 2.0, "by_ts__n": 2, "by_day__a": 2.0, "by_day__n": 1}
    ]


def test_bad_sources_are_refused(lake: Lake, online_store: OnlineStore) -> None:
    lake.append("payments", rows((1, 1, 1.0, "US")))
    with pytest.raises(
        InvalidArgument, match=r"reads column\(s\) 'nope'.*columns are user_id, ts, amount, country"
    ):
        materialize(lake, online_store, [make_view(columns=(ColumnFeature("x", "nope"),))])
    lake.append("strings", pa.table({"user_id": [1], "ts": ["2024-01-01"], "amount": [1.0]}))
    bad_time = ViewSpec("s", "u", ("user_id",), "strings", "ts", None, (ColumnFeature("a", "amount"),), ())
    with pytest.raises(InvalidArgument, match="the event time must be a timestamp or a date"):
        materialize(lake, online_store, [bad_time])
    with pytest.raises(NotFound, match="no data in the lake"):
        materialize(lake, online_store, [ViewSpec("m", "u", ("user_id",), "missing", "ts", None, (), ())])


# -- lookup errors -----------------------------------------------------------------------------


def test_lookup_errors(lake: Lake, online_store: OnlineStore) -> None:
    view = make_view()
    other = make_view("other")
    lookup = OnlineLookup(online_store, [view, other])
    with pytest.raises(NotFound, match="No feature view named 'activty'.*Did you mean 'activity'"):
        lookup.get([{"user_id": 1}], ["activty:country"])
    with pytest.raises(NotFound, match="has no feature 'contry'.*Did you mean 'country'"):
        lookup.get([{"user_id": 1}], ["activity:contry"])
    with pytest.raises(InvalidArgument, match="not of the form 'view:feature'"):
        lookup.get([{"user_id": 1}], ["country"])
    with pytest.raises(InvalidArgument, match="non-empty list"):
        lookup.get([{"user_id": 1}], "activity:country")
    with pytest.raises(
        InvalidArgument, match="Entity row 1 has no 'user_id', a join key of feature view 'activity'"
    ):
        lookup.get([{"user_id": 1}, {"user": 2}], ["activity:country"])
    with pytest.raises(InvalidArgument, match="pass full_names=True"):
        lookup.get([{"user_id": 1}], ["activity:country", "other:country"])


def test_lookup_names_and_order(lake: Lake, online_store: OnlineStore) -> None:
    lake.append("payments", rows((1, 1, 1.0, "US")))
    view, other = make_view(), make_view("other")
    materialize(lake, online_store, [view, other], now=at(1))
    lookup = OnlineLookup(online_store, [view, other])
    refs = ["activity:amount_sum_10s", "other:country", "activity:country", "activity:amount_sum_10s"]
    [row] = lookup.get([{"user_id": 1}], refs, at=at(1), full_names=True)
    assert list(row) == ["activity__amount_sum_10s", "other__country", "activity__country"]
    assert row == {"activity__amount_sum_10s": 1.0, "other__country": "US", "activity__country": "US"}
    assert lookup.get([], refs, at=at(1), full_names=True) == []
    [short] = lookup.get(
        [{"user_id": 1, "extra": "ignored"}], ["activity:amount_sum_10s", "activity:country"], at=at(1)
    )
    assert list(short) == ["amount_sum_10s", "country"]


def test_lookup_shapes(lake: Lake, online_store: OnlineStore) -> None:
    """Every way of naming a view's columns gives the same values, and each row its own dict."""
    lake.append("payments", rows((1, 1, 1.5, "US"), (2, 2, None, "DE")))
    same = (ColumnFeature("country", "country"), ColumnFeature("amount", "amount"))
    view = make_view(columns=same, windows=())
    materialize(lake, online_store, [view], now=at(2))
    lookup = OnlineLookup(online_store, [view])
    users = [{"user_id": u} for u in (1, 2, 3, 1, None)]
    want = [("US", 1.5), ("DE", None), (None, None), ("US", 1.5), (None, None)]
    for refs, full_names in (
        (["activity:country", "activity:amount"], False),  # the stored row as it is
        (["activity:country", "activity:amount"], True),  # renamed
        (["activity:amount", "activity:country"], False),  # reordered
        (["activity:amount"], True),  # a subset
    ):
        got = lookup.get(users, refs, at=at(2), full_names=full_names)
        names = [r.replace(":", "__") if full_names else r.split(":")[1] for r in refs]
        assert all(list(row) == names for row in got)
        assert [tuple(row[n] for n in names) for row in got] == [
            tuple(dict(zip(("country", "amount"), w, strict=True))[n.split("__")[-1]] for n in names)
            for w in want
        ]
        # One entity at a time (a shorter path) gives the same rows.
        assert [lookup.get([u], refs, at=at(2), full_names=full_names)[0] for u in users] == got
        got[0][names[0]] = "changed"  # the same entity twice: two dicts
        assert got[3][names[0]] != "changed" and got[4] is not got[2]
    [alone] = lookup.get(users[:1], ["activity:country", "activity:amount"], at=at(2))
    assert alone == {"country": "US", "amount": 1.5}
    alone["country"] = "changed"  # the caller's to change: the next lookup is unaffected
    assert lookup.get(users[:1], ["activity:country", "activity:amount"], at=at(2)) == [
        {"country": "US", "amount": 1.5}
    ]


# -- encoding ----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)), max_size=40),
    chunk=st.integers(1, 8),
    width=st.sampled_from([32, 64]),
)
def test_finite_floats_encode_as_the_codec_does(values: list[float | None], chunk: int, width: int) -> None:
    """Columns of finite floats (orjson's texts, cut out of its output buffer) read back as
    the codec's texts of the same values, chunk boundaries and nulls anywhere."""
    kind = pa.float32() if width == 32 else pa.float64()
    column = pa.chunked_array([values[i : i + chunk] for i in range(0, len(values), chunk)], kind)
    texts = _json_objects(pa.table({"f": column}), ["f"]).to_pylist()
    want = [encode_values(row) for row in pa.table({"f": column}).to_pylist()]
    assert [repr(decode_values(t)["f"]) for t in texts] == [repr(decode_values(w)["f"]) for w in want]


def test_vectorized_encoding_matches_the_codec() -> None:
    table = pa.table(
        {
            "i": pa.array([1, -(2**63), None, 0], pa.int64()),
            "u8": pa.array([255, 0, None, 1], pa.uint8()),
            "f": pa.array([1.0, -0.0, math.nan, None], pa.float64()),
            "f32": pa.array([0.1, math.inf, -math.inf, 1e20], pa.float32()),
            # Finite floats (with nulls) take another path than columns with NaN or infinities.
            "finite": pa.array([1.0, -0.0, None, 1e20], pa.float64()),
            "finite32": pa.array([0.1, None, 3.0, 1e-7], pa.float32()),
            "all_null": pa.array([None] * 4, pa.float64()),
            "b": pa.array([True, False, None, True]),
            "s": pa.array(["plain", 'q"\\\n\x01', None, "é✓"]),
            "ls": pa.array(["a", "b", None, "c"], pa.large_string()),
            "d": pa.array(["x", "y", "x", None]).dictionary_encode(),
            "ts": pa.array(
                [datetime(2024, 1, 1, 0, 0, 0, 1), None, datetime(1969, 12, 31), datetime(2024, 1, 1)]
            ),
            "tz": pa.array([datetime(2024, 1, 1, tzinfo=UTC)] * 4, pa.timestamp("us", tz="UTC")),
            "day": pa.array([date(2024, 1, 1), None, date(1, 1, 1), date(9999, 12, 31)]),
            "dec": pa.array([Decimal("1.50"), None, Decimal("-0.01"), Decimal(0)], pa.decimal128(10, 2)),
            "bin": pa.array([b"\x00", None, b"", b"xyz"]),
            "lst": pa.array([[1, 2], None, [], [None]], pa.list_(pa.int64())),
            "st": pa.array([{"a": 1}, None, {"a": None}, {"a": 2}], pa.struct([("a", pa.int64())])),
        }
    )
    encoded = _json_objects(table, table.column_names).to_pylist()
    expected = [encode_values(row) for row in table.to_pylist()]
    for got, want in zip(encoded, expected, strict=True):
        a, b = decode_values(got), decode_values(want)
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(b[key], float) and math.isnan(b[key]):
                assert math.isnan(a[key])
            else:
                assert (a[key], type(a[key])) == (b[key], type(b[key])), key
    assert _json_objects(table.select([]), []).to_pylist() == ["{}"] * 4

    keys = table.select(["i", "s", "b"]).filter(pa.array([True, True, False, True]))
    assert _entity_keys(keys, ["i", "s", "b"]).to_pylist() == [
        entity_key(list(r.values())) for r in keys.to_pylist()
    ]
    others = table.select(["f", "ts", "tz", "day", "d"]).filter(pa.array([True, False, False, False]))
    assert _entity_keys(others, ["f", "ts", "tz", "day", "d"]).to_pylist() == [
        entity_key(list(r.values())) for r in others.to_pylist()
    ]
    orders = [[0, -1, 2**63 - 1, -(2**63), 1_704_067_200_123_457], [3, 0, 1, 2, 2**40]]
    assert encode_orders([np.array(c, np.int64) for c in orders]).to_pylist() == [
        encode_order(o) for o in zip(*orders, strict=True)
    ]
    # A tz-aware key equals the same instant given naive (UTC) in a request.
    assert entity_key([datetime(2024, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))]) == entity_key(
        [datetime(2024, 1, 1)]
    )
