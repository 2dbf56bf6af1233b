"""Profiles, expectations and validation reports, on generated data."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gyre.data.profiles import Profile, Profiler, logical_type, profile
from gyre.data.validation import (
    AllowedValues,
    ColumnType,
    Expectation,
    Expectations,
    MaxNullFraction,
    NoExtraColumns,
    RowChecks,
    ValidationReport,
    ValueRange,
    categorical_psi,
    infer_expectations,
    ks_2samp,
    numeric_psi,
    validate,
)
from gyre.errors import InvalidArgument


def payments(
    n: int, *, seed: int = 0, shift: float = 0.0, countries: tuple[str, ...] = ("US", "DE", "FR")
) -> pa.Table:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3 + shift, 0.5, n)
    amount[rng.random(n) < 0.01] = np.nan
    return pa.table(
        {
            "payment_id": pa.array([f"p{seed}-{i}" for i in range(n)]),
            "amount": pa.array(amount, mask=rng.random(n) < 0.05),
            "items": pa.array(rng.integers(1, 10, n)),
            "country": pa.array(rng.choice(countries, n)).dictionary_encode(),
            "fraud": pa.array(rng.random(n) < 0.02),
            "ts": pa.array(
                np.datetime64("2026-01-01") + rng.integers(0, 86_400_000_000, n).astype("timedelta64[us]"),
                pa.timestamp("us", "UTC"),
            ),
        }
    )


def split(table: pa.Table, sizes: list[int]) -> list[pa.RecordBatch]:
    out, start = [], 0
    for size in sizes:
        out.extend(table.slice(start, size).to_batches())
        start += size
    out.extend(table.slice(start).to_batches())
    return out


# -- profiles --------------------------------------------------------------------------------


def test_profile_columns_and_kinds() -> None:
    table = payments(20_000)
    p = profile(table.to_batches(max_chunksize=3000))
    assert p.rows == 20_000
    assert p.schema == {
        "payment_id": "string",
        "amount": "double",
        "items": "int64",
        "country": "string",
        "fraud": "bool",
        "ts": "timestamp[tz=UTC]",
    }
    amount = p["amount"]
    assert amount.null_count == table.column("amount").null_count
    assert amount.nan_count == pc.sum(pc.is_nan(table.column("amount"))).as_py()
    assert amount.sampled == 20_000 - amount.null_count - amount.nan_count
    assert len(amount.sample) == 2048
    assert p["items"].min == 1 and p["items"].max == 9 and isinstance(p["items"].min, int)
    assert p["ts"].min >= datetime(2026, 1, 1, tzinfo=UTC)
    assert set(p["country"].categories) == {"US", "DE", "FR"}
    assert sum(p["country"].categories.values()) == 20_000
    assert p["fraud"].categories.keys() <= {"true", "false"}
    assert p["payment_id"].high_cardinality and p["payment_id"].categories is None


def test_incremental_profile_equals_one_shot() -> None:
    table = payments(30_000, seed=3)
    once = profile(table)
    streamed = profile(split(table, [1, 999, 7000, 13]))
    for name in table.column_names:
        a, b = once[name], streamed[name]
        assert (a.count, a.null_count, a.nan_count, a.min, a.max) == (
            b.count,
            b.null_count,
            b.nan_count,
            b.min,
            b.max,
        )
        assert a.categories == b.categories
        if a.kind == "numeric":
            assert b.mean == pytest.approx(a.mean, rel=1e-9)
            assert b.variance == pytest.approx(a.variance, rel=1e-9)
            # Different samples of the same data: each sketch's quantiles have the right rank in
            # the data, within sampling error (ranks, not values: "items" is discrete).
            values = table.column(name).drop_null().to_numpy()
            values = values[~np.isnan(values)]
            for sketch in (a, b):
                for q, v in zip([0.1, 0.5, 0.9], sketch.quantiles([0.1, 0.5, 0.9]), strict=True):
                    assert (values < v).mean() - 0.04 <= q <= (values <= v).mean() + 0.04


def test_profile_is_reproducible_and_json_safe() -> None:
    batches = payments(5000).to_batches(max_chunksize=700)
    p = profile(batches, seed=7)
    assert np.array_equal(p["amount"].sample, profile(batches, seed=7)["amount"].sample)
    text = json.dumps(p.to_dict(), allow_nan=False)
    back = Profile.from_dict(json.loads(text))
    assert back.to_dict() == p.to_dict()
    assert back["ts"].min == p["ts"].min
    with pytest.raises(InvalidArgument, match="Not a Gyre profile"):
        Profile.from_dict({"rows": 1})


def test_merge_equals_profile_of_both() -> None:
    a, b = payments(4000, seed=1), payments(6000, seed=2)
    merged = profile(a).merge(profile(b))
    both = profile(pa.concat_tables([a, b]))
    for name in a.column_names:
        m, o = merged[name], both[name]
        assert (m.count, m.null_count, m.min, m.max) == (o.count, o.null_count, o.min, o.max)
        if m.kind == "numeric":
            assert m.mean == pytest.approx(o.mean) and m.variance == pytest.approx(o.variance)
            assert m.sampled == o.sampled and len(m.sample) == 2048
    assert merged["country"].categories == both["country"].categories
    assert merged["payment_id"].high_cardinality


def test_category_cap_marks_high_cardinality() -> None:
    table = pa.table({"code": [f"c{i % 30}" for i in range(1000)]})
    assert profile(table, max_categories=30)["code"].distinct == 30
    capped = profile(table, max_categories=29)["code"]
    assert capped.high_cardinality and capped.categories is None and capped.distinct is None


def test_profiler_observes_a_stream_and_handles_all_null_batches() -> None:
    profiler = Profiler()
    first = pa.record_batch({"x": pa.array([None, None], pa.null())})
    second = pa.record_batch({"x": pa.array([1.5, None])})
    assert list(profiler.observe([first, second])) == [first, second]
    col = profiler.result()["x"]
    assert (col.dtype, col.count, col.null_count, col.min, col.max) == ("double", 4, 3, 1.5, 1.5)
    with pytest.raises(InvalidArgument, match="changed type from double to string"):
        profiler.update(pa.record_batch({"x": pa.array(["a"])}))


# A random table: an int column, a float column with NaN, a string column, all with nulls.
@st.composite
def tables_and_splits(draw: st.DrawFn) -> tuple[pa.Table, list[int]]:
    n = draw(st.integers(min_value=1, max_value=300))
    ints = draw(st.lists(st.one_of(st.none(), st.integers(-(2**40), 2**40)), min_size=n, max_size=n))
    floats = draw(
        st.lists(st.one_of(st.none(), st.floats(allow_infinity=False, width=64)), min_size=n, max_size=n)
    )
    strings = draw(st.lists(st.one_of(st.none(), st.sampled_from("abcdefg")), min_size=n, max_size=n))
    table = pa.table(
        {
            "i": pa.array(ints, pa.int64()),
            "f": pa.array(floats, pa.float64()),
            "s": pa.array(strings, pa.string()),
        }
    )
    sizes = draw(st.lists(st.integers(min_value=0, max_value=n), max_size=6))
    return table, sizes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables_and_splits())
def test_incremental_counts_match_one_shot_computation(case: tuple[pa.Table, list[int]]) -> None:
    table, sizes = case
    p = profile(split(table, sizes))
    assert p.rows == table.num_rows
    for name in ("i", "f", "s"):
        column = table.column(name)
        assert p[name].count == len(column)
        assert p[name].null_count == column.null_count
    ints = table.column("i")
    mm = pc.min_max(ints).as_py()
    assert (p["i"].min, p["i"].max) == (mm["min"], mm["max"])
    floats = table.column("f")
    finite = pc.filter(floats, pc.is_finite(floats))
    fmm = pc.min_max(finite).as_py() if len(finite) else {"min": None, "max": None}
    assert (p["f"].min, p["f"].max) == (fmm["min"], fmm["max"])
    assert p["f"].nan_count == (pc.sum(pc.is_nan(floats)).as_py() or 0)
    counts = {d["values"]: d["counts"] for d in pc.value_counts(table.column("s").drop_null()).to_pylist()}
    assert p["s"].categories == counts


# -- expectations ----------------------------------------------------------------------------


def test_inferred_expectations_and_the_reference_passes_them() -> None:
    table = payments(10_000)
    p = profile(table)
    exps = infer_expectations(p)
    kinds = {(type(e).__name__, getattr(e, "column", None)) for e in exps}
    assert ("ColumnType", "amount") in kinds and ("NoExtraColumns", None) in kinds
    assert ("ValueRange", "amount") in kinds and ("ValueRange", "items") in kinds
    assert ("AllowedValues", "country") in kinds
    assert ("AllowedValues", "payment_id") not in kinds  # high cardinality
    assert ("ValueRange", "ts") not in kinds  # new data is later
    not_null = {e.column for e in exps if isinstance(e, MaxNullFraction) and e.fraction == 0}
    assert "payment_id" in not_null and "amount" not in not_null
    report = validate(p, exps, reference=p, batches=table)
    assert report.ok and not report.warnings, report.table()


def test_expectations_round_trip_and_checks() -> None:
    exps = Expectations(
        [
            ColumnType("amount", "double"),
            NoExtraColumns(("amount", "country")),
            MaxNullFraction("amount", 0.1, severity="warning"),
            ValueRange("amount", min=0.0, max=math.inf),
            AllowedValues("country", ("US", "DE")),
        ]
    )
    data = json.loads(json.dumps(exps.to_list(), allow_nan=False))
    assert Expectations.from_list(data) == exps
    assert [e.column for e in exps.for_column("amount")] == ["amount"] * 3
    with pytest.raises(InvalidArgument, match="Unknown expectation kind 'between'"):
        Expectation.from_dict({"kind": "between", "column": "a"})
    with pytest.raises(InvalidArgument, match="Unknown field"):
        Expectation.from_dict({"kind": "value_range", "column": "a", "min": 1, "low": 0})
    with pytest.raises(InvalidArgument, match="severity"):
        ValueRange("a", min=0, severity="fatal")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="min 5 above max 1"):
        ValueRange("a", min=5, max=1)
    with pytest.raises(InvalidArgument, match="needs min, max or both"):
        ValueRange("a")
    with pytest.raises(InvalidArgument, match="between 0 and 1"):
        MaxNullFraction("a", 1.5)


# -- validation checks -----------------------------------------------------------------------


def check(report: ValidationReport, name: str, column: str) -> dict:
    found = [r for r in report.results if r.check == name and r.column == column]
    assert len(found) == 1, report.table()
    return found[0].to_dict()


def test_schema_changes_are_errors() -> None:
    reference = profile(payments(1000))
    exps = infer_expectations(reference)
    batch = payments(500).drop_columns(["fraud"]).append_column("channel", pa.array(["web"] * 500))
    batch = batch.set_column(2, "items", pc.cast(batch.column("items"), pa.string()))
    report = validate(profile(batch), exps)
    assert not report.ok
    assert check(report, "missing_column", "fraud")["status"] == "error"
    assert check(report, "extra_column", "channel")["status"] == "error"
    retyped = check(report, "column_type", "items")
    assert retyped["details"] == {"expected": "int64", "actual": "string"}
    # The missing column is reported once, not again by its null/range checks.
    assert [r.check for r in report.results if r.column == "fraud"] == ["missing_column"]


def test_null_fraction_past_threshold_with_example_rows() -> None:
    batch = pa.table({"a": [1, None, 3, None, None, 6, 7, 8, 9, 10]})
    exps = [MaxNullFraction("a", 0.2)]
    result = check(validate(profile(batch), exps, batches=batch), "null_fraction", "a")
    assert result["status"] == "error"
    assert result["details"]["fraction"] == 0.3 and result["details"]["example_rows"] == [1, 3, 4]
    assert "3 of 10 values are null (30.00%); expected at most 20.00%" in result["message"]
    assert validate(profile(batch), [MaxNullFraction("a", 0.3)]).ok


def test_values_out_of_range_counted_with_examples() -> None:
    batch = pa.table({"amount": [5.0, -1.0, 7.0, 250.0, None, float("nan"), -3.0]})
    exps = [ValueRange("amount", min=0, max=100)]
    with_rows = check(
        validate(profile(batch), exps, batches=batch.to_batches(max_chunksize=3)), "value_range", "amount"
    )
    assert with_rows["status"] == "error"
    assert with_rows["details"]["count"] == 3  # -1, 250, -3; NaN is not judged by ranges
    assert with_rows["details"]["example_rows"] == [1, 3, 6]
    assert with_rows["details"]["example_values"] == [-1.0, 250.0, -3.0]
    # From the profile alone: the extremes show the failure, the count is unknown.
    alone = check(validate(profile(batch), exps), "value_range", "amount")
    assert alone["status"] == "error" and alone["details"]["count"] is None
    assert "observed -3.0 to 250.0" in alone["message"]
    assert validate(profile(batch.slice(0, 1)), exps, batches=batch.slice(0, 1)).ok


def test_unseen_categories_with_examples() -> None:
    batch = pa.table({"country": ["US", "DE", "XX", "US", None, "YY", "XX"]})
    exps = [AllowedValues("country", ("US", "DE", "FR"), severity="warning")]
    report = validate(profile(batch), exps, batches=batch)
    assert report.ok and len(report.warnings) == 1  # a warning does not reject the batch
    result = check(report, "allowed_values", "country")
    assert result["details"]["count"] == 3
    assert result["details"]["unseen"] == {"XX": 2, "YY": 1}
    assert result["details"]["example_rows"] == [2, 5, 6]
    assert "'XX', 'YY'" in result["message"]
    # Booleans compare as "true"/"false".
    flags = pa.table({"f": [True, False]})
    assert not validate(profile(flags), [AllowedValues("f", ("false",))]).ok


def test_high_cardinality_batch_against_a_small_domain() -> None:
    batch = pa.table({"code": [f"c{i}" for i in range(50)]})
    p = profile(batch, max_categories=10)
    result = check(validate(p, [AllowedValues("code", ("c1",))]), "allowed_values", "code")
    assert result["status"] == "error" and result["details"]["count"] is None
    result = check(validate(p, [AllowedValues("code", ("c1",))], batches=batch), "allowed_values", "code")
    assert result["details"]["count"] == 49


def test_row_checks_in_the_write_pass_equal_a_second_pass() -> None:
    table = payments(5000, seed=4)
    exps = [
        ValueRange("amount", min=10, max=40),
        AllowedValues("country", ("US", "DE")),
        MaxNullFraction("amount", 0),
    ]
    profiler, rows = Profiler(), RowChecks(exps)
    for batch in rows.observe(profiler.observe(table.to_batches(max_chunksize=512))):
        assert batch.num_rows  # stands in for the lake's writer
    streamed = validate(profiler.result(), exps, batches=rows)
    again = validate(profile(table), exps, batches=table)
    assert streamed.to_dict()["results"] == again.to_dict()["results"]


# -- skew ------------------------------------------------------------------------------------


def test_psi_near_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    reference = profile(payments(20_000, seed=1))
    same = validate(profile(payments(5000, seed=2)), [], reference=reference)
    shifted = validate(profile(payments(5000, seed=3, shift=0.5)), [], reference=reference)
    same_amount = check(same, "distribution", "amount")["details"]
    assert same_amount["psi"] < 0.05 and same_amount["ks_pvalue"] > 0.001
    assert check(same, "distribution", "country")["details"]["psi"] < 0.01
    assert same.ok and not same.warnings
    moved = check(shifted, "distribution", "amount")
    assert moved["status"] == "warning" and moved["details"]["psi"] > 0.5
    assert moved["details"]["ks_statistic"] > 0.2 and moved["details"]["ks_pvalue"] < 1e-6
    assert shifted.ok  # skew is a warning unless asked otherwise
    strict = validate(
        profile(payments(5000, seed=3, shift=0.5)), [], reference=reference, skew_severity="error"
    )
    assert not strict.ok


def test_categorical_skew_and_skipped_columns() -> None:
    reference = profile(payments(5000, seed=1))
    new_mix = profile(payments(5000, seed=2, countries=("US", "US", "US", "BR")))
    report = validate(new_mix, [], reference=reference)
    assert check(report, "distribution", "country")["details"]["psi"] > 1
    columns = {r.column for r in report.results}
    assert "payment_id" not in columns  # high cardinality: not compared
    assert "ts" not in columns  # temporal: not compared
    tiny = validate(profile(payments(20, seed=2)), [], reference=reference)
    assert not [r for r in tiny.results if r.check == "distribution"]  # too few values


def test_drift_statistics() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)
    assert numeric_psi(a, b) < 0.05
    assert numeric_psi(a, b + 1) > 0.5
    # A constant reference still separates a shifted constant.
    assert numeric_psi(np.zeros(100), np.full(100, 5.0)) > 1
    assert categorical_psi({"a": 50, "b": 50}, {"a": 50, "b": 50}) == pytest.approx(0)
    d, p = ks_2samp(a, b + 0.5)
    assert d > 0.15 and p < 1e-10
    stats = pytest.importorskip("scipy.stats")
    for x, y in [(a, b), (a, b + 0.1), (a[:300], b[:700] * 1.2)]:
        ours = ks_2samp(x, y)
        theirs = stats.ks_2samp(x, y, method="asymp")
        assert ours[0] == pytest.approx(theirs.statistic)
        assert ours[1] == pytest.approx(theirs.pvalue, abs=0.02)


# -- reports ---------------------------------------------------------------------------------


def test_report_is_json_safe_and_renders_failures_first() -> None:
    reference = profile(payments(2000))
    batch = payments(500, seed=9, countries=("US", "ZZ"))
    report = validate(profile(batch), infer_expectations(reference), reference=reference, batches=batch)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["rows"] == 500 and data["ok"] == report.ok
    assert ValidationReport.from_dict(data).to_dict() == data
    statuses = [row["status"] for row in report.table()]
    assert statuses == sorted(statuses, key={"error": 0, "warning": 1, "ok": 2}.get)
    assert set(report.columns) >= {"amount", "country"}
    assert report.summary()["warnings"] == len(report.warnings)


def test_logical_types() -> None:
    assert logical_type(pa.large_string()) == logical_type(pa.string_view()) == "string"
    assert logical_type(pa.dictionary(pa.int32(), pa.string())) == "string"
    assert logical_type(pa.timestamp("ns")) == logical_type(pa.timestamp("s")) == "timestamp"
    assert logical_type(pa.timestamp("ms", "UTC")) == "timestamp[tz=UTC]"
    assert logical_type(pa.int32()) == "int32"
