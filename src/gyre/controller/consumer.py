"""The controller loop: reads the ``events`` outbox and runs each reaction exactly once per event.

How one round works, per reaction, in one write transaction:

1. Lock the reaction's ``consumer_positions`` row. On PostgreSQL this is
   ``SELECT … FOR UPDATE SKIP LOCKED``: a second controller finds the row locked and skips
   the reaction this round instead of waiting. On SQLite the write transaction's
   ``BEGIN IMMEDIATE`` already admits one writer at a time. The row lock is the lease: it
   is held exactly as long as the transaction, and the database drops it when the holder
   commits, rolls back or dies (``kill -9`` closes its connection), so there is no expiry
   time to tune and no window in which an expired holder still writes.
2. Read the next batch of subscribed events after the position, in ``seq`` order, but only
   up to the *horizon*: the highest ``seq`` below which no event can still appear (see
   :class:`_Horizon`).
3. Call the handler for each event inside a savepoint, with the transaction's
   :class:`~gyre.meta.UnitOfWork`. Its writes commit together with the new position: for
   effects in the metadata store, each event is handled exactly once, whatever crashes.
4. A handler that raises has its writes rolled back to the savepoint; the failure is
   recorded with the next attempt time (exponential backoff) and the batch stops, so the
   position stays just before the failing event. After ``max_attempts`` the event is
   dead-lettered: marked dead, a ``controller.reaction_failed`` event is written, and the
   position moves past it.
5. Advance the position and commit.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select, true
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from gyre.controller.reactions import EventRecord, Reaction
from gyre.controller.schedules import Schedule, fire_due
from gyre.errors import BackendUnavailable, InvalidArgument
from gyre.ids import new_id, utcnow
from gyre.meta import MetaStore, UnitOfWork
from gyre.meta.dialects import SqlDialect
from gyre.meta.schema import ConsumerPosition, Event, ReactionFailure

log = logging.getLogger("gyre.controller")

REACTION_FAILED = "controller.reaction_failed"
DEFAULT_BATCH_SIZE = 100
# The longest wait between attempts to reach a metadata database that went away.
MAX_OUTAGE_BACKOFF = 30.0
_MAX_ERROR_CHARS = 8000

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class ReactionStatus:
    """Where a reaction stands: its position and how many events it is retrying or gave up on."""

    name: str
    position: int
    holder: str | None
    updated_at: datetime | None
    retrying: int
    dead_letters: int


@dataclass(frozen=True)
class FailureInfo:
    """An event a reaction failed on: waiting for a retry (``dead`` false) or given up on."""

    reaction: str
    event_seq: int
    event_id: str
    event_type: str
    attempts: int
    last_error: str
    first_failed_at: datetime
    last_failed_at: datetime
    next_attempt_at: datetime | None
    dead: bool


class _Horizon:
    """The highest ``seq`` at or below which every event is final: committed, or never will be.

    A reader cannot simply take every visible event after its position: a PostgreSQL
    sequence hands out values when asked, not when the transaction commits, so seq 11 can be
    visible while seq 10 is still in flight. A reader that advanced to 11 would skip 10 for
    ever. Gaps are also normal and permanent when a transaction rolls back, so a gap alone
    says nothing.

    Chosen approach: watch the writers, not the rows. After reading ``max(seq)`` = M, ask the
    dialect for the transactions that may be inserting into ``events``
    (:meth:`SqlDialect.event_writers`). Any transaction still holding a seq <= M got it
    before M was visible, so it is in that set; once none of the set is running any more,
    every seq <= M is final and M becomes the horizon. This needs no change to the writers
    (``UnitOfWork.record``), never blocks them (unlike ``LOCK TABLE``) and has no grace
    period that a slow transaction could outlast. The alternative of storing
    ``pg_current_xact_id()`` with every event and ordering by it needs a column on
    ``events`` and a (xid, seq) position; this keeps the position a plain ``seq``.

    Between horizon checks, events that are visible and contiguous right after the horizon
    (or the position) are final too (nothing is missing before them), which keeps latency
    low while a watch is pending. A dialect whose writers commit in seq order (SQLite) has
    no horizon: every visible event is final.

    The state is an optimisation only: a new controller starts with horizon 0 and catches
    up in one round. A transaction id that is reused (after a server restart) can only make
    the watch wait longer, never settle early.
    """

    def __init__(self, dialect: SqlDialect) -> None:
        self.dialect = dialect
        self.settled = 0
        self._watch: tuple[int, frozenset[str]] | None = None

    def reset(self) -> None:
        """Forget the pending watch (after losing the database: its transactions are gone)."""
        self._watch = None

    def advance(self, session: Session) -> int:
        """Move the horizon as far as the current writers allow; return it."""
        conn = session.connection()
        if self._watch is not None:
            upto, writers = self._watch
            if writers.isdisjoint(self.dialect.event_writers(conn)):
                self.settled = max(self.settled, upto)
                self._watch = None
        if self._watch is None:
            # Order matters: read M first, then the writers, so that every holder of a
            # seq <= M is either finished or in the set.
            upto = session.scalar(select(func.max(Event.seq))) or 0
            if upto > self.settled:
                writers = self.dialect.event_writers(conn)
                if writers:
                    self._watch = (upto, writers)
                else:
                    self.settled = upto
        return self.settled


class Controller:
    """Runs ``reactions`` over the ``events`` outbox of ``meta``.

    Several controllers may run against one PostgreSQL database: each reaction is advanced
    by one of them at a time, and every event is handled once per reaction in total.
    ``clock`` (aware UTC ``datetime``) decides when failed events are due again; tests pass
    a fake one. ``poll_interval`` is the pause of :meth:`run_forever` when there was nothing
    to do.
    """

    def __init__(
        self,
        meta: MetaStore,
        reactions: Iterable[Reaction],
        *,
        poll_interval: float = 1.0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        clock: Clock = utcnow,
        name: str | None = None,
        schedules: Iterable[Schedule] = (),
    ) -> None:
        self.reactions: tuple[Reaction, ...] = tuple(reactions)
        self.schedules: list[Schedule] = list(schedules)
        names = [r.name for r in self.reactions]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise InvalidArgument(f"Reaction names must be unique; declared more than once: {dupes}.")
        if not poll_interval > 0:
            raise InvalidArgument(f"poll_interval must be > 0 seconds, not {poll_interval}.")
        if batch_size < 1:
            raise InvalidArgument(f"batch_size must be >= 1, not {batch_size}.")
        self.meta = meta
        self.poll_interval = float(poll_interval)
        self.batch_size = batch_size
        self.clock = clock
        self.name = (name or f"{socket.gethostname()}/{os.getpid()}/{new_id()[-6:]}")[:256]
        self._horizon = None if meta.dialect.events_commit_in_seq_order else _Horizon(meta.dialect)
        self._positions_ready = False
        self._stop: threading.Event | None = None

    def __repr__(self) -> str:
        return f"Controller({self.name!r}, reactions={[r.name for r in self.reactions]})"

    # -- the loop -------------------------------------------------------------------

    def run_once(self) -> int:
        """One round over every reaction; return how many events were settled.

        An event counts when its handler succeeded or it was dead-lettered; events put back
        for a retry do not. Each reaction is drained to its horizon, one transaction per
        batch. Reactions another controller is advancing right now are skipped. Database
        outages propagate (as ``BackendUnavailable`` or a SQLAlchemy ``DBAPIError``) with
        nothing half-done: every batch is all or nothing.
        """
        self._ensure_positions()
        if self.schedules:
            fire_due(self.meta, self.schedules, self.clock(), self.name)
        horizon = self._advance_horizon()
        settled = 0
        for reaction in self.reactions:
            while not self._stopping():
                count, more = self._run_batch(reaction, horizon)
                settled += count
                if not more:
                    break
        return settled

    def run_forever(self, stop_event: threading.Event) -> None:
        """Run rounds until ``stop_event`` is set; ride out metadata database outages.

        Returns within about one batch once ``stop_event`` is set: the batch in progress
        commits (or, if interrupted harder, rolls back; either way nothing is lost). When the
        database is unreachable the round is retried with backoff up to
        ``MAX_OUTAGE_BACKOFF`` seconds; nothing that was committed is lost or handled twice.
        """
        self._stop = stop_event
        delay = self.poll_interval
        try:
            while not stop_event.is_set():
                try:
                    settled = self.run_once()
                except (BackendUnavailable, DBAPIError) as exc:
                    log.warning(
                        "controller %s: metadata store unavailable (%s); retrying in %.2f s",
                        self.name,
                        _first_line(exc),
                        delay,
                    )
                    if self._horizon is not None:
                        self._horizon.reset()
                    stop_event.wait(delay)
                    delay = min(max(delay, 0.1) * 2, MAX_OUTAGE_BACKOFF)
                    continue
                delay = self.poll_interval
                if not settled:
                    stop_event.wait(self.poll_interval)
        finally:
            self._stop = None

    # -- inspection -------------------------------------------------------------------

    def status(self) -> list[ReactionStatus]:
        """Position and failure counts of each of this controller's reactions, in declared order."""
        names = [r.name for r in self.reactions]
        with self.meta.read() as s:
            positions = {
                p.reaction: p
                for p in s.scalars(select(ConsumerPosition).where(ConsumerPosition.reaction.in_(names)))
            }
            counts: dict[tuple[str, bool], int] = {
                (name, dead): n
                for name, dead, n in s.execute(
                    select(ReactionFailure.reaction, ReactionFailure.dead, func.count())
                    .where(ReactionFailure.reaction.in_(names))
                    .group_by(ReactionFailure.reaction, ReactionFailure.dead)
                )
            }
        out = []
        for name in names:
            p = positions.get(name)
            out.append(
                ReactionStatus(
                    name=name,
                    position=p.position if p else 0,
                    holder=p.holder if p else None,
                    updated_at=p.updated_at if p else None,
                    retrying=counts.get((name, False), 0),
                    dead_letters=counts.get((name, True), 0),
                )
            )
        return out

    def failures(self, reaction: str | None = None, *, dead: bool | None = None) -> list[FailureInfo]:
        """Recorded failures (of one reaction, or all), oldest event first."""
        q = select(ReactionFailure).order_by(ReactionFailure.reaction, ReactionFailure.event_seq)
        if reaction is not None:
            q = q.where(ReactionFailure.reaction == reaction)
        if dead is not None:
            q = q.where(ReactionFailure.dead == dead)
        with self.meta.read() as s:
            return [
                FailureInfo(
                    reaction=f.reaction,
                    event_seq=f.event_seq,
                    event_id=f.event_id,
                    event_type=f.event_type,
                    attempts=f.attempts,
                    last_error=f.last_error,
                    first_failed_at=f.first_failed_at,
                    last_failed_at=f.last_failed_at,
                    next_attempt_at=f.next_attempt_at,
                    dead=f.dead,
                )
                for f in s.scalars(q)
            ]

    # -- internals ------------------------------------------------------------------

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _ensure_positions(self) -> None:
        """Create the position row of every reaction seen for the first time (idempotent)."""
        if self._positions_ready:
            return
        now = self.clock()
        with self.meta.write(actor=f"controller:{self.name}") as uow:
            for r in self.reactions:
                start = (
                    select(func.coalesce(func.max(Event.seq), 0)).scalar_subquery() if r.start == "now" else 0
                )
                stmt = (
                    self.meta.dialect.insert(ConsumerPosition)
                    .values(reaction=r.name, position=start, holder=None, created_at=now, updated_at=now)
                    .on_conflict_do_nothing(index_elements=["reaction"])
                )
                uow.session.execute(stmt)
        self._positions_ready = True

    def _advance_horizon(self) -> int | None:
        if self._horizon is None:
            return None
        with self.meta.read() as s:
            return self._horizon.advance(s)

    def _run_batch(self, reaction: Reaction, horizon: int | None) -> tuple[int, bool]:
        """Handle one batch of ``reaction`` in one transaction; return (settled, more to do)."""
        with self.meta.write(actor=f"controller:{reaction.name}") as uow:
            s = uow.session
            pos = s.scalars(
                select(ConsumerPosition)
                .where(ConsumerPosition.reaction == reaction.name)
                # SKIP LOCKED: another controller is on this reaction; leave it to that one.
                # (SQLite renders no FOR UPDATE; BEGIN IMMEDIATE has serialised us already.)
                .with_for_update(skip_locked=True)
            ).one_or_none()
            if pos is None:
                return 0, False
            start = pos.position
            upto, beyond = self._readable_upto(s, start, horizon)
            if upto <= start:
                return 0, False
            events = s.scalars(
                select(Event)
                .where(Event.seq > start, Event.seq <= upto, _subscribed(reaction))
                .order_by(Event.seq)
                .limit(self.batch_size)
            ).all()
            pending = {
                f.event_seq: f
                for f in s.scalars(
                    select(ReactionFailure).where(
                        ReactionFailure.reaction == reaction.name, ReactionFailure.dead.is_(False)
                    )
                )
            }
            now = self.clock()
            done, settled, stopped = start, 0, False
            for ev in events:
                if not reaction.matches(ev.type):  # SQL prefilter is broader only in theory
                    done = ev.seq
                    continue
                failure = pending.get(ev.seq)
                due = failure.next_attempt_at if failure is not None else None
                if due is not None and due > now:
                    stopped = True  # not due yet; later events wait to keep the order
                    break
                attempt = failure.attempts + 1 if failure is not None else 1
                try:
                    with s.begin_nested():
                        reaction.handler(uow, _record(ev, attempt))
                except Exception as exc:
                    if _is_disconnect(exc):
                        raise  # the database went away: not the handler's failure to count
                    if not self._record_failure(uow, reaction, ev, failure, attempt, exc, now):
                        stopped = True
                        break
                done = ev.seq
                settled += 1
            full = len(events) == self.batch_size
            if not stopped and not full:
                done = upto  # no further subscribed event up to the horizon
                full = beyond  # but more final events may follow right after it
            for seq, f in pending.items():
                if seq <= done and not f.dead:
                    s.delete(f)  # handled now, or no longer subscribed
            if done != start:
                pos.position = done
                pos.holder = self.name
                pos.updated_at = now
            return settled, full and not stopped

    def _readable_upto(self, s: Session, start: int, horizon: int | None) -> tuple[int, bool]:
        """The highest seq this batch may read (every event at or below it is final), and
        whether the look-ahead stopped at its limit rather than at a gap or the end."""
        if horizon is None:  # writers commit in seq order: whatever is visible is final
            return s.scalar(select(func.max(Event.seq))) or start, False
        lo = max(start, horizon)
        upto, seen = lo, 0
        following = select(Event.seq).where(Event.seq > lo).order_by(Event.seq).limit(self.batch_size)
        for seq in s.scalars(following):
            if seq != upto + 1:
                return upto, False  # a gap: may be in flight; wait for the horizon to pass it
            upto, seen = seq, seen + 1
        return upto, seen == self.batch_size

    def _record_failure(
        self,
        uow: UnitOfWork,
        reaction: Reaction,
        ev: Event,
        failure: ReactionFailure | None,
        attempt: int,
        exc: Exception,
        now: datetime,
    ) -> bool:
        """Record a failed attempt; dead-letter on the last one. Return whether it is dead."""
        error = _describe(exc)
        if failure is None:
            failure = ReactionFailure(
                reaction=reaction.name,
                event_seq=ev.seq,
                event_id=ev.id,
                event_type=ev.type,
                first_failed_at=now,
                dead=False,
            )
            uow.session.add(failure)
        failure.attempts = attempt
        failure.last_error = error
        failure.last_failed_at = now
        if attempt < reaction.max_attempts:
            failure.next_attempt_at = now + reaction.backoff(attempt)
            log.warning(
                "reaction %s failed on event %s (%s, attempt %d of %d); retrying at %s: %s",
                reaction.name,
                ev.seq,
                ev.type,
                attempt,
                reaction.max_attempts,
                failure.next_attempt_at.isoformat(),
                _first_line(exc),
            )
            return False
        failure.next_attempt_at = None
        failure.dead = True
        if ev.type == REACTION_FAILED and ev.payload.get("reaction") == reaction.name:
            # A reaction failing on the alert about its own failure: a second alert would feed
            # it again, one event per round for ever. The dead letter is the record.
            log.error("reaction %s gave up on the alert of its own failure %s", reaction.name, ev.seq)
            return True
        uow.record(
            REACTION_FAILED,
            f"reaction:{reaction.name}",
            {
                "reaction": reaction.name,
                "event_seq": ev.seq,
                "event_id": ev.id,
                "event_type": ev.type,
                "event_subject": ev.subject,
                "attempts": attempt,
                "error": _first_line(exc),
            },
        )
        log.error(
            "reaction %s gave up on event %s (%s) after %d attempts: %s",
            reaction.name,
            ev.seq,
            ev.type,
            attempt,
            _first_line(exc),
        )
        return True


def _subscribed(reaction: Reaction) -> ColumnElement[bool]:
    """SQL filter for the event types ``reaction`` subscribes to."""
    if "*" in reaction.event_types:
        return true()
    exact: Sequence[str] = sorted(t for t in reaction.event_types if not t.endswith(".*"))
    clauses: list[ColumnElement[bool]] = [Event.type.in_(exact)] if exact else []
    clauses += [
        Event.type.startswith(t[:-1], autoescape=True)  # 'alert.*' -> 'alert.' prefix, '_' literal
        for t in sorted(reaction.event_types)
        if t.endswith(".*")
    ]
    return or_(*clauses)


def _record(ev: Event, attempt: int) -> EventRecord:
    # A deep copy: the handler cannot change the stored event through its payload.
    return EventRecord(
        seq=ev.seq,
        id=ev.id,
        type=ev.type,
        subject=ev.subject,
        payload=copy.deepcopy(ev.payload),
        created_at=ev.created_at,
        attempt=attempt,
    )


def _is_disconnect(exc: BaseException) -> bool:
    return isinstance(exc, BackendUnavailable) or (
        isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
    )


def _describe(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc)).strip()
    if len(text) > _MAX_ERROR_CHARS:  # keep the end: the frame that raised and the message
        text = "…" + text[-_MAX_ERROR_CHARS:]
    return text


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {lines[0]}" if lines else type(orig).__name__
