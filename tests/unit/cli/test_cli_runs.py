"""``gyre experiments list`` and ``gyre runs list | show | compare``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from typer.testing import Result

from gyre.client.client import Client
from gyre.tracking.entities import RunInfo

Invoke = Callable[..., Result]  # the `cli` fixture


def _json(cli: Invoke, *args: str) -> object:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _line(output: str, start: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(start))


def test_experiments_list(cli: Invoke, three_runs: list[RunInfo]) -> None:
    names = [e["name"] for e in _json(cli, "experiments", "list")]
    assert names == ["fraud", "other"]
    table = cli("experiments", "list").stdout
    assert "fraud" in table and three_runs[0].experiment_id in table


def test_runs_list_table_fits_100_columns(cli: Invoke, three_runs: list[RunInfo]) -> None:
    result = cli("runs", "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100
    # the most common metrics first
    assert lines[0].split() == [
        "id",
        "name",
        "experiment",
        "status",
        "started",
        "duration",
        "auc",
        "loss",
        "f1",
    ]
    row = _line(result.stdout, three_runs[0].id).split()
    assert row[1:4] == ["rf-100", "fraud", "FINISHED"]
    assert row[-3:] == ["0.9", "0.3", "NaN"]
    assert _line(result.stdout, three_runs[2].id).split()[-1] == "inf"
    assert "lonely" in result.stdout


def test_runs_list_json_filter_order_and_max(cli: Invoke, three_runs: list[RunInfo]) -> None:
    runs = _json(cli, "runs", "list")
    assert [r["name"] for r in runs] == ["lonely", "rf-300", "rf-200", "rf-100"]  # newest first
    assert runs[-1]["metrics"]["f1"] == "NaN" and runs[1]["metrics"]["f1"] == "Infinity"

    best = _json(cli, "runs", "list", "--filter", "metrics.auc > 0.905", "--order-by", "metrics.auc DESC")
    assert [r["name"] for r in best] == ["rf-300", "rf-200"]
    shallow = _json(cli, "runs", "list", "-f", "params.max_depth = '5'", "-o", "metrics.auc")
    assert [r["name"] for r in shallow] == ["rf-100", "rf-200"]
    assert [r["name"] for r in _json(cli, "runs", "list", "--experiment", "other")] == ["lonely"]
    assert len(_json(cli, "runs", "list", "--max", "1")) == 1


def test_runs_list_puts_the_filtered_metric_first(cli: Invoke, three_runs: list[RunInfo]) -> None:
    result = cli("runs", "list", "--order-by", "metrics.loss")
    assert result.stdout.splitlines()[0].split()[6] == "loss"


def test_a_bad_filter_is_one_error_line(cli: Invoke, three_runs: list[RunInfo]) -> None:
    result = cli("runs", "list", "--filter", "metrics.auc >")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: Filter 'metrics.auc >' is incomplete: each clause reads like metrics.auc > 0.9."
    ]
    unknown = cli("runs", "list", "--filter", "stauts = 'FINISHED'")
    assert unknown.exit_code == 1
    assert "Did you mean 'status'?" in unknown.stderr
    assert "Traceback" not in unknown.output


def test_runs_list_unknown_experiment(cli: Invoke, three_runs: list[RunInfo]) -> None:
    result = cli("runs", "list", "--experiment", "nope")
    assert result.exit_code == 1
    assert "Experiment 'nope' does not exist" in result.stderr


def test_runs_list_empty(cli: Invoke, project: Path) -> None:
    result = cli("runs", "list")
    assert result.exit_code == 0
    assert "No runs yet." in result.stdout
    assert _json(cli, "runs", "list") == []


def test_runs_show(cli: Invoke, client: Client, project: Path) -> None:
    environment = {
        "git_commit": "a" * 40, "git_diff_hash": "d" * 64, "python_version": "3.11.7",
        "packages_hash": "p" * 64, "host": "trainer-1", "source": "train.py --fast",
    }  # fmt: skip
    info = client.backend.create_run("fraud", name="shown", environment=environment)
    client.runs.log_batch(
        info.id, [("auc", 0.93, 1, 1), ("auc", 0.95, 2, 2)], params={"depth": 5}, tags={"team": "risk"}
    )
    (project / "notes.txt").write_text("hello")
    client.upload_artifact(info.id, project / "notes.txt", "notes.txt")
    client.runs.finish(info.id)

    result = cli("runs", "show", info.id)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert max(len(line) for line in out.splitlines()) <= 100
    assert _line(out, "git commit").split()[2:] == ["a" * 40, "(uncommitted", "changes", "d" * 12 + ")"]
    assert _line(out, "python").split() == ["python", "3.11.7"]
    assert _line(out, "packages hash").split() == ["packages", "hash", "p" * 12]
    assert _line(out, "host").split() == ["host", "trainer-1"]
    assert _line(out, "command").split() == ["command", "train.py", "--fast"]
    assert _line(out, "status").split() == ["status", "FINISHED"]
    assert _line(out, "depth").split() == ["depth", "5"]
    assert _line(out, "auc").split() == ["auc", "0.95"]  # the latest value
    assert _line(out, "team").split() == ["team", "risk"]
    assert _line(out, "notes.txt").split()[:3] == ["notes.txt", "5", "B"]

    data = _json(cli, "runs", "show", info.id)
    assert data["id"] == info.id and data["git_diff_hash"] == "d" * 64
    assert data["metrics"] == {"auc": 0.95}
    assert [a["path"] for a in data["artifacts"]] == ["notes.txt"]


def test_runs_show_a_failed_run_names_the_exception(cli: Invoke, client: Client) -> None:
    try:
        with client.start_run("fraud", "boom", capture_environment=False) as run:
            raise ValueError("bad [red]input[/red]\nsecond line")
    except ValueError:
        pass
    out = cli("runs", "show", run.id).stdout
    assert _line(out, "error").split(maxsplit=1)[1].strip() == "ValueError: bad [red]input[/red] second line"


def test_runs_compare_highlights_differences(cli: Invoke, three_runs: list[RunInfo]) -> None:
    ids = [r.id for r in three_runs]
    result = cli("runs", "compare", *ids)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert max(len(line) for line in out.splitlines()) <= 100
    assert all(i in out for i in ids)
    assert _line(out, "  lr").split() == ["lr", "0.1", "0.1", "0.1"]
    assert _line(out, "≠ n_estimators").split() == ["≠", "n_estimators", "100", "200", "300"]
    assert _line(out, "≠ f1").split() == ["≠", "f1", "NaN", "-", "inf"]
    assert _line(out, "≠ auc").split() == ["≠", "auc", "0.9", "0.91", "0.92"]

    only = cli("runs", "compare", *ids, "--only-diff").stdout
    assert "lr" not in only and "team" not in only
    assert "≠ max_depth" in only


def test_runs_compare_styles_the_differing_rows(cli: Invoke, three_runs: list[RunInfo]) -> None:
    out = cli("runs", "compare", three_runs[0].id, three_runs[1].id, env={"FORCE_COLOR": "1"}).stdout
    differs = _line(out.replace("\x1b[1;33m", ""), "≠ n_estimators")
    assert differs  # the marker is there with colors too
    styled = next(line for line in out.splitlines() if "n_estimators" in line)
    same = next(line for line in out.splitlines() if "max_depth" in line)
    assert "\x1b[1;33m" in styled
    assert "\x1b[1;33m" not in same


def test_runs_compare_json(cli: Invoke, three_runs: list[RunInfo]) -> None:
    data = _json(cli, "runs", "compare", three_runs[0].id, three_runs[2].id)
    assert [r["name"] for r in data["runs"]] == ["rf-100", "rf-300"]
    params = {p["key"]: p for p in data["params"]}
    assert params["max_depth"] == {"key": "max_depth", "values": ["5", "8"], "differs": True}
    assert params["lr"]["differs"] is False
    metrics = {m["key"]: m for m in data["metrics"]}
    assert metrics["f1"]["values"] == ["NaN", "Infinity"]
    only = _json(cli, "runs", "compare", three_runs[0].id, three_runs[2].id, "--only-diff")
    assert "lr" not in {p["key"] for p in only["params"]}


def test_runs_compare_needs_two_existing_runs(cli: Invoke, three_runs: list[RunInfo]) -> None:
    one = cli("runs", "compare", three_runs[0].id)
    assert one.exit_code == 1
    assert "two or more run ids" in one.stderr
    missing = cli("runs", "compare", three_runs[0].id, "NOPE")
    assert missing.exit_code == 1
    assert "Run NOPE does not exist" in missing.stderr
