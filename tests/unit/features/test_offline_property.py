"""Point-in-time retrieval agrees with a naive row-by-row reference, on random small lakes.

Event times sit on a coarse grid (ties), keys are few (collisions), values are often null, and
several appends make ties across versions. The grid is placed around the current time, so the
commits happen in the middle of it: some rows are ingested after their event time (a backfill)
and some ahead of it, and entity times are drawn around the actual commit times, which is where
``as_known_at`` decides.
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gyre.data.lake import Lake
from gyre.features import offline
from gyre.features.offline import get_training_set
from gyre.features.spec import ColumnFeature, ViewSpec, WindowFeature

S = 1_000_000  # µs per second
STEP = 10 * S  # the event-time grid
GRID = 6  # grid points: base, base + 10 s, ... base + 50 s
FUNCTIONS = ("count", "sum", "mean", "min", "max", "count_distinct")

# One source row: (user_id, g, grid index or None for a null event time, x, s)
rows_st = st.tuples(
    st.sampled_from([0, 1, None]),
    st.sampled_from(["a", "a", "b", None]),
    st.one_of(st.integers(0, GRID - 1), st.none()),
    st.sampled_from([1, 2, -1, 0, None]),
    st.sampled_from(["p", "q", "r", None]),
)
# Every aggregation on every column it applies to, each with its own window (10 s is the grid
# step, so window edges fall on events).
AGGREGATES = [(fn, "x") for fn in FUNCTIONS] + [(fn, "s") for fn in ("count_distinct", "min", "max")]
windows_st = st.lists(st.sampled_from([10, 20, 30]), min_size=len(AGGREGATES), max_size=len(AGGREGATES))


@dataclass
class Row:
    keys: tuple[Any, ...]
    et: int | None  # µs since the epoch
    x: int | None
    s: str | None
    version: int
    index: int  # position within its append (one file per append)
    committed: int  # µs since the epoch


def epoch_us(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def reference(
    rows: list[Row], entity: tuple[tuple[Any, ...], int], view: ViewSpec, as_known_at: bool, upto: int
) -> dict[str, Any]:
    keys, t = entity
    mine = [
        r
        for r in rows
        if r.version <= upto
        and None not in keys
        and r.keys == keys
        and r.et is not None
        and r.et <= t
        and (not as_known_at or r.committed <= t)
    ]
    out: dict[str, Any] = {}
    live = [r for r in mine if not view.ttl_s or r.et > t - view.ttl_s * S]
    winner = max(live, key=lambda r: (r.et, r.version, r.index), default=None)
    for c in view.columns:
        out[c.name] = getattr(winner, c.column) if winner else None
    for w in view.windows:
        inside = [r for r in mine if r.et > t - w.window_s * S]
        values = [getattr(r, w.column) for r in inside if getattr(r, w.column) is not None]
        if w.function == "count":
            out[w.name] = len(inside)
        elif w.function == "count_distinct":
            out[w.name] = len(set(values))
        elif not values:
            out[w.name] = None
        elif w.function == "sum":
            out[w.name] = sum(values)
        elif w.function == "mean":
            out[w.name] = sum(values) / len(values)
        else:
            out[w.name] = min(values) if w.function == "min" else max(values)
    return out


@settings(max_examples=120, deadline=None)
@given(
    appends=st.lists(st.lists(rows_st, min_size=2, max_size=8), min_size=1, max_size=4),
    two_keys=st.booleans(),
    ttl_s=st.sampled_from([10, 20, None]),
    window_s=windows_st,
    lake_time=st.sampled_from([("us", None), ("us", "UTC"), ("ns", None), ("ms", "UTC")]),
    entity_time=st.sampled_from([("us", None), ("us", "UTC"), ("ns", None), ("us", "America/New_York")]),
    data=st.data(),
)
def test_matches_the_reference(
    appends: list[list[tuple[Any, ...]]],
    two_keys: bool,
    ttl_s: int | None,
    window_s: list[int],
    lake_time: tuple[str, str | None],
    entity_time: tuple[str, str | None],
    data: st.DataObject,
) -> None:
    key_names = ("user_id", "g") if two_keys else ("user_id",)
    spec = ViewSpec(
        name="v",
        entity="e",
        join_keys=key_names,
        source="events",
        event_time="ts",
        ttl_s=ttl_s,
        columns=(ColumnFeature("x_last", "x"), ColumnFeature("s_last", "s")),
        windows=tuple(
            WindowFeature(f"{c}_{fn}", c, fn, w) for (fn, c), w in zip(AGGREGATES, window_s, strict=True)
        ),
    )
    # The grid straddles now: the commits below land around its middle.
    base = epoch_us(datetime.now(UTC)) // S * S - GRID // 2 * STEP

    with tempfile.TemporaryDirectory() as folder:
        lake = Lake(f"file://{folder}")
        for batch in appends:
            times = [base + i * STEP if i is not None else None for _, _, i, _, _ in batch]
            table = pa.table(
                {
                    "user_id": pa.array([r[0] for r in batch], pa.int64()),
                    "g": pa.array([r[1] for r in batch], pa.string()),
                    "ts": pa.array(times, pa.timestamp("us")).cast(pa.timestamp(*lake_time)),
                    "x": pa.array([r[3] for r in batch], pa.int64()),
                    "s": pa.array([r[4] for r in batch], pa.string()),
                }
            )
            lake.append("events", table)
        files = lake.data_files("events")
        # The reference orders rows by (version, position in the append): one file per append.
        assert [f.version for f in files] == list(range(len(appends)))
        rows = [
            Row(
                keys=(r[0], r[1]) if two_keys else (r[0],),
                et=base + r[2] * STEP if r[2] is not None else None,
                x=r[3],
                s=r[4],
                version=v,
                index=i,
                committed=epoch_us(files[v].committed_at),
            )
            for v, batch in enumerate(appends)
            for i, r in enumerate(batch)
        ]

        # Entity times: on the grid and at the commit times (where TTL, window and visibility
        # edges fall), or a microsecond either side. Latest first: hypothesis favours the first
        # elements, and late times see the most rows.
        marks = {base + i * STEP for i in range(-1, GRID + 1)} | {r.committed for r in rows}
        times_st = st.one_of(
            st.sampled_from(sorted(marks, reverse=True)),
            st.sampled_from(sorted({m + d for m in marks for d in (-1, 1)}, reverse=True)),
        )
        entity_st = st.tuples(
            st.sampled_from([0, 0, 1, 2, None]), st.sampled_from(["a", "a", "b", None]), times_st
        )
        entity_rows = data.draw(st.lists(entity_st, min_size=1, max_size=12), label="entities")
        entity_df = pa.table(
            {
                "user_id": pa.array([e[0] for e in entity_rows], pa.int64()),
                "g": pa.array([e[1] for e in entity_rows], pa.string()),
                "event_timestamp": pa.array([e[2] for e in entity_rows], pa.timestamp("us", "UTC")).cast(
                    pa.timestamp(*entity_time)
                ),
            }
        )
        upto = data.draw(st.integers(0, len(appends) - 1), label="pinned version")
        pinned = {"events": upto} if upto < len(appends) - 1 or data.draw(st.booleans()) else None

        # Pruning the source to the entity rows' keys depends on their numbers, packing (event
        # time, position) into one BIGINT on the span of times, and joining rather than an ASOF
        # join (latest values) or window frames on how many rows a TTL or window holds: force
        # each both ways.
        packed_span, pairs_per_row = offline._packed_span, offline._JOIN_PAIRS_PER_ROW
        # (as_known_at, packing, pairs per row up to which the joins run)
        modes = [(False, True, 10**9), (False, True, -1), (False, False, 10**9), (True, False, pairs_per_row)]
        for (as_known_at, packing, join_below), prune_below in itertools.product(modes, (0, 10**9)):
            offline._PRUNE_BELOW, default = prune_below, offline._PRUNE_BELOW
            offline._packed_span = packed_span if packing else lambda *_: None  # type: ignore[assignment]
            offline._JOIN_PAIRS_PER_ROW = join_below
            try:
                got = get_training_set(lake, entity_df, [spec], as_known_at=as_known_at, versions=pinned)
            finally:
                offline._PRUNE_BELOW, offline._packed_span = default, packed_span
                offline._JOIN_PAIRS_PER_ROW = pairs_per_row
            assert got.dataset_versions == {"events": upto}
            table = got.table
            assert table.select(entity_df.column_names).equals(entity_df)
            types = {f.name: str(f.type) for f in table.schema}
            assert [
                types[n] for n in ("x_last", "s_last", "x_count", "x_sum", "x_mean", "x_min", "s_max")
            ] == ["int64", "string", "int64", "int64", "double", "int64", "string"]
            for i, (uid, g, t) in enumerate(entity_rows):
                keys = (uid, g) if two_keys else (uid,)
                want = reference(rows, (keys, t), spec, as_known_at, upto)
                have = {name: table.column(name)[i].as_py() for name in want}
                for name, value in want.items():
                    if isinstance(value, float):
                        assert have[name] == pytest.approx(value), (name, as_known_at, i)
                    else:
                        assert have[name] == value, (name, as_known_at, i, have, want)
