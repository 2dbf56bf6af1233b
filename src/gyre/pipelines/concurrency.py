"""A pipeline's concurrency policy, applied before a run starts: ``skip``, ``queue`` or ``cancel-previous``.

The same :func:`admit` serves ``gyre run`` and the controller, so a run started by hand and
one started by a trigger obey the same policy. What counts as running is the tracking store:
the pipeline's top-level runs with status ``RUNNING`` (reproductions excluded: they neither
block nor get cancelled), whichever process runs them.

A run whose process died (``kill -9``, a lost machine) stays ``RUNNING`` in the store; its
heartbeat (:data:`~gyre.pipelines.runner.HEARTBEAT_TAG`, written every 30 s) tells it apart.
One without a heartbeat for ``STALE_AFTER`` is ended ``FAILED`` here instead of blocking the
pipeline for ever.

Checking and starting are two transactions: two processes admitting the same pipeline within
the same instant can both find nothing running. The controller admits one pipeline at a time
per process, and handles each event in one controller only, so this needs two starts by
hand (or by hand and by a trigger) at the same moment.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from gyre.errors import Conflict
from gyre.ids import utcnow
from gyre.pipelines.runner import HEARTBEAT_TAG, PIPELINE_TAG, TRIGGER_TAG, cancel_run
from gyre.pipelines.triggers import ConcurrencyDecision, decide_concurrency

if TYPE_CHECKING:
    from gyre.client.client import Client
    from gyre.pipelines.definition import Pipeline
    from gyre.tracking.entities import RunInfo

STALE_AFTER = timedelta(minutes=5)
REPRODUCE = "reproduce"  # the trigger of a reproduction (gyre reproduce)


@dataclass(frozen=True)
class Admission:
    """Whether a new run may start, what the policy did, and why (said to the user, recorded)."""

    start: bool
    action: str  # start | skip | queue | cancel-and-start | stopped
    reason: str
    cancelled: tuple[str, ...] = field(default=())


def live_runs(client: Client, pipeline: str, *, now: datetime | None = None) -> list[RunInfo]:
    """The pipeline's runs still running, oldest first; dead ones (no heartbeat) are ended FAILED."""
    now = now or utcnow()
    runs = client.runs.list(
        filter=f"tags.`{PIPELINE_TAG}` = '{pipeline}' and status = 'RUNNING' "
        f"and tags.`{TRIGGER_TAG}` != '{REPRODUCE}'",
        order_by=["start_time ASC"],
        max_results=100,
    )
    alive = []
    for run in runs:
        if run.parent_run_id:
            continue
        beat = _last_beat(run)
        if now - beat > STALE_AFTER:
            with contextlib.suppress(Conflict):  # it ended meanwhile: it was alive after all
                client.runs.finish(
                    run.id,
                    "FAILED",
                    f"No heartbeat since {beat.isoformat()} (over {STALE_AFTER} ago): the process "
                    "running it is gone.",
                )
            continue
        alive.append(run)
    return alive


def admit(
    client: Client,
    pipeline: Pipeline,
    *,
    poll_s: float = 1.0,
    stop: threading.Event | None = None,
    on_wait: Callable[[ConcurrencyDecision], None] | None = None,
) -> Admission:
    """Apply ``pipeline.concurrency`` to a run about to start; returns whether it may.

    - ``skip``: a run is running: do not start (``start`` False).
    - ``queue``: wait (polling every ``poll_s`` seconds, calling ``on_wait`` once) until no
      run is running, then start. ``stop`` being set ends the wait without starting.
    - ``cancel-previous``: cancel the running runs (ended KILLED at once; their runners stop
      their steps within about a second, see :func:`~gyre.pipelines.runner.cancel_run`),
      then start.
    """
    running = [r.id for r in live_runs(client, pipeline.name)]
    decision = decide_concurrency(pipeline.concurrency, running)
    if decision.action == "start":
        return Admission(True, "start", decision.reason)
    if decision.action == "skip":
        return Admission(False, "skip", decision.reason)
    if decision.action == "cancel-and-start":
        cancelled = []
        for run_id in decision.cancel:
            with contextlib.suppress(Conflict):  # it ended by itself meanwhile
                cancel_run(
                    client,
                    run_id,
                    f"Cancelled: a newer run of pipeline '{pipeline.name}' started (concurrency "
                    "'cancel-previous').",
                )
                cancelled.append(run_id)
        return Admission(True, "cancel-and-start", decision.reason, tuple(cancelled))
    if on_wait is not None:
        on_wait(decision)
    while live_runs(client, pipeline.name):
        if stop is not None:
            if stop.wait(poll_s):
                return Admission(False, "stopped", f"stopped while {decision.reason}")
        else:
            time.sleep(poll_s)
    return Admission(True, "queue", f"started after waiting: {decision.reason}")


def _last_beat(run: RunInfo) -> datetime:
    """The run's last heartbeat (a run started by an older Gyre has none: its start time)."""
    text = run.tags.get(HEARTBEAT_TAG)
    if text:
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(text)
    return run.start_time
