"""``gyre run``, ``gyre pipelines list | show`` and ``gyre models approve | reject``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from gyre.client.client import Client
from gyre.errors import NotFound

Invoke = Callable[..., Result]

DEFINITIONS = '''
import gyre
from gyre.pipelines import current_step


@gyre.step
def load(rows: int) -> list:
    return list(range(rows))


@gyre.step(retries=1, backoff_s=0.0, timeout_s=60)
def fit(data: list, fail: bool):
    if fail:
        raise RuntimeError("the fit diverged")
    from sklearn.dummy import DummyClassifier

    current_step().log_metric("auc", 0.9)
    return DummyClassifier().fit([[x] for x in data], [x % 2 for x in data])


@gyre.pipeline(
    name="train",
    schedule="0 3 * * *",
    gates=[gyre.gates.MetricThreshold("auc", ">=", 0.8)],
    review=REVIEW,
)
def train(rows: int = 10, fail: bool = False):
    """Train the toy model."""
    return {"model": fit(load(rows), fail)}
'''


def _write(project: Path, review: bool = False) -> None:
    (project / "definitions.py").write_text(DEFINITIONS.replace("REVIEW", str(review)))


def test_run_shows_progress_and_the_outcome(cli: Invoke, project: Path, client: Client) -> None:
    _write(project)
    result = cli("run", "train", "--param", "rows=20")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Running pipeline train (2 steps)" in out
    assert "✓ load" in out and "✓ fit" in out
    assert "Pipeline run: FINISHED" in out
    assert "auc >= 0.8  pass  auc = 0.9" in out
    assert "Outcome: registered" in out and "version 1 is challenger" in out
    assert client.models.get("train").aliases == {"challenger": 1}

    again = cli("run", "train", "-p", "rows=20", "--json")
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert [(s["name"], s["status"]) for s in data["steps"]] == [("load", "cached"), ("fit", "cached")]
    assert data["outcome"]["decision"] == "registered" and data["outcome"]["version"] == 2
    assert "↺ load" in again.stderr  # progress goes to stderr with --json


def test_run_failure_exits_1_with_the_error(cli: Invoke, project: Path, client: Client) -> None:
    _write(project)
    result = cli("run", "train", "-p", "fail=true")
    assert result.exit_code == 1
    assert "… fit  RuntimeError: the fit diverged; retry 1/1 in 0s" in result.stdout
    assert "✗ fit  RuntimeError: the fit diverged" in result.stdout
    assert "Pipeline run: FAILED" in result.stdout
    assert client.models.list() == []


def test_bad_params_are_refused_before_anything_runs(cli: Invoke, project: Path, client: Client) -> None:
    _write(project)
    result = cli("run", "train", "-p", "rows=lots", "-p", "colour=red")
    assert result.exit_code == 1
    assert "parameter 'rows' expects an integer, got 'lots'" in result.stderr
    assert "'colour' is not a parameter of pipeline 'train'" in result.stderr
    assert client.runs.list() == []
    missing = cli("run", "tran")
    assert missing.exit_code == 1 and "Did you mean 'train'?" in missing.stderr
    malformed = cli("run", "train", "-p", "rows")
    assert malformed.exit_code == 1 and "is not NAME=VALUE" in malformed.stderr


def test_pipelines_list_and_show(cli: Invoke, project: Path) -> None:
    _write(project)
    listed = cli("pipelines", "list")
    assert listed.exit_code == 0, listed.output
    assert "train *" in listed.stdout and "cron 0 3 * * *" in listed.stdout
    assert cli("apply").exit_code == 0
    cli("run", "train")
    rows = json.loads(cli("pipelines", "list", "--json").stdout)
    assert rows[0]["name"] == "train" and rows[0]["registered"] and rows[0]["steps"] == ["load", "fit"]
    assert rows[0]["last_run"]["status"] == "FINISHED" and rows[0]["last_run"]["outcome"] == "registered"

    shown = cli("pipelines", "show", "train")
    assert shown.exit_code == 0, shown.output
    assert "Train the toy model." in shown.stdout
    assert "rows: int = 10, fail: bool = False" in shown.stdout
    assert "fit   load   1        1m00s" in shown.stdout  # after, retries, timeout
    run_id = rows[0]["last_run"]["id"]
    assert run_id in shown.stdout

    detail = cli("pipelines", "show", run_id)
    assert detail.exit_code == 0, detail.output
    lines = detail.stdout.splitlines()
    assert next(x for x in lines if x.startswith("load ")).split()[:4] == ["load", "finished", "miss", "1"]
    assert next(x for x in lines if x.startswith("fit ")).split()[:4] == ["fit", "finished", "miss", "1"]
    assert "auc >= 0.8  pass" in detail.stdout
    assert "Outcome: registered" in detail.stdout
    as_json = json.loads(cli("pipelines", "show", run_id, "--json").stdout)
    assert as_json["outcome"]["model"] == "train/1"
    assert [s["status"] for s in as_json["steps"]] == ["finished", "finished"]
    assert max(len(line) for line in detail.stdout.splitlines()) <= 100

    # 'gyre runs show' gives a pipeline run's steps, gates and outcome too.
    via_runs = cli("runs", "show", run_id)
    assert via_runs.exit_code == 0, via_runs.output
    lines = via_runs.stdout.splitlines()
    assert next(x for x in lines if x.startswith("fit ")).split()[:4] == ["fit", "finished", "miss", "1"]
    assert "auc >= 0.8  pass" in via_runs.stdout and "Outcome: registered" in via_runs.stdout
    assert "gyre.gates" not in via_runs.stdout  # shown as the Gates table, not as a raw tag
    assert max(len(line) for line in lines) <= 100
    runs_json = json.loads(cli("runs", "show", run_id, "--json").stdout)
    assert runs_json["pipeline"]["outcome"]["decision"] == "registered"
    assert [s["attempts"] for s in runs_json["pipeline"]["steps"]] == [1, 1]
    step_json = json.loads(cli("runs", "show", runs_json["pipeline"]["steps"][0]["run_id"], "--json").stdout)
    assert "pipeline" not in step_json  # a step's run is shown as a plain run

    nothing = cli("pipelines", "show", "nope")
    assert (
        nothing.exit_code == 1 and "neither a pipeline of this project nor a pipeline run" in nothing.stderr
    )


def test_show_marks_skipped_and_failed_steps(cli: Invoke, project: Path) -> None:
    _write(project)
    cli("run", "train", "-p", "fail=true")
    run_id = json.loads(cli("pipelines", "show", "train", "--json").stdout)["runs"][0]["id"]
    detail = json.loads(cli("pipelines", "show", run_id, "--json").stdout)
    assert [(s["step"], s["status"]) for s in detail["steps"]] == [("load", "finished"), ("fit", "failed")]
    assert detail["steps"][1]["error"] == "RuntimeError: the fit diverged"


def test_models_approve_and_reject(cli: Invoke, project: Path, client: Client) -> None:
    _write(project, review=True)
    held = cli("run", "train")
    assert held.exit_code == 0, held.output
    assert "Outcome: held" in held.stdout and "gyre models approve train 1" in held.stdout
    # A held version is not what models:/train/latest means until it is approved.
    assert client.models.get_version("train", 1).status == "pending_review"
    with pytest.raises(NotFound, match="held for review"):
        client.models.resolve("models:/train/latest")
    approved = cli("models", "approve", "train", "1", "--reason", "checked")
    assert approved.exit_code == 0, approved.output
    assert "Approved train version 1: it is now the challenger" in approved.stdout
    assert client.models.get("train").aliases == {"challenger": 1}
    again = cli("models", "reject", "train", "1")
    assert again.exit_code == 1 and "already approved (checked)" in again.stderr

    assert client.models.resolve("models:/train/latest").version == 1

    cli("run", "train", "-p", "rows=12")
    assert client.models.resolve("models:/train/latest").version == 1  # v2 waits for review
    rejected = cli("models", "reject", "train", "2", "-r", "not now")
    assert rejected.exit_code == 0 and "Rejected train version 2" in rejected.stdout
    assert client.models.get("train").aliases == {"challenger": 1}
    assert client.models.get_version("train", 2).status == "rejected"
    assert client.models.resolve("models:/train/latest").version == 1
    assert client.models.resolve("models:/train/2").version == 2  # still loadable by number


HELPERS = """
import gyre


def double(values):
    return [v * 2 for v in values]


@gyre.step
def doubled(rows: int) -> list:
    return double(list(range(rows)))


@gyre.pipeline(name="helpers")
def helpers(rows: int = 3):
    return {"data": doubled(rows)}
"""


def test_steps_call_plain_functions_of_the_definitions_module(cli: Invoke, project: Path) -> None:
    """A step runs in a worker process; the module-level helper it calls comes along."""
    (project / "definitions.py").write_text(HELPERS)
    result = cli("run", "helpers", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "FINISHED"
