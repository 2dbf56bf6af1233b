"""Alert rules: conditions, one firing per incident, cooldown, resolution, history and the
events the controller acts on."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import select

from gyre.errors import InvalidArgument
from gyre.meta.schema import Event
from gyre.monitoring.alerts import (
    AlertRule,
    DriftedFeatures,
    ErrorRateAbove,
    FeatureViewStale,
    LatencyAbove,
    QualityBelow,
    Rollback,
    RunPipeline,
    Webhook,
)
from gyre.monitoring.engine import AlertEngine, Context, alert_history, list_alerts
from gyre.monitoring.feedback import ingest_feedback
from gyre.monitoring.reference import record_reference

from .conftest import NOW, Stores, register, score, training_frame


def _events(stores: Stores, kind: str) -> list[Event]:
    with stores.meta.read() as s:
        return list(s.scalars(select(Event).where(Event.type == kind).order_by(Event.seq)))


@pytest.fixture
def engine(stores: Stores) -> Any:
    e = AlertEngine(stores.meta, stores.lake, stores.blobs)
    yield e
    e.close(5)


@pytest.fixture
def model(stores: Stores) -> int:
    """Model 'fraud' version 1, with a reference recorded from its training data."""
    version = register(stores.meta)
    train = training_frame(np.random.default_rng(0), 5000)
    record_reference(stores.meta, stores.blobs, "fraud", version, data=train, predictions=score(train))
    return version


def _traffic(log_rows: Any, *, shift: float, at: Any, n: int = 2000) -> None:
    seed = int(at.timestamp()) % 10_000
    log_rows(training_frame(np.random.default_rng(seed), n, shift=shift), start=at)


def test_drift_alert_fires_once_resolves_and_respects_cooldown(
    stores: Stores, log_rows: Any, engine: Any, model: int
) -> None:
    rule = AlertRule(
        "fraud_drift",
        endpoint="fraud",
        condition=DriftedFeatures(at_least=2, window="1h"),
        actions=["log", RunPipeline("train_fraud", params={"reason": "drift"}), Rollback()],
        cooldown="3h",
    )
    _traffic(log_rows, shift=0.6, at=NOW - timedelta(minutes=30))
    [fired] = engine.evaluate([rule], now=NOW)
    assert (fired.rule, fired.subject, fired.status, fired.notified) == (
        "fraud_drift",
        "endpoint:fraud",
        "firing",
        True,
    )
    assert "amount" in fired.message
    [event] = _events(stores, "alert.fired")
    assert event.payload["rule"] == "fraud_drift" and event.payload["alert_id"] == fired.history_id
    [run] = _events(stores, "pipeline.run_requested")
    assert run.payload["pipeline"] == "train_fraud" and run.payload["reason"]["alert_id"] == fired.history_id
    [rollback] = _events(stores, "deployment.rollback_requested")
    assert rollback.payload["endpoint"] == "fraud"
    assert [a["kind"] for a in fired.actions] == ["log", "run_pipeline", "rollback"]

    # Still drifted ten minutes later: the same incident, nothing fires again.
    assert engine.evaluate([rule], now=NOW + timedelta(minutes=10)) == []
    assert len(_events(stores, "alert.fired")) == 1

    # A clean hour later: resolved.
    _traffic(log_rows, shift=0.0, at=NOW + timedelta(minutes=40))
    [resolved] = engine.evaluate([rule], now=NOW + timedelta(hours=1, minutes=10))
    assert (resolved.status, resolved.notified) == ("resolved", True)
    assert len(_events(stores, "alert.resolved")) == 1

    # It breaks again within the cooldown: firing again, but not notified (one incident).
    _traffic(log_rows, shift=0.6, at=NOW + timedelta(hours=1, minutes=40))
    [again] = engine.evaluate([rule], now=NOW + timedelta(hours=2, minutes=10))
    assert (again.status, again.notified) == ("firing", False)
    assert len(_events(stores, "alert.fired")) == 1 and len(_events(stores, "pipeline.run_requested")) == 1

    [state] = list_alerts(stores.meta)
    assert (state.rule, state.status) == ("fraud_drift", "firing")
    history = alert_history(stores.meta)
    assert [h.status for h in history] == ["firing", "resolved", "firing"]
    assert history[0].details["notified"] is False and "cooldown" in history[0].details["suppressed"]

    # Still drifted once the cooldown has passed: the held-back firing is told now, actions and all.
    _traffic(log_rows, shift=0.6, at=NOW + timedelta(hours=2, minutes=40))
    [told] = engine.evaluate([rule], now=NOW + timedelta(hours=3, minutes=10))
    assert (told.status, told.notified) == ("firing", True)
    assert len(_events(stores, "alert.fired")) == 2 and len(_events(stores, "pipeline.run_requested")) == 2
    latest = alert_history(stores.meta)[0]
    assert latest.details["notified"] is True and "held_back_since" in latest.details
    # ...and only once.
    _traffic(log_rows, shift=0.6, at=NOW + timedelta(hours=3, minutes=20))
    assert engine.evaluate([rule], now=NOW + timedelta(hours=3, minutes=30)) == []


def test_a_firing_held_back_by_the_cooldown_resolves_silently(
    stores: Stores, log_rows: Any, engine: Any, model: int
) -> None:
    # A log action, which a told resolution would run.
    condition = DriftedFeatures(at_least=2, window="1h")
    rule = AlertRule("d", endpoint="fraud", condition=condition, actions=["log"], cooldown="3h")
    _traffic(log_rows, shift=0.6, at=NOW - timedelta(minutes=30))
    assert [t.notified for t in engine.evaluate([rule], now=NOW)] == [True]
    _traffic(log_rows, shift=0.0, at=NOW + timedelta(minutes=40))
    [told] = engine.evaluate([rule], now=NOW + timedelta(hours=1, minutes=10))
    assert (told.status, told.notified, [a["kind"] for a in told.actions]) == ("resolved", True, ["log"])
    _traffic(log_rows, shift=0.6, at=NOW + timedelta(hours=1, minutes=40))
    assert [t.notified for t in engine.evaluate([rule], now=NOW + timedelta(hours=2, minutes=10))] == [False]
    # Back to normal within the cooldown: the receivers last heard "resolved", so nothing is sent.
    _traffic(log_rows, shift=0.0, at=NOW + timedelta(hours=2, minutes=20))
    [quiet] = engine.evaluate([rule], now=NOW + timedelta(hours=2, minutes=50))
    assert (quiet.status, quiet.notified, quiet.actions) == ("resolved", False, [])
    assert len(_events(stores, "alert.resolved")) == 2  # the controller still hears of it
    assert "held back" in alert_history(stores.meta)[0].details["suppressed"]


def test_too_little_data_neither_fires_nor_resolves(
    stores: Stores, log_rows: Any, engine: Any, model: int
) -> None:
    rule = AlertRule("d", endpoint="fraud", condition=DriftedFeatures(window="1h"))
    _traffic(log_rows, shift=0.6, at=NOW - timedelta(minutes=30))
    assert [t.status for t in engine.evaluate([rule], now=NOW)] == ["firing"]
    # An hour with no traffic: cannot tell, so the alert stays as it was.
    assert engine.evaluate([rule], now=NOW + timedelta(hours=3)) == []
    assert list_alerts(stores.meta)[0].status == "firing"


def test_quality_error_rate_and_latency_conditions(stores: Stores, log_rows: Any, engine: Any) -> None:
    rng = np.random.default_rng(1)
    cols = training_frame(rng, 300)
    errors = [None if i % 10 else "model raised" for i in range(300)]
    latency = [5.0] * 290 + [900.0] * 10
    ids = log_rows(
        cols,
        start=NOW - timedelta(minutes=3),
        spacing=timedelta(milliseconds=100),
        errors=errors,
        latency=latency,
    )
    # Labels that disagree with the scores: AUC well below 0.5.
    truth = (rng.random(300) > score(cols)).astype(int)
    rows = [
        {"prediction_id": i, "label": int(y)} for i, y, e in zip(ids, truth, errors, strict=True) if e is None
    ]
    ingest_feedback(stores.meta, stores.lake, rows, now=NOW)
    rules = [
        AlertRule("auc", endpoint="fraud", condition=QualityBelow("auc", 0.7, window="1h")),
        AlertRule("auc_ok", endpoint="fraud", condition=QualityBelow("auc", 0.01, window="1h")),
        AlertRule(
            "labels", endpoint="fraud", condition=QualityBelow("auc", 0.7, window="1h", min_labels=10_000)
        ),
        AlertRule("errors", endpoint="fraud", condition=ErrorRateAbove(0.05, window="5m")),
        AlertRule("latency", endpoint="fraud", condition=LatencyAbove(250, window="5m")),
        AlertRule("latency_ok", endpoint="fraud", condition=LatencyAbove(2000, window="5m")),
    ]
    fired = {t.rule: t for t in engine.evaluate(rules, now=NOW)}
    assert set(fired) == {"auc", "errors", "latency"}
    assert "auc 0" in fired["auc"].message and "270 labels" in fired["auc"].message
    assert "30 of 300 requests failed (10.0%)" in fired["errors"].message
    assert "p99 latency" in fired["latency"].message


def test_error_rate_alert_fires_once_served_failures_cross_the_ceiling(
    stores: Stores, log_rows: Any, engine: Any
) -> None:
    """Failed requests are logged with ``error``; a shadow version's failures are not requests
    anyone sent, so they never count."""
    rule = AlertRule("errors", endpoint="fraud", condition=ErrorRateAbove(0.05, window="5m"))
    rng = np.random.default_rng(7)
    first = NOW - timedelta(minutes=4)
    ids = log_rows(training_frame(rng, 200), start=first, errors=[None] * 194 + ["model raised"] * 6)
    log_rows(
        training_frame(rng, 100), version=2, start=first, errors=["shadow broke"] * 100, shadow_of=ids[:100]
    )
    assert engine.evaluate([rule], now=NOW) == []
    [outcome] = rule.condition.evaluate(Context(stores.meta, stores.lake, stores.blobs, now=NOW), ["fraud"])
    assert (outcome.triggered, outcome.value) == (False, pytest.approx(0.03))  # 6 of 200 served

    log_rows(
        training_frame(rng, 100),
        start=NOW + timedelta(seconds=10),
        errors=[None] * 88 + ["feature store unavailable"] * 12,
    )
    [fired] = engine.evaluate([rule], now=NOW + timedelta(minutes=1))
    assert (fired.rule, fired.status) == ("errors", "firing")
    assert "18 of 300 requests failed (6.0%); alert above 5.0%" in fired.message
    [event] = _events(stores, "alert.fired")
    assert event.payload["details"]["errors"] == 18 and event.payload["details"]["requests"] == 300


def test_stale_feature_view(stores: Stores, tmp_path: Path) -> None:
    """Against a real feature store: never materialized → firing; materialized up to a minute
    before now (max lag 1 h) → resolved; a view without max_lag is not judged."""
    import gyre
    from gyre.data import catalog
    from gyre.definitions import Definitions
    from gyre.features.store import FeatureStore
    from gyre.project import apply

    user = gyre.Entity("user", join_keys=["user_id"])
    payments = gyre.Dataset("payments", keys=["payment_id"], event_time="ts")
    window = [gyre.Aggregate("amount", "sum", window="1h")]
    views = [
        gyre.FeatureView("user_activity", entity=user, source=payments, max_lag="1h", features=window),
        gyre.FeatureView("unwatched", entity=user, source=payments, features=window),
    ]
    apply(stores.meta, Definitions([user, payments, *views]))
    features = FeatureStore(stores.meta, stores.lake, f"sqlite:///{tmp_path / 'online.db'}")
    engine = AlertEngine(stores.meta, stores.lake, stores.blobs, features=features)
    rule = AlertRule("stale", condition=FeatureViewStale())
    [t] = engine.evaluate([rule], now=NOW)
    assert (t.subject, t.status) == ("feature_view:user_activity", "firing")

    ts = NOW - timedelta(minutes=1)
    rows = pa.table(
        {
            "payment_id": ["p1"],
            "user_id": [7],
            "amount": [5.0],
            "ts": pa.array([ts], pa.timestamp("us", "UTC")),
        }
    )
    version = stores.lake.append("payments", rows)
    columns, digest = catalog.describe_schema(rows.schema)
    catalog.record_version(
        stores.meta,
        "payments",
        version,
        rows=1,
        bytes=1,
        schema=columns,
        schema_hash=digest,
        source="test",
        max_event_time=ts,
    )
    features.materialize(now=NOW)
    [t] = engine.evaluate([rule], now=NOW + timedelta(minutes=1))
    assert (t.subject, t.status) == ("feature_view:user_activity", "resolved")
    engine.close()
    features.close()


def test_a_broken_rule_does_not_stop_the_others(
    stores: Stores, log_rows: Any, engine: Any, model: int
) -> None:
    class Broken(DriftedFeatures):
        kind = ""

        def evaluate(self, ctx: Any, subjects: Any) -> Any:
            raise RuntimeError("bug")

    _traffic(log_rows, shift=0.6, at=NOW - timedelta(minutes=30))
    rules = [
        AlertRule("broken", endpoint="fraud", condition=Broken()),
        AlertRule("fine", endpoint="fraud", condition=DriftedFeatures()),
    ]
    assert [t.rule for t in engine.evaluate(rules, now=NOW)] == ["fine"]


def test_rule_definitions_round_trip_and_refuse_bad_input() -> None:
    rule = AlertRule(
        "r",
        endpoint="fraud",
        condition=QualityBelow("auc", 0.8, window="1d", min_labels=20),
        actions=["log", Webhook("http://127.0.0.1:9/hook", retries=1), RunPipeline("train"), "rollback"],
        cooldown="2h",
        description="AUC floor",
    )
    again = AlertRule.from_spec("r", rule.spec())
    assert again.spec() == rule.spec()
    assert rule.spec()["cooldown_s"] == 7200
    for cond in (
        DriftedFeatures(3, window="1h"),
        ErrorRateAbove(0.1),
        LatencyAbove(100),
        FeatureViewStale(["v"]),
    ):
        assert (
            AlertRule.from_spec("x", AlertRule("x", condition=cond).spec()).spec()["condition"]
            == cond.to_dict()
        )
    with pytest.raises(InvalidArgument, match="condition must be a condition"):
        AlertRule("r", condition="drift")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="Unknown alert action 'email'"):
        AlertRule("r", condition=DriftedFeatures(), actions=["email"])
    with pytest.raises(InvalidArgument, match="http:// or https://"):
        Webhook("ftp://x")
    with pytest.raises(InvalidArgument, match="at_least"):
        DriftedFeatures(0)
    with pytest.raises(InvalidArgument, match="cooldown"):
        AlertRule("r", condition=DriftedFeatures(), cooldown="soon")


def test_gyre_apply_registers_monitors_and_alert_rules(stores: Stores) -> None:
    import gyre
    from gyre.definitions import Definitions
    from gyre.meta.registry import list_registered
    from gyre.monitoring.definitions import monitor_spec
    from gyre.project import apply

    defs = Definitions(
        [
            gyre.Monitor("fraud", window="30m", features={"amount": "psi:0.3"}, task="binary"),
            gyre.AlertRule("fraud_drift", endpoint="fraud", condition=DriftedFeatures(2)),
        ]
    )
    plan = apply(stores.meta, defs)
    assert sorted((c.kind, c.name) for c in plan.changes) == [
        ("alert_rule", "fraud_drift"),
        ("monitor", "fraud"),
    ]
    assert not apply(stores.meta, defs)  # idempotent
    spec = monitor_spec(stores.meta, "fraud")
    assert spec.window == timedelta(minutes=30) and spec.task == "binary"
    assert spec.drift.test_for("amount", "numeric").method == "psi"
    assert [r.name for r in list_registered(stores.meta, "alert_rule")] == ["fraud_drift"]
    engine = AlertEngine(stores.meta, stores.lake, stores.blobs)
    assert [r.name for r in engine.rules()] == ["fraud_drift"]
    engine.close()
    with pytest.raises(InvalidArgument, match="task must be one of"):
        gyre.Monitor("x", task="ranking")
