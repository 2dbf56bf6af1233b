"""Judging one step of a deployment: the candidate against the baseline, from the log.

Both sides are read from the prediction log over the step's window (the candidate's shadow
predictions for a shadow deployment). When the baseline answered too little in the window (the
candidate takes all the traffic: a blue-green switch or a canary's last step), it is compared
with its own traffic before the step (the deployment's earlier steps and one interval before it
started). The checks:

* traffic: each side needs ``min_requests``; below that the verdict is ``wait``, never a
  judgement on a handful of requests;
* error rate: the candidate's may exceed the baseline's by ``max_error_rate_increase``;
* p99 latency: at most ``max_latency_ratio`` times the baseline's, plus 1 ms (not judged for
  a shadow, whose latency includes the served prediction's);
* prediction distribution: the population stability index of the candidate's predictions
  against the baseline's, at most ``max_prediction_psi`` (judged from 100 predictions a side);
* live quality, where labels have arrived for ``min_labels`` predictions of each side with both
  classes: the candidate's AUC may be ``max_auc_drop`` below the baseline's; with fewer labels
  the check is reported as waiting for labels and does not hold the step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from gyre.data.lake import Lake
from gyre.deploy.records import DeploymentInfo
from gyre.meta import MetaStore
from gyre.monitoring import predictions, quality
from gyre.monitoring.stats import bin_counts, psi, quantile_edges

PASS, FAIL, WAIT = "pass", "fail", "wait"
LATENCY_SLACK_MS = 1.0
PSI_BINS = 10
PSI_MIN_ROWS = 100


@dataclass(frozen=True)
class Check:
    """One comparison: ``ok`` is None when it was not judged (and ``note`` says why)."""

    name: str
    baseline: float | None
    candidate: float | None
    limit: float | None
    ok: bool | None
    note: str = ""


@dataclass(frozen=True)
class Analysis:
    """The verdict on a step (``pass``, ``fail`` or ``wait``) and the checks behind it."""

    verdict: str
    checks: list[Check] = field(default_factory=list)
    window_start: datetime | None = None
    window_end: datetime | None = None

    @property
    def summary(self) -> str:
        failed = [c for c in self.checks if c.ok is False]
        if failed:
            return "; ".join(c.note for c in failed)
        waiting = [c.note for c in self.checks if c.ok is None and c.name == "traffic"]
        if waiting:
            return waiting[0]
        return "every check passed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "summary": self.summary,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "checks": [asdict(c) for c in self.checks],
        }


def analyze(meta: MetaStore, lake: Lake, d: DeploymentInfo, now: datetime) -> Analysis:
    """Judge the deployment's current step over ``[step_started_at, now)``."""
    limits = d.checks
    start = d.step_started_at
    shadow = d.strategy == "shadow"
    if not predictions.exists(lake):
        return Analysis(WAIT, [_traffic(0, 0, limits["min_requests"])], start, now)
    served = predictions.version_stats(lake, d.endpoint, start, now, model=d.model_name)
    cand = (
        predictions.version_stats(lake, d.endpoint, start, now, shadow=True, model=d.model_name)
        if shadow
        else served
    ).get(d.candidate_version)
    base = served.get(d.baseline_version)
    base_start, base_end = start, now
    if d.weight >= 100 or base is None or base.requests < limits["min_requests"]:
        # The candidate had all the traffic: the baseline's own traffic before this step (its
        # earlier steps, and an interval before the deployment started).
        span = max(now - start, timedelta(seconds=d.interval_s))
        base_start, base_end = d.created_at - span, start
        before = predictions.version_stats(lake, d.endpoint, base_start, base_end, model=d.model_name)
        base = before.get(d.baseline_version, base)
    n_cand = cand.requests if cand else 0
    n_base = base.requests if base else 0
    checks = [_traffic(n_base, n_cand, limits["min_requests"])]
    if checks[0].ok is None or cand is None or base is None:
        return Analysis(WAIT, checks, start, now)

    checks.append(_error_rate(base, cand, limits["max_error_rate_increase"]))
    if shadow:
        checks.append(
            Check("p99_latency_ms", base.p99_ms, cand.p99_ms, None, None, "not judged for a shadow")
        )
    else:
        checks.append(_latency(base, cand, limits["max_latency_ratio"]))
    checks.append(_distribution(base, cand, limits.get("max_prediction_psi")))
    checks.append(_quality(meta, lake, d, (start, now), (base_start, base_end), limits))
    verdict = FAIL if any(c.ok is False for c in checks) else PASS
    return Analysis(verdict, checks, start, now)


def _traffic(n_base: int, n_cand: int, needed: int) -> Check:
    if n_base >= needed and n_cand >= needed:
        return Check("traffic", n_base, n_cand, needed, True, f"{n_base} and {n_cand} requests")
    return Check(
        "traffic",
        n_base,
        n_cand,
        needed,
        None,
        f"waiting for traffic: baseline {n_base}, candidate {n_cand} of {needed} requests each",
    )


def _error_rate(base: predictions.VersionStats, cand: predictions.VersionStats, increase: float) -> Check:
    b, c = base.error_rate or 0.0, cand.error_rate or 0.0
    limit = b + increase
    ok = c <= limit
    note = f"error rate {c:.2%} vs baseline {b:.2%}" + ("" if ok else f" (over the limit {limit:.2%})")
    return Check("error_rate", b, c, limit, ok, note)


def _latency(base: predictions.VersionStats, cand: predictions.VersionStats, ratio: float) -> Check:
    if base.p99_ms is None or cand.p99_ms is None:
        return Check("p99_latency_ms", base.p99_ms, cand.p99_ms, None, None, "no successful requests to time")
    limit = base.p99_ms * ratio + LATENCY_SLACK_MS
    ok = cand.p99_ms <= limit
    note = f"p99 latency {cand.p99_ms:.1f} ms vs baseline {base.p99_ms:.1f} ms" + (
        "" if ok else f" (over the limit {limit:.1f} ms)"
    )
    return Check("p99_latency_ms", base.p99_ms, cand.p99_ms, limit, ok, note)


def _distribution(
    base: predictions.VersionStats, cand: predictions.VersionStats, limit: float | None
) -> Check:
    b, c = base.predictions, cand.predictions
    if b.dtype.kind != "f" or c.dtype.kind != "f":
        return Check("prediction_psi", None, None, limit, None, "predictions are not numbers")
    if min(len(b), len(c)) < PSI_MIN_ROWS:  # PSI over a few dozen values is mostly noise
        return Check(
            "prediction_psi",
            None,
            None,
            limit,
            None,
            f"prediction PSI not judged: {len(b)} and {len(c)} predictions, {PSI_MIN_ROWS} needed per side",
        )
    edges = quantile_edges(b, PSI_BINS)
    pb, pc_ = bin_counts(edges, b), bin_counts(edges, c)
    value = float(psi(pb / pb.sum(), pc_ / pc_.sum()))
    if limit is None:
        return Check("prediction_psi", 0.0, value, None, None, f"prediction PSI {value:.3f} (not judged)")
    ok = value <= limit
    note = f"prediction PSI {value:.3f}" + ("" if ok else f" (over the limit {limit})")
    return Check("prediction_psi", 0.0, value, limit, ok, note)


def _quality(
    meta: MetaStore,
    lake: Lake,
    d: DeploymentInfo,
    window: tuple[datetime, datetime],
    base_window: tuple[datetime, datetime],
    limits: dict[str, Any],
) -> Check:
    """Live AUC of each side where labels have arrived."""
    need = int(limits["min_labels"])
    base_auc, base_n = _auc(meta, lake, d, d.baseline_version, base_window, shadow=False)
    cand_auc, cand_n = _auc(meta, lake, d, d.candidate_version, window, shadow=d.strategy == "shadow")
    if base_auc is None or cand_auc is None or base_n < need or cand_n < need:
        return Check(
            "live_auc",
            base_auc,
            cand_auc,
            None,
            None,
            f"waiting for labels: baseline {base_n}, candidate {cand_n} of {need} labelled",
        )
    limit = base_auc - float(limits["max_auc_drop"])
    ok = cand_auc >= limit
    note = f"live AUC {cand_auc:.3f} vs baseline {base_auc:.3f}" + (
        "" if ok else f" (below the floor {limit:.3f})"
    )
    return Check("live_auc", base_auc, cand_auc, limit, ok, note)


def _auc(
    meta: MetaStore,
    lake: Lake,
    d: DeploymentInfo,
    version: int,
    window: tuple[datetime, datetime],
    *,
    shadow: bool,
) -> tuple[float | None, int]:
    start, end = window
    if shadow:
        reports = quality.shadow_quality(meta, lake, d.endpoint, window=end - start, end=end)
    else:
        reports = quality.live_quality(meta, lake, d.endpoint, window=end - start, end=end, save=False)
    for r in reports:
        if r.model == d.model_name and r.model_version == version:
            value = r.metrics.get("auc")
            return (float(value) if value is not None and np.isfinite(value) else None), r.labelled
    return None, 0
