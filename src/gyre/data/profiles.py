"""Streaming profiles of record batches: the statistics validation and drift tests compare.

:class:`Profiler` / :func:`profile` compute a :class:`Profile` batch by batch, so it can run in
the same streaming pass as a read or a write: per column the type, counts, nulls, min/max, mean
and variance, a uniform sample for quantiles (numeric), and value frequencies up to a cap
(categorical). Profiles are JSON-safe and mergeable.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gyre.errors import InvalidArgument
from gyre.jsonsafe import decode_float, encode_float

# The quantile sketch is a uniform reservoir sample of this many values per numeric column.
# Chosen over a t-digest: no t-digest library is installed (and the pure-Python ones are slow
# per value), a reservoir merges exactly (two uniform samples combine into a uniform sample of
# the union, see _merge_samples), the same sample serves PSI bins and the KS statistic, and a
# seeded RNG makes it reproducible. 2,048 values give quantiles within about +-2% of rank and
# keep a profile to ~40 KB of JSON per numeric column.
SAMPLE_SIZE = 2048
# Distinct values kept per categorical column; past this the column is high-cardinality
# (an id, free text) and only its counts are kept.
MAX_CATEGORIES = 1000
PROFILE_FORMAT = "gyre-profile/1"

# -- types ---------------------------------------------------------------------------------


def logical_type(arrow_type: pa.DataType) -> str:
    """A type name that ignores physical differences the lake also ignores.

    All string encodings (``string``, ``large_string``, ``string_view``, dictionary of strings)
    are ``"string"``, binaries ``"binary"``, and timestamps drop their unit (the lake stores
    microseconds) but keep their time zone: ``"timestamp"`` or ``"timestamp[tz=UTC]"``.
    """
    t = arrow_type
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return "binary"
    if pa.types.is_timestamp(t):
        return f"timestamp[tz={t.tz}]" if t.tz else "timestamp"
    return str(t)


def kind_of(arrow_type: pa.DataType) -> str:
    t = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "temporal"
    if pa.types.is_boolean(t) or logical_type(t) == "string":
        return "categorical"
    return "other"


def json_value(value: Any) -> Any:
    """A scalar as JSON-safe data: datetimes as ISO 8601, non-finite floats as strings."""
    if isinstance(value, float):
        return encode_float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, np.generic):
        return json_value(value.item())
    return value


def _fromjson_value(value: Any, dtype: str) -> Any:
    if value is None:
        return None
    if dtype.startswith("timestamp"):
        return datetime.fromisoformat(value)
    if dtype.startswith("date"):
        return date.fromisoformat(value)
    if isinstance(value, str):
        return decode_float(value)
    return value


# -- profiles ------------------------------------------------------------------------------


@dataclass
class ColumnProfile:
    """Statistics of one column over every batch seen.

    ``count`` counts rows (nulls included). For numeric columns ``nan_count`` counts NaN, which
    is kept apart: ``min``/``max`` are exact over the other values (infinities included), and
    ``mean``, ``variance`` (population), ``sample`` and ``sampled`` (how many values the sample was
    drawn from) cover the finite values. For
    temporal columns ``min``/``max`` are datetimes or dates. For categorical columns (strings,
    booleans) ``categories`` maps each value to its count, or is ``None`` once the column has
    more than the profile's ``max_categories`` distinct values (``high_cardinality``).
    """

    name: str
    dtype: str
    kind: str
    count: int = 0
    null_count: int = 0
    nan_count: int = 0
    min: Any = None
    max: Any = None
    mean: float | None = None
    variance: float | None = None
    sampled: int = 0
    sample: np.ndarray | None = field(default=None, repr=False)
    categories: dict[str, int] | None = None
    high_cardinality: bool = False

    @property
    def null_fraction(self) -> float:
        return self.null_count / self.count if self.count else 0.0

    @property
    def distinct(self) -> int | None:
        """Distinct non-null values (categorical, below the cap), else ``None``."""
        return len(self.categories) if self.categories is not None else None

    def quantiles(self, qs: Sequence[float]) -> list[float] | None:
        """Approximate quantiles from the sample (numeric columns), or ``None`` without one."""
        if self.sample is None or not len(self.sample):
            return None
        return [float(x) for x in np.quantile(self.sample, qs)]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "dtype": self.dtype,
            "kind": self.kind,
            "count": self.count,
            "null_count": self.null_count,
        }
        if self.kind in ("numeric", "temporal"):
            out["min"] = json_value(self.min)
            out["max"] = json_value(self.max)
        if self.kind == "numeric":
            out["nan_count"] = self.nan_count
            out["mean"] = json_value(self.mean)
            out["variance"] = json_value(self.variance)
            out["sampled"] = self.sampled
            out["sample"] = [] if self.sample is None else [float(x) for x in self.sample]
        if self.kind == "categorical":
            out["categories"] = dict(self.categories) if self.categories is not None else None
            out["high_cardinality"] = self.high_cardinality
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnProfile:
        dtype = data["dtype"]
        sample = data.get("sample")
        return cls(
            name=data["name"],
            dtype=dtype,
            kind=data["kind"],
            count=int(data["count"]),
            null_count=int(data["null_count"]),
            nan_count=int(data.get("nan_count", 0)),
            min=_fromjson_value(data.get("min"), dtype),
            max=_fromjson_value(data.get("max"), dtype),
            mean=None if data.get("mean") is None else decode_float(data["mean"]),
            variance=None if data.get("variance") is None else decode_float(data["variance"]),
            sampled=int(data.get("sampled", 0)),
            sample=np.asarray(sample, dtype=np.float64) if sample is not None else None,
            categories=dict(data["categories"]) if data.get("categories") is not None else None,
            high_cardinality=bool(data.get("high_cardinality", False)),
        )


@dataclass
class Profile:
    """The statistics of a stream of record batches: row count and one :class:`ColumnProfile`
    per column, in column order. JSON-safe through :meth:`to_dict` / :meth:`from_dict`."""

    rows: int = 0
    columns: dict[str, ColumnProfile] = field(default_factory=dict)
    sample_size: int = SAMPLE_SIZE
    max_categories: int = MAX_CATEGORIES
    seed: int = 0

    def __getitem__(self, name: str) -> ColumnProfile:
        return self.columns[name]

    @property
    def schema(self) -> dict[str, str]:
        """Column name to logical type (see :func:`logical_type`)."""
        return {name: c.dtype for name, c in self.columns.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "rows": self.rows,
            "sample_size": self.sample_size,
            "max_categories": self.max_categories,
            "seed": self.seed,
            "columns": [c.to_dict() for c in self.columns.values()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
            raise InvalidArgument(f"Not a Gyre profile (expected format {PROFILE_FORMAT!r}).")
        columns = [ColumnProfile.from_dict(c) for c in data["columns"]]
        return cls(
            rows=int(data["rows"]),
            columns={c.name: c for c in columns},
            sample_size=int(data.get("sample_size", SAMPLE_SIZE)),
            max_categories=int(data.get("max_categories", MAX_CATEGORIES)),
            seed=int(data.get("seed", 0)),
        )

    def merge(self, other: Profile) -> Profile:
        """The profile of both streams together (e.g. two dataset versions).

        A column present on one side only keeps its statistics; a column whose type differs
        between the two raises :class:`InvalidArgument`.
        """
        rng = np.random.default_rng([self.seed, self.rows, other.rows])
        merged = Profile(
            rows=self.rows + other.rows,
            sample_size=min(self.sample_size, other.sample_size),
            max_categories=min(self.max_categories, other.max_categories),
            seed=self.seed,
        )
        for name in list(self.columns) + [n for n in other.columns if n not in self.columns]:
            a, b = self.columns.get(name), other.columns.get(name)
            if a is None or b is None:
                merged.columns[name] = _copy_column(a or b)  # type: ignore[arg-type]
                continue
            if a.dtype == "null" or b.dtype == "null":  # all-null on one side: counts only
                a, b = (a, b) if b.dtype == "null" else (b, a)
            elif a.dtype != b.dtype:
                raise InvalidArgument(
                    f"Cannot merge profiles: column {name!r} is {a.dtype} in one and {b.dtype} in the other."
                )
            merged.columns[name] = _merge_columns(a, b, merged.sample_size, merged.max_categories, rng)
        return merged


def _copy_column(c: ColumnProfile) -> ColumnProfile:
    return ColumnProfile.from_dict(c.to_dict())


class Profiler:
    """Builds a :class:`Profile` incrementally, one record batch at a time.

    Use :meth:`observe` to profile batches as they flow to a writer::

        profiler = Profiler()
        lake.append(name, pa.RecordBatchReader.from_batches(source.schema, profiler.observe(source)))
        profile = profiler.result()

    Args:
        sample_size: values kept per numeric column for quantiles, PSI and KS.
        max_categories: distinct values counted per categorical column before it is marked
            high-cardinality.
        seed: seeds the sampling, so the same batches give the same profile.
    """

    def __init__(
        self, *, sample_size: int = SAMPLE_SIZE, max_categories: int = MAX_CATEGORIES, seed: int = 0
    ) -> None:
        self._profile = Profile(sample_size=sample_size, max_categories=max_categories, seed=seed)
        self._rng = np.random.default_rng(seed)
        self._counters: dict[str, Counter[str]] = {}
        self._types: dict[str, pa.DataType] = {}

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Add one batch (or table) to the profile."""
        p = self._profile
        n = batch.num_rows
        for name in batch.schema.names:
            column = batch.column(name)
            arrow_type = column.type
            known = self._types.get(name)
            if known is None:
                self._types[name] = arrow_type
                p.columns[name] = ColumnProfile(name, logical_type(arrow_type), kind_of(arrow_type))
                self._counters[name] = Counter()
            elif pa.types.is_null(known) and not pa.types.is_null(arrow_type):
                # All nulls so far, so no statistics yet: the column takes its first real type.
                self._types[name] = arrow_type
                p.columns[name].dtype, p.columns[name].kind = logical_type(arrow_type), kind_of(arrow_type)
            elif logical_type(known) != logical_type(arrow_type) and not pa.types.is_null(arrow_type):
                raise InvalidArgument(
                    f"Column {name!r} changed type from {logical_type(known)} to "
                    f"{logical_type(arrow_type)} between batches."
                )
            self._update_column(p.columns[name], column, n)
        for name, col in p.columns.items():  # columns absent from this batch: all null here
            if name not in batch.schema.names:
                col.count += n
                col.null_count += n
        p.rows += n

    def observe(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Yield ``batches`` unchanged, profiling each on the way."""
        for batch in batches:
            self.update(batch)
            yield batch

    def result(self) -> Profile:
        """The profile so far (categories are snapshotted; later updates do not change it)."""
        out = Profile(
            rows=self._profile.rows,
            sample_size=self._profile.sample_size,
            max_categories=self._profile.max_categories,
            seed=self._profile.seed,
        )
        for name, col in self._profile.columns.items():
            copy = _copy_column(col)
            if col.kind == "categorical" and not col.high_cardinality:
                copy.categories = dict(self._counters[name])
            out.columns[name] = copy
        return out

    # -- per column ------------------------------------------------------------------------

    def _update_column(self, col: ColumnProfile, column: pa.Array | pa.ChunkedArray, n: int) -> None:
        nulls = column.null_count
        col.count += n
        col.null_count += nulls
        if nulls == n or col.kind == "other":
            return
        if col.kind in ("numeric", "temporal"):
            lo, hi = _min_max(column, col.kind)
            if lo is not None:
                col.min = lo if col.min is None else min(col.min, lo)
                col.max = hi if col.max is None else max(col.max, hi)
        if col.kind == "numeric":
            self._update_numeric(col, column)
        elif col.kind == "categorical" and not col.high_cardinality:
            counter = self._counters[col.name]
            counts = pc.value_counts(as_strings(column))
            for value, count in zip(
                counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
            ):
                if value is not None:
                    counter[value] += count
            if len(counter) > self._profile.max_categories:
                col.high_cardinality = True
                counter.clear()  # the frequencies of an id column are no use; free them

    def _update_numeric(self, col: ColumnProfile, column: pa.Array | pa.ChunkedArray) -> None:
        # cast decodes dictionaries and converts decimals; float64 is what the sketch keeps.
        data = pc.cast(column.drop_null(), pa.float64()).to_numpy(zero_copy_only=False)
        nan = np.isnan(data)
        col.nan_count += int(nan.sum())
        # Moments and the sample cover finite values: one infinity would make them meaningless.
        finite = data[np.isfinite(data)]
        m = len(finite)
        if not m:
            return
        # Moments by Chan et al.'s parallel update: exact, and stable for large counts.
        with np.errstate(over="ignore", invalid="ignore"):  # values near 1e308: inf, not a warning
            mean_b = float(finite.mean())
            m2_b = float(((finite - mean_b) ** 2).sum())
        _combine_moments(col, m, mean_b, m2_b)
        k = self._profile.sample_size
        batch_sample = finite if m <= k else self._rng.choice(finite, k, replace=False)
        col.sample = _merge_samples(col.sample, col.sampled, batch_sample, m, k, self._rng)
        col.sampled += m


def profile(
    batches: pa.Table | pa.RecordBatch | pa.RecordBatchReader | Iterable[pa.RecordBatch],
    *,
    sample_size: int = SAMPLE_SIZE,
    max_categories: int = MAX_CATEGORIES,
    seed: int = 0,
) -> Profile:
    """Profile a table or a stream of record batches in one pass (see :class:`Profiler`)."""
    profiler = Profiler(sample_size=sample_size, max_categories=max_categories, seed=seed)
    if isinstance(batches, pa.Table | pa.RecordBatch):
        batches = [batches]
    for batch in batches:
        profiler.update(batch)
    return profiler.result()


def _min_max(column: pa.Array | pa.ChunkedArray, kind: str) -> tuple[Any, Any]:
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    if kind == "numeric" and pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
        # NaN is counted apart (nan_count), not ordered among the values.
        column = pc.filter(column, pc.invert(pc.is_nan(column)))
        if len(column) == 0:
            return None, None
    mm = pc.min_max(column)
    lo, hi = mm["min"].as_py(), mm["max"].as_py()
    if isinstance(lo, Decimal):
        lo, hi = float(lo), float(hi)
    return lo, hi


def as_strings(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    # Booleans read as "true"/"false"; dictionary, large and view strings as plain strings.
    return column if pa.types.is_string(column.type) else pc.cast(column, pa.string())


def _combine_moments(col: ColumnProfile, n_b: int, mean_b: float, m2_b: float) -> None:
    n_a = col.sampled
    if n_a == 0 or col.mean is None:
        col.mean = mean_b
        col.variance = m2_b / n_b
        return
    with np.errstate(over="ignore", invalid="ignore"):
        m2_a = (col.variance or 0.0) * n_a
        n = n_a + n_b
        delta = np.float64(mean_b) - np.float64(col.mean)
        col.mean = float(col.mean + delta * n_b / n)
        col.variance = float((m2_a + m2_b + delta * delta * n_a * n_b / n) / n)


def _merge_samples(
    a: np.ndarray | None, n_a: int, b: np.ndarray | None, n_b: int, k: int, rng: np.random.Generator
) -> np.ndarray:
    """A uniform sample of size min(k, n_a + n_b) of the union of two populations, given uniform
    samples ``a`` (of ``n_a`` values) and ``b`` (of ``n_b``).

    How many values come from ``a`` is hypergeometric (as drawing k from the union would be);
    each side then contributes a uniform subset of its own uniform sample.
    """
    a = np.empty(0) if a is None else a
    b = np.empty(0) if b is None else b
    if n_a + n_b <= k:
        return np.concatenate([a, b])
    if n_a == 0:
        return b if len(b) <= k else rng.choice(b, k, replace=False)
    if n_b == 0:
        return a if len(a) <= k else rng.choice(a, k, replace=False)
    from_a = int(rng.hypergeometric(n_a, n_b, k))
    return np.concatenate([rng.choice(a, from_a, replace=False), rng.choice(b, k - from_a, replace=False)])


def _merge_columns(
    a: ColumnProfile, b: ColumnProfile, k: int, max_categories: int, rng: np.random.Generator
) -> ColumnProfile:
    out = ColumnProfile(a.name, a.dtype, a.kind)
    out.count = a.count + b.count
    out.null_count = a.null_count + b.null_count
    out.nan_count = a.nan_count + b.nan_count
    mins = [x for x in (a.min, b.min) if x is not None]
    maxs = [x for x in (a.max, b.max) if x is not None]
    out.min = min(mins) if mins else None
    out.max = max(maxs) if maxs else None
    if a.kind == "numeric":
        out.sampled, out.mean, out.variance = a.sampled, a.mean, a.variance
        if b.sampled:
            _combine_moments(out, b.sampled, b.mean or 0.0, (b.variance or 0.0) * b.sampled)
        out.sampled = a.sampled + b.sampled
        out.sample = _merge_samples(a.sample, a.sampled, b.sample, b.sampled, k, rng)
    if a.kind == "categorical":
        if a.high_cardinality or b.high_cardinality or a.categories is None or b.categories is None:
            out.high_cardinality, out.categories = True, None
        else:
            merged = Counter(a.categories)
            merged.update(b.categories)
            if len(merged) > max_categories:
                out.high_cardinality, out.categories = True, None
            else:
                out.categories = dict(merged)
    return out
