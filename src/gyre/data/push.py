"""Records pushed over HTTP: acknowledged once durable, committed to the lake in groups.

A request's records are checked against the dataset's schema, then appended as one frame to the
buffer's segment files (:mod:`gyre.data.segments`); only then is the request answered. A
flusher groups buffered records into Delta commits by count or age, so thousands of small
requests make a handful of versions. Each commit carries, per writer slot, the position of the
last frame it holds as a Delta app transaction (``gyre-push/<slot>``), written atomically with
the rows: after a crash at any point, recovery skips what the lake already has and commits the
rest, so no acknowledged record is lost and none is committed twice. A segment is deleted whole
once the lake holds all of it.
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from gyre.data.lake import Lake, check_dataset_name
from gyre.data.records import DatasetRules, record_commit, to_table
from gyre.data.segments import (
    Frame,
    SegmentWriter,
    list_segments,
    read_frames,
    remove,
    segment_path,
    slot_is_held,
)
from gyre.errors import BackendUnavailable, InvalidArgument
from gyre.meta import MetaStore

APP_ID = "gyre-push"
MAX_RECORDS_PER_REQUEST = 10_000
RULES_TTL_S = 5.0

log = logging.getLogger(__name__)


def app_id(slot: int) -> str:
    """The app transaction id a slot's commits are marked with."""
    return f"{APP_ID}/{slot}"


@dataclass
class _Segment:
    """What a flusher has read of one segment."""

    path: Path
    offset: int = 0  # bytes read
    queued: int = 0  # frames read and not known to be committed yet
    done: bool = False  # sealed and read to its end


class PushBuffer:
    """A durable buffer of pushed records, flushed into the lake in groups.

    Args:
        path: the directory of the buffer's segment files.
        max_rows: commit once this many records were appended since the last flush (and at
            most this many records per commit; an append is never split).
        max_delay_s: commit records at most this long after they were acknowledged.

    A process appends to a slot of its own, taken on its first append (a flusher process, which
    only reads, takes none); any process may flush, one at a time (a file lock).
    """

    def __init__(
        self,
        path: Path,
        meta: MetaStore,
        lake: Lake,
        *,
        max_rows: int = 10_000,
        max_delay_s: float = 1.0,
    ) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.meta, self.lake = meta, lake
        self.max_rows, self.max_delay_s = max_rows, max_delay_s
        self._writer: SegmentWriter | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        # Server processes of one project (``gyre serve --workers N``) share the directory; an
        # exclusive file lock makes one flush at a time read-and-commit a group, so no two
        # processes commit the same records.
        self._flush_file = open(path / "flush.lock", "a+b")  # noqa: SIM115 - held for the buffer's life
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._rules_cache: dict[str, tuple[float, DatasetRules]] = {}
        self._appended = 0  # records appended since the last flush began
        # What this process's flushes have read: per segment (slot, number), and the frames
        # not committed yet per dataset, oldest first within each slot.
        self._segments: dict[tuple[int, int], _Segment] = {}
        self._queued: dict[str, list[Frame]] = {}

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
        with self._lock:
            if self._writer is None:
                if self._closed:
                    raise BackendUnavailable("The push buffer is closed; the records were not stored.")
                self._writer = SegmentWriter(self.path)
            self._writer.write(dataset, len(records), payload)
            self._appended += len(records)
            if self._appended >= self.max_rows:
                self._wake.set()
        return len(records)

    # -- flushing ------------------------------------------------------------------------------

    def flush(self) -> dict[str, list[int]]:
        """Commit everything buffered now; returns the new versions per dataset."""
        out: dict[str, list[int]] = {}
        with self._flush_lock:
            fcntl.flock(self._flush_file, fcntl.LOCK_EX)
            try:
                self._appended = 0
                self._drain_legacy(out)
                # Only what was buffered when the flush began: records arriving during a commit
                # wait for the next round, or a steady stream would keep the flusher committing
                # a small group after every commit (measured: 10 Delta versions a second and a
                # core busy at 2,500 predictions/s, where one version a second does).
                committed: dict[tuple[str, int], int] = {}
                self._read_new(committed)
                failed: list[Exception] = []
                for dataset in list(self._queued):
                    try:
                        while (version := self._commit_group(dataset, committed)) is not None:
                            out.setdefault(dataset, []).append(version)
                    except Exception as exc:  # its records stay buffered; other datasets go on
                        failed.append(exc)
                self._remove_committed()
                if failed:
                    raise failed[0]
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
        """Stop the flusher, then seal this process's segments and commit what they hold."""
        if self._flush_file.closed:
            return
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
        with self._lock:
            self._closed = True
            if self._writer is not None:
                self._writer.close()  # frees the slot: its last segment is sealed, and removable
                self._writer = None
        try:
            self.flush()
        except Exception as exc:  # the records stay in their segments for the next start
            log.error("Some pushed records stay buffered, not committed: %s", exc)
        finally:
            self._flush_file.close()

    def close_files(self) -> None:
        """Close the buffer's files without flushing (a flusher process, which never appends)."""
        self._flush_file.close()

    def pending(self, dataset: str | None = None) -> int:
        """How many records are buffered and not committed (of ``dataset``, or of all)."""
        committed: dict[tuple[str, int], int] = {}
        total = 0
        for slot, number in list_segments(self.path):
            path = segment_path(self.path, slot, number)
            try:
                frames, _ = read_frames(path, slot, number, 0, path.stat().st_size)
            except FileNotFoundError:  # committed and removed meanwhile
                continue
            for frame in frames:
                if dataset in (None, frame.dataset) and frame.position > self._committed(committed, frame):
                    total += frame.count
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.max_delay_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
            except Exception:  # the records stay buffered; the next round retries them
                log.exception("flushing pushed records failed; will retry")

    def _spawn(self) -> subprocess.Popen[bytes]:
        from gyre.data.flusher import spawn

        return spawn(
            self.path, self.meta.url, self.lake.url, max_rows=self.max_rows, max_delay_s=self.max_delay_s
        )

    def _watch(self) -> None:
        while not self._stop.wait(self.max_delay_s):
            process = self._process
            if process is not None and process.poll() is not None and not self._stop.is_set():
                log.error("The push flusher process exited (code %s); starting another", process.returncode)
                self._process = self._spawn()

    def _committed(self, committed: dict[tuple[str, int], int], frame: Frame) -> int:
        """The last position of ``frame``'s slot the lake holds for its dataset (-1: none),
        read once per flush: while a flush holds the file lock only its own commits move it."""
        key = (frame.dataset, frame.slot)
        found = committed.get(key)
        if found is None:
            version = self.lake.transaction_version(frame.dataset, app_id(frame.slot))
            found = committed[key] = version if version is not None else -1
        return found

    def _read_new(self, committed: dict[tuple[str, int], int]) -> None:
        """Read the frames appended since the last flush and queue those the lake lacks."""
        listed = list_segments(self.path)
        greatest = dict(listed)  # slot -> its greatest segment number
        # After listing: a slot free now never writes to a listed segment again.
        held = {slot: slot_is_held(self.path, slot) for slot in greatest}
        for slot, number in listed:
            segment = self._segments.get((slot, number))
            if segment is None:
                segment = self._segments[(slot, number)] = _Segment(segment_path(self.path, slot, number))
            if segment.done:
                continue
            sealed = number < greatest[slot] or not held[slot]
            try:
                size = segment.path.stat().st_size
                frames, segment.offset = read_frames(segment.path, slot, number, segment.offset, size)
            except FileNotFoundError:  # another process committed and removed it
                del self._segments[(slot, number)]
                continue
            if sealed:
                segment.done = True
                if segment.offset < size:
                    log.warning(
                        "Skipped the last %d bytes of push buffer segment %s: an append a crash cut "
                        "short, which was never acknowledged.",
                        size - segment.offset,
                        segment.path.name,
                    )
            for frame in frames:
                if frame.position > self._committed(committed, frame):
                    self._queued.setdefault(frame.dataset, []).append(frame)
                    segment.queued += 1
        for key in self._segments.keys() - set(listed):
            del self._segments[key]  # removed by another process, all of it committed

    def _commit_group(self, dataset: str, committed: dict[tuple[str, int], int]) -> int | None:
        """Commit the dataset's oldest queued records the lake does not have yet (at most
        ``max_rows``, at least one append); returns the new version, or None if none is left."""
        queue = []
        for frame in self._queued.get(dataset, ()):
            if frame.position > self._committed(committed, frame):
                queue.append(frame)
            else:  # another process committed it since it was read
                self._settle(frame)
        self._queued[dataset] = queue
        group: list[Frame] = []
        total = 0
        for frame in queue:
            if total and total + frame.count > self.max_rows:
                break
            group.append(frame)
            total += frame.count
        if not group:
            del self._queued[dataset]
            return None
        # Each frame holds a JSON array: one parse of their concatenation.
        records = orjson.loads(b"[" + b",".join(f.records[1:-1] for f in group) + b"]")
        last = {frame.slot: frame.position for frame in group}  # a prefix of each slot's frames
        marks = {app_id(slot): position for slot, position in last.items()}
        version = self._commit(dataset, records, marks, {"push": marks})
        committed.update({(dataset, slot): position for slot, position in last.items()})
        self._queued[dataset] = queue[len(group) :]
        for frame in group:
            self._settle(frame)
        return version

    def _commit(
        self, dataset: str, records: list[Any], marks: dict[str, int], offsets: dict[str, Any]
    ) -> int:
        """Append ``records`` to the lake with the buffer positions ``marks`` (app transactions,
        atomic with the rows) and record the version in the catalog; returns it."""
        table = to_table(dataset, records, self._rules(dataset).schema)
        version = self.lake.append(
            dataset, table, custom_metadata={"gyre.source": "http push"}, app_transactions=marks
        )
        record_commit(self.meta, dataset, version, table, source="http push", offsets=offsets)
        if self._rules(dataset).schema != table.schema:
            self._rules_cache.pop(dataset, None)  # the first commit fixed the schema
        return version

    def _settle(self, frame: Frame) -> None:
        """Count ``frame`` as committed in its segment's tally."""
        segment = self._segments.get((frame.slot, frame.number))
        if segment is not None:
            segment.queued -= 1

    def _remove_committed(self) -> None:
        """Delete the segments the lake holds all of."""
        for key, segment in list(self._segments.items()):
            if segment.done and segment.queued == 0:
                remove(segment.path)
                del self._segments[key]

    def _drain_legacy(self, out: dict[str, list[int]]) -> None:
        """Commit what a buffer file of an older Gyre (SQLite, ``<path>.db``, marked with the
        ``gyre-push`` app transaction) holds and the lake lacks, then delete the file."""
        legacy = self.path.with_suffix(".db")
        if not legacy.exists():
            return
        db = sqlite3.connect(legacy, isolation_level=None, timeout=60)
        try:
            rows = db.execute("SELECT seq, dataset, payload FROM records ORDER BY seq").fetchall()
        except sqlite3.OperationalError:  # no records table: nothing was ever buffered
            rows = []
        finally:
            db.close()
        by_dataset: dict[str, list[tuple[int, Any]]] = {}
        for seq, dataset, payload in rows:
            by_dataset.setdefault(dataset, []).append((seq, payload))
        for dataset, found in by_dataset.items():
            done = self.lake.transaction_version(dataset, APP_ID)
            records: list[Any] = []
            for seq, payload in found:
                if done is None or seq > done:
                    value = orjson.loads(payload)  # the records of one append, or one record
                    if type(value) is list:
                        records.extend(value)
                    else:
                        records.append(value)
            if records:
                last = found[-1][0]
                version = self._commit(dataset, records, {APP_ID: last}, {"push_seq": last})
                out.setdefault(dataset, []).append(version)
        for suffix in ("", "-wal", "-shm"):
            remove(legacy.with_name(legacy.name + suffix))

    def _rules(self, dataset: str) -> DatasetRules:
        """The dataset's schema and row checks, reloaded every few seconds (``gyre apply`` may
        change them), and on every call while the dataset has no schema yet: the commit that
        creates its table may happen in another process (the flusher)."""
        cached = self._rules_cache.get(dataset)
        now = time.monotonic()
        if cached is None or cached[1].schema is None or now - cached[0] > RULES_TTL_S:
            cached = self._rules_cache[dataset] = (now, DatasetRules.load(self.meta, self.lake, dataset))
        return cached[1]
