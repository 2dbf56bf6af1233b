"""``gyre reproduce``: a pipeline run again on the dataset versions it read, compared metric by metric.

A deterministic scikit-learn pipeline trains on a lake dataset; the dataset then gets a new
version with other rows. The reproduction must read the old version (identical metrics),
while an ordinary run reads the new one (the step cache does not serve the old data).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import Result

from gyre.client.client import Client
from gyre.errors import InvalidArgument, NotFound
from gyre.pipelines.reproduce import reproduce
from gyre.project import project_definitions

Invoke = Callable[..., Result]
T0 = datetime(2024, 1, 1, tzinfo=UTC)

DEFINITIONS = """
import gyre
from gyre.pipelines import current_step, read_dataset

payments = gyre.Dataset("payments", keys=["payment_id"], event_time="ts")
user = gyre.Entity("user", join_keys=["user_id"])
activity = gyre.FeatureView(
    "activity", entity=user, source=payments, ttl="30d",
    features=[gyre.Aggregate("amount", "sum", window="30d"), gyre.Aggregate("amount", "count", window="30d")],
)


@gyre.step
def load():
    return read_dataset("payments", columns=["amount", "ts", "is_fraud"]).to_pandas()


@gyre.step
def fit(df, c: float):
    from sklearn.linear_model import LogisticRegression

    X = df[["amount"]].assign(hour=df["ts"].dt.hour)
    model = LogisticRegression(C=c, max_iter=500).fit(X, df["is_fraud"])
    current_step().log_metrics({"accuracy": model.score(X, df["is_fraud"]), "rows": len(df)})
    return model


@gyre.pipeline(name="train")
def train(c: float = 1.0):
    return {"model": fit(load(), c)}


@gyre.step
def user_features(at: str):
    import pandas as pd
    import pyarrow as pa

    users = pa.table({"user_id": list(range(20)), "event_timestamp": [pd.Timestamp(at)] * 20})
    ts = gyre.connect().get_training_set(users, ["activity:amount_sum_30d", "activity:amount_count_30d"])
    frame = ts.to_pandas()
    current_step().log_metric("payments_seen", float(frame["amount_count_30d"].sum()))
    return frame


@gyre.pipeline(name="features_only")
def features_only(at: str = "2024-01-03T00:00:00+00:00"):
    return user_features(at)
"""


@pytest.fixture
def project_client(define: Callable[[str], Client]) -> Client:
    return define(DEFINITIONS)


def _day(seed: int, day: int, rows: int = 300) -> pa.Table:
    """Payments of one day: large amounts at night are mostly fraud (a learnable, noisy rule)."""
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 60.0, rows).round(2)
    ts = [T0 + timedelta(days=day, seconds=int(s)) for s in np.sort(rng.integers(0, 86_400, rows))]
    night = np.array([t.hour < 6 for t in ts])
    fraud = ((amount > 150) & night) ^ (rng.random(rows) < 0.05)
    return pa.table(
        {
            "payment_id": [f"p-{day}-{i}" for i in range(rows)],
            "user_id": rng.integers(0, 20, rows),
            "amount": amount,
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "is_fraud": fraud,
        }
    )


def _find(client: Client) -> Callable[[str], object]:
    def find(name: str) -> object:
        return project_definitions(client.settings).get("pipeline", name)

    return find


def test_reproduction_reads_the_pinned_version_and_matches(
    cli: Invoke, project: Path, project_client: Client, ingest_table: Callable[..., int]
) -> None:
    client = project_client
    ingest_table(_day(1, 0), "day0")
    first = cli("run", "train", "-p", "c=0.5", "--json")
    assert first.exit_code == 0, first.output
    original = json.loads(first.stdout)
    original_run = client.runs.get(original["run_id"])
    assert original_run.tags["gyre.dataset.payments"] == "0"
    assert client.models.get("train").aliases == {"challenger": 1}

    assert ingest_table(_day(2, 1), "day1") == 1  # the dataset moves on

    # An ordinary run reads the new version: its cached 'load' output is stale, not reused.
    fresh = json.loads(cli("run", "train", "-p", "c=0.5", "--json").stdout)
    assert [(s["name"], s["status"]) for s in fresh["steps"]] == [("load", "finished"), ("fit", "finished")]
    fresh_run = client.runs.get(fresh["run_id"])
    assert fresh_run.tags["gyre.dataset.payments"] == "1"
    assert fresh_run.metrics["rows"] > original_run.metrics["rows"]
    versions_before = [v.version for v in client.models.versions("train")]

    result = cli("reproduce", original["run_id"], "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["identical"] and report["status"] == "FINISHED" and not report["code_changed"]
    assert report["datasets"] == [{"dataset": "payments", "pinned": 0, "read": 0}]
    assert report["params"] == {"c": 0.5}
    by_metric = {m["metric"]: m for m in report["metrics"]}
    assert set(by_metric) == {"accuracy", "rows"}
    assert by_metric["rows"]["original"] == by_metric["rows"]["reproduced"] == original_run.metrics["rows"]
    assert all(m["diff"] == 0.0 and m["same"] for m in report["metrics"])
    assert all(s["same_output"] and not s["code_changed"] for s in report["steps"])

    again = client.runs.get(report["run_id"])
    assert again.tags["gyre.reproduces"] == original["run_id"]
    assert again.tags["gyre.pipeline.trigger"] == "reproduce"
    assert again.tags["gyre.outcome"] == "not_registered" and "gyre.model" not in again.tags
    steps = client.runs.list(parent_run_id=again.id)
    assert {s.tags["gyre.cache"] for s in steps} == {"off"}  # every step ran again
    # Nothing registered, no alias moved.
    assert [v.version for v in client.models.versions("train")] == versions_before
    assert client.models.get("train").aliases == {"challenger": versions_before[0]}

    table = cli("reproduce", original["run_id"])
    assert table.exit_code == 0, table.output
    assert "Identical: every metric matches." in table.stdout
    assert "payments  0       0" in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 100


def test_a_step_run_id_reproduces_its_pipeline_run_and_code_changes_are_reported(
    cli: Invoke, project: Path, project_client: Client, ingest_table: Callable[..., int]
) -> None:
    client = project_client
    ingest_table(_day(1, 0), "day0")
    run = json.loads(cli("run", "train", "--json").stdout)
    fit_run = next(s["run_id"] for s in run["steps"] if s["name"] == "fit")

    edited = DEFINITIONS.replace("max_iter=500", "max_iter=400")  # same fit, other code
    (project / "definitions.py").write_text(edited)
    sys.modules.pop("gyre_project.definitions", None)
    result = reproduce(client, fit_run, _find(client))  # type: ignore[arg-type]
    assert result.original.id == run["run_id"]
    assert result.identical() and result.code_changed
    assert [s.step for s in result.steps if s.code_changed] == ["fit"]
    assert "step(s) fit now have another code hash" in result.notes[0]

    shown = cli("reproduce", fit_run)
    assert shown.exit_code == 0, shown.output
    assert "Steps that differ" in shown.stdout and "changed" in shown.stdout
    assert "note: The code changed since the original run" in shown.stdout


def test_the_feature_store_path_is_pinned_too(
    cli: Invoke, project: Path, project_client: Client, ingest_table: Callable[..., int]
) -> None:
    client = project_client
    ingest_table(_day(1, 0), "day0")
    run = json.loads(cli("run", "features_only", "--json").stdout)
    original = client.runs.get(run["run_id"])
    assert original.tags["gyre.dataset.payments"] == "0"  # read inside the step, recorded
    ingest_table(_day(2, 1), "day1")
    result = reproduce(client, run["run_id"], _find(client))  # type: ignore[arg-type]
    assert result.read == {"payments": 0} and result.identical()
    fresh = json.loads(cli("run", "features_only", "--json").stdout)
    assert client.runs.get(fresh["run_id"]).metrics["payments_seen"] > original.metrics["payments_seen"]


def test_a_vacuumed_version_stops_the_reproduction_before_it_starts(
    cli: Invoke, project: Path, project_client: Client, ingest_table: Callable[..., int]
) -> None:
    from deltalake import DeltaTable, write_deltalake

    client = project_client
    ingest_table(_day(1, 0), "day0")
    run = json.loads(cli("run", "train", "--json").stdout)
    lake = client.features.lake
    # Someone rewrites the table and vacuums it with Delta's own tools: version 0's files go.
    write_deltalake(lake.table_uri("payments"), _day(3, 2), mode="overwrite")
    DeltaTable(lake.table_uri("payments")).vacuum(
        retention_hours=0, enforce_retention_duration=False, dry_run=False
    )
    runs_before = len(client.runs.list())
    result = cli("reproduce", run["run_id"])
    assert result.exit_code == 1
    assert "dataset 'payments' version 0 was vacuumed" in result.stderr
    assert "none was started" in result.stderr
    assert len(client.runs.list()) == runs_before
    with pytest.raises(NotFound, match="was vacuumed"):
        reproduce(client, run["run_id"], _find(client))  # type: ignore[arg-type]


def test_runs_not_made_by_a_pipeline_are_refused_with_their_pins(project_client: Client) -> None:
    client = project_client
    with client.start_run("notebook", capture_environment=False) as run:
        run.log_dataset_versions({"payments": 3})
    with pytest.raises(InvalidArgument, match=r"not made by a pipeline.*versions=\{'payments': 3\}"):
        reproduce(client, run.id, _find(client))  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="does not exist"):
        reproduce(client, "01NOSUCHRUN0000000000000000", _find(client))  # type: ignore[arg-type]
