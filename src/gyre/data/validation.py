"""Validation: expectations, and reports on new batches of a dataset.

Pure functions over Arrow data and profiles (:mod:`gyre.data.profiles`); no database, no I/O:

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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gyre.data.profiles import ColumnProfile, Profile, as_strings, json_value, kind_of
from gyre.errors import InvalidArgument
from gyre.jsonsafe import decode_float

Severity = Literal["error", "warning"]
SEVERITIES = ("error", "warning")

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
            out[f.name] = list(value) if isinstance(value, tuple) else json_value(value)
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
                    tally.values.extend(json_value(v) for v in taken)
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
        if kind_of(column.type) != "numeric":
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
        strings = as_strings(column)
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
    return json_value(value)


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
