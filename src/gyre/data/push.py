"""Records pushed over HTTP: acknowledged once durable, committed to the lake in groups.

A request's records are checked against the dataset's schema, then written to a local
SQLite buffer (WAL) in one transaction; only then is the request answered. A flusher groups
buffered records into Delta commits by count or age, so thousands of small requests make a
handful of versions. Each commit carries the buffer position it covers as a Delta app
transaction (``gyre-push``), written atomically with the rows: after a crash at any point,
recovery skips what the lake already has and commits the rest, so no acknowledged record is
lost and none is committed twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import sqlite3
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from gyre.data.lake import Lake, check_dataset_name
from gyre.data.records import DatasetRules, record_commit, to_table
from gyre.errors import InvalidArgument
from gyre.meta import MetaStore

APP_ID = "gyre-push"
MAX_RECORDS_PER_REQUEST = 10_000
RULES_TTL_S = 5.0
TRIM_CHUNK = 100  # appends' rows removed per buffer transaction (~0.6 ms each, appends held)
WAL_RESET_BYTES = 32 << 20  # the buffer's WAL is made to start over past this size


class PushBuffer:
    """A durable buffer of pushed records per dataset, flushed into the lake in groups.

    Args:
        path: the SQLite file holding records not yet committed.
        max_rows: commit once a dataset has this many buffered records.
        max_delay_s: commit records at most this long after they were acknowledged.
        trims: remove committed records from the file. A flusher process does not: it only
            reads the file, so the process answering requests never waits on its locks (a
            request blocked on SQLite's lock sleeps in steps of milliseconds: measured, p99
            latency 11 ms instead of 3 ms at 8 connections); that process trims instead.
    """

    def __init__(
        self,
        path: Path,
        meta: MetaStore,
        lake: Lake,
        *,
        max_rows: int = 10_000,
        max_delay_s: float = 1.0,
        trims: bool = True,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.meta, self.lake = meta, lake
        self.max_rows, self.max_delay_s, self.trims = max_rows, max_delay_s, trims
        self.wal_reset_bytes = WAL_RESET_BYTES
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives a killed process (the acknowledgement's promise); only power loss can
        # lose the last transactions.
        self._db.execute("PRAGMA synchronous=NORMAL")
        # No checkpoints on the request path (SQLite runs them in whichever commit crosses 1,000
        # WAL pages, fsyncs included): the flush checkpoints after removing what it committed.
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        # One row per append: ``payload`` is the JSON array of its ``n`` records (a row of an
        # older file holds one record object, and ``n`` defaults to 1). One row rather than one
        # per record: measured, a 100-record append took 2.6x as long. ``seq`` must never be
        # reused (commits are marked with it); without AUTOINCREMENT, whose counter costs a
        # page write per append, that holds because the greatest row is never deleted, only
        # emptied (see _delete_upto).
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, "
            "dataset TEXT NOT NULL, payload TEXT NOT NULL, n INTEGER NOT NULL DEFAULT 1)"
        )
        if "n" not in {c[1] for c in self._db.execute("PRAGMA table_info(records)")}:
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it first
                self._db.execute("ALTER TABLE records ADD COLUMN n INTEGER NOT NULL DEFAULT 1")
        # Flushes read on a connection of their own: a statement still open on the appends'
        # connection would hold back an append's commit, whatever the append was told.
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=60)
        self._checkpointer: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        # Server processes of one project (``gyre serve --workers N``) share the buffer file;
        # an exclusive file lock makes one flush at a time read-and-commit a group, so no two
        # processes commit the same records.
        self._flush_file = open(path.with_name(path.name + ".flush.lock"), "a+b")  # noqa: SIM115 - held for the buffer's life
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._rules_cache: dict[str, tuple[float, DatasetRules]] = {}
        # Buffered records per dataset, kept in memory so a request never counts the table.
        self._pending: dict[str, int] = dict(
            self._db.execute("SELECT dataset, sum(n) FROM records GROUP BY dataset").fetchall()
        )

    # -- the request path ----------------------------------------------------------------------

    def append(self, dataset: str, records: Sequence[Any], *, checked: bool = False) -> int:
        """Check ``records`` (a list of JSON objects) and store them durably; returns how many.

        ``checked=True`` skips the schema and expectation checks, for records Gyre built itself
        to the dataset's declared schema (the prediction log): they are still converted, and a
        mismatch would still fail the commit, but not cost every request an Arrow conversion.
        """
        check_dataset_name(dataset)
        if not isinstance(records, list) or not records:
            raise InvalidArgument("Send a JSON array of record objects (or NDJSON, one object per line).")
        if len(records) > MAX_RECORDS_PER_REQUEST:
            raise InvalidArgument(
                f"{len(records):,} records in one request; "
                f"send at most {MAX_RECORDS_PER_REQUEST:,} per request."
            )
        for i, r in enumerate(records):
            if not isinstance(r, dict):
                raise InvalidArgument(f'Record {i} is {type(r).__name__}, not an object like {{"field": 1}}.')
        if not checked:
            self._rules(dataset).table(records)  # refuse records that do not fit, before acking
        # orjson: ~5x the standard library on the prediction log's records (a NaN becomes null).
        payload = orjson.dumps(records)
        with self._lock:  # one statement: its own transaction, durable when it returns
            self._db.execute(
                "INSERT INTO records (dataset, payload, n) VALUES (?, ?, ?)", (dataset, payload, len(records))
            )
            self._pending[dataset] = pending = self._pending.get(dataset, 0) + len(records)
        if pending >= self.max_rows:
            self._wake.set()
        return len(records)

    # -- flushing ------------------------------------------------------------------------------

    def flush(self) -> dict[str, list[int]]:
        """Commit everything buffered now; returns the new versions per dataset."""
        out: dict[str, list[int]] = {}
        with self._flush_lock:
            fcntl.flock(self._flush_file, fcntl.LOCK_EX)
            try:
                # Only what was buffered when the flush began: records arriving during a commit
                # wait for the next round, or a steady stream would keep the flusher committing
                # a small group after every commit (measured: 10 Delta versions a second and a
                # core busy at 2,500 predictions/s, where one version a second does).
                upto = self._reader.execute("SELECT max(seq) FROM records").fetchone()[0]
                datasets = [d for (d,) in self._reader.execute("SELECT DISTINCT dataset FROM records")]
                for dataset in datasets:
                    while version := self._commit_group(dataset, upto):
                        out.setdefault(dataset, []).append(version[0])
                if datasets:
                    self.trim(datasets)
            finally:
                fcntl.flock(self._flush_file, fcntl.LOCK_UN)
        return out

    def start(self, *, separate_process: bool = False) -> None:
        """Recover what a crash left behind, then flush in the background: on a thread, or
        with ``separate_process`` in a flusher process of its own (see :mod:`gyre.data.flusher`),
        restarted if it dies, so the serving process's event loop keeps the GIL."""
        self.flush()
        target = self._watch if separate_process else self._loop
        if separate_process:
            self._process = self._spawn()
        self._thread = threading.Thread(target=target, name="gyre-push-flusher", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the flusher after a last flush."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if self._process is not None:
            self._process.terminate()  # it flushes once more, then exits
            try:
                self._process.wait(60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
        self.flush()
        self.close_db()

    def close_db(self) -> None:
        """Close the buffer's files (without flushing)."""
        self._db.close()
        self._reader.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._flush_file.close()

    def pending(self, dataset: str | None = None) -> int:
        """How many records are buffered (of ``dataset``, or of all)."""
        if dataset is None:
            return self._db.execute("SELECT coalesce(sum(n), 0) FROM records").fetchone()[0]
        return self._db.execute(
            "SELECT coalesce(sum(n), 0) FROM records WHERE dataset = ?", (dataset,)
        ).fetchone()[0]

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.max_delay_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
            except Exception:  # the records stay buffered; the next round retries them
                logging.getLogger(__name__).exception("flushing pushed records failed; will retry")

    def _spawn(self) -> subprocess.Popen[bytes]:
        from gyre.data.flusher import spawn

        return spawn(
            self.path, self.meta.url, self.lake.url, max_rows=self.max_rows, max_delay_s=self.max_delay_s
        )

    def _watch(self) -> None:
        while not self._stop.wait(self.max_delay_s):
            process = self._process
            if process is not None and process.poll() is not None and not self._stop.is_set():
                logging.getLogger(__name__).error(
                    "The push flusher process exited (code %s); starting another", process.returncode
                )
                self._process = self._spawn()
            try:
                self.trim()
            except Exception:  # committed records stay in the file until the next round
                logging.getLogger(__name__).exception("removing committed pushed records failed")

    def trim(self, datasets: Sequence[str] | None = None) -> None:
        """Remove the records the lake has committed (by its ``gyre-push`` transaction
        version), then checkpoint the file; a no-op where ``trims`` is off."""
        if not self.trims:
            return
        if datasets is None:
            datasets = [d for d, n in self._pending.items() if n]
        for dataset in datasets:
            committed = self.lake.transaction_version(dataset, APP_ID)
            if committed is not None:
                self._delete_upto(dataset, committed)
        # Appends never checkpoint (see __init__). A checkpoint on a connection of its own runs
        # beside writers, so appends do not wait for its bulk; but the WAL starts over only
        # after a checkpoint no append overtook, so once the WAL is past ``wal_reset_bytes`` a
        # second one, of the few frames appended meanwhile, runs with appends held (~4 ms:
        # without it, steady appends grew the WAL by hundreds of MB a minute).
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        wal = self.path.with_name(self.path.name + "-wal")
        if wal.exists() and wal.stat().st_size > self.wal_reset_bytes:
            with self._lock:
                self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _commit_group(self, dataset: str, upto: int) -> tuple[int] | None:
        """Commit the dataset's oldest records the lake does not have yet (at most ``max_rows``,
        none after ``upto``). What the lake has is read from its transaction version, written
        atomically with the rows: records committed before a crash, or not trimmed yet, are
        never committed twice."""
        committed = self.lake.transaction_version(dataset, APP_ID)  # None before the first commit
        after = committed if committed is not None else 0
        # Which rows make the group (at most max_rows records, at least one row), then read them.
        last, total = 0, 0
        for seq, n in self._reader.execute(
            "SELECT seq, n FROM records WHERE dataset = ? AND seq > ? AND seq <= ? ORDER BY seq",
            (dataset, after, upto),
        ).fetchall():
            if total and total + n > self.max_rows:
                break
            last, total = seq, total + n
        if not total:
            return None
        records: list[Any] = []
        for (payload,) in self._reader.execute(
            "SELECT payload FROM records WHERE dataset = ? AND seq > ? AND seq <= ? ORDER BY seq",
            (dataset, after, last),
        ).fetchall():
            value = orjson.loads(payload)
            if type(value) is list:
                records.extend(value)
            else:  # a row of an older buffer file: one record
                records.append(value)
        table = to_table(dataset, records, self._rules(dataset).schema)
        version = self.lake.append(
            dataset,
            table,
            custom_metadata={"gyre.source": "http push"},
            app_transaction=(APP_ID, last),
        )
        record_commit(self.meta, dataset, version, table, source="http push", offsets={"push_seq": last})
        if self._rules(dataset).schema != table.schema:
            self._rules_cache.pop(dataset, None)  # the first commit fixed the schema
        return (version,)

    def _delete_upto(self, dataset: str, seq: int) -> None:
        """Remove the dataset's records up to ``seq``, a hundred rows per transaction: an append
        waits for one of them at most (under a millisecond), never for the whole trim. The
        table's greatest row is emptied rather than removed, so the next ``seq`` is greater than
        every one used before."""
        while True:
            with self._lock:
                removed = self._db.execute(
                    "DELETE FROM records WHERE seq IN (SELECT seq FROM records WHERE dataset = ? "
                    "AND seq <= ? AND seq < (SELECT max(seq) FROM records) ORDER BY seq LIMIT ?)",
                    (dataset, seq, TRIM_CHUNK),
                ).rowcount
                if removed < TRIM_CHUNK:
                    self._db.execute(
                        "UPDATE records SET payload = '[]', n = 0 WHERE seq = (SELECT max(seq) FROM "
                        "records) AND dataset = ? AND seq <= ? AND n > 0",
                        (dataset, seq),
                    )
                    self._pending[dataset] = self.pending(dataset)
                    return

    def _rules(self, dataset: str) -> DatasetRules:
        """The dataset's schema and row checks, reloaded every few seconds (``gyre apply`` may
        change them), and on every call while the dataset has no schema yet: the commit that
        creates its table may happen in another process (the flusher)."""
        cached = self._rules_cache.get(dataset)
        now = time.monotonic()
        if cached is None or cached[1].schema is None or now - cached[0] > RULES_TTL_S:
            cached = self._rules_cache[dataset] = (now, DatasetRules.load(self.meta, self.lake, dataset))
        return cached[1]
