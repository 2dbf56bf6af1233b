"""Ingest benchmark: Gyre's batch ingest against pyarrow + deltalake directly, in the same run.

    python bench/ingest.py [--quick] [--json]

Generates one seeded table (20 columns: 14 float64, 3 int64, 2 low-cardinality strings and a
UTC timestamp ``ts``; 5,000,000 rows, 500,000 with ``--quick``) and writes it once as Parquet
and once as CSV. For each format, in the same run and each in a fresh temporary folder:

- the limit: a streaming pyarrow read (``ParquetFile.iter_batches`` / ``pyarrow.csv.open_csv``)
  fed as a RecordBatchReader to ``deltalake.write_deltalake`` (a fresh table);
- Gyre, first version: ``ingest_files`` into a new dataset (SQLite metadata, ``file://`` store):
  profile and validate, then append; it also infers the dataset's expectations;
- Gyre, second version: the same file into the same dataset, validated against the first
  version's expectations and reference profile (the steady state).

Every phase runs in its own subprocess, so its peak RSS is its own. Rates are rows/s and input
MB/s (file size / wall seconds); the goal is Gyre at 0.8x the limit or better. Timings are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import apply_thread_env, child_env, dump_json, fmt_ratio, fmt_value, log, time_once

GOAL_VS_LIMIT = 0.8
FULL_ROWS = 5_000_000
QUICK_ROWS = 500_000
CHUNK_ROWS = 500_000  # rows generated and written at a time, to bound the generator's memory
SEED = 20240603
FORMATS = ("parquet", "csv")
PHASES = ("limit", "gyre_v1", "gyre_v2")
PHASE_TIMEOUT_S = 1800
DATASET = "bench_ingest"


# -- data ------------------------------------------------------------------------------------


def generate(workdir: Path, rows: int) -> dict[str, Path]:
    """Write the seeded table as ``data.parquet`` and ``data.csv``, chunk by chunk."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(SEED)
    regions = np.array(["eu-west", "eu-north", "us-east", "us-west", "ap-south", "ap-east"])
    kinds = np.array([f"kind_{i:02d}" for i in range(40)])
    start_us = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
    paths = {"parquet": workdir / "data.parquet", "csv": workdir / "data.csv"}
    pq_writer = csv_writer = None
    try:
        for offset in range(0, rows, CHUNK_ROWS):
            n = min(CHUNK_ROWS, rows - offset)
            cols: dict[str, pa.Array] = {}
            for i in range(14):
                cols[f"f{i:02d}"] = pa.array(rng.normal(loc=i, scale=1.0 + i, size=n))
            cols["i00"] = pa.array(np.arange(offset, offset + n, dtype=np.int64))  # an id
            cols["i01"] = pa.array(rng.integers(0, 1000, size=n, dtype=np.int64))
            cols["i02"] = pa.array(rng.poisson(5.0, size=n).astype(np.int64))
            cols["region"] = pa.array(regions[rng.integers(0, len(regions), size=n)])
            cols["kind"] = pa.array(kinds[rng.integers(0, len(kinds), size=n)])
            ts = start_us + (np.arange(offset, offset + n, dtype=np.int64) * 1_000_000)
            ts += rng.integers(0, 1_000_000, size=n, dtype=np.int64)
            cols["ts"] = pa.array(ts, type=pa.timestamp("us", tz="UTC"))
            table = pa.table(cols)
            if pq_writer is None:
                pq_writer = pq.ParquetWriter(paths["parquet"], table.schema)
                csv_writer = pacsv.CSVWriter(paths["csv"], table.schema)
            pq_writer.write_table(table)
            assert csv_writer is not None
            csv_writer.write_table(table)
    finally:
        if pq_writer is not None:
            pq_writer.close()
        if csv_writer is not None:
            csv_writer.close()
    return paths


# -- phases (each runs in its own subprocess) ---------------------------------------------------


def peak_rss_bytes() -> int:
    """This process's peak resident memory (VmHWM), in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # pragma: no cover


def phase_limit(fmt: str, path: Path, project: Path) -> dict[str, Any]:
    """pyarrow streaming read into ``write_deltalake``, nothing else."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    from deltalake import DeltaTable, write_deltalake

    uri = str(project / "lake" / DATASET)

    def run() -> None:
        if fmt == "parquet":
            pf = pq.ParquetFile(path)
            reader = pa.RecordBatchReader.from_batches(pf.schema_arrow, pf.iter_batches())
        else:
            reader = pacsv.open_csv(path)
        write_deltalake(uri, reader, mode="append")

    seconds = time_once(run)
    rows = sum(DeltaTable(uri).get_add_actions(flatten=True).column("num_records").to_pylist())
    return {"seconds": seconds, "rows": rows, "version": DeltaTable(uri).version()}


def phase_gyre(fmt: str, path: Path, project: Path) -> dict[str, Any]:
    """``ingest_files`` on a project in ``project`` (created by the first version)."""
    from gyre.data.ingest import ingest_files
    from gyre.data.lake import Lake
    from gyre.meta.db import MetaStore
    from gyre.store.artifacts import ArtifactStore

    project.mkdir(parents=True, exist_ok=True)
    meta = MetaStore(f"sqlite:///{project / 'gyre.db'}")
    meta.ensure_schema()  # migrations are not ingest time
    lake = Lake(f"file://{project / 'store'}")
    store = ArtifactStore(f"file://{project / 'store'}")
    try:
        result: Any = None

        def run() -> None:
            nonlocal result
            result = ingest_files(meta, lake, store, DATASET, str(path), format=fmt)

        seconds = time_once(run)
    finally:
        meta.close()
    report = result.report
    return {
        "seconds": seconds,
        "rows": result.rows,
        "version": result.version,
        "accepted": result.accepted,
        "errors": len(report.errors),
        "warnings": len(report.warnings),
    }


def run_phase_child(phase: str, fmt: str, path: Path, project: Path) -> None:
    """Entry point of a phase subprocess: its figures as one JSON line on stdout."""
    out = phase_limit(fmt, path, project) if phase == "limit" else phase_gyre(fmt, path, project)
    out["peak_rss_bytes"] = peak_rss_bytes()
    print(json.dumps(out), flush=True)


def run_phase(phase: str, fmt: str, path: Path, project: Path) -> dict[str, Any]:
    """Run one phase in a fresh interpreter; its last stdout line is its JSON."""
    argv = [sys.executable, __file__, "--phase", phase, "--format", fmt]
    argv += ["--data", str(path), "--project", str(project)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=PHASE_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"phase {phase} ({fmt}) exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the table -------------------------------------------------------------------------------


@dataclass
class Line:
    """One line of the table: a phase's rate against the limit of the same format."""

    work: str
    rows_s: float | None
    mb_s: float | None
    rss_mb: float | None
    limit_rows_s: float | None
    goal: bool = True
    note: str = ""

    def vs_limit(self) -> float | None:
        if not self.rows_s or not self.limit_rows_s:
            return None
        return self.rows_s / self.limit_rows_s


def render(lines: list[Line]) -> str:
    header = ["work", "rows/s", "MB/s", "peak RSS", "vs limit (same run)", "goal"]
    body = [
        [
            line.work + (f" [{line.note}]" if line.note else ""),
            fmt_value(line.rows_s, "rows/s"),
            fmt_value(line.mb_s, "MB/s"),
            fmt_value(line.rss_mb, "MB"),
            fmt_ratio(line.vs_limit()),
            f">= {GOAL_VS_LIMIT:g}x" if line.goal else "",
        ]
        for line in lines
    ]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def fmt_line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt_line(header), rule, *(fmt_line(b) for b in body)])


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROWS:,} rows instead of {FULL_ROWS:,}")
    parser.add_argument("--json", action="store_true", help="print every figure as JSON on stdout")
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--format", choices=FORMATS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    apply_thread_env()
    if args.phase:
        run_phase_child(args.phase, args.format, args.data, args.project)
        return 0
    for name in list(os.environ):  # only the temp projects count, never the shell's settings
        if name.startswith("GYRE_") and not name.startswith("GYRE_BENCH_"):
            del os.environ[name]

    rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS)
    workdir = Path(tempfile.mkdtemp(prefix="gyre-bench-ingest-"))
    results: dict[str, Any] = {"rows": rows, "columns": 20, "goal_vs_limit": GOAL_VS_LIMIT, "formats": {}}
    errors: list[str] = []
    lines: list[Line] = []
    try:
        log(f"generating {rows:,} rows x 20 columns")
        gen_s = time_once(lambda: results.__setitem__("paths", generate(workdir, rows)))
        paths: dict[str, Path] = results.pop("paths")
        log(f"  done in {gen_s:.0f} s")
        for fmt in FORMATS:
            size = paths[fmt].stat().st_size
            figures: dict[str, Any] = {"file_bytes": size}
            results["formats"][fmt] = figures
            projects = {"limit": workdir / f"{fmt}-limit", "gyre": workdir / f"{fmt}-gyre"}
            projects["limit"].mkdir()
            for phase in PHASES:
                project = projects["limit" if phase == "limit" else "gyre"]
                log(f"[{fmt} {phase}]")
                try:
                    out = run_phase(phase, fmt, paths[fmt], project)
                except Exception as exc:
                    detail = traceback.format_exc() if os.environ.get("GYRE_BENCH_DEBUG") else ""
                    errors.append(f"{fmt} {phase}: {type(exc).__name__}: {exc}")
                    log(f"  FAILED {errors[-1]}\n{detail}")
                    continue
                log(f"  done in {out['seconds']:.1f} s")
                if out["rows"] != rows:
                    errors.append(f"{fmt} {phase}: wrote {out['rows']:,} rows, expected {rows:,}")
                if phase != "limit" and not out.get("accepted", True):
                    errors.append(f"{fmt} {phase}: the batch was rejected by validation")
                out["rows_s"] = rows / out["seconds"]
                out["mb_s"] = size / 1e6 / out["seconds"]
                figures[phase] = out
            limit_rows_s = figures.get("limit", {}).get("rows_s")
            labels = {
                "limit": "limit: pyarrow read + write_deltalake",
                "gyre_v1": "Gyre ingest_files, first version",
                "gyre_v2": "Gyre ingest_files, second version",
            }
            for phase in PHASES:
                out = figures.get(phase)
                if out is not None and limit_rows_s:
                    out["vs_limit"] = out["rows_s"] / limit_rows_s
                lines.append(
                    Line(
                        f"{fmt} ({size / 1e6:,.0f} MB), {labels[phase]}",
                        out and out["rows_s"],
                        out and out["mb_s"],
                        out and out["peak_rss_bytes"] / 1e6,
                        limit_rows_s,
                        goal=phase != "limit",
                        note="" if out is not None else "failed",
                    )
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    results["errors"] = errors
    if args.json:
        print(dump_json(results))
    else:
        print(
            f"\nIngest of {rows:,} rows x 20 columns (validation included); goal: Gyre >= "
            f"{GOAL_VS_LIMIT:g}x the limit\n"
        )
        print(render(lines))
        for error in errors:
            print(f"\nERROR {error}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
