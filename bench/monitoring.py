"""Drift benchmark: Gyre's drift tests against Evidently and against numpy/scipy, same run.

    python bench/monitoring.py [--quick] [--json] [--no-evidently] [--evidently-python PATH]

Data (seeded numpy): a reference and a current sample of 100,000 rows each, then 1,000,000
each, 20 columns: 15 numeric (normal, lognormal, exponential, uniform, Poisson) and 5
categorical (4 to 20 categories, Zipf-like frequencies); drift is injected in 5 of them in
the current sample (n0 mean +0.25 sd, n6 lognormal sigma 0.5 -> 0.6, n12 exponential scale
5 -> 6, c1 and c3 frequencies flattened). Each side gets the same rows: Gyre an Arrow table,
Evidently pandas DataFrames (read from the Parquet files the main process writes), the limit
numpy arrays.

Two families of tests, each computed by all three:

- KS + chi-square (Gyre's defaults): Gyre ``compare`` with the default ``DriftConfig``;
  Evidently ``DataDriftPreset(num_method="ks", cat_method="chisquare")``; the limit
  scipy/numpy: the KS distance by ``searchsorted`` on sorted arrays with
  ``scipy.stats.kstwobign`` for the p-value, ``np.unique`` counts and
  ``scipy.stats.chi2_contingency``.
- Wasserstein (in reference standard deviations) + Jensen-Shannon (Evidently's defaults at
  this size): Gyre ``DriftConfig(numeric="wasserstein", categorical="jensen_shannon")``;
  Evidently's default ``DataDriftPreset()``; the limit the same two statistics in numpy/scipy.

Gyre compiles the reference once per model version (a profile, then a ``Reference``): that
one-off time is reported apart from the current-side time a window costs, which is what the
goal is about (within 2x of the limit). The limit prepares its reference once too (sorted
columns, category counts) and is timed on the current side; it tests against the full
reference, Gyre against its profile (a 2,048-value sample per numeric column, every category
count), so a line also gives the limit on Gyre's inputs.

Also: the share of 40 undrifted categorical columns (100k rows each side) that each flags,
since a goodness-of-fit chi-square (Evidently's) treats the reference as exact.

Evidently is not a Gyre dependency, so it runs in its own virtualenv: ``bench/.venvs/evidently``,
created on first use, or the interpreter given by ``--evidently-python`` /
``GYRE_BENCH_EVIDENTLY_PYTHON``; its half runs as a subprocess (``_evidently_side.py``).
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import (
    Phases,
    Row,
    apply_thread_env,
    child_env,
    dump_json,
    install_sigterm_handler,
    log,
    markdown_table,
    median_seconds,
    peer_python,
    peer_version,
    render_table,
)

BENCH_DIR = Path(__file__).resolve().parent
EVIDENTLY_SIDE = BENCH_DIR / "_evidently_side.py"
EVIDENTLY_VENV = BENCH_DIR / ".venvs" / "evidently"
# Evidently 0.7.23 imports a pandas function that pandas 3 removed.
EVIDENTLY_REQUIREMENTS = ["evidently==0.7.23", "pandas<3", "pyarrow"]
EVIDENTLY_PYTHON_ENV = "GYRE_BENCH_EVIDENTLY_PYTHON"
EVIDENTLY_SIDE_TIMEOUT_S = 3600

SEED = 20261127
NUMERIC = [f"n{i}" for i in range(15)]
CATEGORICAL = [f"c{j}" for j in range(5)]
DRIFTED = ["n0", "n6", "n12", "c1", "c3"]
CATEGORIES = [4, 6, 8, 12, 20]
FP_COLUMNS = 40
FP_ROWS = 100_000
ALPHA = 0.05
GOAL_VS_LIMIT = 1 / 2.0
FAMILIES = {
    "ks_chi2": ("KS + chi-square (Gyre's defaults)", "ks", "chi2"),
    "wasserstein_js": (
        "Wasserstein + Jensen-Shannon (Evidently's defaults)",
        "wasserstein",
        "jensen_shannon",
    ),
}


@dataclass(frozen=True)
class Sizes:
    rows: tuple[int, ...]  # rows of each side, one measurement per size
    fp_rows: int  # rows of each side of the false-positive check
    repeat: int  # timed repetitions (the median is reported)
    budget_s: float  # stop repeating once this much was spent timing one figure


FULL = Sizes(rows=(100_000, 1_000_000), fp_rows=FP_ROWS, repeat=5, budget_s=20.0)
QUICK = Sizes(rows=(100_000,), fp_rows=20_000, repeat=3, budget_s=5.0)


class Results(Phases):
    """Figures by phase, plus the errors of phases that failed (the others still run)."""


# -- data --------------------------------------------------------------------------------------------


def _zipf(k: int) -> Any:
    import numpy as np

    p = 1.0 / np.arange(1, k + 1)
    return p / p.sum()


def _numeric(rng: Any, i: int, n: int, drift: bool) -> Any:
    family = i % 5
    if family == 0:
        return rng.normal(10.0 + (0.5 if drift else 0.0), 2.0, n)
    if family == 1:
        return rng.lognormal(3.0, 0.6 if drift else 0.5, n)
    if family == 2:
        return rng.exponential(6.0 if drift else 5.0, n)
    if family == 3:
        return rng.uniform(0.0, 100.0, n)
    return rng.poisson(3.0, n).astype("float64")


def _categorical(rng: Any, name: str, k: int, n: int, drift: bool) -> Any:
    import numpy as np

    p = _zipf(k)
    if drift:  # flatten the frequencies: the common categories lose share to the rare ones
        p = p**0.4
        p = p / p.sum()
    values = np.array([f"{name}_v{r}" for r in range(k)])
    return values[rng.choice(k, n, p=p)]


def generate(n: int, *, drift: bool, seed: int) -> dict[str, Any]:
    """One side's columns as numpy arrays (float64, or strings for categoricals)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {}
    for i, name in enumerate(NUMERIC):
        cols[name] = _numeric(rng, i, n, drift and name in DRIFTED)
    for name, k in zip(CATEGORICAL, CATEGORIES, strict=True):
        cols[name] = _categorical(rng, name, k, n, drift and name in DRIFTED)
    return cols


def generate_undrifted(n: int, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two samples of ``FP_COLUMNS`` categorical columns from the same distributions."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sides: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    for j in range(FP_COLUMNS):
        k = 3 + j % 28
        for side in sides:
            side[f"u{j}"] = _categorical(rng, f"u{j}", k, n, False)
    return sides


def arrow(cols: dict[str, Any]) -> Any:
    import pyarrow as pa

    return pa.table({name: pa.array(values) for name, values in cols.items()})


# -- Gyre ----------------------------------------------------------------------------------------------


def gyre_config(family: str) -> Any:
    from gyre.monitoring.drift import DriftConfig

    _, numeric, categorical = FAMILIES[family]
    return DriftConfig(numeric=numeric, categorical=categorical)


def gyre_reference(ref_table: Any) -> Any:
    """What Gyre computes once per model version: the profile, compiled for testing."""
    from gyre.data.profiles import profile
    from gyre.monitoring.drift import Reference

    return Reference(profile(ref_table))


def gyre_measure(ref_table: Any, cur_table: Any, sizes: Sizes) -> dict[str, Any]:
    from gyre.monitoring.drift import compare

    reference_s, ref = median_seconds(lambda: gyre_reference(ref_table), sizes.repeat, sizes.budget_s)
    out: dict[str, Any] = {"reference_s": reference_s, "reference": ref}
    for family in FAMILIES:
        config = gyre_config(family)
        seconds, report = median_seconds(
            lambda c=config: compare(ref, cur_table, c), sizes.repeat, sizes.budget_s
        )
        numeric_s, _ = median_seconds(
            lambda c=config: compare(ref, cur_table, c, columns=NUMERIC), sizes.repeat, sizes.budget_s
        )
        out[family] = {
            "seconds": seconds,
            "numeric_s": numeric_s,
            "flagged": sorted(f.feature for f in report.drifted),
        }
    return out


# -- the limit: numpy/scipy ----------------------------------------------------------------------------


@dataclass
class LimitReference:
    """The reference as a hand-written monitor would keep it: sorted numeric columns, their
    standard deviations, and category counts."""

    sorted: dict[str, Any]
    std: dict[str, float]
    counts: dict[str, dict[str, int]]


def limit_reference(ref: dict[str, Any]) -> LimitReference:
    import numpy as np

    counts = {}
    for name in CATEGORICAL:
        values, n = np.unique(ref[name], return_counts=True)
        counts[name] = dict(zip(values.tolist(), n.tolist(), strict=True))
    return LimitReference(
        sorted={name: np.sort(ref[name]) for name in NUMERIC},
        std={name: float(np.std(ref[name])) for name in NUMERIC},
        counts=counts,
    )


def limit_from_gyre(ref: Any) -> LimitReference:
    """The limit on Gyre's inputs: its reference sample and category counts."""
    import numpy as np

    cols = ref.columns
    return LimitReference(
        sorted={name: cols[name].values for name in NUMERIC},
        std={name: float(cols[name].std or np.std(cols[name].values)) for name in NUMERIC},
        counts={name: dict(cols[name].categories) for name in CATEGORICAL},
    )


def _aligned(ref_counts: dict[str, int], values: Any) -> tuple[Any, Any]:
    import numpy as np

    cats, n = np.unique(values, return_counts=True)
    cur = dict(zip(cats.tolist(), n.tolist(), strict=True))
    keys = list(ref_counts) + [k for k in cur if k not in ref_counts]
    return (
        np.array([ref_counts.get(k, 0) for k in keys], dtype=np.float64),
        np.array([cur.get(k, 0) for k in keys], dtype=np.float64),
    )


def limit_tests(
    ref: LimitReference, cur: dict[str, Any], family: str, *, categorical: bool = True
) -> list[str]:
    """The family's tests by hand on numpy arrays (``categorical``: the categorical columns
    too); returns the drifted columns."""
    import numpy as np
    from scipy import stats
    from scipy.spatial import distance

    flagged = []
    for name in NUMERIC:
        a = ref.sorted[name]
        b = np.sort(cur[name])
        if family == "ks_chi2":
            grid = np.concatenate([a, b])
            d = np.max(
                np.abs(
                    np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)
                )
            )
            en = np.sqrt(len(a) * len(b) / (len(a) + len(b)))
            drifted = stats.kstwobign.sf(en * d) < ALPHA
        else:
            values = np.sort(np.concatenate([a, b]))
            deltas = np.diff(values)
            cdf_a = np.searchsorted(a, values[:-1], "right") / len(a)
            cdf_b = np.searchsorted(b, values[:-1], "right") / len(b)
            drifted = np.sum(np.abs(cdf_a - cdf_b) * deltas) / ref.std[name] > 0.1
        if drifted:
            flagged.append(name)
    for name in CATEGORICAL if categorical else []:
        r, c = _aligned(ref.counts[name], cur[name])
        if family == "ks_chi2":
            drifted = stats.chi2_contingency(np.vstack([r, c]), correction=False).pvalue < ALPHA
        else:
            drifted = distance.jensenshannon(r / r.sum(), c / c.sum(), base=2) > 0.1
        if drifted:
            flagged.append(name)
    return flagged


def limit_measure(ref: dict[str, Any], cur: dict[str, Any], gyre_ref: Any, sizes: Sizes) -> dict[str, Any]:
    reference_s, prepared = median_seconds(lambda: limit_reference(ref), sizes.repeat, sizes.budget_s)
    on_gyre_inputs = limit_from_gyre(gyre_ref)
    out: dict[str, Any] = {"reference_s": reference_s}
    for family in FAMILIES:
        seconds, flagged = median_seconds(
            lambda f=family: limit_tests(prepared, cur, f), sizes.repeat, sizes.budget_s
        )
        numeric_s, _ = median_seconds(
            lambda f=family: limit_tests(prepared, cur, f, categorical=False), sizes.repeat, sizes.budget_s
        )
        sample_s, sample_flagged = median_seconds(
            lambda f=family: limit_tests(on_gyre_inputs, cur, f), sizes.repeat, sizes.budget_s
        )
        out[family] = {
            "seconds": seconds,
            "numeric_s": numeric_s,
            "flagged": sorted(flagged),
            "on_gyre_inputs_s": sample_s,
            "on_gyre_inputs_flagged": sorted(sample_flagged),
        }
    return out


def measure_size(n: int, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    log(f"  generating {n:,} + {n:,} rows")
    ref = generate(n, drift=False, seed=SEED + n)
    cur = generate(n, drift=True, seed=SEED + n + 1)
    ref_table, cur_table = arrow(ref), arrow(cur)
    pq.write_table(ref_table, workdir / f"reference-{n}.parquet")
    pq.write_table(cur_table, workdir / f"current-{n}.parquet")
    log("  Gyre")
    gyre = gyre_measure(ref_table, cur_table, sizes)
    log("  numpy/scipy limit")
    limit = limit_measure(ref, cur, gyre.pop("reference"), sizes)
    return {"rows": n, "gyre": gyre, "limit": limit}


def false_positives(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """Share of undrifted categorical columns each flags (Gyre chi2, limit chi2)."""
    import numpy as np
    import pyarrow.parquet as pq
    from scipy import stats

    from gyre.monitoring.drift import compare

    ref, cur = generate_undrifted(sizes.fp_rows, SEED + 7)
    ref_table, cur_table = arrow(ref), arrow(cur)
    pq.write_table(ref_table, workdir / "fp-reference.parquet")
    pq.write_table(cur_table, workdir / "fp-current.parquet")
    report = compare(gyre_reference(ref_table), cur_table)
    limit = 0
    for name in ref:
        cats = {k: int(v) for k, v in zip(*np.unique(ref[name], return_counts=True), strict=True)}
        r, c = _aligned(cats, cur[name])
        limit += stats.chi2_contingency(np.vstack([r, c]), correction=False).pvalue < ALPHA
    return {
        "columns": len(ref),
        "rows": sizes.fp_rows,
        "gyre_chi2": len(report.drifted) / len(ref),
        "limit_chi2": limit / len(ref),
    }


# -- Evidently -------------------------------------------------------------------------------------------


def evidently_python(args: argparse.Namespace) -> str | None:
    """The interpreter that runs Evidently's half: given, or the benchmark's own virtualenv (made once)."""
    if args.no_evidently:
        return None
    given = args.evidently_python or os.environ.get(EVIDENTLY_PYTHON_ENV)
    return peer_python("Evidently", EVIDENTLY_VENV, EVIDENTLY_REQUIREMENTS, given)


def evidently_env() -> dict[str, str]:
    # No usage telemetry: network calls would be timed as Evidently's.
    return child_env(DO_NOT_TRACK="1", EVIDENTLY_DISABLE_TELEMETRY="1", PYTHONWARNINGS="ignore")


def evidently_version(python: str) -> str | None:
    return peer_version("Evidently", python, EVIDENTLY_SIDE, evidently_env(), "evidently_version")


def evidently_run(python: str, sizes: Sizes, workdir: Path, r: Results) -> dict[str, Any]:
    """Every Evidently measurement in one subprocess (its progress goes straight to our stderr)."""
    spec = {"numeric": NUMERIC, "categorical": CATEGORICAL, "rows": list(sizes.rows)}
    (workdir / "spec.json").write_text(json.dumps(spec))
    argv = [python, str(EVIDENTLY_SIDE), "run", "--dir", str(workdir)]
    argv += ["--repeat", str(sizes.repeat), "--budget", str(sizes.budget_s)]
    proc = subprocess.run(
        argv,
        stdout=subprocess.PIPE,
        text=True,
        env=evidently_env(),
        timeout=EVIDENTLY_SIDE_TIMEOUT_S,
        cwd=workdir,
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"the Evidently side exited {proc.returncode}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    r.errors += out.get("errors", [])
    return out


# -- the tables ----------------------------------------------------------------------------------------------


def k(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def build_rows(r: Results, sizes: Sizes) -> list[Row]:
    rows = []
    evidently = r.data.get("evidently", {}).get("phases", {})
    for n in sizes.rows:
        size = r.data.get(f"rows_{n}")
        if not size:
            continue
        for family, (label, _, _) in FAMILIES.items():
            peer = evidently.get(f"{family}_{n}", {})
            rows.append(
                Row(
                    f"{label}, {k(n)} vs {k(n)}, current side",
                    "s",
                    higher_is_better=False,
                    gyre=size["gyre"][family]["seconds"],
                    peer=peer.get("seconds"),
                    limit=size["limit"][family]["seconds"],
                    limit_goal=GOAL_VS_LIMIT,
                )
            )
            rows.append(
                Row(
                    f"  same, the {len(NUMERIC)} numeric columns only",
                    "s",
                    higher_is_better=False,
                    gyre=size["gyre"][family]["numeric_s"],
                    limit=size["limit"][family]["numeric_s"],
                    limit_goal=GOAL_VS_LIMIT,
                )
            )
        rows.append(
            Row(
                f"reference, {k(n)} rows (once per model version)",
                "s",
                higher_is_better=False,
                gyre=size["gyre"]["reference_s"],
                limit=size["limit"]["reference_s"],
                note="Gyre: profile + compile; limit: sort + count",
            )
        )
    return rows


def flagged_table(r: Results, sizes: Sizes) -> str:
    evidently = r.data.get("evidently", {}).get("phases", {})
    body = []
    for n in sizes.rows:
        size = r.data.get(f"rows_{n}")
        if not size:
            continue
        for family, (label, _, _) in FAMILIES.items():
            cells = [
                size["gyre"][family]["flagged"],
                evidently.get(f"{family}_{n}", {}).get("flagged"),
                size["limit"][family]["flagged"],
            ]
            body.append([f"{label.split(' (')[0]}, {k(n)}", *(_columns(c) for c in cells)])
    return markdown_table(["tests, rows", "Gyre", "Evidently", "limit"], body)


def _columns(flagged: Sequence[str] | None) -> str:
    if flagged is None:
        return "—"
    extra = [c for c in flagged if c not in DRIFTED]
    missed = [c for c in DRIFTED if c not in flagged]
    if not extra and not missed:
        return "the 5 drifted"
    parts = [", ".join(flagged) or "none"]
    if missed:
        parts.append(f"missed {', '.join(missed)}")
    if extra:
        parts.append(f"{len(extra)} false")
    return "; ".join(parts)


def report(r: Results, sizes: Sizes, meta: dict[str, Any]) -> str:
    lines = [
        f"Drift benchmark ({meta['mode']}): Gyre {meta['gyre_version']} vs Evidently "
        f"{meta.get('evidently_version') or '(not run)'}; {meta['cpus']} CPUs, Python {meta['python']}, "
        f"numpy {meta['numpy']}, scipy {meta['scipy']}",
        f"Data: reference and current samples of {', '.join(k(n) for n in sizes.rows)} rows each, "
        f"{len(NUMERIC)} numeric + {len(CATEGORICAL)} categorical columns, drift in {', '.join(DRIFTED)}. "
        f"Medians of up to {sizes.repeat} timed runs after a warm-up.",
        "",
        render_table(build_rows(r, sizes), peer="Evidently", verdict=True),
        "",
        "Ratios say how many times faster Gyre is (peer/Gyre, limit/Gyre). Goal: a window's drift tests "
        "(the current side; the reference is compiled once per model version) within 2x of the limit "
        "(Gyre/limit >= 0.5x). Evidently has no reusable reference: its time is the whole comparison.",
        "The limit counts categories with np.unique, which sorts the strings; Gyre counts them with "
        "Arrow's hash (pyarrow.compute.value_counts), several times faster, so the numeric-only rows "
        "are the tighter comparison.",
        "",
        "Columns flagged drifted (alpha 0.05 for KS and chi-square; 0.1 for Wasserstein and "
        "Jensen-Shannon; Evidently's Jensen-Shannon uses natural logarithms, Gyre's and the limit's base 2):",
        "",
        flagged_table(r, sizes),
        "",
    ]
    for n in sizes.rows:
        size = r.data.get(f"rows_{n}")
        if size:
            lim = size["limit"]
            lines.append(
                f"Limit on Gyre's inputs (its 2,048-value reference sample), {k(n)}: "
                + ", ".join(
                    f"{FAMILIES[f][0].split(' (')[0]} {lim[f]['on_gyre_inputs_s']:.3f} s "
                    f"({_columns(lim[f]['on_gyre_inputs_flagged'])})"
                    for f in FAMILIES
                )
                + "."
            )
    fp = r.data.get("false_positives")
    if fp:
        ev = r.data.get("evidently", {}).get("phases", {}).get("false_positives", {})
        shares = [f"Gyre chi-square {fp['gyre_chi2']:.0%}", f"scipy chi2_contingency {fp['limit_chi2']:.0%}"]
        if ev:
            shares += [
                f"Evidently chisquare {ev['chisquare']:.0%}",
                f"Evidently default preset {ev['default']:.0%}",
            ]
        lines += [
            "",
            f"False positives: share of {fp['columns']} undrifted categorical columns ({k(fp['rows'])} rows "
            f"each side) flagged at alpha {ALPHA}: " + ", ".join(shares) + ".",
        ]
    lines += r.footer(meta.get("notes", []), meta["total_s"])
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, sizes: Sizes, root: Path) -> tuple[Results, dict[str, Any]]:
    r = Results()
    notes: list[str] = []
    python = evidently_python(args)
    version = evidently_version(python) if python else None
    if args.no_evidently:
        notes.append("--no-evidently: Evidently's half not run.")
    elif not version:
        notes.append("Evidently could not be run: only Gyre's half and the limit ran.")
    for n in sizes.rows:
        r.attempt(f"rows_{n}", lambda n=n: measure_size(n, sizes, root))
    r.attempt("false_positives", lambda: false_positives(sizes, root))
    if version and python:
        r.attempt("evidently", lambda: evidently_run(python, sizes, root, r))
    check(r, sizes)
    return r, {"evidently_version": version, "evidently_python": python, "notes": notes}


def check(r: Results, sizes: Sizes) -> None:
    """Each side should flag the drifted columns; a missed one is a warning (never asserted)."""
    evidently = r.data.get("evidently", {}).get("phases", {})
    for n in sizes.rows:
        size = r.data.get(f"rows_{n}", {})
        for family in FAMILIES:
            for who, flagged in (
                ("Gyre", size.get("gyre", {}).get(family, {}).get("flagged")),
                ("Evidently", evidently.get(f"{family}_{n}", {}).get("flagged")),
                ("limit", size.get("limit", {}).get(family, {}).get("flagged")),
            ):
                missed = [c for c in DRIFTED if flagged is not None and c not in flagged]
                if missed:
                    r.warnings.append(f"{who} missed drifted {', '.join(missed)} ({family}, {k(n)})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Gyre's drift tests vs Evidently vs numpy/scipy, same run.")
    parser.add_argument("--quick", action="store_true", help="100k rows only, smaller false-positive check")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON instead of tables")
    parser.add_argument(
        "--no-evidently", action="store_true", help="skip Evidently (Gyre and the limit only)"
    )
    parser.add_argument(
        "--evidently-python",
        help=f"interpreter with Evidently installed (default: ${EVIDENTLY_PYTHON_ENV}, else "
        "bench/.venvs/evidently, made on first use)",
    )
    args = parser.parse_args(argv)
    apply_thread_env()
    install_sigterm_handler()
    sizes = QUICK if args.quick else FULL
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gyre-bench-monitoring-") as tmp:
        results, meta = run(args, sizes, Path(tmp))
    import numpy
    import scipy

    import gyre

    meta.update(
        mode="quick" if args.quick else "full",
        cpus=os.cpu_count(),
        python=platform.python_version(),
        numpy=numpy.__version__,
        scipy=scipy.__version__,
        gyre_version=getattr(gyre, "__version__", "?"),
        total_s=time.perf_counter() - start,
    )
    if args.json:
        print(
            dump_json(
                {
                    "meta": meta,
                    "sizes": asdict(sizes),
                    "rows": [row.as_dict() for row in build_rows(results, sizes)],
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
