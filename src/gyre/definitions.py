"""Definitions as code: the objects users declare in their modules, and how they are found.

A :class:`Definition` is anything ``gyre apply`` registers: a dataset, an entity, a feature
view, an on-demand feature (pipelines and monitors later). Each has a ``kind``, a ``name``
unique within its kind, and a JSON ``spec`` that is what the registry stores and diffs.
:func:`load_definitions` imports the modules listed under ``[project] definitions`` in
``gyre.toml`` and collects every definition they hold at module level.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
import types
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from gyre.errors import InvalidArgument, NotFound, did_you_mean

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,127}$")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def check_name(kind: str, name: Any) -> str:
    """A definition name: letters, digits, ``_`` and ``-``, starting with a letter or ``_``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidArgument(
            f"{kind} name {name!r} is not valid: use letters, digits, '_' and '-', "
            "starting with a letter or '_' (at most 128 characters)."
        )
    return name


def parse_duration(value: str | int | float | timedelta, what: str = "duration") -> timedelta:
    """``"10m"``, ``"1h"``, ``"7d"``, ``"2w"``, seconds as a number, or a ``timedelta``; positive."""
    if isinstance(value, timedelta):
        delta = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        delta = timedelta(seconds=value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        delta = timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    else:
        raise InvalidArgument(
            f"{what} {value!r} is not a duration: write it like '30s', '10m', '1h', '7d' or '2w'."
        )
    if delta <= timedelta(0):
        raise InvalidArgument(f"{what} must be positive, got {value!r}.")
    return delta


def format_duration(delta: timedelta) -> str:
    """The shortest exact spelling of ``delta`` in days, hours, minutes or seconds (``3600s`` → ``1h``)."""
    seconds = int(delta.total_seconds())
    for unit in ("d", "h", "m"):  # days, not weeks: "7d" is how windows are spoken of
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def spec_hash(spec: dict[str, Any]) -> str:
    """A stable digest of a spec (key order does not matter)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class Definition:
    """Base of everything ``gyre apply`` registers."""

    kind: ClassVar[str]
    name: str

    def spec(self) -> dict[str, Any]:
        """The registered form: JSON-safe, and equal for equal definitions."""
        raise NotImplementedError

    def references(self) -> list[tuple[str, str]]:
        """``(kind, name)`` of the definitions this one needs (checked by ``gyre apply``)."""
        return []


class Definitions:
    """The definitions of a project, by kind and name."""

    def __init__(self, items: Iterable[Definition] = ()) -> None:
        self._by_key: dict[tuple[str, str], Definition] = {}
        for item in items:
            self.add(item)

    def add(self, item: Definition) -> None:
        key = (item.kind, item.name)
        existing = self._by_key.get(key)
        if existing is not None and existing is not item and existing.spec() != item.spec():
            raise InvalidArgument(
                f"Two different {item.kind} definitions are named '{item.name}'; rename one of them."
            )
        self._by_key[key] = item

    def __iter__(self) -> Iterator[Definition]:
        return iter(self._by_key.values())

    def __len__(self) -> int:
        return len(self._by_key)

    def of_kind(self, kind: str) -> list[Definition]:
        return [d for (k, _), d in self._by_key.items() if k == kind]

    def find(self, kind: str, name: str) -> Definition | None:
        return self._by_key.get((kind, name))

    def get(self, kind: str, name: str) -> Definition:
        found = self.find(kind, name)
        if found is None:
            names = [n for (k, n) in self._by_key if k == kind]
            raise NotFound(
                f"No {kind.replace('_', ' ')} named '{name}' in the project's definitions."
                + did_you_mean(name, names)
            )
        return found


def load_definitions(root: Path, modules: Iterable[str]) -> Definitions:
    """Import each module file (relative to ``root``) and collect its module-level definitions.

    Args:
        root: the project root (the folder holding ``gyre.toml``).
        modules: file paths such as ``definitions.py`` or ``features/payments.py``.

    Raises:
        InvalidArgument: a file is missing, outside the project, or fails to import (the
            message carries the module's own error).
    """
    found = Definitions()
    root = root.resolve()
    for entry in modules:
        path = (root / entry).resolve()
        if not path.is_relative_to(root):
            raise InvalidArgument(f"Definitions module '{entry}' is outside the project root {root}.")
        if not path.is_file():
            raise InvalidArgument(
                f"Definitions module '{entry}' does not exist under {root}; create it or fix "
                "[project] definitions in gyre.toml."
            )
        module = _import_file(root, path)
        for value in vars(module).values():
            if isinstance(value, Definition):
                found.add(value)
            elif isinstance(value, list | tuple):
                for item in value:
                    if isinstance(item, Definition):
                        found.add(item)
    return found


PROJECT_PACKAGE = "gyre_project"


def ensure_project_package() -> None:
    """Make ``gyre_project`` (the package the definition modules are imported under) exist,
    so ``gyre_project.definitions`` can be imported by name, e.g. by pickle when a step that
    calls one of the module's functions is sent to a worker process."""
    if PROJECT_PACKAGE not in sys.modules:
        package = types.ModuleType(PROJECT_PACKAGE, "The project's definition modules, as Gyre imports them.")
        package.__path__ = []  # a package with no files of its own: its modules come from _import_file
        sys.modules[PROJECT_PACKAGE] = package


def _import_file(root: Path, path: Path) -> Any:
    rel = path.relative_to(root).with_suffix("")
    name = f"{PROJECT_PACKAGE}." + ".".join(rel.parts)
    ensure_project_package()
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InvalidArgument(f"Cannot import definitions module {path}: not a Python file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # The project root is importable while its definitions load, so they can import helpers.
    added = str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise InvalidArgument(
            f"Importing definitions module {path.relative_to(root)} failed: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        if added:
            sys.path.remove(str(root))
    return module
