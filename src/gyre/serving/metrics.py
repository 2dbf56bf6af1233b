"""Prometheus metrics of the prediction routes, per endpoint and model version.

They live in the server's one registry, exposed by ``GET /metrics``. The labelled children are
made when an endpoint loads, so a request only increments and observes (no label lookup), and
only declared endpoints get series (a request naming anything else cannot grow the registry).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 10_000)
LABELS = ("endpoint", "model", "model_version")


class ServingMetrics:
    """The metric families, registered once per server."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "gyre_predict_requests", "Prediction requests answered.", LABELS, registry=registry
        )
        self.errors = Counter(
            "gyre_predict_errors",
            "Prediction requests answered with an error, by HTTP status.",
            [*LABELS, "status"],
            registry=registry,
        )
        self.rows = Counter("gyre_predict_rows", "Rows predicted.", LABELS, registry=registry)
        self.latency = Histogram(
            "gyre_predict_latency_seconds",
            "Time from a prediction request's arrival to its answer.",
            LABELS,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "gyre_predict_batch_size",
            "Rows per model call (concurrent requests are batched together).",
            LABELS,
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.ready = Gauge(
            "gyre_endpoint_ready", "1 when the endpoint's model is loaded and serving.", ["endpoint"],
            registry=registry,
        )  # fmt: skip

    def for_endpoint(self, endpoint: str, model: str, version: int | None) -> EndpointMetrics:
        return EndpointMetrics(self, (endpoint, model, "" if version is None else str(version)))


class EndpointMetrics:
    """One endpoint's children of every family."""

    def __init__(self, families: ServingMetrics, labels: tuple[str, str, str]) -> None:
        self._families = families
        self._labels = labels
        self.requests = families.requests.labels(*labels)
        self.rows = families.rows.labels(*labels)
        self.latency = families.latency.labels(*labels)
        self.batch_size = families.batch_size.labels(*labels)
        self._errors: dict[int, Counter] = {}

    def error(self, status: int) -> None:
        child = self._errors.get(status)
        if child is None:
            child = self._errors[status] = self._families.errors.labels(*self._labels, str(status))
        child.inc()
