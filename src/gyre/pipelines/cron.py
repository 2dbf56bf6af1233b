"""Cron expressions: the standard five fields, evaluated in UTC.

Why not ``croniter``: the five-field subset a schedule needs is ~100 lines, and croniter's
maintenance has been uncertain (it was briefly declared abandoned in 2024); one less
dependency for ``pip install``. Supported, as in Vixie cron::

    minute hour day-of-month month day-of-week
    *   5   1-10   1-10/2   */15   1,15,30   jan-dec   sun-sat (0 and 7 are Sunday)
    @hourly @daily @midnight @weekly @monthly @yearly @annually

When both day-of-month and day-of-week are restricted, a day matching either one fires
(cron's rule). Not supported: seconds, years, ``L``, ``W``, ``#``, ``?`` and time zones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gyre.errors import InvalidArgument

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
# name, low, high, names
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_SEARCH_YEARS = 5  # "0 0 30 2 *" never fires; stop looking after this long


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the allowed values of each field."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def matches_day(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.weekday() + 1) % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, after: datetime) -> datetime:
        """The first firing time strictly after ``after`` (UTC; a naive time is taken as UTC)."""
        t = _utc(after).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=366 * _SEARCH_YEARS)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self.matches_day(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        raise InvalidArgument(
            f"Cron expression {self.text!r} never fires (no date in {_SEARCH_YEARS} years)."
        )


def parse_cron(text: str) -> Cron:
    """Parse a five-field expression or a macro; errors name the field and what is allowed."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(
            f"Cron expression {text!r} is empty; write e.g. '0 3 * * *' (daily at 03:00 UTC)."
        )
    source = text.strip()
    expanded = MACROS.get(source.lower(), source)
    if expanded.startswith("@"):
        raise InvalidArgument(f"Unknown cron macro {source!r}; use one of {', '.join(MACROS)}.")
    parts = expanded.split()
    if len(parts) != 5:
        raise InvalidArgument(
            f"Cron expression {source!r} has {len(parts)} fields; it needs 5: minute hour "
            "day-of-month month day-of-week (e.g. '*/15 * * * *')."
        )
    values = [_field(source, part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in values[4])
    return Cron(
        source,
        frozenset(values[0]),
        frozenset(values[1]),
        frozenset(values[2]),
        frozenset(values[3]),
        weekdays,
        days_restricted=parts[2] != "*",
        weekdays_restricted=parts[4] != "*",
    )


def _field(source: str, part: str, name: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    out: set[int] = set()
    for item in part.split(","):
        rng, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise _bad(source, name, item, low, high)
            step = int(step_text)
        if rng == "*":
            start, end = low, high
        elif "-" in rng:
            a, _, b = rng.partition("-")
            start, end = _value(source, name, a, low, high, names), _value(source, name, b, low, high, names)
            if start > end:
                raise _bad(source, name, item, low, high)
        else:
            start = _value(source, name, rng, low, high, names)
            end = high if step_text else start
        out.update(range(start, end + 1, step))
    return out


def _value(source: str, name: str, text: str, low: int, high: int, names: dict[str, int]) -> int:
    text = text.strip().lower()
    if text in names:
        return names[text]
    if not text.isdigit() or not low <= int(text) <= high:
        raise _bad(source, name, text, low, high)
    return int(text)


def _bad(source: str, name: str, item: str, low: int, high: int) -> InvalidArgument:
    return InvalidArgument(
        f"Cron expression {source!r}: {item!r} is not a valid {name}; use {low}-{high}, '*', "
        "ranges 'a-b', lists 'a,b' and steps '*/n'."
    )


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
