"""Validation: streaming profiles, expectations, and reports on new batches of a dataset.

Three parts, all pure functions over Arrow data (no database, no I/O):

* :class:`Profiler` / :func:`profile` compute a :class:`Profile` batch by batch, so it can run in
  the same streaming pass as the write: per column the type, counts, nulls, min/max, mean and
  variance, a uniform sample for quantiles (numeric), and value frequencies up to a cap
  (categorical). Profiles are JSON-safe and mergeable.
* :class:`Expectation` s say what a batch must look like; :func:`infer_expectations` proposes them
  from a profile, and users can declare their own. Each has a severity: ``"error"`` rejects the
  batch, ``"warning"`` is recorded.
* :func:`validate` checks a batch's profile (and optionally its rows, for counts and example row
  numbers) against expectations and a reference profile (distribution skew by PSI and KS), and
  returns a :class:`ValidationReport`.

Why Arrow compute and numpy rather than pandera (or Great Expectations): they work on the record
batches the readers already produce, in one streaming pass, without a pandas DataFrame per batch
(a copy of every batch, and pandas' dtype changes to nullable columns), and without another
dependency; the statistics needed here are a few vectorised reductions. pandera's checks also
see one DataFrame at a time, so dataset-level statistics (null fraction over the whole batch
stream, drift vs a reference) would be hand-written either way.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gyre.errors import InvalidArgument
from gyre.jsonsafe import decode_float, encode_float

Severity = Literal["error", "warning"]
SEVERITIES = ("error", "warning")

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


def _kind(arrow_type: pa.DataType) -> str:
    t = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "temporal"
    if pa.types.is_boolean(t) or logical_type(t) == "string":
        return "categorical"
    return "other"


def _json_value(value: Any) -> Any:
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
        return _json_value(value.item())
    return value


def _from_json_value(value: Any, dtype: str) -> Any:
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
            out["min"] = _json_value(self.min)
            out["max"] = _json_value(self.max)
        if self.kind == "numeric":
            out["nan_count"] = self.nan_count
            out["mean"] = _json_value(self.mean)
            out["variance"] = _json_value(self.variance)
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
            min=_from_json_value(data.get("min"), dtype),
            max=_from_json_value(data.get("max"), dtype),
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
                p.columns[name] = ColumnProfile(name, logical_type(arrow_type), _kind(arrow_type))
                self._counters[name] = Counter()
            elif pa.types.is_null(known) and not pa.types.is_null(arrow_type):
                # All nulls so far, so no statistics yet: the column takes its first real type.
                self._types[name] = arrow_type
                p.columns[name].dtype, p.columns[name].kind = logical_type(arrow_type), _kind(arrow_type)
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
            counts = pc.value_counts(_as_strings(column))
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


def _as_strings(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
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


# -- expectations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Expectation:
    """What one aspect of a batch must look like. Subclasses are the kinds of check.

    ``severity="error"`` rejects a batch that fails it; ``"warning"`` records the failure and
    lets the batch through.
    """

    kind: ClassVar[str] = ""
    registry: ClassVar[dict[str, type[Expectation]]] = {}

    severity: Severity = field(default="error", kw_only=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            Expectation.registry[cls.kind] = cls

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise InvalidArgument(
                f"Invalid severity {self.severity!r} for a {self.kind} expectation: use 'error' or 'warning'."
            )

    @property
    def columns(self) -> list[str]:
        col = getattr(self, "column", None)
        return [col] if col else []

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else _json_value(value)
        return out

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Expectation:
        """Build the expectation a :meth:`to_dict` result describes."""
        if not isinstance(data, dict) or data.get("kind") not in Expectation.registry:
            kinds = ", ".join(sorted(Expectation.registry))
            got = data.get("kind") if isinstance(data, dict) else data
            raise InvalidArgument(f"Unknown expectation kind {got!r}: use one of {kinds}.")
        cls = Expectation.registry[data["kind"]]
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names - {"kind"}
        if unknown:
            raise InvalidArgument(
                f"Unknown field(s) {', '.join(sorted(unknown))} for a {cls.kind} expectation; "
                f"it takes {', '.join(sorted(names))}."
            )
        kwargs: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k != "kind"
        }
        for key in ("min", "max", "fraction"):
            if isinstance(kwargs.get(key), str):
                kwargs[key] = decode_float(kwargs[key])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise InvalidArgument(f"Invalid {cls.kind} expectation {data!r}: {exc}.") from None


@dataclass(frozen=True)
class ColumnType(Expectation):
    """The column exists and has this logical type (see :func:`logical_type`)."""

    kind: ClassVar[str] = "column_type"
    column: str
    dtype: str


@dataclass(frozen=True)
class NoExtraColumns(Expectation):
    """The batch has no columns besides these."""

    kind: ClassVar[str] = "no_extra_columns"
    allowed: tuple[str, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "allowed", tuple(self.allowed))


@dataclass(frozen=True)
class MaxNullFraction(Expectation):
    """At most this fraction of the column's values are null (0 means not nullable)."""

    kind: ClassVar[str] = "max_null_fraction"
    column: str
    fraction: float

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.fraction <= 1.0:
            raise InvalidArgument(
                f"max_null_fraction for {self.column!r} must be between 0 and 1, got {self.fraction}."
            )


@dataclass(frozen=True)
class ValueRange(Expectation):
    """Every non-null value of a numeric column lies in ``[min, max]`` (either bound optional)."""

    kind: ClassVar[str] = "value_range"
    column: str
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min is None and self.max is None:
            raise InvalidArgument(f"A value_range expectation on {self.column!r} needs min, max or both.")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise InvalidArgument(f"value_range on {self.column!r} has min {self.min} above max {self.max}.")


@dataclass(frozen=True)
class AllowedValues(Expectation):
    """Every non-null value of a string or boolean column is one of these (booleans as
    ``"true"``/``"false"``)."""

    kind: ClassVar[str] = "allowed_values"
    column: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "values", tuple(self.values))


class Expectations(list[Expectation]):
    """A list of expectations that converts to and from JSON-safe data (a list of dicts, as the
    dataset catalog stores them)."""

    def to_list(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self]

    @classmethod
    def from_list(cls, data: Iterable[dict[str, Any]]) -> Expectations:
        return cls(Expectation.from_dict(d) for d in data)

    def for_column(self, name: str) -> list[Expectation]:
        return [e for e in self if name in e.columns]


def infer_expectations(
    profile: Profile,
    *,
    max_domain: int = 50,
    range_severity: Severity = "warning",
    domain_severity: Severity = "warning",
) -> Expectations:
    """Propose expectations from a (first version's) profile, for a user to accept or edit.

    * every column present with its type, and no other columns (error);
    * columns without nulls stay without (error); others may have up to twice their null
      fraction plus 5 points (warning);
    * numeric columns stay within their observed range (``range_severity``, a warning by
      default: new data legitimately sets new records);
    * string columns with at most ``max_domain`` distinct values, each seen more than once on
      average, keep to that domain (``domain_severity``).

    Temporal columns get no range: new data is expected to be later.
    """
    out = Expectations()
    for name, col in profile.columns.items():
        out.append(ColumnType(name, col.dtype))
    out.append(NoExtraColumns(tuple(profile.columns)))
    for name, col in profile.columns.items():
        if col.count == 0:
            continue
        if col.null_count == 0:
            out.append(MaxNullFraction(name, 0.0))
        else:
            frac = col.null_fraction
            out.append(
                MaxNullFraction(name, round(min(1.0, max(2 * frac, frac + 0.05)), 6), severity="warning")
            )
        if col.kind == "numeric" and col.min is not None:
            out.append(ValueRange(name, col.min, col.max, severity=range_severity))
        if (
            col.kind == "categorical"
            and col.dtype == "string"
            and col.categories is not None
            and 0 < len(col.categories) <= max_domain
            and (col.count - col.null_count) >= 2 * len(col.categories)
        ):
            out.append(AllowedValues(name, tuple(sorted(col.categories)), severity=domain_severity))
    return out


# -- row-level checks ----------------------------------------------------------------------


@dataclass
class _RowTally:
    count: int = 0
    rows: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)


class RowChecks:
    """Counts the values that break range, domain and null expectations, with example rows,
    batch by batch (so it can run in the same pass as the write).

    Row numbers are 0-based positions in the stream of batches given to :meth:`update`.
    """

    def __init__(self, expectations: Iterable[Expectation], *, max_examples: int = 5) -> None:
        self.expectations = [
            e for e in expectations if isinstance(e, ValueRange | AllowedValues | MaxNullFraction)
        ]
        self.max_examples = max_examples
        self.tallies = [_RowTally() for _ in self.expectations]
        self.rows = 0

    def update(self, batch: pa.RecordBatch | pa.Table) -> None:
        for exp, tally in zip(self.expectations, self.tallies, strict=True):
            if exp.column not in batch.schema.names:
                continue
            column = batch.column(exp.column)
            mask = _violations(exp, column)
            if mask is None:
                continue
            hits = pc.sum(mask).as_py() or 0
            if not hits:
                continue
            tally.count += hits
            need = self.max_examples - len(tally.rows)
            if need > 0:
                idx = np.flatnonzero(mask.to_numpy(zero_copy_only=False))[:need]
                tally.rows.extend(int(i) + self.rows for i in idx)
                if not isinstance(exp, MaxNullFraction):
                    taken = column.take(pa.array(idx, pa.int64())).to_pylist()
                    tally.values.extend(_json_value(v) for v in taken)
        self.rows += batch.num_rows

    def observe(self, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Yield ``batches`` unchanged, checking each on the way."""
        for batch in batches:
            self.update(batch)
            yield batch

    def tally(self, expectation: Expectation) -> _RowTally | None:
        for exp, tally in zip(self.expectations, self.tallies, strict=True):
            if exp is expectation or exp == expectation:
                return tally
        return None


def _violations(exp: Expectation, column: pa.Array | pa.ChunkedArray) -> Any:
    """A boolean mask of the values breaking ``exp`` (no nulls in the mask), or None."""
    if isinstance(exp, MaxNullFraction):
        return column.is_null() if column.null_count else None
    if isinstance(exp, ValueRange):
        if _kind(column.type) != "numeric":
            return None
        if pa.types.is_dictionary(column.type):
            column = pc.cast(column, column.type.value_type)
        values = pc.cast(column, pa.float64()) if pa.types.is_decimal(column.type) else column
        parts = []
        if exp.min is not None:
            parts.append(pc.less(values, pa.scalar(float(exp.min))))
        if exp.max is not None:
            parts.append(pc.greater(values, pa.scalar(float(exp.max))))
        mask = parts[0] if len(parts) == 1 else pc.or_(parts[0], parts[1])
        return pc.fill_null(mask, False)  # NaN compares false: it is not judged by ranges
    if isinstance(exp, AllowedValues):
        strings = _as_strings(column)
        inside = pc.is_in(strings, value_set=pa.array(list(exp.values), pa.string()))
        return pc.and_(pc.invert(inside), pc.is_valid(strings))
    return None


# -- drift statistics ----------------------------------------------------------------------

_PSI_EPSILON = 1e-4  # floor for empty bins: ln(0) is infinite, and one empty bin should not be


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two distributions over the same bins (fractions).

    ``sum((a - e) * ln(a / e))``; under 0.1 is usually read as no shift, 0.1-0.2 moderate, above
    0.2 significant.
    """
    e = np.maximum(np.asarray(expected, dtype=np.float64), _PSI_EPSILON)
    a = np.maximum(np.asarray(actual, dtype=np.float64), _PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI over the reference's quantile bins (equal-frequency in the reference)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    # side="left": bins are (-inf, e1], (e1, e2], ..., (ek, inf), so a constant reference still
    # separates values at the constant from values above it.
    ref_bins = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=len(edges) + 1)
    cur_bins = np.bincount(np.searchsorted(edges, current, side="left"), minlength=len(edges) + 1)
    return psi(ref_bins / len(reference), cur_bins / len(current))


def categorical_psi(reference: dict[str, int], current: dict[str, int]) -> float:
    """PSI over category frequencies (the union of both domains)."""
    keys = sorted(set(reference) | set(current))
    r = np.array([reference.get(k, 0) for k in keys], dtype=np.float64)
    c = np.array([current.get(k, 0) for k in keys], dtype=np.float64)
    return psi(r / r.sum(), c / c.sum())


def ks_2samp(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and its asymptotic p-value.

    Written with numpy (as scipy's ``ks_2samp(method="asymp")`` computes it) so the core install
    needs no scipy; the samples here are the profiles' reservoirs, so sizes are at most a few
    thousand and the asymptotic distribution is accurate.
    """
    a, b = np.sort(a), np.sort(b)
    n, m = len(a), len(b)
    if not n or not m:
        return 0.0, 1.0
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / n
    cdf_b = np.searchsorted(b, grid, side="right") / m
    d = float(np.max(np.abs(cdf_a - cdf_b)))
    en = math.sqrt(n * m / (n + m))
    lam = (en + 0.12 + 0.11 / en) * d  # Stephens' correction, as in Numerical Recipes
    return d, _kolmogorov_sf(lam)


def _kolmogorov_sf(lam: float) -> float:
    if lam < 0.2:
        return 1.0
    j = np.arange(1, 101)
    terms = 2 * ((-1.0) ** (j - 1)) * np.exp(-2 * j * j * lam * lam)
    return float(min(1.0, max(0.0, terms.sum())))


# -- reports -------------------------------------------------------------------------------


@dataclass
class CheckResult:
    """One check on one column (or the whole batch): passed or not, why, and the evidence."""

    check: str
    column: str | None
    severity: Severity
    passed: bool
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        """``"ok"``, or the severity of the failure."""
        return "ok" if self.passed else self.severity

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "column": self.column,
            "severity": self.severity,
            "passed": self.passed,
            "status": self.status,
            "message": self.message,
            "details": {k: _json_details(v) for k, v in self.details.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        return cls(
            data["check"], data["column"], data["severity"], data["passed"], data["message"], data["details"]
        )


def _json_details(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_details(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_details(v) for v in value]
    return _json_value(value)


@dataclass
class ValidationReport:
    """The outcome of :func:`validate`: every check's result, in a stable order.

    ``ok`` is false when any error-severity check failed: the batch must be rejected.
    """

    rows: int
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def errors(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed and r.severity == "error"]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed and r.severity == "warning"]

    @property
    def columns(self) -> dict[str, list[CheckResult]]:
        """Results per column, in column order; checks of the whole batch are under ``""``."""
        out: dict[str, list[CheckResult]] = {}
        for r in self.results:
            out.setdefault(r.column or "", []).append(r)
        return out

    def summary(self) -> dict[str, Any]:
        """A short JSON-safe summary (for the catalog's version record)."""
        return {
            "ok": self.ok,
            "rows": self.rows,
            "checks": len(self.results),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
        }

    def table(self) -> list[dict[str, Any]]:
        """One row per check, failures first (errors, then warnings), ready for a Rich table:
        ``column``, ``check``, ``status`` (``ok``/``warning``/``error``) and ``message``."""
        order = {"error": 0, "warning": 1, "ok": 2}
        rows = sorted(self.results, key=lambda r: order[r.status])
        return [
            {"column": r.column or "", "check": r.check, "status": r.status, "message": r.message}
            for r in rows
        ]

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "results": [r.to_dict() for r in self.results]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationReport:
        return cls(int(data["rows"]), [CheckResult.from_dict(r) for r in data["results"]])


def validate(
    batch_profile: Profile,
    expectations: Iterable[Expectation],
    *,
    reference: Profile | None = None,
    batches: pa.Table | Iterable[pa.RecordBatch] | RowChecks | None = None,
    skew_threshold_psi: float = 0.2,
    ks_alpha: float = 0.001,
    skew_severity: Severity = "warning",
    min_skew_values: int = 50,
    max_examples: int = 5,
) -> ValidationReport:
    """Check a batch (through its profile) against expectations and a reference profile.

    Checks, each reported per column:

    * ``missing_column`` / ``column_type`` / ``extra_column`` from :class:`ColumnType` and
      :class:`NoExtraColumns`;
    * ``null_fraction`` from :class:`MaxNullFraction`;
    * ``value_range`` from :class:`ValueRange` and ``allowed_values`` (unseen categories) from
      :class:`AllowedValues`;
    * ``distribution`` (skew), when ``reference`` is given, for every numeric and categorical
      column in both profiles with at least ``min_skew_values`` values on each side: PSI over
      the reference's decile bins (numeric) or category frequencies (categorical), and for numeric
      columns the two-sample KS test on the profiles' samples. It fails when PSI exceeds
      ``skew_threshold_psi`` or the KS p-value is below ``ks_alpha`` (kept small: with thousands
      of sampled values KS flags even slight shifts). High-cardinality columns are not compared.

    Args:
        batch_profile: the profile of the batch being validated.
        expectations: the dataset's expectations (declared, or from :func:`infer_expectations`).
        reference: the profile to compare distributions with (the previous version, or a pinned one).
        batches: the batch's rows, to count range/domain/null violations exactly and give example
            rows: a table, an iterable that can be iterated once more, or a :class:`RowChecks`
            already fed in the write pass. Without it, counts come from the profile where it has
            them (nulls, categories) and range failures report the extreme value only.
        skew_threshold_psi: PSI above this is skew.
        ks_alpha: KS p-value below this is skew.
        skew_severity: severity of skew failures.
        min_skew_values: fewer values than this on either side skips the skew check.
        max_examples: example rows/values per failed check.
    """
    exps = list(expectations)
    row_checks = _row_checks(exps, batches, max_examples)
    report = ValidationReport(rows=batch_profile.rows)
    cols = batch_profile.columns
    for exp in exps:
        if exp.severity not in SEVERITIES:
            raise InvalidArgument(f"Invalid severity {exp.severity!r} in {exp!r}.")
        if isinstance(exp, ColumnType):
            report.results.append(_check_type(exp, cols))
        elif isinstance(exp, NoExtraColumns):
            report.results.extend(_check_extra(exp, cols))
        elif exp.columns and exp.columns[0] not in cols:
            continue  # a missing column is reported once, by its column_type check
        elif isinstance(exp, MaxNullFraction):
            report.results.append(_check_nulls(exp, cols[exp.column], row_checks))
        elif isinstance(exp, ValueRange):
            report.results.append(_check_range(exp, cols[exp.column], row_checks))
        elif isinstance(exp, AllowedValues):
            report.results.append(_check_domain(exp, cols[exp.column], row_checks, max_examples))
    if reference is not None:
        for name, col in cols.items():
            ref = reference.columns.get(name)
            if ref is not None and ref.dtype == col.dtype:
                result = _check_skew(col, ref, skew_threshold_psi, ks_alpha, skew_severity, min_skew_values)
                if result is not None:
                    report.results.append(result)
    order = {name: i for i, name in enumerate(cols)}
    report.results.sort(key=lambda r: order.get(r.column or "", -1))
    return report


def _row_checks(
    exps: list[Expectation], batches: pa.Table | Iterable[pa.RecordBatch] | RowChecks | None, k: int
) -> RowChecks | None:
    if batches is None or isinstance(batches, RowChecks):
        return batches
    checks = RowChecks(exps, max_examples=k)
    if isinstance(batches, pa.Table | pa.RecordBatch):
        checks.update(batches)
    else:
        for batch in batches:
            checks.update(batch)
    return checks


def _check_type(exp: ColumnType, cols: dict[str, ColumnProfile]) -> CheckResult:
    col = cols.get(exp.column)
    if col is None:
        return CheckResult(
            "missing_column",
            exp.column,
            exp.severity,
            False,
            f"Column {exp.column!r} ({exp.dtype}) is missing.",
            {"expected": exp.dtype},
        )
    if col.dtype != exp.dtype and col.dtype != "null":
        return CheckResult(
            "column_type",
            exp.column,
            exp.severity,
            False,
            f"Column {exp.column!r} is {col.dtype}, expected {exp.dtype}.",
            {"expected": exp.dtype, "actual": col.dtype},
        )
    return CheckResult(
        "column_type", exp.column, exp.severity, True, f"{col.dtype} as expected", {"actual": col.dtype}
    )


def _check_extra(exp: NoExtraColumns, cols: dict[str, ColumnProfile]) -> list[CheckResult]:
    allowed = set(exp.allowed)
    return [
        CheckResult(
            "extra_column",
            name,
            exp.severity,
            False,
            f"Column {name!r} ({col.dtype}) is not in the dataset's schema.",
            {"actual": col.dtype},
        )
        for name, col in cols.items()
        if name not in allowed
    ]


def _check_nulls(exp: MaxNullFraction, col: ColumnProfile, rows: RowChecks | None) -> CheckResult:
    frac = col.null_fraction
    details: dict[str, Any] = {"null_count": col.null_count, "fraction": frac, "max_fraction": exp.fraction}
    passed = frac <= exp.fraction
    if passed:
        return CheckResult("null_fraction", col.name, exp.severity, True, f"{frac:.2%} null", details)
    tally = rows.tally(exp) if rows is not None else None
    if tally is not None:
        details["example_rows"] = list(tally.rows)
    limit = "no nulls" if exp.fraction == 0 else f"at most {exp.fraction:.2%}"
    return CheckResult(
        "null_fraction",
        col.name,
        exp.severity,
        False,
        f"{col.null_count} of {col.count} values are null ({frac:.2%}); expected {limit}.",
        details,
    )


def _check_range(exp: ValueRange, col: ColumnProfile, rows: RowChecks | None) -> CheckResult:
    bounds = f"[{'-inf' if exp.min is None else exp.min}, {'inf' if exp.max is None else exp.max}]"
    details: dict[str, Any] = {
        "min": exp.min,
        "max": exp.max,
        "observed_min": col.min,
        "observed_max": col.max,
    }
    below = exp.min is not None and col.min is not None and col.min < exp.min
    above = exp.max is not None and col.max is not None and col.max > exp.max
    tally = rows.tally(exp) if rows is not None else None
    # With rows the count is exact; without, the profile's extremes decide.
    failed = tally.count > 0 if tally is not None else below or above
    if not failed:
        return CheckResult("value_range", col.name, exp.severity, True, f"within {bounds}", details)
    if tally is not None:
        details.update(count=tally.count, example_rows=list(tally.rows), example_values=list(tally.values))
        message = f"{tally.count} values outside {bounds} (observed {col.min} to {col.max})."
    else:
        details["count"] = None
        message = f"Values outside {bounds}: observed {col.min} to {col.max}."
    return CheckResult("value_range", col.name, exp.severity, False, message, details)


def _check_domain(exp: AllowedValues, col: ColumnProfile, rows: RowChecks | None, k: int) -> CheckResult:
    allowed = set(exp.values)
    details: dict[str, Any] = {"allowed": len(allowed)}
    tally = rows.tally(exp) if rows is not None else None
    unseen: dict[str, int] | None = None
    if col.categories is not None:
        unseen = {v: n for v, n in col.categories.items() if v not in allowed}
    if tally is not None:
        count = tally.count
    elif unseen is not None:
        count = sum(unseen.values())
    else:
        count = None  # high-cardinality batch without rows: certainly outside a small domain
    failed = count is None or count > 0
    if not failed:
        return CheckResult("allowed_values", col.name, exp.severity, True, "all values allowed", details)
    details["count"] = count
    if unseen is not None:
        top = sorted(unseen.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        details["unseen"] = dict(top)
        details["unseen_distinct"] = len(unseen)
    if tally is not None:
        details["example_rows"] = list(tally.rows)
        details["example_values"] = list(tally.values)
    if count is None:
        message = (
            f"Too many distinct values to list (high cardinality), but only {len(allowed)} are "
            "allowed; pass the rows to count them."
        )
    else:
        shown = ", ".join(repr(v) for v in (details.get("unseen") or {})) or ", ".join(
            repr(v) for v in details.get("example_values", [])
        )
        message = f"{count} values not in the allowed set ({len(allowed)} values): {shown}."
    return CheckResult("allowed_values", col.name, exp.severity, False, message, details)


def _check_skew(
    col: ColumnProfile,
    ref: ColumnProfile,
    threshold: float,
    alpha: float,
    severity: Severity,
    min_values: int,
) -> CheckResult | None:
    details: dict[str, Any] = {"psi_threshold": threshold}
    if col.kind == "numeric":
        if col.sample is None or ref.sample is None:
            return None
        if len(col.sample) < min_values or len(ref.sample) < min_values:
            return None
        value = numeric_psi(ref.sample, col.sample)
        d, p = ks_2samp(ref.sample, col.sample)
        details.update(psi=value, ks_statistic=d, ks_pvalue=p, ks_alpha=alpha)
        details.update(reference_mean=ref.mean, mean=col.mean)
        failed = value > threshold or p < alpha
        message = f"PSI {value:.3f}, KS D={d:.3f} (p={p:.2g}); mean {ref.mean:.4g} -> {col.mean:.4g}"
    elif col.kind == "categorical":
        if col.categories is None or ref.categories is None:
            return None
        if sum(col.categories.values()) < min_values or sum(ref.categories.values()) < min_values:
            return None
        value = categorical_psi(ref.categories, col.categories)
        details["psi"] = value
        failed = value > threshold
        message = f"PSI {value:.3f} over {len(set(ref.categories) | set(col.categories))} categories"
    else:
        return None
    if failed:
        message = "Distribution shifted from the reference: " + message + "."
    return CheckResult("distribution", col.name, severity, not failed, message, details)
