"""The endpoints one server serves: loaded when it starts, looked up per request.

Knows nothing of HTTP (:mod:`gyre.serving.http` is the ASGI side). Every endpoint registered
with ``gyre apply`` is loaded; one whose model (or features) cannot be loaded is kept with the
reason, so readiness can say which and why while the others serve.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from gyre.errors import GyreError
from gyre.meta import MetaStore
from gyre.meta.registry import list_registered
from gyre.serving.endpoint import CompiledEndpoint
from gyre.serving.log import declare_dataset
from gyre.serving.metrics import ServingMetrics
from gyre.store import ArtifactStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readiness:
    """Whether every declared endpoint serves; ``problems`` maps the others to why not."""

    ready: bool
    loaded: list[str]
    problems: dict[str, str]
    error: str | None = None

    def message(self) -> str:
        if self.ready:
            return "Every endpoint is loaded."
        if self.error is not None:
            return self.error
        return (
            "; ".join(
                f"Endpoint '{name}' is not serving: {why.rstrip('.')}" for name, why in self.problems.items()
            )
            + "."
        )


class Serving:
    """Loads and holds the project's endpoints.

    Args:
        meta: the metadata store (registry of endpoints and models).
        store: the artifact store holding model packages.
        features: the project's :class:`~gyre.features.store.FeatureStore`.
        push: the push buffer predictions are logged through (None: no log, for tests).
        cache_dir: where model packages are downloaded to.
        registry: the server's Prometheus registry.
    """

    def __init__(
        self,
        meta: MetaStore,
        store: ArtifactStore,
        features: Any,
        push: Any,
        *,
        cache_dir: Path,
        registry: CollectorRegistry,
    ) -> None:
        self.meta, self.store, self.features, self.push = meta, store, features, push
        self.cache_dir = cache_dir
        self.metrics = ServingMetrics(registry)
        self.endpoints: dict[str, CompiledEndpoint] = {}
        self.failed: dict[str, str] = {}
        self.error: str | None = "The endpoints are not loaded yet."

    def load(self) -> None:
        """Load every registered endpoint; what fails is kept (per endpoint) for readiness, not raised."""
        try:
            registered = list_registered(self.meta, "endpoint")
            if registered and self.push is not None:  # a server without endpoints logs nothing
                declare_dataset(self.meta)
        except Exception as exc:
            why = exc.message if isinstance(exc, GyreError) else f"{type(exc).__name__}: {exc}"
            self.error = f"The endpoints could not be read from the registry: {why}"
            log.error("%s", self.error)
            return
        for record in registered:
            self.load_endpoint(record.name, record.spec)
        self.error = None

    def load_endpoint(self, name: str, spec: dict[str, Any]) -> CompiledEndpoint | None:
        """Load one endpoint from its registered spec; on failure record why and return None."""
        try:
            endpoint = CompiledEndpoint.load(
                name,
                spec,
                meta=self.meta,
                store=self.store,
                features=self.features,
                cache_dir=self.cache_dir,
                push=self.push,
                metrics=self.metrics,
            )
        except Exception as exc:
            why = exc.message if isinstance(exc, GyreError) else f"{type(exc).__name__}: {exc}"
            log.error("Endpoint '%s' (model %s) could not be loaded: %s", name, spec.get("model"), why)
            self.failed[name] = f"its model {spec.get('model')} could not be loaded: {why}"
            self.metrics.ready.labels(name).set(0)
            return None
        old = self.endpoints.get(name)
        self.endpoints[name] = endpoint
        self.failed.pop(name, None)
        self.metrics.ready.labels(name).set(1)
        if old is not None:
            old.close()
        log.info(
            "Endpoint '%s' serves %s version %s (%s)",
            name,
            endpoint.model_name,
            endpoint.model_version,
            "inline" if endpoint.executor is None else "on its worker thread",
        )
        return endpoint

    def readiness(self) -> Readiness:
        ready = self.error is None and not self.failed
        return Readiness(ready, sorted(self.endpoints), dict(self.failed), self.error)

    def close(self) -> None:
        for endpoint in self.endpoints.values():
            endpoint.close()
