"""The controller: consumes the ``events`` outbox and runs reactions, exactly once per event.

Declare :class:`Reaction` objects (a name, the event types, a handler ``fn(uow, event)``)
and run them with a :class:`Controller`::

    controller = Controller(meta, [Reaction("materialize", "dataset.version_created", fn)])
    controller.run_forever(stop_event)

Each reaction keeps its position in the metadata store (``consumer_positions``), advanced
in the same transaction as the handler's writes; failures back off and are dead-lettered
(``reaction_failures``, event ``controller.reaction_failed``). Several controllers may run
against one PostgreSQL database.
"""

from gyre.controller.consumer import (
    REACTION_FAILED,
    Controller,
    FailureInfo,
    ReactionStatus,
)
from gyre.controller.reactions import EventRecord, Handler, Reaction, reaction
from gyre.controller.schedules import SCHEDULE_FIRED, Schedule, every

__all__ = [
    "REACTION_FAILED",
    "SCHEDULE_FIRED",
    "Controller",
    "EventRecord",
    "FailureInfo",
    "Handler",
    "Reaction",
    "ReactionStatus",
    "Schedule",
    "every",
    "reaction",
]
