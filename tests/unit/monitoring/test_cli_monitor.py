"""gyre monitor drift | quality | status | alerts | check and gyre feedback ingest, on a
temporary project whose prediction log is written directly."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import Result
from ulid import ULID

from gyre.config import Settings
from gyre.data.lake import Lake
from gyre.meta import MetaStore
from gyre.models import registry
from gyre.monitoring.reference import record_reference
from gyre.store import ArtifactStore

from .conftest import score, training_frame

Invoke = Callable[..., Result]

DEFINITIONS = """
import gyre
from gyre.monitoring import DriftedFeatures, RunPipeline

fraud_monitor = gyre.Monitor("fraud", window="1h", task="binary")
fraud_drift = gyre.AlertRule(
    "fraud_drift", endpoint="fraud", condition=DriftedFeatures(at_least=1),
    actions=["log", RunPipeline("train_fraud")],
)
"""


@pytest.fixture
def cli(cli: Invoke) -> Invoke:
    """The CLI at 160 columns, so wide tables stay on one line."""
    return lambda *args: cli(*args, env={"COLUMNS": "160"})


@pytest.fixture
def served(settings: Settings) -> list[str]:
    """Model 'fraud' v1 with a reference, and 1,500 drifted predictions in the last hour;
    returns their ids."""
    meta = MetaStore(settings.metadata_url)
    try:
        version = registry.create_model_version(
            meta, "fraud", package_digest="0" * 64, flavor="sklearn"
        ).version
        train = training_frame(np.random.default_rng(0), 5000)
        record_reference(
            meta, ArtifactStore(settings.store_url), "fraud", version, data=train, predictions=score(train)
        )
    finally:
        meta.close()
    n = 1500
    cols = training_frame(np.random.default_rng(1), n, shift=0.6)
    start = datetime.now(UTC) - timedelta(minutes=30)
    times = [start + timedelta(milliseconds=100 * i) for i in range(n)]
    ids = [str(ULID.from_datetime(t)) for t in times]
    features = [
        json.dumps({"user__amount": float(a), "user__hour": int(h), "user__country": str(c)})
        for a, h, c in zip(cols["amount"], cols["hour"], cols["country"], strict=True)
    ]
    table = pa.table(
        {
            "prediction_id": ids,
            "time": pa.array(times, pa.timestamp("us", "UTC")),
            "endpoint": ["fraud"] * n,
            "model": ["fraud"] * n,
            "model_version": pa.array([version] * n, pa.int64()),
            "features": features,
            "output": [json.dumps(float(p)) for p in score(cols)],
            "latency_ms": pa.array([3.0] * n),
        }
    )
    Lake(settings.store_url).append("predictions", table)
    return ids


def test_monitor_drift_table_and_json(cli: Invoke, served: list[str]) -> None:
    shown = cli("monitor", "drift", "fraud", "--window", "1h")
    assert shown.exit_code == 0, shown.output
    assert "fraud: model fraud version 1" in shown.stdout and "1,500 predictions" in shown.stdout
    assert "amount" in shown.stdout and "drift" in shown.stdout
    assert "tested features drifted: amount" in shown.stdout
    [report] = json.loads(cli("monitor", "drift", "fraud", "--json", "--no-save").stdout)
    assert report["model_version"] == 1 and "amount" in report["drifted_features"]
    assert {r["feature"]: r["method"] for r in report["results"]}["country"] == "chi2"


def test_monitor_drift_errors(cli: Invoke, project: Path) -> None:
    result = cli("monitor", "drift")
    assert result.exit_code == 1 and "Name an endpoint" in result.stderr
    result = cli("monitor", "drift", "fraud")
    assert result.exit_code == 1 and "No prediction log yet" in result.stderr
    result = cli("monitor", "drift", "--dataset", "payments", "--from", "1")
    assert result.exit_code == 1 and "--from V1 and --to V2" in result.stderr
    result = cli("monitor", "drift", "fraud", "--window", "soon")
    assert result.exit_code == 1 and "not a duration" in result.stderr


def test_monitor_drift_between_dataset_versions(cli: Invoke, project: Path) -> None:
    rng = np.random.default_rng(2)
    for i, shift in enumerate([0.0, 1.0]):
        pq.write_table(pa.table(training_frame(rng, 1000, shift=shift)), project / f"p{i}.parquet")
        assert cli("ingest", "payments", str(project / f"p{i}.parquet")).exit_code == 0
    shown = cli("monitor", "drift", "--dataset", "payments", "--from", "0", "--to", "1")
    assert shown.exit_code == 0, shown.output
    assert "dataset payments: version 1 against version 0" in shown.stdout
    [report] = json.loads(
        cli("monitor", "drift", "--dataset", "payments", "--from", "0", "--to", "1", "--json").stdout
    )
    assert report["drifted_features"] == ["amount"]


def test_feedback_ingest_quality_status_alerts_and_check(
    cli: Invoke, served: list[str], project: Path
) -> None:
    labels = project / "labels.csv"
    labels.write_text(
        "prediction_id,label\n"
        + "".join(f"{pid},{i % 2}\n" for i, pid in enumerate(served[:400]))
        + "01J00000000000000000000000,1\n"
    )
    refused = cli("feedback", "ingest", str(labels))
    assert refused.exit_code == 1
    assert "1 of 401 feedback rows cannot be recorded; nothing was written" in refused.stderr
    taken = cli("feedback", "ingest", str(labels), "--skip-invalid")
    assert taken.exit_code == 0, taken.output
    assert "401 row(s): 400 recorded, 0 corrected, 0 already recorded, 1 skipped." in taken.stdout
    again = json.loads(cli("feedback", "ingest", str(labels), "--skip-invalid", "--json").stdout)
    assert (again["recorded"], again["unchanged"]) == (0, 400)
    exported = cli("feedback", "export", "fraud", str(project / "train.parquet"), "--window", "1d")
    assert "Wrote 400 labelled prediction(s) of fraud" in exported.stdout
    train = pq.read_table(project / "train.parquet")
    assert {"amount", "hour", "country", "prediction", "label"} <= set(train.column_names)

    [quality] = json.loads(cli("monitor", "quality", "fraud", "--window", "1h", "--json").stdout)
    assert (quality["predictions"], quality["labelled"], quality["task"]) == (1500, 400, "binary")
    assert quality["coverage"] == pytest.approx(400 / 1500)
    assert "auc" in cli("monitor", "quality", "fraud").stdout

    (project / "definitions.py").write_text(DEFINITIONS)
    sys.modules.pop("gyre_project.definitions", None)
    assert cli("apply").exit_code == 0
    checked = cli("monitor", "check")
    assert checked.exit_code == 0, checked.output
    assert "FIRING fraud_drift on endpoint:fraud" in checked.stdout
    assert "nothing changed" in cli("monitor", "check").stdout

    [firing] = json.loads(cli("monitor", "alerts", "--json").stdout)
    assert (firing["rule"], firing["status"]) == ("fraud_drift", "firing")
    history = cli("monitor", "alerts", "--history")
    assert "run_pipeline requested" in history.stdout

    [row] = json.loads(cli("monitor", "status", "--json").stdout)
    assert (row["endpoint"], row["model_version"], row["requests"]) == ("fraud", 1, 1500)
    assert "amount" in row["drifted"] and row["alerts"] == ["fraud_drift"]
    assert row["quality_metric"] == "auc" and row["labelled"] == 400
    table = cli("monitor", "status")
    assert "fraud_drift" in table.stdout and "auc" in table.stdout
