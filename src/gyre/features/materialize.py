"""Materialization: copy feature views from the lake into the online store.

For each view the store gets, per entity key, the row point-in-time retrieval would pick
(greatest event time; ties to the row ingested last), and, if the view has windows, the events
recent enough to fall in one of them. Each run reads only the Parquet files added since the
view's watermark, streamed in record batches; DuckDB picks the latest row per key (one GROUP BY,
as a hand-written query would), and keys, orders and values are encoded a column at a time
with Arrow, not a row at a time in Python.

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
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from gyre.data.lake import DataFile, Lake
from gyre.errors import InvalidArgument
from gyre.features import _duckdb
from gyre.features._parquet import with_dictionaries
from gyre.features.online.base import ORDER_DIGITS, OnlineStore
from gyre.features.online.codec import encode_value, entity_key, to_us
from gyre.features.spec import ViewSpec

if TYPE_CHECKING:
    import duckdb
    import pyarrow.dataset as pads

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
_T, _S = "__gyre_t", "__gyre_s"


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
    """Streams a view's new files into the store: latest rows grouped in memory, events as they come.

    Every row read gets a sequence number ``seq``, counting rows in the order files are read
    (by version, then file, then row); ``segments`` maps it back to ``(version, file_idx,
    row_idx)``. Within a run, "ingested later" is "greater seq", so the latest row per key is
    the one with the greatest ``(event time, seq)``, which DuckDB picks in one GROUP BY.
    """

    def __init__(self, lake: Lake, store: OnlineStore, view: ViewSpec, now_us: int) -> None:
        self.lake, self.store, self.view = lake, store, view
        self.keys = list(view.join_keys)
        self.latest_columns = _latest_columns(view) if view.columns else []
        self.event_columns = _event_columns(view)
        self.event_cutoff_us = now_us - view.max_window_s * US_PER_S if view.windows else None
        self.pending: list[pa.Table] = []
        self.pending_rows = 0
        self.seq = 0
        # Per record batch: (first seq, version, file_idx, row_idx of its first row).
        self.segments: list[tuple[int, int, int, int]] = []
        self.rows = self.latest_written = self.events_written = 0
        self._duckdb: duckdb.DuckDBPyConnection | None = None

    def read(self, files: list[DataFile]) -> None:
        if not files:
            return
        # By version (stable, so file_idx keeps its meaning): seq then grows with ingestion.
        files = sorted(files, key=lambda f: f.version)
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
        schema, fragments = with_dictionaries(dataset.schema, fragments, needed)
        try:
            for data_file, file_idx, fragment in zip(
                files, _index_within_version(files), fragments, strict=True
            ):
                row = 0
                for batch in _batches(fragment, data_file, schema, needed):
                    self._batch(batch, data_file, file_idx, row)
                    row += batch.num_rows
            self._flush_latest()
        finally:
            if self._duckdb is not None:
                self._duckdb.close()

    def _batch(self, batch: pa.RecordBatch, data_file: DataFile, file_idx: int, first_row: int) -> None:
        n = batch.num_rows
        if n == 0:
            return
        self.rows += n
        t = _event_time_us(batch.column(self.view.event_time), self.view)
        self.segments.append((self.seq, data_file.version, file_idx, first_row))
        seq = pa.array(np.arange(self.seq, self.seq + n, dtype=np.int64))
        self.seq += n
        table = pa.Table.from_batches([batch]).append_column(_T, t).append_column(_S, seq)
        # Rows without an event time are never features; rows with a null join key never match
        # an entity (as in a SQL join).
        if t.null_count or any(table.column(key).null_count for key in self.keys):
            valid = pc.is_valid(t)
            for key in self.keys:
                valid = pc.and_(valid, pc.is_valid(table.column(key)))
            table = table.filter(valid)
        if table.num_rows == 0:
            return
        if self.latest_columns:
            self.pending.append(table.select(list(dict.fromkeys([*self.keys, *self.latest_columns, _T, _S]))))
            self.pending_rows += table.num_rows
            if self.pending_rows >= REDUCE_ROWS:
                self._reduce()
        if self.event_cutoff_us is not None:
            recent = table.filter(pc.greater(table.column(_T), self.event_cutoff_us))
            if recent.num_rows:
                rows = pc.add(recent.column(_S), first_row - self.segments[-1][0])
                self._write_events(recent, rows, _file_tag(data_file.path))

    def _last_per_key(self) -> pa.Table:
        """The pending rows reduced to the latest per key: the greatest (event time, seq).

        (t, seq) is packed into one integer that sorts the same way: a BIGINT when the time span
        allows (30 days of a million rows need 62 bits), else a HUGEINT, 2x slower to group.
        DuckDB packs as it scans: arrays of a million packed values made here would be fresh
        memory, whose page faults cost more than the grouping in a process's first runs.
        """
        table = pa.concat_tables(self.pending)
        t, seq = table.column(_T), table.column(_S)
        low, high = (v.as_py() for v in pc.min_max(t).values())
        rows = self.seq  # every seq is below it
        wide = (high - low + 1) * rows >= 2**63
        packed = f"({'t::HUGEINT' if wide else 't'} - ({low})) * {rows} + s"
        # Positional key names: no user column name needs quoting.
        keys = [f"k{i}" for i in range(len(self.keys))]
        columns = {k: table.column(name) for k, name in zip(keys, self.keys, strict=True)}
        if self._duckdb is None:
            self._duckdb = _duckdb.cursor()
        self._duckdb.register("pending", pa.table({**columns, "t": t, "s": seq}))
        try:
            winners = self._duckdb.sql(
                f"SELECT CAST(max({packed}) % {rows} AS BIGINT) AS s FROM pending GROUP BY {', '.join(keys)}"
            ).fetchnumpy()["s"]
        finally:
            self._duckdb.unregister("pending")
        return _take_seqs(table, winners)

    def _reduce(self) -> None:
        """Group the pending rows to the latest per key; flush them if that is still many rows."""
        winners = self._last_per_key()
        self.pending, self.pending_rows = [winners], winners.num_rows
        if winners.num_rows >= REDUCE_ROWS // 2:
            # Many distinct keys: hand these to the store (which keeps the greater order per
            # key) rather than hold them, so memory stays bounded.
            self._flush_latest()

    def _flush_latest(self) -> None:
        if not self.pending:
            return
        winners = self._last_per_key()
        self.pending, self.pending_rows = [], 0
        keys = _entity_keys(winners, self.keys)
        orders = self._orders(winners.column(_T).to_numpy(), winners.column(_S).to_numpy())
        values = _json_objects(winners, self.latest_columns)
        times = winners.column(_T)
        # Handed over by key: a B-tree store then inserts sequentially.
        by_key = pc.sort_indices(keys)
        for start in range(0, winners.num_rows, WRITE_ROWS):
            part = by_key[start : start + WRITE_ROWS]
            columns = [c.take(part).to_pylist() for c in (keys, times, orders, values)]
            self.latest_written += self.store.write_latest_columns(self.view.name, *columns)

    def _orders(self, t: np.ndarray, seq: np.ndarray) -> pa.Array:
        """The encoded order ``(event_time_us, version, file_idx, row_idx)`` of each row."""
        starts, versions, files, first_rows = (
            np.array(c, np.int64) for c in zip(*self.segments, strict=True)
        )
        segment = np.searchsorted(starts, seq, side="right") - 1
        row = first_rows[segment] + (seq - starts[segment])
        return encode_orders([t, versions[segment], files[segment], row])

    def _write_events(self, table: pa.Table, rows: pa.ChunkedArray, file_tag: str) -> None:
        keys = _entity_keys(table, self.keys)
        # Handed over by key and time: a B-tree store then inserts sequentially (2-3x faster).
        order = pc.sort_indices(
            pa.table({"k": keys, "t": table.column(_T)}), [("k", "ascending"), ("t", "ascending")]
        )
        table = table.take(order)
        ids = pc.binary_join_element_wise(file_tag, pc.cast(rows.take(order), pa.string()), ":").to_pylist()
        events = zip(
            keys.take(order).to_pylist(),
            table.column(_T).to_pylist(),
            ids,
            _json_objects(table, self.event_columns).to_pylist(),
            strict=True,
        )
        self.events_written += self.store.write_events(self.view.name, list(events))


def _take_seqs(table: pa.Table, seqs: np.ndarray) -> pa.Table:
    """The rows whose seq is in ``seqs``, batch by batch (each batch's seqs ascend), in seq
    order: a take over chunked columns would first copy every chunk into one array."""
    seqs = np.sort(seqs)
    parts = []
    for batch in table.to_batches():
        own = batch.column(_S).to_numpy()
        lo, hi = np.searchsorted(seqs, [own[0], own[-1] + 1]) if len(own) else (0, 0)
        if hi > lo:
            parts.append(batch.take(pa.array(np.searchsorted(own, seqs[lo:hi]))))
    return pa.Table.from_batches(parts, table.schema)


def encode_orders(columns: list[np.ndarray]) -> pa.Array:
    """:func:`~gyre.features.online.base.encode_order` of each row of int64 ``columns``, at once."""
    parts = []
    for column in columns:
        # x + 2**63 as an unsigned integer is x's bits with the sign bit flipped.
        shifted = column.astype(np.int64).view(np.uint64) ^ np.uint64(1 << 63)
        parts.append(pc.utf8_lpad(pc.cast(pa.array(shifted), pa.string()), ORDER_DIGITS, "0"))
    return parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, "")


def _batches(
    fragment: pads.ParquetFileFragment, data_file: DataFile, schema: pa.Schema, columns: list[str]
) -> Iterator[pa.RecordBatch]:
    """The file's rows, in record batches of up to ``BATCH_ROWS``. A file of up to
    ``REDUCE_ROWS`` rows (as many as may be pending anyway) is read whole: pyarrow then decodes
    its columns in parallel at once, which took a third less time than streaming."""
    if data_file.rows <= REDUCE_ROWS:
        yield from fragment.to_table(schema=schema, columns=columns).to_batches(max_chunksize=BATCH_ROWS)
    else:
        yield from fragment.to_batches(schema=schema, columns=columns, batch_size=BATCH_ROWS)


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


# -- JSON, vectorized ----------------------------------------------------------------------------
#
# Encoding a million dicts one by one with the json module takes seconds; Arrow writes the JSON
# text of whole columns at once for the common types, and Python handles only the rest.

# Characters JSON escapes inside a string (json.dumps with ensure_ascii=False).
_NEEDS_ESCAPE = r'["\\\x00-\x1f]'


def _entity_keys(table: pa.Table, keys: list[str]) -> pa.Array | pa.ChunkedArray:
    """:func:`~gyre.features.online.codec.entity_key` of every row (join keys are never null here)."""
    parts = [_json_texts(table.column(k), exact=True) for k in keys]
    joined = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, ",")
    return pc.binary_join_element_wise("[", joined, "]", "")


def _json_objects(table: pa.Table, columns: list[str]) -> pa.Array | pa.ChunkedArray:
    """Each row's ``{column: value}`` as JSON that :func:`~gyre.features.online.codec.decode_values`
    reads back as :func:`~gyre.features.online.codec.encode_values` would have written it."""
    if not columns:
        return pa.array(["{}"] * table.num_rows, pa.string())
    # '{"a":', a, ',"b":', b, ..., '}' in one join (null values written as null): a join per
    # member and one of the members took 4.4 ms for 10,000 rows of 10 columns, this 2.2 ms.
    parts: list[Any] = []
    for i, name in enumerate(columns):
        parts += [("{" if i == 0 else ",") + json.dumps(name, ensure_ascii=False) + ":"]
        parts += [_json_texts(table.column(name), exact=False)]
    return pc.binary_join_element_wise(*parts, "}", "", null_handling="replace", null_replacement="null")


def _shortest_texts(doubles: pa.Array) -> pa.Array:
    """orjson's text of each double (nulls and non-finite ones print as ``null``), as a string
    array made from orjson's output buffer (10,000 values: 0.5 ms; with a Python string per
    value, 0.87 ms)."""
    printed = orjson.dumps(doubles.to_numpy(zero_copy_only=False), option=orjson.OPT_SERIALIZE_NUMPY)
    inner = np.frombuffer(printed, np.uint8)[1:-1]  # without the brackets
    commas = np.flatnonzero(inner == ord(","))
    # Value i starts after comma i - 1, which is at commas[i - 1] - (i - 1) once commas are gone.
    offsets = np.empty(len(doubles) + 1, np.int32)
    offsets[0], offsets[1:-1], offsets[-1] = 0, commas - np.arange(len(commas)), len(inner) - len(commas)
    data = np.delete(inner, commas)
    return pa.StringArray.from_buffers(len(doubles), pa.py_buffer(offsets), pa.py_buffer(data))


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
        doubles = pc.cast(column, pa.float64())
        if len(doubles) and pc.all(pc.is_finite(doubles)).as_py():
            # orjson prints the shortest text that parses back to the same double, 1.0 as
            # "1.0", twice as fast as Arrow; but NaN and infinities as null, hence only here.
            text = pa.chunked_array([_shortest_texts(chunk) for chunk in doubles.chunks], pa.string())
            if not doubles.null_count:
                return text
            return pc.if_else(pc.is_valid(doubles), text, pa.scalar(None, pa.string()))
        # Arrow prints "1" for 1.0 (which JSON would read as an int; 1e+15 and up get an
        # exponent) and "nan"/"inf" for the non-finite. Substring tests: a regex costs 5x more.
        text = pc.cast(doubles, pa.string())
        integral = pc.invert(
            pc.or_(
                pc.or_(pc.match_substring(text, "."), pc.match_substring(text, "e")),
                pc.match_substring(text, "n"),  # nan, inf
            )
        )
        text = pc.if_else(integral, pc.binary_join_element_wise(text, ".0", ""), text)
        if not pc.all(pc.is_finite(column)).as_py():
            for arrow_text, json_text in (("nan", "NaN"), ("-inf", "-Infinity"), ("inf", "Infinity")):
                text = pc.if_else(pc.equal(text, arrow_text), json_text, text)
        return text
    # Everything else as the codec writes it, one value at a time.
    encode = (lambda v: entity_key([v])[1:-1]) if exact else encode_value
    return pa.array([None if v is None else encode(v) for v in column.to_pylist()], pa.string())
