"""Feature freshness reaches Prometheus: GET /metrics on a live server."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from gyre.client.client import Client
from gyre.data.lake import Lake
from gyre.demo import PaymentsConfig, PaymentsGenerator
from gyre.project import apply, project_definitions

pytestmark = pytest.mark.integration

DEFINITIONS = """
import gyre

payments = gyre.Dataset("payments", keys=["payment_id"], event_time="ts")
user = gyre.Entity("user", join_keys=["user_id"])
user_activity = gyre.FeatureView(
    "user_activity", entity=user, source=payments, max_lag="1h",
    features=[gyre.Aggregate("amount", "sum", window="1h")],
)
"""


def test_metrics_report_feature_freshness(project: Path, client: Client, server) -> None:  # type: ignore[no-untyped-def]
    (project / "definitions.py").write_text(DEFINITIONS)
    sys.modules.pop("gyre_project.definitions", None)
    meta = client.backend.meta  # type: ignore[attr-defined]
    apply(meta, project_definitions(client.settings))
    t0 = datetime(2024, 1, 1, 12, tzinfo=UTC)
    history = PaymentsGenerator(PaymentsConfig(seed=1, n_users=5, payments_per_hour=20)).history(
        t0, t0 + timedelta(hours=2)
    )
    from gyre.data import catalog

    lake = Lake(client.settings.store_url)
    version = lake.append("payments", history)
    columns, digest = catalog.describe_schema(history.schema)
    catalog.record_version(
        meta,
        "payments",
        version,
        rows=history.num_rows,
        bytes=1,
        schema=columns,
        schema_hash=digest,
        source="test",
        max_event_time=t0 + timedelta(hours=2),
    )
    before = httpx.get(f"{server.url}/metrics").text
    assert 'gyre_feature_view_versions_behind{view="user_activity"} 1.0' in before
    assert 'gyre_feature_view_stale{view="user_activity"} 1.0' in before  # never materialized

    client.features.materialize()
    fresh = client.features.freshness()[0]
    assert fresh.materialized_version == version and fresh.stale  # its newest event is from 2024
    after = httpx.get(f"{server.url}/metrics").text
    assert 'gyre_feature_view_versions_behind{view="user_activity"} 0.0' in after
    assert 'gyre_feature_view_lag_seconds{view="user_activity"}' in after

    current = client.features.freshness(now=t0 + timedelta(hours=2, minutes=30))[0]
    assert current.lag_s == pytest.approx(1800) and not current.stale
