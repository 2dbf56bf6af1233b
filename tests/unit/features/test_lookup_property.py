"""Online lookup after materialization equals a naive reference of the feature semantics.

Random rows over a few versions (ties, nulls, rows without event time), materialized
incrementally after each append and again from scratch, looked up at random times from the
last materialization on (where the online store is exact): every column and window feature
must equal what a plain Python reading of the definitions gives. SQLite only: the store
contract tests cover Redis against SQLite.
"""

from __future__ import annotations

import tempfile
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gyre.data.lake import Lake
from gyre.features.lookup import OnlineLookup
from gyre.features.materialize import materialize
from gyre.features.online import open_online_store
from gyre.features.spec import ColumnFeature, ViewSpec, WindowFeature

BASE = datetime(2024, 1, 1)
FUNCTIONS = ("count", "sum", "mean", "min", "max", "count_distinct")
SCHEMA = pa.schema(
    [("user_id", pa.int64()), ("ts", pa.timestamp("us")), ("amount", pa.float64()), ("country", pa.string())]
)
USERS = [0, 1, 2]

row_st = st.tuples(
    st.sampled_from([*USERS, None]),
    st.one_of(st.none(), st.integers(0, 20)),  # event time in seconds: few values, many ties
    st.one_of(st.none(), st.integers(-3, 3).map(float)),  # whole numbers: sums are exact
    st.sampled_from(["US", "DE", None]),
)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def reference(
    rows: list[tuple[tuple[int, int], tuple[Any, ...]]], view: ViewSpec, user: int, when: float
) -> dict[str, Any]:
    """The definitions read literally: ``rows`` are ((version, row), (user, t, amount, country))."""
    mine = [(t, pos, amount, country) for pos, (u, t, amount, country) in rows if u == user and t is not None]
    out: dict[str, Any] = {}
    valid = [r for r in mine if r[0] <= when and (view.ttl_s is None or r[0] > when - view.ttl_s)]
    latest = max(valid, key=lambda r: (r[0], r[1]), default=None)
    for f in view.columns:
        out[f.name] = None if latest is None else {"amount": latest[2], "country": latest[3]}[f.column]
    for w in view.windows:
        in_window = [r for r in mine if when - w.window_s < r[0] <= when]
        values = [{"amount": r[2], "country": r[3]}[w.column] for r in in_window]
        present = [v for v in values if v is not None]
        if w.function == "count":
            out[w.name] = len(in_window)
        elif w.function == "count_distinct":
            out[w.name] = len(set(present))
        elif not present:
            out[w.name] = None
        else:
            out[w.name] = {
                "sum": sum,
                "mean": lambda vs: sum(vs) / len(vs),
                "min": min,
                "max": max,
            }[w.function](present)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_online_lookup_matches_the_reference(data: st.DataObject) -> None:
    batches = data.draw(
        st.lists(st.lists(row_st, min_size=1, max_size=8), min_size=1, max_size=3), label="batches"
    )
    ttl = data.draw(st.one_of(st.none(), st.integers(1, 15)), label="ttl")
    windows = data.draw(
        st.lists(
            st.tuples(st.sampled_from(FUNCTIONS), st.sampled_from(["amount", "country"]), st.integers(1, 15))
        )
        .map(lambda ws: [w for w in ws if w[0] in ("count", "count_distinct") or w[1] == "amount"])
        .filter(lambda ws: len({(f, c, s) for f, c, s in ws}) == len(ws)),
        label="windows",
    )
    # Materialize after each append, at non-decreasing times; look up from the last one on.
    nows = sorted(data.draw(st.lists(st.integers(0, 25), min_size=len(batches), max_size=len(batches))))
    view_args = dict(
        entity="user",
        join_keys=("user_id",),
        source="payments",
        event_time="ts",
        ttl_s=ttl,
        columns=(ColumnFeature("country", "country"), ColumnFeature("amount", "amount")),
        windows=tuple(WindowFeature(f"{c}_{f}_{s}", c, f, s) for f, c, s in windows),
    )
    incremental, rebuilt = ViewSpec(name="inc", **view_args), ViewSpec(name="full", **view_args)

    times = [t for batch in batches for _, t, _, _ in batch if t is not None]
    start = max([nows[-1], *times])
    ats = data.draw(st.lists(st.integers(0, 16), min_size=1, max_size=3), label="lookup offsets")

    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(f"file://{tmp}/store")
        store = open_online_store(f"sqlite:///{tmp}/online.db")
        positioned = []
        for version, (batch, now) in enumerate(zip(batches, nows, strict=True)):
            table = pa.table(
                {
                    "user_id": [r[0] for r in batch],
                    "ts": [at(r[1]) if r[1] is not None else None for r in batch],
                    "amount": [r[2] for r in batch],
                    "country": [r[3] for r in batch],
                },
                schema=SCHEMA,
            )
            assert lake.append("payments", table) == version
            positioned += [((version, i), r) for i, r in enumerate(batch)]
            materialize(lake, store, [incremental], now=at(now))
        materialize(lake, store, [rebuilt], now=at(nows[-1]))

        refs = [f"inc:{n}" for n in incremental.feature_names] + [f"full:{n}" for n in rebuilt.feature_names]
        columns = [f"inc:{f.name}" for f in incremental.columns]
        lookup = OnlineLookup(store, [incremental, rebuilt])
        entity_rows = [{"user_id": u} for u in [*USERS, 9]]
        for offset in ats:
            when = start + offset
            got = lookup.get(entity_rows, refs, at=at(when), full_names=True)
            for user, row in zip([*USERS, 9], got, strict=True):
                want = reference(positioned, incremental, user, when)
                assert {k[len("inc__") :]: v for k, v in row.items() if k.startswith("inc__")} == want, (
                    user,
                    when,
                )
                assert {k[len("full__") :]: v for k, v in row.items() if k.startswith("full__")} == want, (
                    user,
                    when,
                )
                # One entity's column features: the shorter path of the most common lookup.
                [alone] = lookup.get([{"user_id": user}], columns, at=at(when))
                assert alone == {f.name: want[f.name] for f in incremental.columns}, (user, when)
        store.close()
