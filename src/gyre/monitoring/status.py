"""One line per endpoint and model version: traffic, drift, live quality and alerts.

Reads what is already there (the prediction log's recent traffic, the newest stored drift and
quality reports, the alert states); it computes no drift itself, so it is quick to run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from gyre.data.lake import Lake
from gyre.ids import utcnow
from gyre.meta import MetaStore
from gyre.meta.registry import list_registered
from gyre.monitoring import predictions
from gyre.monitoring.engine import FIRING, list_alerts
from gyre.monitoring.quality import latest_quality_reports
from gyre.monitoring.service import latest_drift_reports

HEADLINE = ("auc", "accuracy", "rmse", "mae")


@dataclass
class EndpointStatus:
    """The state of one model version behind an endpoint (``model_version`` None: no report yet)."""

    endpoint: str
    model_version: int | None
    requests: int = 0
    error_rate: float | None = None
    p99_ms: float | None = None
    drift_checked_at: datetime | None = None
    drifted: list[str] = field(default_factory=list)
    tested: int = 0
    quality_metric: str | None = None
    quality: float | None = None
    labelled: int = 0
    coverage: float | None = None
    alerts: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["drift_checked_at"] = self.drift_checked_at.isoformat() if self.drift_checked_at else None
        return out


def endpoint_status(
    meta: MetaStore, lake: Lake, *, window: timedelta = timedelta(hours=1)
) -> list[EndpointStatus]:
    """Every known endpoint (registered, logging predictions, or with reports), one row per
    model version it reported on; traffic figures cover the last ``window``."""
    now = utcnow()
    drift = latest_drift_reports(meta)
    quality = latest_quality_reports(meta)
    alerts = list_alerts(meta, status=FIRING)
    names = {r.name for r in list_registered(meta, "endpoint")}
    names |= {str(r.subject["endpoint"]) for r in drift} | {q.endpoint for q in quality}
    logged = predictions.exists(lake)
    if logged:
        names |= set(predictions.endpoints(lake, since=now - window))
    rows: dict[tuple[str, int | None], EndpointStatus] = {}
    for name in sorted(names):
        traffic = predictions.service_stats(lake, name, now - window, now) if logged else None
        versions = sorted(
            {r.subject.get("model_version") for r in drift if r.subject.get("endpoint") == name}
            | {q.model_version for q in quality if q.endpoint == name},
            key=lambda v: -(v or 0),
        ) or [None]
        for i, v in enumerate(versions):
            row = rows[(name, v)] = EndpointStatus(name, v)
            if traffic is not None and i == 0:  # traffic is the endpoint's, shown once
                row.requests, row.error_rate, row.p99_ms = (
                    traffic.requests,
                    traffic.error_rate,
                    traffic.p99_ms,
                )
            row.alerts = [a.rule for a in alerts if a.subject == f"endpoint:{name}"] if i == 0 else []
    for r in drift:
        row = rows[(str(r.subject["endpoint"]), r.subject.get("model_version"))]
        row.drift_checked_at, row.drifted, row.tested = (
            r.computed_at,
            [f.feature for f in r.drifted],
            len(r.tested),
        )
    for q in quality:
        row = rows[(q.endpoint, q.model_version)]
        row.labelled, row.coverage = q.labelled, q.coverage
        for metric in HEADLINE:
            if q.metrics.get(metric) is not None:
                row.quality_metric, row.quality = metric, float(q.metrics[metric])  # type: ignore[arg-type]
                break
    return list(rows.values())
