"""Online stores: the latest feature row per entity, and recent events for window features.

A backend is chosen by its URL's scheme and imported only when used, so ``redis`` is needed
only by projects that configure ``redis://``:

* ``sqlite:///relative/path.db`` (relative to ``root``, default the working directory) or
  ``sqlite:////absolute/path.db``, optionally with ``?cache_mb=64`` (the page cache): one file,
  the embedded default;
* ``redis://[:password@]host:port/db[?prefix=gyre:]``: Redis, shared by many processes and hosts.

The contract is :class:`~gyre.features.online.base.OnlineStore`. Encoding entity keys and
values (:mod:`gyre.features.online.codec`), reading the lake and aggregating windows live in
the layer above (:mod:`gyre.features.materialize`, :mod:`gyre.features.lookup`).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from gyre.errors import ConfigError, did_you_mean
from gyre.features.online.base import OnlineStore

# scheme -> (module:class, install hint when its client library is missing)
BACKENDS: dict[str, tuple[str, str | None]] = {
    "sqlite": ("gyre.features.online.sqlite:SqliteOnlineStore", None),
    "redis": ("gyre.features.online.redis:RedisOnlineStore", "pip install 'gyre-ml[redis]'"),
}


def open_online_store(url: str, *, root: str | Path | None = None) -> OnlineStore:
    """Open the online store at ``url``, with the backend its scheme names.

    Args:
        url: ``sqlite:///…`` or ``redis://…`` (see the module docstring).
        root: what a relative ``sqlite:///`` path is relative to (default: the working directory).

    Raises:
        ConfigError: an unknown scheme (the message lists the known ones), a malformed URL, or
            a backend whose client library is not installed (the message says what to install).
        BackendUnavailable: the backend cannot be reached.
    """
    scheme, sep, _ = url.partition("://") if isinstance(url, str) else ("", "", "")
    if not sep or scheme not in BACKENDS:
        known = ", ".join(f"{s}://" for s in sorted(BACKENDS))
        raise ConfigError(
            f"Unsupported online store URL {url!r}: use one of {known} "
            "(e.g. sqlite:///.gyre/online.db or redis://localhost:6379/0)." + did_you_mean(scheme, BACKENDS)
        )
    target, hint = BACKENDS[scheme]
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if hint is None or exc.name is None or exc.name.startswith("gyre."):
            raise
        raise ConfigError(
            f"{scheme.capitalize()} online store needs `{hint}` ({exc.name} is not installed)."
        ) from exc
    cls: type[OnlineStore] = getattr(module, class_name)
    return cls.from_url(url, root=Path(root) if root is not None else None)


__all__ = ["BACKENDS", "OnlineStore", "open_online_store"]
