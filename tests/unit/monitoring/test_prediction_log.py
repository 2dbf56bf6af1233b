"""Failed requests and shadow predictions in the prediction log: the error rate counts failed
served requests; drift, quality, latency and the feedback join see served successes only;
shadow traffic has its own per-version figures and is scored with the labels of the served
predictions it copies; logs written before these columns existed still read."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from gyre.errors import InvalidArgument, NotFound
from gyre.monitoring import predictions
from gyre.monitoring.feedback import ingest_feedback, labelled_predictions, record_feedback
from gyre.monitoring.quality import live_quality, shadow_quality

from .conftest import NOW, LogRows, Stores, training_frame

START = NOW - timedelta(minutes=30)
WINDOW = (NOW - timedelta(hours=1), NOW)


def _served_and_shadow(log_rows: LogRows) -> tuple[list[str], list[str], list[str]]:
    """Version 1 serves 100 successes (2 ms) and 20 failures (900 ms); version 2 shadows the
    first 60 successes (50 ms), 10 of its copies failing. Returns the ids of the served
    successes, the served failures and the shadow predictions."""
    rng = np.random.default_rng(3)
    ok = log_rows(training_frame(rng, 100), start=START, errors=[None] * 100)
    failed = log_rows(
        training_frame(rng, 20),
        start=START + timedelta(seconds=5),
        errors=["model raised ValueError"] * 20,
        latency=[900.0] * 20,
    )
    shadow_errors = [None] * 50 + ["timeout"] * 10
    shadow = log_rows(
        training_frame(rng, 60),
        version=2,
        start=START + timedelta(seconds=10),
        outputs=[0.25] * 60,
        errors=shadow_errors,
        shadow_of=ok[:60],
        latency=[50.0] * 60,
    )
    return ok, failed, shadow


def test_error_rate_counts_failed_served_requests_and_nothing_else_sees_them(
    stores: Stores, log_rows: LogRows
) -> None:
    ok, failed, _ = _served_and_shadow(log_rows)
    lake = stores.lake

    s = predictions.service_stats(lake, "fraud", *WINDOW)
    assert (s.requests, s.errors) == (120, 20)
    assert s.error_rate == pytest.approx(20 / 120)
    assert (s.p50_ms, s.p99_ms) == (2.0, 2.0)  # failed (900 ms) and shadow (50 ms) rows left out

    assert predictions.counts(lake, "fraud", *WINDOW) == {("fraud", 1): 100}
    window = predictions.read_window(lake, "fraud", *WINDOW)
    assert window["prediction_id"].to_pylist() == ok
    assert window["prediction"].null_count == 0
    assert predictions.endpoints(lake) == ["fraud"]

    found = predictions.find(lake, [ok[0], failed[0]])
    by_id = {r["prediction_id"]: r for r in found.to_pylist()}
    assert by_id[ok[0]]["error"] is None
    assert (by_id[failed[0]]["error"], by_id[failed[0]]["prediction"]) == ("model raised ValueError", None)


def test_version_stats_of_served_and_of_shadow_traffic(stores: Stores, log_rows: LogRows) -> None:
    _served_and_shadow(log_rows)
    served = predictions.version_stats(stores.lake, "fraud", *WINDOW)
    assert list(served) == [1]
    v1 = served[1]
    assert (v1.model, v1.requests, v1.errors, v1.p50_ms, v1.p99_ms) == ("fraud", 120, 20, 2.0, 2.0)
    assert v1.error_rate == pytest.approx(20 / 120)
    assert v1.predictions.dtype == np.float64 and len(v1.predictions) == 100

    shadow = predictions.version_stats(stores.lake, "fraud", *WINDOW, shadow=True)
    assert list(shadow) == [2]
    v2 = shadow[2]
    assert (v2.requests, v2.errors, v2.p99_ms) == (60, 10, 50.0)
    assert v2.error_rate == pytest.approx(10 / 60)
    assert v2.predictions.tolist() == [0.25] * 50

    assert predictions.version_stats(stores.lake, "fraud", NOW, NOW + timedelta(hours=1)) == {}
    assert predictions.version_stats(stores.lake, "other", *WINDOW) == {}


def test_version_stats_of_class_labels_and_two_models_sharing_a_version(
    stores: Stores, log_rows: LogRows
) -> None:
    rng = np.random.default_rng(4)
    log_rows(training_frame(rng, 5), start=START, outputs=["fraud", "ok", "ok", "ok", "fraud"])
    log_rows(training_frame(rng, 3), model="fraud_v2", start=START + timedelta(seconds=1))
    with pytest.raises(InvalidArgument, match="Models 'fraud' and 'fraud_v2' both logged version 1.*model="):
        predictions.version_stats(stores.lake, "fraud", *WINDOW)
    [labels] = predictions.version_stats(stores.lake, "fraud", *WINDOW, model="fraud").values()
    assert labels.predictions.tolist() == ["fraud", "ok", "ok", "ok", "fraud"]
    [other] = predictions.version_stats(stores.lake, "fraud", *WINDOW, model="fraud_v2").values()
    assert (other.model, other.requests) == ("fraud_v2", 3)


def test_feedback_joins_served_predictions_and_shadows_borrow_their_labels(
    stores: Stores, log_rows: LogRows
) -> None:
    ok, failed, shadow = _served_and_shadow(log_rows)
    with pytest.raises(InvalidArgument, match="failed \\(model raised ValueError\\); a failed request"):
        record_feedback(stores.meta, stores.lake, failed[0], 1, now=NOW)
    with pytest.raises(NotFound, match=f"No prediction with id {shadow[0]}"):
        record_feedback(stores.meta, stores.lake, shadow[0], 1, now=NOW)

    # Labels for the first 80 served predictions: 1 for even positions, else 0.
    truth = {pid: i % 2 for i, pid in enumerate(ok[:80])}
    ingest_feedback(
        stores.meta, stores.lake, [{"prediction_id": p, "label": y} for p, y in truth.items()], now=NOW
    )
    [served] = live_quality(stores.meta, stores.lake, "fraud", window=timedelta(hours=1), end=NOW)
    assert (served.model_version, served.predictions, served.labelled) == (1, 100, 80)
    assert not served.shadow
    assert len(labelled_predictions(stores.meta, stores.lake, "fraud", *WINDOW)) == 80

    [report] = shadow_quality(stores.meta, stores.lake, "fraud", window=timedelta(hours=1), end=NOW)
    # 60 shadow copies, 10 failed; of the 50 that answered, all copy a labelled prediction.
    assert (report.model_version, report.predictions, report.labelled, report.shadow) == (2, 50, 50, True)
    assert report.task == "binary"
    # It always said 0.25: right on the 0s (25 of 50), never on the 1s.
    assert report.metrics["accuracy"] == pytest.approx(25 / 50)
    assert report.metrics["recall"] == 0.0
    assert report.coverage == 1.0
    assert report.to_dict()["shadow"] is True


def test_older_logs_without_error_or_shadow_columns(stores: Stores, log_rows: LogRows) -> None:
    ids = log_rows(training_frame(np.random.default_rng(5), 30), start=START)
    lake = stores.lake
    s = predictions.service_stats(lake, "fraud", *WINDOW)
    assert (s.requests, s.errors, s.error_rate, s.p99_ms) == (30, 0, 0.0, 2.0)
    assert predictions.counts(lake, "fraud", *WINDOW) == {("fraud", 1): 30}
    assert predictions.read_window(lake, "fraud", *WINDOW).num_rows == 30
    assert predictions.find(lake, ids[:2])["error"].to_pylist() == [None, None]
    assert predictions.version_stats(lake, "fraud", *WINDOW)[1].requests == 30
    assert predictions.version_stats(lake, "fraud", *WINDOW, shadow=True) == {}
    assert predictions.shadow_window(lake, "fraud", *WINDOW).num_rows == 0
    assert shadow_quality(stores.meta, lake, "fraud", window=timedelta(hours=1), end=NOW) == []
    record_feedback(stores.meta, lake, ids[0], 1, now=NOW)


def test_no_log_at_all(stores: Stores) -> None:
    s = predictions.service_stats(stores.lake, "fraud", *WINDOW)
    assert (s.requests, s.errors, s.error_rate, s.p50_ms) == (0, 0, None, None)
    assert predictions.version_stats(stores.lake, "fraud", *WINDOW) == {}
    assert predictions.shadow_window(stores.lake, "fraud", *WINDOW).num_rows == 0
    assert shadow_quality(stores.meta, stores.lake, "fraud", end=NOW) == []
