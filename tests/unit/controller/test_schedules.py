"""Schedules: due times become schedule.fired events, once each, even with two controllers."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from gyre.controller import SCHEDULE_FIRED, Controller, EventRecord, Reaction, Schedule, every
from gyre.errors import InvalidArgument
from gyre.meta import MetaStore, UnitOfWork
from gyre.meta.schema import Event


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def fired(meta: MetaStore) -> list[tuple[str, str]]:
    with meta.read() as s:
        rows = s.scalars(select(Event).where(Event.type == SCHEDULE_FIRED).order_by(Event.seq))
        return [(e.payload["schedule"], e.payload["at"]) for e in rows]


def test_every_aligns_to_the_interval() -> None:
    hourly = every(timedelta(hours=1))
    assert hourly(datetime(2026, 1, 1, 10, 15, tzinfo=UTC)) == datetime(2026, 1, 1, 11, tzinfo=UTC)
    assert hourly(datetime(2026, 1, 1, 11, tzinfo=UTC)) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    with pytest.raises(InvalidArgument):
        every(timedelta(0))
    with pytest.raises(InvalidArgument, match="Schedule name"):
        Schedule("Bad Name", hourly)


def test_due_times_fire_once_and_reactions_see_them(meta: MetaStore) -> None:
    clock = Clock()
    seen: list[str] = []

    def handle(uow: UnitOfWork, ev: EventRecord) -> None:
        seen.append(ev.payload["at"])

    schedules = [
        Schedule("drift-check", every(timedelta(minutes=1)), payload={"monitor": "fraud"}),
        Schedule("backfill", every(timedelta(minutes=1)), catch_up=True),
    ]
    controller = Controller(
        meta, [Reaction("on-tick", SCHEDULE_FIRED, handle)], schedules=schedules, clock=clock
    )
    controller.run_once()
    assert fired(meta) == []  # a new schedule starts from now: no backfill of earlier times
    clock.now += timedelta(seconds=40)  # 00:01:10
    controller.run_once()
    controller.run_once()  # nothing new is due: nothing fires twice
    assert fired(meta) == [
        ("drift-check", "2026-01-01T00:01:00+00:00"),
        ("backfill", "2026-01-01T00:01:00+00:00"),
    ]
    clock.now += timedelta(minutes=3)  # 00:04:10: three minutes were missed
    controller.run_once()
    after = fired(meta)[2:]
    assert ("drift-check", "2026-01-01T00:04:00+00:00") in after
    assert [at for name, at in after if name == "drift-check"] == ["2026-01-01T00:04:00+00:00"]
    assert [at for name, at in after if name == "backfill"] == [
        "2026-01-01T00:02:00+00:00",
        "2026-01-01T00:03:00+00:00",
        "2026-01-01T00:04:00+00:00",
    ]
    assert len(seen) == len(fired(meta))
    with meta.read() as s:
        event = s.scalars(select(Event).where(Event.type == SCHEDULE_FIRED)).first()
        assert event is not None and event.payload["monitor"] == "fraud"


def test_two_controllers_fire_each_due_time_once(meta: MetaStore) -> None:
    clock = Clock()
    schedule = [Schedule("tick", every(timedelta(seconds=10)), catch_up=True)]
    controllers = [Controller(meta, [], schedules=schedule, clock=clock, name=f"c{i}") for i in range(2)]
    controllers[0].run_once()
    clock.now += timedelta(minutes=5)
    threads = [threading.Thread(target=c.run_once) for c in controllers for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    times = [at for _, at in fired(meta)]
    assert len(times) == len(set(times)) == 30
