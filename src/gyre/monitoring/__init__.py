"""Monitoring: reference profiles, drift, feedback and live quality, alerts that act.

* :mod:`~gyre.monitoring.stats` and :mod:`~gyre.monitoring.drift` — the two-sample tests
  (KS, chi-square, PSI, Jensen-Shannon, Wasserstein) and drift reports per feature;
* :mod:`~gyre.monitoring.reference` — the training-data and prediction profiles stored with a
  model version when it is registered;
* :mod:`~gyre.monitoring.predictions` — windows of the prediction log (the one module that
  knows its columns);
* :mod:`~gyre.monitoring.service` — drift over log windows and between dataset versions, kept
  as a time series;
* :mod:`~gyre.monitoring.feedback` and :mod:`~gyre.monitoring.quality` — labels joined to
  their predictions, and live quality with label coverage;
* :mod:`~gyre.monitoring.alerts` and :mod:`~gyre.monitoring.engine` — alert rules, their
  state and history, and their actions (log, webhook, pipeline run, rollback);
* :mod:`~gyre.monitoring.metrics` — the Prometheus figures; :mod:`~gyre.monitoring.status` —
  one summary per endpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gyre._lazy import lazy_exports

_EXPORTS = {
    "AlertRule": "gyre.monitoring.alerts",
    "DriftConfig": "gyre.monitoring.drift",
    "DriftTest": "gyre.monitoring.drift",
    "DriftedFeatures": "gyre.monitoring.alerts",
    "ErrorRateAbove": "gyre.monitoring.alerts",
    "FeatureViewStale": "gyre.monitoring.alerts",
    "LatencyAbove": "gyre.monitoring.alerts",
    "Log": "gyre.monitoring.alerts",
    "Monitor": "gyre.monitoring.definitions",
    "QualityAbove": "gyre.monitoring.alerts",
    "QualityBelow": "gyre.monitoring.alerts",
    "Rollback": "gyre.monitoring.alerts",
    "RunPipeline": "gyre.monitoring.alerts",
    "Webhook": "gyre.monitoring.alerts",
    "record_reference": "gyre.monitoring.reference",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from gyre.monitoring.alerts import AlertRule as AlertRule
    from gyre.monitoring.alerts import DriftedFeatures as DriftedFeatures
    from gyre.monitoring.alerts import ErrorRateAbove as ErrorRateAbove
    from gyre.monitoring.alerts import FeatureViewStale as FeatureViewStale
    from gyre.monitoring.alerts import LatencyAbove as LatencyAbove
    from gyre.monitoring.alerts import Log as Log
    from gyre.monitoring.alerts import QualityAbove as QualityAbove
    from gyre.monitoring.alerts import QualityBelow as QualityBelow
    from gyre.monitoring.alerts import Rollback as Rollback
    from gyre.monitoring.alerts import RunPipeline as RunPipeline
    from gyre.monitoring.alerts import Webhook as Webhook
    from gyre.monitoring.definitions import Monitor as Monitor
    from gyre.monitoring.drift import DriftConfig as DriftConfig
    from gyre.monitoring.drift import DriftTest as DriftTest
    from gyre.monitoring.reference import record_reference as record_reference

__getattr__, __dir__ = lazy_exports("gyre.monitoring", globals(), _EXPORTS)
