"""Feedback: the true label of a logged prediction, arriving after it (minutes to weeks).

Each label is joined to its prediction when it arrives: the prediction log gives the
endpoint, the model version and the output, which are kept with the label (``feedback``),
so live quality is one query. A prediction takes one label; a second is refused unless sent
as a correction, which replaces the first. Every way a label can be wrong has its own answer
and writes nothing:

* an id the log does not have: :class:`~gyre.errors.NotFound` (404);
* an id the log does not have *yet* (its ULID says it was made within ``grace``: the log is
  written in groups, a second or so behind): :class:`NotLoggedYet` (409), retry shortly;
* a second label without ``correction``: :class:`~gyre.errors.AlreadyExists` (409);
* a label of the wrong type for the prediction (a string for a probability, 0.3 for a binary
  classifier), or for a request that failed (it has no output to judge):
  :class:`~gyre.errors.InvalidArgument` (400).

Labels are given for served predictions. A shadow deployment's prediction takes the label of
the served prediction it copies (:func:`labels_of`); its id was never answered, so it cannot be
labelled itself.

:func:`ingest_feedback` takes many labels (a label file) and checks them all before writing
anything: one bad row rejects the file unless ``skip_invalid``. Labels already recorded with
the same value are skipped, so a file can be ingested again safely.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from sqlalchemy import select
from ulid import ULID

from gyre.data.lake import Lake
from gyre.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from gyre.ids import utcnow
from gyre.meta import MetaStore
from gyre.meta.monitoring_schema import FeedbackRecord
from gyre.monitoring import predictions
from gyre.monitoring.definitions import monitor_spec

GRACE = timedelta(minutes=5)
MAX_ID_LENGTH = 64
# How far a prediction's log time may be from its id's ULID time (clock of the same server).
_ID_SLACK = timedelta(minutes=10)


class NotLoggedYet(Conflict):
    """Feedback for a prediction made moments ago, before the log has it (HTTP 409)."""


@dataclass(frozen=True)
class Feedback:
    """One label as given: the prediction's id, the label, and whether it corrects an earlier one."""

    prediction_id: str
    label: Any
    correction: bool = False


@dataclass
class FeedbackResult:
    """A recorded label and the prediction it joined."""

    prediction_id: str
    status: str  # "recorded", "corrected" or "unchanged" (already recorded with this label)
    endpoint: str
    model: str
    model_version: int
    predicted_at: datetime
    prediction: Any
    label: Any
    revision: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "predicted_at": self.predicted_at.isoformat()}


@dataclass
class RowProblem:
    """Why one row of a batch was not recorded."""

    row: int
    prediction_id: Any
    reason: str  # "invalid", "unknown", "not_logged_yet", "duplicate"
    message: str


@dataclass
class IngestReport:
    """What a batch of labels did: recorded, corrected, unchanged, and the rows refused."""

    rows: int
    recorded: int = 0
    corrected: int = 0
    unchanged: int = 0
    problems: list[RowProblem] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "recorded": self.recorded,
            "corrected": self.corrected,
            "unchanged": self.unchanged,
            "skipped": len(self.problems),
            "problems": [p.__dict__ for p in self.problems],
        }


def record_feedback(
    meta: MetaStore,
    lake: Lake,
    prediction_id: Any,
    label: Any,
    *,
    correction: bool = False,
    source: str = "api",
    now: datetime | None = None,
) -> FeedbackResult:
    """Record the true ``label`` of one logged prediction (see the module docstring for the
    answers to bad input)."""
    results, problems = _process(meta, lake, [(0, Feedback(prediction_id, label, correction))], source, now)
    if problems:
        p = problems[0]
        error = {"unknown": NotFound, "not_logged_yet": NotLoggedYet, "duplicate": AlreadyExists}.get(
            p.reason, InvalidArgument
        )
        raise error(p.message)
    return results[0]


def ingest_feedback(
    meta: MetaStore,
    lake: Lake,
    rows: Sequence[Mapping[str, Any]],
    *,
    source: str = "file",
    skip_invalid: bool = False,
    now: datetime | None = None,
) -> IngestReport:
    """Record many labels: rows with ``prediction_id``, ``label`` and optionally ``correction``.

    Every row is checked first. With a problem in any row nothing is written and
    :class:`InvalidArgument` lists the problems (row numbers from 1), unless ``skip_invalid``:
    then the good rows are written and the report lists the rest.
    """
    items: list[tuple[int, Feedback]] = []
    early: list[RowProblem] = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping) or "prediction_id" not in row or "label" not in row:
            early.append(RowProblem(i, None, "invalid", "each row needs prediction_id and label"))
            continue
        corr = row.get("correction", False)
        if isinstance(corr, str):
            corr = corr.strip().lower() in {"1", "true", "yes"}
        items.append((i, Feedback(row["prediction_id"], row["label"], bool(corr))))
    results, problems = _process(
        meta, lake, items, source, now, atomic=not skip_invalid, abort=bool(early) and not skip_invalid
    )
    problems = sorted(early + problems, key=lambda p: p.row)
    if problems and not skip_invalid:
        shown = "\n  - ".join(f"row {p.row}: {p.message}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise InvalidArgument(
            f"{len(problems)} of {len(rows)} feedback rows cannot be recorded; nothing was written "
            f"(pass --skip-invalid to record the others):\n  - {shown}{more}"
        )
    report = IngestReport(rows=len(rows), problems=problems)
    for r in results:
        if r.status == "recorded":
            report.recorded += 1
        elif r.status == "corrected":
            report.corrected += 1
        else:
            report.unchanged += 1
    return report


def get_feedback(meta: MetaStore, prediction_id: str) -> FeedbackResult:
    with meta.read() as s:
        r = s.get(FeedbackRecord, prediction_id)
        if r is None:
            raise NotFound(f"No feedback recorded for prediction {prediction_id}.")
        return _result(r, "recorded")


def list_feedback(
    meta: MetaStore, endpoint: str, start: datetime | None = None, end: datetime | None = None
) -> list[FeedbackResult]:
    """The labels of ``endpoint``'s predictions made in ``[start, end)``."""
    q = select(FeedbackRecord).where(FeedbackRecord.endpoint == endpoint)
    if start is not None:
        q = q.where(FeedbackRecord.predicted_at >= start)
    if end is not None:
        q = q.where(FeedbackRecord.predicted_at < end)
    with meta.read() as s:
        return [_result(r, "recorded") for r in s.scalars(q.order_by(FeedbackRecord.predicted_at))]


def labels_of(meta: MetaStore, prediction_ids: Sequence[str]) -> dict[str, Any]:
    """The current label of each of these served predictions that has one, by id."""
    ids = list(dict.fromkeys(prediction_ids))
    out: dict[str, Any] = {}
    with meta.read() as s:
        for chunk in range(0, len(ids), 500):
            query = select(FeedbackRecord.prediction_id, FeedbackRecord.label).where(
                FeedbackRecord.prediction_id.in_(ids[chunk : chunk + 500])
            )
            out.update((pid, label) for pid, label in s.execute(query))
    return out


def labelled_predictions(
    meta: MetaStore, lake: Lake, endpoint: str, start: datetime | None = None, end: datetime | None = None
) -> pa.Table:
    """Training rows from served traffic: the feature values each labelled prediction was made
    with (as the log holds them), its output, and its ``label``."""
    labels = {f.prediction_id: f.label for f in list_feedback(meta, endpoint, start, end)}
    if not labels:
        return pa.table({"prediction_id": pa.array([], pa.string()), "label": pa.array([])})
    rows = predictions.read_window(lake, endpoint, start, end)
    ids = rows["prediction_id"].to_pylist()
    keep = [i for i, pid in enumerate(ids) if pid in labels]
    rows = rows.take(pa.array(keep, pa.int64()))
    return rows.append_column("label", pa.array([labels[ids[i]] for i in keep]))


# -- the shared path ---------------------------------------------------------------------------


class _Abort(Exception):
    """Rolls the feedback transaction back when an all-or-nothing batch has a problem."""


def _process(
    meta: MetaStore,
    lake: Lake,
    items: list[tuple[int, Feedback]],
    source: str,
    now: datetime | None,
    *,
    atomic: bool = True,
    abort: bool = False,
) -> tuple[list[FeedbackResult], list[RowProblem]]:
    """Check and record ``items`` (row number, feedback). ``atomic``: any problem writes nothing;
    ``abort``: check only (the caller found a problem already)."""
    now = now or utcnow()
    single = len(items) == 1
    problems: list[RowProblem] = []
    valid: list[tuple[int, Feedback]] = []
    for row, fb in items:
        message = _check_shape(fb)
        if message:
            problems.append(RowProblem(row, fb.prediction_id, "invalid", message))
        else:
            valid.append((row, fb))
    logged = _find_logged(lake, [fb.prediction_id for _, fb in valid])
    tasks = {e: monitor_spec(meta, e).task for e in {hit["endpoint"] for hit in logged.values()}}
    results: list[FeedbackResult] = []
    try:
        with meta.write() as uow:
            s = uow.session
            ids = list({fb.prediction_id for _, fb in valid})
            existing: dict[str, FeedbackRecord] = {}
            for chunk in range(0, len(ids), 500):
                query = select(FeedbackRecord).where(
                    FeedbackRecord.prediction_id.in_(ids[chunk : chunk + 500])
                )
                existing.update((r.prediction_id, r) for r in s.scalars(query))
            counts: dict[str, int] = {}
            for row, fb in valid:
                pid = fb.prediction_id
                hit = logged.get(pid)
                if hit is None:
                    problems.append(_missing(row, pid, now))
                    continue
                endpoint = hit["endpoint"]
                if hit["error"] is not None:
                    message = (
                        f"Prediction {pid} failed ({hit['error']}); a failed request has no output to label."
                    )
                    problems.append(RowProblem(row, pid, "invalid", message))
                    continue
                message = _check_type(fb.label, hit["prediction"], tasks.get(endpoint))
                if message:
                    problems.append(RowProblem(row, pid, "invalid", f"Prediction {pid}: {message}"))
                    continue
                old = existing.get(pid)
                if old is not None and not fb.correction:
                    if not _same(old.label, fb.label):
                        message = (
                            f"Prediction {pid} already has label {old.label!r}; to replace it with "
                            f'{fb.label!r} send it as a correction ("correction": true).'
                        )
                        problems.append(RowProblem(row, pid, "duplicate", message))
                    elif single:  # one label at a time: a repeat is an answer of its own
                        message = (
                            f"Feedback for prediction {pid} was already recorded with label "
                            f"{old.label!r}; nothing was counted twice."
                        )
                        problems.append(RowProblem(row, pid, "duplicate", message))
                    else:  # a label file ingested again: nothing to do for this row
                        results.append(_result(old, "unchanged"))
                    continue
                if old is None:
                    old = FeedbackRecord(
                        prediction_id=pid,
                        endpoint=endpoint,
                        model_name=hit["model"],
                        model_version=hit["model_version"],
                        predicted_at=hit["ts"],
                        prediction=hit["prediction"],
                        label=fb.label,
                        revision=1,
                        source=source,
                        actor=uow.actor,
                        created_at=now,
                        updated_at=now,
                    )
                    s.add(old)
                    existing[pid] = old
                    status = "recorded"
                else:
                    old.label, old.revision, old.updated_at, old.source = (
                        fb.label,
                        old.revision + 1,
                        now,
                        source,
                    )
                    status = "corrected"
                results.append(_result(old, status))
                counts[endpoint] = counts.get(endpoint, 0) + 1
            if abort or (problems and atomic):
                raise _Abort
            for endpoint, n in sorted(counts.items()):
                payload = {"endpoint": endpoint, "labels": n, "source": source}
                uow.record("feedback.received", f"endpoint:{endpoint}", payload)
    except _Abort:
        return [], problems
    return results, problems


def _missing(row: int, pid: str, now: datetime) -> RowProblem:
    made = _ulid_time(pid)
    if made is not None and now - GRACE <= made <= now + _ID_SLACK:
        age = max(0.0, (now - made).total_seconds())
        return RowProblem(
            row,
            pid,
            "not_logged_yet",
            f"Prediction {pid} is not in the prediction log yet (it was made {age:.0f} s ago and the "
            "log is written in groups); send the feedback again in a few seconds.",
        )
    return RowProblem(
        row,
        pid,
        "unknown",
        f"No prediction with id {pid} in the prediction log; use a prediction_ids value a predict "
        "response returned.",
    )


def _check_shape(fb: Feedback) -> str | None:
    pid = fb.prediction_id
    if not isinstance(pid, str) or not pid.strip():
        return f"prediction_id must be a non-empty string, got {pid!r}"
    if len(pid) > MAX_ID_LENGTH:
        return f"prediction_id is {len(pid)} characters long; ids are at most {MAX_ID_LENGTH}"
    label = fb.label
    if label is None:
        return f"the label of prediction {pid} is missing (null)"
    if isinstance(label, float) and not math.isfinite(label):
        return f"the label of prediction {pid} is {label}; send a finite number"
    if not isinstance(label, bool | int | float | str):
        return (
            f"the label of prediction {pid} is a {type(label).__name__}; send a number, a boolean or a string"
        )
    return None


def _check_type(label: Any, prediction: Any, task: str | None) -> str | None:
    """Whether ``label`` can be the truth for ``prediction`` (None if so, else why not)."""
    numeric_label = isinstance(label, bool | int | float)
    if isinstance(prediction, str):
        if not isinstance(label, str) and task != "multiclass":
            return (
                f"the model predicts class names (like {prediction!r}); the label must be one too, "
                f"got {label!r}"
            )
        return None
    if prediction is None:
        return None
    if not numeric_label:
        return (
            f"the model predicts a number ({prediction:g}); the label must be a number, "
            f"got the string {label!r}"
        )
    if task == "binary" and label not in (0, 1):
        return f"a binary classifier's label is 0 or 1 (or true/false), got {label!r}"
    if task == "regression" and isinstance(label, bool):
        return f"a regression model's label is a number, got {label!r}"
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool | int | float) and isinstance(b, bool | int | float):
        return float(a) == float(b)
    return bool(a == b)


def _ulid_time(value: str) -> datetime | None:
    try:
        return ULID.from_str(value).datetime
    except (ValueError, TypeError):
        return None


def _find_logged(lake: Lake, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The logged predictions with these ids, by id."""
    if not ids or not predictions.exists(lake):
        return {}
    times = [t for t in (_ulid_time(i) for i in ids) if t is not None]
    # Every id a ULID: read only the part of the log around their times.
    around = (min(times) - _ID_SLACK, max(times) + _ID_SLACK) if len(times) == len(ids) else None
    found = predictions.find(lake, ids, around=around)
    out: dict[str, dict[str, Any]] = {}
    for row in found.select(
        ["prediction_id", "ts", "endpoint", "model", "model_version", "prediction", "error"]
    ).to_pylist():
        ts = row["ts"]
        row["ts"] = ts if ts is None or ts.tzinfo else ts.replace(tzinfo=UTC)
        p = row["prediction"]
        if isinstance(p, float) and not math.isfinite(p):  # JSON columns cannot hold NaN
            row["prediction"] = None
        out.setdefault(row["prediction_id"], row)
    return out


def _result(r: FeedbackRecord, status: str) -> FeedbackResult:
    return FeedbackResult(
        r.prediction_id,
        status,
        r.endpoint,
        r.model_name,
        r.model_version,
        r.predicted_at,
        r.prediction,
        r.label,
        r.revision,
    )
