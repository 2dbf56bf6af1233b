"""``GET /metrics``: Prometheus exposition of the platform's figures.

Figures are read when Prometheus scrapes (a custom collector), not kept up to date in the
background, so an idle server does no work for them. Feature freshness: per online view,
the newest event materialized, its lag behind the clock, how many dataset versions the
online store trails, and whether the view is past its ``max_lag``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

log = logging.getLogger(__name__)

router = APIRouter(tags=["metrics"])


class FeatureFreshnessCollector:
    """Collects ``gyre_feature_view_*`` gauges from the feature store at scrape time."""

    def __init__(self, features: Any) -> None:
        self.features = features

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "gyre_feature_view_lag_seconds", "Clock minus the newest event online.", labels=["view"]
        )
        behind = GaugeMetricFamily(
            "gyre_feature_view_versions_behind",
            "Dataset versions not yet materialized online.",
            labels=["view"],
        )
        stale = GaugeMetricFamily(
            "gyre_feature_view_stale", "1 when the view is past its max_lag.", labels=["view"]
        )
        try:
            rows = self.features.freshness()
        except Exception:  # a scrape must not fail because one store is down; the log says why
            log.exception("collecting feature freshness failed")
            rows = []
        for f in rows:
            if f.lag_s is not None:
                lag.add_metric([f.view], f.lag_s)
            if f.versions_behind is not None:
                behind.add_metric([f.view], f.versions_behind)
            stale.add_metric([f.view], 1.0 if f.stale else 0.0)
        yield from (lag, behind, stale)


def metrics_registry(features: Any) -> CollectorRegistry:
    from gyre.monitoring.metrics import MonitoringCollector  # drift, live quality, alerts

    registry = CollectorRegistry(auto_describe=False)
    registry.register(FeatureFreshnessCollector(features))
    registry.register(MonitoringCollector(features.meta))
    return registry


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """The Prometheus text format."""
    body = await run_in_threadpool(generate_latest, request.app.state.metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
