"""The embedded online store: one SQLite file in WAL mode (readers never wait for the writer).

Per view two tables, created by :meth:`SqliteOnlineStore.apply`:

* ``latest__<view>(key PRIMARY KEY, t, ord, vals)``: ``ord`` is the encoded order
  (:func:`~gyre.features.online.base.encode_order`), so "keep the greater order" is one
  ``INSERT … ON CONFLICT DO UPDATE … WHERE excluded.ord > ord``; ``t`` is its event time (the
  only part of the order a lookup needs) as an integer;
* ``events__<view>(key, t, id, vals)`` keyed by ``(key, t, id)``: a lookup reads one key's
  time range straight off the primary key, and ``INSERT OR IGNORE`` makes writes idempotent.

Watermarks live in ``gyre_watermarks``. Values are JSON text. The layout's revision is the
file's ``user_version``; opening a file of an older revision upgrades it in place.

The URL may set the connection's page cache: ``sqlite:///online.db?cache_mb=256`` (default
:data:`CACHE_MB`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from gyre.errors import BackendUnavailable, ConfigError, NotFound
from gyre.features.online.base import (
    Event,
    LatestRow,
    OnlineStore,
    Order,
    Values,
    as_encoded_order,
    decode_order,
    order_time,
)
from gyre.features.online.codec import decode_many, decode_values, encode_values
from gyre.features.spec import ViewSpec

LAYOUT = 1
"""The layout revision this module writes (1 added ``latest.t``)."""
CACHE_MB = 64
"""The default page cache of a store's connection, in MiB.

Lookups read random keys: with SQLite's default 2 MiB (~6,000 latest rows of 10 features) a
larger store re-reads pages from the OS, and 100-entity lookups on 10,000 entities took 1.5x a
raw read of a fully cached table (p50 390 µs against 262); with 64 MiB (~190,000 such rows),
1.2x (310 µs). The cache fills only as pages are read, so a small store costs no more; a
memory map (``mmap_size``) read as fast and did not shorten the p99.
"""
# Keys per statement: SQLite bounds a statement's parameters (32,766; 999 before 3.32).
_KEYS_PER_STATEMENT = 512


def _table(kind: str, view: str) -> str:
    return '"' + f"{kind}__{view}".replace('"', '""') + '"'


def _cache_mb(url: str, value: str | None) -> int:
    """The ``cache_mb`` of a store URL (:data:`CACHE_MB` if not given)."""
    if value is None:
        return CACHE_MB
    if not value.isdigit():
        raise ConfigError(
            f"Invalid SQLite online store URL {url!r}: cache_mb must be a whole number of MiB, not {value!r}."
        )
    return int(value)


def _padded(n: int) -> int:
    """How many ``?`` a read of ``n`` keys has: the next power of two, so a view has a few
    statements, which sqlite3 keeps prepared, rather than one per batch size."""
    return 1 << (n - 1).bit_length()


class SqliteOnlineStore(OnlineStore):
    """An online store in one SQLite file (``path``, or ``":memory:"``)."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"in_process"})

    def __init__(self, path: str | Path, *, cache_mb: int = CACHE_MB) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by threads: sqlite3 serializes calls on it, but a transaction
        # must not interleave with another thread's statements.
        self._lock = threading.Lock()
        # The SQL of each read, per (kind, view, number of keys), built on first use.
        self._sql: dict[tuple[str, str, int], str] = {}
        try:
            # Autocommit mode: transactions are begun explicitly, in _write.
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            # A new file gets 16 KiB pages (an existing one keeps its own): a latest row (~300
            # bytes) is then well under the 1/20 of a page that WITHOUT ROWID tables want, and
            # a bulk write is ~20% faster; point reads are as fast.
            self._conn.execute("PRAGMA page_size=16384")
            self._conn.execute("PRAGMA journal_mode=WAL")
            # WAL with synchronous=NORMAL stays consistent on power loss (it may drop the last
            # commits); the online store can always be rebuilt from the lake.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(f"PRAGMA cache_size={-1024 * cache_mb}")  # negative: in KiB
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS gyre_watermarks "
                "(view TEXT PRIMARY KEY, version INTEGER NOT NULL, fingerprint TEXT NOT NULL)"
            )
            layout = self._conn.execute("PRAGMA user_version").fetchone()[0]
            # Reads share one cursor (under the lock): a cursor per read costs ~5% of a lookup.
            self._cursor = self._conn.cursor()
        except sqlite3.Error as exc:
            raise BackendUnavailable(f"Cannot open the SQLite online store at {self.path}: {exc}.") from exc
        if layout < LAYOUT:
            self._upgrade()

    @classmethod
    def from_url(cls, url: str, *, root: Path | None = None) -> SqliteOnlineStore:
        rest = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        rest, _, query = rest.partition("?")
        if not rest:
            raise ConfigError(
                f"Invalid SQLite online store URL {url!r}: use sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db."
            )
        cache_mb = _cache_mb(url, dict(parse_qsl(query, keep_blank_values=True)).get("cache_mb"))
        if rest == ":memory:" or rest.startswith("/"):
            return cls(rest, cache_mb=cache_mb)
        return cls((root or Path.cwd()) / rest, cache_mb=cache_mb)

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

    def _read(self, sql: str, params: Sequence[object]) -> list[Any] | None:
        """Rows of a query, or None if the view's table does not exist."""
        with self._lock:
            try:
                return self._cursor.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return None
                raise self._error(exc, None) from exc
            except sqlite3.Error as exc:
                raise self._error(exc, None) from exc

    def _read_keys(
        self, kind: str, view: str, keys: Sequence[str], bounds: tuple[int, ...] = ()
    ) -> list[Any]:
        """The rows of read ``kind`` (see :meth:`_statement`) for ``keys``; none if the view's
        table does not exist."""
        found: list[Any] = []
        for start in range(0, len(keys), _KEYS_PER_STATEMENT):
            chunk = keys[start : start + _KEYS_PER_STATEMENT]
            n = _padded(len(chunk))
            sql = self._sql.get((kind, view, n)) or self._statement(kind, view, n)
            # Padded with NULLs, which match no key.
            rows = self._read(sql, [*chunk, *(None,) * (n - len(chunk)), *bounds])
            if rows is None:
                return []
            found += rows
        return found

    def _statement(self, kind: str, view: str, n: int) -> str:
        marks = ", ".join("?" * n)
        if kind == "one":  # a lookup of one key
            sql = f"SELECT t, vals FROM {_table('latest', view)} WHERE key = ?"
        elif kind == "latest":  # for lookups
            sql = f"SELECT key, t, vals FROM {_table('latest', view)} WHERE key IN ({marks})"
        elif kind == "orders":  # read_latest
            sql = f"SELECT key, ord, vals FROM {_table('latest', view)} WHERE key IN ({marks})"
        else:
            sql = (
                f"SELECT key, t, vals FROM {_table('events', view)} "
                f"WHERE key IN ({marks}) AND t > ? AND t <= ? ORDER BY key, t, id"
            )
        self._sql[(kind, view, n)] = sql
        return sql

    def _error(self, exc: sqlite3.Error, view: str | None) -> Exception:
        if view is not None and "no such table" in str(exc):
            return NotFound(
                f"The online store has no feature view '{view}'; apply it first "
                "(materialization does: gyre features materialize)."
            )
        return BackendUnavailable(f"The SQLite online store at {self.path} failed: {exc}.")

    def _upgrade(self) -> None:
        """Bring a file an older Gyre wrote (or a new one) to :data:`LAYOUT`, keeping its rows."""
        with self._write() as conn:
            if conn.execute("PRAGMA user_version").fetchone()[0] >= LAYOUT:
                return  # another process was first
            names = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            for (name,) in names:
                if not name.startswith("latest__"):
                    continue
                table = '"' + name.replace('"', '""') + '"'
                if any(column[1] == "t" for column in conn.execute(f"PRAGMA table_info({table})")):
                    continue
                conn.execute(f"ALTER TABLE {table} ADD COLUMN t INTEGER NOT NULL DEFAULT 0")
                times = [(order_time(o), k) for k, o in conn.execute(f"SELECT key, ord FROM {table}")]
                conn.executemany(f"UPDATE {table} SET t = ? WHERE key = ?", times)
            conn.execute(f"PRAGMA user_version = {LAYOUT}")

    # -- views ---------------------------------------------------------------------------------

    def apply(self, views: Sequence[ViewSpec]) -> None:
        with self._write() as conn:
            for view in views:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {_table('latest', view.name)} "
                    "(key TEXT PRIMARY KEY, t INTEGER NOT NULL, ord TEXT NOT NULL, vals TEXT NOT NULL) "
                    "WITHOUT ROWID"
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
        params = []
        for key, order, values in rows:
            text = as_encoded_order(order)
            params.append((key, order_time(text), text, encode_values(values)))
        return self._write_latest(view, params, unique=len({p[0] for p in params}) == len(params))

    def write_latest_columns(
        self,
        view: str,
        keys: Sequence[str],
        times: Sequence[int],
        orders: Sequence[str],
        values: Sequence[str],
    ) -> int:
        if not keys:
            return 0
        # Straight into executemany: the loop above took 4 ms of 10,000 rows, 3 of them in order_time.
        params = zip(keys, times, orders, values, strict=True)
        return self._write_latest(view, params, unique=len(set(keys)) == len(keys))

    def _write_latest(self, view: str, params: Iterable[tuple[str, int, str, str]], *, unique: bool) -> int:
        """Upsert ``(key, t, ord, vals)`` rows; ``unique``: no key is in two of them."""
        table = _table("latest", view)
        insert = f"INSERT INTO {table} (key, t, ord, vals) VALUES (?, ?, ?, ?)"
        with self._write(view) as conn:
            # Into a view with nothing stored (a rebuild), with each key once, plain INSERTs do
            # what the upsert would, 40% faster.
            empty = conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is None
            if not (empty and unique):
                insert += (
                    " ON CONFLICT (key) DO UPDATE SET t = excluded.t, ord = excluded.ord, "
                    f"vals = excluded.vals WHERE excluded.ord > {table}.ord"
                )
            return conn.executemany(insert, params).rowcount

    def read_latest(self, view: str, keys: Sequence[str]) -> list[tuple[Order, Values] | None]:
        found = self._read_keys("orders", view, keys)
        values = decode_many([v for _, _, v in found])
        by_key = {k: (decode_order(o), v) for (k, o, _), v in zip(found, values, strict=True)}
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
        found = self._read_keys("events", view, keys, (since_us, until_us))
        values = decode_many([v for _, _, v in found])
        by_key: dict[str, list[tuple[int, Values]]] = {}
        for (key, t, _), v in zip(found, values, strict=True):
            by_key.setdefault(key, []).append((t, v))
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
        return int(found[0][0]) if found else None

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

    # -- reading for a lookup ------------------------------------------------------------------

    def read_view(
        self, view: str, keys: Sequence[str], *, latest: bool, events: tuple[int, int] | None
    ) -> tuple[list[tuple[int, Values] | None] | None, list[list[tuple[int, Values]]] | None]:
        if latest and events is None and len(keys) == 1:  # the most common lookup, kept short
            one = self._read(self._sql.get(("one", view, 1)) or self._statement("one", view, 1), keys)
            return ([(one[0][0], decode_values(one[0][1]))] if one else [None]), None
        rows: list[tuple[int, Values] | None] | None = None
        if latest:
            found = self._read_keys("latest", view, keys)
            values = decode_many([v for _, _, v in found])
            by_key = {k: (t, v) for (k, t, _), v in zip(found, values, strict=True)}
            rows = [by_key.get(k) for k in keys]
        return rows, (self.read_events(view, keys, *events) if events is not None else None)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
