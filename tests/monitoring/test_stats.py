"""`monitoring.stats` gives what `scipy.stats` gives, to the last bit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from monitoring import stats


def test_distributions_equal_scipy_stats() -> None:
    x = np.r_[0.0, np.linspace(1e-6, 40, 997), 1e6]
    for df in (1, 2, 3, 7, 30):
        assert np.array_equal(stats.chi2_sf(x, df), scipy_stats.chi2.sf(x, df))
    assert np.array_equal(stats.kolmogorov_sf(x), scipy_stats.kstwobign.sf(x))
    for df in (1, 2, 3, 9, 200):
        for q in (0.5, 0.75, 0.9, 0.95, 0.975, 0.999):
            assert stats.t_ppf(q, df) == scipy_stats.t.ppf(q, df)
            assert stats.chi2_isf(q, df) == pytest.approx(scipy_stats.chi2.isf(q, df), rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_ranks_equal_scipy_stats(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 20, 500) / 7 if seed % 2 else rng.normal(size=500)  # ties / none
    assert np.array_equal(stats.rankdata(values), scipy_stats.rankdata(values))
    assert np.array_equal(stats.rankdata(values[:1]), scipy_stats.rankdata(values[:1]))
    with_nan = np.r_[values[:5], np.nan]
    assert np.array_equal(stats.rankdata(with_nan), scipy_stats.rankdata(with_nan), equal_nan=True)


@pytest.mark.parametrize("seed", range(40))
def test_contingency_equals_scipy_stats(seed: int) -> None:
    rng = np.random.default_rng(seed)
    width = int(rng.integers(1, 8))
    table = rng.integers(1, [[5000], [2000]], size=(2, width))
    if seed % 5 == 0:
        table[1] = table[0] * 2  # independent: a statistic near 0
    statistic, p = stats.chi2_contingency(table)
    want = scipy_stats.chi2_contingency(table)
    assert (statistic, p) == (want.statistic, want.pvalue)


@pytest.mark.parametrize("n", [141, 500, 1_429, 5_000, 40_000, 150_000])
def test_ks_tail_equals_kstwo(n: int) -> None:
    distances = np.r_[np.linspace(0.2 / n, 0.99, 25), np.geomspace(1 / n, 0.6, 50)]
    for d in distances:
        assert stats.ks_sf(float(d), n) == float(scipy_stats.kstwo.sf(d, n)), d
    for level in (0.05 / 17, 0.05 / 4, 0.025, 1e-3, 1e-6, 1e-12, 0.05, 0.3):
        # to the last bits at drift-test levels; in far tails the CDF is within 1e-12 of 1 and
        # its root is defined only to about 1e-6 (both searches stop in that flat stretch),
        # still far inside `backends.CRITICAL_TOLERANCE`
        off = abs(stats.ks_isf(level, n) - scipy_stats.kstwo.isf(level, n))
        assert off < (1e-12 if level >= 1e-4 else 1e-5), level


def test_the_ks_tail_needs_no_scipy_stats_import() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from monitoring import stats; "
        "stats.ks_sf(0.05, 1400); stats.ks_isf(0.05 / 17, 1400); stats.ks_isf(0.025, 1429); "
        "stats.ks_sf(0.03, 1429); stats.ks_isf(0.05, 100_000); "
        "stats.rankdata([2, 1, 2]); stats.chi2_contingency([[3, 4], [5, 9]]); "
        "stats.t_ppf(0.95, 3); print('scipy.stats' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
