"""Live quality: how right an endpoint's predictions were, as far as labels have arrived.

Labels come late, so a window's quality is always reported with its label coverage: how many
of the window's predictions are labelled yet. Metrics are plain numpy (checked against
scikit-learn in the tests):

* binary classification (a probability, labels 0/1): AUC, log loss, and accuracy, precision
  and recall at the monitor's cut-off;
* multiclass (class names): accuracy;
* regression: RMSE and MAE.

:func:`live_quality` computes one :class:`QualityReport` per model version serving the
endpoint in the window and stores it in ``quality_reports`` (the quality time series).
:func:`shadow_quality` does the same for shadow deployments: a shadow prediction is scored
against the label of the served prediction it copies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select

from gyre.data.lake import Lake
from gyre.ids import new_id, utcnow
from gyre.jsonsafe import decode_floats, encode_floats
from gyre.meta import MetaStore
from gyre.meta.monitoring_schema import QualityReportRecord
from gyre.monitoring import predictions
from gyre.monitoring.definitions import MonitorSpec, monitor_spec
from gyre.monitoring.feedback import labels_of, list_feedback

_EPS = 1e-15


@dataclass
class QualityReport:
    """Quality of one model version behind an endpoint over a window."""

    endpoint: str
    model: str
    model_version: int
    window_start: datetime | None
    window_end: datetime
    predictions: int
    labelled: int
    task: str
    metrics: dict[str, float | None] = field(default_factory=dict)
    computed_at: datetime | None = None
    id: str | None = None
    shadow: bool = False  # a shadow deployment's predictions, never answered

    @property
    def coverage(self) -> float | None:
        """The share of the window's predictions labelled so far."""
        return min(1.0, self.labelled / self.predictions) if self.predictions else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "model": self.model,
            "model_version": self.model_version,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat(),
            "computed_at": self.computed_at.isoformat() if self.computed_at else None,
            "predictions": self.predictions,
            "labelled": self.labelled,
            "coverage": self.coverage,
            "task": self.task,
            "metrics": encode_floats(dict(self.metrics)),
            "shadow": self.shadow,
        }


# -- metrics ---------------------------------------------------------------------------------


def auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None without both classes."""
    y = np.asarray(y, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if not pos or not neg:
        return None
    ranks = _average_ranks(np.asarray(score, dtype=np.float64))
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    # Tied values share the mean of the ranks they span.
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    mean_rank = (starts + ends + 1) / 2.0
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    y = np.asarray(y, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def binary_metrics(y: np.ndarray, p: np.ndarray, cutoff: float = 0.5) -> dict[str, float | None]:
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    pred = p >= cutoff
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    return {
        "auc": auc(y, p),
        "log_loss": log_loss(y, p) if np.all((p >= 0) & (p <= 1)) else None,
        "accuracy": float((pred == y).mean()),
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
    }


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    err = np.asarray(p, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    return {"rmse": float(np.sqrt(np.mean(err**2))), "mae": float(np.mean(np.abs(err)))}


def infer_task(labels: Sequence[Any], outputs: Sequence[Any]) -> str:
    """``binary`` for 0/1 labels of probabilities, ``multiclass`` for class names, else ``regression``."""
    if any(isinstance(v, str) for v in (*labels, *outputs)):
        return "multiclass"
    probs = all(isinstance(p, int | float) and 0 <= p <= 1 for p in outputs)
    if probs and all(isinstance(v, bool) or v in (0, 1) for v in labels):
        return "binary"
    return "regression"


def compute_metrics(
    task: str, labels: Sequence[Any], outputs: Sequence[Any], cutoff: float = 0.5
) -> dict[str, Any]:
    pairs = [(y, p) for y, p in zip(labels, outputs, strict=True) if p is not None and y is not None]
    if not pairs:
        return {}
    ys, ps = zip(*pairs, strict=True)
    if task == "multiclass":
        return {"accuracy": float(np.mean([str(y) == str(p) for y, p in pairs]))}
    y = np.array([float(v) for v in ys])
    p = np.array([float(v) for v in ps])
    if task == "binary":
        return binary_metrics(y > 0.5, p, cutoff)
    return regression_metrics(y, p)


# -- per endpoint ------------------------------------------------------------------------------


def live_quality(
    meta: MetaStore,
    lake: Lake,
    endpoint: str,
    *,
    window: timedelta | None = None,
    end: datetime | None = None,
    save: bool = True,
) -> list[QualityReport]:
    """Quality of each model version behind ``endpoint`` over ``[end - window, end)``, from the
    labels received so far; newest version first.

    Args:
        window: default the endpoint's monitor's ``quality_window`` (one day).
        save: store the reports in the quality time series.
    """
    spec = monitor_spec(meta, endpoint)
    start, end = predictions.window_bounds(window or spec.quality_window, end)
    made = predictions.counts(lake, endpoint, start, end) if predictions.exists(lake) else {}
    labels: dict[tuple[str, int], list[Any]] = {}
    for fb in list_feedback(meta, endpoint, start, end):
        labels.setdefault((fb.model, fb.model_version), []).append(fb)
    reports = []
    for model, version in sorted(set(made) | set(labels), key=lambda k: -k[1]):
        rows = labels.get((model, version), [])
        ys, ps = [f.label for f in rows], [f.prediction for f in rows]
        made_n = made.get((model, version), 0)
        reports.append(_version_report(spec, endpoint, model, version, (start, end), made_n, ys, ps))
    if save and reports:
        now = utcnow()
        with meta.write() as uow:
            for r in reports:
                r.id, r.computed_at = new_id(), now
                uow.session.add(
                    QualityReportRecord(
                        id=r.id,
                        endpoint=r.endpoint,
                        model_name=r.model,
                        model_version=r.model_version,
                        window_start=r.window_start,
                        window_end=r.window_end,
                        computed_at=now,
                        predictions=r.predictions,
                        labelled=r.labelled,
                        task=r.task,
                        metrics=_json_metrics(r.metrics),
                    )
                )
    return reports


def shadow_quality(
    meta: MetaStore,
    lake: Lake,
    endpoint: str,
    *,
    window: timedelta | None = None,
    end: datetime | None = None,
) -> list[QualityReport]:
    """Quality of each shadow model version behind ``endpoint`` over ``[end - window, end)``:
    its successful predictions scored against the labels received so far for the served
    predictions they copy; newest version first. Coverage is labelled / shadow predictions.

    Not stored: the quality time series is served traffic's.

    Args:
        window: default the endpoint's monitor's ``quality_window`` (one day).
    """
    spec = monitor_spec(meta, endpoint)
    start, end = predictions.window_bounds(window or spec.quality_window, end)
    if not predictions.exists(lake):
        return []
    rows = predictions.shadow_window(lake, endpoint, start, end)
    copies = rows["shadow_of"].to_pylist()
    labels = labels_of(meta, [c for c in copies if c is not None])
    made: dict[tuple[str, int], int] = {}
    pairs: dict[tuple[str, int], tuple[list[Any], list[Any]]] = {}
    columns = (
        rows["model"].to_pylist(),
        rows["model_version"].to_pylist(),
        copies,
        rows["prediction"].to_pylist(),
    )
    for model, version, copy, output in zip(*columns, strict=True):
        key = (model, int(version))
        made[key] = made.get(key, 0) + 1
        ys, ps = pairs.setdefault(key, ([], []))
        if copy in labels:
            ys.append(labels[copy])
            ps.append(output)
    reports = []
    for (model, version), n in sorted(made.items(), key=lambda kv: -kv[0][1]):
        ys, ps = pairs[(model, version)]
        reports.append(_version_report(spec, endpoint, model, version, (start, end), n, ys, ps, shadow=True))
    return reports


def _version_report(
    spec: MonitorSpec,
    endpoint: str,
    model: str,
    version: int,
    window: tuple[datetime, datetime],
    made: int,
    ys: list[Any],
    ps: list[Any],
    *,
    shadow: bool = False,
) -> QualityReport:
    """One version's report from its labels ``ys`` and predictions ``ps`` (empty: no metrics)."""
    task = spec.task or (infer_task(ys, ps) if ys else "unknown")
    metrics = compute_metrics(task, ys, ps, spec.cutoff) if ys else {}
    return QualityReport(
        endpoint,
        model,
        version,
        *window,
        predictions=made,
        labelled=len(ys),
        task=task,
        metrics=metrics,
        shadow=shadow,
    )


def list_quality_reports(
    meta: MetaStore, endpoint: str | None = None, *, limit: int = 100
) -> list[QualityReport]:
    """Stored quality reports, newest first."""
    q = select(QualityReportRecord)
    if endpoint is not None:
        q = q.where(QualityReportRecord.endpoint == endpoint)
    q = q.order_by(QualityReportRecord.computed_at.desc(), QualityReportRecord.id.desc()).limit(limit)
    with meta.read() as s:
        return [_report(r) for r in s.scalars(q)]


def latest_quality_reports(meta: MetaStore) -> list[QualityReport]:
    """The newest report of every (endpoint, model version)."""
    with meta.read() as s:
        newest = (
            select(
                QualityReportRecord.endpoint,
                QualityReportRecord.model_version,
                func.max(QualityReportRecord.computed_at).label("at"),
            )
            .group_by(QualityReportRecord.endpoint, QualityReportRecord.model_version)
            .subquery()
        )
        rows = s.scalars(
            select(QualityReportRecord)
            .join(
                newest,
                (QualityReportRecord.endpoint == newest.c.endpoint)
                & (QualityReportRecord.model_version == newest.c.model_version)
                & (QualityReportRecord.computed_at == newest.c.at),
            )
            .order_by(QualityReportRecord.endpoint, QualityReportRecord.model_version.desc())
        ).all()
        seen: set[tuple[str, int]] = set()
        out = []
        for r in rows:
            if (r.endpoint, r.model_version) not in seen:
                seen.add((r.endpoint, r.model_version))
                out.append(_report(r))
        return out


def _json_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    return encode_floats(
        {k: (float(v) if isinstance(v, int | float) and v is not None else v) for k, v in metrics.items()}
    )


def _report(r: QualityReportRecord) -> QualityReport:
    metrics = decode_floats(dict(r.metrics or {}))
    return QualityReport(
        r.endpoint,
        r.model_name,
        r.model_version,
        r.window_start,
        r.window_end,
        r.predictions,
        r.labelled,
        r.task,
        {
            k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else v)
            for k, v in metrics.items()
        },
        r.computed_at,
        r.id,
    )
