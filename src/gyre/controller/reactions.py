"""What a reaction is: a named handler subscribed to event types, and how it is retried.

A reaction is the controller's unit of work and of bookkeeping: each has its own position
in the ``events`` outbox and its own failure records, so a slow or failing reaction never
holds back another one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from gyre.errors import InvalidArgument
from gyre.meta import UnitOfWork

REACTION_NAME = re.compile(r"^[a-z][a-z0-9_.:-]{0,127}$")
EVENT_TYPE = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*(\.\*)?$|^\*$")


@dataclass(frozen=True)
class EventRecord:
    """One outbox event as a handler sees it: a read-only copy of its ``events`` row.

    ``attempt`` counts deliveries of this event to this reaction, from 1; a handler with
    effects outside the metadata store can use ``(reaction name, seq)`` as an idempotency key.
    """

    seq: int
    id: str
    type: str
    subject: str
    payload: dict[str, Any]
    created_at: datetime
    attempt: int = 1


Handler = Callable[[UnitOfWork, EventRecord], None]


@dataclass(frozen=True, init=False)
class Reaction:
    """A handler the controller calls once for every event of the subscribed types.

    Contract of ``handler(uow, event)``:

    - It runs inside the controller's transaction. Whatever it writes through ``uow``
      (``uow.session``, ``uow.record``) commits atomically with the reaction's position, so
      effects in the metadata store happen exactly once. It must not commit or roll back
      the session itself.
    - Raising any ``Exception`` undoes its writes for that event (a savepoint) and schedules
      a retry after ``backoff_base * 2 ** (attempts - 1)`` seconds, capped at ``backoff_cap``.
      Later events wait, so the reaction sees events in order. After ``max_attempts`` failed
      attempts the event is dead-lettered: recorded in ``reaction_failures`` as dead, a
      ``controller.reaction_failed`` event is written, and the reaction moves on.
    - Effects outside the metadata store (starting a job elsewhere, a webhook) can repeat if
      the controller dies after them and before its commit: make them idempotent.

    ``event_types`` are exact types (``dataset.version_created``), a family (``alert.*``),
    or ``*`` for every event. ``start`` decides where a reaction seen for the first time
    begins: ``"beginning"`` (every event in the outbox) or ``"now"`` (only later events).
    """

    name: str
    event_types: frozenset[str]
    handler: Handler
    max_attempts: int = 5
    backoff_base: float = 1.0
    backoff_cap: float = 300.0
    start: Literal["beginning", "now"] = "beginning"
    description: str = field(default="", compare=False)

    def __init__(
        self,
        name: str,
        event_types: Iterable[str] | str,
        handler: Handler,
        *,
        max_attempts: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 300.0,
        start: Literal["beginning", "now"] = "beginning",
        description: str = "",
    ) -> None:
        types = frozenset([event_types] if isinstance(event_types, str) else event_types)
        if not isinstance(name, str) or not REACTION_NAME.match(name):
            raise InvalidArgument(
                f"Reaction name {name!r} is not valid: use 1-128 lowercase letters, digits and "
                "'_', '.', ':', '-', starting with a letter (e.g. 'materialize_features')."
            )
        if not types:
            raise InvalidArgument(f"Reaction {name!r} subscribes to no event types; name at least one.")
        bad = sorted(t for t in types if not isinstance(t, str) or not EVENT_TYPE.match(t))
        if bad:
            raise InvalidArgument(
                f"Reaction {name!r}: event types {bad} are not valid; use 'dataset.version_created', "
                "a family such as 'alert.*', or '*'."
            )
        if not callable(handler):
            raise InvalidArgument(f"Reaction {name!r}: handler must be callable as handler(uow, event).")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidArgument(f"Reaction {name!r}: max_attempts must be an integer >= 1.")
        if not backoff_base > 0 or backoff_cap < backoff_base:
            raise InvalidArgument(
                f"Reaction {name!r}: backoff_base must be > 0 s and backoff_cap >= backoff_base "
                f"(got {backoff_base} and {backoff_cap})."
            )
        if start not in ("beginning", "now"):
            raise InvalidArgument(f"Reaction {name!r}: start must be 'beginning' or 'now', not {start!r}.")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "event_types", types)
        object.__setattr__(self, "handler", handler)
        object.__setattr__(self, "max_attempts", max_attempts)
        object.__setattr__(self, "backoff_base", float(backoff_base))
        object.__setattr__(self, "backoff_cap", float(backoff_cap))
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "description", description)

    def backoff(self, attempts: int) -> timedelta:
        """How long to wait after the ``attempts``-th failed attempt before the next one."""
        # 2 ** n grows without bound; cap the exponent first so huge counts cannot overflow.
        seconds = min(self.backoff_cap, self.backoff_base * 2 ** min(max(attempts - 1, 0), 62))
        return timedelta(seconds=seconds)

    def matches(self, event_type: str) -> bool:
        """Whether this reaction subscribes to events of ``event_type``."""
        if "*" in self.event_types or event_type in self.event_types:
            return True
        return any(t.endswith(".*") and event_type.startswith(t[:-1]) for t in self.event_types)


def reaction(
    name: str,
    event_types: Iterable[str] | str,
    **options: Any,
) -> Callable[[Handler], Reaction]:
    """Decorator form: ``@reaction("retrain", "alert.fired", max_attempts=3)`` over ``fn(uow, event)``."""

    def wrap(fn: Handler) -> Reaction:
        return Reaction(name, event_types, fn, **options)

    return wrap
