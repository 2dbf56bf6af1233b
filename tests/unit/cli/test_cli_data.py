"""gyre ingest / validate / datasets / quarantine on a temporary project."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from gyre.demo import PaymentsConfig, PaymentsGenerator

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _files(folder: Path) -> tuple[Path, Path, Path]:
    gen = PaymentsGenerator(PaymentsConfig(seed=2, n_users=100, payments_per_hour=20))
    day1 = gen.history(T0, T0 + timedelta(days=1))
    paths = folder / "day1.parquet", folder / "day2.parquet", folder / "bad.parquet"
    pq.write_table(day1, paths[0])
    pq.write_table(gen.history(T0 + timedelta(days=1), T0 + timedelta(days=2)), paths[1])
    pq.write_table(day1.drop(["amount"]), paths[2])
    return paths


def test_ingest_history_head_and_quarantine(cli, project: Path) -> None:  # type: ignore[no-untyped-def]
    day1, day2, bad = _files(project)
    first = cli("ingest", "payments", str(day1), "--keys", "payment_id", "--event-time", "ts")
    assert first.exit_code == 0, first.output
    assert "payments version 0" in first.stdout
    out = json.loads(cli("ingest", "payments", str(day2), "--json").stdout)
    assert out["accepted"] and out["version"] == 1

    rejected = cli("ingest", "payments", str(bad))
    assert rejected.exit_code == 1
    assert "Rejected" in rejected.stdout and "missing_column" in rejected.stdout

    history = json.loads(cli("datasets", "history", "payments", "--json").stdout)
    assert [v["version"] for v in history] == [0, 1]
    shown = json.loads(cli("datasets", "show", "payments", "--json").stdout)
    assert shown["keys"] == ["payment_id"] and shown["latest_version"] == 1
    assert (
        len(json.loads(cli("datasets", "head", "payments", "-n", "3", "--version", "0", "--json").stdout))
        == 3
    )
    assert [d["name"] for d in json.loads(cli("datasets", "list", "--json").stdout)] == ["payments"]

    quarantined = json.loads(cli("quarantine", "list", "--json").stdout)
    assert len(quarantined) == 1 and quarantined[0]["reasons"][0]["column"] == "amount"
    shown_q = cli("quarantine", "show", quarantined[0]["id"])
    assert shown_q.exit_code == 0 and "missing_column" in shown_q.stdout


def test_validate_is_a_dry_run(cli, project: Path) -> None:  # type: ignore[no-untyped-def]
    day1, _, bad = _files(project)
    cli("ingest", "payments", str(day1))
    result = cli("validate", "payments", str(bad), "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["dry_run"] is True
    assert len(json.loads(cli("datasets", "history", "payments", "--json").stdout)) == 1
    assert json.loads(cli("quarantine", "list", "--json").stdout) == []


def test_errors_are_one_line(cli, project: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("ingest", "payments", str(project / "missing.csv"))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert cli("datasets", "show", "nope").exit_code == 1


def test_vacuum_lists_then_keeps_every_version_readable(cli, project: Path) -> None:  # type: ignore[no-untyped-def]
    day1, _, _ = _files(project)
    assert cli("ingest", "payments", str(day1), "--keys", "payment_id", "--event-time", "ts").exit_code == 0
    out = json.loads(cli("datasets", "vacuum", "payments", "--dry-run", "--json").stdout)
    assert out == {"dataset": "payments", "dry_run": True, "files": []}
    short = cli("datasets", "vacuum", "payments", "--older-than", "5m")
    assert short.exit_code == 1 and "at least 1 hour" in short.stderr
    bad = cli("datasets", "vacuum", "payments", "--older-than", "soon")
    assert bad.exit_code == 1 and "not a duration" in bad.stderr
