"""Feature store benchmark: Gyre against Feast and against hand-written DuckDB/SQLite, same run.

    python bench/features.py [--quick] [--json] [--no-feast] [--feast-python PATH]

Data (seeded numpy): 10,000 users x 100 events over 30 days = 1,000,000 source rows (Feast's
own benchmark shape), ``user_id``, ``event_timestamp`` and 10 features (7 float64, 2 int64,
1 string category), written once as Parquet (what Feast and the hand-written queries read)
and appended once to a Gyre lake (what Gyre reads). One feature view, TTL 30 days.

- Training set: 100,000 entity rows (random users, times from a day before the data to a day
  after it, so ~4% have no value within the TTL) x 10 features. Gyre ``get_training_set``;
  Feast ``get_historical_features(...).to_arrow()`` with its file (dask) offline store and
  with its DuckDB offline store; the limit is the faster of two hand-written DuckDB queries
  over the Parquet file: an ``ASOF LEFT JOIN`` and a range join then the latest per row
  (``QUALIFY row_number()``). Every side must return every entity row; Gyre's values are
  compared with the limit's. A second table shows Gyre's time at 1k, 10k, 100k and 1M entity
  rows, with the 10 features and with 3 window features added, beside hand-written DuckDB.
- Materialization of the latest values of the 10,000 users: Gyre ``materialize(full=True)``
  into SQLite (and into Redis), Feast ``materialize`` into its SQLite online store; the
  yardstick is a DuckDB latest-per-key query and one ``executemany`` transaction into SQLite.
- Online lookup, in process, of 1 entity and of 100 entities x 10 features: p50 and p99 over
  2,000 calls. Gyre ``OnlineLookup`` on SQLite and on Redis (127.0.0.1:6379, keys under a
  unique prefix, deleted at the end), Feast ``get_online_features`` on SQLite; the limits are
  a raw sqlite3 primary-key read of the same values (one row per user, as columns or as one
  JSON text, whichever is faster) and a raw redis-py ``HGET``/``HMGET`` of JSON values.

Feast is not a Gyre dependency and pins pandas, pyarrow and more, so it runs in its own
virtualenv: ``bench/.venvs/feast``, created on first use (``pip install feast[duckdb]``), or
the interpreter given by ``--feast-python`` / ``GYRE_BENCH_FEAST_PYTHON``. Its half runs as a
subprocess (``_feast_side.py``). Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import (
    Phases,
    Row,
    dump_json,
    fmt_ratio,
    fmt_value,
    install_sigterm_handler,
    log,
    markdown_table,
    median_seconds,
    peer_python,
    peer_version,
    percentiles,
    redis_available,
    render_table,
)

BENCH_DIR = Path(__file__).resolve().parent
FEAST_SIDE = BENCH_DIR / "_feast_side.py"
FEAST_VENV = BENCH_DIR / ".venvs" / "feast"
FEAST_REQUIREMENT = "feast[duckdb]==0.67.0"
FEAST_PYTHON_ENV = "GYRE_BENCH_FEAST_PYTHON"
FEAST_SIDE_TIMEOUT_S = 3600
REDIS_URL = "redis://127.0.0.1:6379/0"

SEED = 20250101
DATASET = "user_events"
VIEW = "user_stats"
EVENTS_PER_USER = 100
TTL_DAYS = 30
SPAN_DAYS = 30
START = datetime(2025, 1, 1, tzinfo=UTC)
END = START + timedelta(days=SPAN_DAYS)
US_PER_DAY = 86_400 * 1_000_000
FEATURES = [
    *((f"f{i}", "float64") for i in range(7)),
    ("f7", "int64"),
    ("f8", "int64"),
    ("f9", "string"),
]
NAMES = [name for name, _ in FEATURES]
# (name, column, function, window in days) of the second run of the scaling table.
WINDOWS = [("n_7d", "f0", "count", 7), ("f0_sum_1d", "f0", "sum", 1), ("f1_mean_7d", "f1", "mean", 7)]

GOAL_TRAINING_VS_FEAST_DUCKDB = 2.0
GOAL_TRAINING_VS_LIMIT = 1 / 1.2
GOAL_ONLINE_VS_LIMIT = 1 / 1.5
GOAL_MATERIALIZE_VS_LIMIT = 1 / 1.5


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does."""

    users: int  # x EVENTS_PER_USER source rows
    entity_rows: int  # of the training set compared with Feast
    scaling: tuple[int, ...]  # entity rows of the scaling table
    calls: int  # online lookups per figure
    repeat: int  # timed repetitions of the big measurements (the median is reported)
    budget_s: float  # stop repeating once this much was spent timing one figure


FULL = Sizes(
    users=10_000,
    entity_rows=100_000,
    scaling=(1_000, 10_000, 100_000, 1_000_000),
    calls=2000,
    repeat=5,
    budget_s=30.0,
)
QUICK = Sizes(
    users=1_000, entity_rows=10_000, scaling=(1_000, 10_000, 100_000), calls=300, repeat=3, budget_s=3.0
)


class Results(Phases):
    """Figures by phase, plus the errors of phases that failed (the others still run)."""

    def get(self, phase: str, key: str) -> Any:
        return self.data.get(phase, {}).get(key)


# -- data ------------------------------------------------------------------------------------------


@dataclass
class Data:
    workdir: Path
    parquet: Path  # the source rows, read by Feast and by the hand-written queries
    lake_url: str  # the same rows in a Gyre lake
    users: int
    rows: int


def _us(when: datetime) -> int:
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def generate(workdir: Path, sizes: Sizes) -> Data:
    """The seeded source rows, in event-time order, as Parquet and in a Gyre lake."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gyre.data.lake import Lake

    rng = np.random.default_rng(SEED)
    n = sizes.users * EVENTS_PER_USER
    users = np.repeat(np.arange(sizes.users, dtype=np.int64), EVENTS_PER_USER)
    times = _us(START) + rng.integers(0, SPAN_DAYS * US_PER_DAY, n, dtype=np.int64)
    order = np.argsort(times, kind="stable")
    categories = np.array([f"cat_{i:02d}" for i in range(20)])
    columns: dict[str, Any] = {
        "user_id": pa.array(users[order]),
        "event_timestamp": pa.array(times[order], pa.timestamp("us", tz="UTC")),
    }
    for i in range(7):
        columns[f"f{i}"] = pa.array(rng.normal(loc=i, scale=1.0 + i, size=n)[order])
    columns["f7"] = pa.array(rng.integers(0, 1000, n, dtype=np.int64)[order])
    columns["f8"] = pa.array(rng.poisson(3.0, n).astype(np.int64)[order])
    columns["f9"] = pa.array(categories[rng.integers(0, len(categories), n)][order])
    table = pa.table(columns)
    parquet = workdir / "user_events.parquet"
    pq.write_table(table, parquet, row_group_size=128 * 1024)
    lake_url = f"file://{workdir / 'gyre-store'}"
    Lake(lake_url).append(DATASET, table)
    return Data(workdir, parquet, lake_url, sizes.users, n)


def entity_rows(users: int, n: int) -> Any:
    """``n`` seeded entity rows: random users at times from a day before the data to a day after."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng([SEED, n])
    span = (SPAN_DAYS + 2) * US_PER_DAY
    times = _us(START) - US_PER_DAY + rng.integers(0, span, n, dtype=np.int64)
    return pa.table(
        {
            "user_id": pa.array(rng.integers(0, users, n, dtype=np.int64)),
            "event_timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        }
    )


def lookup_ids(users: int, calls: int) -> Any:
    """The users each online call asks for: row i is call i (its first entry alone for 1 entity)."""
    import numpy as np

    return np.random.default_rng([SEED, 7]).integers(0, users, (calls, 100), dtype=np.int64)


def view_spec(windows: bool = False) -> Any:
    from gyre.features.spec import ColumnFeature, ViewSpec, WindowFeature

    return ViewSpec(
        name=VIEW,
        entity="user",
        join_keys=("user_id",),
        source=DATASET,
        event_time="event_timestamp",
        ttl_s=TTL_DAYS * 86_400,
        columns=tuple(ColumnFeature(name, name) for name in NAMES),
        windows=tuple(WindowFeature(n, c, f, d * 86_400) for n, c, f, d in WINDOWS) if windows else (),
    )


# -- training sets -----------------------------------------------------------------------------------


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


class HandQueries:
    """Hand-written DuckDB point-in-time joins over the Parquet file: the limit.

    Every query returns every entity row, in entity order, with the same columns Gyre returns.
    """

    def __init__(self, parquet: Path) -> None:
        import duckdb

        self.con = duckdb.connect()
        self.src = f"read_parquet('{_sql_path(parquet)}')"

    def close(self) -> None:
        self.con.close()

    def _register(self, entities: Any) -> None:
        import pyarrow as pa

        rid = pa.array(range(entities.num_rows), pa.int64())
        self.con.register("ent", entities.append_column("rid", rid))

    def asof(self, entities: Any) -> Any:
        self._register(entities)
        ttl = f"s.event_timestamp > e.event_timestamp - INTERVAL {TTL_DAYS} DAY"
        values = ", ".join(f"CASE WHEN {ttl} THEN s.{n} END AS {n}" for n in NAMES)
        return self.con.sql(
            f"""SELECT e.user_id, e.event_timestamp, {values}
            FROM ent e ASOF LEFT JOIN {self.src} s
              ON e.user_id = s.user_id AND e.event_timestamp >= s.event_timestamp
            ORDER BY e.rid"""
        ).to_arrow_table()

    def join_latest(self, entities: Any) -> Any:
        self._register(entities)
        values = ", ".join(f"s.{n}" for n in NAMES)
        return self.con.sql(
            f"""SELECT e.user_id, e.event_timestamp, {values}
            FROM ent e LEFT JOIN {self.src} s
              ON e.user_id = s.user_id AND s.event_timestamp <= e.event_timestamp
             AND s.event_timestamp > e.event_timestamp - INTERVAL {TTL_DAYS} DAY
            QUALIFY row_number() OVER (PARTITION BY e.rid ORDER BY s.event_timestamp DESC) = 1
            ORDER BY e.rid"""
        ).to_arrow_table()

    def with_windows(self, entities: Any) -> Any:
        """The 10 features and the 3 window features: a range join, then one GROUP BY."""
        self._register(entities)
        latest = ", ".join(f"arg_max(s.{n}, s.event_timestamp) AS {n}" for n in NAMES)
        sql_fn = {"count": "count", "sum": "sum", "mean": "avg"}
        windows = ", ".join(
            f"{sql_fn[fn]}(s.{'event_timestamp' if fn == 'count' else col}) FILTER "
            f"(WHERE s.event_timestamp > e.event_timestamp - INTERVAL {days} DAY) AS {name}"
            for name, col, fn, days in WINDOWS
        )
        return self.con.sql(
            f"""SELECT any_value(e.user_id) AS user_id, any_value(e.event_timestamp) AS event_timestamp,
                {latest}, {windows}
            FROM ent e LEFT JOIN {self.src} s
              ON e.user_id = s.user_id AND s.event_timestamp <= e.event_timestamp
             AND s.event_timestamp > e.event_timestamp - INTERVAL {TTL_DAYS} DAY
            GROUP BY e.rid ORDER BY e.rid"""
        ).to_arrow_table()


def gyre_training_set(data: Data, entities: Any, windows: bool = False) -> Any:
    from gyre.data.lake import Lake
    from gyre.features.offline import get_training_set

    return get_training_set(Lake(data.lake_url), entities, [view_spec(windows)]).table


def summary(table: Any) -> dict[str, Any]:
    """What the sides are checked on: rows returned, rows with a value, and a checksum of f0."""
    import pyarrow.compute as pc

    f0 = table.column("f0")
    total = pc.sum(f0).as_py()
    return {"rows": table.num_rows, "nonnull": len(f0) - f0.null_count, "f0_sum": float(total or 0.0)}


def compare_tables(got: Any, want: Any, columns: Sequence[str], what: str) -> list[str]:
    """Differences between two aligned tables, column by column (floats to a relative 1e-9)."""
    import math

    if got.num_rows != want.num_rows:
        return [f"{what}: {got.num_rows:,} rows, expected {want.num_rows:,}"]
    problems = []
    for name in columns:
        a, b = got.column(name).to_pylist(), want.column(name).to_pylist()
        bad = sum(
            1
            for x, y in zip(a, b, strict=True)
            if not (
                x == y or (isinstance(x, float) and isinstance(y, float) and math.isclose(x, y, rel_tol=1e-9))
            )
        )
        if bad:
            problems.append(f"{what}: column {name} differs from the hand-written query in {bad:,} rows")
    return problems


def training(data: Data, sizes: Sizes, r: Results) -> dict[str, Any]:
    """Gyre and both hand-written queries at the size compared with Feast; checked against each other."""
    entities = entity_rows(data.users, sizes.entity_rows)
    hand = HandQueries(data.parquet)
    try:
        asof_s, asof = median_seconds(lambda: hand.asof(entities), sizes.repeat, sizes.budget_s)
        log(f"  hand ASOF JOIN {asof_s:.3f} s")
        join_s, joined = median_seconds(lambda: hand.join_latest(entities), sizes.repeat, sizes.budget_s)
        log(f"  hand join + QUALIFY {join_s:.3f} s")
    finally:
        hand.close()
    gyre_s, table = median_seconds(lambda: gyre_training_set(data, entities), sizes.repeat, sizes.budget_s)
    log(f"  Gyre get_training_set {gyre_s:.3f} s")
    r.warnings += compare_tables(table, asof, ["user_id", *NAMES], "Gyre training set")
    r.warnings += compare_tables(joined, asof, NAMES, "hand join + QUALIFY")
    return {
        "gyre_s": gyre_s,
        "asof_s": asof_s,
        "join_latest_s": join_s,
        "limit_s": min(asof_s, join_s),
        "limit_query": "ASOF JOIN" if asof_s <= join_s else "join + QUALIFY",
        "gyre": summary(table),
        "limit": summary(asof),
        "entity_rows": sizes.entity_rows,
    }


def scaling(data: Data, sizes: Sizes, r: Results) -> dict[str, Any]:
    """Gyre's time as entity rows grow, with and without window features, beside hand DuckDB."""
    out: dict[str, Any] = {}
    hand = HandQueries(data.parquet)
    try:
        for n in sizes.scaling:
            entities = entity_rows(data.users, n)
            # Past the compared size a figure is one call after a warm-up once it takes a while.
            budget = sizes.budget_s if n <= sizes.entity_rows else sizes.budget_s / 3

            def timed(fn: Callable[[], Any], budget: float = budget) -> tuple[float, Any]:
                return median_seconds(fn, sizes.repeat, budget)

            row: dict[str, Any] = {}
            e = entities
            row["gyre_s"], _ = timed(lambda e=e: gyre_training_set(data, e))
            row["asof_s"], _ = timed(lambda e=e: hand.asof(e))
            row["join_latest_s"], _ = timed(lambda e=e: hand.join_latest(e))
            row["gyre_windows_s"], gyre_w = timed(lambda e=e: gyre_training_set(data, e, windows=True))
            row["hand_windows_s"], hand_w = timed(lambda e=e: hand.with_windows(e))
            row["limit_s"] = min(row["asof_s"], row["join_latest_s"])
            row["limit_query"] = "ASOF" if row["asof_s"] <= row["join_latest_s"] else "join+QUALIFY"
            if n == sizes.entity_rows:
                window_names = [w[0] for w in WINDOWS]
                r.warnings += compare_tables(gyre_w, hand_w, [*NAMES, *window_names], "Gyre window features")
            out[str(n)] = row
            log(
                f"  {n:,} entity rows: Gyre {row['gyre_s']:.3f} s (limit {row['limit_s']:.3f} s), "
                f"with windows {row['gyre_windows_s']:.3f} s (hand {row['hand_windows_s']:.3f} s)"
            )
    finally:
        hand.close()
    return out


# -- materialization -------------------------------------------------------------------------------


def timed_fresh(run: Callable[[int], float], repeat: int, budget_s: float) -> tuple[float, list[float]]:
    """``run(i)`` returns the seconds of its timed part (a fresh store each): two warm-ups, then the
    median. The first runs of a process allocate their memory from the system, and on this scale
    the second was still up to twice the steady time."""
    run(-2)
    run(-1)
    times: list[float] = []
    while len(times) < max(repeat, 1) and (not times or sum(times) < budget_s):
        times.append(run(len(times) + 1))
    return statistics.median(times), times


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """WAL with synchronous=NORMAL: the durability Gyre's SQLite online store uses."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


_SQL_TYPES = {"float64": "REAL", "int64": "INTEGER", "string": "TEXT"}
_LATEST_QUERIES = {
    "QUALIFY row_number()": "SELECT user_id, epoch_us(event_timestamp), {values} FROM {src} "
    "QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY event_timestamp DESC) = 1",
    "GROUP BY arg_max": "SELECT user_id, max(epoch_us(event_timestamp)), {latest} FROM {src} "
    "GROUP BY user_id",
}


def yardstick_materialize(data: Data, workdir: Path, query: str) -> float:
    """DuckDB latest-per-key query, then one ``executemany`` transaction into a fresh SQLite file."""
    import duckdb

    src = f"read_parquet('{_sql_path(data.parquet)}')"
    sql = _LATEST_QUERIES[query].format(
        src=src,
        values=", ".join(NAMES),
        latest=", ".join(f"arg_max({n}, event_timestamp)" for n in NAMES),
    )
    columns = ", ".join(f"{n} {_SQL_TYPES[t]}" for n, t in FEATURES)
    path = workdir / f"yardstick-{uuid.uuid4().hex[:8]}.db"
    conn = sqlite_connect(path)
    conn.execute(f"CREATE TABLE latest (user_id INTEGER PRIMARY KEY, t INTEGER NOT NULL, {columns})")
    marks = ", ".join("?" * (len(NAMES) + 2))
    con = duckdb.connect()
    start = time.perf_counter()
    rows = con.sql(sql).fetchall()
    conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO latest VALUES ({marks})", rows)
    conn.execute("COMMIT")
    seconds = time.perf_counter() - start
    con.close()
    conn.close()
    (workdir / "yardstick.db").unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        (workdir / f"yardstick.db{suffix}").unlink(missing_ok=True)
    path.rename(workdir / "yardstick.db")  # the last one is what the raw reads read
    return seconds


def materialize_limits(data: Data, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for query in _LATEST_QUERIES:
        seconds, _ = timed_fresh(
            lambda _i, q=query: yardstick_materialize(data, workdir, q), sizes.repeat, sizes.budget_s
        )
        out[query] = seconds
        log(f"  DuckDB {query} + sqlite executemany: {seconds:.3f} s")
    best = min(_LATEST_QUERIES, key=out.__getitem__)
    out["limit_s"], out["limit_query"] = out[best], best
    conn = sqlite3.connect(workdir / "yardstick.db")
    out["rows"] = conn.execute("SELECT count(*) FROM latest").fetchone()[0]
    conn.close()
    return out


def gyre_materialize(
    data: Data, sizes: Sizes, workdir: Path, url_for: Callable[[int], str]
) -> dict[str, Any]:
    """``materialize(full=True)`` of the view into a fresh store per call (opened before the clock)."""
    from gyre.data.lake import Lake
    from gyre.features.materialize import materialize
    from gyre.features.online import open_online_store

    lake = Lake(data.lake_url)
    written: list[int] = []

    def run(i: int) -> float:
        store = open_online_store(url_for(i))
        try:
            start = time.perf_counter()
            result = materialize(lake, store, [view_spec()], full=True, now=END)
            seconds = time.perf_counter() - start
        finally:
            store.close()
        written.append(result[VIEW].latest_written)
        return seconds

    seconds, times = timed_fresh(run, sizes.repeat, sizes.budget_s)
    last = len(times)
    return {"seconds": seconds, "times": times, "latest_written": written[-1], "url": url_for(last)}


# -- online lookups ----------------------------------------------------------------------------------


Call = Callable[[list[int]], Any]


def latencies(calls: dict[str, Call], ids: Any, n: int) -> dict[str, dict[str, Any]]:
    """p50 and p99 (µs) of each call over ``n`` calls of 1 and of 100 users, plus each one's
    answer for 100 users (``sample``). Every side first makes the same calls untimed: what is
    timed is the steady state of a long-running reader, not a store's first reads of each page
    (on a fresh connection those cost Gyre's 16 KiB pages more than the raw table's 4 KiB ones,
    and set the p99 of 2,000 calls). The calls take turns batch by batch, so a disturbance of
    the machine (on a shared VM, a few µs-long read's p99 is mostly that) falls on all of them
    alike rather than on whichever ran at the time."""
    out: dict[str, dict[str, Any]] = {name: {} for name in calls}
    for width in (1, 100):
        batches = [row[:width] for row in ids.tolist()[:n]]
        for batch in batches:
            for call in calls.values():
                call(batch)
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for batch in batches:
            for name, call in calls.items():
                t0 = time.perf_counter()
                call(batch)
                samples[name].append(time.perf_counter() - t0)
        for name, taken in samples.items():
            p50, p99 = percentiles(taken)
            out[name][f"e{width}"] = {"p50_us": p50 * 1e6, "p99_us": p99 * 1e6, "calls": len(taken)}
    for name, call in calls.items():
        out[name]["sample"] = call(ids[0].tolist())
    return out


def gyre_lookup(url: str, stack: ExitStack) -> Call:
    """``OnlineLookup.get`` of the view's 10 features from the store at ``url``."""
    from gyre.features.lookup import OnlineLookup
    from gyre.features.online import open_online_store

    store = open_online_store(url)
    stack.callback(store.close)
    lookup = OnlineLookup(store, [view_spec()])
    refs = [f"{VIEW}:{n}" for n in NAMES]

    def call(users: list[int]) -> list[dict[str, Any]]:
        return lookup.get([{"user_id": u} for u in users], refs, at=END)

    return call


def raw_sqlite_reads(workdir: Path, stack: ExitStack) -> dict[str, Call]:
    """Primary-key reads of the yardstick's table: as columns, and as one JSON text per user."""
    conn = sqlite3.connect(workdir / "yardstick.db", isolation_level=None)
    stack.callback(conn.close)
    conn.execute("CREATE TABLE IF NOT EXISTS latest_json (user_id INTEGER PRIMARY KEY, vals TEXT NOT NULL)")
    pairs = ", ".join(f"'{n}', {n}" for n in NAMES)
    conn.execute(f"INSERT OR REPLACE INTO latest_json SELECT user_id, json_object({pairs}) FROM latest")
    select = ", ".join(NAMES)
    marks = ", ".join("?" * 100)

    def columns(users: list[int]) -> list[dict[str, Any] | None]:
        if len(users) == 1:
            row = conn.execute(f"SELECT {select} FROM latest WHERE user_id = ?", users).fetchone()
            return [dict(zip(NAMES, row, strict=True)) if row else None]
        sql = f"SELECT user_id, {select} FROM latest WHERE user_id IN ({marks})"
        found = {row[0]: dict(zip(NAMES, row[1:], strict=True)) for row in conn.execute(sql, users)}
        return [found.get(u) for u in users]

    def as_json(users: list[int]) -> list[dict[str, Any] | None]:
        if len(users) == 1:
            row = conn.execute("SELECT vals FROM latest_json WHERE user_id = ?", users).fetchone()
            return [json.loads(row[0]) if row else None]
        sql = f"SELECT user_id, vals FROM latest_json WHERE user_id IN ({marks})"
        found = {u: json.loads(v) for u, v in conn.execute(sql, users)}
        return [found.get(u) for u in users]

    return {"columns": columns, "json": as_json}


def raw_redis_read(redis_url: str, prefix: str, workdir: Path, stack: ExitStack) -> Call:
    """``HGET``/``HMGET`` of one JSON text per user from a hash, then ``json.loads``."""
    import redis

    client = redis.Redis.from_url(redis_url)
    stack.callback(client.close)
    key = f"{prefix}raw"
    conn = sqlite3.connect(workdir / "yardstick.db")
    values = {u: v for u, v in conn.execute("SELECT user_id, vals FROM latest_json")}
    conn.close()
    client.hset(key, mapping=values)

    def call(users: list[int]) -> list[dict[str, Any] | None]:
        if len(users) == 1:
            value = client.hget(key, users[0])
            return [json.loads(value) if value is not None else None]
        return [json.loads(v) if v is not None else None for v in client.hmget(key, users)]

    return call


def online_sqlite(url: str, workdir: Path, ids: Any, n: int) -> dict[str, Any]:
    """Gyre's SQLite lookups and the raw reads, taking turns."""
    with ExitStack() as stack:
        raw = raw_sqlite_reads(workdir, stack)
        out = latencies({"gyre": gyre_lookup(url, stack), **raw}, ids, n)
    return {"gyre": out["gyre"], "raw": {"columns": out["columns"], "json": out["json"]}}


def online_redis(url: str, prefix: str, workdir: Path, ids: Any, n: int) -> dict[str, Any]:
    """Gyre's Redis lookups and the raw reads, taking turns."""
    with ExitStack() as stack:
        raw = raw_redis_read(REDIS_URL, prefix, workdir, stack)
        return latencies({"gyre": gyre_lookup(url, stack), "raw": raw}, ids, n)


def redis_cleanup(url: str, prefix: str) -> int:
    """Delete every key under the benchmark's prefix (and only those)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        deleted, batch = 0, []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += client.delete(*batch)
                batch = []
        if batch:
            deleted += client.delete(*batch)
        return deleted
    finally:
        client.close()


def compare_samples(got: list[Any], want: list[Any], what: str) -> list[str]:
    """Online values of one 100-user call, against the raw read's (floats to a relative 1e-9)."""
    import math

    bad = 0
    for g, w in zip(got, want, strict=True):
        for name in NAMES:
            x, y = (g or {}).get(name), (w or {}).get(name)
            if not (
                x == y or (isinstance(x, float) and isinstance(y, float) and math.isclose(x, y, rel_tol=1e-9))
            ):
                bad += 1
    return [f"{what}: {bad} of {len(got) * len(NAMES)} values differ from the raw read"] if bad else []


# -- Feast -------------------------------------------------------------------------------------------


def feast_python(args: argparse.Namespace) -> str | None:
    """The interpreter that runs Feast's half: given, or the benchmark's own virtualenv (made once)."""
    if args.no_feast:
        return None
    given = args.feast_python or os.environ.get(FEAST_PYTHON_ENV)
    return peer_python("Feast", FEAST_VENV, [FEAST_REQUIREMENT], given)


def feast_env() -> dict[str, str]:
    # No usage reporting or progress bars: network calls and bars would be timed as Feast's.
    # Default thread pools, as for Gyre and the limits (see main).
    return {**os.environ, "FEAST_USAGE": "False", "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}


def feast_version(python: str) -> str | None:
    return peer_version("Feast", python, FEAST_SIDE, feast_env(), "feast_version")


def feast_run(python: str, data: Data, sizes: Sizes, ids: Any, workdir: Path, r: Results) -> dict[str, Any]:
    """Every Feast measurement in one subprocess (its progress goes straight to our stderr)."""
    import numpy as np
    import pyarrow.parquet as pq

    workdir.mkdir()
    spec = {
        "features": FEATURES,
        "ttl_days": TTL_DAYS,
        "start": START.isoformat(),
        "end": END.isoformat(),
    }
    (workdir / "spec.json").write_text(json.dumps(spec))
    pq.write_table(entity_rows(data.users, sizes.entity_rows), workdir / "entities.parquet")
    np.save(workdir / "ids.npy", ids)
    argv = [python, str(FEAST_SIDE), "run", "--spec", str(workdir / "spec.json")]
    argv += ["--data", str(data.parquet), "--entities", str(workdir / "entities.parquet")]
    argv += ["--ids", str(workdir / "ids.npy"), "--dir", str(workdir)]
    argv += ["--repeat", str(sizes.repeat), "--budget", str(sizes.budget_s), "--calls", str(sizes.calls)]
    proc = subprocess.run(
        argv, stdout=subprocess.PIPE, text=True, env=feast_env(), timeout=FEAST_SIDE_TIMEOUT_S, cwd=workdir
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"the Feast side exited {proc.returncode}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    r.errors += out.get("errors", [])
    return out


# -- the tables --------------------------------------------------------------------------------------


def k(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def training_rows(r: Results, sizes: Sizes, users: int) -> list[Row]:
    t = r.data.get("training", {})
    feast = r.data.get("feast", {}).get("phases", {})
    rows = []
    for store, label, goal in (("duckdb", "DuckDB", GOAL_TRAINING_VS_FEAST_DUCKDB), ("file", "file", None)):
        f = feast.get(f"training_{store}", {})
        note = f"Feast {label} store"
        if f:
            missing = sizes.entity_rows - f["rows"]
            note += f"; it dropped {missing:,} rows" if missing else "; all rows back"
        rows.append(
            Row(
                f"training set, {k(sizes.entity_rows)} rows x 10",
                "s",
                False,
                gyre=t.get("gyre_s"),
                peer=f.get("seconds"),
                limit=t.get("limit_s"),
                goal=goal,
                limit_goal=GOAL_TRAINING_VS_LIMIT,
                note=note,
            )
        )
    return rows


def materialize_rows(r: Results, users: int) -> list[Row]:
    lim = r.data.get("materialize_limits", {})
    feast = r.data.get("feast", {}).get("phases", {})
    rows = [
        Row(
            f"materialize {k(users)} users, SQLite",
            "s",
            False,
            gyre=r.get("materialize_sqlite", "seconds"),
            peer=feast.get(f"materialize_{store}", {}).get("seconds"),
            limit=lim.get("limit_s"),
            limit_goal=GOAL_MATERIALIZE_VS_LIMIT,
            note=f"Feast via {label} store",
        )
        for store, label in (("file", "file"), ("duckdb", "DuckDB"))
    ]
    if "materialize_redis" in r.data:
        rows.append(
            Row(
                f"materialize {k(users)} users, Redis",
                "s",
                False,
                gyre=r.get("materialize_redis", "seconds"),
                note="Gyre only",
            )
        )
    return rows


def online_rows(r: Results) -> list[Row]:
    feast = r.data.get("feast", {}).get("phases", {}).get("online_sqlite", {})
    raw = r.data.get("online_raw_sqlite", {})
    rows = []
    for store, phase, limit_fig in (
        ("SQLite", "online_sqlite", lambda e, p: _best_raw(raw, e, p)),
        ("Redis", "online_redis", lambda e, p: r.data.get("online_raw_redis", {}).get(e, {}).get(p)),
    ):
        if phase not in r.data and store == "Redis":
            continue
        for e, what in (("e1", "1 entity"), ("e100", "100 entities")):
            for p in ("p50_us", "p99_us"):
                peer_ms = feast.get(e, {}).get(p.replace("_us", "_ms"))
                rows.append(
                    Row(
                        f"online {what}, {p[:3]}, Gyre {store}",
                        "µs",
                        False,
                        gyre=r.data.get(phase, {}).get(e, {}).get(p),
                        peer=peer_ms * 1000 if peer_ms is not None else None,
                        limit=limit_fig(e, p),
                        limit_goal=GOAL_ONLINE_VS_LIMIT,
                    )
                )
    return rows


def _best_raw(raw: dict[str, Any], e: str, p: str) -> float | None:
    """The faster raw read (columns or JSON) by p50; its p50 or p99."""
    options = [raw[v][e] for v in ("columns", "json") if v in raw]
    if not options:
        return None
    best = min(options, key=lambda o: o["p50_us"])
    return best[p]


def scaling_table(r: Results) -> str:
    header = [
        "entity rows",
        "Gyre, 10 features",
        "hand DuckDB (best)",
        "Gyre/limit",
        "Gyre, 10 + 3 window features",
        "hand DuckDB join + GROUP BY",
        "Gyre/limit",
    ]
    body = []
    for n, row in r.data.get("scaling", {}).items():
        body.append(
            [
                f"{int(n):,}",
                fmt_value(row["gyre_s"], "s"),
                f"{fmt_value(row['limit_s'], 's')} ({row['limit_query']})",
                fmt_ratio(row["limit_s"] / row["gyre_s"]),
                fmt_value(row["gyre_windows_s"], "s"),
                fmt_value(row["hand_windows_s"], "s"),
                fmt_ratio(row["hand_windows_s"] / row["gyre_windows_s"]),
            ]
        )
    return markdown_table(header, body)


def report(r: Results, sizes: Sizes, meta: dict[str, Any]) -> str:
    users = sizes.users
    lines = [
        f"Feature store benchmark ({meta['mode']}): Gyre {meta['gyre_version']} vs Feast "
        f"{meta.get('feast_version') or '(not run)'}; {meta['cpus']} CPUs, {meta['memory_gib']} GiB, "
        f"Python {meta['python']}, DuckDB {meta['duckdb']}, SQLite {meta['sqlite']}, "
        f"Redis {meta.get('redis') or '(not reachable)'}",
        f"Data: {users:,} users x {EVENTS_PER_USER} events = {users * EVENTS_PER_USER:,} rows, 10 features, "
        f"TTL {TTL_DAYS} days. Medians of up to {sizes.repeat} timed runs after a warm-up "
        f"(materialization: two); online: {sizes.calls:,} calls, after the same calls untimed.",
        "",
        render_table(
            [*training_rows(r, sizes, users), *materialize_rows(r, users), *online_rows(r)],
            peer="Feast",
            verdict=True,
        ),
        "",
        "Ratios say how many times faster Gyre is (peer/Gyre, limit/Gyre). Goals: training set >= 2x "
        "Feast's DuckDB store and within 1.2x of the limit (Gyre/limit >= 0.83x); materialization and "
        "online lookups within 1.5x of the limit (>= 0.67x).",
        "Limits: training set, the faster hand-written DuckDB query over the Parquet file; "
        "materialization, DuckDB latest per key + one sqlite3 executemany transaction; online, a raw "
        "sqlite3 primary-key read (SQLite rows) or redis-py HGET/HMGET (Redis rows). The online peer is "
        "Feast's SQLite online store (get_online_features, in process) for both.",
    ]
    t = r.data.get("training")
    if t:
        lines.append(
            f"Hand-written training-set queries ({k(sizes.entity_rows)} rows): "
            f"ASOF JOIN {fmt_value(t['asof_s'], 's')}, "
            f"join + QUALIFY {fmt_value(t['join_latest_s'], 's')}. Rows with a value within the TTL: "
            f"Gyre {t['gyre']['nonnull']:,} of {t['gyre']['rows']:,}, hand {t['limit']['nonnull']:,} of "
            f"{t['limit']['rows']:,}."
        )
    m = r.data.get("materialize_limits")
    if m:
        lines.append(
            "Materialization yardstick (DuckDB latest per key + one executemany transaction, WAL): "
            + ", ".join(f"{q} {fmt_value(m[q], 's')}" for q in _LATEST_QUERIES)
            + f"; {m['rows']:,} users."
        )
    raw = r.data.get("online_raw_sqlite")
    if raw:
        lines.append(
            "Raw sqlite3 reads, p50 1 / 100 entities: "
            + ", ".join(
                f"{label} {fmt_value(raw[v]['e1']['p50_us'], 'µs')} / "
                f"{fmt_value(raw[v]['e100']['p50_us'], 'µs')}"
                for v, label in (("columns", "columns"), ("json", "one JSON text"))
            )
            + "."
        )
    if "scaling" in r.data:
        lines += [
            "",
            "Training-set time as entity rows grow (same source; windows: count 7d, sum 1d, mean 7d):",
            "",
            scaling_table(r),
        ]
    lines += r.footer(meta.get("notes", []), meta["total_s"])
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, sizes: Sizes, root: Path) -> tuple[Results, dict[str, Any]]:
    r = Results()
    notes: list[str] = []
    python = feast_python(args)
    version = feast_version(python) if python else None
    if args.no_feast:
        notes.append("--no-feast: Feast's half not run.")
    elif not version:
        notes.append("Feast could not be run: only Gyre's half and the limits ran.")

    log(f"generating {sizes.users * EVENTS_PER_USER:,} source rows ({sizes.users:,} users)")
    started = time.perf_counter()
    data = generate(root, sizes)
    log(f"  Parquet and Gyre lake written in {time.perf_counter() - started:.0f} s")
    ids = lookup_ids(data.users, sizes.calls)

    r.attempt("training", lambda: training(data, sizes, r))
    r.attempt("scaling", lambda: scaling(data, sizes, r))
    r.attempt("materialize_limits", lambda: materialize_limits(data, sizes, root))
    r.attempt(
        "materialize_sqlite",
        lambda: gyre_materialize(data, sizes, root, lambda i: f"sqlite:///{root / f'gyre-online-{i}.db'}"),
    )
    if "materialize_limits" in r.data and "materialize_sqlite" in r.data:
        url = r.data["materialize_sqlite"]["url"]
        r.attempt("online_sqlite_both", lambda: online_sqlite(url, root, ids, sizes.calls))
        if "online_sqlite_both" in r.data:
            both = r.data.pop("online_sqlite_both")
            r.data["online_sqlite"], r.data["online_raw_sqlite"] = both["gyre"], both["raw"]

    redis_version = redis_available(REDIS_URL)
    if redis_version is None:
        notes.append(f"No Redis answered at {REDIS_URL}: Gyre's Redis rows not run.")
    else:
        prefix = f"bench-{uuid.uuid4().hex}:"
        try:
            r.attempt(
                "materialize_redis",
                lambda: gyre_materialize(data, sizes, root, lambda i: f"{REDIS_URL}?prefix={prefix}m{i}:"),
            )
            if "materialize_redis" in r.data and "online_raw_sqlite" in r.data:
                url = r.data["materialize_redis"]["url"]
                r.attempt("online_redis_both", lambda: online_redis(url, prefix, root, ids, sizes.calls))
                if "online_redis_both" in r.data:
                    both = r.data.pop("online_redis_both")
                    r.data["online_redis"], r.data["online_raw_redis"] = both["gyre"], both["raw"]
        finally:
            deleted = redis_cleanup(REDIS_URL, prefix)
            log(f"  deleted the benchmark's {deleted:,} Redis keys")

    if version and python:
        r.attempt("feast", lambda: feast_run(python, data, sizes, ids, root / "feast", r))

    check(r, sizes)
    meta = {
        "feast_version": version,
        "feast_python": python,
        "redis": redis_version,
        "notes": notes,
    }
    return r, meta


def check(r: Results, sizes: Sizes) -> None:
    """Every side returns every entity row, with the values the hand-written queries compute."""
    t = r.data.get("training")
    if t and t["gyre"]["rows"] != sizes.entity_rows:
        r.errors.append(f"Gyre's training set has {t['gyre']['rows']:,} rows, expected {sizes.entity_rows:,}")
    feast = r.data.get("feast", {}).get("phases", {})
    for store in ("file", "duckdb"):
        f = feast.get(f"training_{store}")
        if f and t:
            if f["rows"] != sizes.entity_rows:
                r.warnings.append(
                    f"Feast's {store} offline store returned {f['rows']:,} of {sizes.entity_rows:,} "
                    f"entity rows (it dropped {sizes.entity_rows - f['rows']:,}; "
                    f"{sizes.entity_rows - t['limit']['nonnull']:,} have no value within the TTL "
                    "and should come back as nulls)"
                )
            if f["nonnull"] != t["limit"]["nonnull"] or abs(f["f0_sum"] - t["limit"]["f0_sum"]) > 1e-6 * abs(
                t["limit"]["f0_sum"]
            ):
                r.warnings.append(
                    f"Feast's {store} offline store found {f['nonnull']:,} values of f0 "
                    f"(sum {f['f0_sum']:.6g}); "
                    f"the hand query {t['limit']['nonnull']:,} (sum {t['limit']['f0_sum']:.6g})"
                )
    raw = r.data.get("online_raw_sqlite", {}).get("columns", {}).get("sample")
    if raw is not None:
        for phase, what in (("online_sqlite", "Gyre SQLite lookup"), ("online_redis", "Gyre Redis lookup")):
            if phase in r.data:
                r.warnings += compare_samples(r.data[phase]["sample"], raw, what)
        if "online_raw_redis" in r.data:
            r.warnings += compare_samples(r.data["online_raw_redis"]["sample"], raw, "raw Redis read")
        if "online_sqlite" in feast:
            r.warnings += compare_samples(feast["online_sqlite"]["sample"], raw, "Feast SQLite lookup")
    for figures in [*r.data.values(), *r.data.get("online_raw_sqlite", {}).values(), *feast.values()]:
        figures.pop("sample", None)  # 100 users' values: checked, too long to print
    for phase in ("materialize_sqlite", "materialize_redis"):
        written = r.get(phase, "latest_written")
        if written is not None and written != sizes.users:
            r.warnings.append(f"{phase}: wrote {written:,} users, expected {sizes.users:,}")


def clear_gyre_env() -> None:
    """Drop GYRE_* settings inherited from the shell, so only the temporary folders are used."""
    for name in list(os.environ):
        if name.startswith("GYRE_") and not name.startswith("GYRE_BENCH_"):
            del os.environ[name]


def memory_gib() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    except (ValueError, OSError, AttributeError):
        return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description="Gyre's feature store vs Feast vs hand-written DuckDB, same run."
    )
    parser.add_argument("--quick", action="store_true", help="100k source rows, fewer calls: about a minute")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON instead of tables")
    parser.add_argument("--no-feast", action="store_true", help="skip Feast (Gyre and the limits only)")
    parser.add_argument(
        "--feast-python",
        help=f"interpreter with Feast installed (default: ${FEAST_PYTHON_ENV}, else bench/.venvs/feast, "
        "made on first use)",
    )
    args = parser.parse_args(argv)
    # No thread caps here (unlike the serving benchmarks, whose servers share the cores): every
    # side runs in turn with its libraries' default thread pools, as the hand-written DuckDB
    # always did. Capping OMP_NUM_THREADS also capped pyarrow's pool, so Gyre read Parquet on
    # one thread while the yardstick's DuckDB used both cores.
    install_sigterm_handler()
    clear_gyre_env()
    sizes = QUICK if args.quick else FULL
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gyre-bench-features-") as tmp:
        results, meta = run(args, sizes, Path(tmp))
    import duckdb

    import gyre

    meta.update(
        mode="quick" if args.quick else "full",
        cpus=os.cpu_count(),
        memory_gib=memory_gib(),
        python=platform.python_version(),
        duckdb=duckdb.__version__,
        sqlite=sqlite3.sqlite_version,
        gyre_version=getattr(gyre, "__version__", "?"),
        total_s=time.perf_counter() - start,
    )
    if args.json:
        rows = [
            *training_rows(results, sizes, sizes.users),
            *materialize_rows(results, sizes.users),
            *online_rows(results),
        ]
        print(
            dump_json(
                {
                    "meta": meta,
                    "sizes": asdict(sizes),
                    "rows": [row.as_dict() for row in rows],
                    "phases": results.data,
                    "warnings": results.warnings,
                    "errors": results.errors,
                }
            )
        )
    else:
        print(report(results, sizes, meta))
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
