"""Following the loop from the events outbox: what each event means for the demo's milestones."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from rich.console import Console

from gyre.client.client import Client
from gyre.demo.project import DRIFT_RULE, ENDPOINT, MODEL, PIPELINE, QUALITY_RULE
from gyre.demo.timeline import Timeline
from gyre.demo.watch import Watch
from gyre.meta import MetaStore


def _watch(client: Client) -> tuple[Watch, MetaStore, io.StringIO]:
    meta: MetaStore = client.backend.meta  # type: ignore[attr-defined]
    buffer = io.StringIO()
    watch = Watch(meta, Timeline(Console(file=buffer, width=200, color_system=None)), client.runs)
    return watch, meta, buffer


def _record(meta: MetaStore, kind: str, payload: dict[str, object]) -> None:
    with meta.write() as uow:
        uow.record(kind, "test", payload)


def test_the_loop_as_the_platform_records_it(client: Client) -> None:
    watch, meta, buffer = _watch(client)
    _record(meta, "alert.fired", {"rule": DRIFT_RULE, "message": "before the setup"})
    watch.skip_to_now(first_version=1)
    drift = {
        "rule": DRIFT_RULE,
        "alert_id": "a1",
        "message": "2 drifted",
        "details": {"features": ["country"]},
    }
    _record(meta, "alert.fired", drift)  # before the drift: reported, not taken for the detection
    watch.poll()
    assert watch.seen.alert is None
    watch.seen.drift_at = datetime.now(UTC)
    _record(meta, "alert.fired", drift)
    _record(meta, "alert.fired", {"rule": QUALITY_RULE, "message": "auc 0.6"})
    _record(meta, "pipeline.triggered", {"pipeline": PIPELINE, "trigger": "alert", "alert_id": "a1"})
    _record(meta, "model.alias_set", {"name": MODEL, "alias": "challenger", "to_version": 2})
    _record(meta, "deployment.started", {"endpoint": ENDPOINT, "candidate_version": 2, "steps": [50, 100]})
    _record(meta, "deployment.step", {"endpoint": ENDPOINT, "candidate_version": 2, "weight": 100.0})
    _record(meta, "deployment.promoted", {"endpoint": ENDPOINT, "candidate_version": 2})
    watch.poll()
    seen = watch.seen
    assert seen.alert is not None and seen.alert["features"] == ["country"] and seen.detected_at
    assert seen.quality_alert_at is not None and seen.triggered is not None
    assert seen.retrained_version == 2 and seen.retrained_at is not None
    assert seen.deployment is not None and seen.promoted_at is not None and seen.failure is None
    text = buffer.getvalue()
    assert "before the setup" not in text
    assert "50%, 100%" in text and "now answers 100% of users" in text and "v2 promoted" in text


def test_a_refused_model_or_a_rollback_stops_the_loop(client: Client) -> None:
    watch, meta, _ = _watch(client)
    watch.skip_to_now(first_version=1)
    run = client.start_run(PIPELINE, PIPELINE, tags={"gyre.pipeline": PIPELINE}, capture_environment=False)
    run.set_tags({"gyre.outcome": "rejected", "gyre.outcome.reason": "auc beats champion: needs more"})
    run.end("FINISHED")
    watch.poll()
    assert watch.seen.failure is not None and "needs more" in watch.seen.failure

    watch, meta, _ = _watch(client)
    watch.skip_to_now(first_version=1)
    _record(meta, "deployment.rolled_back", {"endpoint": ENDPOINT, "candidate_version": 2, "reason": "p99"})
    _record(meta, "deployment.promoted", {"endpoint": "another", "candidate_version": 7})
    watch.poll()
    assert watch.seen.failure is not None and "rolled back: p99" in watch.seen.failure
    assert watch.seen.promoted_at is None
