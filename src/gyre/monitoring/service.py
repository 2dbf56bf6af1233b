"""Drift over the prediction log and between dataset versions, kept as a time series.

:func:`endpoint_drift` reads a window of an endpoint's logged predictions, splits it by the
model version that made them (a canary serves two), and compares each version's rows with
that version's reference profile; :func:`dataset_drift` compares what two dataset versions
added. Each comparison is a :class:`~gyre.monitoring.drift.DriftReport`, stored in
``drift_reports`` (one row per comparison, its per-feature results as JSON):
:func:`list_drift_reports` reads the series back, newest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from gyre.data import catalog
from gyre.data.lake import Lake
from gyre.data.profiles import Profile, profile
from gyre.errors import InvalidArgument, NotFound
from gyre.ids import new_id, utcnow
from gyre.meta import MetaStore
from gyre.meta.monitoring_schema import DriftReportRecord
from gyre.monitoring import predictions
from gyre.monitoring.definitions import monitor_spec
from gyre.monitoring.drift import DriftConfig, DriftReport, FeatureDrift, Reference, compare
from gyre.monitoring.reference import get_reference
from gyre.store import TreeStore


def endpoint_drift(
    meta: MetaStore,
    lake: Lake,
    blobs: TreeStore,
    endpoint: str,
    *,
    window: timedelta | None = None,
    end: datetime | None = None,
    config: DriftConfig | None = None,
    save: bool = True,
) -> list[DriftReport]:
    """Drift of ``endpoint``'s predictions in ``[end - window, end)`` against each serving
    model version's reference, one report per version (newest version first).

    Args:
        window: the span to test (default: the endpoint's monitor, else one hour).
        end: the end of the window (default: now).
        config: the tests (default: the endpoint's registered monitor, else the defaults).
        save: store the reports in the drift time series.

    Raises:
        NotFound: there is no prediction log, or the endpoint logged nothing in the window
            and has no history either.
    """
    spec = monitor_spec(meta, endpoint)
    window = window or spec.window
    config = config or spec.drift
    start, end = predictions.window_bounds(window, end)
    predictions.require(lake)
    by_version = predictions.counts(lake, endpoint, start, end)
    if not by_version:
        known = predictions.endpoints(lake)
        if endpoint not in known:
            raise NotFound(
                f"Endpoint '{endpoint}' has no predictions in the log; endpoints with predictions: "
                f"{', '.join(known) or 'none'}."
            )
        by_version = _last_versions(meta, endpoint)
    reports = []
    for (model, version), _ in sorted(by_version.items(), key=lambda kv: -kv[0][1]):
        subject = {"endpoint": endpoint, "model": model, "model_version": version}
        try:
            ref = get_reference(meta, blobs, model, version)
        except NotFound as exc:
            report = DriftReport(subject, [], 0, start, end)
            report.subject["error"] = exc.message
            reports.append(report)
            continue
        features = [c for c in ref.columns if c != "prediction"]
        rows = predictions.read_window(lake, endpoint, start, end, model_version=version, features=features)
        report = compare(ref, rows, config, subject=subject)
        report.window_start, report.window_end = start, end
        reports.append(report)
    if save:
        now = utcnow()  # one instant for the batch: the versions of one evaluation
        for r in reports:
            if "error" not in r.subject:
                r.computed_at = now
                save_report(meta, r)
    return reports


def _last_versions(meta: MetaStore, endpoint: str) -> dict[tuple[str, int], int]:
    """The versions the endpoint's last stored reports covered (an idle window still reports)."""
    with meta.read() as s:
        last = s.scalar(
            select(func.max(DriftReportRecord.computed_at)).where(DriftReportRecord.endpoint == endpoint)
        )
        if last is None:
            return {}
        rows = s.execute(
            select(DriftReportRecord.model_name, DriftReportRecord.model_version).where(
                DriftReportRecord.endpoint == endpoint, DriftReportRecord.computed_at == last
            )
        ).all()
    return {(m, v): 0 for m, v in rows if m is not None and v is not None}


def dataset_drift(
    meta: MetaStore,
    lake: Lake,
    name: str,
    from_version: int,
    to_version: int,
    *,
    config: DriftConfig | None = None,
    columns: Sequence[str] | None = None,
    save: bool = True,
) -> DriftReport:
    """Drift between the rows two versions of dataset ``name`` added (``from_version`` is the
    reference). Each side is the version's profile in the catalog, or, for a version committed
    without one (pushed records), a profile of the files that version added."""
    if from_version == to_version:
        raise InvalidArgument(
            f"--from and --to are both version {from_version}; compare two different versions."
        )
    ref = _version_profile(meta, lake, name, from_version)
    cur = _version_profile(meta, lake, name, to_version)
    subject = {"dataset": name, "from_version": from_version, "to_version": to_version}
    report = compare(Reference(ref), cur, config, columns=columns, subject=subject)
    if save:
        save_report(meta, report)
    return report


def _version_profile(meta: MetaStore, lake: Lake, name: str, version: int) -> Profile:
    info = catalog.get_version(meta, name, version)
    if info.profile is not None:
        return Profile.from_dict(info.profile)
    files = lake.data_files(name, since=version - 1, upto=version)
    return profile(lake.open_files(name, [f for f in files if f.version == version]).to_batches())


# -- the time series -------------------------------------------------------------------------


def save_report(meta: MetaStore, report: DriftReport) -> str:
    """Store ``report`` in the drift time series; returns its id."""
    s = report.subject
    report.id = report.id or new_id()
    report.computed_at = report.computed_at or utcnow()
    with meta.write() as uow:
        uow.session.add(
            DriftReportRecord(
                id=report.id,
                endpoint=s.get("endpoint"),
                model_name=s.get("model"),
                model_version=s.get("model_version"),
                dataset=s.get("dataset"),
                from_version=s.get("from_version"),
                to_version=s.get("to_version"),
                window_start=report.window_start,
                window_end=report.window_end,
                computed_at=report.computed_at,
                rows=report.rows,
                tested=len(report.tested),
                drifted=len(report.drifted),
                insufficient=len(report.insufficient),
                results=[f.to_dict() for f in report.features],
            )
        )
        if report.drifted:
            where = s.get("endpoint") or s.get("dataset")
            uow.record(
                "drift.detected",
                f"endpoint:{where}" if s.get("endpoint") else f"dataset:{where}",
                {**s, "report": report.id, "features": [f.feature for f in report.drifted]},
            )
    return report.id


def list_drift_reports(
    meta: MetaStore,
    *,
    endpoint: str | None = None,
    model_version: int | None = None,
    dataset: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[DriftReport]:
    """Stored reports, newest first."""
    q = select(DriftReportRecord)
    if endpoint is not None:
        q = q.where(DriftReportRecord.endpoint == endpoint)
    if model_version is not None:
        q = q.where(DriftReportRecord.model_version == model_version)
    if dataset is not None:
        q = q.where(DriftReportRecord.dataset == dataset)
    if since is not None:
        q = q.where(DriftReportRecord.computed_at >= since)
    q = q.order_by(DriftReportRecord.computed_at.desc(), DriftReportRecord.id.desc()).limit(limit)
    with meta.read() as s:
        return [_report(r) for r in s.scalars(q)]


def latest_drift_reports(meta: MetaStore) -> list[DriftReport]:
    """The newest report of every (endpoint, model version)."""
    with meta.read() as s:
        newest = (
            select(
                DriftReportRecord.endpoint,
                DriftReportRecord.model_version,
                func.max(DriftReportRecord.computed_at).label("at"),
            )
            .where(DriftReportRecord.endpoint.is_not(None))
            .group_by(DriftReportRecord.endpoint, DriftReportRecord.model_version)
            .subquery()
        )
        rows = s.scalars(
            select(DriftReportRecord)
            .join(
                newest,
                (DriftReportRecord.endpoint == newest.c.endpoint)
                & (DriftReportRecord.model_version == newest.c.model_version)
                & (DriftReportRecord.computed_at == newest.c.at),
            )
            .order_by(DriftReportRecord.endpoint, DriftReportRecord.model_version.desc())
        ).all()
        seen: set[tuple[Any, Any]] = set()
        out = []
        for r in rows:  # two reports computed in the same instant: keep one
            if (r.endpoint, r.model_version) not in seen:
                seen.add((r.endpoint, r.model_version))
                out.append(_report(r))
        return out


def _report(r: DriftReportRecord) -> DriftReport:
    if r.dataset is not None:
        subject: dict[str, Any] = {
            "dataset": r.dataset,
            "from_version": r.from_version,
            "to_version": r.to_version,
        }
    else:
        subject = {"endpoint": r.endpoint, "model": r.model_name, "model_version": r.model_version}
    return DriftReport(
        subject=subject,
        features=[FeatureDrift.from_dict(f) for f in r.results or []],
        rows=r.rows,
        window_start=r.window_start,
        window_end=r.window_end,
        computed_at=r.computed_at,
        id=r.id,
    )
