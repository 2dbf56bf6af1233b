"""Live traffic for the demo, over real HTTP: payments predicted, recorded, and labelled late.

A :class:`Traffic` plays the :class:`~gyre.demo.world.World` on the wall clock, as a payment
service and its back office would use Gyre:

1. each payment, when it happens, is sent to ``POST /v1/endpoints/fraud/predict`` (the
   user's id and the request fields; the server adds the online features);
2. the payments of each tick are then recorded in the ``payments`` dataset
   (``POST /v1/datasets/payments/records``), so the user's window features include them
   for the next payment;
3. when a payment's label arrives it is recorded in the ``labels`` dataset (what retraining
   reads) and sent as feedback on the prediction (``POST /v1/feedback``, what live quality
   reads).

A prediction is logged a second or so after it is answered (the log is written in groups),
and the feedback route refuses labels for predictions it cannot see yet; labels are therefore
fed back at least ``feedback_after_s`` after their prediction, and a refused group is sent
again on the next round.
"""

from __future__ import annotations

import asyncio
import heapq
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from gyre.demo.world import TS, World
from gyre.errors import GyreError

TICK_S = 0.1
FEEDBACK_EVERY_S = 1.0  # each feedback request looks its predictions up in the log
MAX_FEEDBACK_ATTEMPTS = 10


class TrafficError(GyreError):
    """The live traffic could not go on (the server refused what it must accept)."""


@dataclass
class TrafficStats:
    """What the traffic did, counted on the client's side."""

    payments: int = 0  # payments made (each sent for a prediction)
    requests_served: int = 0  # predict requests answered with a prediction
    requests_failed: int = 0  # predict requests answered with an error
    labels: int = 0  # labels recorded in the labels dataset
    feedback: int = 0  # labels recorded as feedback on their prediction
    feedback_dropped: int = 0  # labels the feedback route kept refusing
    by_version: Counter[int] = field(default_factory=Counter)  # answers per model version
    latencies_ms: list[float] = field(default_factory=list)


@dataclass(order=True)
class _Label:
    at: float  # epoch seconds the label arrives
    payment_id: str
    is_fraud: bool
    label_ts: str
    prediction_id: str | None = None
    predicted_at: float = 0.0
    attempts: int = 0


class Traffic:
    """Plays ``world`` against the server at ``base_url`` on a thread of its own.

    Args:
        base_url: the running server, e.g. ``http://127.0.0.1:8080``.
        world: where payments and labels come from.
        endpoint: the prediction endpoint.
        request_fields: the payment fields a predict request carries besides ``user_id``.
        feedback_after_s: labels are fed back no sooner than this after their prediction.
        concurrency: predict requests in flight at once.
    """

    def __init__(
        self,
        base_url: str,
        world: World,
        *,
        endpoint: str,
        request_fields: tuple[str, ...],
        feedback_after_s: float = 2.0,
        concurrency: int = 16,
    ) -> None:
        self.base_url = base_url
        self.world = world
        self.endpoint = endpoint
        self.request_fields = request_fields
        self.feedback_after_s = feedback_after_s
        self.concurrency = concurrency
        self.stats = TrafficStats()
        self.error: BaseException | None = None
        self.drift_at: datetime | None = None
        self._lock = threading.Lock()
        self._stop_payments = threading.Event()
        self._stop = threading.Event()
        self._pending: list[_Label] = []  # labels not recorded yet, by arrival
        self._feedback: list[_Label] = []  # labels recorded, waiting to be fed back
        self._thread: threading.Thread | None = None

    # -- control ----------------------------------------------------------------------------

    def start(self, since: datetime, history: pa.Table) -> None:
        """Start making payments now, the story going on from ``since``, where ``history``
        (already in the lake) ended.

        The payments made between ``since`` and now (while the platform got ready) are
        recorded without being predicted, as payments are while no model serves; labels of
        those and of ``history`` that had not arrived by ``since`` arrive in their time.
        """
        self._since = since
        self._started = datetime.now(UTC)
        late = history.filter(pc.greater(self.world.label_times(history), pa.scalar(since, TS)))
        self._schedule(late, [None] * late.num_rows)
        self._thread = threading.Thread(target=self._run, name="gyre-demo-traffic", daemon=True)
        self._thread.start()

    def switch_drift_on(self, at: datetime | None = None) -> datetime:
        """The new market and its fraud ring from ``at`` (default: now) on; returns the instant."""
        self.drift_at = at or datetime.now(UTC)
        return self.drift_at

    def stop(self, label_grace_s: float = 0.0) -> None:
        """Stop making payments; keep delivering labels for ``label_grace_s`` more, then stop."""
        self._stop_payments.set()
        if label_grace_s > 0:
            time.sleep(label_grace_s)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def snapshot(self) -> TrafficStats:
        """A copy of the counts so far."""
        with self._lock:
            s = self.stats
            return TrafficStats(
                s.payments,
                s.requests_served,
                s.requests_failed,
                s.labels,
                s.feedback,
                s.feedback_dropped,
                Counter(s.by_version),
                list(s.latencies_ms),
            )

    # -- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # the demo's main thread reports it
            self.error = exc

    async def _main(self) -> None:
        limits = httpx.Limits(
            max_connections=self.concurrency + 4, max_keepalive_connections=self.concurrency + 4
        )
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30, limits=limits) as http:
            gate = asyncio.Semaphore(self.concurrency)
            unserved = self.world.payments(self._since, self._started)
            if unserved.num_rows:
                await self._record_payments(http, unserved)
                self._schedule(unserved, [None] * unserved.num_rows)
            last = self._started
            last_feedback = 0.0
            while not self._stop.is_set():
                tick = time.monotonic()
                now = datetime.now(UTC)
                if not self._stop_payments.is_set():
                    batch = self.world.payments(last, now, drift_at=self.drift_at)
                    last = now
                    if batch.num_rows:
                        await self._pay(http, gate, batch)
                await self._record_labels(http, time.time())
                if time.monotonic() - last_feedback >= FEEDBACK_EVERY_S:
                    last_feedback = time.monotonic()
                    await self._send_feedback(http, time.time())
                await asyncio.sleep(max(0.0, TICK_S - (time.monotonic() - tick)))
            await self._send_feedback(http, time.time())

    async def _pay(self, http: httpx.AsyncClient, gate: asyncio.Semaphore, batch: pa.Table) -> None:
        """Predict each payment, then record them all, then schedule their labels."""
        rows = batch.to_pylist()
        answers = await asyncio.gather(*(self._predict(http, gate, row) for row in rows))
        await self._record_payments(http, batch)
        with self._lock:
            self.stats.payments += len(rows)
        self._schedule(batch, answers)

    async def _record_payments(self, http: httpx.AsyncClient, batch: pa.Table) -> None:
        records = batch.drop_columns(["is_fraud"]).to_pylist()
        for r in records:
            r["ts"] = r["ts"].isoformat()
        await self._post(http, "/v1/datasets/payments/records", records, 202)

    def _schedule(self, batch: pa.Table, answers: list[tuple[str, float] | None]) -> None:
        """Expect the labels of ``batch``; those with an answer are fed back on its prediction."""
        times = self.world.label_times(batch).to_pylist()
        ids, frauds = batch["payment_id"].to_pylist(), batch["is_fraud"].to_pylist()
        with self._lock:
            for pid, fraud, at, answer in zip(ids, frauds, times, answers, strict=True):
                prediction_id, predicted_at = answer if answer is not None else (None, 0.0)
                label = _Label(at.timestamp(), pid, bool(fraud), at.isoformat(), prediction_id, predicted_at)
                heapq.heappush(self._pending, label)

    async def _predict(
        self, http: httpx.AsyncClient, gate: asyncio.Semaphore, row: dict[str, Any]
    ) -> tuple[str, float] | None:
        body = {"rows": [{"user_id": row["user_id"], **{k: row[k] for k in self.request_fields}}]}
        async with gate:
            started = time.perf_counter()
            r = await http.post(f"/v1/endpoints/{self.endpoint}/predict", json=body)
            took_ms = (time.perf_counter() - started) * 1000
        with self._lock:
            if r.status_code != 200:
                self.stats.requests_failed += 1
                return None
            answer = r.json()
            self.stats.requests_served += 1
            self.stats.by_version[int(answer["model_version"])] += 1
            self.stats.latencies_ms.append(took_ms)
        return str(answer["prediction_ids"][0]), time.time()

    async def _record_labels(self, http: httpx.AsyncClient, now: float) -> None:
        with self._lock:
            due = []
            while self._pending and self._pending[0].at <= now:
                due.append(heapq.heappop(self._pending))
        if not due:
            return
        records = [{"payment_id": d.payment_id, "is_fraud": d.is_fraud, "label_ts": d.label_ts} for d in due]
        await self._post(http, "/v1/datasets/labels/records", records, 202)
        with self._lock:
            self.stats.labels += len(due)
            self._feedback.extend(d for d in due if d.prediction_id is not None)

    async def _send_feedback(self, http: httpx.AsyncClient, now: float) -> None:
        with self._lock:
            ready = [f for f in self._feedback if f.predicted_at + self.feedback_after_s <= now]
            self._feedback = [f for f in self._feedback if f.predicted_at + self.feedback_after_s > now]
        if not ready:
            return
        body = [{"prediction_id": f.prediction_id, "label": f.is_fraud} for f in ready]
        r = await http.post("/v1/feedback", json=body)
        with self._lock:
            if r.status_code == 200:
                self.stats.feedback += len(ready)
                return
            # All or nothing: most likely a prediction the log does not show yet; try again.
            for f in ready:
                f.attempts += 1
                if f.attempts >= MAX_FEEDBACK_ATTEMPTS:
                    self.stats.feedback_dropped += 1
                else:
                    self._feedback.append(f)

    async def _post(self, http: httpx.AsyncClient, path: str, body: Any, expect: int) -> None:
        r = await http.post(path, json=body)
        if r.status_code != expect:
            raise TrafficError(f"POST {path} answered {r.status_code}: {r.text[:500]}")
