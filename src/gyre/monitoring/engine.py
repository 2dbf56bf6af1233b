"""Evaluating alert rules: state per (rule, subject), history, events, and the actions.

Each evaluation computes the figures the rules need once (drift and quality windows are
stored in their time series as a side effect), asks every rule's condition about each of its
subjects, and moves each alert's state:

* not firing, condition holds: it **fires**: a ``firing`` history row, an ``alert.fired``
  event for the controller, and the rule's actions: log, webhooks, and ``pipeline.run_requested``
  / ``deployment.rollback_requested`` events, all in one transaction. Within the rule's
  cooldown of its last firing it goes back to firing silently (the same incident);
* firing, condition holds: nothing (one incident fires once), unless the cooldown held the
  firing back and has now passed: then it fires as above, so no incident goes untold;
* firing, condition no longer holds: it **resolves**: a ``resolved`` history row, an
  ``alert.resolved`` event, and webhooks that asked for it (none if its firing was held back:
  the receivers' last word was a resolution already);
* the condition cannot tell (too little data): nothing changes.

Webhooks are posted by a :class:`Notifier` on background threads, retried with backoff on
timeouts, connection errors and 5xx answers; each attempt's outcome is recorded in the
history row's ``actions``. Evaluation never waits for them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from gyre.data.lake import Lake
from gyre.errors import NotFound
from gyre.ids import new_id, utcnow
from gyre.jsonsafe import encode_float
from gyre.meta import MetaStore, UnitOfWork
from gyre.meta.monitoring_schema import AlertHistoryRecord, AlertState
from gyre.meta.registry import list_registered
from gyre.monitoring import predictions
from gyre.monitoring.alerts import AlertRule, Log, Outcome, Rollback, RunPipeline, Webhook
from gyre.monitoring.drift import DriftReport
from gyre.monitoring.quality import QualityReport, live_quality
from gyre.monitoring.service import endpoint_drift
from gyre.store import TreeStore

log = logging.getLogger("gyre.alerts")
FIRING, RESOLVED = "firing", "resolved"


class Context:
    """The figures of one evaluation, each computed at most once and shared by the rules."""

    def __init__(
        self, meta: MetaStore, lake: Lake, blobs: TreeStore, features: Any = None, now: datetime | None = None
    ) -> None:
        self.meta, self.lake, self.blobs, self.features = meta, lake, blobs, features
        self.now = now or utcnow()
        self._cache: dict[tuple[Any, ...], Any] = {}

    def _once(self, key: tuple[Any, ...], fn: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def endpoints(self) -> list[str]:
        return self._once(
            ("endpoints",), lambda: predictions.endpoints(self.lake) if predictions.exists(self.lake) else []
        )

    def drift(self, endpoint: str, window: timedelta | None) -> list[DriftReport]:
        def compute() -> list[DriftReport]:
            try:
                return endpoint_drift(self.meta, self.lake, self.blobs, endpoint, window=window, end=self.now)
            except NotFound:
                return []

        return self._once(("drift", endpoint, window), compute)

    def quality(self, endpoint: str, window: timedelta | None) -> list[QualityReport]:
        return self._once(
            ("quality", endpoint, window),
            lambda: live_quality(self.meta, self.lake, endpoint, window=window, end=self.now),
        )

    def service(self, endpoint: str, window: timedelta) -> predictions.ServiceStats:
        return self._once(
            ("service", endpoint, window),
            lambda: predictions.service_stats(self.lake, endpoint, self.now - window, self.now),
        )

    def freshness(self) -> list[Any] | None:
        if self.features is None:
            return None
        return self._once(("freshness",), lambda: self.features.freshness(self.now))


@dataclass
class Transition:
    """An alert that changed state in an evaluation, or whose firing, held back by the
    cooldown, was notified in it."""

    rule: str
    subject: str
    status: str  # "firing" or "resolved"
    notified: bool
    message: str
    history_id: str
    at: datetime
    actions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "at": self.at.isoformat()}


@dataclass
class AlertInfo:
    """An alert's current state, or one row of its history."""

    rule: str
    subject: str
    status: str
    at: datetime
    details: dict[str, Any]
    actions: list[dict[str, Any]] = field(default_factory=list)
    last_fired_at: datetime | None = None
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["at"] = self.at.isoformat()
        out["last_fired_at"] = self.last_fired_at.isoformat() if self.last_fired_at else None
        return out


class AlertEngine:
    """Evaluates the registered alert rules (or given ones) and acts on them.

    Args:
        meta, lake, blobs: the project's stores.
        features: a :class:`~gyre.features.store.FeatureStore`, for stale-view conditions.
        notifier: delivers webhooks (a private one by default; :meth:`close` drains it).
    """

    def __init__(
        self,
        meta: MetaStore,
        lake: Lake,
        blobs: TreeStore,
        *,
        features: Any = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.meta, self.lake, self.blobs, self.features = meta, lake, blobs, features
        self.notifier = notifier or Notifier(meta)
        self._own_notifier = notifier is None

    def rules(self) -> list[AlertRule]:
        """The registered alert rules."""
        return [AlertRule.from_spec(r.name, r.spec) for r in list_registered(self.meta, "alert_rule")]

    def evaluate(
        self, rules: Sequence[AlertRule] | None = None, *, now: datetime | None = None
    ) -> list[Transition]:
        """Evaluate ``rules`` (default: the registered ones) once; returns the alerts that fired
        or resolved. Webhooks are queued, not awaited."""
        rules = self.rules() if rules is None else list(rules)
        ctx = Context(self.meta, self.lake, self.blobs, self.features, now)
        transitions: list[Transition] = []
        deliveries: list[tuple[Webhook, dict[str, Any], str, int]] = []
        for rule in rules:
            if rule.condition.scope == "endpoint":
                subjects = [rule.endpoint] if rule.endpoint else ctx.endpoints()
            else:
                subjects = []
            try:
                outcomes = rule.condition.evaluate(ctx, subjects)
            except Exception as exc:  # one broken rule must not stop the others
                log.exception("evaluating alert rule %s failed", rule.name)
                outcomes = [
                    Outcome(s, None, f"evaluation failed: {type(exc).__name__}: {exc}") for s in subjects
                ]
            for outcome in outcomes:
                t = self._apply(rule, outcome, ctx.now, deliveries)
                if t is not None:
                    transitions.append(t)
        for hook, payload, history_id, index in deliveries:
            self.notifier.submit(hook, payload, history_id, index)
        return transitions

    def _apply(
        self,
        rule: AlertRule,
        o: Outcome,
        now: datetime,
        deliveries: list[tuple[Webhook, dict[str, Any], str, int]],
    ) -> Transition | None:
        subject = f"{rule.condition.scope}:{o.subject}"
        details = {"message": o.message, "value": _num(o.value), **_jsonable(o.details)}
        with self.meta.write() as uow:
            s = uow.session
            state = s.get(AlertState, (rule.name, subject))
            if o.triggered is None:
                if state is not None:
                    state.last_evaluated_at = now
                return None
            firing = state is not None and state.status == FIRING
            # A firing the cooldown held back (the last notification is older than it) is
            # notified once the cooldown has passed if it still holds: else an incident that
            # began inside the cooldown would go untold for as long as it lasts.
            held = due = False
            if state is not None and firing and not _told(state):
                held, due = True, bool(o.triggered) and not _cooling(state, rule, now)
            if o.triggered == firing and not due:  # no change: still firing (deduplicated) or still fine
                if state is not None:
                    state.last_evaluated_at, state.details = now, details
                return None
            if state is None:
                state = AlertState(rule=rule.name, subject=subject, last_fired_at=None)
                s.add(state)
            if due:
                details = {**details, "held_back_since": state.since.isoformat()}
            else:
                state.status, state.since = (FIRING if o.triggered else RESOLVED), now
            state.last_evaluated_at, state.details = now, details
            history_id = new_id()
            payload = {
                "rule": rule.name,
                "subject": subject,
                "endpoint": o.subject if rule.condition.scope == "endpoint" else None,
                "status": state.status,
                "message": o.message,
                "value": _num(o.value),
                "details": details,
                "description": rule.description,
                "at": now.isoformat(),
                "alert_id": history_id,
            }
            actions: list[dict[str, Any]] = []
            if o.triggered:
                notified = due or not _cooling(state, rule, now)
                if notified:
                    state.last_fired_at = now
                    actions = self._fire(uow, rule, o, payload, history_id, deliveries)
                    uow.record("alert.fired", f"alert:{rule.name}", payload)
                else:
                    details = {
                        **details,
                        "suppressed": f"within the {rule.cooldown} cooldown of the last firing",
                    }
            elif held:  # its firing was never told: neither is its end
                notified = False
                details = {**details, "suppressed": "its firing was held back by the cooldown"}
                uow.record("alert.resolved", f"alert:{rule.name}", payload)
            else:
                notified = True
                for a in rule.actions:
                    if isinstance(a, Webhook) and a.send_resolved:
                        actions.append(_pending(a))
                        deliveries.append((a, payload, history_id, len(actions) - 1))
                    elif isinstance(a, Log):
                        log.warning("RESOLVED %s on %s: %s", rule.name, subject, o.message)
                        actions.append({"kind": "log", "status": "done"})
                uow.record("alert.resolved", f"alert:{rule.name}", payload)
            s.add(
                AlertHistoryRecord(
                    id=history_id,
                    rule=rule.name,
                    subject=subject,
                    status=state.status,
                    at=now,
                    details={**details, "notified": notified},
                    actions=actions,
                )
            )
        return Transition(rule.name, subject, state.status, notified, o.message, history_id, now, actions)

    def _fire(
        self,
        uow: UnitOfWork,
        rule: AlertRule,
        o: Outcome,
        payload: dict[str, Any],
        history_id: str,
        deliveries: list[tuple[Webhook, dict[str, Any], str, int]],
    ) -> list[dict[str, Any]]:
        actions: list[dict[str, Any]] = []
        reason = {
            "alert": rule.name,
            "alert_id": history_id,
            "subject": payload["subject"],
            "message": o.message,
        }
        for a in rule.actions:
            if isinstance(a, Log):
                log.warning("FIRING %s on %s: %s", rule.name, payload["subject"], o.message)
                actions.append({"kind": "log", "status": "done"})
            elif isinstance(a, Webhook):
                actions.append(_pending(a))
                deliveries.append((a, payload, history_id, len(actions) - 1))
            elif isinstance(a, RunPipeline):
                uow.record(
                    "pipeline.run_requested",
                    f"pipeline:{a.pipeline}",
                    {"pipeline": a.pipeline, "params": a.params, "reason": reason},
                )
                actions.append({"kind": "run_pipeline", "pipeline": a.pipeline, "status": "requested"})
            elif isinstance(a, Rollback):
                endpoint = a.endpoint or payload["endpoint"]
                uow.record(
                    "deployment.rollback_requested",
                    f"endpoint:{endpoint}",
                    {"endpoint": endpoint, "reason": reason},
                )
                actions.append({"kind": "rollback", "endpoint": endpoint, "status": "requested"})
        return actions

    def close(self, timeout: float | None = None) -> None:
        """Wait for queued webhooks (up to ``timeout`` seconds) and stop the private notifier."""
        if self._own_notifier:
            self.notifier.close(timeout)


def _pending(hook: Webhook) -> dict[str, Any]:
    return {"kind": "webhook", "url": hook.url, "status": "pending", "attempts": 0}


def _num(v: float | None) -> float | str | None:
    return None if v is None else encode_float(float(v))


def _jsonable(value: Any) -> Any:
    """Details as JSON column values: non-finite floats as strings, unknown objects as text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return encode_float(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


# -- webhooks --------------------------------------------------------------------------------


class Notifier:
    """Posts webhooks on background threads with retries; records each outcome.

    Args:
        meta: where the alert history is (each delivery's outcome is written to its row).
        backoff_s: the first retry's delay; doubled each time, capped at ``max_backoff_s``.
        workers: deliveries in flight at once.
    """

    def __init__(
        self, meta: MetaStore, *, backoff_s: float = 0.5, max_backoff_s: float = 30.0, workers: int = 4
    ) -> None:
        self.meta = meta
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="gyre-webhook")
        self._futures: list[Future[None]] = []
        self._lock = threading.Lock()
        self._record_lock = threading.Lock()  # outcomes of one alert's webhooks share a row
        self._stop = threading.Event()

    def submit(self, hook: Webhook, payload: dict[str, Any], history_id: str, index: int) -> None:
        future = self._pool.submit(self._deliver, hook, payload, history_id, index)
        with self._lock:
            self._futures = [f for f in self._futures if not f.done()] + [future]

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for every queued delivery; False if some are still running after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            futures = list(self._futures)
        for f in futures:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                f.result(remaining)
            except TimeoutError:
                return False
        return True

    def close(self, timeout: float | None = None) -> None:
        self.wait(timeout)
        self._stop.set()  # deliveries still retrying give up at their next backoff
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _deliver(self, hook: Webhook, payload: dict[str, Any], history_id: str, index: int) -> None:
        import httpx

        body = json.dumps(payload, default=str).encode()
        headers = {"content-type": "application/json", "x-gyre-alert-id": history_id, **hook.headers}
        outcome: dict[str, Any] = {"kind": "webhook", "url": hook.url, "attempts": 0}
        for attempt in range(hook.retries + 1):
            outcome["attempts"] = attempt + 1
            try:
                response = httpx.post(hook.url, content=body, headers=headers, timeout=hook.timeout_s)
                outcome["http_status"] = response.status_code
                if response.status_code < 500:
                    ok = response.status_code < 400
                    outcome["status"] = "delivered" if ok else "rejected"  # a 4xx will not get better
                    if not ok:
                        outcome["error"] = f"HTTP {response.status_code}"
                    break
                outcome["error"] = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                outcome["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            outcome["status"] = "failed"
            if attempt < hook.retries:
                delay = min(self.max_backoff_s, self.backoff_s * 2**attempt)
                if self._stop.wait(delay):
                    break
        if outcome.get("status") != "delivered":
            log.warning("webhook %s for alert %s: %s", hook.url, history_id, outcome.get("error"))
        self._record(history_id, index, outcome)

    def _record(self, history_id: str, index: int, outcome: dict[str, Any]) -> None:
        try:
            with self._record_lock, self.meta.write() as uow:
                row = uow.session.get(AlertHistoryRecord, history_id)
                if row is None:
                    return
                actions = list(row.actions or [])
                if index < len(actions):
                    actions[index] = outcome
                else:
                    actions.append(outcome)
                row.actions = actions  # a new list: the JSON column sees the change
        except Exception:  # recording must not kill the delivery thread
            log.exception("recording the outcome of webhook %s failed", outcome.get("url"))


# -- reading ---------------------------------------------------------------------------------


def list_alerts(meta: MetaStore, *, status: str | None = None) -> list[AlertInfo]:
    """Every alert's current state (``firing`` first), optionally only one status."""
    q = select(AlertState)
    if status is not None:
        q = q.where(AlertState.status == status)
    with meta.read() as s:
        rows = s.scalars(q.order_by(AlertState.rule, AlertState.subject)).all()
    out = [
        AlertInfo(r.rule, r.subject, r.status, r.since, dict(r.details or {}), last_fired_at=r.last_fired_at)
        for r in rows
    ]
    return sorted(out, key=lambda a: a.status != FIRING)


def alert_history(meta: MetaStore, *, rule: str | None = None, limit: int = 100) -> list[AlertInfo]:
    """Alert state changes, newest first."""
    q = select(AlertHistoryRecord)
    if rule is not None:
        q = q.where(AlertHistoryRecord.rule == rule)
    with meta.read() as s:
        rows = s.scalars(
            q.order_by(AlertHistoryRecord.at.desc(), AlertHistoryRecord.id.desc()).limit(limit)
        ).all()
    return [
        AlertInfo(r.rule, r.subject, r.status, r.at, dict(r.details or {}), list(r.actions or []), id=r.id)
        for r in rows
    ]


def _told(state: AlertState) -> bool:
    """Whether the alert's current state was notified: a firing is told when it fired (or
    later, once a cooldown that held it back passed)."""
    return state.last_fired_at is not None and state.last_fired_at >= state.since


def _cooling(state: AlertState, rule: AlertRule, now: datetime) -> bool:
    """Whether ``now`` is within the rule's cooldown of the alert's last notified firing."""
    return state.last_fired_at is not None and now - state.last_fired_at < rule.cooldown
