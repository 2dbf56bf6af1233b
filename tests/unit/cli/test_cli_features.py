"""gyre apply, gyre features list | show | materialize, gyre controller on a temporary project."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from gyre.demo import PaymentsConfig, PaymentsGenerator

DEFINITIONS = """
import gyre

payments = gyre.Dataset("payments", keys=["payment_id"], event_time="ts")
user = gyre.Entity("user", join_keys=["user_id"])
user_activity = gyre.FeatureView(
    "user_activity", entity=user, source=payments, ttl="7d", owner="risk",
    features=[gyre.Field("country"), gyre.Aggregate("amount", "sum", window="{window}")],
)
"""


def _write(project: Path, window: str = "1h") -> None:
    (project / "definitions.py").write_text(DEFINITIONS.replace("{window}", window))
    sys.modules.pop("gyre_project.definitions", None)


def test_apply_plans_applies_and_is_idempotent(cli, project: Path) -> None:  # type: ignore[no-untyped-def]
    _write(project)
    plan = json.loads(cli("apply", "--dry-run", "--json").stdout)
    assert not plan["applied"]
    assert [(c["action"], c["kind"], c["name"]) for c in plan["changes"]] == [
        ("create", "dataset", "payments"),
        ("create", "entity", "user"),
        ("create", "feature_view", "user_activity"),
    ]
    assert json.loads(cli("features", "list", "--json").stdout) == []  # the dry run wrote nothing

    applied = cli("apply")
    assert applied.exit_code == 0 and "Applied: 3 created, 0 updated, 0 deleted." in applied.stdout
    assert "Nothing to change" in cli("apply").stdout

    _write(project, window="2h")
    changed = cli("apply")
    assert "~ feature view user_activity (features)" in changed.stdout

    views = json.loads(cli("features", "list", "--json").stdout)
    assert views == [
        {
            "view": "user_activity",
            "entity": "user",
            "source": "payments",
            "features": ["country", "amount_sum_2h"],
            "stale": False,
        }
    ]
    shown = cli("features", "show", "user_activity")
    assert "amount_sum_2h" in shown.stdout and "never materialized" in shown.stdout and "risk" in shown.stdout


def test_apply_reports_problems_without_a_traceback(cli, project: Path) -> None:  # type: ignore[no-untyped-def]
    (project / "definitions.py").write_text("import gyre\nx = gyre.Entity('user', join_keys=[])\n")
    sys.modules.pop("gyre_project.definitions", None)
    result = cli("apply")
    assert result.exit_code == 1
    assert "definitions.py failed" in result.stderr and "join_keys" in result.stderr
    assert "Traceback" not in result.stderr
    missing = cli("features", "show", "nope")
    assert missing.exit_code == 1 and "run 'gyre apply'" in missing.stderr


def test_materialize_and_the_controller(cli, project: Path) -> None:  # type: ignore[no-untyped-def]
    _write(project)
    assert cli("apply").exit_code == 0
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    table = PaymentsGenerator(PaymentsConfig(seed=1, n_users=20, payments_per_hour=50)).history(
        t0, t0 + timedelta(hours=3)
    )
    pq.write_table(table, project / "p.parquet")
    assert cli("ingest", "payments", str(project / "p.parquet")).exit_code == 0

    result = json.loads(cli("features", "materialize", "--json").stdout)
    assert result["user_activity"]["version"] == 0 and result["user_activity"]["rows"] == table.num_rows
    assert "dataset version 0" in cli("features", "show", "user_activity").stdout

    once = cli("controller", "--once")
    assert once.exit_code == 0 and "Handled" in once.stdout
    status = json.loads(cli("controller", "status", "--json").stdout)
    assert status["reactions"][0]["name"] == "features.materialize" and status["dead_letters"] == []
