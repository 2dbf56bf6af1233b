"""``gyre demo --fast`` end to end, as CI runs it: the loop closes with nobody pressing a button.

One real run (server over HTTP, controller, pipeline worker processes, feedback route), then
what it left in the project is checked against the issue's list: the drift was detected, the
retrain was started by that alert, the challenger passed its gates, the canary promoted it
(deployment promoted, champion alias moved), the new champion scores post-drift traffic
better than the old one did, and its lineage reaches the dataset versions and the alert.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gyre.client.client import connect
from gyre.config import load_settings
from gyre.data import catalog
from gyre.deploy.records import list_deployments
from gyre.monitoring.engine import alert_history

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    pytest.importorskip("lightgbm")
    folder = tmp_path_factory.mktemp("demo") / "project"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GYRE_")}
    done = subprocess.run(
        [sys.executable, "-m", "gyre.cli.main", "demo", "--fast", "--json", "--dir", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return folder, json.loads(done.stdout)


def test_the_loop_closes_by_itself(demo: tuple[Path, dict[str, Any]]) -> None:
    folder, summary = demo
    settings = load_settings(folder)
    client = connect(settings=settings)
    meta = client.backend.meta  # type: ignore[attr-defined]
    try:
        # Drift detected: an alert of the drift rule, with the features that drifted.
        alert = summary["alert"]
        assert alert["rule"] == "fraud_drift" and summary["drifted_features"]
        assert summary["seconds_to_detection"] > 0
        fired = [a for a in alert_history(meta, rule="fraud_drift") if a.status == "firing"]
        assert alert["alert_id"] in {a.id for a in fired}

        # The retrain was started by that alert, and says so.
        run = client.runs.get(summary["retrain"]["run_id"])
        assert run.tags["gyre.pipeline"] == "train_fraud"
        assert run.tags["gyre.pipeline.trigger"] == "alert"
        assert run.tags["gyre.alert_id"] == alert["alert_id"]
        assert "fraud_drift" in run.tags["gyre.pipeline.reason"]

        # The challenger passed every gate, including beating the champion it replaced.
        assert run.status == "FINISHED" and run.tags["gyre.outcome"] == "registered"
        gates = json.loads(run.tags["gyre.gates"])
        assert len(gates) == 3 and all(g["passed"] for g in gates)
        beats = next(g for g in gates if g["gate"].startswith("auc beats champion"))
        assert beats["details"]["candidate"] > beats["details"]["champion"]

        # The canary promoted it: the deployment ended promoted and the champion alias moved.
        first, new = summary["models"]["first"], summary["models"]["retrained"]
        assert run.tags["gyre.model"] == f"fraud/{new}" and new > first
        [deployment] = [d for d in list_deployments(meta, "fraud") if d.candidate_version == new]
        assert (deployment.state, deployment.strategy, deployment.baseline_version) == (
            "promoted",
            "canary",
            first,
        )
        assert [h["action"] for h in deployment.history][-1] == "promoted"
        assert client.models.resolve("models:/fraud@champion").version == new
        assert summary["deployment"]["id"] == deployment.id

        # Post-drift traffic: the new champion scores it better than the old one did.
        assert summary["auc_after_promotion"] > summary["auc_during_drift"]
        assert summary["auc_before_drift"] > summary["auc_during_drift"]
        windows = summary["windows"]
        assert windows["during_drift"]["version"] == first and windows["after_promotion"]["version"] == new
        assert windows["after_promotion"]["frauds"] > 0 and windows["during_drift"]["frauds"] > 0

        # Lineage: the new champion -> the dataset versions it was trained on, and the alert.
        version = client.models.get_version("fraud", new)
        assert version.run_id == run.id
        assert set(version.dataset_versions) == {"payments", "labels"}
        for dataset, v in version.dataset_versions.items():
            assert v > 0  # read after live traffic added to the ingested history (version 0)
            assert catalog.get_version(meta, dataset, v).version == v

        # Every figure is measured: served answers were all logged, and labels came back.
        assert summary["requests_served"] > 0 and summary["requests_failed"] == 0
        assert summary["predictions_logged"] == summary["requests_served"]
        assert 0 < summary["labels_fed_back"] <= summary["predictions_logged"]
    finally:
        client.close()
    assert (folder / "definitions.py").is_file() and (folder / "gyre.toml").is_file()  # left for 'gyre up'
