"""Schedules: time turned into events, so timed work is just another reaction.

A :class:`Schedule` fires ``schedule.fired`` events (payload: the schedule's name, the fire
time, and its own payload) into the outbox; reactions subscribe to them like to any other
event, and get their exactly-once handling and retries. Each schedule keeps when it last
fired as a row of ``consumer_positions`` (named ``schedule:<name>``, position = epoch
milliseconds), locked while firing, so several controllers fire each due time once in total.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from gyre.controller.reactions import REACTION_NAME
from gyre.errors import InvalidArgument
from gyre.meta import MetaStore
from gyre.meta.schema import ConsumerPosition

SCHEDULE_FIRED = "schedule.fired"
NextAfter = Callable[[datetime], datetime]


def every(interval: timedelta) -> NextAfter:
    """Fire every ``interval``, aligned to the epoch (``every(timedelta(hours=1))`` fires on the hour)."""
    step = interval.total_seconds()
    if step <= 0:
        raise InvalidArgument(f"A schedule interval must be positive, got {interval}.")

    def next_after(t: datetime) -> datetime:
        return datetime.fromtimestamp((t.timestamp() // step + 1) * step, UTC)

    return next_after


@dataclass(frozen=True)
class Schedule:
    """A named timer: ``next_after(t)`` gives the first fire time strictly after ``t``.

    A schedule seen for the first time starts from now (no backfill of earlier times). When
    the controller was down across several fire times, one event is written for the latest
    of them (``catch_up=False``, the default) or one for each (``catch_up=True``, at most
    ``max_catch_up``).
    """

    name: str
    next_after: NextAfter
    payload: dict[str, Any] = field(default_factory=dict)
    catch_up: bool = False
    max_catch_up: int = 100

    def __post_init__(self) -> None:
        if not REACTION_NAME.match(self.name):
            raise InvalidArgument(
                f"Schedule name {self.name!r} is not valid: use lowercase letters, digits and "
                "'_', '.', ':', '-'."
            )

    @property
    def position_key(self) -> str:
        return f"schedule:{self.name}"[:128]


def fire_due(meta: MetaStore, schedules: list[Schedule], now: datetime, holder: str) -> int:
    """Write the events of every schedule due at ``now``; returns how many were written."""
    fired = 0
    for schedule in schedules:
        with meta.write(actor=f"controller:{schedule.position_key}") as uow:
            s = uow.session
            row = s.scalars(
                select(ConsumerPosition)
                .where(ConsumerPosition.reaction == schedule.position_key)
                .with_for_update(skip_locked=True)
            ).one_or_none()
            if row is None:
                stmt = (
                    meta.dialect.insert(ConsumerPosition)
                    .values(
                        reaction=schedule.position_key,
                        position=_ms(now),
                        holder=holder,
                        created_at=now,
                        updated_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["reaction"])
                )
                s.execute(stmt)
                continue
            last = datetime.fromtimestamp(row.position / 1000, UTC)
            due: list[datetime] = []
            t = schedule.next_after(last)
            while t <= now and len(due) < schedule.max_catch_up:
                due.append(t)
                t = schedule.next_after(t)
            if not due:
                continue
            for when in due if schedule.catch_up else due[-1:]:
                uow.record(
                    SCHEDULE_FIRED,
                    schedule.position_key,
                    {"schedule": schedule.name, "at": when.isoformat(), **schedule.payload},
                )
                fired += 1
            row.position, row.holder, row.updated_at = _ms(due[-1]), holder, now
    return fired


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)
