"""Feedback joins the logged prediction; every kind of bad feedback gets its own answer and
nothing is counted twice; live quality reports its label coverage."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select
from ulid import ULID

from gyre.errors import AlreadyExists, InvalidArgument, NotFound
from gyre.meta.monitoring_schema import FeedbackRecord
from gyre.meta.schema import Event
from gyre.monitoring.feedback import NotLoggedYet, ingest_feedback, labelled_predictions, record_feedback
from gyre.monitoring.quality import (
    auc,
    binary_metrics,
    infer_task,
    latest_quality_reports,
    live_quality,
    regression_metrics,
)

from .conftest import NOW, Stores, score, training_frame


def _count(stores: Stores) -> int:
    with stores.meta.read() as s:
        return s.scalar(select(func.count()).select_from(FeedbackRecord)) or 0


def test_feedback_joins_the_logged_prediction(stores: Stores, log_rows) -> None:  # type: ignore[no-untyped-def]
    cols = training_frame(np.random.default_rng(0), 5)
    ids = log_rows(cols, version=3)
    result = record_feedback(stores.meta, stores.lake, ids[0], 1, now=NOW)
    assert (result.status, result.endpoint, result.model, result.model_version, result.revision) == (
        "recorded", "fraud", "fraud", 3, 1,
    )  # fmt: skip
    assert result.prediction == pytest.approx(float(score(cols)[0]))
    assert result.predicted_at == NOW - timedelta(minutes=30)
    with stores.meta.read() as s:
        [event] = s.scalars(select(Event).where(Event.type == "feedback.received")).all()
    assert event.payload == {"endpoint": "fraud", "labels": 1, "source": "api"}


def test_every_kind_of_bad_feedback_has_its_answer_and_writes_nothing(stores: Stores, log_rows) -> None:  # type: ignore[no-untyped-def]
    ids = log_rows(training_frame(np.random.default_rng(1), 3))
    record_feedback(stores.meta, stores.lake, ids[0], 1, now=NOW)

    with pytest.raises(AlreadyExists, match="already recorded with label 1; nothing was counted twice"):
        record_feedback(stores.meta, stores.lake, ids[0], 1, now=NOW)
    with pytest.raises(AlreadyExists, match='already has label 1.*"correction": true'):
        record_feedback(stores.meta, stores.lake, ids[0], 0, now=NOW)
    old = str(ULID.from_datetime(NOW - timedelta(days=3)))
    with pytest.raises(NotFound, match=f"No prediction with id {old} in the prediction log"):
        record_feedback(stores.meta, stores.lake, old, 1, now=NOW)
    with pytest.raises(NotFound, match="No prediction with id not-an-id"):
        record_feedback(stores.meta, stores.lake, "not-an-id", 1, now=NOW)
    just_made = str(ULID.from_datetime(NOW - timedelta(seconds=2)))
    with pytest.raises(NotLoggedYet, match="not in the prediction log yet.*again in a few seconds") as info:
        record_feedback(stores.meta, stores.lake, just_made, 1, now=NOW)
    assert info.value.status_code == 409
    with pytest.raises(InvalidArgument, match="label must be a number, got the string 'yes'"):
        record_feedback(stores.meta, stores.lake, ids[1], "yes", now=NOW)
    with pytest.raises(InvalidArgument, match="missing"):
        record_feedback(stores.meta, stores.lake, ids[1], None, now=NOW)
    with pytest.raises(InvalidArgument, match="a list"):
        record_feedback(stores.meta, stores.lake, ids[1], [1], now=NOW)
    with pytest.raises(InvalidArgument, match="non-empty string"):
        record_feedback(stores.meta, stores.lake, 42, 1, now=NOW)
    assert _count(stores) == 1

    corrected = record_feedback(stores.meta, stores.lake, ids[0], 0, correction=True, now=NOW)
    assert (corrected.status, corrected.label, corrected.revision) == ("corrected", 0, 2)
    assert _count(stores) == 1


def test_binary_task_checks_label_values(stores: Stores, log_rows) -> None:  # type: ignore[no-untyped-def]
    from gyre.meta.registry import apply_changes
    from gyre.monitoring.definitions import Monitor
    from gyre.project import KINDS  # noqa: F401 - the registry takes any kind

    monitor = Monitor("fraud", task="binary")
    from gyre.definitions import spec_hash
    from gyre.meta.registry import Change

    apply_changes(
        stores.meta, [Change("create", "monitor", "fraud", monitor.spec(), spec_hash(monitor.spec()))]
    )
    ids = log_rows(training_frame(np.random.default_rng(2), 2))
    with pytest.raises(InvalidArgument, match="binary classifier's label is 0 or 1"):
        record_feedback(stores.meta, stores.lake, ids[0], 0.3, now=NOW)
    assert record_feedback(stores.meta, stores.lake, ids[0], True, now=NOW).label is True


def test_file_ingest_is_all_or_nothing_unless_skipping(stores: Stores, log_rows) -> None:  # type: ignore[no-untyped-def]
    ids = log_rows(training_frame(np.random.default_rng(3), 4))
    rows = [
        {"prediction_id": ids[0], "label": 1},
        {"prediction_id": ids[1], "label": 0},
        {"prediction_id": "01J00000000000000000000000", "label": 1},
        {"prediction_id": ids[2], "label": "x"},
        {"label": 1},
    ]
    with pytest.raises(InvalidArgument, match=r"3 of 5 feedback rows.*nothing was written") as info:
        ingest_feedback(stores.meta, stores.lake, rows, now=NOW)
    assert "row 3: No prediction" in info.value.message and "row 5: each row needs" in info.value.message
    assert _count(stores) == 0

    report = ingest_feedback(stores.meta, stores.lake, rows, skip_invalid=True, now=NOW)
    assert (report.recorded, report.unchanged, [p.row for p in report.problems]) == (2, 0, [3, 4, 5])
    assert [p.reason for p in report.problems] == ["unknown", "invalid", "invalid"]

    # Ingesting the same labels again changes nothing and counts nothing twice.
    again = ingest_feedback(stores.meta, stores.lake, rows[:2], now=NOW)
    assert (again.recorded, again.unchanged) == (0, 2)
    # A conflicting label needs the correction flag; a file may set it per row.
    with pytest.raises(InvalidArgument, match="send it as a correction"):
        ingest_feedback(stores.meta, stores.lake, [{"prediction_id": ids[0], "label": 0}], now=NOW)
    fixed = ingest_feedback(
        stores.meta, stores.lake, [{"prediction_id": ids[0], "label": 0, "correction": "true"}], now=NOW
    )
    assert fixed.corrected == 1
    # The same id twice in one file: counted once.
    twice = ingest_feedback(
        stores.meta,
        stores.lake,
        [{"prediction_id": ids[3], "label": 1}, {"prediction_id": ids[3], "label": 1}],
        now=NOW,
    )
    assert (twice.recorded, twice.unchanged) == (1, 1)
    assert _count(stores) == 3


def test_live_quality_with_label_coverage(stores: Stores, log_rows) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(4)
    cols = training_frame(rng, 200)
    p = score(cols)
    ids = log_rows(cols, version=1, spacing=timedelta(seconds=1))
    truth = (rng.random(200) < p).astype(int)
    labelled = 120  # the other 80 labels have not arrived yet
    ingest_feedback(
        stores.meta,
        stores.lake,
        [
            {"prediction_id": i, "label": int(y)}
            for i, y in zip(ids[:labelled], truth[:labelled], strict=True)
        ],
        now=NOW,
    )
    [report] = live_quality(stores.meta, stores.lake, "fraud", window=timedelta(hours=1), end=NOW)
    assert (report.model_version, report.predictions, report.labelled, report.task) == (1, 200, 120, "binary")
    assert report.coverage == pytest.approx(0.6)
    expected = binary_metrics(truth[:labelled].astype(bool), p[:labelled])
    assert report.metrics == pytest.approx(expected)
    [stored] = latest_quality_reports(stores.meta)
    assert stored.metrics == pytest.approx(expected) and stored.labelled == 120

    # A window whose labels have not arrived still reports its predictions, with no metrics.
    end = NOW - timedelta(minutes=30) + timedelta(seconds=200)
    [empty] = live_quality(stores.meta, stores.lake, "fraud", window=timedelta(seconds=60), end=end)
    assert (empty.predictions, empty.labelled, empty.metrics, empty.coverage) == (60, 0, {}, 0.0)

    train = labelled_predictions(stores.meta, stores.lake, "fraud")
    assert train.num_rows == labelled and train["label"].to_pylist() == truth[:labelled].tolist()
    assert {"amount", "hour", "country", "prediction"} <= set(train.column_names)


def test_metrics_agree_with_scikit_learn() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(5)
    y = rng.random(500) < 0.3
    p = np.round(0.01 + 0.98 * rng.random(500), 2)  # ties (0 and 1 would test clipping conventions)
    got = binary_metrics(y, p, 0.5)
    pred = p >= 0.5
    assert got["auc"] == pytest.approx(metrics.roc_auc_score(y, p))
    assert got["log_loss"] == pytest.approx(metrics.log_loss(y, p))
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(metrics.precision_score(y, pred))
    assert got["recall"] == pytest.approx(metrics.recall_score(y, pred))
    t, q = rng.normal(size=300), rng.normal(size=300)
    reg = regression_metrics(t, q)
    assert reg["rmse"] == pytest.approx(np.sqrt(metrics.mean_squared_error(t, q)))
    assert reg["mae"] == pytest.approx(metrics.mean_absolute_error(t, q))
    assert auc(np.array([1, 1]), np.array([0.2, 0.3])) is None
    assert infer_task([0, 1, True], [0.1, 0.9, 0.5]) == "binary"
    assert infer_task([3.5, 1], [0.1, 2.0]) == "regression"
    assert infer_task(["a"], ["b"]) == "multiclass"
