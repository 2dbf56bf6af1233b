"""The two-sample statistics drift is measured with, as vectorised numpy over plain arrays.

Pure functions, no I/O and no scipy (the core install does without it); the tests check each
against scipy's implementation:

* :func:`ks_2samp` — Kolmogorov-Smirnov statistic and asymptotic p-value (numeric);
* :func:`chi2_contingency` — Pearson's chi-square test of homogeneity on a 2 x k table of
  counts (categories, or bins of a numeric column), with a p-value from :func:`chi2_sf`;
* :func:`jensen_shannon` — Jensen-Shannon distance (base 2, in [0, 1]) of two distributions;
* :func:`wasserstein` — the 1-Wasserstein (earth mover's) distance of two samples;
* :func:`gyre.data.validation.psi` — the population stability index, reused as is.

Why a 2 x k contingency test and not a goodness-of-fit test against the reference's
frequencies: goodness of fit treats the reference as the exact population. With a reference
as large as the current window that ignores half the sampling noise, and the test flags
undrifted columns far more often than its significance level says (Evidently's chi-square,
measured: about half the columns at 100k rows). The homogeneity test accounts for both
samples, so under no drift it flags a share close to alpha.
"""

from __future__ import annotations

import math

import numpy as np

from gyre.data.validation import psi

__all__ = [
    "bin_counts",
    "chi2_contingency",
    "chi2_sf",
    "jensen_shannon",
    "kolmogorov_sf",
    "ks_2samp",
    "psi",
    "quantile_edges",
    "wasserstein",
]

# Cells whose expected count is below this are pooled (the chi-square approximation needs it).
MIN_EXPECTED = 5.0


def ks_2samp(
    reference_sorted: np.ndarray, current: np.ndarray, *, current_sorted: bool = False
) -> tuple[float, float]:
    """Two-sided two-sample Kolmogorov-Smirnov test.

    Args:
        reference_sorted: the reference sample, sorted ascending (sorted once, reused).
        current: the current sample (any order, unless ``current_sorted``).

    Returns:
        ``(D, p)``: the largest distance between the two empirical CDFs, and its asymptotic
        p-value (Kolmogorov's distribution with Stephens' small-sample correction). With ties
        (a discrete column) the test is conservative: it flags less often than alpha.
    """
    a = reference_sorted
    b = current if current_sorted else np.sort(current)
    n, m = len(a), len(b)
    if not n or not m:
        return 0.0, 1.0
    # The CDFs differ most just at (right of) a data point, so evaluating at every point of
    # both samples finds the supremum.
    grid = np.concatenate([a, b])
    d = float(
        np.max(
            np.abs(np.searchsorted(a, grid, side="right") / n - np.searchsorted(b, grid, side="right") / m)
        )
    )
    en = math.sqrt(n * m / (n + m))
    return d, kolmogorov_sf((en + 0.12 + 0.11 / en) * d)


def kolmogorov_sf(x: float) -> float:
    """P(K > x) for Kolmogorov's limiting distribution."""
    if x < 0.2:
        return 1.0
    j = np.arange(1, 101)
    terms = 2 * ((-1.0) ** (j - 1)) * np.exp(-2 * j * j * x * x)
    return float(min(1.0, max(0.0, terms.sum())))


def chi2_contingency(
    reference_counts: np.ndarray, current_counts: np.ndarray, *, min_expected: float = MIN_EXPECTED
) -> tuple[float, float, int]:
    """Pearson's chi-square test that two samples of counts over the same cells come from one
    distribution (a 2 x k contingency table, no continuity correction).

    Cells where either row's expected count is below ``min_expected`` are pooled into one
    cell first, so rare categories neither dominate the statistic nor break its distribution.

    Returns:
        ``(statistic, p_value, dof)``; ``(0.0, 1.0, 0)`` when fewer than two cells are left.
    """
    r = np.asarray(reference_counts, dtype=np.float64)
    c = np.asarray(current_counts, dtype=np.float64)
    keep = (r + c) > 0
    r, c = r[keep], c[keep]
    nr, nc = r.sum(), c.sum()
    if nr <= 0 or nc <= 0:
        return 0.0, 1.0, 0
    total = r + c
    n = nr + nc
    small = np.minimum(total * nr / n, total * nc / n) < min_expected
    if small.any():
        r = np.append(r[~small], r[small].sum())
        c = np.append(c[~small], c[small].sum())
        total = r + c
    k = len(r)
    if k < 2:
        return 0.0, 1.0, 0
    er, ec = total * nr / n, total * nc / n
    stat = float(np.sum((r - er) ** 2 / er) + np.sum((c - ec) ** 2 / ec))
    return stat, chi2_sf(stat, k - 1), k - 1


def chi2_sf(x: float, dof: int) -> float:
    """P(X > x) for a chi-square variable with ``dof`` degrees of freedom."""
    if dof <= 0:
        return 1.0
    return _gammaincc(dof / 2.0, x / 2.0)


def _gammaincc(a: float, x: float) -> float:
    """The regularised upper incomplete gamma function Q(a, x) (Numerical Recipes' gammq):
    a power series for P below ``a + 1``, a continued fraction (modified Lentz) for Q above."""
    if x <= 0.0:
        return 1.0
    log_prefactor = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        term = total = 1.0 / a
        ap = a
        for _ in range(100_000):
            ap += 1.0
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return min(1.0, max(0.0, 1.0 - total * math.exp(log_prefactor)))
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return min(1.0, max(0.0, math.exp(log_prefactor) * h))


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (the square root of the divergence, base 2) between two
    distributions over the same cells, given as counts or fractions; 0 same, 1 disjoint."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(math.sqrt(max(0.0, (kl_p + kl_q) / 2.0)))


def wasserstein(u_sorted: np.ndarray, v_sorted: np.ndarray) -> float:
    """The 1-Wasserstein distance between two samples, both sorted ascending: the area between
    their empirical CDFs (in the samples' units)."""
    if not len(u_sorted) or not len(v_sorted):
        return 0.0
    values = np.sort(np.concatenate([u_sorted, v_sorted]))
    deltas = np.diff(values)
    u_cdf = np.searchsorted(u_sorted, values[:-1], side="right") / len(u_sorted)
    v_cdf = np.searchsorted(v_sorted, values[:-1], side="right") / len(v_sorted)
    return float(np.sum(np.abs(u_cdf - v_cdf) * deltas))


def quantile_edges(sample: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges of ``bins`` equal-frequency bins of ``sample`` (duplicates dropped), for
    :func:`bin_counts`: bins are ``(-inf, e1], (e1, e2], ..., (ek, inf)``."""
    if not len(sample):
        return np.empty(0)
    return np.unique(np.quantile(sample, np.linspace(0, 1, bins + 1)[1:-1]))


def bin_counts(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many of ``values`` fall in each bin of :func:`quantile_edges`."""
    return np.bincount(np.searchsorted(edges, values, side="left"), minlength=len(edges) + 1)
