"""The Feast half of ``features.py``, run as a subprocess under Feast's own interpreter.

Feast pins many dependencies (pandas, pyarrow, ...) and is not a Gyre dependency, so it lives
in its own virtualenv (``bench/.venvs/feast`` by default). This script imports only the
standard library, ``_common``, numpy, pyarrow and Feast, does every Feast measurement in one
process (Feast takes seconds to import), and prints one JSON object on stdout. A phase that
fails is reported in ``errors`` and the others still run.

Feast repos are built in ``--dir``: a FileSource over the Parquet file the main process wrote,
one Entity (``user_id``), one FeatureView with the 10 features and a 30-day TTL, the SQLite
online store, and the file (dask) offline store or the DuckDB offline store.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
import traceback
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import apply_thread_env, log, percentiles

PROJECT = "bench"
VIEW = "user_stats"


def feature_store(repo: Path, offline: str, data: Path, spec: dict[str, Any]) -> Any:
    """A Feast repo in ``repo`` with the benchmark's entity and view applied."""
    from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64, String

    repo.mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(
        f"project: {PROJECT}\n"
        f"registry: {repo / 'registry.db'}\n"
        "provider: local\n"
        f"online_store:\n  type: sqlite\n  path: {repo / 'online.db'}\n"
        f"offline_store:\n  type: {offline}\n"
        "entity_key_serialization_version: 3\n"
    )
    store = FeatureStore(repo_path=str(repo))
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    source = FileSource(name="user_events", path=str(data), timestamp_field="event_timestamp")
    types = {"float64": Float64, "int64": Int64, "string": String}
    view = FeatureView(
        name=VIEW,
        entities=[user],
        ttl=timedelta(days=spec["ttl_days"]),
        schema=[Field(name=name, dtype=types[kind]) for name, kind in spec["features"]],
        source=source,
        online=True,
    )
    store.apply([user, view])
    return store


def refs(spec: dict[str, Any]) -> list[str]:
    return [f"{VIEW}:{name}" for name, _ in spec["features"]]


def timed_median(fn: Any, repeat: int, budget_s: float) -> tuple[float, list[float], Any]:
    """One untimed warm-up call, then up to ``repeat`` timed ones (fewer past ``budget_s``)."""
    result = fn()
    times: list[float] = []
    while len(times) < max(repeat, 1) and (not times or sum(times) < budget_s):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def training_set(args: argparse.Namespace, spec: dict[str, Any], offline: str) -> dict[str, Any]:
    """``get_historical_features(...).to_arrow()`` for the entity rows, median seconds."""
    import pyarrow.parquet as pq

    store = feature_store(args.dir / f"offline-{offline}", offline, args.data, spec)
    entity_df = pq.read_table(args.entities).to_pandas()  # Feast takes pandas; not timed
    features = refs(spec)

    def run() -> Any:
        return store.get_historical_features(entity_df=entity_df, features=features).to_arrow()

    seconds, times, table = timed_median(run, args.repeat, args.budget)
    f0 = table.column(spec["features"][0][0])
    return {
        "seconds": seconds,
        "times": times,
        "rows": table.num_rows,
        "nonnull": len(f0) - f0.null_count,
        "f0_sum": float(sum(v for v in f0.to_pylist() if v is not None)),
    }


def materialize(args: argparse.Namespace, spec: dict[str, Any], offline: str) -> dict[str, Any]:
    """``materialize`` of the whole time range into a fresh SQLite online store, median seconds.

    Every call gets a fresh repo (and so an empty online store), applied before the clock starts.
    """
    start = datetime.fromisoformat(spec["start"]) - timedelta(days=1)
    end = datetime.fromisoformat(spec["end"]) + timedelta(days=1)
    calls = 0
    repo = args.dir

    def run() -> None:
        nonlocal calls, repo
        repo = args.dir / f"materialize-{offline}-{calls}"
        calls += 1
        store = feature_store(repo, offline, args.data, spec)
        started = time.perf_counter()
        store.materialize(start_date=start, end_date=end)
        times.append(time.perf_counter() - started)

    times: list[float] = []
    run()  # warm-up
    times.clear()
    while len(times) < max(args.repeat, 1) and (not times or sum(times) < args.budget):
        run()
    return {"seconds": statistics.median(times), "times": times, "repo": str(repo)}


def online(args: argparse.Namespace, spec: dict[str, Any], repo: Path) -> dict[str, Any]:
    """``get_online_features(...).to_dict()``: p50/p99 of 1 and of 100 entities a call."""
    import numpy as np
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    ids = np.load(args.ids).tolist()
    features = refs(spec)
    out: dict[str, Any] = {}
    for width in (1, 100):
        batches = [[{"user_id": i} for i in row[:width]] for row in ids[: args.calls]]
        for rows in batches:  # the same calls untimed first, as for Gyre and the limits
            store.get_online_features(features=features, entity_rows=rows).to_dict()
        samples = []
        for rows in batches:
            t0 = time.perf_counter()
            store.get_online_features(features=features, entity_rows=rows).to_dict()
            samples.append(time.perf_counter() - t0)
        p50, p99 = percentiles(samples)
        out[f"e{width}"] = {"p50_ms": p50 * 1000, "p99_ms": p99 * 1000, "calls": len(samples)}
    # The values of the first 100-entity call, for the main process to compare with Gyre's.
    sample = store.get_online_features(
        features=features, entity_rows=[{"user_id": i} for i in ids[0]]
    ).to_dict()
    out["sample"] = [{name: sample[name][j] for name, _ in spec["features"]} for j in range(len(ids[0]))]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="Feast's half of bench/features.py")
    parser.add_argument("mode", choices=["version", "run"])
    parser.add_argument("--spec", type=Path, help="JSON: features, ttl_days, start, end")
    parser.add_argument("--data", type=Path, help="the source Parquet file")
    parser.add_argument("--entities", type=Path, help="the entity rows, Parquet")
    parser.add_argument("--ids", type=Path, help="online lookup ids, .npy (calls x 100)")
    parser.add_argument("--dir", type=Path, help="a fresh folder for the Feast repos")
    parser.add_argument("--offline", default="file,duckdb", help="offline stores to measure")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds of timed calls per figure")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    apply_thread_env()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    os.environ.setdefault("FEAST_USAGE", "False")
    os.environ.setdefault("TQDM_DISABLE", "1")

    import feast

    warnings.simplefilter("ignore")  # again: importing Feast's dependencies resets the filters
    if args.mode == "version":
        print(json.dumps({"feast_version": feast.__version__}))
        return 0

    spec = json.loads(args.spec.read_text())
    result: dict[str, Any] = {"feast_version": feast.__version__, "phases": {}, "errors": []}

    def attempt(phase: str, fn: Any) -> Any:
        log(f"  [feast {phase}]")
        started = time.perf_counter()
        try:
            result["phases"][phase] = fn()
            log(f"    done in {time.perf_counter() - started:.0f} s")
            return result["phases"][phase]
        except Exception as exc:
            detail = traceback.format_exc() if os.environ.get("GYRE_BENCH_DEBUG") else ""
            result["errors"].append(f"feast {phase}: {type(exc).__name__}: {exc}"[:2000])
            log(f"    FAILED {result['errors'][-1]}\n{detail}")
            return None

    offline_stores = [s for s in args.offline.split(",") if s]
    for offline in offline_stores:
        attempt(f"training_{offline}", lambda offline=offline: training_set(args, spec, offline))
    repos = []
    for offline in offline_stores:
        done = attempt(f"materialize_{offline}", lambda offline=offline: materialize(args, spec, offline))
        if done:
            repos.append(Path(done["repo"]))
    if repos:
        attempt("online_sqlite", lambda: online(args, spec, repos[0]))
    result["finished_at"] = datetime.now(UTC).isoformat()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
