"""The endpoints one server serves: loaded when it starts, kept in step with the registry.

Knows nothing of HTTP (:mod:`gyre.serving.http` is the ASGI side). Every endpoint registered
with ``gyre apply`` is loaded; one whose model (or features) cannot be loaded is kept with the
reason, so readiness can say which and why while the others serve.

:meth:`Serving.sync` runs when the server starts and then every second on a background thread:
it loads endpoints applied since, follows alias moves (a promoted ``champion``) and the traffic
splits of running deployments, loading new model versions off the event loop and swapping the
routes in one assignment. A request holds the version it was routed to until it is answered,
and a version leaving service is closed only once it is idle, so a swap under load fails no
request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from gyre.definitions import spec_hash
from gyre.errors import GyreError
from gyre.meta import MetaStore
from gyre.meta.registry import list_registered
from gyre.models import registry as models
from gyre.serving.endpoint import CompiledEndpoint
from gyre.serving.log import declare_dataset
from gyre.serving.metrics import ServingMetrics
from gyre.serving.routing import Route, Split
from gyre.store import ArtifactStore

log = logging.getLogger(__name__)

SYNC_EVERY_S = 1.0
RETRY_LOAD_S = 30.0  # a version that failed to load is tried again after this long
CLOSE_AFTER_S = 5.0  # a retired version is closed once idle and retired this long

_Key = tuple[str, int, str]  # (endpoint, model version, spec hash)


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
    """Loads and holds the project's endpoints and routes their traffic.

    Args:
        meta: the metadata store (registry of endpoints and models).
        store: the artifact store holding model packages.
        features: the project's :class:`~gyre.features.store.FeatureStore`.
        push: the push buffer predictions are logged through (None: no log, for tests).
        cache_dir: where model packages are downloaded to.
        registry: the server's Prometheus registry.
        traffic: the running deployments' splits by endpoint (see :mod:`gyre.deploy`); None:
            every endpoint serves the version its model reference resolves to.
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
        traffic: Callable[[], dict[str, Split]] | None = None,
    ) -> None:
        self.meta, self.store, self.features, self.push = meta, store, features, push
        self.cache_dir = cache_dir
        self.metrics = ServingMetrics(registry)
        self.traffic = traffic
        self.routes: dict[str, Route] = {}
        self.endpoints: dict[str, CompiledEndpoint] = {}
        """Each endpoint's primary version (what it serves outside a deployment's split)."""
        self.failed: dict[str, str] = {}
        self.error: str | None = "The endpoints are not loaded yet."
        self._loaded: dict[_Key, CompiledEndpoint] = {}
        self._load_errors: dict[_Key, tuple[float, str]] = {}
        self._retired: list[tuple[float, CompiledEndpoint]] = []
        self._declared = False  # the prediction log's dataset, once per server
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self) -> None:
        """Load every registered endpoint; what fails is kept (per endpoint) for readiness, not raised."""
        self.sync()

    def start(self, every_s: float = SYNC_EVERY_S) -> None:
        """Keep in step with the registry and the deployments every ``every_s`` seconds."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(every_s):
                self.sync()

        self._thread = threading.Thread(target=loop, name="gyre-serving-sync", daemon=True)
        self._thread.start()

    def sync(self) -> None:
        """Load what the registry and the deployments now ask for and swap the routes."""
        with self._lock:
            try:
                registered = list_registered(self.meta, "endpoint")
                if registered and self.push is not None and not self._declared:
                    declare_dataset(self.meta, self.push.lake)  # a server without endpoints logs nothing
                    self._declared = True
                splits = self.traffic() if self.traffic is not None else {}
            except Exception as exc:
                why = exc.message if isinstance(exc, GyreError) else f"{type(exc).__name__}: {exc}"
                if not self.routes:
                    self.error = f"The endpoints could not be read from the registry: {why}"
                log.error("The endpoints could not be read from the registry: %s", why)
                return
            routes: dict[str, Route] = {}
            failed: dict[str, str] = {}
            for record in registered:
                route, problem = self._route(record.name, record.spec, splits.get(record.name))
                if route is not None:
                    routes[record.name] = route
                if problem is not None:
                    failed[record.name] = problem
                self.metrics.ready.labels(record.name).set(1 if route is not None else 0)
            for name in set(self.routes) - {r.name for r in registered}:
                self.metrics.ready.remove(name)
            self._swap(routes, failed)
            self.error = None

    def _route(self, name: str, spec: dict[str, Any], split: Split | None) -> tuple[Route | None, str | None]:
        """The endpoint's route, and why it is not serving (or not as asked) if so."""
        old = self.routes.get(name)
        digest = spec_hash(spec)
        try:
            baseline = (
                split.baseline if split else models.resolve(self.meta, f"models:/{spec['model']}").version
            )
        except Exception as exc:
            why = exc.message if isinstance(exc, GyreError) else f"{type(exc).__name__}: {exc}"
            return (
                old,
                None if old is not None else f"its model {spec.get('model')} could not be resolved: {why}",
            )
        primary, why = self._version(name, spec, baseline, digest)
        if primary is None:
            if old is not None:  # keep serving what was loaded; the log says why the change failed
                return old, None
            return None, f"its model {spec.get('model')} could not be loaded: {why}"
        if split is None:
            return Route(primary), None
        candidate, why = self._version(name, spec, split.candidate, digest)
        if candidate is None:  # the deployment's analysis sees no candidate traffic and says so
            log.error("Endpoint '%s': candidate version %s is not served: %s", name, split.candidate, why)
            return Route(primary), None
        if split.shadow:
            return Route(primary, shadow=candidate, split=split), None
        return Route(primary, candidate, split.weight, split=split), None

    def _version(
        self, name: str, spec: dict[str, Any], version: int, digest: str
    ) -> tuple[CompiledEndpoint | None, str]:
        key = (name, version, digest)
        loaded = self._loaded.get(key)
        if loaded is not None:
            return loaded, ""
        failure = self._load_errors.get(key)
        if failure is not None and time.monotonic() - failure[0] < RETRY_LOAD_S:
            return None, failure[1]
        try:
            endpoint = CompiledEndpoint.load(
                name,
                spec,
                version=version,
                meta=self.meta,
                store=self.store,
                features=self.features,
                cache_dir=self.cache_dir,
                push=self.push,
                metrics=self.metrics,
            )
        except Exception as exc:
            why = exc.message if isinstance(exc, GyreError) else f"{type(exc).__name__}: {exc}"
            log.error(
                "Endpoint '%s' (model %s version %s) could not be loaded: %s",
                name,
                spec.get("model"),
                version,
                why,
            )
            self._load_errors[key] = (time.monotonic(), why)
            return None, why
        self._load_errors.pop(key, None)
        self._loaded[key] = endpoint
        log.info(
            "Endpoint '%s' loaded %s version %s (%s)",
            name,
            endpoint.model_name,
            endpoint.model_version,
            "inline" if endpoint.executor is None else "on its worker thread",
        )
        return endpoint, ""

    def _swap(self, routes: dict[str, Route], failed: dict[str, str]) -> None:
        for name, route in routes.items():
            old = self.routes.get(name)
            if old is None or old.primary is not route.primary or old.split != route.split:
                served = ", ".join(f"version {e.model_version}" for e in route.versions())
                log.info("Endpoint '%s' now serves %s%s", name, route.primary.model_name, f" {served}")
        self.routes = routes
        self.endpoints = {name: route.primary for name, route in routes.items()}
        self.failed = failed
        in_use = {id(e) for route in routes.values() for e in route.versions()}
        now = time.monotonic()
        for key, endpoint in list(self._loaded.items()):
            if id(endpoint) not in in_use:
                del self._loaded[key]
                self._retired.append((now, endpoint))
        keep = []
        for retired_at, endpoint in self._retired:
            if now - retired_at >= CLOSE_AFTER_S and endpoint.idle:
                endpoint.close()
            else:
                keep.append((retired_at, endpoint))
        self._retired = keep

    def route(self, name: str) -> Route | None:
        return self.routes.get(name)

    def readiness(self) -> Readiness:
        ready = self.error is None and not self.failed
        return Readiness(ready, sorted(self.endpoints), dict(self.failed), self.error)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            for endpoint in self._loaded.values():
                endpoint.close()
            for _, endpoint in self._retired:
                endpoint.close()
