"""Offline point-in-time retrieval: a training set as the features were at each entity row's time.

For every entity row ``(keys, t)`` a column feature is the value of the latest source row of
those keys with an event time at or before ``t`` (within the view's TTL), and a window feature
aggregates the source rows with event times in ``(t - window, t]``. With ``as_known_at`` a source
row also has to have been committed to the lake by ``t``, so a late backfill cannot leak into the
past. Rows of equal event time are ordered by ingestion (Delta version, file, row): the last one
ingested wins.

The joins run in DuckDB, in process: it joins and aggregates Arrow data vectorized and in
parallel without copying it in (tables are registered, not loaded), and has the two operators
point-in-time retrieval needs built in: the ASOF join and range-framed window aggregates. Pandas
``merge_asof`` is single-threaded and has no window aggregates; a SQL database would need the data
copied in. Data is read through pyarrow (the lake's files), never through DuckDB extensions, so
retrieval works offline and on any store the lake supports.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gyre.data.lake import DataFile, Lake
from gyre.errors import InvalidArgument, did_you_mean
from gyre.features import _duckdb
from gyre.features._parquet import with_dictionaries
from gyre.features.definitions import AGGREGATIONS
from gyre.features.spec import ViewSpec, WindowFeature

if TYPE_CHECKING:
    import duckdb
    import pyarrow.dataset as pads

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_US_PER = {"s": 1_000_000, "ms": 1_000, "us": 1}

# Internal column names of the tables handed to DuckDB. User columns are renamed to positional
# names (k0.., v0..) so no user name needs quoting or can collide with these.
_RID, _T, _ET, _ORD, _C = "__rid", "__t", "__et", "__ord", "__c"
_POS_SPAN, _SHIFT = 1 << 40, 1 << 62  # packing (event time, position) into one HUGEINT
# Source rows are pruned to the entity rows' keys when there are this many times fewer entity rows.
_PRUNE_BELOW = 20
# Entity rows are joined to the source rows of their key and time buckets (a TTL or window
# wide) when that pairs at most this many per row of both sides; otherwise latest values take
# the ASOF join and window features window frames, each streaming every source row through a
# sort. Measured (1M source rows, 7-day windows holding ~23 rows a key): a pair costs
# ~0.05-0.09 µs, a streamed row ~0.6-0.9 µs; 4 pairs a row: join 0.42 s, frames 0.68 s;
# 23 pairs a row: join 2.4 s, frames 1.9 s. Latest values of 10k entity rows (2 pairs a row):
# join 0.12 s, ASOF 0.17 s.
_JOIN_PAIRS_PER_ROW = 10


@dataclass
class TrainingSet:
    """The result of :func:`get_training_set`.

    Attributes:
        table: the entity rows (all of ``entity_df``'s columns, in its row order) followed by one
            column per feature.
        dataset_versions: the lake version read of each source dataset (the run's lineage).
    """

    table: pa.Table
    dataset_versions: dict[str, int] = field(default_factory=dict)

    def to_arrow(self) -> pa.Table:
        return self.table

    def to_pandas(self) -> Any:
        return self.table.to_pandas()

    def __len__(self) -> int:
        return self.table.num_rows


def get_training_set(
    lake: Lake,
    entity_df: pa.Table,
    views: Sequence[ViewSpec],
    *,
    timestamp_column: str = "event_timestamp",
    as_known_at: bool = False,
    versions: Mapping[str, int] | None = None,
    full_names: bool = False,
) -> TrainingSet:
    """Join the features of ``views`` to ``entity_df`` as of each row's timestamp.

    Args:
        lake: where the views' source datasets live.
        entity_df: one row per training example: the join keys of every view and a timestamp
            column. Naive timestamps are UTC. A null join key is allowed (that row gets null
            features and 0 counts); a null timestamp is not.
        views: the feature views (or subsets of them, :meth:`ViewSpec.select`) to join.
        timestamp_column: the column of ``entity_df`` holding each row's time ``t``.
        as_known_at: also ignore source rows committed to the lake after ``t``.
        versions: dataset name -> lake version to read (default: each dataset's latest);
            entries for datasets no view reads are ignored.
        full_names: name feature columns ``view__feature`` instead of ``feature``.

    Semantics, per entity row ``(k, t)`` and source rows with the same join keys (rows with a
    null event time never match; event times are compared at microsecond precision, floored):

    * column feature: the value (null included) of the row with the largest event time ``<= t``
      and, when the view has a TTL, ``> t - ttl``; ties go to the row ingested last (larger
      version, then later file, then later row). No such row: null. Type: the source column's.
    * window feature: ``function`` over the rows with event time in ``(t - window, t]`` (the TTL
      does not apply). ``count`` counts rows, ``count_distinct`` distinct non-null values (both
      int64, 0 when empty); ``sum`` (int64 for integers, float64 for floats), ``mean`` (float64),
      ``min`` and ``max`` (the column's type) skip nulls and are null when nothing is left.

    Returns:
        The training set, and the version read of each dataset.

    Raises:
        InvalidArgument: a missing or mistyped key or timestamp column, a null timestamp, a
            feature column missing from its dataset, or two features with one output name.
        NotFound: a source dataset (or pinned version) is not in the lake.
    """
    if not isinstance(entity_df, pa.Table):
        raise InvalidArgument(
            f"entity_df must be a pyarrow Table, got {type(entity_df).__name__}; "
            "convert a DataFrame with pa.Table.from_pandas(df, preserve_index=False)."
        )
    views = list(views)
    names = _output_names(entity_df, views, full_names)
    t_us = _entity_times(entity_df, timestamp_column)
    for view in views:
        _check_view(view, entity_df)

    sources = _read_sources(lake, views, dict(versions or {}), as_known_at)
    rid = pa.array(np.arange(entity_df.num_rows, dtype=np.int64))

    out = entity_df
    # A cursor per call: nothing registered is shared between calls, and it is closed on every path.
    con = _duckdb.cursor()
    try:
        for i, view in enumerate(views):
            source = sources[view.source]
            columns = _view_features(con, i, view, source, entity_df, rid, t_us, as_known_at)
            for name, column in zip(names[i], columns, strict=True):
                out = out.append_column(name, column)
    finally:
        con.close()
    return TrainingSet(out, {name: s.version for name, s in sources.items()})


# -- checking the request ------------------------------------------------------------------------


def _output_names(entity_df: pa.Table, views: list[ViewSpec], full_names: bool) -> list[list[str]]:
    seen_views: set[str] = set()
    owner: dict[str, str] = {}
    out = []
    for view in views:
        if view.name in seen_views:
            raise InvalidArgument(
                f"Feature view '{view.name}' is requested twice; pass it once with all its features."
            )
        seen_views.add(view.name)
        names = []
        for feature in view.feature_names:
            name = f"{view.name}__{feature}" if full_names else feature
            if name in owner:
                raise InvalidArgument(
                    f"Feature '{feature}' of view '{view.name}' and of view '{owner[name]}' would both "
                    f"be column '{name}'; pass full_names=True to name columns 'view__feature'."
                )
            if name in entity_df.column_names:
                raise InvalidArgument(
                    f"Feature '{feature}' of view '{view.name}' would be column '{name}', which "
                    "entity_df already has; rename that column"
                    + ("." if full_names else " or pass full_names=True to name columns 'view__feature'.")
                )
            owner[name] = view.name
            names.append(name)
        out.append(names)
    return out


def _entity_times(entity_df: pa.Table, column: str) -> pa.ChunkedArray:
    """The entity rows' times as UTC microseconds since the epoch (int64)."""
    if column not in entity_df.column_names:
        raise InvalidArgument(
            f"entity_df has no timestamp column '{column}'; pass timestamp_column= the column holding "
            f"each row's time.{did_you_mean(column, entity_df.column_names)} "
            f"Its columns are: {', '.join(entity_df.column_names)}."
        )
    values = entity_df.column(column)
    if not pa.types.is_timestamp(values.type):
        raise InvalidArgument(
            f"entity_df column '{column}' must be a timestamp, got {values.type}; cast it, e.g. "
            f"pc.cast(entity_df['{column}'], pa.timestamp('us', tz='UTC'))."
        )
    if values.null_count:
        first = pc.index(pc.is_null(values), True).as_py()
        raise InvalidArgument(
            f"entity_df column '{column}' has {values.null_count} null value(s) (the first at row "
            f"{first}); every entity row needs a time."
        )
    return _epoch_us(values)


def _check_view(view: ViewSpec, entity_df: pa.Table) -> None:
    for key in view.join_keys:
        if key not in entity_df.column_names:
            raise InvalidArgument(
                f"entity_df has no column '{key}', a join key of feature view '{view.name}' "
                f"(entity '{view.entity}').{did_you_mean(key, entity_df.column_names)} "
                f"Its columns are: {', '.join(entity_df.column_names)}."
            )
    for w in view.windows:
        if w.function not in AGGREGATIONS:
            raise InvalidArgument(
                f"Feature '{w.name}' of view '{view.name}' uses unknown aggregation {w.function!r}; "
                f"use one of {', '.join(AGGREGATIONS)}."
            )
        if w.window_s <= 0:
            raise InvalidArgument(
                f"Feature '{w.name}' of view '{view.name}' has window {w.window_s}s; it must be positive."
            )


def _epoch_us(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps (any unit; naive = UTC) as int64 microseconds since the epoch, floored."""
    # The storage of a tz-aware timestamp is UTC already; a naive one's wall time is taken as UTC.
    raw = values.cast(pa.int64())
    unit = values.type.unit
    if unit == "ns":
        q = pc.divide(raw, 1000)  # truncates toward zero: floor it for instants before 1970
        return pc.subtract(q, pc.less(pc.subtract(raw, pc.multiply(q, 1000)), 0).cast(pa.int64()))
    if _US_PER[unit] == 1:
        return raw
    return pc.multiply_checked(raw, _US_PER[unit])


# -- reading the sources -------------------------------------------------------------------------


@dataclass
class _Source:
    """One dataset's rows as read: the needed columns plus ``__ord`` (ingestion order, which is
    also the row's position in ``table``) and ``__c`` (commit time, µs) when asked for."""

    version: int
    table: pa.Table


def _read_sources(
    lake: Lake, views: list[ViewSpec], versions: dict[str, int], as_known_at: bool
) -> dict[str, _Source]:
    out: dict[str, _Source] = {}
    for dataset in dict.fromkeys(v.source for v in views):
        readers = [v for v in views if v.source == dataset]
        version = versions[dataset] if dataset in versions else lake.version(dataset)
        files = lake.data_files(dataset, upto=version)
        ds = lake.open_files(dataset, files) if files else None
        schema = ds.schema if ds is not None else lake.schema(dataset, version)
        needed: dict[str, None] = {}
        for view in readers:
            for column in _columns_of(view, schema, dataset):
                needed[column] = None
        out[dataset] = _Source(
            version, _read_files(lake, dataset, files, ds, schema, list(needed), as_known_at)
        )
    return out


def _columns_of(view: ViewSpec, schema: pa.Schema, dataset: str) -> list[str]:
    """The dataset columns ``view`` reads, checked against the dataset's schema."""
    have = schema.names

    def missing(what: str, column: str) -> InvalidArgument:
        return InvalidArgument(
            f"Feature view '{view.name}': {what} reads column '{column}', which dataset '{dataset}' "
            f"does not have.{did_you_mean(column, have)} Its columns are: {', '.join(have)}."
        )

    for key in view.join_keys:
        if key not in have:
            raise missing(f"join key '{key}'", key)
    if view.event_time not in have:
        raise missing("the event time", view.event_time)
    if not pa.types.is_timestamp(schema.field(view.event_time).type):
        raise InvalidArgument(
            f"Feature view '{view.name}': event-time column '{view.event_time}' of dataset '{dataset}' "
            f"is {schema.field(view.event_time).type}, not a timestamp."
        )
    for feature in view.columns:
        if feature.column not in have:
            raise missing(f"feature '{feature.name}'", feature.column)
    for window in view.windows:
        if window.column not in have:
            raise missing(f"feature '{window.name}'", window.column)
        kind = schema.field(window.column).type
        if window.function in ("sum", "mean") and not _is_numeric(kind):
            raise InvalidArgument(
                f"Feature '{window.name}' of view '{view.name}': {window.function} needs a numeric "
                f"column, but '{window.column}' of dataset '{dataset}' is {kind}."
            )
    return [
        *view.join_keys,
        view.event_time,
        *(f.column for f in view.columns),
        *(w.column for w in view.windows),
    ]


def _read_files(
    lake: Lake,
    dataset: str,
    files: list[DataFile],
    ds: pads.Dataset | None,
    schema: pa.Schema,
    columns: list[str],
    as_known_at: bool,
) -> pa.Table:
    """The live files' rows in ingestion order, with ``__ord`` (and ``__c``) attached.

    pyarrow's scanner does not say which file a row came from, so each file is read on its own
    (threads in parallel; ``map`` keeps the order) and tagged with its position and commit time.
    """
    # The lake lists files in commit order; the sort only guards that the version order holds.
    ordered = sorted(files, key=lambda f: f.version)
    parts: list[pa.Table] = []
    if ds is not None:
        # Strings of categories are read as dictionaries (a fraction of the time); the gathered
        # feature columns are cast back to the dataset's type.
        schema, opened = with_dictionaries(ds.schema, list(ds.get_fragments()), columns)
        fragments = {fragment.path: fragment for fragment in opened}

        def read(f: DataFile) -> pa.Table:
            fragment = fragments.get(f.path)
            if fragment is None:  # a path the dataset normalized differently: open it by itself
                return lake.open_files(dataset, [f]).to_table(columns=columns)
            return fragment.to_table(schema=schema, columns=columns)

        with ThreadPoolExecutor(max_workers=8) as pool:
            parts = list(pool.map(read, ordered))
    target = pa.schema([schema.field(c) for c in columns])
    parts = [p.cast(target) if not p.schema.equals(target) else p for p in parts]
    table = pa.concat_tables(parts) if parts else target.empty_table()
    if table.num_rows >= _POS_SPAN:  # pragma: no cover - a trillion rows
        raise InvalidArgument(f"Dataset '{dataset}' has too many rows to retrieve features from at once.")
    table = table.append_column(_ORD, pa.array(np.arange(table.num_rows, dtype=np.int64)))
    if as_known_at:
        commits = [
            pa.repeat(pa.scalar((f.committed_at - _EPOCH) // _US, pa.int64()), p.num_rows)
            for f, p in zip(ordered, parts, strict=True)
        ]
        table = table.append_column(_C, pa.chunked_array(commits, pa.int64()))
    return table


def _is_numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)


# -- one view --------------------------------------------------------------------------------------


def _view_features(
    con: duckdb.DuckDBPyConnection,
    index: int,
    view: ViewSpec,
    source: _Source,
    entity_df: pa.Table,
    rid: pa.Array,
    t_us: pa.ChunkedArray,
    as_known_at: bool,
) -> list[pa.ChunkedArray | pa.Array]:
    """The view's feature columns, aligned with ``entity_df``'s rows (columns, then windows)."""
    table = source.table
    keys = [f"k{j}" for j in range(len(view.join_keys))]
    src: dict[str, pa.ChunkedArray | pa.Array] = {}
    ent: dict[str, pa.ChunkedArray | pa.Array] = {_RID: rid}
    for name, key in zip(keys, view.join_keys, strict=True):
        ent[name], src[name] = _common_keys(view, key, entity_df.column(key), table.column(key))
    ent[_T] = t_us
    src[_ET] = _epoch_us(table.column(view.event_time))
    src[_ORD] = table.column(_ORD)
    if as_known_at:
        src[_C] = table.column(_C)
    values = list(dict.fromkeys(w.column for w in view.windows))
    for j, column in enumerate(values):
        src[f"v{j}"] = _plain(table.column(column))
    s_name, e_name = f"src_{index}", f"ent_{index}"
    con.register(s_name, pa.table(src))
    con.register(e_name, pa.table(ent))
    rows = s_name
    sizes = table.num_rows + entity_df.num_rows
    try:
        # Few entity rows beside many source rows: the rows of other keys are dropped first rather
        # than grouped or sorted (a 1k-row training set took 60% less), once for every query
        # below. With most keys wanted the semi join would cost ~10% instead.
        if entity_df.num_rows * _PRUNE_BELOW <= table.num_rows:
            rows = f"pruned_{index}"
            con.register(rows, con.sql(_pruned(s_name, e_name, keys)).to_arrow_table())
        out: list[pa.ChunkedArray | pa.Array] = []
        if view.columns:
            span = None if as_known_at else _packed_span(src[_ET], t_us, view.ttl_s, table.num_rows)
            # Counting the pairs costs a pass over the source rows (~25 ms a million): worth it
            # only beside few entity rows (the source was pruned), where the join can win.
            pruned = rows != s_name
            if span and pruned and view.ttl_s and _few_pairs(con, rows, e_name, keys, view.ttl_s, sizes):
                sql = _latest_join_sql(rows, e_name, keys, view.ttl_s, span)
            else:
                sql = _latest_sql(rows, e_name, keys, view.ttl_s, as_known_at, span)
            winner = con.sql(sql).to_arrow_table().column("pos")
            gather = _Gather(winner)
            out += [_plain(gather.take(table.column(f.column))) for f in view.columns]
        if view.windows:
            refs = {column: f"v{j}" for j, column in enumerate(values)}
            types = {w.name: src[refs[w.column]].type for w in view.windows}
            window_s = max(w.window_s for w in view.windows)
            # Two times per row (event, commit) when as known at: only the join compares both.
            if as_known_at or _few_pairs(con, rows, e_name, keys, window_s, sizes):
                width = window_s * 1_000_000
                sql = _window_join_sql(rows, e_name, keys, view.windows, refs, types, width, as_known_at)
            else:
                sql = _window_frame_sql(rows, e_name, keys, view.windows, refs, types)
            result = con.sql(sql).to_arrow_table()
            out += [
                _result_type(result.column(f"f{j}"), w, types[w.name]) for j, w in enumerate(view.windows)
            ]
        return out
    finally:
        for name in dict.fromkeys([rows, s_name, e_name]):
            con.unregister(name)


def _plain(column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """A column read as a dictionary, in the dataset's type again."""
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def _common_keys(
    view: ViewSpec, key: str, left: pa.ChunkedArray, right: pa.ChunkedArray
) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Both sides of a join key in one comparable type (DuckDB would refuse or mis-cast others)."""
    if pa.types.is_dictionary(left.type):
        left = left.cast(left.type.value_type)
    if pa.types.is_dictionary(right.type):
        right = right.cast(right.type.value_type)
    a, b = left.type, right.type
    if a == b:
        return left, right
    for is_kind, common in (
        (pa.types.is_integer, pa.int64()),
        (pa.types.is_floating, pa.float64()),
        (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t), None),
        (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t), None),
    ):
        if is_kind(a) and is_kind(b):
            if common is None:  # DuckDB reads every string (binary) flavour as one type
                return left, right
            try:
                return left.cast(common), right.cast(common)
            except pa.ArrowInvalid as exc:
                raise InvalidArgument(f"Join key '{key}' of view '{view.name}': {exc}") from None
    raise InvalidArgument(
        f"Join key '{key}' of feature view '{view.name}' is {a} in entity_df but {b} in dataset "
        f"'{view.source}'; cast entity_df's column to {b}."
    )


class _Gather:
    """``column.take(positions)`` for the columns of one table, chunk by chunk: a take over
    several chunks first concatenates them, which for a million strings costs more than the
    join. The positions are grouped by chunk once, for every column with the same chunks."""

    def __init__(self, positions: pa.ChunkedArray | pa.Array) -> None:
        self.positions = positions
        self.valid = pc.is_valid(positions).to_numpy(zero_copy_only=False)
        self.wanted = pc.fill_null(positions, 0).to_numpy()
        self._plans: dict[tuple[int, ...], tuple[list[tuple[int, pa.Array]], pa.Array]] = {}

    def take(self, column: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
        if column.num_chunks <= 1:
            return column.take(self.positions)
        lengths = tuple(len(chunk) for chunk in column.chunks)
        plan = self._plans.get(lengths) or self._plan(lengths)
        parts = [column.chunk(c).take(local) for c, local in plan[0]]
        gathered = pa.concat_arrays(parts) if parts else pa.array([], column.type)
        return gathered.take(plan[1])

    def _plan(self, lengths: tuple[int, ...]) -> tuple[list[tuple[int, pa.Array]], pa.Array]:
        """Per chunk, the positions within it; then where each wanted row landed."""
        offsets = np.cumsum([0, *lengths])
        chunk_of = np.searchsorted(offsets, self.wanted, side="right") - 1
        by_chunk = np.argsort(chunk_of, kind="stable")
        bounds = np.searchsorted(chunk_of[by_chunk], np.arange(len(lengths) + 1))
        per_chunk = [
            (c, pa.array(self.wanted[by_chunk[lo:hi]] - offsets[c]))
            for c, (lo, hi) in enumerate(itertools.pairwise(bounds))
            if hi > lo
        ]
        inverse = np.empty_like(by_chunk)
        inverse[by_chunk] = np.arange(len(by_chunk))
        self._plans[lengths] = plan = (per_chunk, pa.array(inverse, mask=~self.valid))
        return plan


def _pruned(src: str, ent: str, keys: list[str]) -> str:
    """The source rows of the keys ``ent`` has, as a subquery."""
    on = " AND ".join(f"s.{c} = e.{c}" for c in keys)
    return f"(SELECT s.* FROM {src} s SEMI JOIN (SELECT DISTINCT {', '.join(keys)} FROM {ent}) e ON {on})"


@dataclass(frozen=True)
class _Span:
    """Event times ``lo..hi`` (µs) and positions below ``2**bits``: ``(time - lo) << bits | position``
    fits a BIGINT and sorts as (event time, ingestion order) do."""

    lo: int
    hi: int
    bits: int

    @property
    def mask(self) -> int:
        """The position bits of a packed value."""
        return (1 << self.bits) - 1

    def packed(self, time: str) -> str:
        """SQL packing a source row's ``time`` and ``__ord``. The time is clamped into the span,
        though only rows inside it are kept (:meth:`holds`): the product cannot overflow whatever
        order the engine evaluates the filter and the product in."""
        return f"(least(greatest({time}, {self.lo}), {self.hi}) - {self.lo}) * {self.mask + 1} + {_ORD}"

    def holds(self, time: str) -> str:
        """SQL: whether ``time`` is inside the span."""
        return f"{time} BETWEEN {self.lo} AND {self.hi}"


def _packed_span(et: pa.ChunkedArray, t_us: pa.ChunkedArray, ttl_s: int | None, rows: int) -> _Span | None:
    """The span that can pack the source rows an entity row may pick, or None when it is too wide.

    A source row later than every entity time is never picked, nor (with a TTL) one at or before
    the earliest entity time minus the TTL: it would be picked only to be discarded as stale, and
    the entity row's answer is null either way. So the span is that of the entity times, widened
    by the TTL, within the source's own.
    """
    source, entity = pc.min_max(et).as_py(), pc.min_max(t_us).as_py()
    if source["min"] is None or entity["min"] is None:
        return None
    lo, hi = source["min"], min(source["max"], entity["max"])
    if ttl_s:
        lo = max(lo, entity["min"] - ttl_s * 1_000_000 + 1)
    bits = max(1, (rows - 1).bit_length())
    if hi < lo or (hi - lo + 1) >= 1 << (63 - bits):
        return None
    return _Span(lo, hi, bits)


def _latest_sql(
    src: str, ent: str, keys: list[str], ttl_s: int | None, as_known_at: bool, span: _Span | None = None
) -> str:
    """The position (``__ord``) of each entity row's winning source row, or null.

    The winner is the row with the latest event time <= t, ties going to the row ingested last.
    With a ``span``, (event time, position) packed into one BIGINT carries both orders, and one
    ASOF join over the source rows picks the winner (a third less time than grouping first).
    Otherwise the best row per key and time is kept first (largest event time, then ingestion
    order) and the ASOF join picks among those. With ``as_known_at`` the time a row becomes visible
    is ``greatest(event time, commit time)``, and the best row visible at t is a running maximum
    over that time, so the ASOF join still applies.
    """
    k = ", ".join(keys)
    not_null = f"{_ET} IS NOT NULL AND {_keyed(keys)}"
    on = " AND ".join(f"e.{c} = b.{c}" for c in keys)
    ttl_us = (ttl_s or 0) * 1_000_000
    if span is not None:
        mask = span.mask
        # Entity times are clamped into the span: past its end a row picks the latest as usual;
        # before its start to lo - 1, which packs below every source row (no match, no overflow).
        t = f"(greatest(least(e.{_T}, {span.hi}), {span.lo - 1}) - {span.lo}) * {mask + 1} + {mask}"
        ttl = f"b.{_ET} > e.{_T} - {ttl_us}" if ttl_s else "TRUE"
        return f"""
            WITH b AS (
                SELECT {k}, {_ET}, {span.packed(_ET)} AS p
                FROM {src} WHERE {not_null} AND {span.holds(_ET)}
            ),
            e AS (SELECT {_RID}, {k}, {_T}, {t} AS p FROM {ent} e)
            SELECT CASE WHEN {ttl} THEN b.p & {mask} END AS pos
            FROM e ASOF LEFT JOIN b ON {on} AND e.p >= b.p
            ORDER BY e.{_RID}
        """
    if as_known_at:
        # (event time, position) packed into one HUGEINT that sorts the same way: a running max
        # over it is ~2.5x faster than over a struct. Positions stay below 2^40 rows; event times
        # are shifted by 2^62 µs so the packed value is never negative.
        packed = f"({_ET}::HUGEINT + {_SHIFT}) * {_POS_SPAN} + {_ORD}"
        best = f"""
            g AS (
                SELECT {k}, greatest({_ET}, {_C}) AS known, max({packed}) AS b
                FROM {src} WHERE {not_null} GROUP BY ALL
            ),
            best AS (
                SELECT {k}, known, (max(b) OVER (PARTITION BY {k} ORDER BY known
                    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS b
                FROM g
            )"""
        et, pos = f"(b.b // {_POS_SPAN} - {_SHIFT})", f"CAST(b.b % {_POS_SPAN} AS BIGINT)"
    else:
        best = f"""
            best AS (
                SELECT {k}, {_ET} AS known, max({_ORD}) AS pos FROM {src} WHERE {not_null} GROUP BY ALL
            )"""
        et, pos = "b.known", "b.pos"
    # The best row has the largest event time of all visible ones: if it is out of the TTL, all are.
    ttl = f"{et} > e.{_T} - {ttl_us}" if ttl_s else "TRUE"
    return f"""
        WITH {best}
        SELECT CASE WHEN {ttl} THEN {pos} END AS pos
        FROM {ent} e ASOF LEFT JOIN best b ON {on} AND e.{_T} >= b.known
        ORDER BY e.{_RID}
    """


def _latest_join_sql(src: str, ent: str, keys: list[str], ttl_s: int, span: _Span) -> str:
    """:func:`_latest_sql` for entity rows whose TTL holds few source rows: a join on key and
    TTL-wide time buckets, then the greatest packed (event time, position) per entity row. It
    touches only the rows in each entity row's TTL, where the ASOF join sorts every source row."""
    width = ttl_s * 1_000_000
    return f"""
        WITH s AS (
            SELECT {", ".join(keys)}, {_ET}, {_bucket(width)}, {span.packed(_ET)} AS p
            FROM {src} WHERE {_keyed(keys)} AND {span.holds(_ET)}
        ),
        e AS ({_entity_buckets(ent, keys, width)}),
        best AS (
            SELECT e.{_RID}, max(s.p) AS p
            FROM e JOIN s ON {_bucket_join(keys, width)}
            GROUP BY e.{_RID}
        )
        SELECT b.p & {span.mask} AS pos FROM {ent} e LEFT JOIN best b ON e.{_RID} = b.{_RID} ORDER BY e.{_RID}
    """


def _aggregate(w: WindowFeature, value: str, kind: pa.DataType, frame: str) -> str:
    """The SQL of one window aggregate; ``frame`` is ``OVER w..`` or ``FILTER (WHERE ..)``."""
    if w.function == "count":
        return f"count({value}) {frame}"
    if w.function == "count_distinct":
        return f"count(DISTINCT {value}) {frame}"
    if w.function == "mean":
        return f"CAST(avg({value}) {frame} AS DOUBLE)"
    if w.function == "sum":
        cast = "BIGINT" if pa.types.is_integer(kind) else "DOUBLE" if pa.types.is_floating(kind) else None
        return f"CAST(sum({value}) {frame} AS {cast})" if cast else f"sum({value}) {frame}"
    return f"{w.function}({value}) {frame}"


def _window_frame_sql(
    src: str,
    ent: str,
    keys: list[str],
    windows: tuple[WindowFeature, ...],
    refs: dict[str, str],
    types: dict[str, pa.DataType],
) -> str:
    """Window features as DuckDB window aggregates over source and entity rows in one stream.

    Entity rows go into the stream with null values; each one's frame is the rows of its key with
    a time in (t - w, t], i.e. ``RANGE BETWEEN w - 1µs PRECEDING AND CURRENT ROW`` (CURRENT ROW
    in RANGE mode includes every row at exactly t). Cost: one sort, O(n log n), however many rows
    a window holds.
    """
    k = ", ".join(keys)
    not_null = _keyed(keys)
    value_cols = ", ".join(dict.fromkeys(refs.values()))
    frames: dict[int, str] = {}
    selects: list[str] = []
    for j, w in enumerate(windows):
        frame = frames.setdefault(w.window_s, f"w{len(frames)}")
        value = "__m" if w.function == "count" else refs[w.column]
        selects.append(f"{_aggregate(w, value, types[w.name], f'OVER {frame}')} AS f{j}")
    defs = ", ".join(
        f"{name} AS (PARTITION BY {k} ORDER BY __ts "
        f"RANGE BETWEEN {s * 1_000_000 - 1} PRECEDING AND CURRENT ROW)"
        for s, name in frames.items()
    )
    return f"""
        WITH u AS (
            SELECT {k}, {_ET} AS __ts, 1 AS __m, {value_cols} FROM {src}
            WHERE {_ET} IS NOT NULL AND {not_null}
            UNION ALL BY NAME
            SELECT {k}, {_T} AS __ts, {_RID} FROM {ent} WHERE {not_null}
        ),
        agg AS (
            SELECT {_RID}, {", ".join(selects)} FROM u
            WINDOW {defs}
            QUALIFY {_RID} IS NOT NULL
        )
        SELECT {_outer(windows)} FROM {ent} e LEFT JOIN agg a ON e.{_RID} = a.{_RID} ORDER BY e.{_RID}
    """


def _few_pairs(
    con: duckdb.DuckDBPyConnection, src: str, ent: str, keys: list[str], window_s: int, rows: int
) -> bool:
    """Whether joining entity rows to the source rows of their key within ``window_s`` before
    their time compares at most :data:`_JOIN_PAIRS_PER_ROW` pairs per row of both sides
    (``rows``): then a join beats streaming every source row through a sort."""
    [(pairs,)] = con.sql(_pairs_sql(src, ent, keys, window_s * 1_000_000)).fetchall()
    return int(pairs) <= _JOIN_PAIRS_PER_ROW * rows


def _pairs_sql(src: str, ent: str, keys: list[str], width: int) -> str:
    """How many (entity row, source row) pairs the bucket join of :func:`_entity_buckets`
    compares before its time conditions: counted per key and bucket, not paired."""
    on = " AND ".join(f"e.{c} = s.{c}" for c in [*keys, "__b"])
    return f"""
        WITH s AS (
            SELECT {", ".join(keys)}, {_bucket(width)}, count(*) AS n
            FROM {src} WHERE {_ET} IS NOT NULL AND {_keyed(keys)} GROUP BY ALL
        ),
        e AS ({_entity_buckets(ent, keys, width)})
        SELECT coalesce(sum(s.n), 0) FROM e JOIN s ON {on}
    """


def _keyed(keys: list[str]) -> str:
    """SQL: the row has every join key (a null key matches nothing, as in a SQL join)."""
    return " AND ".join(f"{c} IS NOT NULL" for c in keys)


def _bucket(width: int) -> str:
    """SQL: a source row's time bucket ``__b``, ``width`` µs wide."""
    return f"{_ET} // {width} AS __b"


def _entity_buckets(ent: str, keys: list[str], width: int) -> str:
    """SQL: each entity row twice, in its own time bucket and in the one before.

    Joining entity rows to source rows on key alone would pair each with every row of its key;
    with buckets at least as wide as the longest span looked back (a TTL, a window), an equi-join
    on (key, bucket) meets every row within that span (also where ``//`` truncates around 0), so
    the work is about twice the rows the spans hold. That grows with rows per span: many entity
    rows on one hot key with a long span cost more here than a sorted stream, which is why the
    pairs are counted first (:func:`_few_pairs`). (Finer buckets halve the pairs but were no
    faster: more probe rows.)
    """
    return f"""
        SELECT {_RID}, {", ".join(keys)}, {_T}, unnest([{_T} // {width}, {_T} // {width} - 1]) AS __b
        FROM {ent} WHERE {_keyed(keys)}
    """


def _bucket_join(keys: list[str], width: int) -> str:
    """SQL: the ON clause pairing ``e`` (:func:`_entity_buckets`) with the source rows ``s`` of
    its key at or before its time and less than ``width`` µs before it."""
    same = " AND ".join(f"e.{c} = s.{c}" for c in [*keys, "__b"])
    return f"{same} AND s.{_ET} <= e.{_T} AND s.{_ET} > e.{_T} - {width}"


def _window_join_sql(
    src: str,
    ent: str,
    keys: list[str],
    windows: tuple[WindowFeature, ...],
    refs: dict[str, str],
    types: dict[str, pa.DataType],
    width: int,
    as_known_at: bool,
) -> str:
    """Window features by a join on key and time buckets as wide as the longest window
    (``width`` µs, :func:`_entity_buckets`), then GROUP BY: for few rows per window, and whenever
    a row must also be committed by t (two conditions on different times do not fit a window
    frame)."""
    selects = []
    for j, w in enumerate(windows):
        inside = f"FILTER (WHERE s.{_ET} > e.{_T} - {w.window_s * 1_000_000})"
        value = "*" if w.function == "count" else f"s.{refs[w.column]}"
        selects.append(f"{_aggregate(w, value, types[w.name], inside)} AS f{j}")
    value_cols = ", ".join(dict.fromkeys(refs.values()))
    commit = f"{_C}, " if as_known_at else ""
    known = f" AND s.{_C} <= e.{_T}" if as_known_at else ""
    return f"""
        WITH s AS (
            SELECT {", ".join(keys)}, {_ET}, {commit}{value_cols}, {_bucket(width)}
            FROM {src} WHERE {_ET} IS NOT NULL AND {_keyed(keys)}
        ),
        e AS ({_entity_buckets(ent, keys, width)}),
        agg AS (
            SELECT e.{_RID}, {", ".join(selects)}
            FROM e JOIN s ON {_bucket_join(keys, width)}{known}
            GROUP BY e.{_RID}
        )
        SELECT {_outer(windows)} FROM {ent} e LEFT JOIN agg a ON e.{_RID} = a.{_RID} ORDER BY e.{_RID}
    """


def _outer(windows: tuple[WindowFeature, ...]) -> str:
    """Every entity row's aggregates; rows no window saw (a null key) count 0."""
    return ", ".join(
        f"coalesce(a.f{j}, 0) AS f{j}" if w.function in ("count", "count_distinct") else f"a.f{j}"
        for j, w in enumerate(windows)
    )


def _result_type(values: pa.ChunkedArray, w: WindowFeature, kind: pa.DataType) -> pa.ChunkedArray:
    if w.function in ("count", "count_distinct"):
        return values.cast(pa.int64())
    if w.function == "mean":
        return values.cast(pa.float64())
    if w.function in ("min", "max"):
        return values.cast(kind)  # DuckDB's type back to the column's (e.g. large_string, tz)
    return values
