"""Pipelines benchmark: what running functions as pipeline steps costs, and what Ray buys.

    python bench/pipelines.py [--quick] [--json]

1. Overhead: a pipeline of 20 trivial steps in a chain (each adds 1 to its input) on the
   local executor, against calling the same 20 functions directly in this process (the
   limit). Cold (every step runs: a fresh worker pool as ``gyre run`` opens, and a pool
   whose workers are already up) and fully cached (every step served from the step cache).
   The figure is the overhead per step: (pipeline time - direct time) / 20. Goals: under
   50 ms a step cold, under 5 ms cached.
2. Scaling: 8 independent CPU-bound steps of about a second each (a pure-Python loop,
   calibrated here) on the Ray executor with 1 and then 2 local CPUs; the speed-up should
   be near 2x, or at least 0.9x of what plain processes get from the machine. The limit is
   the same 8 calls on a pool of 1 or 2 plain processes, timed in the same run.

Every run is recorded in a fresh temporary project (SQLite metadata, local store), as a
user's would be. Timings are printed, never asserted; each figure is the median of a few
repetitions after an untimed warm-up.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gyre
from _common import Phases, apply_thread_env, dump_json, install_sigterm_handler, markdown_table

CHAIN = 20
PARALLEL = 8


@dataclass(frozen=True)
class Sizes:
    cold_repeat: int  # timed cold runs (each with new params, so no step is cached)
    cached_repeat: int  # timed fully cached runs
    burn_s: float  # seconds of CPU work per step in the scaling phase
    ray_repeat: int  # timed runs per CPU count


FULL = Sizes(cold_repeat=5, cached_repeat=10, burn_s=1.0, ray_repeat=2)
QUICK = Sizes(cold_repeat=2, cached_repeat=3, burn_s=0.3, ray_repeat=1)


# -- the steps (defined here: workers receive them by value) ----------------------------------------


def add_one(x: int) -> int:
    return x + 1


def burn(n: int, seed: int) -> int:
    """A pure-Python loop: CPU-bound, holds the GIL, so only processes run it in parallel."""
    acc = seed
    for i in range(n):
        acc = (acc * 31 + i) % 1_000_003
    return acc


inc = gyre.step(add_one, name="inc")
spin = gyre.step(burn, name="spin", cache=False)


@gyre.pipeline
def chain(start: int = 0):
    x = start
    for _ in range(CHAIN):
        x = inc(x)
    return x


def fan(n: int) -> Any:
    @gyre.pipeline(name="fan")
    def fan_out(iterations: int = n):
        return [spin(iterations, seed) for seed in range(PARALLEL)]

    return fan_out


# -- phases ----------------------------------------------------------------------------------


class Results(Phases):
    """Figures by phase, plus the errors of phases that failed (the others still run)."""


def _median(times: list[float]) -> float:
    return statistics.median(times)


def _timed_run(client: Any, pipe: Any, params: dict[str, Any], **options: Any) -> float:
    return _timed(client, pipe, params, **options)[0]


def _timed(client: Any, pipe: Any, params: dict[str, Any], **options: Any) -> tuple[float, float]:
    """Wall seconds of one run, and the seconds its steps ran (summed over the steps)."""
    from gyre.pipelines import run_pipeline

    start = time.perf_counter()
    result = run_pipeline(client, pipe, params, **options)
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise RuntimeError(f"pipeline run {result.run_id} ended {result.status}: {result.error}")
    return elapsed, sum(s.duration_s or 0.0 for s in result.steps.values())


def direct_chain() -> float:
    """Seconds to call the 20 step functions directly (median of many: they take microseconds)."""
    times = []
    for _ in range(1000):
        start = time.perf_counter()
        x = 0
        for _ in range(CHAIN):
            x = add_one(x)
        times.append(time.perf_counter() - start)
    return _median(times)


def overhead_phase(client: Any, sizes: Sizes) -> dict[str, Any]:
    from gyre.pipelines.executors.local import LocalExecutor

    start = iter(range(1, 1_000_000))
    _timed_run(client, chain, {"start": next(start)}, compute="local")  # imports, first worker
    own = [
        _timed_run(client, chain, {"start": next(start)}, compute="local") for _ in range(sizes.cold_repeat)
    ]
    with LocalExecutor() as pool:
        _timed_run(client, chain, {"start": next(start)}, executor=pool)  # workers up
        warm = [
            _timed_run(client, chain, {"start": next(start)}, executor=pool) for _ in range(sizes.cold_repeat)
        ]
        _timed_run(client, chain, {"start": 0}, executor=pool)  # fills the cache for start=0
        cached = [_timed_run(client, chain, {"start": 0}, executor=pool) for _ in range(sizes.cached_repeat)]
    return {
        "direct_s": direct_chain(),
        "cold_own_executor_s": _median(own),
        "cold_warm_workers_s": _median(warm),
        "cached_s": _median(cached),
        "cold_own_executor_best_s": min(own),
        "cold_warm_workers_best_s": min(warm),
        "cached_best_s": min(cached),
    }


def calibrate(burn_s: float) -> int:
    """Loop iterations that take about ``burn_s`` seconds here."""
    n = 200_000
    while True:
        start = time.perf_counter()
        burn(n, 0)
        took = time.perf_counter() - start
        if took > 0.2:
            return int(n * burn_s / took)
        n *= 2


def scaling_phase(client: Any, sizes: Sizes) -> dict[str, Any]:
    import ray

    from gyre.pipelines.executors.ray import RayExecutor

    iterations = calibrate(sizes.burn_s)
    start = time.perf_counter()
    for seed in range(PARALLEL):
        burn(iterations, seed)
    direct = time.perf_counter() - start
    pipe = fan(iterations)
    out: dict[str, Any] = {"iterations": iterations, "direct_sequential_s": direct}
    for cpus in (1, 2):
        # The physical limit: the same calls on a pool of plain processes, started beforehand.
        # On a shared or hyperthreaded machine two processes rarely get 2x; this says what
        # the machine gives, measured in the same run.
        with multiprocessing.get_context("spawn").Pool(cpus) as pool:
            pool.starmap(burn, [(1, seed) for seed in range(cpus)])
            start = time.perf_counter()
            pool.starmap(burn, [(iterations, seed) for seed in range(PARALLEL)])
            out[f"pool_{cpus}cpu_s"] = time.perf_counter() - start
    for cpus in (1, 2):
        if ray.is_initialized():
            ray.shutdown()
        with RayExecutor("local", init_options={"num_cpus": cpus, "log_to_driver": False}) as ex:
            _timed_run(client, pipe, {}, executor=ex)  # Ray starts its workers
            runs = [_timed(client, pipe, {}, executor=ex) for _ in range(sizes.ray_repeat)]
        out[f"ray_{cpus}cpu_s"] = _median([wall for wall, _ in runs])
        # Step seconds over wall seconds: how many steps ran at once on average. It shows
        # the executor's parallelism even when other processes slow each step down.
        out[f"ray_{cpus}cpu_concurrency"] = _median([busy / wall for wall, busy in runs])
    return out


# -- report ----------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if abs(seconds) < 0.001:
        return f"{seconds * 1e6:.3g} µs"
    return f"{seconds * 1000:,.1f} ms"


def _s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f} s"


def rows(r: Results) -> list[dict[str, Any]]:
    o, s = r.data.get("overhead", {}), r.data.get("scaling", {})
    out = []
    direct = o.get("direct_s")
    for key, work, goal in [
        ("cold_own_executor_s", f"{CHAIN} trivial steps, cold, new worker pool (as gyre run)", 0.050),
        ("cold_warm_workers_s", f"{CHAIN} trivial steps, cold, workers already up", 0.050),
        ("cached_s", f"{CHAIN} trivial steps, fully cached", 0.005),
    ]:
        took, best = o.get(key), o.get(key.replace("_s", "_best_s"))
        per_step = None if took is None or direct is None else (took - direct) / CHAIN
        best_step = None if best is None or direct is None else (best - direct) / CHAIN
        out.append(
            {
                "work": work,
                "gyre": _ms(took),
                "limit": _ms(direct),
                "ratio": f"{took / direct:,.0f}x" if took and direct else "—",
                "per_step": f"{_ms(per_step)} ({_ms(best_step)})",
                "goal": f"< {goal * 1000:g} ms/step",
                "met": "" if per_step is None else "yes" if per_step < goal else "NO",
                "per_step_s": per_step,
                "best_per_step_s": best_step,
            }
        )
    one, two = s.get("ray_1cpu_s"), s.get("ray_2cpu_s")
    pool_one, pool_two = s.get("pool_1cpu_s"), s.get("pool_2cpu_s")
    for cpus, took in ((1, one), (2, two)):
        limit = s.get(f"pool_{cpus}cpu_s")
        speedup = one / two if cpus == 2 and one and two else None
        machine = pool_one / pool_two if cpus == 2 and pool_one and pool_two else None
        verdict = ""
        if speedup is not None and machine is not None:
            met = speedup >= 1.8 or speedup >= 0.9 * machine
            verdict = f"{speedup:.2f}x (machine {machine:.2f}x) " + ("yes" if met else "NO")
        out.append(
            {
                "work": f"{PARALLEL} independent ~{s.get('burn_s', 1):g} s CPU steps, Ray, {cpus} CPU",
                "gyre": _s(took),
                "limit": _s(limit),
                "ratio": f"{took / limit:.2f}x" if took and limit else "—",
                "per_step": _ms(None if took is None or limit is None else (took - limit) * cpus / PARALLEL),
                "goal": "speed-up ~2x, or ≥0.9x the machine's" if cpus == 2 else "",
                "met": verdict,
                "concurrency": s.get(f"ray_{cpus}cpu_concurrency"),
                "speedup": speedup,
            }
        )
    return out


def report(r: Results, meta: dict[str, Any]) -> str:
    header = [
        "work",
        "Gyre",
        "limit: direct calls",
        "Gyre/limit",
        "overhead/step (best)",
        "goal",
        "goal met",
    ]
    body = [
        [x["work"], x["gyre"], x["limit"], x["ratio"], x["per_step"], x["goal"], x["met"]] for x in rows(r)
    ]
    concurrency = [(x["work"], x["concurrency"]) for x in rows(r) if x.get("concurrency")]
    lines = [
        f"Pipelines benchmark ({meta['mode']}): Gyre {gyre.__version__}; {meta['cpus']} CPUs, "
        f"Python {meta['python']}; load average {meta['load_before']} before, {meta['load_after']} after",
        "",
        markdown_table(header, body),
        "",
        "Overhead per step: (pipeline wall time - the same functions called directly) / steps, from",
        "the median run (and the best one: what the machine gives when nothing else competes for it).",
        "The Ray limit is the same steps on a pool of as many plain processes as Ray has CPUs, in the",
        "same run: what the machine gives parallel work. Other processes (see the load average) slow",
        "every figure here.",
    ]
    if concurrency:
        lines += [
            "Steps running at once on Ray (step seconds / wall seconds; a busy machine slows the",
            "steps but not this): "
            + ", ".join(f"{w.rsplit(', ', 1)[-1]}: {c:.2f}" for w, c in concurrency)
            + ".",
        ]
    lines += r.notes
    lines += [f"ERROR {e}" for e in r.errors]
    lines.append(f"Total {meta['total_s']:.0f} s.")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def _has_ray() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Gyre pipelines: step overhead and Ray scaling.")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, shorter steps")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON instead of a table")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    apply_thread_env()
    install_sigterm_handler()
    for name in list(os.environ):
        if name.startswith("GYRE_") and not name.startswith("GYRE_BENCH_"):
            del os.environ[name]
    sizes = QUICK if args.quick else FULL
    load_before = _load()
    started = time.perf_counter()
    results = Results()
    previous = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="gyre-bench-pipelines-") as tmp:
        root = Path(tmp)
        (root / "gyre.toml").write_text(
            '[project]\nname = "bench"\n\n[backends]\nmetadata = "sqlite:///.gyre/meta.db"\n'
            'store = "file://.gyre/store"\n'
        )
        os.chdir(root)  # workers and gyre.connect() find the project from the working directory
        try:
            client = gyre.connect()
            try:
                results.attempt("overhead", lambda: overhead_phase(client, sizes))
                if _has_ray():
                    results.attempt(
                        "scaling", lambda: {**scaling_phase(client, sizes), "burn_s": sizes.burn_s}
                    )
                else:
                    results.notes.append(
                        "Ray is not installed (pip install 'gyre-ml[ray]'): no scaling rows."
                    )
            finally:
                client.close()
        finally:
            os.chdir(previous)
    meta = {
        "mode": "quick" if args.quick else "full",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "total_s": time.perf_counter() - started,
        "load_before": load_before,
        "load_after": _load(),
    }
    if args.json:
        print(
            dump_json(
                {
                    "meta": meta,
                    "sizes": asdict(sizes),
                    "rows": rows(results),
                    **results.data,
                    "errors": results.errors,
                    "notes": results.notes,
                }
            )
        )
    else:
        print(report(results, meta))
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
