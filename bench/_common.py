"""Helpers shared by the benchmarks: thread settings, servers as subprocesses, timing, tables.

Only the standard library is imported at module level: the MLflow half of a benchmark runs
this module under another interpreter (``GYRE_BENCH_MLFLOW_PYTHON``) that may have neither
Gyre nor psutil installed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One thread per numeric library, and OpenMP threads that sleep instead of spinning: the
# benchmark shares two cores with the servers it measures (BENCHMARKS.md, "OpenMP spinning").
THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
    # MLflow 3 phones home on start; network calls would be measured as MLflow's time.
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}

SEARCH_EXPERIMENT = "bench-search"
SEARCH_PARAMS = 5
SEARCH_METRICS = 5
# About 5% of runs match, as in BENCHMARKS.md's "filtered to 50" of 1,000.
SEARCH_THRESHOLD = 0.95
SEARCH_FILTER = f"metrics.m0 > {SEARCH_THRESHOLD}"
BATCH_SIZE = 1000


def apply_thread_env() -> None:
    """Set the thread variables for this process and its children, unless the user chose."""
    for name, value in THREAD_ENV.items():
        os.environ.setdefault(name, value)


def install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks stop the servers we started."""

    def _exit(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def log(message: str) -> None:
    """Progress goes to stderr so ``--json`` output on stdout stays parseable."""
    print(message, file=sys.stderr, flush=True)


# -- data both sides log -----------------------------------------------------------------


class Phases:
    """A benchmark's figures by phase, and the errors of phases that failed: a failed phase is
    recorded and the others still run (``GYRE_BENCH_DEBUG=1`` logs its traceback)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.notes: list[str] = []
        self.attempted: set[str] = set()

    def attempt(self, phase: str, fn: Callable[[], Any]) -> None:
        log(f"[{phase}]")
        self.attempted.add(phase)
        start = time.perf_counter()
        try:
            self.data[phase] = fn()
            log(f"  done in {time.perf_counter() - start:.0f} s")
        except Exception as exc:
            import traceback

            detail = traceback.format_exc() if os.environ.get("GYRE_BENCH_DEBUG") else ""
            message = f"{phase}: {type(exc).__name__}: {exc}"
            self.errors.append(message)
            log(f"  FAILED {message}\n{detail}")

    def footer(self, notes: Sequence[str], total_s: float) -> list[str]:
        """The lines every report ends with: notes, warnings, errors of failed phases, total time."""
        return [
            "",
            *notes,
            *(f"WARNING {w}" for w in self.warnings),
            *(f"ERROR {e}" for e in self.errors),
            f"Total {total_s:.0f} s.",
        ]


def search_run_fields(i: int) -> tuple[dict[str, str], dict[str, float]]:
    """Params and metrics of the ``i``-th seeded run, identical for Gyre and the peer."""
    rng = random.Random(i)
    params = {f"p{k}": f"v{rng.randrange(10)}" for k in range(SEARCH_PARAMS)}
    metrics = {f"m{k}": rng.random() for k in range(SEARCH_METRICS)}
    return params, metrics


def expected_matches(runs: int) -> int:
    """How many seeded runs the search filter must return (a correctness check, not a timing)."""
    return sum(search_run_fields(i)[1]["m0"] > SEARCH_THRESHOLD for i in range(runs))


def metric_value(i: int) -> float:
    """A loss-like curve; the values do not matter, only that they are real floats."""
    return 1.0 / (1.0 + i) + 0.001 * (i % 7)


# -- timing --------------------------------------------------------------------------------


def time_once(fn: Callable[[], Any]) -> float:
    """Wall seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], Any], repeat: int, budget_s: float = 5.0) -> tuple[float, Any]:
    """Median wall seconds of ``fn`` after one untimed warm-up call (caches, lazy imports).

    Stops before ``repeat`` timed calls once ``budget_s`` is spent, so a slow peer does not
    stretch the run; at least one call is timed. Returns the median and the last result.
    """
    result = fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < max(repeat, 1) and (not times or spent < budget_s):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return statistics.median(times), result


def percentiles(seconds: Sequence[float], points: Sequence[float] = (50, 99)) -> list[float]:
    """Nearest-rank percentiles of per-call times (any unit), e.g. p50 and p99."""
    ordered = sorted(seconds)
    return [ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))] for p in points]


def search_figures(list_all: Callable[[], Any], filtered: Callable[[], Any], repeat: int) -> dict[str, Any]:
    """Median ms and result sizes of listing the search experiment and of the filtered search."""
    all_s, all_result = median_seconds(list_all, repeat)
    filtered_s, filtered_result = median_seconds(filtered, repeat)
    return {
        "search_all_ms": all_s * 1000,
        "search_all_count": len(all_result),
        "search_filtered_ms": filtered_s * 1000,
        "search_filtered_count": len(filtered_result),
    }


def http_get_rate(url: str, max_requests: int, budget_s: float) -> float:
    """Requests/s of sequential GETs on one reused (keep-alive) connection.

    A reused connection is what clients do, and it exposes servers that leave Nagle's
    algorithm on (~44 ms a request waiting for the client's delayed ACK).
    """
    parts = urllib.request.urlparse(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        done = 0
        start = time.perf_counter()
        while done < max_requests and time.perf_counter() - start < budget_s:
            conn.request("GET", parts.path or "/")
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {url} answered {resp.status}")
            done += 1
        return done / (time.perf_counter() - start)
    finally:
        conn.close()


# -- servers -------------------------------------------------------------------------------


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: ours, the thread settings, and ``extra``."""
    env = dict(os.environ)
    env.update(THREAD_ENV)
    env.update(extra)
    return env


class Server:
    """A server run as a subprocess in its own session, so its whole tree can be stopped.

    Use as a context manager: ``__enter__`` starts it and waits for ``health_url`` to answer
    200; ``__exit__`` stops every process of the tree, also when the benchmark fails.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: Path,
        health_url: str,
        env: dict[str, str] | None = None,
        start_timeout_s: float = 180.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.cwd = cwd
        self.health_url = health_url
        self.env = env or child_env()
        self.start_timeout_s = start_timeout_s
        self.log_path = cwd / f"{name.replace(' ', '_')}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.startup_s = math.nan

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the process and block until its health endpoint answers 200."""
        log(f"  starting {self.name} ...")
        t0 = time.perf_counter()
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - t0
        log(f"  {self.name} answered {self.health_url} after {self.startup_s:.1f} s")

    def _wait_healthy(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode} before answering; "
                    f"last output:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.health_url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException):
                pass
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.name} did not answer {self.health_url} within {self.start_timeout_s:.0f} s; "
            f"last output:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server printed, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"

    def tree_rss(self) -> tuple[int, int]:
        """Resident bytes summed over the server's process tree, and how many processes."""
        import psutil

        assert self.proc is not None
        procs = self._tree()
        total = 0
        for p in procs:
            # A short-lived helper may end between listing and reading.
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total, len(procs)

    def idle_rss(self, max_wait_s: float = 20.0) -> tuple[int, int]:
        """``tree_rss`` once the server has settled after start-up.

        Servers keep spawning helpers and importing after their first health answer (MLflow's
        job consumers come up seconds later), so wait until the process count is stable and
        memory moved less than 2% over two seconds, or ``max_wait_s``.
        """
        deadline = time.monotonic() + max_wait_s
        history = [self.tree_rss()]
        while time.monotonic() < deadline:
            time.sleep(1.0)
            history.append(self.tree_rss())
            if len(history) >= 3:
                (rss0, n0), (rss1, n1) = history[-3], history[-1]
                if n0 == n1 and abs(rss1 - rss0) <= 0.02 * rss1:
                    break
        return history[-1]

    def _tree(self) -> list[Any]:
        import psutil

        assert self.proc is not None
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        """Stop the whole tree: SIGTERM to its process group, then SIGKILL what is left, by pid."""
        if self.proc is None:
            return
        try:
            survivors = self._tree()
        except ImportError:  # psutil missing: the process group alone has to do
            survivors = []
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Children that left the process group (daemonised helpers) are ended by their own pid.
        for p in survivors:
            try:
                if p.is_running() and p.pid != self.proc.pid:
                    p.kill()
            except Exception:  # already gone, or reaped and its pid reused by nobody we own
                pass
        self.proc = None

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)  # the group id is the pid: start_new_session=True


# -- results table ---------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: Gyre's figure, the peer's and the physical limit, same unit.

    ``higher_is_better`` is True for rates (points/s) and False for times and memory; the
    printed ratios are always "how many times better Gyre is", so above 1 means Gyre wins.
    """

    work: str
    unit: str
    higher_is_better: bool
    gyre: float | None = None
    peer: float | None = None
    limit: float | None = None
    goal: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    limit_goal: float | None = None
    """The least Gyre/limit to aim for, e.g. 1/1.2 for "within 1.2x of the limit"."""

    def vs_peer(self) -> float | None:
        return _speedup(self.gyre, self.peer, self.higher_is_better)

    def vs_limit(self) -> float | None:
        return _speedup(self.gyre, self.limit, self.higher_is_better)

    def goal_met(self) -> bool | None:
        """Whether every goal of the row is met; None when it has none or a figure is missing."""
        checks = [(self.goal, self.vs_peer()), (self.limit_goal, self.vs_limit())]
        checks = [(goal, ratio) for goal, ratio in checks if goal]
        if not checks or any(ratio is None for _, ratio in checks):
            return None
        return all(ratio >= goal for goal, ratio in checks)  # type: ignore[operator]

    def goal_text(self) -> str:
        parts = [f">= {self.goal:g}x"] if self.goal else []
        if self.limit_goal:
            parts.append(f"limit >= {self.limit_goal:.2g}x")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "work": self.work,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "gyre": self.gyre,
            "peer": self.peer,
            "gyre_vs_peer": self.vs_peer(),
            "goal_vs_peer": self.goal,
            "limit": self.limit,
            "gyre_vs_limit": self.vs_limit(),
            "goal_vs_limit": self.limit_goal,
            "goal_met": self.goal_met(),
            "note": self.note,
            **self.extra,
        }


def _speedup(ours: float | None, theirs: float | None, higher_is_better: bool) -> float | None:
    if ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return None
    return ours / theirs if higher_is_better else theirs / ours


def fmt_value(value: float | None, unit: str) -> str:
    """A figure with three significant digits and its unit, or a dash when not measured."""
    if value is None or math.isnan(value):
        return "—"
    if value >= 100:
        text = f"{value:,.0f}"
    elif value >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "—"
    return f"{ratio:.0f}x" if ratio >= 100 else f"{ratio:.3g}x"


def render_table(rows: Sequence[Row], *, peer: str = "MLflow", verdict: bool = False) -> str:
    """A Markdown table, aligned so it also reads well in a terminal.

    ``peer`` names the peer in the header; ``verdict`` adds a column saying whether each row
    meets its goals (``yes``, ``NO``, or blank without a goal or a figure).
    """
    header = ["work", "Gyre", f"peer ({peer}, same run)", "Gyre/peer", "goal", "limit (same run)"]
    header.append("Gyre/limit")
    if verdict:
        header.append("goal met")
    body = []
    for r in rows:
        cells = [
            r.work + (f" [{r.note}]" if r.note else ""),
            fmt_value(r.gyre, r.unit),
            fmt_value(r.peer, r.unit),
            fmt_ratio(r.vs_peer()),
            r.goal_text(),
            fmt_value(r.limit, r.unit),
            fmt_ratio(r.vs_limit()),
        ]
        if verdict:
            met = r.goal_met()
            cells.append("" if met is None else "yes" if met else "NO")
        body.append(cells)
    return markdown_table(header, body)


def markdown_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    """Cells as an aligned Markdown table."""
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), rule, *(line(b) for b in body)])


def dump_json(data: Any) -> str:
    """JSON with NaN turned into null, so any parser reads it."""

    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    return json.dumps(clean(data), indent=2)


def peer_python(peer: str, venv: Path, requirements: Sequence[str], given: str | None) -> str | None:
    """The interpreter that runs a peer's half: ``given``, else the benchmark's own virtualenv
    for ``peer`` at ``venv`` (made once with ``requirements``); None if it cannot be made."""
    if given:
        return given
    python = venv / "bin" / "python"
    if python.exists():
        return str(python)
    log(f"creating the {peer} virtualenv ({', '.join(requirements)}) in {venv}; this takes minutes")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *requirements], check=True, env=child_env()
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        log(f"  could not install {peer} ({exc}); running without it")
        shutil.rmtree(venv, ignore_errors=True)  # no half-made virtualenv next time
        return None
    return str(python)


def peer_version(peer: str, python: str, side: Path, env: dict[str, str], key: str) -> str | None:
    """The peer's version as its side script's ``version`` command prints it (JSON ``key``), or
    None, saying why, when ``python`` cannot import it."""
    try:
        proc = subprocess.run(
            [python, str(side), "version"], capture_output=True, text=True, env=env, timeout=300
        )
        if proc.returncode == 0:
            return str(json.loads(proc.stdout.strip().splitlines()[-1])[key])
        log(f"{peer} is not importable by {python}:\n{proc.stderr[-1500:]}")
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        log(f"{peer} is not usable with {python}: {exc}")
    return None


def redis_available(url: str) -> str | None:
    """Redis's version if a server answers at ``url``, else None."""
    try:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        try:
            return str(client.info("server").get("redis_version"))
        finally:
            client.close()
    except Exception:
        return None
