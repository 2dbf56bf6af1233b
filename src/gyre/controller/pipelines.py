"""Pipelines the controller starts by themselves: on a cron schedule, on new data, on alerts.

One reaction, ``pipelines.triggers``, decides; a :class:`PipelineLauncher` runs.

Deciding happens inside the controller's transaction, so each event is decided once across
controllers (see :mod:`gyre.controller.consumer`):

- ``schedule.fired`` of the ``pipelines`` schedule (every minute): each pipeline's cron
  :class:`~gyre.pipelines.Schedule` is asked whether a slot passed since it last fired.
  One schedule for every pipeline, rather than a controller schedule per pipeline, because
  pipelines come and go with the project's code while a controller's schedules are fixed
  when it starts; a minute is cron's own resolution, and the schedule's position lock
  already makes each tick (so each slot) fire once in total. The tick also releases
  :class:`~gyre.pipelines.NewData` triggers held back by their ``min_interval``.
- ``dataset.version_created``: :class:`~gyre.pipelines.NewData` triggers of that dataset
  count the rows of every version since they last fired (from the catalog, so a burst of
  versions is one run) against ``min_new_rows`` and ``min_interval``.
- ``alert.fired``: pipelines with a matching :class:`~gyre.pipelines.AlertFired` trigger.
- ``pipeline.run_requested`` (an alert's ``RunPipeline`` action): the named pipeline, with
  the action's params. An alert that both matches a trigger and requests the same pipeline
  starts it once.

A decision to run is written as a ``pipeline.triggered`` event (subject
``pipeline:NAME/TRIGGER``); it is also each trigger's memory of when it last fired, so there
is no other state to keep. The run itself starts after the transaction commits
(``UnitOfWork.after_commit``), in a thread of the launcher: a training of hours holds no
transaction and blocks no other reaction. The run is tagged with its trigger, the reason, the
event that caused it and, for alerts, ``gyre.alert_id``, so lineage reaches the alert behind
a retrain. A controller that dies between its commit and the run's start loses that run (the
``pipeline.triggered`` event says it was due).

The launcher applies each pipeline's concurrency policy (:func:`gyre.pipelines.concurrency.admit`,
as ``gyre run`` does) and backs off a failing pipeline: after N failed runs in a row, a
triggered run is skipped until ``failure_backoff * 2**(N-1)`` (at most ``max_backoff``) has
passed since the last failure. Every run that does not start is a ``pipeline.run_skipped``
event with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from gyre.controller.reactions import EventRecord, Reaction
from gyre.controller.schedules import SCHEDULE_FIRED, Schedule, every
from gyre.errors import Conflict
from gyre.ids import utcnow
from gyre.meta import UnitOfWork
from gyre.meta.schema import DatasetVersion, Event
from gyre.pipelines.triggers import (
    ALERT_FIRED,
    DATASET_VERSION_CREATED,
    AlertFired,
    DataVersion,
    NewData,
)
from gyre.pipelines.triggers import Schedule as Cron

if TYPE_CHECKING:
    from gyre.client.client import Client
    from gyre.config import Settings
    from gyre.pipelines.definition import Pipeline

log = logging.getLogger("gyre.controller.pipelines")

PIPELINE_TRIGGERS = "pipelines.triggers"
PIPELINES_SCHEDULE = "pipelines"
RUN_REQUESTED = "pipeline.run_requested"
TRIGGERED = "pipeline.triggered"
RUN_SKIPPED = "pipeline.run_skipped"
ALERT_TAG = "gyre.alert_id"
EVENT_TAG = "gyre.pipeline.event"


@dataclass(frozen=True)
class RunRequest:
    """A run a trigger decided on: which pipeline, why, with which params, caused by which event."""

    pipeline: str
    trigger: str  # schedule | new_data | alert | request
    key: str  # the trigger's identity in the pipeline, e.g. "schedule:0 3 * * *"
    reason: str
    event_id: str
    params: dict[str, Any] = field(default_factory=dict)
    alert_id: str | None = None
    state: dict[str, Any] = field(default_factory=dict)  # what the trigger remembers (time, version)

    def payload(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "trigger": self.trigger,
            "reason": self.reason,
            "params": self.params,
            "event_id": self.event_id,
            "alert_id": self.alert_id,
            **self.state,
        }

    def tags(self) -> dict[str, str]:
        tags = {EVENT_TAG: self.event_id}
        if self.alert_id:
            tags[ALERT_TAG] = self.alert_id
        return tags


class PipelineLauncher:
    """Runs triggered pipelines in background threads, one admission per pipeline at a time.

    Args:
        client: a client on the project's local stores (pipelines need them).
        pipelines: returns the project's pipelines by name (their current code).
        compute: executor URL (default ``[backends] compute``).
        poll_s: how often a queued run checks whether the running one ended.
        failure_backoff, max_backoff: the back-off of a failing pipeline (see the module).
        clock: the current time (tests pass a fake one).
    """

    def __init__(
        self,
        client: Client,
        pipelines: Callable[[], Mapping[str, Pipeline]],
        *,
        compute: str | None = None,
        poll_s: float = 1.0,
        failure_backoff: timedelta = timedelta(minutes=1),
        max_backoff: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] = utcnow,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self._pipelines = pipelines
        self.compute = compute
        self.poll_s = poll_s
        self.failure_backoff = failure_backoff
        self.max_backoff = max_backoff
        self.clock = clock
        self._owns_client = owns_client
        self._lock = threading.Lock()
        self._lanes: dict[str, threading.Lock] = {}
        self._threads: set[threading.Thread] = set()
        self._running: dict[str, str] = {}  # run id -> pipeline, for runs started here
        self._stop = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> PipelineLauncher:
        """A launcher on the project's local stores and definitions."""
        from gyre.client.backend import LocalBackend
        from gyre.client.client import Client
        from gyre.project import project_definitions

        def pipelines() -> dict[str, Pipeline]:
            return {p.name: p for p in project_definitions(settings).of_kind("pipeline")}  # type: ignore[misc]

        return cls(Client(LocalBackend(settings), settings), pipelines, owns_client=True, **options)

    def pipelines(self) -> dict[str, Pipeline]:
        return dict(self._pipelines())

    # -- starting runs ----------------------------------------------------------------------

    def submit(self, requests: list[RunRequest]) -> None:
        """Start each request in a thread of its own; returns at once."""
        for request in requests:
            with self._lock:
                if self._stop.is_set():
                    self._skipped(request, "the controller is stopping")
                    continue
                thread = threading.Thread(
                    target=self._launch,
                    args=(request,),
                    name=f"gyre-pipeline-{request.pipeline}",
                    daemon=True,
                )
                self._threads.add(thread)
            thread.start()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every run this launcher started has ended; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                threads = [t for t in self._threads if t.is_alive()]
                self._threads = set(threads)
            if not threads:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            threads[0].join(left)

    def close(self, timeout: float | None = 30.0, *, cancel: bool = True) -> None:
        """Stop starting runs; cancel the running ones (KILLED), or with ``cancel=False`` let
        them finish; wait up to ``timeout`` seconds for them. Queued runs are dropped."""
        from gyre.pipelines.runner import cancel_run

        if cancel:
            with self._lock:
                self._stop.set()
                running = dict(self._running)
            for run_id, name in running.items():
                with contextlib.suppress(Conflict):  # it ended by itself meanwhile
                    cancel_run(
                        self.client, run_id, f"Cancelled: the controller running pipeline '{name}' stopped."
                    )
        self.wait_idle(timeout)
        self._stop.set()
        if self._owns_client:
            self.client.close()

    def _launch(self, request: RunRequest) -> None:
        from gyre.pipelines.concurrency import admit
        from gyre.pipelines.runner import cancel_run, run_pipeline

        started: list[str] = []
        pipe: Pipeline | None = None
        try:
            pipe = self.pipelines().get(request.pipeline)
            if pipe is None:
                self._skipped(request, f"no pipeline named '{request.pipeline}' is declared in the project")
                return
            backing_off = self._backing_off(pipe)
            if backing_off:
                self._skipped(request, backing_off)
                return
            lane = self._lane(pipe.name)
            lane.acquire()
            try:
                if self._stop.is_set():
                    self._skipped(request, "the controller is stopping")
                    return
                admission = admit(self.client, pipe, poll_s=self.poll_s, stop=self._stop)
                if not admission.start:
                    self._skipped(request, admission.reason)
                    return

                def on_start(run_id: str) -> None:
                    started.append(run_id)
                    with self._lock:
                        self._running[run_id] = request.pipeline
                        stopping = self._stop.is_set()
                    lane.release()  # the run is recorded: the next admission sees it running
                    if stopping:  # close() began after this run was admitted: it missed it
                        cancel_run(self.client, run_id, "Cancelled: the controller stopped as it started.")

                reason = (
                    request.reason if admission.action == "start" else f"{request.reason}; {admission.reason}"
                )
                result = run_pipeline(
                    self.client,
                    pipe,
                    request.params,
                    compute=self.compute,
                    trigger=request.trigger,
                    reason=reason,
                    tags=request.tags(),
                    on_start=on_start,
                )
            finally:
                if not started:
                    lane.release()
            log.info(
                "pipeline %s run %s ended %s (%s)", pipe.name, result.run_id, result.status, request.reason
            )
        except Exception as exc:
            log.exception("pipeline %s triggered by %s failed", request.pipeline, request.trigger)
            if not started and pipe is not None:
                self._record_failed_start(request, pipe, exc)
        finally:
            with self._lock:
                for run_id in started:
                    self._running.pop(run_id, None)

    def _lane(self, name: str) -> threading.Lock:
        with self._lock:
            return self._lanes.setdefault(name, threading.Lock())

    def _backing_off(self, pipe: Pipeline) -> str:
        """Why a triggered run of ``pipe`` must wait after failures in a row, or ''."""
        from gyre.pipelines.concurrency import REPRODUCE
        from gyre.pipelines.runner import PIPELINE_TAG, TRIGGER_TAG

        runs = self.client.runs.list(
            filter=f"tags.`{PIPELINE_TAG}` = '{pipe.name}' and status != 'RUNNING' "
            f"and tags.`{TRIGGER_TAG}` != '{REPRODUCE}'",
            max_results=20,
        )
        failures = []
        for run in runs:  # newest first
            if run.parent_run_id or run.status == "KILLED":
                continue
            if run.status != "FAILED":
                break
            failures.append(run)
        if not failures:
            return ""
        wait = min(self.max_backoff, self.failure_backoff * 2 ** (len(failures) - 1))
        last = failures[0].end_time or failures[0].start_time
        until = last + wait
        if self.clock() >= until:
            return ""
        return (
            f"backing off after {len(failures)} failed run(s) in a row (the last: {failures[0].id}); "
            f"the next triggered run may start after {until.isoformat(timespec='seconds')}"
        )

    def _skipped(self, request: RunRequest, reason: str) -> None:
        log.info("pipeline %s: %s run not started: %s", request.pipeline, request.trigger, reason)
        meta = getattr(self.client.backend, "meta", None)
        if meta is None:
            return
        with meta.write(actor="controller") as uow:
            uow.record(RUN_SKIPPED, f"pipeline:{request.pipeline}", {**request.payload(), "skipped": reason})

    def _record_failed_start(self, request: RunRequest, pipe: Pipeline, exc: Exception) -> None:
        """A run that could not even start is recorded FAILED, so it is seen and backed off from."""
        from gyre.pipelines.runner import PIPELINE_TAG, REASON_TAG, TRIGGER_TAG

        try:
            run = self.client.start_run(
                pipe.experiment,
                pipe.name,
                tags={
                    PIPELINE_TAG: pipe.name,
                    TRIGGER_TAG: request.trigger,
                    REASON_TAG: request.reason[:4000],
                    **request.tags(),
                },
                capture_environment=False,
            )
            run.end("FAILED", f"The run could not start: {type(exc).__name__}: {exc}"[:8000])
        except Exception:  # the metadata store itself may be what failed
            log.exception("pipeline %s: could not record the run that failed to start", pipe.name)


# -- deciding ------------------------------------------------------------------------------------


def pipelines_schedule(interval: timedelta = timedelta(minutes=1)) -> Schedule:
    """The controller schedule whose ticks evaluate the pipelines' cron and held-back triggers."""
    return Schedule(PIPELINES_SCHEDULE, every(interval))


def pipeline_reaction(launcher: PipelineLauncher) -> Reaction:
    """Decide which pipelines to run on schedule ticks, new dataset versions and alerts; run them
    through ``launcher`` once the controller's transaction has committed."""

    def handle(uow: UnitOfWork, event: EventRecord) -> None:
        if event.type == SCHEDULE_FIRED and event.payload.get("schedule") != PIPELINES_SCHEDULE:
            return
        requests = decide(uow, event, launcher.pipelines())
        for r in requests:
            uow.record(TRIGGERED, f"pipeline:{r.pipeline}/{r.key}", r.payload())
        if requests:
            uow.after_commit.append(lambda: launcher.submit(requests))

    return Reaction(
        PIPELINE_TRIGGERS,
        [SCHEDULE_FIRED, DATASET_VERSION_CREATED, ALERT_FIRED, RUN_REQUESTED],
        handle,
        start="now",
        description="Run pipelines on their cron schedules, new dataset versions and alerts.",
    )


def decide(uow: UnitOfWork, event: EventRecord, pipelines: Mapping[str, Pipeline]) -> list[RunRequest]:
    """The runs ``event`` calls for (nothing is written here)."""
    if event.type == SCHEDULE_FIRED:
        return _on_tick(uow, event, pipelines)
    if event.type == DATASET_VERSION_CREATED:
        return _on_new_version(uow, event, pipelines)
    if event.type == ALERT_FIRED:
        return _on_alert(uow, event, pipelines)
    if event.type == RUN_REQUESTED:
        return _on_request(uow, event, pipelines)
    return []


def _on_tick(uow: UnitOfWork, event: EventRecord, pipelines: Mapping[str, Pipeline]) -> list[RunRequest]:
    now = datetime.fromisoformat(str(event.payload["at"]))
    out = []
    for pipe in pipelines.values():
        for t in pipe.triggers:
            if isinstance(t, Cron):
                key = f"schedule:{t.cron}"
                last = _last_fired(uow, pipe.name, key)
                decision = t.due(_at(last), now)
                if decision.fire:
                    out.append(
                        RunRequest(pipe.name, "schedule", key, decision.reason, event.id, state=_now(now))
                    )
            elif isinstance(t, NewData):
                last = _last_fired(uow, pipe.name, _data_key(t))
                if last is not None:  # never fired: only a new version can start it
                    request = _new_data(uow, pipe, t, last, now, event.id)
                    if request is not None:
                        out.append(request)
    return out


def _on_new_version(
    uow: UnitOfWork, event: EventRecord, pipelines: Mapping[str, Pipeline]
) -> list[RunRequest]:
    out = []
    for pipe in pipelines.values():
        for t in pipe.triggers:
            if isinstance(t, NewData) and t.matches(event.type, event.payload):
                last = _last_fired(uow, pipe.name, _data_key(t))
                request = _new_data(uow, pipe, t, last, event.created_at, event.id)
                if request is not None:
                    out.append(request)
    return out


def _new_data(
    uow: UnitOfWork, pipe: Pipeline, t: NewData, last: dict[str, Any] | None, now: datetime, event_id: str
) -> RunRequest | None:
    since = int(last.get("upto", -1)) if last is not None else -1
    rows = uow.session.execute(
        select(DatasetVersion.version, DatasetVersion.rows, DatasetVersion.created_at)
        .where(DatasetVersion.dataset == t.dataset, DatasetVersion.version > since)
        .order_by(DatasetVersion.version)
    ).all()
    versions = [DataVersion(t.dataset, v, r or 0, at) for v, r, at in rows]
    decision = t.evaluate(versions, _at(last), now)
    if not decision.fire:
        return None
    state = {**_now(now), "upto": versions[-1].version}
    return RunRequest(pipe.name, "new_data", _data_key(t), decision.reason, event_id, state=state)


def _on_alert(uow: UnitOfWork, event: EventRecord, pipelines: Mapping[str, Pipeline]) -> list[RunRequest]:
    alert_id = event.payload.get("alert_id")
    out = []
    for pipe in pipelines.values():
        if any(isinstance(t, AlertFired) and t.matches(event.type, event.payload) for t in pipe.triggers):
            if alert_id and _alert_handled(uow, pipe.name, alert_id):
                continue
            reason = (
                f"alert '{event.payload.get('rule')}' fired on {event.payload.get('subject')}: "
                f"{event.payload.get('message', '')}"
            )
            out.append(RunRequest(pipe.name, "alert", "alert", reason, event.id, alert_id=alert_id))
    return out


def _on_request(uow: UnitOfWork, event: EventRecord, pipelines: Mapping[str, Pipeline]) -> list[RunRequest]:
    name = str(event.payload.get("pipeline"))
    why = event.payload.get("reason")
    alert_id = why.get("alert_id") if isinstance(why, dict) else None
    if isinstance(why, dict):
        reason = f"alert '{why.get('alert')}' fired on {why.get('subject')}: {why.get('message', '')}"
    else:
        reason = str(why or "requested")
    request = RunRequest(
        name,
        "alert" if alert_id else "request",
        "alert" if alert_id else "request",
        reason,
        event.id,
        params=dict(event.payload.get("params") or {}),
        alert_id=alert_id,
    )
    if name not in pipelines:
        log.warning("a run of pipeline %s was requested, but no such pipeline is declared", name)
        uow.record(
            RUN_SKIPPED,
            f"pipeline:{name}",
            {**request.payload(), "skipped": f"no pipeline named '{name}' is declared in the project"},
        )
        return []
    if alert_id and _alert_handled(uow, name, alert_id):
        return []  # the alert also matched the pipeline's AlertFired trigger: one run is enough
    return [request]


def _last_fired(uow: UnitOfWork, pipeline: str, key: str) -> dict[str, Any] | None:
    """The payload of the trigger's last ``pipeline.triggered`` event, or None."""
    row = uow.session.scalars(
        select(Event)
        .where(Event.type == TRIGGERED, Event.subject == f"pipeline:{pipeline}/{key}")
        .order_by(Event.seq.desc())
        .limit(1)
    ).first()
    return dict(row.payload or {}) if row is not None else None


def _alert_handled(uow: UnitOfWork, pipeline: str, alert_id: str) -> bool:
    rows = uow.session.scalars(
        select(Event)
        .where(Event.type == TRIGGERED, Event.subject == f"pipeline:{pipeline}/alert")
        .order_by(Event.seq.desc())
        .limit(50)
    )
    return any((r.payload or {}).get("alert_id") == alert_id for r in rows)


def _data_key(t: NewData) -> str:
    return f"new_data:{t.dataset}"


def _now(now: datetime) -> dict[str, Any]:
    return {"at": now.isoformat()}


def _at(last: dict[str, Any] | None) -> datetime | None:
    return datetime.fromisoformat(last["at"]) if last is not None and last.get("at") else None
