"""The controller's own reactions: the monitors schedule evaluates alert rules and fires alerts."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from gyre.client.client import Client
from gyre.controller import Controller
from gyre.controller.builtin import default_reactions, default_schedules
from gyre.meta.schema import Event
from gyre.monitoring.engine import AlertEngine
from gyre.project import apply, project_definitions

DEFINITIONS = """
import gyre
from gyre.monitoring.alerts import FeatureViewStale

payments = gyre.Dataset("payments", keys=["payment_id"], event_time="ts")
user = gyre.Entity("user", join_keys=["user_id"])
user_activity = gyre.FeatureView(
    "user_activity", entity=user, source=payments, max_lag="1h",
    features=[gyre.Aggregate("amount", "sum", window="1h")],
)
stale = gyre.AlertRule("features_stale", condition=FeatureViewStale())
"""


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_the_monitors_schedule_fires_alerts(project: Path, client: Client) -> None:
    (project / "definitions.py").write_text(DEFINITIONS)
    sys.modules.pop("gyre_project.definitions", None)
    meta = client.backend.meta  # type: ignore[attr-defined]
    apply(meta, project_definitions(client.settings))
    engine = AlertEngine(meta, client.features.lake, client.backend.blobs, features=client.features)
    clock = Clock()
    controller = Controller(
        meta,
        default_reactions(client.features, engine),
        schedules=default_schedules(timedelta(minutes=1)),
        clock=clock,
    )
    try:
        controller.run_once()  # the schedule starts now
        clock.now += timedelta(minutes=2)
        controller.run_once()  # fires the schedule event; the reaction evaluates the rules
        controller.run_once()
    finally:
        engine.close(timeout=5)
    with meta.read() as s:
        fired = [e for e in s.scalars(select(Event).where(Event.type == "alert.fired"))]
    assert len(fired) == 1 and fired[0].subject == "alert:features_stale"
    assert "user_activity" in str(fired[0].payload)
