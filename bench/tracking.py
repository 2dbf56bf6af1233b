"""Tracking benchmark: Gyre against MLflow and against raw sqlite3, in the same run.

    python bench/tracking.py [--quick] [--json]

Measures metric logging (one call per point, and batches of 1,000), the same through each
project's HTTP server, searching and listing runs, and the idle memory of the servers. Each
figure is printed beside MLflow's (same machine, same run), the ratio, and the physical limit
measured in the same run (raw sqlite3). Timings are printed, never asserted.

MLflow is not a Gyre dependency. Its half runs as a subprocess under
``GYRE_BENCH_MLFLOW_PYTHON`` (default: this interpreter), so it can live in its own
virtualenv; if that interpreter cannot import MLflow, only Gyre's half and the limits run.
Every side works in its own fresh temporary folder; servers bind 127.0.0.1 on a free port and
are stopped at the end, also on error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import (
    BATCH_SIZE,
    SEARCH_EXPERIMENT,
    SEARCH_FILTER,
    SEARCH_THRESHOLD,
    Phases,
    Row,
    Server,
    apply_thread_env,
    child_env,
    dump_json,
    expected_matches,
    fmt_value,
    free_port,
    http_get_rate,
    install_sigterm_handler,
    log,
    metric_value,
    render_table,
    search_figures,
    search_run_fields,
    time_once,
)

BENCH_DIR = Path(__file__).resolve().parent
MLFLOW_SIDE = BENCH_DIR / "_mlflow_side.py"
MLFLOW_PYTHON_ENV = "GYRE_BENCH_MLFLOW_PYTHON"
MLFLOW_SIDE_TIMEOUT_S = 900
MAX_RESULTS = 5000  # above every size the benchmark seeds; the counts are checked


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does."""

    points: int  # metric points logged one call at a time (Gyre, and MLflow direct)
    peer_http_points: int  # the same over `mlflow server`, which manages ~20-100 a second
    batch_points: int  # points logged in batches of BATCH_SIZE
    runs: int  # runs seeded for search
    repeat: int  # timed repetitions of each search (the median is reported)
    commit_rows: int  # rows of the one-commit-per-row yardstick
    health_budget_s: float  # seconds spent measuring health-check round trips per server


FULL = Sizes(
    points=10_000,
    peer_http_points=500,
    batch_points=10_000,
    runs=1000,
    repeat=5,
    commit_rows=2000,
    health_budget_s=3.0,
)
QUICK = Sizes(
    points=1000,
    peer_http_points=50,
    batch_points=2000,
    runs=200,
    repeat=3,
    commit_rows=500,
    health_budget_s=1.0,
)


class Results(Phases):
    """Figures by phase, plus the errors of phases that failed (the others still run)."""

    def get(self, phase: str, key: str) -> Any:
        return self.data.get(phase, {}).get(key)


# -- the physical limit: raw sqlite3 ---------------------------------------------------------


def _connect_raw(path: Path, wal: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        # The same durability class Gyre's store uses: survives a killed process.
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS metrics "
        "(run_id TEXT, key TEXT, value REAL, step INTEGER, timestamp_ms INTEGER)"
    )
    conn.execute("CREATE INDEX IF NOT EXISTS metrics_run_key ON metrics (run_id, key, step)")
    return conn


def sqlite_commit_per_row(path: Path, rows: int, wal: bool, budget_s: float = 3.0) -> float:
    """Rows/s inserting one row per transaction: the floor of a write per logged point.

    Stops after ``budget_s``: with the rollback journal every commit waits for the disk, and
    a busy disk can make ``rows`` commits take a minute.
    """
    conn = _connect_raw(path, wal)
    now = int(time.time() * 1000)
    done = 0
    start = time.perf_counter()
    while done < rows and time.perf_counter() - start < budget_s:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO metrics VALUES ('r', 'loss', ?, ?, ?)", (metric_value(done), done, now))
        conn.execute("COMMIT")
        done += 1
    seconds = time.perf_counter() - start
    conn.close()
    return done / seconds


def sqlite_executemany(path: Path, rows: int) -> float:
    """Rows/s inserting ``BATCH_SIZE`` rows per transaction with ``executemany`` (WAL)."""
    conn = _connect_raw(path, wal=True)
    now = int(time.time() * 1000)
    batches = [
        [("r", "loss", metric_value(i), i, now) for i in range(s, min(s + BATCH_SIZE, rows))]
        for s in range(0, rows, BATCH_SIZE)
    ]

    def loop() -> None:
        for batch in batches:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?, ?)", batch)
            conn.execute("COMMIT")

    seconds = time_once(loop)
    conn.close()
    return rows / seconds


def _seed_raw_runs(conn: sqlite3.Connection, runs: int) -> None:
    conn.executescript(
        """
        CREATE TABLE runs (id TEXT PRIMARY KEY, experiment TEXT, name TEXT);
        CREATE TABLE params (run_id TEXT, key TEXT, value TEXT, PRIMARY KEY (run_id, key));
        CREATE TABLE latest (run_id TEXT, key TEXT, value REAL, PRIMARY KEY (run_id, key));
        CREATE INDEX latest_key_value ON latest (key, value);
        """
    )
    conn.execute("BEGIN")
    for i in range(runs):
        params, metrics = search_run_fields(i)
        rid = f"run{i:06d}"
        conn.execute("INSERT INTO runs VALUES (?, ?, ?)", (rid, SEARCH_EXPERIMENT, f"r{i}"))
        conn.executemany("INSERT INTO params VALUES (?, ?, ?)", [(rid, k, v) for k, v in params.items()])
        conn.executemany("INSERT INTO latest VALUES (?, ?, ?)", [(rid, k, v) for k, v in metrics.items()])
    conn.execute("COMMIT")


def _raw_search(conn: sqlite3.Connection, threshold: float | None) -> list[dict[str, Any]]:
    """Matching runs with their params and latest metrics as dicts: what a search must return."""
    ids_sql = "SELECT id FROM runs WHERE experiment = ?"
    args: tuple[Any, ...] = (SEARCH_EXPERIMENT,)
    if threshold is not None:
        ids_sql = "SELECT run_id FROM latest WHERE key = 'm0' AND value > ?"
        args = (threshold,)
    runs: dict[str, dict[str, Any]] = {
        rid: {"id": rid, "params": {}, "metrics": {}} for (rid,) in conn.execute(ids_sql, args)
    }
    for rid, key, value in conn.execute(
        f"SELECT run_id, key, value FROM params WHERE run_id IN ({ids_sql})", args
    ):
        runs[rid]["params"][key] = value
    for rid, key, value in conn.execute(
        f"SELECT run_id, key, value FROM latest WHERE run_id IN ({ids_sql})", args
    ):
        runs[rid]["metrics"][key] = value
    return list(runs.values())


def sqlite_search_floor(path: Path, runs: int, repeat: int) -> dict[str, Any]:
    """Median ms of hand-written SQL returning the same runs as the search benchmark."""
    conn = sqlite3.connect(path, isolation_level=None)
    _seed_raw_runs(conn, runs)
    out = search_figures(lambda: _raw_search(conn, None), lambda: _raw_search(conn, SEARCH_THRESHOLD), repeat)
    conn.close()
    return out


def measure_limits(workdir: Path, sizes: Sizes) -> dict[str, Any]:
    """The raw sqlite3 yardsticks, each in its own fresh database file."""
    return {
        "commit_per_row_wal_rows_s": sqlite_commit_per_row(workdir / "wal.db", sizes.commit_rows, wal=True),
        "commit_per_row_default_rows_s": sqlite_commit_per_row(
            workdir / "journal.db", sizes.commit_rows, wal=False
        ),
        "executemany_rows_s": sqlite_executemany(workdir / "many.db", sizes.batch_points),
        **sqlite_search_floor(workdir / "search.db", sizes.runs, sizes.repeat),
    }


# -- Gyre ---------------------------------------------------------------------------------------


def gyre_command() -> list[str]:
    """The ``gyre`` console script of this interpreter's environment."""
    found = shutil.which("gyre", path=str(Path(sys.executable).parent)) or shutil.which("gyre")
    if found is None:
        raise RuntimeError("the `gyre` command is not installed; run `pip install -e .` first")
    return [found]


def clear_gyre_env() -> None:
    """Drop GYRE_* settings inherited from the shell, so both sides use only their temp folder."""
    for name in list(os.environ):
        if name.startswith("GYRE_") and not name.startswith("GYRE_BENCH_"):
            del os.environ[name]


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """``gyre.connect()`` finds ``gyre.toml`` from the working directory."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def gyre_log_per_call(client: Any, points: int) -> float:
    """Points/s of ``run.log_metric``, one call per point, including the final flush."""
    with client.start_run(experiment="bench-log", run_name="per-call") as run:
        run.log_metric("warmup", 0.0)
        run.flush()

        def loop() -> None:
            for i in range(points):
                run.log_metric("loss", metric_value(i), step=i)
            run.flush()

        seconds = time_once(loop)
    _check_points(client, run.id, points)
    return points / seconds


def gyre_log_batched(client: Any, points: int) -> float:
    """Points/s of ``client.runs.log_batch`` with ``BATCH_SIZE`` points a call."""
    now = int(time.time() * 1000)
    batches = [
        [("loss", metric_value(i), i, now) for i in range(s, min(s + BATCH_SIZE, points))]
        for s in range(0, points, BATCH_SIZE)
    ]
    with client.start_run(experiment="bench-log", run_name="batched") as run:

        def loop() -> None:
            for batch in batches:
                client.runs.log_batch(run.id, metrics=batch)

        seconds = time_once(loop)
    _check_points(client, run.id, points)
    return points / seconds


def _check_points(client: Any, run_id: str, points: int) -> None:
    """A fast number is worthless if points went missing: count them back."""
    got = len(client.runs.metric_history(run_id, "loss"))
    if got != points:
        raise RuntimeError(f"run {run_id} has {got} 'loss' points, expected {points}")


def gyre_seed_search_runs(client: Any, runs: int) -> float:
    """Create ``runs`` finished runs with 5 params and 5 metrics each; returns seconds taken."""
    now = int(time.time() * 1000)

    def seed() -> None:
        for i in range(runs):
            params, metrics = search_run_fields(i)
            run = client.start_run(experiment=SEARCH_EXPERIMENT, run_name=f"r{i}")
            client.runs.log_batch(run.id, metrics=[(k, v, 0, now) for k, v in metrics.items()], params=params)
            run.end()

    return time_once(seed)


def gyre_search(client: Any, repeat: int) -> dict[str, Any]:
    """Median ms of ``client.runs.list`` over the search experiment, all and filtered."""

    def list_all() -> list[Any]:
        return client.runs.list(experiment=SEARCH_EXPERIMENT, max_results=MAX_RESULTS)

    def filtered() -> list[Any]:
        return client.runs.list(experiment=SEARCH_EXPERIMENT, filter=SEARCH_FILTER, max_results=MAX_RESULTS)

    return search_figures(list_all, filtered, repeat)


def gyre_local(project: Path, sizes: Sizes) -> dict[str, Any]:
    """Gyre's SDK straight on the project's SQLite store."""
    import gyre

    subprocess.run([*gyre_command(), "init", str(project)], check=True, capture_output=True, env=child_env())
    with working_directory(project):
        client = gyre.connect()
        try:
            out: dict[str, Any] = {"gyre_version": gyre.__version__}
            out["per_call_points_s"] = gyre_log_per_call(client, sizes.points)
            out["batched_points_s"] = gyre_log_batched(client, sizes.batch_points)
            out["seed_s"] = gyre_seed_search_runs(client, sizes.runs)
            out.update(gyre_search(client, sizes.repeat))
        finally:
            client.close()
    return out


def gyre_server(project: Path, client_dir: Path, sizes: Sizes) -> dict[str, Any]:
    """``gyre serve`` on the project the local phase seeded, used by a remote client."""
    import gyre

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [*gyre_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with Server("gyre serve", argv, cwd=project, health_url=f"{url}/healthz", env=child_env()) as server:
        out = idle_server_figures(server, f"{url}/healthz", sizes)
        # A remote client has no project of its own: its working folder is empty.
        with working_directory(client_dir):
            client = gyre.connect(url)
            try:
                out["per_call_points_s"] = gyre_log_per_call(client, sizes.points)
                out["batched_points_s"] = gyre_log_batched(client, sizes.batch_points)
                out.update(gyre_search(client, sizes.repeat))
            finally:
                client.close()
    return out


def idle_server_figures(server: Server, health_url: str, sizes: Sizes) -> dict[str, Any]:
    """Memory of the idle server, then health-check round trips on a reused connection."""
    rss, procs = server.idle_rss()
    return {
        "startup_s": server.startup_s,
        "idle_rss_mb": rss / 1e6,
        "processes": procs,
        "health_req_s": http_get_rate(health_url, max_requests=5000, budget_s=sizes.health_budget_s),
    }


# -- MLflow (in a subprocess) --------------------------------------------------------------------


def mlflow_python() -> str:
    return os.environ.get(MLFLOW_PYTHON_ENV) or sys.executable


def run_mlflow_side(python: str, workdir: Path, *args: str) -> dict[str, Any]:
    """Run ``_mlflow_side.py`` under ``python`` in ``workdir``; its last stdout line is JSON."""
    proc = subprocess.run(
        [python, str(MLFLOW_SIDE), *args],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=MLFLOW_SIDE_TIMEOUT_S,
        cwd=workdir,  # MLflow creates ./mlruns and the like: keep them in the temp folder
    )
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.splitlines()[-15:])
        raise RuntimeError(f"{python} {MLFLOW_SIDE.name} {args[0]} exited {proc.returncode}:\n{tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mlflow_version(python: str, workdir: Path) -> str | None:
    """MLflow's version under ``python``, or None (and a message) when it cannot import it."""
    try:
        return run_mlflow_side(python, workdir, "version")["mlflow_version"]
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        log(
            f"MLflow is not importable by {python} ({str(exc).splitlines()[-1]}).\n"
            f"  Install it (`pip install mlflow`) or point {MLFLOW_PYTHON_ENV} at a python that has it.\n"
            "  Running Gyre's half and the limits only."
        )
        return None


def mlflow_direct(python: str, workdir: Path, sizes: Sizes) -> dict[str, Any]:
    return run_mlflow_side(
        python,
        workdir,
        "direct",
        "--dir",
        str(workdir),
        "--points",
        str(sizes.points),
        "--batch-points",
        str(sizes.batch_points),
        "--runs",
        str(sizes.runs),
        "--repeat",
        str(sizes.repeat),
    )


def mlflow_server(python: str, workdir: Path, workers: int | None, sizes: Sizes) -> dict[str, Any]:
    """``mlflow server`` on the SQLite file the direct phase seeded; MLflow's client over HTTP."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    label = f"workers{workers}" if workers else "default-workers"
    argv = [
        python,
        "-m",
        "mlflow",
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{workdir / 'mlflow.db'}",
        "--default-artifact-root",
        (workdir / "artifacts").as_uri(),
    ]
    if workers:
        argv += ["--workers", str(workers)]
    with Server(f"mlflow server {label}", argv, cwd=workdir, health_url=f"{url}/health") as server:
        out = idle_server_figures(server, f"{url}/health", sizes)
        out.update(
            run_mlflow_side(
                python,
                workdir,
                "http",
                "--url",
                url,
                "--label",
                label,
                "--points",
                str(sizes.peer_http_points),
                "--batch-points",
                str(sizes.batch_points),
                "--repeat",
                str(sizes.repeat),
            )
        )
    return out


# -- the table -------------------------------------------------------------------------------------

# phase name -> how the table names that MLflow server
MLFLOW_SERVERS = {"mlflow_server_w1": "--workers 1", "mlflow_server_default": "default workers"}


def build_rows(r: Results, sizes: Sizes) -> list[Row]:
    """Gyre beside MLflow and beside the limit, one row per kind of work."""
    many = r.get("limits", "executemany_rows_s")
    rows = [
        Row("log_metric, 1 call/point, local", "pts/s", True, goal=20, limit=many),
        Row(f"log_batch, {BATCH_SIZE:,} pts/call, local", "pts/s", True, goal=5, limit=many),
    ]
    _fill(rows[0], r, "gyre_local", "mlflow_direct", "per_call_points_s")
    _fill(rows[1], r, "gyre_local", "mlflow_direct", "batched_points_s")
    for phase, name in servers_run(r):
        per_call = Row(f"log_metric, 1 call/point, {_http(name)}", "pts/s", True, goal=50, limit=many)
        batched = Row(f"log_batch, {BATCH_SIZE:,} pts/call, {_http(name)}", "pts/s", True, limit=many)
        _fill(per_call, r, "gyre_server", phase, "per_call_points_s")
        _fill(batched, r, "gyre_server", phase, "batched_points_s")
        rows += [per_call, batched]
    rows += search_rows(r, sizes)
    rows += server_rows(r)
    return [row for row in rows if row.gyre is not None or row.peer is not None]


def servers_run(r: Results) -> list[tuple[str, str]]:
    """The MLflow servers this run tried (``--quick`` skips one); a blank one if MLflow is missing."""
    tried = [(p, n) for p, n in MLFLOW_SERVERS.items() if p in r.attempted]
    return tried or [("", "")]


def _http(name: str) -> str:
    return f"HTTP (mlflow {name})" if name else "HTTP"


def _vs(name: str) -> str:
    return f" (mlflow {name})" if name else ""


def _fill(row: Row, r: Results, gyre_phase: str, peer_phase: str, key: str) -> None:
    row.gyre = r.get(gyre_phase, key)
    row.peer = r.get(peer_phase, key)


def search_rows(r: Results, sizes: Sizes) -> list[Row]:
    """Search and list, locally and over each server, against hand-written SQL."""
    matches = expected_matches(sizes.runs)
    cases = {"local": ("gyre_local", "mlflow_direct")}
    cases.update({_http(name): ("gyre_server", phase) for phase, name in servers_run(r)})
    rows = []
    for where, (gyre_phase, peer_phase) in cases.items():
        filtered = Row(
            f"search {sizes.runs:,} runs, {matches} match, {where}",
            "ms",
            False,
            goal=10,
            limit=r.get("limits", "search_filtered_ms"),
        )
        listed = Row(
            f"list all {sizes.runs:,} runs, {where}",
            "ms",
            False,
            goal=10,
            limit=r.get("limits", "search_all_ms"),
        )
        _fill(filtered, r, gyre_phase, peer_phase, "search_filtered_ms")
        _fill(listed, r, gyre_phase, peer_phase, "search_all_ms")
        rows += [filtered, listed]
    return rows


def server_rows(r: Results) -> list[Row]:
    """Idle memory, start-up time and health-check round trips of each server."""
    rows = []
    for phase, name in servers_run(r):
        g_procs, p_procs = r.get("gyre_server", "processes"), r.get(phase, "processes")
        rss = Row(
            f"idle server RSS, process tree{_vs(name)}",
            "MB",
            False,
            note=f"processes: Gyre {g_procs or '—'}, MLflow {p_procs or '—'}",
        )
        startup = Row(f"server start to first health answer{_vs(name)}", "s", False)
        health = Row(f"GET health, keep-alive{_vs(name)}", "req/s", True)
        _fill(rss, r, "gyre_server", phase, "idle_rss_mb")
        _fill(startup, r, "gyre_server", phase, "startup_s")
        _fill(health, r, "gyre_server", phase, "health_req_s")
        rows += [rss, startup, health]
    return rows


def check_consistency(r: Results, sizes: Sizes) -> None:
    """Both sides searched the same data: their counts must agree with the expected ones."""
    want = {"search_all_count": sizes.runs, "search_filtered_count": expected_matches(sizes.runs)}
    for phase, figures in r.data.items():
        for key, expected in want.items():
            got = figures.get(key)
            if got is not None and got != expected:
                r.warnings.append(f"{phase}: {key} = {got}, expected {expected}")


def yardstick_lines(r: Results, sizes: Sizes) -> list[str]:
    lim = r.data.get("limits", {})
    wal, journal = lim.get("commit_per_row_wal_rows_s"), lim.get("commit_per_row_default_rows_s")
    many = lim.get("executemany_rows_s")
    return [
        "Limits (raw sqlite3, same run):",
        f"  one commit per row: {fmt_value(wal, 'rows/s')} (WAL, synchronous=NORMAL, as Gyre's store), "
        f"{fmt_value(journal, 'rows/s')} (default rollback journal, as MLflow's)",
        f"  executemany, {BATCH_SIZE:,} rows per commit (WAL): {fmt_value(many, 'rows/s')}"
        " - the limit of every logging row",
        f"  hand-written SQL returning the same runs as dicts: filtered "
        f"{fmt_value(lim.get('search_filtered_ms'), 'ms')}, all {fmt_value(lim.get('search_all_ms'), 'ms')}",
    ]


def report(r: Results, sizes: Sizes, meta: dict[str, Any]) -> str:
    lines = [
        f"Tracking benchmark ({meta['mode']}): Gyre {meta.get('gyre_version') or '?'} vs MLflow "
        f"{meta.get('mlflow_version') or '(not installed)'}; {meta['cpus']} CPUs, Python {meta['python']}, "
        f"SQLite {meta['sqlite']}",
        "",
        render_table(build_rows(r, sizes)),
        "",
        "Ratios say how many times better Gyre is (rates: Gyre/peer; times, memory: peer/Gyre).",
        "Gyre/limit is the fraction of the physical limit Gyre reaches.",
        f"Per call: Gyre logs {sizes.points:,} points then flushes (it buffers); MLflow makes one write per "
        f"call: {sizes.points:,} points direct, {sizes.peer_http_points:,} over HTTP (one request each).",
        "",
        *yardstick_lines(r, sizes),
    ]
    seeds = [(p, r.get(p, "seed_s")) for p in ("gyre_local", "mlflow_direct")]
    if any(s for _, s in seeds):
        timings = ", ".join(f"{p} {fmt_value(s, 's')}" for p, s in seeds)
        lines += ["", f"Seeding the {sizes.runs:,} search runs (setup, not compared): {timings}"]
    lines += ["", *meta.get("notes", [])]
    lines += [f"WARNING {w}" for w in r.warnings]
    lines += [f"ERROR {e}" for e in r.errors]
    lines.append(f"Total {meta['total_s']:.0f} s.")
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------------


def run(sizes: Sizes, root: Path, quick: bool) -> tuple[Results, dict[str, Any]]:
    """Every phase in order; each side gets its own fresh folder under ``root``."""
    r = Results()
    dirs = {name: root / name for name in ("limits", "gyre", "gyre-client", "mlflow")}
    for d in dirs.values():
        d.mkdir()
    project = dirs["gyre"] / "project"
    python = mlflow_python()
    version = mlflow_version(python, dirs["mlflow"])
    notes = [] if version else [f"MLflow is not importable by {python}: only Gyre's half and the limits ran."]

    r.attempt("limits", lambda: measure_limits(dirs["limits"], sizes))
    if version:
        r.attempt("mlflow_direct", lambda: mlflow_direct(python, dirs["mlflow"], sizes))
    r.attempt("gyre_local", lambda: gyre_local(project, sizes))
    if "mlflow_direct" in r.data:  # the servers serve the database the direct phase seeded
        r.attempt("mlflow_server_w1", lambda: mlflow_server(python, dirs["mlflow"], 1, sizes))
        if quick:  # its 15 processes take ~15 s to start; the full run measures it
            notes.append("--quick: mlflow server with default workers not run.")
        else:
            r.attempt("mlflow_server_default", lambda: mlflow_server(python, dirs["mlflow"], None, sizes))
    if "gyre_local" in r.data:  # the server serves the project the local phase seeded
        r.attempt("gyre_server", lambda: gyre_server(project, dirs["gyre-client"], sizes))
    check_consistency(r, sizes)
    meta = {
        "mlflow_version": version,
        "mlflow_python": python,
        "gyre_version": r.get("gyre_local", "gyre_version"),
        "notes": notes,
    }
    return r, meta


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Gyre tracking vs MLflow vs raw sqlite3, same run.")
    parser.add_argument("--quick", action="store_true", help="smaller counts: a smoke run of about a minute")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON instead of a table")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    apply_thread_env()
    install_sigterm_handler()
    clear_gyre_env()
    sizes = QUICK if args.quick else FULL
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gyre-bench-tracking-") as tmp:
        results, meta = run(sizes, Path(tmp), args.quick)
    meta.update(
        mode="quick" if args.quick else "full",
        cpus=os.cpu_count(),
        python=platform.python_version(),
        sqlite=sqlite3.sqlite_version,
        total_s=time.perf_counter() - start,
    )
    if args.json:
        rows = [row.as_dict() for row in build_rows(results, sizes)]
        print(
            dump_json(
                {
                    "meta": meta,
                    "sizes": asdict(sizes),
                    "rows": rows,
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
