"""An endpoint with online features: looked up by the request's entity keys, on-demand features
computed from request values, defaults for unknown entities or a 404 naming them, all logged."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gyre.client.client import Client
from gyre.config import Settings
from gyre.data.ingest import ingest_files
from gyre.project import apply, project_definitions

from .conftest import AppClient, lake_rows, register

DEFINITIONS = """
import gyre

payments = gyre.Dataset("payments", keys=["payment_id"], event_time="ts")
user = gyre.Entity("user", join_keys=["user_id"])

user_activity = gyre.FeatureView(
    "user_activity", entity=user, source=payments,
    features=[
        gyre.Field("last_amount", column="amount"),
        gyre.Aggregate("payment_id", "count", window="1d", name="payments_1d"),
    ],
)


@gyre.on_demand(view="risk", inputs=["amount", "user_activity:last_amount"], dtype="double")
def amount_vs_last(amount, last_amount):
    return amount / last_amount if last_amount else 0.0


FEATURES = ["user_activity:last_amount", "user_activity:payments_1d", "risk:amount_vs_last"]
scored = gyre.Endpoint("scored", model="risk@champion", features=FEATURES, defaults={"last_amount": -1.0})
strict = gyre.Endpoint("strict", model="risk@champion", features=FEATURES, unknown_entity="error")
"""

MODEL_COLUMNS = ["amount", "last_amount", "payments_1d", "amount_vs_last"]
WEIGHTS = np.array([1.0, 10.0, 100.0, 1000.0])


class WeightedSum:
    """A model whose answer shows every input: amount + 10 last + 100 count + 1000 ratio."""

    def predict(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=float) @ WEIGHTS


@pytest.fixture
def featured(project: Path, client: Client) -> Client:
    """Users 1 (payments of 10 then 40) and 2 (one of 25), materialized; model and endpoints."""
    (project / "definitions.py").write_text(DEFINITIONS)
    sys.modules.pop("gyre_project.definitions", None)
    meta = client.backend.meta  # type: ignore[attr-defined]
    apply(meta, project_definitions(client.settings))
    now = datetime.now(UTC)
    table = pa.table(
        {
            "payment_id": ["p1", "p2", "p3"],
            "user_id": [1, 1, 2],
            "amount": [10.0, 40.0, 25.0],
            "ts": [now - timedelta(minutes=30), now - timedelta(minutes=5), now - timedelta(minutes=10)],
        }
    )
    pq.write_table(table, project / "payments.parquet")
    result = ingest_files(
        meta,
        client.features.lake,
        client.backend.store,
        "payments",
        [str(project / "payments.parquet")],  # type: ignore[attr-defined]
    )
    assert result.accepted, result.report.to_dict()
    client.features.materialize()
    example = pd.DataFrame([[1.0, 2.0, 3.0, 4.0]], columns=MODEL_COLUMNS)
    register(client, WeightedSum(), "risk", example)
    return client


def test_features_are_looked_up_and_on_demand_ones_computed(
    featured: Client, start_app: Callable[..., AppClient], settings: Settings
) -> None:
    app = start_app()
    described = app.get("/v1/endpoints/scored").json()
    assert [(f["name"], f["kind"]) for f in described["inputs"]] == [("amount", "number"), ("user_id", "key")]
    assert described["runs_inline"] is False  # on-demand features are project code, of unknown cost

    r = app.post(
        "/v1/endpoints/scored/predict",
        json={"rows": [{"user_id": 1, "amount": 80.0}, {"user_id": 2, "amount": 50.0}]},
    )
    assert r.status_code == 200, r.text
    # user 1: last 40, 2 payments, ratio 2; user 2: last 25, 1 payment, ratio 2
    assert r.json()["predictions"] == pytest.approx([80 + 400 + 200 + 2000, 50 + 250 + 100 + 2000])

    unknown = app.post("/v1/endpoints/scored/predict", json={"row": {"user_id": 999, "amount": 80.0}})
    # defaults: last_amount -1 as declared; the count of no payments is 0; the ratio's own rule gives 0
    assert unknown.json()["predictions"] == pytest.approx([80 - 10])

    strict = app.post(
        "/v1/endpoints/strict/predict",
        json={"rows": [{"user_id": 1, "amount": 1.0}, {"user_id": 999, "amount": 1.0}]},
    )
    assert strict.status_code == 404
    assert strict.json()["error"] == "unknown_entity" and strict.json()["entity"] == {"user_id": 999}
    assert "Unknown entity user_id=999" in strict.json()["message"]
    known = app.post("/v1/endpoints/strict/predict", json={"row": {"user_id": 2, "amount": 50.0}})
    assert known.status_code == 200
    # Without declared defaults the feature columns are filled in one conversion: same numbers.
    both = {"rows": [{"user_id": 1, "amount": 80.0}, {"user_id": 2, "amount": 50.0}]}
    assert (
        app.post("/v1/endpoints/strict/predict", json=both).json()["predictions"] == r.json()["predictions"]
    )

    # Concurrent requests with one unknown entity: only that one is refused.
    bodies = [{"row": {"user_id": u, "amount": 5.0}} for u in (1, 2, 999, 1)]
    statuses = [x.status_code for x in app.post_many("/v1/endpoints/strict/predict", bodies)]
    assert statuses == [200, 200, 404, 200]

    missing_key = app.post("/v1/endpoints/scored/predict", json={"row": {"amount": 1.0}})
    assert missing_key.status_code == 422
    assert missing_key.json()["fields"] == {
        "user_id": "missing (expected an entity key (a string or an integer))"
    }

    app.app.state.push.flush()
    logged = {r["prediction_id"]: r for r in lake_rows(settings)}
    first = logged[r.json()["prediction_ids"][0]]
    assert json.loads(first["entity"]) == {"user_id": 1}
    assert json.loads(first["features"]) == {
        "user_activity__last_amount": 40.0,
        "user_activity__payments_1d": 2,
        "risk__amount_vs_last": 2.0,
    }
    assert json.loads(first["inputs"]) == {"amount": 80.0, "user_id": 1}
    assert len(logged) == 2 + 1 + 1 + 2 + 3  # refused requests are not logged


def test_a_canary_keeps_each_entity_on_one_side(
    featured: Client, settings: Settings, start_app: Callable[..., AppClient]
) -> None:
    """With entity keys, a canary's assignment is sticky: every request of a user goes to the
    same version, and the share of users on the candidate follows the weight."""
    from gyre.deploy import rollout
    from gyre.serving.routing import BUCKETS, bucket

    example = pd.DataFrame([[1.0, 2.0, 3.0, 4.0]], columns=MODEL_COLUMNS)
    v2 = register(featured, WeightedSum(), "risk", example, alias="challenger")
    meta = featured.backend.meta  # type: ignore[attr-defined]
    store = featured.backend.store  # type: ignore[attr-defined]
    rollout.start(meta, store, "scored", "risk@challenger", cache_dir=settings.root / "c", steps=[40, 100])
    app = start_app()
    app.serving.sync()
    users = list(range(1, 61))
    seen: dict[int, set[int]] = {u: set() for u in users}
    bodies = [{"row": {"user_id": u, "amount": 5.0}} for u in users]
    for _ in range(3):
        for r, u in zip(app.post_many("/v1/endpoints/scored/predict", bodies), users, strict=True):
            assert r.status_code == 200, r.text
            seen[u].add(r.json()["model_version"])
    assert all(len(versions) == 1 for versions in seen.values())
    # The routing key is the user id as the request carried it; its bucket decides the side.
    expected = {u for u in users if bucket((u,)) < 40 * BUCKETS / 100}
    assert {u for u, versions in seen.items() if versions == {v2}} == expected


def test_only_in_process_lookups_without_project_code_run_inline(featured: Client) -> None:
    """A SQLite read is microseconds of local work; a Redis read is a network round trip and an
    on-demand feature runs project code: those batches leave the event loop."""
    from gyre.features.online.redis import RedisOnlineStore

    store = featured.features
    looked_up = ["user_activity:last_amount", "user_activity:payments_1d"]
    assert store.lookup(looked_up).in_process is True
    assert store.lookup([*looked_up, "risk:amount_vs_last"]).in_process is False
    assert "in_process" not in RedisOnlineStore.capabilities
