"""Monitoring against real sockets: webhooks to a receiver on loopback (retries, timeouts,
never blocking), feedback over a live server, and the monitoring figures on ``GET /metrics``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from ulid import ULID

from gyre.config import Settings
from gyre.data.lake import Lake
from gyre.meta import MetaStore
from gyre.models import registry
from gyre.monitoring.alerts import AlertRule, DriftedFeatures, Webhook
from gyre.monitoring.engine import AlertEngine, Notifier, alert_history
from gyre.monitoring.reference import record_reference
from gyre.monitoring.service import endpoint_drift
from gyre.store import ArtifactStore

pytestmark = pytest.mark.integration


class Receiver:
    """A webhook receiver on loopback. Per path, a script of answers: a status code, or
    ``("sleep", seconds)`` to hang past the caller's timeout; the last entry repeats."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Any]] = {}
        self.received: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                receiver.received.append((self.path, dict(self.headers), body))
                script = receiver.scripts.get(self.path, [200])
                step = script.pop(0) if len(script) > 1 else script[0]
                if isinstance(step, tuple):
                    time.sleep(step[1])
                    step = 200
                self.send_response(step)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def posts(self, path: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        return [(h, b) for p, h, b in self.received if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "amount": rng.lognormal(3 + shift, 1, n),
        "country": rng.choice(np.array(["DE", "FR", "US"]), n, p=[0.5, 0.3, 0.2]),
    }


def _score(cols: dict[str, Any]) -> np.ndarray:
    return 1 / (1 + np.exp(-(np.log(np.asarray(cols["amount"], dtype=float)) - 4)))


def _setup(
    meta: MetaStore, blobs: ArtifactStore, lake: Lake, *, shift: float, start: datetime, n: int = 1500
) -> list[str]:
    """Model 'fraud' (version 1, with a reference) and ``n`` logged predictions from ``start``,
    in the prediction log's layout (gyre.serving.log)."""
    if not registry.list_registered_models(meta):
        version = registry.create_model_version(
            meta, "fraud", package_digest="0" * 64, flavor="sklearn"
        ).version
        train = _frame(np.random.default_rng(0), 5000)
        record_reference(meta, blobs, "fraud", version, data=train, predictions=_score(train))
    # Seeded by the shift, not the clock: a clock seed made the undrifted rows drift by chance
    # (a 5%-level test) in about one run in twenty.
    cols = _frame(np.random.default_rng([7, round(shift * 100), n]), n, shift)
    times = [start + timedelta(milliseconds=50 * i) for i in range(n)]
    ids = [str(ULID.from_datetime(t)) for t in times]
    scores = _score(cols)
    lake.append(
        "predictions",
        pa.table(
            {
                "prediction_id": ids,
                "time": pa.array(times, pa.timestamp("us", "UTC")),
                "endpoint": ["fraud"] * n,
                "model": ["fraud"] * n,
                "model_version": pa.array([1] * n, pa.int64()),
                "entity": ['{"user_id": 7}'] * n,
                "features": [json.dumps({"user__amount": float(a)}) for a in cols["amount"]],
                "inputs": [json.dumps({"country": str(c), "user_id": 7}) for c in cols["country"]],
                "output": [json.dumps(float(p)) for p in scores],
                "prediction": pa.array(scores, pa.float64()),
                "latency_ms": pa.array([4.0] * n),
            }
        ),
    )
    return ids


def test_webhooks_retry_time_out_are_recorded_and_never_block(tmp_path: Path, receiver: Receiver) -> None:
    meta = MetaStore(f"sqlite:///{tmp_path / 'meta.db'}")
    blobs, lake = ArtifactStore(f"file://{tmp_path / 'store'}"), Lake(f"file://{tmp_path / 'store'}")
    now = datetime.now(UTC)
    _setup(meta, blobs, lake, shift=0.8, start=now - timedelta(minutes=20))
    receiver.scripts["/flaky"] = [500, 200]
    receiver.scripts["/slow"] = [("sleep", 1.5)]
    rule = AlertRule(
        "fraud_drift",
        endpoint="fraud",
        condition=DriftedFeatures(at_least=1, window="1h"),
        actions=[
            Webhook(f"{receiver.url}/flaky", retries=2, timeout_s=2),
            Webhook(f"{receiver.url}/slow", retries=1, timeout_s=0.2),
            Webhook(f"{receiver.url}/quiet", send_resolved=False),
        ],
    )
    notifier = Notifier(meta, backoff_s=0.05)
    engine = AlertEngine(meta, lake, blobs, notifier=notifier)
    try:
        began = time.monotonic()
        [fired] = engine.evaluate([rule], now=now)
        assert time.monotonic() - began < 1.0  # the slow receiver does not hold evaluation up
        assert fired.status == "firing"
        assert notifier.wait(20)

        flaky = receiver.posts("/flaky")
        assert len(flaky) == 2  # a 500, then retried
        assert {h["x-gyre-alert-id"] for h, _ in flaky} == {fired.history_id}
        body = flaky[-1][1]
        assert (body["rule"], body["status"], body["endpoint"]) == ("fraud_drift", "firing", "fraud")
        assert "amount" in body["details"]["features"]

        [entry] = alert_history(meta)
        by_url = {a["url"].rsplit("/", 1)[-1]: a for a in entry.actions}
        assert (by_url["flaky"]["status"], by_url["flaky"]["attempts"]) == ("delivered", 2)
        assert (by_url["slow"]["status"], by_url["slow"]["attempts"]) == ("failed", 2)
        assert "Timeout" in by_url["slow"]["error"]
        assert by_url["quiet"]["status"] == "delivered"

        # Traffic back to normal: the alert resolves, and receivers that want it hear so.
        later = now + timedelta(hours=1, minutes=30)
        _setup(meta, blobs, lake, shift=0.0, start=later - timedelta(minutes=30))
        [resolved] = engine.evaluate([rule], now=later)
        assert resolved.status == "resolved"
        assert notifier.wait(20)
        assert receiver.posts("/flaky")[-1][1]["status"] == "resolved"
        assert len(receiver.posts("/quiet")) == 1
    finally:
        engine.close(5)
        notifier.close(5)
        meta.close()


def test_feedback_over_a_live_server_and_metrics(server: Any, settings: Settings) -> None:
    meta = MetaStore(settings.metadata_url)
    blobs, lake = ArtifactStore(settings.store_url), Lake(settings.store_url)
    now = datetime.now(UTC)
    ids = _setup(meta, blobs, lake, shift=0.8, start=now - timedelta(minutes=20), n=600)
    with httpx.Client(base_url=server.url, timeout=10) as http:
        first = http.post("/v1/feedback", json={"prediction_id": ids[0], "label": 1})
        assert first.status_code == 201, first.text
        joined = first.json()
        assert (joined["endpoint"], joined["model"], joined["model_version"], joined["status"]) == (
            "fraud", "fraud", 1, "recorded",
        )  # fmt: skip

        dup = http.post("/v1/feedback", json={"prediction_id": ids[0], "label": 1})
        assert dup.status_code == 409 and dup.json()["error"] == "already_exists"
        conflicting = http.post("/v1/feedback", json={"prediction_id": ids[0], "label": 0})
        assert conflicting.status_code == 409 and "correction" in conflicting.json()["message"]
        fixed = http.post("/v1/feedback", json={"prediction_id": ids[0], "label": 0, "correction": True})
        assert fixed.status_code == 200 and fixed.json()["revision"] == 2

        unknown = http.post(
            "/v1/feedback",
            json={"prediction_id": str(ULID.from_datetime(now - timedelta(days=2))), "label": 1},
        )
        assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
        early = http.post("/v1/feedback", json={"prediction_id": str(ULID()), "label": 1})
        assert early.status_code == 409 and "not in the prediction log yet" in early.json()["message"]
        wrong = http.post("/v1/feedback", json={"prediction_id": ids[1], "label": "fraud"})
        assert wrong.status_code == 400 and "must be a number" in wrong.json()["message"]
        assert http.post("/v1/feedback", content=b"{nope").status_code == 400
        extra = http.post("/v1/feedback", json={"prediction_id": ids[1], "label": 1, "lable": 1})
        assert extra.status_code == 400 and "lable" in extra.json()["message"]

        batch = http.post(
            "/v1/feedback",
            json=[{"prediction_id": i, "label": int(k % 3 == 0)} for k, i in enumerate(ids[1:301])],
        )
        assert batch.status_code == 200 and batch.json()["recorded"] == 300
        bad_batch = http.post(
            "/v1/feedback", json=[{"prediction_id": ids[400], "label": 1}, {"prediction_id": "x", "label": 1}]
        )
        assert bad_batch.status_code == 400 and "nothing was written" in bad_batch.json()["message"]

        endpoint_drift(meta, lake, blobs, "fraud", window=timedelta(hours=1))
        from gyre.monitoring.quality import live_quality

        [quality] = live_quality(meta, lake, "fraud", window=timedelta(hours=1))
        assert (quality.labelled, quality.predictions) == (301, 600)

        text = http.get("/metrics").text
        assert 'gyre_drift_detected{endpoint="fraud",feature="amount",model_version="1"} 1.0' in text
        assert 'gyre_drift_score{endpoint="fraud",feature="country",method="chi2",model_version="1"}' in text
        assert 'gyre_label_coverage{endpoint="fraud",model_version="1"}' in text
        assert 'gyre_live_quality{endpoint="fraud",metric="auc",model_version="1"}' in text
    meta.close()
