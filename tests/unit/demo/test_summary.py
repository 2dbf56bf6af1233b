"""The demo's figures: live AUC cut by model version and time, the JSON summary, the table."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import numpy as np
from rich.console import Console

from gyre.demo.summary import Summary, live_auc, percentile
from gyre.demo.timeline import Timeline, summary_table
from gyre.monitoring.feedback import FeedbackResult

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)


def _label(i: int, version: int, at: float, prediction: float, label: bool) -> FeedbackResult:
    return FeedbackResult(
        f"p{i}", "recorded", "fraud", "fraud", version, T0 + timedelta(seconds=at), prediction, label, 1
    )


def _auc(y: list[bool], p: list[float]) -> float:
    """Pairs (positive, negative) ordered right, ties half: the definition of the AUC."""
    pos = [s for s, t in zip(p, y, strict=True) if t]
    neg = [s for s, t in zip(p, y, strict=True) if not t]
    return float(np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg]))


def test_live_auc_cuts_by_version_and_time() -> None:
    rng = np.random.default_rng(0)
    feedback = [
        _label(i, 1 if i % 3 else 2, float(i), float(rng.random()), bool(rng.random() < 0.3))
        for i in range(60)
    ]
    w = live_auc(feedback, 1, T0 + timedelta(seconds=10), T0 + timedelta(seconds=40))
    chosen = [
        f for f in feedback if f.model_version == 1 and 10 <= (f.predicted_at - T0).total_seconds() < 40
    ]
    assert (w.version, w.labelled, w.frauds) == (1, len(chosen), sum(f.label for f in chosen))
    assert w.auc is not None
    assert abs(w.auc - _auc([f.label for f in chosen], [f.prediction for f in chosen])) < 1e-12
    assert live_auc(feedback, 2, None, None).labelled == 20
    # One class only, or nothing at all: no AUC, but the counts still say why.
    only_legit = [_label(i, 1, i, 0.1 * i, False) for i in range(5)]
    assert live_auc(only_legit, 1, None, None).auc is None
    assert live_auc(feedback, 9, None, None) == live_auc([], 9, None, None)
    assert live_auc([], 9, None, None).labelled == 0


def test_summary_json_has_the_figures_the_issue_names() -> None:
    s = Summary(project="/p", pace="fast", seed=0)
    s.before_drift = live_auc([_label(0, 1, 0, 0.9, True), _label(1, 1, 1, 0.1, False)], 1, None, None)
    s.seconds_to_detection, s.requests_served, s.predictions_logged = 4.123, 100, 99
    data = json.loads(json.dumps(s.to_dict()))
    for key in (
        "auc_before_drift",
        "auc_during_drift",
        "auc_after_promotion",
        "seconds_to_detection",
        "seconds_to_promotion",
        "requests_served",
        "predictions_logged",
    ):
        assert key in data
    assert data["auc_before_drift"] == 1.0 and data["auc_during_drift"] is None
    assert data["seconds_to_detection"] == 4.12
    assert data["windows"]["before_drift"] == {"version": 1, "labelled": 2, "frauds": 1, "auc": 1.0}
    assert percentile([], 50) is None and percentile([1.0, 3.0], 50) == 2.0


def test_the_table_and_timeline_print_measured_values() -> None:
    buffer = io.StringIO()
    out = Console(file=buffer, width=120, color_system=None)
    s = Summary(project="/p", pace="fast", seed=0, requests_served=1234, seconds_to_promotion=18.46)
    s.during_drift = live_auc([_label(0, 1, 0, 0.2, True), _label(1, 1, 1, 0.4, False)], 1, None, None)
    out.print(summary_table(s, "/tmp/[red]x"))
    timeline = Timeline(out, started=0.0)
    timeline.say("alert [bold] fired", "alert", "detail")
    text = buffer.getvalue()
    assert "0.000  model v1, 2 labels, 1 fraud" in text
    assert "1,234" in text and "18.5 s" in text
    assert "/tmp/[red]x" in text and "alert [bold] fired  detail" in text  # text, never markup
