"""The controller's consumer: exactly once per reaction, retries, dead letters, crashes, concurrency.

Handlers write one row per delivery into a test table with no unique key, so a duplicate
delivery shows up as a second row instead of an error.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, func, insert, select, text

from gyre.controller import REACTION_FAILED, Controller, EventRecord, Reaction
from gyre.errors import InvalidArgument
from gyre.meta import MetaStore, UnitOfWork
from gyre.meta.schema import AuditRecord, ConsumerPosition, Event

HANDLED = Table(
    "handled",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("reaction", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
)


class FakeClock:
    """A clock the test moves by hand, so backoff needs no sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def db(meta: MetaStore) -> MetaStore:
    """The metadata store with the test's ``handled`` table."""
    meta.ensure_schema()
    HANDLED.create(meta.engine)
    return meta


def emit(meta: MetaStore, n: int, event_type: str = "thing.happened", *, per_tx: int = 1) -> list[int]:
    """Write ``n`` events, ``per_tx`` per transaction; return their seqs."""
    for start in range(0, n, per_tx):
        with meta.write() as uow:
            for i in range(start, min(n, start + per_tx)):
                uow.record(event_type, f"thing:{i}", {"i": i})
    with meta.read() as s:
        return list(s.scalars(select(Event.seq).where(Event.type == event_type).order_by(Event.seq)))[-n:]


def recorder(name: str) -> Callable[[UnitOfWork, EventRecord], None]:
    def handle(uow: UnitOfWork, ev: EventRecord) -> None:
        uow.session.execute(
            insert(HANDLED).values(reaction=name, seq=ev.seq, pid=os.getpid(), attempt=ev.attempt)
        )

    return handle


def handled(meta: MetaStore, reaction: str) -> list[int]:
    """Seqs the reaction's handler committed, in the order it handled them."""
    with meta.read() as s:
        q = select(HANDLED.c.seq).where(HANDLED.c.reaction == reaction).order_by(HANDLED.c.id)
        return list(s.scalars(q))


def position(meta: MetaStore, reaction: str) -> int:
    with meta.read() as s:
        return s.scalar(select(ConsumerPosition.position).where(ConsumerPosition.reaction == reaction))


# -- exactly once, in process ------------------------------------------------------------


def test_each_reaction_sees_every_subscribed_event_once_in_order(db: MetaStore) -> None:
    things = emit(db, 25, per_tx=4)
    others = emit(db, 5, "other.thing")
    c = Controller(
        db,
        [Reaction("things", "thing.*", recorder("things")), Reaction("all", "*", recorder("all"))],
        batch_size=7,
    )
    assert c.run_once() == 25 + 30
    assert c.run_once() == 0
    assert handled(db, "things") == things
    assert handled(db, "all") == sorted(things + others)

    more = emit(db, 3)
    assert c.run_once() == 6
    assert handled(db, "things") == things + more
    assert {s.name: s.position for s in c.status()} == {"things": more[-1], "all": more[-1]}
    # A new controller (a restart) resumes from the stored positions.
    assert Controller(db, c.reactions).run_once() == 0


def test_handler_writes_commit_atomically_with_the_position(db: MetaStore) -> None:
    """A batch that dies half way (not an Exception: the process is going down) leaves nothing."""

    class Crash(BaseException):
        pass

    seqs = emit(db, 10)
    record = recorder("r")

    def crash_on_sixth(uow: UnitOfWork, ev: EventRecord) -> None:
        record(uow, ev)
        if ev.seq == seqs[5]:
            raise Crash

    with pytest.raises(Crash):
        Controller(db, [Reaction("r", "thing.*", crash_on_sixth)]).run_once()
    assert handled(db, "r") == []
    assert position(db, "r") == 0
    assert Controller(db, [Reaction("r", "thing.*", record)]).run_once() == 10
    assert handled(db, "r") == seqs


def test_start_now_skips_the_existing_events(db: MetaStore) -> None:
    emit(db, 3)
    c = Controller(db, [Reaction("late", "thing.*", recorder("late"), start="now")])
    assert c.run_once() == 0
    new = emit(db, 2)
    assert c.run_once() == 2
    assert handled(db, "late") == new


def test_event_type_families_match_literally(db: MetaStore) -> None:
    with db.write() as uow:
        for t in ("a_b.x", "axb.y", "a_b", "a_b.c.d", "c.d"):
            uow.record(t, t)
    seen: list[str] = []
    c = Controller(db, [Reaction("r", ["a_b.*", "c.d"], lambda uow, ev: seen.append(ev.type))])
    c.run_once()
    assert seen == ["a_b.x", "a_b.c.d", "c.d"]


def test_bad_declarations_are_refused(meta: MetaStore) -> None:
    ok = recorder("x")
    with pytest.raises(InvalidArgument, match="not valid"):
        Reaction("Bad Name", "a.b", ok)
    with pytest.raises(InvalidArgument, match="no event types"):
        Reaction("r", [], ok)
    with pytest.raises(InvalidArgument, match="event types"):
        Reaction("r", "a.*.b", ok)
    with pytest.raises(InvalidArgument, match="max_attempts"):
        Reaction("r", "a.b", ok, max_attempts=0)
    with pytest.raises(InvalidArgument, match="unique"):
        Controller(meta, [Reaction("r", "a.b", ok), Reaction("r", "c.d", ok)])


# -- failures -------------------------------------------------------------------------------


def test_failing_handler_is_retried_with_backoff_and_later_events_wait(db: MetaStore) -> None:
    seqs = emit(db, 3)
    clock = FakeClock()
    attempts: list[int] = []
    record = recorder("flaky")

    def flaky(uow: UnitOfWork, ev: EventRecord) -> None:
        record(uow, ev)  # written, then rolled back with the failed attempt
        if ev.seq == seqs[1]:
            attempts.append(ev.attempt)
            if ev.attempt < 3:
                raise RuntimeError(f"not yet ({ev.attempt})")

    c = Controller(db, [Reaction("flaky", "thing.*", flaky, backoff_base=10, backoff_cap=100)], clock=clock)
    assert c.run_once() == 1  # the first event; the second fails
    [f] = c.failures("flaky")
    assert (f.event_seq, f.attempts, f.dead) == (seqs[1], 1, False)
    assert f.next_attempt_at == clock.now + timedelta(seconds=10)
    assert "RuntimeError: not yet (1)" in f.last_error
    assert position(db, "flaky") == seqs[0]

    clock.advance(9.9)
    assert c.run_once() == 0  # not due: no call at all
    clock.advance(0.1)
    assert c.run_once() == 0  # attempt 2 fails; the next wait doubles
    assert c.failures("flaky")[0].next_attempt_at == clock.now + timedelta(seconds=20)
    clock.advance(19)
    assert c.run_once() == 0
    clock.advance(1)
    assert c.run_once() == 2  # attempt 3 succeeds, and the third event follows

    assert attempts == [1, 2, 3]
    assert handled(db, "flaky") == seqs  # no row survived from the failed attempts
    assert c.failures() == []
    assert c.status()[0].retrying == 0


def test_always_failing_handler_is_dead_lettered_and_the_consumer_moves_on(db: MetaStore) -> None:
    emit(db, 1)
    with db.write() as uow:
        uow.record("thing.happened", "poison", {})
    good = emit(db, 1)
    clock = FakeClock()
    record = recorder("r")

    def handler(uow: UnitOfWork, ev: EventRecord) -> None:
        if ev.subject == "poison":
            raise ValueError("cannot digest poison")
        record(uow, ev)

    reaction = Reaction("r", "thing.*", handler, max_attempts=3, backoff_base=1, backoff_cap=60)
    c = Controller(db, [reaction], clock=clock)
    assert c.run_once() == 1  # the first event; attempt 1 on the poison fails
    clock.advance(1)
    assert c.run_once() == 0  # attempt 2 fails
    clock.advance(1.5)
    assert c.run_once() == 0  # not due (backoff 2 s)
    clock.advance(0.5)
    assert c.run_once() == 2  # attempt 3 fails: dead-lettered, and the good event follows

    [dead] = c.failures("r", dead=True)
    assert dead.attempts == 3 and dead.next_attempt_at is None
    assert "ValueError: cannot digest poison" in dead.last_error
    assert handled(db, "r")[-1] == good[0]
    assert position(db, "r") == good[0]
    status = c.status()[0]
    assert (status.retrying, status.dead_letters) == (0, 1)
    with db.read() as s:
        [alert] = s.scalars(select(Event).where(Event.type == REACTION_FAILED)).all()
        audit = s.scalars(select(AuditRecord).where(AuditRecord.action == REACTION_FAILED)).one()
    assert alert.subject == "reaction:r"
    assert alert.payload["event_seq"] == dead.event_seq
    assert alert.payload["attempts"] == 3
    assert "cannot digest poison" in alert.payload["error"]
    assert audit.actor == "controller:r"
    assert c.run_once() == 0  # nothing left, and the alert event is not for this reaction


def test_failing_on_the_alert_of_its_own_failure_raises_no_second_alert(db: MetaStore) -> None:
    emit(db, 1)

    def always_fails(uow: UnitOfWork, ev: EventRecord) -> None:
        raise RuntimeError("nope")

    c = Controller(db, [Reaction("everything", "*", always_fails, max_attempts=1)])
    assert c.run_once() == 1  # the event, dead-lettered; writes the alert
    assert c.run_once() == 1  # the alert itself, dead-lettered quietly
    assert c.run_once() == 0
    with db.read() as s:
        alerts = s.scalars(select(Event).where(Event.type == REACTION_FAILED)).all()
    assert len(alerts) == 1
    assert c.status()[0].dead_letters == 2


def test_run_forever_backs_off_instead_of_hot_looping(db: MetaStore) -> None:
    emit(db, 1)
    calls: list[float] = []

    def always_fails(uow: UnitOfWork, ev: EventRecord) -> None:
        calls.append(time.monotonic())
        raise RuntimeError("down")

    reaction = Reaction("r", "thing.*", always_fails, max_attempts=1000, backoff_base=0.03, backoff_cap=0.06)
    c = Controller(db, [reaction], poll_interval=0.005)
    stop = threading.Event()
    t = threading.Thread(target=c.run_forever, args=(stop,))
    t.start()
    time.sleep(0.4)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    # Polling every 5 ms would be ~80 calls; backoff allows about 0.4 / 0.06 + 2.
    assert 2 <= len(calls) <= 10, len(calls)
    assert c.failures("r")[0].attempts == len(calls)


# -- processes: kill -9, several controllers ------------------------------------------------------

CONSUMER = textwrap.dedent(
    """
    import os, sys, threading, time
    from sqlalchemy import MetaData, Table, insert
    from gyre.controller import Controller, Reaction
    from gyre.meta import MetaStore

    url, names, delay, echo = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3]), sys.argv[4] == "1"
    meta = MetaStore(url)
    HANDLED = Table("handled", MetaData(), autoload_with=meta.engine)  # created by the test

    def recorder(name):
        def handle(uow, ev):
            uow.session.execute(
                insert(HANDLED).values(reaction=name, seq=ev.seq, pid=os.getpid(), attempt=ev.attempt)
            )
            if echo:
                print(ev.seq, flush=True)  # handled, not yet committed
            time.sleep(delay)
        return handle

    reactions = [Reaction(n, "thing.*", recorder(n)) for n in names]
    c = Controller(meta, reactions, poll_interval=0.02, batch_size=10)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    c.run_forever(stop)  # returns once the test closes stdin
    meta.close()
    """
)


def start_consumer(url: str, names: list[str], *, delay: float, echo: bool) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CONSUMER, url, ",".join(names), str(delay), "1" if echo else "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        _, err = proc.communicate(10)
        pytest.fail(f"consumer did not start: {line!r} {err}")
    return proc


def stop_consumer(proc: subprocess.Popen[str]) -> str:
    _, err = proc.communicate(timeout=30)  # closes stdin: the consumer stops after its batch
    assert proc.returncode == 0, err
    return err


def rows(meta: MetaStore) -> list[tuple[str, int, int]]:
    with meta.read() as s:
        q = select(HANDLED.c.reaction, HANDLED.c.seq, HANDLED.c.pid).order_by(HANDLED.c.id)
        return [(r, seq, pid) for r, seq, pid in s.execute(q)]


@pytest.mark.slow
def test_kill_9_mid_batch_then_restart_handles_every_event_exactly_once(db: MetaStore, meta_url: str) -> None:
    seqs = emit(db, 120, per_tx=20)
    proc = start_consumer(meta_url, ["r"], delay=0.02, echo=True)
    assert proc.stdout is not None
    printed: list[int] = []
    for line in proc.stdout:
        printed.append(int(line))
        if len(printed) == 45:  # in the middle of the fifth batch of ten
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)

    committed = [seq for _, seq, _ in rows(db)]
    assert 0 < len(committed) < len(printed), "the batch in flight should have been lost with the process"
    assert len(committed) % 10 == 0, "a batch was half committed"
    assert committed == seqs[: len(committed)]
    assert position(db, "r") == committed[-1]

    restarted = Controller(db, [Reaction("r", "thing.*", recorder("r"))])
    assert restarted.run_once() == len(seqs) - len(committed)
    counts = Counter(seq for _, seq, _ in rows(db))
    assert sorted(counts) == seqs, "an event was missed"
    assert set(counts.values()) == {1}, "an event was handled twice"
    assert {pid for _, _, pid in rows(db)} == {proc.pid, os.getpid()}


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[MetaStore]:
    store = MetaStore(pg_url, actor="tester")
    store.ensure_schema()
    HANDLED.create(store.engine)
    yield store
    store.close()


def _write_concurrently(meta: MetaStore, writers: int, each: int) -> None:
    """Writers whose transactions overlap, so seqs commit out of order."""

    def write(w: int) -> None:
        rng = random.Random(w)
        for i in range(each):
            with meta.write() as uow:
                uow.record("thing.happened", f"w{w}:{i}", {})
                uow.session.flush()  # the seq is taken now ...
                time.sleep(rng.uniform(0, 0.01))  # ... and committed a little later

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.integration
@pytest.mark.backend("postgres")
@pytest.mark.slow
def test_two_controller_processes_never_handle_an_event_twice(pg_db: MetaStore, pg_url: str) -> None:
    names = ["r1", "r2", "r3"]
    procs = [start_consumer(pg_url, names, delay=0.002, echo=False) for _ in range(2)]
    try:
        _write_concurrently(pg_db, writers=4, each=30)
        with pg_db.read() as s:
            last = s.scalar(select(func.max(Event.seq)))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and {position(pg_db, n) for n in names} != {last}:
            time.sleep(0.05)
    finally:
        for p in procs:
            stop_consumer(p)
    with pg_db.read() as s:
        seqs = list(s.scalars(select(Event.seq).order_by(Event.seq)))
    assert len(seqs) == 120
    all_rows = rows(pg_db)
    for name in names:
        counts = Counter(seq for r, seq, _ in all_rows if r == name)
        assert sorted(counts) == seqs, f"{name} missed events"
        assert set(counts.values()) == {1}, f"{name} handled an event twice"
    assert {pid for _, _, pid in all_rows} == {p.pid for p in procs}, "both controllers should take part"


# -- PostgreSQL: out-of-order commits, row locks, outages ---------------------------------------------


@pytest.mark.integration
@pytest.mark.backend("postgres")
def test_an_event_committed_out_of_order_is_not_skipped(pg_db: MetaStore) -> None:
    seen: list[int] = []
    c = Controller(pg_db, [Reaction("r", "thing.*", lambda uow, ev: seen.append(ev.seq))])
    c.run_once()
    with pg_db.write() as slow:
        slow.record("thing.slow", "slow")
        slow.session.flush()  # holds seq 1, uncommitted
        with pg_db.write() as fast:
            fast.record("thing.fast", "fast")  # seq 2, committed first
        with pg_db.read() as s:
            assert list(s.scalars(select(Event.seq))) == [2]  # a naive reader would take 2 and skip 1
        assert c.run_once() == 0
        assert seen == []
    assert c.run_once() == 2
    assert seen == [1, 2]
    assert position(pg_db, "r") == 2


@pytest.mark.integration
@pytest.mark.backend("postgres")
def test_a_gap_left_by_a_rollback_is_passed_once_its_writer_is_gone(pg_db: MetaStore) -> None:
    seen: list[int] = []
    c = Controller(pg_db, [Reaction("r", "thing.*", lambda uow, ev: seen.append(ev.seq))])
    with pytest.raises(RuntimeError), pg_db.write() as doomed:
        doomed.record("thing.doomed", "doomed")
        doomed.session.flush()  # seq 1, never committed
        with pg_db.write() as other:
            other.record("thing.other", "other")  # seq 2
        assert c.run_once() == 0
        raise RuntimeError("roll back")
    assert c.run_once() == 1
    assert seen == [2]
    assert position(pg_db, "r") == 2


@pytest.mark.integration
@pytest.mark.backend("postgres")
def test_a_second_controller_skips_a_reaction_another_one_holds(pg_db: MetaStore) -> None:
    emit(pg_db, 3)
    entered, release = threading.Event(), threading.Event()
    record = recorder("r")

    def slow(uow: UnitOfWork, ev: EventRecord) -> None:
        record(uow, ev)
        entered.set()
        assert release.wait(10)

    first = Controller(pg_db, [Reaction("r", "thing.*", slow)], name="first")
    second = Controller(pg_db, [Reaction("r", "thing.*", recorder("r"))], name="second")
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(first.run_once()))
    t.start()
    try:
        assert entered.wait(10)
        started = time.monotonic()
        assert second.run_once() == 0  # the row is locked: skipped, not waited for
        assert time.monotonic() - started < 2
    finally:
        release.set()
        t.join(10)
    assert result == [3]
    assert second.run_once() == 0
    assert Counter(handled(pg_db, "r")) == Counter({1: 1, 2: 1, 3: 1})
    assert second.status()[0].holder == "first"


@pytest.mark.integration
@pytest.mark.backend("postgres")
def test_controller_rides_out_lost_connections(pg_db: MetaStore, pg_url: str) -> None:
    """The database drops every connection mid-stream: the controller reconnects, loses nothing."""
    import psycopg

    c = Controller(pg_db, [Reaction("r", "thing.*", recorder("r"))], poll_interval=0.01, batch_size=5)
    stop = threading.Event()
    t = threading.Thread(target=c.run_forever, args=(stop,))
    t.start()
    try:
        first = emit(pg_db, 30)
        with psycopg.connect(pg_url, autocommit=True) as admin:
            for _ in range(3):
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                time.sleep(0.05)
        second = emit(pg_db, 30)
        deadline = time.monotonic() + 20
        while len(handled(pg_db, "r")) < 60 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        t.join(10)
    assert not t.is_alive()
    assert handled(pg_db, "r") == first + second


def test_controllers_starting_together_create_one_position_row(db: MetaStore) -> None:
    reactions = [Reaction("r", "thing.*", recorder("r"))]
    a, b = Controller(db, reactions), Controller(db, reactions)
    a.run_once()
    b.run_once()
    with db.read() as s:
        assert s.execute(text("SELECT count(*) FROM consumer_positions")).scalar() == 1
