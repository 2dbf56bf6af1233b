"""Identifiers sortable by creation time (ULID) and the clock Gyre stamps things with."""

from __future__ import annotations

from datetime import UTC, datetime

from ulid import ULID


def new_id() -> str:
    """A new ULID string: 26 characters, sorts by creation time to the millisecond."""
    return str(ULID())


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def now_ms() -> int:
    """Milliseconds since the Unix epoch."""
    return int(datetime.now(UTC).timestamp() * 1000)
