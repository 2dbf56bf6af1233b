"""``gyre.Monitor``: how an endpoint is monitored, declared in the project's definitions.

A monitor sets, for one endpoint, the drift window and tests (per-kind defaults and
per-feature overrides), and how live quality reads the labels (the task, the cut-off that
turns a probability into a class). ``gyre apply`` registers it (kind ``monitor``); an
endpoint without one is monitored with the defaults. Alert rules are declared the same way
(:class:`gyre.monitoring.alerts.AlertRule`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

from gyre.definitions import Definition, check_name, format_duration, parse_duration
from gyre.errors import InvalidArgument, NotFound
from gyre.meta import MetaStore
from gyre.monitoring.drift import DEFAULT_BINS, DEFAULT_MIN_COUNT, DriftConfig, DriftTest

TASKS = ("binary", "multiclass", "regression")
DEFAULT_WINDOW = timedelta(hours=1)
DEFAULT_QUALITY_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class MonitorSpec:
    """A monitor as the registry holds it, ready to use."""

    endpoint: str
    window: timedelta = DEFAULT_WINDOW
    quality_window: timedelta = DEFAULT_QUALITY_WINDOW
    drift: DriftConfig = field(default_factory=DriftConfig)
    task: str | None = None
    cutoff: float = 0.5

    @classmethod
    def from_spec(cls, endpoint: str, spec: Mapping[str, Any]) -> MonitorSpec:
        return cls(
            endpoint=endpoint,
            window=timedelta(seconds=spec.get("window_s", DEFAULT_WINDOW.total_seconds())),
            quality_window=timedelta(
                seconds=spec.get("quality_window_s", DEFAULT_QUALITY_WINDOW.total_seconds())
            ),
            drift=DriftConfig.from_dict(spec.get("drift")),
            task=spec.get("task"),
            cutoff=float(spec.get("cutoff", 0.5)),
        )


class Monitor(Definition):
    """Drift and quality monitoring of one endpoint.

    Args:
        endpoint: the endpoint's name (the monitor is registered under it).
        window: the span of predictions each drift test compares with the reference.
        quality_window: the span live quality is computed over (labels come late: longer).
        numeric: the default test of numeric features (``"ks"``, or ``"psi"``, ``"chi2"``,
            ``"jensen_shannon"``, ``"wasserstein"``; ``"psi:0.25"`` sets the threshold too).
        categorical: the default test of categorical features (``"chi2"``, ``"psi"`` or
            ``"jensen_shannon"``).
        features: per-feature tests, name -> test, overriding the defaults.
        min_count: fewer values than this on either side is reported as insufficient data.
        bins: reference quantile bins for binned tests of numeric features.
        exclude: features not to test.
        task: ``"binary"``, ``"multiclass"`` or ``"regression"``; inferred from the labels
            when omitted.
        cutoff: a binary classifier's probability at or above which it predicts class 1
            (for precision, recall and accuracy).

    Example::

        fraud_monitor = gyre.Monitor(
            "fraud", window="1h", features={"amount": "wasserstein:0.2"}, task="binary",
        )
    """

    kind: ClassVar[str] = "monitor"

    def __init__(
        self,
        endpoint: str,
        *,
        window: str | int | float | timedelta = DEFAULT_WINDOW,
        quality_window: str | int | float | timedelta = DEFAULT_QUALITY_WINDOW,
        numeric: str | DriftTest = "ks",
        categorical: str | DriftTest = "chi2",
        features: Mapping[str, str | DriftTest] | None = None,
        min_count: int = DEFAULT_MIN_COUNT,
        bins: int = DEFAULT_BINS,
        exclude: Iterable[str] = (),
        task: str | None = None,
        cutoff: float = 0.5,
    ) -> None:
        self.name = check_name("Monitor", endpoint)
        self.window = parse_duration(window, f"Monitor '{endpoint}': window")
        self.quality_window = parse_duration(quality_window, f"Monitor '{endpoint}': quality_window")
        self.drift = DriftConfig(
            numeric=DriftTest.parse(numeric),
            categorical=DriftTest.parse(categorical),
            features={k: DriftTest.parse(v) for k, v in (features or {}).items()},
            min_count=min_count,
            bins=bins,
            exclude=tuple(exclude),
        )
        if task is not None and task not in TASKS:
            raise InvalidArgument(
                f"Monitor '{endpoint}': task must be one of {', '.join(TASKS)}, got {task!r}."
            )
        if not 0 < cutoff < 1:
            raise InvalidArgument(f"Monitor '{endpoint}': cutoff must be between 0 and 1, got {cutoff!r}.")
        self.task, self.cutoff = task, float(cutoff)

    def __repr__(self) -> str:
        return f"Monitor({self.name!r}, window={format_duration(self.window)!r})"

    def spec(self) -> dict[str, Any]:
        return {
            "window_s": int(self.window.total_seconds()),
            "quality_window_s": int(self.quality_window.total_seconds()),
            "drift": self.drift.to_dict(),
            "task": self.task,
            "cutoff": self.cutoff,
        }


def monitor_spec(meta: MetaStore, endpoint: str) -> MonitorSpec:
    """The registered monitor of ``endpoint``, or the defaults if it has none."""
    from gyre.meta.registry import get_registered

    try:
        reg = get_registered(meta, "monitor", endpoint)
    except NotFound:
        return MonitorSpec(endpoint)
    return MonitorSpec.from_spec(endpoint, reg.spec)
