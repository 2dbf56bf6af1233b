"""What differs between SQLite and PostgreSQL, in one class per dialect."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, case, func, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from gyre.errors import InvalidArgument


class SqlDialect:
    """The operations whose SQL differs by database. Instances are equal per database kind,
    so statements built for a dialect can be cached."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    name = ""

    def engine_options(self) -> dict[str, Any]:
        return {}

    def insert(self, table: Any) -> Any:
        """An INSERT that supports ``.on_conflict_do_update`` / ``.on_conflict_do_nothing``."""
        raise NotImplementedError

    def lock_for_migration(self, conn: Connection) -> None:
        """Serialise schema creation between processes that start at the same time."""

    def json_object_agg(self, key: Any, value: Any, *, numeric: bool = False) -> ColumnElement[Any]:
        """Aggregate ``key -> value`` rows into one JSON object (non-finite numbers as strings)."""
        raise NotImplementedError


class SqliteDialect(SqlDialect):
    name = "sqlite"

    def engine_options(self) -> dict[str, Any]:
        # The BEGIN IMMEDIATE of a write transaction already serialises migrations.
        return {"connect_args": {"check_same_thread": False, "timeout": 60}}

    def insert(self, table: Any) -> Any:
        return sqlite.insert(table)

    def json_object_agg(self, key: Any, value: Any, *, numeric: bool = False) -> ColumnElement[Any]:
        if numeric:  # SQLite's JSON writes infinity as the invalid token Inf; spell it out
            value = case((value > _MAX_DOUBLE, "Infinity"), (value < -_MAX_DOUBLE, "-Infinity"), else_=value)
        return func.json_group_object(key, value)


class PostgresDialect(SqlDialect):
    name = "postgresql"

    def engine_options(self) -> dict[str, Any]:
        return {
            "pool_pre_ping": True,
            "pool_size": 5,
            "max_overflow": 10,
            "connect_args": {"connect_timeout": 5},
        }

    def insert(self, table: Any) -> Any:
        return postgresql.insert(table)

    def json_object_agg(self, key: Any, value: Any, *, numeric: bool = False) -> ColumnElement[Any]:
        # PostgreSQL writes non-finite float8 values as the strings "NaN" and "Infinity".
        return func.json_object_agg(key, value)

    def lock_for_migration(self, conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(7268697265)"))  # 'gyre' as a number


_MAX_DOUBLE = 1.7976931348623157e308


def dialect_for(url: str) -> SqlDialect:
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    if scheme == "sqlite":
        return SqliteDialect()
    if scheme in {"postgresql", "postgres"}:
        return PostgresDialect()
    raise InvalidArgument(
        f"Unsupported metadata URL scheme '{scheme}://'; use sqlite:///path/meta.db or "
        "postgresql://user@host:5432/db."
    )
