"""Materialization: copy feature views from the lake into the online store.

For each view the store gets, per entity key, the row point-in-time retrieval would pick
(greatest event time; ties to the row ingested last), and, if the view has windows, the events
recent enough to fall in one of them. Each run reads only the Parquet files added since the
view's watermark, streamed in record batches, and grouped with Arrow/NumPy rather than a
Python loop over rows.

Rows are ordered by ``(event_time_us, version, file_idx, row_idx)`` where ``file_idx`` counts
files within their version and ``row_idx`` rows within their file: the same for a row whether a
run reads it incrementally or in a full rebuild, so both leave the store in the same state.
Writes are idempotent and the watermark is set last, so a run that crashed in between is
repaired by running again.

A run rebuilds the view from every file (tearing down what is stored) when asked to
(``full=True``), on its first run, when the view's definition changed what is stored (its
columns, keys or longest window), or when the dataset was rewritten rather than appended to.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gyre.data.lake import DataFile, Lake
from gyre.errors import InvalidArgument
from gyre.features.online.base import OnlineStore
from gyre.features.online.codec import encode_value, entity_key, to_us
from gyre.features.spec import ViewSpec

US_PER_S = 1_000_000

# Rows read per record batch, and pending rows grouped at once to the latest per key; memory
# stays bounded by these (and by the number of distinct keys) whatever the dataset's size.
BATCH_ROWS = 256 * 1024
REDUCE_ROWS = 2 * 1024 * 1024
# Latest rows handed to the store per call.
WRITE_ROWS = 100_000

# Commit operations that only add rows. Anything else (a delete, an erasure, a compaction)
# may have removed or rewritten rows the store holds, so the view is rebuilt.
_APPEND_OPERATIONS = frozenset({"WRITE", "CREATE TABLE"})

# Internal column names, beside the source's.
_T, _V, _F, _R, _I = "__gyre_t", "__gyre_v", "__gyre_f", "__gyre_r", "__gyre_i"


@dataclass(frozen=True)
class MaterializeResult:
    """What one view's materialization did."""

    view: str
    full: bool
    """Whether the view was rebuilt from every file (see :attr:`reason`)."""
    reason: str
    """Why it was rebuilt: ``"requested"``, ``"first run"``, ``"definition changed"``,
    ``"dataset rewritten"``; empty for an incremental run."""
    since: int | None
    """The watermark the run read from (``None``: it read every file)."""
    version: int
    """The dataset version read up to, now the watermark."""
    files: int
    rows: int
    """Source rows read."""
    latest_written: int
    """Entity keys whose latest row was created or replaced."""
    events_written: int
    events_trimmed: int
    seconds: float


def fingerprint(view: ViewSpec) -> str:
    """What of ``view`` decides the stored data; a change means the store must be rebuilt."""
    stored = {
        "source": view.source,
        "event_time": view.event_time,
        "join_keys": list(view.join_keys),
        "latest": _latest_columns(view),
        "events": _event_columns(view),
        "max_window_s": view.max_window_s,
    }
    return hashlib.sha256(json.dumps(stored, sort_keys=True).encode()).hexdigest()[:16]


def materialize(
    lake: Lake,
    store: OnlineStore,
    views: Sequence[ViewSpec],
    *,
    full: bool = False,
    now: datetime | None = None,
) -> dict[str, MaterializeResult]:
    """Bring ``views`` in ``store`` up to date with the lake.

    Args:
        lake: where the views' source datasets live.
        store: the online store (views are applied to it first).
        views: the views to materialize.
        full: rebuild each view from every file instead of reading only new ones.
        now: the time window events are kept for (those within the longest window before it);
            default the current time. Naive means UTC.

    Returns:
        A :class:`MaterializeResult` per view name.

    Raises:
        NotFound: a view's dataset has no data in the lake.
        InvalidArgument: a view names a column its dataset lacks, or an event-time column that
            is not a timestamp or date.
    """
    now_us = to_us(now if now is not None else datetime.now(UTC))
    store.apply(views)
    return {view.name: _materialize_view(lake, store, view, full=full, now_us=now_us) for view in views}


def _materialize_view(
    lake: Lake, store: OnlineStore, view: ViewSpec, *, full: bool, now_us: int
) -> MaterializeResult:
    started = time.perf_counter()
    version, stored_as = lake.version(view.source), fingerprint(view)
    previous = store.get_watermark(view.name)
    reason = _rebuild_reason(lake, store, view, previous, version, stored_as, full)
    since = None if reason else previous
    if reason:
        store.teardown([view.name])
        store.apply([view])
    files = lake.data_files(view.source, since=since, upto=version) if since != version else []
    writer = _ViewWriter(lake, store, view, now_us)
    writer.read(files)
    trimmed = store.trim_events(view.name, now_us - view.max_window_s * US_PER_S) if view.windows else 0
    store.set_watermark(view.name, version, fingerprint=stored_as)
    return MaterializeResult(
        view=view.name,
        full=bool(reason),
        reason=reason,
        since=since,
        version=version,
        files=len(files),
        rows=writer.rows,
        latest_written=writer.latest_written,
        events_written=writer.events_written,
        events_trimmed=trimmed,
        seconds=time.perf_counter() - started,
    )


def _rebuild_reason(
    lake: Lake,
    store: OnlineStore,
    view: ViewSpec,
    previous: int | None,
    version: int,
    stored_as: str,
    full: bool,
) -> str:
    if full:
        return "requested"
    if previous is None:
        return "first run"
    if store.get_fingerprint(view.name) != stored_as:
        return "definition changed"
    if previous > version:
        return "dataset rewritten"
    if previous < version:
        newer = lake.history(view.source, limit=version - previous)
        if any(entry["operation"] not in _APPEND_OPERATIONS for entry in newer):
            return "dataset rewritten"
    return ""


def _latest_columns(view: ViewSpec) -> list[str]:
    return list(dict.fromkeys(f.column for f in view.columns))


def _event_columns(view: ViewSpec) -> list[str]:
    # `count` counts rows, nulls included: it needs the event, not the value.
    return list(dict.fromkeys(w.column for w in view.windows if w.function != "count"))


class _ViewWriter:
    """Streams a view's new files into the store: latest rows grouped in memory, events as they come."""

    def __init__(self, lake: Lake, store: OnlineStore, view: ViewSpec, now_us: int) -> None:
        self.lake, self.store, self.view = lake, store, view
        self.keys = list(view.join_keys)
        self.latest_columns = _latest_columns(view) if view.columns else []
        self.event_columns = _event_columns(view)
        self.event_cutoff_us = now_us - view.max_window_s * US_PER_S if view.windows else None
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.rows = self.latest_written = self.events_written = 0

    def read(self, files: list[DataFile]) -> None:
        if not files:
            return
        dataset = self.lake.open_files(self.view.source, files)
        needed = list(
            dict.fromkeys([*self.keys, self.view.event_time, *self.latest_columns, *self.event_columns])
        )
        missing = [c for c in needed if c not in dataset.schema.names]
        if missing:
            raise InvalidArgument(
                f"Feature view '{self.view.name}' reads column(s) {', '.join(map(repr, missing))}, which "
                f"dataset '{self.view.source}' does not have; its columns are "
                f"{', '.join(dataset.schema.names)}."
            )
        fragments = list(dataset.get_fragments())
        if len(fragments) != len(files):  # pragma: no cover - open_files makes one fragment per file
            raise AssertionError(f"{len(files)} files opened as {len(fragments)} fragments")
        for data_file, file_idx, fragment in zip(files, _index_within_version(files), fragments, strict=True):
            row = 0
            for batch in fragment.to_batches(schema=dataset.schema, columns=needed, batch_size=BATCH_ROWS):
                self._batch(batch, data_file, file_idx, row)
                row += batch.num_rows
        self._flush_latest()

    def _batch(self, batch: pa.RecordBatch, data_file: DataFile, file_idx: int, first_row: int) -> None:
        n = batch.num_rows
        if n == 0:
            return
        self.rows += n
        t = _event_time_us(batch.column(self.view.event_time), self.view)
        rows = pa.array(np.arange(first_row, first_row + n, dtype=np.int64))
        table = pa.Table.from_batches([batch]).append_column(_T, t).append_column(_R, rows)
        # Rows without an event time are never features; rows with a null join key never match
        # an entity (as in a SQL join).
        valid = pc.is_valid(t)
        for key in self.keys:
            valid = pc.and_(valid, pc.is_valid(table.column(key)))
        if not pc.all(valid).as_py():
            table = table.filter(valid)
        if table.num_rows == 0:
            return
        if self.latest_columns:
            part = table.select(list(dict.fromkeys([*self.keys, *self.latest_columns, _T, _R])))
            m = part.num_rows
            part = part.append_column(_V, pa.array(np.full(m, data_file.version, np.int64)))
            part = part.append_column(_F, pa.array(np.full(m, file_idx, np.int64)))
            self.pending.append(part)
            self.pending_rows += m
            if self.pending_rows >= REDUCE_ROWS:
                self._reduce()
        if self.event_cutoff_us is not None:
            recent = table.filter(pc.greater(table.column(_T), self.event_cutoff_us))
            if recent.num_rows:
                self._write_events(recent, _file_tag(data_file.path))

    def _reduce(self) -> None:
        """Group the pending rows to the latest per key; flush them if that is still many rows."""
        if not self.pending:
            return
        winners = _last_per_key(pa.concat_tables(self.pending), self.keys)
        self.pending, self.pending_rows = [winners], winners.num_rows
        if winners.num_rows >= REDUCE_ROWS // 2:
            # Many distinct keys: hand these to the store (which keeps the greater order per
            # key) rather than hold them, so memory stays bounded.
            self._flush_latest()

    def _flush_latest(self) -> None:
        if not self.pending:
            return
        winners = _last_per_key(pa.concat_tables(self.pending), self.keys)
        self.pending, self.pending_rows = [], 0
        for start in range(0, winners.num_rows, WRITE_ROWS):
            part = winners.slice(start, WRITE_ROWS)
            keys = _entity_keys(part, self.keys)
            orders = zip(
                *(part.column(c).to_pylist() for c in (_T, _V, _F, _R)),
                strict=True,
            )
            values = _json_objects(part, self.latest_columns)
            rows = list(zip(keys, orders, values, strict=True))
            self.latest_written += self.store.write_latest(self.view.name, rows)

    def _write_events(self, table: pa.Table, file_tag: str) -> None:
        keys = pa.array(_entity_keys(table, self.keys), pa.string())
        # Handed over by key and time: a B-tree store then inserts sequentially (2-3x faster).
        order = pc.sort_indices(
            pa.table({"k": keys, "t": table.column(_T)}), [("k", "ascending"), ("t", "ascending")]
        )
        table = table.take(order)
        ids = pc.binary_join_element_wise(file_tag, pc.cast(table.column(_R), pa.string()), ":").to_pylist()
        events = zip(
            keys.take(order).to_pylist(),
            table.column(_T).to_pylist(),
            ids,
            _json_objects(table, self.event_columns),
            strict=True,
        )
        self.events_written += self.store.write_events(self.view.name, list(events))


def _index_within_version(files: list[DataFile]) -> Iterator[int]:
    """Each file's position among the files of its version (stable across full and incremental reads)."""
    seen: dict[int, int] = {}
    for f in files:
        seen[f.version] = seen.get(f.version, -1) + 1
        yield seen[f.version]


def _file_tag(path: str) -> str:
    """A short, stable name for a data file, the first half of its rows' event ids.

    Event ids must be the same whenever a row is read (a rebuild reads it again), so they come
    from the file and the row's position in it; a digest of the path keeps them short (a
    Parquet file's name is ~70 characters, repeated in every stored event).
    """
    return hashlib.blake2b(path.encode(), digest_size=8).hexdigest()


def _event_time_us(column: pa.Array, view: ViewSpec) -> pa.Array:
    """Event times as int64 microseconds since the epoch (UTC), nulls kept; finer units truncated."""
    typ = column.type
    if pa.types.is_timestamp(typ):
        if typ.unit != "us":
            column = pc.cast(column, pa.timestamp("us", typ.tz), safe=False)
        return pc.cast(column, pa.int64())
    if pa.types.is_date(typ):
        return pc.cast(pc.cast(column, pa.timestamp("us")), pa.int64())
    raise InvalidArgument(
        f"Feature view '{view.name}' orders rows by '{view.event_time}', a {typ} column of dataset "
        f"'{view.source}'; the event time must be a timestamp or a date."
    )


def _last_per_key(table: pa.Table, keys: list[str]) -> pa.Table:
    """For each key, its row with the greatest (event time, version, file, row)."""
    columns = [table.column(c).to_numpy() for c in (_R, _F, _V, _T)]
    order = np.lexsort(columns)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    # Group the keys and ranks only; the wide table is touched once, to take the winners.
    ranks = pa.table({**{k: table.column(k) for k in keys}, _I: rank})
    last = ranks.group_by(keys, use_threads=False).aggregate([(_I, "max")])
    return table.take(pa.array(order[last.column(f"{_I}_max").to_numpy()]))


# -- JSON, vectorized ----------------------------------------------------------------------------
#
# Encoding a million dicts one by one with the json module takes seconds; Arrow writes the JSON
# text of whole columns at once for the common types, and Python handles only the rest.

# Characters JSON escapes inside a string (json.dumps with ensure_ascii=False).
_NEEDS_ESCAPE = r'["\\\x00-\x1f]'
_INTEGRAL = r"^-?[0-9]+$"


def _entity_keys(table: pa.Table, keys: list[str]) -> list[str]:
    """:func:`~gyre.features.online.codec.entity_key` of every row (join keys are never null here)."""
    parts = [_json_texts(table.column(k), exact=True) for k in keys]
    joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, ",")
    result: list[str] = pc.binary_join_element_wise("[", joined, "]", "").to_pylist()
    return result


def _json_objects(table: pa.Table, columns: list[str]) -> list[str]:
    """Each row's ``{column: value}`` as JSON that :func:`~gyre.features.online.codec.decode_values`
    reads back as :func:`~gyre.features.online.codec.encode_values` would have written it."""
    if not columns:
        return ["{}"] * table.num_rows
    parts: list[Any] = []
    for i, name in enumerate(columns):
        parts += ["{" if i == 0 else ",", json.dumps(name, ensure_ascii=False), ":"]
        parts.append(pc.fill_null(_json_texts(table.column(name), exact=False), "null"))
    parts.append("}")
    result: list[str] = pc.binary_join_element_wise(*parts, "").to_pylist()
    return result


def _json_texts(column: pa.ChunkedArray, *, exact: bool) -> pa.ChunkedArray | pa.Array:
    """Each value's JSON text (null stays null).

    ``exact``: the very text :func:`~gyre.features.online.codec.entity_key` writes (keys are
    compared as strings); otherwise any text that parses back to the same value.
    """
    typ = column.type
    if pa.types.is_dictionary(typ):
        column = pc.cast(column, typ.value_type)
        typ = column.type
    if pa.types.is_integer(typ) or pa.types.is_boolean(typ):
        return pc.cast(column, pa.string())
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        text = pc.cast(column, pa.string())
        if not pc.any(pc.match_substring_regex(text, _NEEDS_ESCAPE)).as_py():
            return pc.binary_join_element_wise('"', text, '"', "")
    elif pa.types.is_floating(typ) and not exact:
        # Arrow prints the shortest text that parses back to the same double, like Python, but
        # "1" for 1.0 (which JSON would read as an int) and "nan"/"inf" for the non-finite.
        text = pc.cast(pc.cast(column, pa.float64()), pa.string())
        text = pc.if_else(
            pc.match_substring_regex(text, _INTEGRAL), pc.binary_join_element_wise(text, ".0", ""), text
        )
        for arrow_text, json_text in (("nan", "NaN"), ("-inf", "-Infinity"), ("inf", "Infinity")):
            text = pc.if_else(pc.equal(text, arrow_text), json_text, text)
        return text
    # Everything else as the codec writes it, one value at a time.
    encode = (lambda v: entity_key([v])[1:-1]) if exact else encode_value
    return pa.array([None if v is None else encode(v) for v in column.to_pylist()], pa.string())
