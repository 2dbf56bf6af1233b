"""The fluent layer: ``gyre.start_run()`` and friends, delegating to a default client.

The active run lives in a ``contextvar``, so threads and asyncio tasks each see their own.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gyre.client.client import Client
    from gyre.client.run import ActiveRun
    from gyre.models.registry import ModelVersionInfo

_active: ContextVar[tuple[ActiveRun, ...]] = ContextVar("gyre_active_runs", default=())
_default: Client | None = None
_default_lock = threading.Lock()


def default_client() -> Client:
    """The client made from ``gyre.toml`` / ``GYRE_*`` settings, created on first use."""
    global _default
    with _default_lock:
        if _default is None:
            from gyre.client.client import connect

            _default = connect()
        return _default


def set_default_client(client: Client | None) -> None:
    """Replace (or with ``None`` forget) the client the fluent functions use."""
    global _default
    with _default_lock:
        _default = client


def start_run(
    experiment: str = "default",
    run_name: str | None = None,
    *,
    tags: dict[str, str] | None = None,
    nested: bool = True,
) -> ActiveRun:
    """Start a run with the default client; inside another run it becomes that run's child."""
    stack = _active.get()
    parent = stack[-1].id if stack and nested else None
    return default_client().start_run(experiment, run_name, parent_run_id=parent, tags=tags)


def active_run() -> ActiveRun | None:
    """The innermost run entered with ``with`` in this thread or task, if any."""
    stack = _active.get()
    return stack[-1] if stack else None


def set_alias(name: str, version: int, alias: str, reason: str = "") -> ModelVersionInfo:
    """Point ``alias`` of model ``name`` at ``version`` (``gyre.set_alias("fraud", 3, "champion")``)."""
    return default_client().set_alias(name, alias, version, reason)


def load_model(uri: str) -> Any:
    """Load ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/RUN_ID/PATH``."""
    return default_client().load_model(uri)


def _push_run(run: ActiveRun) -> Token[tuple[ActiveRun, ...]]:
    return _active.set((*_active.get(), run))


def _pop_run(token: Token[tuple[ActiveRun, ...]]) -> None:
    _active.reset(token)
