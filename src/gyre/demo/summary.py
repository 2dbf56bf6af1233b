"""The demo's figures, measured from what the platform recorded.

Live AUC is computed from the feedback the platform joined to its logged predictions
(:func:`gyre.monitoring.feedback.list_feedback`): each label with the model version that
made the prediction, the prediction, and when it was made. :func:`live_auc` cuts that by
version and time; the loop fills a :class:`Summary` with those cuts and the instants the
platform recorded (alert fired, challenger registered, canary promoted).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from gyre.monitoring.feedback import FeedbackResult
from gyre.monitoring.quality import auc


@dataclasses.dataclass(frozen=True)
class Window:
    """A model version's live quality over predictions made in a span of time."""

    version: int | None
    labelled: int
    frauds: int
    auc: float | None  # None without both classes among the labels

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def live_auc(
    feedback: Sequence[FeedbackResult], version: int | None, start: datetime | None, end: datetime | None
) -> Window:
    """The AUC of ``version``'s predictions made in ``[start, end)`` whose labels arrived."""
    rows = [
        f
        for f in feedback
        if f.model_version == version
        and (start is None or f.predicted_at >= start)
        and (end is None or f.predicted_at < end)
        and f.prediction is not None
    ]
    y = np.array([bool(f.label) for f in rows], dtype=bool)
    p = np.array([float(f.prediction) for f in rows], dtype=np.float64)
    return Window(version, len(rows), int(y.sum()), auc(y, p) if len(rows) else None)


@dataclasses.dataclass
class Summary:
    """What one demo run showed; every figure measured, none assumed.

    Times are seconds from the drift's onset (the instant the traffic switched to the new
    market) to the platform's record of each step.
    """

    project: str
    pace: str
    seed: int
    before_drift: Window | None = None  # the first model, on pre-drift traffic
    during_drift: Window | None = None  # the first model, from the drift until promotion
    after_promotion: Window | None = None  # the retrained model once it took all traffic
    canary: dict[str, Window] = dataclasses.field(default_factory=dict)  # both sides, same traffic
    seconds_to_detection: float | None = None
    seconds_to_auc_alert: float | None = None  # the live AUC alert (labels, not features)
    seconds_to_retrain: float | None = None  # the retrained model registered as challenger
    seconds_to_promotion: float | None = None
    requests_served: int = 0
    requests_failed: int = 0
    predictions_logged: int = 0
    labels_fed_back: int = 0
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    drifted_features: list[str] = dataclasses.field(default_factory=list)
    alert: dict[str, Any] = dataclasses.field(default_factory=dict)
    retrain: dict[str, Any] = dataclasses.field(default_factory=dict)
    deployment: dict[str, Any] = dataclasses.field(default_factory=dict)
    models: dict[str, int] = dataclasses.field(default_factory=dict)  # first, retrained
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The summary as one JSON object (``gyre demo --json``)."""
        return {
            "project": self.project,
            "pace": self.pace,
            "seed": self.seed,
            "auc_before_drift": _auc(self.before_drift),
            "auc_during_drift": _auc(self.during_drift),
            "auc_after_promotion": _auc(self.after_promotion),
            "seconds_to_detection": _round(self.seconds_to_detection),
            "seconds_to_auc_alert": _round(self.seconds_to_auc_alert),
            "seconds_to_retrain": _round(self.seconds_to_retrain),
            "seconds_to_promotion": _round(self.seconds_to_promotion),
            "requests_served": self.requests_served,
            "requests_failed": self.requests_failed,
            "predictions_logged": self.predictions_logged,
            "labels_fed_back": self.labels_fed_back,
            "latency_p50_ms": _round(self.latency_p50_ms),
            "latency_p99_ms": _round(self.latency_p99_ms),
            "windows": {
                "before_drift": _window(self.before_drift),
                "during_drift": _window(self.during_drift),
                "after_promotion": _window(self.after_promotion),
                "canary": {side: w.to_dict() for side, w in self.canary.items()},
            },
            "drifted_features": self.drifted_features,
            "alert": self.alert,
            "retrain": self.retrain,
            "deployment": self.deployment,
            "models": self.models,
            "duration_s": _round(self.duration_s),
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile of ``values`` (None when empty)."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else None


def _auc(w: Window | None) -> float | None:
    return None if w is None or w.auc is None else round(w.auc, 4)


def _window(w: Window | None) -> dict[str, Any] | None:
    return None if w is None else w.to_dict()


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
