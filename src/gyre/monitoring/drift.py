"""Drift: does the current data look like the reference, feature by feature?

Pure computation over a reference :class:`~gyre.data.profiles.Profile` and current data (an
Arrow table, or another profile); storing reports and reading windows live in
:mod:`gyre.monitoring.service`.

* A :class:`Reference` is a profile compiled for testing (sorted samples, quantile bins,
  category counts): computed once per model version and reused for every window.
* :class:`DriftTest` picks the method and threshold of one feature; :class:`DriftConfig` holds
  the per-kind defaults (Kolmogorov-Smirnov for numeric columns, chi-square for categorical
  ones), per-feature overrides and the minimum count below which a test is not run.
* :func:`compare` returns a :class:`DriftReport`: one :class:`FeatureDrift` per feature, each
  ``"drift"``, ``"ok"``, ``"insufficient_data"`` (too few values on either side: never
  reported as drift or as no drift) or ``"skipped"`` (a type the method cannot test).

Methods, and what their threshold means:

=================  ===============  ====================================================  =========
method             kinds            statistic                                             default
=================  ===============  ====================================================  =========
``ks``             numeric          KS distance D; drift when the p-value < threshold     0.05
``chi2``           both             chi-square (numeric: over reference decile bins);      0.05
                                    drift when the p-value < threshold
``psi``            both             population stability index; drift when > threshold    0.2
``jensen_shannon`` both             Jensen-Shannon distance (base 2); drift when >        0.1
``wasserstein``    numeric          Wasserstein-1 / reference std; drift when >           0.1
=================  ===============  ====================================================  =========
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gyre.data.profiles import ColumnProfile, Profile, as_strings, kind_of
from gyre.errors import InvalidArgument, did_you_mean
from gyre.jsonsafe import decode_float, encode_float
from gyre.monitoring import stats

METHODS: dict[str, dict[str, Any]] = {
    "ks": {"kinds": ("numeric",), "pvalue": True, "threshold": 0.05},
    "chi2": {"kinds": ("numeric", "categorical"), "pvalue": True, "threshold": 0.05},
    "psi": {"kinds": ("numeric", "categorical"), "pvalue": False, "threshold": 0.2},
    "jensen_shannon": {"kinds": ("numeric", "categorical"), "pvalue": False, "threshold": 0.1},
    "wasserstein": {"kinds": ("numeric",), "pvalue": False, "threshold": 0.1},
}
STATUSES = ("drift", "ok", "insufficient_data", "skipped")
DEFAULT_MIN_COUNT = 50
DEFAULT_BINS = 10
PREDICTION = "prediction"


# -- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftTest:
    """How one feature is tested: a method (see the module docstring) and its threshold.

    ``threshold`` is a significance level for ``ks`` and ``chi2`` (drift when the p-value is
    below it) and a distance for the others (drift when the statistic is above it); ``None``
    takes the method's default.
    """

    method: str
    threshold: float | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvalidArgument(
                f"Unknown drift method {self.method!r}; use one of {', '.join(METHODS)}."
                + did_you_mean(str(self.method), METHODS)
            )
        t = self.threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, int | float) or not t > 0):
            raise InvalidArgument(
                f"The threshold of a {self.method} test must be a positive number, got {t!r}."
            )
        if t is not None and METHODS[self.method]["pvalue"] and t >= 1:
            raise InvalidArgument(
                f"The threshold of a {self.method} test is a significance level below 1 (e.g. 0.05), got {t}."
            )

    @property
    def limit(self) -> float:
        return float(self.threshold if self.threshold is not None else METHODS[self.method]["threshold"])

    @property
    def uses_pvalue(self) -> bool:
        return bool(METHODS[self.method]["pvalue"])

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "threshold": self.threshold}

    @classmethod
    def parse(cls, value: DriftTest | str | Mapping[str, Any]) -> DriftTest:
        """A test from itself, a method name (``"psi"``), ``"psi:0.25"``, or a dict."""
        if isinstance(value, DriftTest):
            return value
        if isinstance(value, str):
            method, _, threshold = value.partition(":")
            try:
                return cls(method.strip(), float(threshold) if threshold else None)
            except ValueError:
                raise InvalidArgument(
                    f"Cannot read drift test {value!r}: write METHOD or METHOD:THRESHOLD, e.g. psi:0.25."
                ) from None
        if isinstance(value, Mapping):
            return cls(value["method"], value.get("threshold"))
        raise InvalidArgument(f"A drift test is a method name or DriftTest(...), got {value!r}.")


@dataclass(frozen=True)
class DriftConfig:
    """Which test each feature gets, and when there is too little data to test.

    Args:
        numeric: the default test of numeric features.
        categorical: the default test of categorical (string, boolean) features.
        features: per-feature overrides, name -> test (or method name).
        min_count: fewer non-null values than this on either side is ``insufficient_data``.
        bins: equal-frequency bins of the reference for binned tests of numeric features.
        exclude: features not to test (ids, timestamps that happen to be numbers).
    """

    numeric: DriftTest = DriftTest("ks")
    categorical: DriftTest = DriftTest("chi2")
    features: Mapping[str, DriftTest] = field(default_factory=dict)
    min_count: int = DEFAULT_MIN_COUNT
    bins: int = DEFAULT_BINS
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "numeric", DriftTest.parse(self.numeric))
        object.__setattr__(self, "categorical", DriftTest.parse(self.categorical))
        object.__setattr__(self, "features", {k: DriftTest.parse(v) for k, v in dict(self.features).items()})
        object.__setattr__(self, "exclude", tuple(self.exclude))
        for name, kind in (("numeric", self.numeric), ("categorical", self.categorical)):
            if name not in METHODS[kind.method]["kinds"]:
                raise InvalidArgument(
                    f"{kind.method} cannot test {name} features; use one of "
                    f"{', '.join(m for m, spec in METHODS.items() if name in spec['kinds'])}."
                )
        if not isinstance(self.min_count, int) or self.min_count < 2:
            raise InvalidArgument(f"min_count must be a whole number >= 2, got {self.min_count!r}.")
        if not isinstance(self.bins, int) or self.bins < 2:
            raise InvalidArgument(f"bins must be a whole number >= 2, got {self.bins!r}.")

    def test_for(self, name: str, kind: str) -> DriftTest:
        if name in self.features:
            return self.features[name]
        return self.numeric if kind == "numeric" else self.categorical

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": self.numeric.to_dict(),
            "categorical": self.categorical.to_dict(),
            "features": {k: v.to_dict() for k, v in self.features.items()},
            "min_count": self.min_count,
            "bins": self.bins,
            "exclude": list(self.exclude),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> DriftConfig:
        if not data:
            return cls()
        return cls(
            numeric=DriftTest.parse(data.get("numeric", "ks")),
            categorical=DriftTest.parse(data.get("categorical", "chi2")),
            features={k: DriftTest.parse(v) for k, v in (data.get("features") or {}).items()},
            min_count=int(data.get("min_count", DEFAULT_MIN_COUNT)),
            bins=int(data.get("bins", DEFAULT_BINS)),
            exclude=tuple(data.get("exclude") or ()),
        )


# -- the two sides ---------------------------------------------------------------------------


@dataclass
class _Side:
    """One column's data as the tests read it: finite values (numeric) or category counts."""

    kind: str
    rows: int
    nulls: int
    values: np.ndarray | None = None  # numeric, sorted ascending, finite
    categories: dict[str, int] | None = None  # categorical
    std: float | None = None

    @property
    def count(self) -> int:
        if self.kind == "numeric":
            return 0 if self.values is None else len(self.values)
        return sum(self.categories.values()) if self.categories is not None else 0

    @property
    def null_fraction(self) -> float | None:
        return self.nulls / self.rows if self.rows else None


def _side_from_profile(col: ColumnProfile) -> _Side:
    side = _Side(col.kind, col.count, col.null_count)
    if col.kind == "numeric":
        side.values = np.sort(col.sample) if col.sample is not None else np.empty(0)
        side.std = math.sqrt(col.variance) if col.variance is not None and col.variance >= 0 else None
    elif col.kind == "categorical":
        side.categories = dict(col.categories) if col.categories is not None else None
    return side


def _side_from_array(column: pa.Array | pa.ChunkedArray) -> _Side:
    if pa.types.is_null(column.type):  # a feature absent from every row: no values at all
        return _Side("null", len(column), len(column))
    kind = kind_of(column.type)
    side = _Side(kind, len(column), column.null_count)
    if kind == "numeric":
        data = pc.cast(column.drop_null(), pa.float64()).to_numpy(zero_copy_only=False)
        data = np.sort(data[np.isfinite(data)])
        side.values = data
        side.std = float(data.std()) if len(data) else None
    elif kind == "categorical":
        counts = pc.value_counts(as_strings(column).drop_null())
        side.categories = dict(
            zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
        )
    return side


class Reference:
    """A reference profile compiled for drift tests: each numeric column's sample sorted, each
    column's null fraction and counts at hand. Build it once per model version (it is what
    makes a window's tests cost only the current side) and compare many windows with it.
    """

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.columns: dict[str, _Side] = {
            name: _side_from_profile(col)
            for name, col in profile.columns.items()
            if col.kind in ("numeric", "categorical")
        }
        self._bins: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def of(cls, reference: Reference | Profile | Mapping[str, Any]) -> Reference:
        if isinstance(reference, Reference):
            return reference
        if isinstance(reference, Profile):
            return cls(reference)
        return cls(Profile.from_dict(dict(reference)))

    def bins(self, name: str, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """Quantile bin edges of a numeric column and the reference sample's counts in them."""
        key = (name, bins)
        if key not in self._bins:
            values = self.columns[name].values
            assert values is not None
            edges = stats.quantile_edges(values, bins)
            self._bins[key] = (edges, stats.bin_counts(edges, values))
        return self._bins[key]


# -- results ---------------------------------------------------------------------------------


@dataclass
class FeatureDrift:
    """The outcome of one feature's test."""

    feature: str
    kind: str
    method: str
    status: str
    threshold: float
    statistic: float | None = None
    p_value: float | None = None
    reference_count: int = 0
    current_count: int = 0
    reference_null_fraction: float | None = None
    current_null_fraction: float | None = None
    message: str = ""

    @property
    def drifted(self) -> bool:
        return self.status == "drift"

    @property
    def score(self) -> float | None:
        """One number per test for dashboards: the p-value for p-value tests, else the statistic."""
        return self.p_value if METHODS[self.method]["pvalue"] else self.statistic

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            out[key] = encode_float(value) if isinstance(value, float) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureDrift:
        floats = {"threshold", "statistic", "p_value", "reference_null_fraction", "current_null_fraction"}
        return cls(
            **{k: (decode_float(v) if k in floats and v is not None else v) for k, v in data.items()}  # type: ignore[arg-type]
        )


@dataclass
class DriftReport:
    """Every feature's test for one comparison (a window of an endpoint, or two dataset
    versions). ``subject`` says what was compared (endpoint, model and version, or dataset)."""

    subject: dict[str, Any]
    features: list[FeatureDrift]
    rows: int = 0
    window_start: datetime | None = None
    window_end: datetime | None = None
    computed_at: datetime | None = None
    id: str | None = None

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.status == "drift"]

    @property
    def tested(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.status in ("drift", "ok")]

    @property
    def insufficient(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.status == "insufficient_data"]

    def feature(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.feature == name:
                return f
        raise KeyError(name)

    def summary(self) -> dict[str, Any]:
        return {
            "features": len(self.features),
            "tested": len(self.tested),
            "drifted": len(self.drifted),
            "insufficient_data": len(self.insufficient),
            "drifted_features": [f.feature for f in self.drifted],
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.subject,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "computed_at": self.computed_at.isoformat() if self.computed_at else None,
            "rows": self.rows,
            **self.summary(),
            "results": [f.to_dict() for f in self.features],
        }


# -- comparing -------------------------------------------------------------------------------


def compare(
    reference: Reference | Profile,
    current: pa.Table | Profile,
    config: DriftConfig | None = None,
    *,
    columns: Iterable[str] | None = None,
    subject: Mapping[str, Any] | None = None,
) -> DriftReport:
    """Test every feature of ``reference`` that ``current`` should have.

    Args:
        reference: the reference profile (or a compiled :class:`Reference`, to reuse).
        current: the current rows, or their profile (its samples and category counts).
        config: methods, thresholds, minimum counts; the defaults if omitted.
        columns: the features to test (default: every numeric and categorical column of the
            reference, minus ``config.exclude``). A feature missing from ``current`` is
            ``insufficient_data``.
        subject: what is being compared, carried into the report.
    """
    config = config or DriftConfig()
    ref = Reference.of(reference)
    names = list(columns) if columns is not None else list(ref.columns)
    names = [n for n in names if n not in config.exclude]
    if isinstance(current, Profile):
        cur_columns = {n: _side_from_profile(c) for n, c in current.columns.items() if n in names}
        rows = current.rows
    else:
        cur_columns = {n: _side_from_array(current.column(n)) for n in names if n in current.column_names}
        rows = current.num_rows
    results = [_test_feature(name, ref, cur_columns.get(name), config) for name in names]
    return DriftReport(subject=dict(subject or {}), features=results, rows=rows)


def _test_feature(name: str, ref: Reference, cur: _Side | None, config: DriftConfig) -> FeatureDrift:
    r = ref.columns.get(name)
    kind = r.kind if r is not None else (cur.kind if cur is not None else "other")
    test = config.test_for(name, kind)
    out = FeatureDrift(name, kind, test.method, "insufficient_data", test.limit)
    if r is not None:
        out.reference_count, out.reference_null_fraction = r.count, r.null_fraction
    if cur is not None:
        out.current_count, out.current_null_fraction = cur.count, cur.null_fraction
    if r is None:
        out.message = "not in the reference profile"
        return out
    if cur is None:
        out.message = "not in the current data"
        return out
    if kind not in METHODS[test.method]["kinds"]:
        out.status = "skipped"
        out.message = f"{test.method} cannot test a {kind} feature"
        return out
    if cur.kind == "null":
        cur = _Side(kind, cur.rows, cur.nulls, values=np.empty(0), categories={})
    elif cur.kind != kind:
        cur = _coerce(cur, kind)
        if cur is None:
            out.status = "skipped"
            out.message = f"the reference is {kind}, the current data is not"
            return out
    if kind == "categorical" and (r.categories is None or cur.categories is None):
        out.status = "skipped"
        out.message = "too many distinct values (high cardinality) to compare"
        return out
    if r.count < config.min_count or cur.count < config.min_count:
        out.message = (
            f"{r.count} reference and {cur.count} current values; "
            f"at least {config.min_count} needed on each side"
        )
        return out
    stat, p = _run(test.method, name, ref, r, cur, config)
    out.statistic, out.p_value = stat, p
    drifted = (
        (p is not None and p < test.limit) if test.uses_pvalue else (stat is not None and stat > test.limit)
    )
    out.status = "drift" if drifted else "ok"
    out.message = _describe(test, stat, p)
    return out


def _run(
    method: str, name: str, ref: Reference, r: _Side, cur: _Side, config: DriftConfig
) -> tuple[float | None, float | None]:
    if method == "ks":
        assert r.values is not None and cur.values is not None
        return stats.ks_2samp(r.values, cur.values, current_sorted=True)
    if method == "wasserstein":
        assert r.values is not None and cur.values is not None
        w = stats.wasserstein(r.values, cur.values)
        # In reference standard deviations, so one threshold suits every feature's units.
        scale = r.std if r.std else float(np.std(r.values)) if len(r.values) else 0.0
        return (w / scale if scale > 0 else (0.0 if w == 0 else math.inf)), None
    ref_counts, cur_counts = _cells(name, ref, r, cur, config)
    if method == "chi2":
        stat, p, _ = stats.chi2_contingency(ref_counts, cur_counts)
        return stat, p
    if method == "psi":
        return stats.psi(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()), None
    return stats.jensen_shannon(ref_counts, cur_counts), None


def _cells(
    name: str, ref: Reference, r: _Side, cur: _Side, config: DriftConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Both sides' counts over the same cells: categories (their union), or reference bins."""
    if r.kind == "numeric":
        edges, ref_counts = ref.bins(name, config.bins)
        assert cur.values is not None
        return ref_counts.astype(np.float64), stats.bin_counts(edges, cur.values).astype(np.float64)
    assert r.categories is not None and cur.categories is not None
    keys = list(r.categories) + [k for k in cur.categories if k not in r.categories]
    return (
        np.array([r.categories.get(k, 0) for k in keys], dtype=np.float64),
        np.array([cur.categories.get(k, 0) for k in keys], dtype=np.float64),
    )


def _coerce(side: _Side, kind: str) -> _Side | None:
    """Current data of another kind than the reference (numbers logged as strings, say),
    converted if every value converts; else None."""
    if kind == "numeric" and side.categories is not None:
        try:
            values = np.repeat(
                np.array([float(k) for k in side.categories], dtype=np.float64),
                list(side.categories.values()),
            )
        except ValueError:
            return None
        values = np.sort(values[np.isfinite(values)])
        return _Side(
            "numeric", side.rows, side.nulls, values=values, std=float(values.std()) if len(values) else None
        )
    if kind == "categorical" and side.values is not None:
        uniq, counts = np.unique(side.values, return_counts=True)
        if len(uniq) > 1000:
            return None
        cats = {_number_text(v): int(c) for v, c in zip(uniq, counts, strict=True)}
        return _Side("categorical", side.rows, side.nulls, categories=cats)
    return None


def _number_text(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _describe(test: DriftTest, stat: float | None, p: float | None) -> str:
    if test.uses_pvalue:
        return f"{test.method} {stat:.4g}, p={p:.3g} (drift below {test.limit:g})"
    return f"{test.method} {stat:.4g} (drift above {test.limit:g})"
