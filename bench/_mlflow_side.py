"""The MLflow half of ``tracking.py``, run as a subprocess under ``GYRE_BENCH_MLFLOW_PYTHON``.

MLflow is not a dependency of Gyre and may live in another virtualenv, so this script
imports only the standard library, ``_common`` and MLflow, and prints one JSON object on
stdout. Two modes:

- ``direct``: MLflow's client straight to a SQLite file (``--dir``): per-call ``log_metric``,
  ``log_batch`` of 1,000, seeding the search experiment, and ``search_runs`` over it.
- ``http``: the same client against a running ``mlflow server`` (``--url``) that serves the
  SQLite file the ``direct`` mode seeded, so search needs no second seeding.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    BATCH_SIZE,
    SEARCH_EXPERIMENT,
    SEARCH_FILTER,
    apply_thread_env,
    metric_value,
    search_figures,
    search_run_fields,
    time_once,
)


def log_per_call(experiment: str, points: int) -> float:
    """Points/s of ``mlflow.log_metric``, one call per point, inside one active run."""
    import mlflow

    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="per-call"):
        mlflow.log_metric("warmup", 0.0)  # the first call pays lazy imports and run lookup

        def loop() -> None:
            for i in range(points):
                mlflow.log_metric("loss", metric_value(i), step=i)

        seconds = time_once(loop)
    return points / seconds


def log_batched(experiment: str, points: int) -> float:
    """Points/s of ``MlflowClient.log_batch`` with ``BATCH_SIZE`` points a call."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run_id = client.create_run(exp_id, run_name="batched").info.run_id
    now = int(time.time() * 1000)
    batches = [
        [Metric("loss", metric_value(i), now, i) for i in range(start, min(start + BATCH_SIZE, points))]
        for start in range(0, points, BATCH_SIZE)
    ]

    def loop() -> None:
        for batch in batches:
            client.log_batch(run_id, metrics=batch)

    seconds = time_once(loop)
    client.set_terminated(run_id)
    return points / seconds


def seed_search_runs(runs: int) -> float:
    """Create ``runs`` finished runs with 5 params and 5 metrics each; returns seconds taken."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient()
    exp_id = client.create_experiment(SEARCH_EXPERIMENT)
    now = int(time.time() * 1000)

    def seed() -> None:
        for i in range(runs):
            params, metrics = search_run_fields(i)
            run_id = client.create_run(exp_id, run_name=f"r{i}").info.run_id
            client.log_batch(
                run_id,
                metrics=[Metric(k, v, now, 0) for k, v in metrics.items()],
                params=[Param(k, v) for k, v in params.items()],
            )
            client.set_terminated(run_id)

    return time_once(seed)


def search(repeat: int) -> dict[str, Any]:
    """Median ms of ``mlflow.search_runs`` listing the experiment, and filtered by a metric."""
    import mlflow

    def list_all() -> Any:
        return mlflow.search_runs(experiment_names=[SEARCH_EXPERIMENT])

    def filtered() -> Any:
        return mlflow.search_runs(experiment_names=[SEARCH_EXPERIMENT], filter_string=SEARCH_FILTER)

    return search_figures(list_all, filtered, repeat)


def run_direct(args: argparse.Namespace) -> dict[str, Any]:
    import mlflow

    db = Path(args.dir) / "mlflow.db"
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    # Creating the database runs MLflow's migrations; done before any clock starts.
    mlflow.set_experiment("bench-log")
    out: dict[str, Any] = {"mlflow_version": mlflow.__version__}
    out["per_call_points_s"] = log_per_call("bench-log", args.points)
    out["batched_points_s"] = log_batched("bench-log", args.batch_points)
    out["seed_s"] = seed_search_runs(args.runs)
    out.update(search(args.repeat))
    return out


def run_http(args: argparse.Namespace) -> dict[str, Any]:
    import mlflow

    mlflow.set_tracking_uri(args.url)
    experiment = f"bench-http-{args.label}"
    out: dict[str, Any] = {}
    out["per_call_points_s"] = log_per_call(experiment, args.points)
    out["batched_points_s"] = log_batched(experiment, args.batch_points)
    out.update(search(args.repeat))
    return out


def installed_version() -> str:
    """MLflow's version without importing it (an import takes seconds)."""
    if importlib.util.find_spec("mlflow") is None:
        raise ModuleNotFoundError(f"No module named 'mlflow' in {sys.executable}")
    return importlib.metadata.version("mlflow")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["version", "direct", "http"])
    parser.add_argument("--dir", help="empty folder for the SQLite file (direct)")
    parser.add_argument("--url", help="tracking server URL (http)")
    parser.add_argument("--label", default="server", help="names the experiment (http)")
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--batch-points", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    apply_thread_env()
    args = parse_args(argv)
    if args.mode == "version":
        result: dict[str, Any] = {"mlflow_version": installed_version()}
    elif args.mode == "direct":
        result = run_direct(args)
    else:
        result = run_http(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
