"""Prometheus figures of monitoring, read from the stored time series when Prometheus scrapes.

Per endpoint and model version, from the newest drift and quality reports: drift score per
feature (the p-value for KS and chi-square, else the statistic), whether each feature drifted,
how many drifted; live quality per metric, label coverage and labelled predictions; and one
gauge per firing alert. Nothing is computed at scrape time beyond reading those rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily

from gyre.meta import MetaStore

log = logging.getLogger(__name__)


class MonitoringCollector:
    """Collects the ``gyre_drift_*``, ``gyre_live_quality``, ``gyre_label_*`` and
    ``gyre_alert_firing`` gauges."""

    def __init__(self, meta: MetaStore) -> None:
        self.meta = meta

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from gyre.monitoring.engine import FIRING, list_alerts
        from gyre.monitoring.quality import latest_quality_reports
        from gyre.monitoring.service import latest_drift_reports

        ev = ["endpoint", "model_version"]
        score = GaugeMetricFamily(
            "gyre_drift_score",
            "Drift test result per feature: the p-value (ks, chi2), else the statistic.",
            labels=[*ev, "feature", "method"],
        )
        detected = GaugeMetricFamily(
            "gyre_drift_detected", "1 when the feature drifted in the latest window.", labels=[*ev, "feature"]
        )
        drifted = GaugeMetricFamily(
            "gyre_drift_features_drifted", "Features drifted in the latest window.", labels=ev
        )
        tested = GaugeMetricFamily(
            "gyre_drift_features_tested", "Features with enough data to test.", labels=ev
        )
        quality = GaugeMetricFamily(
            "gyre_live_quality", "Live quality from the labels so far.", labels=[*ev, "metric"]
        )
        coverage = GaugeMetricFamily(
            "gyre_label_coverage", "Share of the window's predictions labelled.", labels=ev
        )
        labelled = GaugeMetricFamily(
            "gyre_labelled_predictions", "Labelled predictions in the window.", labels=ev
        )
        firing = GaugeMetricFamily(
            "gyre_alert_firing", "1 while the alert is firing.", labels=["rule", "subject"]
        )
        try:
            for r in latest_drift_reports(self.meta):
                labels = [str(r.subject.get("endpoint")), str(r.subject.get("model_version"))]
                drifted.add_metric(labels, len(r.drifted))
                tested.add_metric(labels, len(r.tested))
                for f in r.features:
                    if f.status in ("drift", "ok") and f.score is not None:
                        score.add_metric([*labels, f.feature, f.method], f.score)
                        detected.add_metric([*labels, f.feature], 1.0 if f.drifted else 0.0)
            for q in latest_quality_reports(self.meta):
                labels = [q.endpoint, str(q.model_version)]
                labelled.add_metric(labels, q.labelled)
                if q.coverage is not None:
                    coverage.add_metric(labels, q.coverage)
                for name, value in q.metrics.items():
                    if value is not None:
                        quality.add_metric([*labels, name], float(value))
            for a in list_alerts(self.meta, status=FIRING):
                firing.add_metric([a.rule, a.subject], 1.0)
        except Exception:  # a scrape must not fail because the store is down; the log says why
            log.exception("collecting monitoring figures failed")
        yield from (score, detected, drifted, tested, quality, coverage, labelled, firing)
