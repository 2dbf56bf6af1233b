"""The drift statistics agree with scipy's implementations, on random samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gyre.monitoring import stats

scipy_stats = pytest.importorskip("scipy.stats")
scipy_distance = pytest.importorskip("scipy.spatial.distance")

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(finite, min_size=1, max_size=200)
# Coarse values make ties, where the CDF-based statistics are easiest to get wrong.
coarse = st.lists(st.integers(-5, 5).map(float), min_size=1, max_size=200)


@settings(max_examples=200, deadline=None)
@given(st.one_of(samples, coarse), st.one_of(samples, coarse))
def test_ks_statistic_is_scipys(a: list[float], b: list[float]) -> None:
    d, p = stats.ks_2samp(np.sort(a), np.asarray(b))
    with np.errstate(all="ignore"):  # scipy's p-value divides by zero for single values
        expected = scipy_stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert 0.0 <= p <= 1.0


@settings(max_examples=100, deadline=None)
@given(
    st.integers(50, 3000),
    st.integers(50, 3000),
    st.floats(0, 0.5),
    st.integers(0, 2**32 - 1),
)
def test_ks_pvalue_is_close_to_the_exact_one(n: int, m: int, shift: float, seed: int) -> None:
    """Stephens' corrected asymptotic p-value stays within 0.05 of scipy's exact one (the
    exact law is a lattice at small equal sizes); it needs no exact computation at scale."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(shift, 1, size=m)
    _, p = stats.ks_2samp(np.sort(a), b)
    assert p == pytest.approx(scipy_stats.ks_2samp(a, b, method="exact").pvalue, abs=0.05)


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 5000), st.integers(1, 2000))
def test_chi2_survival_is_scipys(x: float, dof: int) -> None:
    expected = scipy_stats.chi2.sf(x, dof)
    got = stats.chi2_sf(x, dof)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-300)


counts = st.lists(st.integers(0, 10_000), min_size=2, max_size=30)


@settings(max_examples=200, deadline=None)
@given(counts, st.data())
def test_chi2_contingency_is_scipys_when_no_cell_is_pooled(ref: list[int], data: st.DataObject) -> None:
    cur = data.draw(st.lists(st.integers(0, 10_000), min_size=len(ref), max_size=len(ref)))
    r, c = np.array(ref, float), np.array(cur, float)
    stat, p, dof = stats.chi2_contingency(r, c, min_expected=0.0)
    keep = (r + c) > 0
    if r.sum() == 0 or c.sum() == 0 or keep.sum() < 2:
        assert (stat, p, dof) == (0.0, 1.0, 0)
        return
    e_stat, e_p, e_dof, _ = scipy_stats.chi2_contingency(np.array([r[keep], c[keep]]), correction=False)
    assert dof == e_dof
    assert stat == pytest.approx(e_stat, rel=1e-9, abs=1e-9)
    assert p == pytest.approx(e_p, rel=1e-6, abs=1e-12)


def test_chi2_pools_rare_cells_before_testing() -> None:
    ref = np.array([500, 500, 1, 2, 0])
    cur = np.array([480, 520, 0, 1, 3])
    stat, p, dof = stats.chi2_contingency(ref, cur)
    # Two regular cells plus the pooled rare ones.
    assert dof == 2
    e_stat, e_p, *_ = scipy_stats.chi2_contingency(np.array([[500, 500, 3], [480, 520, 4]]), correction=False)
    assert stat == pytest.approx(e_stat) and p == pytest.approx(e_p)


distributions = st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(distributions, st.data())
def test_jensen_shannon_is_scipys(p: list[float], data: st.DataObject) -> None:
    q = data.draw(st.lists(st.floats(0, 1000, allow_nan=False), min_size=len(p), max_size=len(p)))
    if sum(p) <= 0 or sum(q) <= 0:
        return
    got = stats.jensen_shannon(np.array(p), np.array(q))
    expected = scipy_distance.jensenshannon(p, q, base=2)
    assert got == pytest.approx(expected, abs=1e-7)
    assert 0.0 <= got <= 1.0 + 1e-12


@settings(max_examples=200, deadline=None)
@given(st.one_of(samples, coarse), st.one_of(samples, coarse))
def test_wasserstein_is_scipys(u: list[float], v: list[float]) -> None:
    got = stats.wasserstein(np.sort(u), np.sort(v))
    assert got == pytest.approx(scipy_stats.wasserstein_distance(u, v), rel=1e-9, abs=1e-6)


def test_psi_and_bins() -> None:
    sample = np.arange(1000, dtype=float)
    edges = stats.quantile_edges(sample, 10)
    assert len(edges) == 9
    counts = stats.bin_counts(edges, sample)
    assert counts.sum() == 1000 and counts.min() >= 99
    same = stats.psi(counts / 1000, counts / 1000)
    assert same == 0.0
    assert stats.psi(counts / 1000, stats.bin_counts(edges, sample + 300) / 1000) > 0.2


def test_kolmogorov_sf_limits() -> None:
    assert stats.kolmogorov_sf(0.0) == 1.0
    assert stats.kolmogorov_sf(10.0) < 1e-80
    # The 5% critical value of Kolmogorov's distribution is 1.358.
    assert math.isclose(stats.kolmogorov_sf(1.358), 0.05, abs_tol=1e-3)
