"""The Evidently half of ``monitoring.py``, run as a subprocess under Evidently's own interpreter.

Evidently pins pandas and more and is not a Gyre dependency, so it lives in its own
virtualenv (``bench/.venvs/evidently`` by default). This script imports only the standard
library, ``_common``, pandas, pyarrow and Evidently, does every Evidently measurement in one
process, and prints one JSON object on stdout. A phase that fails is reported in ``errors``
and the others still run.

It reads the Parquet files the main process wrote in ``--dir``: ``reference-N.parquet`` and
``current-N.parquet`` for each size N in ``spec.json``, and ``fp-reference.parquet`` /
``fp-current.parquet`` for the false-positive check. Each timed call is one
``Report([DataDriftPreset(...)]).run(current, reference)`` on ``Dataset`` objects built from
the DataFrames beforehand (untimed, fresh for every call, so nothing is cached between calls).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from _common import apply_thread_env, log

# The preset's arguments for each family of tests main's table compares.
FAMILIES = {
    "ks_chi2": {"num_method": "ks", "cat_method": "chisquare"},
    "wasserstein_js": {},  # the defaults: Wasserstein (normed) and Jensen-Shannon above 1,000 rows
}


def drifted(snapshot: Any) -> list[str]:
    """The columns whose value-drift test failed (the preset's per-column verdicts)."""
    out = []
    for test in snapshot.dict()["tests"]:
        column = test.get("metric_config", {}).get("params", {}).get("column")
        if column is not None and test.get("status") == "FAIL":
            out.append(column)
    return sorted(out)


def run_preset(ref: Any, cur: Any, numeric: list[str], categorical: list[str], **preset: Any) -> list[str]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    reference = Dataset.from_pandas(ref, data_definition=definition)
    current = Dataset.from_pandas(cur, data_definition=definition)
    report = Report([DataDriftPreset(**preset)], include_tests=True)
    start = time.perf_counter()
    snapshot = report.run(current_data=current, reference_data=reference)
    seconds = time.perf_counter() - start
    return [seconds, *drifted(snapshot)]


def timed(fn: Any, repeat: int, budget_s: float) -> dict[str, Any]:
    """Median seconds of up to ``repeat`` calls after a warm-up, within ``budget_s``."""
    first = fn()
    times: list[float] = []
    result = first
    while len(times) < max(repeat, 1) and (not times or sum(times) < budget_s):
        result = fn()
        times.append(result[0])
    return {"seconds": statistics.median(times), "flagged": result[1:], "runs": len(times)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["version", "run"])
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--budget", type=float, default=20.0)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    apply_thread_env()
    import evidently

    if args.what == "version":
        print(json.dumps({"evidently_version": evidently.__version__}))
        return 0
    import pandas as pd

    spec = json.loads((args.dir / "spec.json").read_text())
    numeric, categorical = spec["numeric"], spec["categorical"]
    phases: dict[str, Any] = {}
    errors: list[str] = []

    def attempt(name: str, fn: Any) -> None:
        log(f"  Evidently {name}")
        try:
            phases[name] = fn()
        except Exception as exc:
            errors.append(f"evidently {name}: {type(exc).__name__}: {exc}")
            log(traceback.format_exc())

    for n in spec["rows"]:
        ref = pd.read_parquet(args.dir / f"reference-{n}.parquet")
        cur = pd.read_parquet(args.dir / f"current-{n}.parquet")
        for family, preset in FAMILIES.items():
            repeat = args.repeat if n <= 100_000 else 1  # a 1M-row run takes a minute or more
            attempt(
                f"{family}_{n}",
                lambda preset=preset, ref=ref, cur=cur, repeat=repeat: timed(
                    lambda: run_preset(ref, cur, numeric, categorical, **preset), repeat, args.budget
                ),
            )
        del ref, cur

    def false_positives() -> dict[str, Any]:
        ref = pd.read_parquet(args.dir / "fp-reference.parquet")
        cur = pd.read_parquet(args.dir / "fp-current.parquet")
        columns = list(ref.columns)
        chisquare = run_preset(ref, cur, [], columns, cat_method="chisquare")[1:]
        default = run_preset(ref, cur, [], columns)[1:]
        return {
            "columns": len(columns),
            "chisquare": len(chisquare) / len(columns),
            "default": len(default) / len(columns),
        }

    attempt("false_positives", false_positives)
    print(json.dumps({"evidently_version": evidently.__version__, "phases": phases, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
