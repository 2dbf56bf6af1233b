"""The embedded online store: one SQLite file in WAL mode (readers never wait for the writer).

Per view two tables, created by :meth:`SqliteOnlineStore.apply`:

* ``latest__<view>(key PRIMARY KEY, ord, vals)``: ``ord`` is the encoded order
  (:func:`~gyre.features.online.base.encode_order`), so "keep the greater order" is one
  ``INSERT … ON CONFLICT DO UPDATE … WHERE excluded.ord > ord``;
* ``events__<view>(key, t, id, vals)`` keyed by ``(key, t, id)``: a lookup reads one key's
  time range straight off the primary key, and ``INSERT OR IGNORE`` makes writes idempotent.

Watermarks live in ``gyre_watermarks``. Values are JSON text.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from gyre.errors import BackendUnavailable, ConfigError, NotFound
from gyre.features.online.base import (
    Event,
    LatestRow,
    OnlineStore,
    Order,
    Values,
    decode_order,
    encode_order,
)
from gyre.features.online.codec import decode_many, encode_values
from gyre.features.spec import ViewSpec


def _table(kind: str, view: str) -> str:
    return '"' + f"{kind}__{view}".replace('"', '""') + '"'


class SqliteOnlineStore(OnlineStore):
    """An online store in one SQLite file (``path``, or ``":memory:"``)."""

    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            # Autocommit mode: transactions are begun explicitly, in _write.
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            # WAL with synchronous=NORMAL stays consistent on power loss (it may drop the last
            # commits); the online store can always be rebuilt from the lake.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS gyre_watermarks "
                "(view TEXT PRIMARY KEY, version INTEGER NOT NULL, fingerprint TEXT NOT NULL)"
            )
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"Cannot open the SQLite online store at {self.path}: {exc}.") from exc
        # One connection shared by threads: sqlite3 serializes calls on it, but a transaction
        # must not interleave with another thread's statements.
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, *, root: Path | None = None) -> SqliteOnlineStore:
        rest = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        rest = rest.split("?", 1)[0]
        if not rest:
            raise ConfigError(
                f"Invalid SQLite online store URL {url!r}: use sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db."
            )
        if rest == ":memory:" or rest.startswith("/"):
            return cls(rest)
        return cls((root or Path.cwd()) / rest)

    def __repr__(self) -> str:
        return f"SqliteOnlineStore({self.path!r})"

    # -- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _write(self, view: str | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction; driver errors become Gyre's."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._error(exc, view) from exc

    def _read(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]] | None:
        """Rows of a query, or None if the view's table does not exist."""
        with self._lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return None
                raise self._error(exc, None) from exc
            except sqlite3.Error as exc:
                raise self._error(exc, None) from exc

    def _error(self, exc: sqlite3.Error, view: str | None) -> Exception:
        if view is not None and "no such table" in str(exc):
            return NotFound(
                f"The online store has no feature view '{view}'; apply it first "
                "(materialization does: gyre features materialize)."
            )
        return BackendUnavailable(f"The SQLite online store at {self.path} failed: {exc}.")

    # -- views ---------------------------------------------------------------------------------

    def apply(self, views: Sequence[ViewSpec]) -> None:
        with self._write() as conn:
            for view in views:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_table('latest', view.name)} "
                    "(key TEXT PRIMARY KEY, ord TEXT NOT NULL, vals TEXT NOT NULL) WITHOUT ROWID"
                )
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_table('events', view.name)} "
                    "(key TEXT NOT NULL, t INTEGER NOT NULL, id TEXT NOT NULL, vals TEXT NOT NULL, "
                    "PRIMARY KEY (key, t, id)) WITHOUT ROWID"
                )

    def teardown(self, view_names: Sequence[str]) -> None:
        with self._write() as conn:
            for name in view_names:
                conn.execute(f"DROP TABLE IF EXISTS {_table('latest', name)}")
                conn.execute(f"DROP TABLE IF EXISTS {_table('events', name)}")
                conn.execute("DELETE FROM gyre_watermarks WHERE view = ?", (name,))

    # -- latest rows ---------------------------------------------------------------------------

    def write_latest(self, view: str, rows: Sequence[LatestRow]) -> int:
        if not rows:
            return 0
        table = _table("latest", view)
        sql = (
            f"INSERT INTO {table} (key, ord, vals) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET ord = excluded.ord, vals = excluded.vals "
            f"WHERE excluded.ord > {table}.ord"
        )
        params = [(key, encode_order(order), encode_values(values)) for key, order, values in rows]
        with self._write(view) as conn:
            return conn.executemany(sql, params).rowcount

    def read_latest(self, view: str, keys: Sequence[str]) -> list[tuple[Order, Values] | None]:
        if not keys:
            return []
        found = self._read(
            f"SELECT key, ord, vals FROM {_table('latest', view)} "
            "WHERE key IN (SELECT value FROM json_each(?))",
            (json.dumps(list(keys)),),
        )
        rows = found or []
        values = decode_many([v for _, _, v in rows])  # type: ignore[misc]
        by_key = {k: (decode_order(o), v) for (k, o, _), v in zip(rows, values, strict=True)}  # type: ignore[arg-type]
        return [by_key.get(k) for k in keys]

    # -- events --------------------------------------------------------------------------------

    def write_events(self, view: str, events: Sequence[Event]) -> int:
        if not events:
            return 0
        params = [(key, t, event_id, encode_values(values)) for key, t, event_id, values in events]
        with self._write(view) as conn:
            conn.executemany(
                f"INSERT OR IGNORE INTO {_table('events', view)} (key, t, id, vals) VALUES (?, ?, ?, ?)",
                params,
            )
        return len(events)

    def read_events(
        self, view: str, keys: Sequence[str], since_us: int, until_us: int
    ) -> list[list[tuple[int, Values]]]:
        if not keys:
            return []
        found = self._read(
            f"SELECT key, t, vals FROM {_table('events', view)} "
            "WHERE key IN (SELECT value FROM json_each(?)) AND t > ? AND t <= ? ORDER BY key, t, id",
            (json.dumps(list(keys)), since_us, until_us),
        )
        rows = found or []
        values = decode_many([vals for _, _, vals in rows])  # type: ignore[misc]
        by_key: dict[str, list[tuple[int, Values]]] = {}
        for (key, t, _), vals in zip(rows, values, strict=True):
            by_key.setdefault(key, []).append((t, vals))  # type: ignore[arg-type]
        return [list(by_key.get(k, ())) for k in keys]

    def trim_events(self, view: str, before_us: int) -> int:
        try:
            with self._write(view) as conn:
                sql = f"DELETE FROM {_table('events', view)} WHERE t < ?"
                return conn.execute(sql, (before_us,)).rowcount
        except NotFound:
            return 0  # nothing stored, nothing to trim

    # -- watermarks ----------------------------------------------------------------------------

    def get_watermark(self, view: str) -> int | None:
        found = self._read("SELECT version FROM gyre_watermarks WHERE view = ?", (view,))
        return int(found[0][0]) if found else None  # type: ignore[call-overload]

    def get_fingerprint(self, view: str) -> str | None:
        found = self._read("SELECT fingerprint FROM gyre_watermarks WHERE view = ?", (view,))
        return str(found[0][0]) if found else None

    def set_watermark(self, view: str, version: int, *, fingerprint: str = "") -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO gyre_watermarks (view, version, fingerprint) VALUES (?, ?, ?) "
                "ON CONFLICT (view) DO UPDATE SET "
                "version = excluded.version, fingerprint = excluded.fingerprint",
                (view, version, fingerprint),
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
