"""Gyre: a closed-loop machine-learning platform in one package.

``import gyre`` stays light: the SDK's pieces load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gyre._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> module that defines it; loaded lazily so `import gyre` stays fast.
_EXPORTS = {
    "ActiveRun": "gyre.client.run",
    "Aggregate": "gyre.features.definitions",
    "AlertRule": "gyre.monitoring.alerts",
    "Dataset": "gyre.data.definition",
    "Endpoint": "gyre.serving.definition",
    "Rollout": "gyre.serving.definition",
    "Entity": "gyre.features.definitions",
    "FeatureView": "gyre.features.definitions",
    "Field": "gyre.features.definitions",
    "OnDemandFeature": "gyre.features.definitions",
    "Client": "gyre.client.client",
    "GyreError": "gyre.errors",
    "Monitor": "gyre.monitoring.definitions",
    "active_run": "gyre.client.fluent",
    "connect": "gyre.client.client",
    "gates": "gyre.pipelines",
    "load_model": "gyre.client.fluent",
    "on_demand": "gyre.features.definitions",
    "pipeline": "gyre.pipelines.definition",
    "score": "gyre.serving.batch",
    "set_alias": "gyre.client.fluent",
    "start_run": "gyre.client.fluent",
    "step": "gyre.pipelines.steps",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from gyre.client.client import Client as Client
    from gyre.client.client import connect as connect
    from gyre.client.fluent import active_run as active_run
    from gyre.client.fluent import load_model as load_model
    from gyre.client.fluent import set_alias as set_alias
    from gyre.client.fluent import start_run as start_run
    from gyre.client.run import ActiveRun as ActiveRun
    from gyre.data.definition import Dataset as Dataset
    from gyre.errors import GyreError as GyreError
    from gyre.features.definitions import Aggregate as Aggregate
    from gyre.features.definitions import Entity as Entity
    from gyre.features.definitions import FeatureView as FeatureView
    from gyre.features.definitions import Field as Field
    from gyre.features.definitions import OnDemandFeature as OnDemandFeature
    from gyre.features.definitions import on_demand as on_demand
    from gyre.monitoring.alerts import AlertRule as AlertRule
    from gyre.monitoring.definitions import Monitor as Monitor
    from gyre.pipelines import gates as gates
    from gyre.pipelines.definition import pipeline as pipeline
    from gyre.pipelines.steps import step as step
    from gyre.serving.batch import score as score
    from gyre.serving.definition import Endpoint as Endpoint
    from gyre.serving.definition import Rollout as Rollout


__getattr__, __dir__ = lazy_exports("gyre", globals(), _EXPORTS)
