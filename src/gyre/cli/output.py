"""How the CLI shows things: Rich tables for people, plain JSON for scripts.

Rich is imported inside the functions, so that ``gyre --help`` and ``gyre --version``
start without it. Every value from the user (names, params, messages) goes into a table as
``rich.text.Text``, never as markup: a param value like ``[red]`` must print as itself.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text

MISSING = "-"
STATUS_STYLES = {"FINISHED": "green", "FAILED": "red", "RUNNING": "yellow", "KILLED": "magenta"}


# -- consoles -----------------------------------------------------------------------------


def console() -> Console:
    """A console on the current ``sys.stdout`` (made per call, so test runners can swap it)."""
    from rich.console import Console

    return Console(highlight=False)


def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_error(message: str) -> None:
    """One red line on stderr: ``error: <message>`` (never wrapped, never read as markup)."""
    from rich.text import Text

    line = " ".join(message.split("\n")) if "\n" in message else message
    err_console().print(Text(f"error: {line}", style="red"), soft_wrap=True)


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout: strict JSON (NaN as "NaN"), no colors, one trailing newline."""
    sys.stdout.write(json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()


@contextmanager
def busy(message: str) -> Iterator[None]:
    """A spinner on stderr while something slow runs; prints nothing when stderr is not a terminal."""
    with err_console().status(message, spinner="dots"):
        yield


# -- JSON -------------------------------------------------------------------------------


def jsonable(obj: Any) -> Any:
    """Turn dataclasses, datetimes, paths and non-finite floats into JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float):
        if math.isnan(obj):
            return "NaN"
        if math.isinf(obj):
            return "Infinity" if obj > 0 else "-Infinity"
        return obj
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    return obj


# -- formatting -------------------------------------------------------------------------


def fmt_float(value: float | None, digits: int = 6) -> str:
    """Six significant digits; ``NaN``, ``inf`` and ``-inf`` spelled out; ``-`` for missing."""
    if value is None:
        return MISSING
    if isinstance(value, str):  # "NaN" / "Infinity" as a server sends them
        value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, f".{digits}g")


def fmt_value(value: Any) -> str:
    """Any param, tag or setting value as text."""
    if value is None:
        return MISSING
    if isinstance(value, float):
        return fmt_float(value)
    if isinstance(value, list | tuple):
        return ", ".join(fmt_value(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt_value(v)}" for k, v in value.items()) or MISSING
    return str(value)


def fmt_time(value: datetime | None, now: datetime | None = None) -> str:
    """Local time, compact as ``ls -l`` does: ``01-31 12:04`` this year, ``2024-01-31`` before."""
    if value is None:
        return MISSING
    local = _local(value)
    now_local = _local(now or datetime.now(UTC))
    if local.year == now_local.year:
        return local.strftime("%m-%d %H:%M")
    return local.strftime("%Y-%m-%d")


def fmt_timestamp(value: datetime | None) -> str:
    """Full local time with its UTC offset: ``2026-01-31 12:04:05 +0100``."""
    if value is None:
        return MISSING
    return _local(value).strftime("%Y-%m-%d %H:%M:%S %z")


def fmt_duration(seconds: float | None) -> str:
    """``0.42s``, ``12s``, ``3m04s``, ``2h05m``, ``3d02h``; ``-`` when unknown."""
    if seconds is None or math.isnan(seconds):
        return MISSING
    if seconds < 10:
        return f"{seconds:.2f}s" if seconds < 1 else f"{seconds:.1f}s"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_size(size: int | None) -> str:
    if size is None:
        return MISSING
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # unreachable; keeps type checkers content


def short(digest: str | None, n: int = 12) -> str:
    """The first ``n`` characters of a hash (enough to tell versions apart, as git does)."""
    return digest[:n] if digest else MISSING


def _local(value: datetime) -> datetime:
    if value.tzinfo is None:  # Gyre stores UTC; a naive value is UTC without its label
        value = value.replace(tzinfo=UTC)
    return value.astimezone()


# -- tables -----------------------------------------------------------------------------


def text(value: Any, style: str = "") -> Text:
    """A table cell: the value as literal text (no markup), optionally styled."""
    from rich.text import Text

    return Text(fmt_value(value), style=style)


def status_text(status: str) -> Text:
    return text(status, STATUS_STYLES.get(status, ""))


def table(*columns: str, title: str | None = None) -> Table:
    """A compact table: bold header, no outer frame, so that it stays readable at 100 columns."""
    from rich import box
    from rich.table import Table

    t = Table(
        *columns,
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        header_style="bold",
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    return t


def kv_table(rows: list[tuple[str, Any]], title: str | None = None) -> RenderableType:
    """Two columns, key and value, for one thing's attributes, under a bold heading if given.

    The heading is a line of its own rather than the table's title, which Rich would wrap
    to the width of a narrow table.
    """
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    t = Table(
        box=box.SIMPLE,
        show_header=False,
        show_edge=False,
        pad_edge=False,
    )
    t.add_column("key", style="cyan", no_wrap=True)
    t.add_column("value", overflow="fold")
    for key, value in rows:
        t.add_row(key, value if _is_text(value) else text(value))
    return Group(Text(title, style="bold"), t) if title else t


def _is_text(value: Any) -> bool:
    from rich.text import Text

    return isinstance(value, Text)
