"""The few distributions and rank statistics the monitor needs, from `scipy.special` and numpy.

`scipy.stats` costs about 57 MiB of resident memory to import (`scipy.special` about 11): the
monitor's own code needs only what is here, computed by the very functions `scipy.stats` calls
for these distributions (`chi2.sf` is `chdtrc`, `t.ppf` is `stdtrit`, `kstwobign.sf` is
`kolmogorov`; the exact KS distribution `kstwo` is `smirnov` or SciPy's Pelz-Good series where
drift tests meet it), so values are the same (tests/monitoring/test_stats.py compares them with
`scipy.stats`). Outside that range `kstwo` itself is imported, and the ``alibi`` backend
imports `scipy.stats` with alibi-detect.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def chi2_sf(x: Any, df: Any) -> Any:
    """Survival function of the Chi-squared distribution (`scipy.stats.chi2.sf` for x >= 0)."""
    from scipy.special import chdtrc

    return chdtrc(df, x)


def chi2_isf(p: float, df: float) -> float:
    """Inverse survival function of the Chi-squared distribution (`scipy.stats.chi2.isf`: the x
    exceeded with probability `p`)."""
    from scipy.special import chdtri

    return float(chdtri(df, p))


def t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t distribution (`scipy.stats.t.ppf` for q in (0, 1))."""
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


def kolmogorov_sf(x: Any) -> Any:
    """Survival function of the Kolmogorov limit distribution (`scipy.stats.kstwobign.sf` for
    x >= 0)."""
    from scipy.special import kolmogorov

    return kolmogorov(x)


def rankdata(a: Any) -> np.ndarray:
    """Ranks of the values of 1-D `a`, ties given their average rank, from 1
    (`scipy.stats.rankdata`, method "average"; all NaN when a value is NaN, as it gives)."""
    values = np.asarray(a, dtype=float).ravel()
    if np.isnan(values).any():
        return np.full(values.shape, np.nan)
    order = np.argsort(values, kind="mergesort")
    inverse = np.empty(order.size, dtype=np.intp)
    inverse[order] = np.arange(order.size, dtype=np.intp)
    ordered = values[order]
    new = np.r_[True, ordered[1:] != ordered[:-1]]
    dense = new.cumsum()[inverse]
    ends = np.r_[np.flatnonzero(new), len(new)]
    return 0.5 * (ends[dense] + ends[dense - 1] + 1)


def chi2_contingency(observed: np.ndarray) -> tuple[float, float]:
    """Statistic and p-value of the Chi-squared test of independence of a 2-D table of counts
    with no empty row or column (`scipy.stats.chi2_contingency`, Yates' correction at one
    degree of freedom, the same arithmetic)."""
    table = np.asarray(observed, dtype=np.float64)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    dof = expected.size - sum(expected.shape) + expected.ndim - 1
    if dof == 0:
        return 0.0, 1.0
    counts = np.asarray(observed)
    if dof == 1:
        diff = expected - counts
        counts = counts + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    statistic = float(np.sum((counts - expected) ** 2 / expected))
    return statistic, float(chi2_sf(statistic, dof))


def ks_sf(d: float, n: int) -> float:
    """The exact survival function of the two-sided one-sample Kolmogorov-Smirnov statistic,
    `scipy.stats.kstwo.sf(d, n)`. Where drift tests meet it (n > 140, n d^1.5 > 1.4, d < 0.5)
    SciPy computes it as twice the one-sided `smirnov` (n d^2 >= 2.2) or as one minus the
    Pelz-Good series (below): the same computations here, without importing `scipy.stats`;
    anywhere else `kstwo` itself is asked."""
    branch = _ks_branch(d, n)
    if branch == "zero":
        return 0.0
    if branch == "smirnov":
        from scipy.special import smirnov

        return float(np.clip(2 * smirnov(n, d), 0.0, 1.0))
    if branch == "pelz-good":
        return float(np.clip(1.0 - _pelz_good_cdf(n, d), 0.0, 1.0))
    from scipy.stats import kstwo

    return float(kstwo.sf(d, n))


def _ks_branch(x: float, n: int) -> str | None:
    """Which computation `scipy.stats._ksstats._kolmogn(n, x, cdf=False)` uses, when it is one
    done here (None: another)."""
    t = n * x
    if n <= 140 or not 1.0 < t < n - 1 or not 0.0 < x < 0.5:
        return None
    nxsquared = t * x
    if nxsquared >= 370.0:
        return "zero"
    if nxsquared >= 2.2:
        return "smirnov"
    if n <= 100000 and n * x**1.5 <= 1.4:
        return None  # Durbin's matrix algorithm
    return "pelz-good"


_PI_SQUARED, _PI_FOUR, _PI_SIX = np.pi**2, np.pi**4, np.pi**6
_SQRT2PI, _SQRT3, _MIN_LOG = np.sqrt(2 * np.pi), np.sqrt(3), -708


def _pelz_good_cdf(n: int, x: float) -> Any:
    """The Pelz-Good approximation of Prob(D_n <= x), 0 < x < 1: SciPy's
    `scipy.stats._ksstats._kolmogn_PelzGood` (BSD-3-Clause, Copyright (c) 2001-2002 Enthought,
    Inc. 2003, SciPy Developers), line for line, so that the values are the same."""
    z = np.sqrt(n) * x
    zsquared, zthree, zfour, zsix = z**2, z**3, z**4, z**6
    qlog = -_PI_SQUARED / 8 / zsquared
    if qlog < _MIN_LOG:
        return 0.0
    q = np.exp(qlog)
    k1a = -zsquared
    k1b = _PI_SQUARED / 4
    k2a = 6 * zsix + 2 * zfour
    k2b = (2 * zfour - 5 * zsquared) * _PI_SQUARED / 4
    k2c = _PI_FOUR * (1 - 2 * zsquared) / 16
    k3d = _PI_SIX * (5 - 30 * zsquared) / 64
    k3c = _PI_FOUR * (-60 * zsquared + 212 * zfour) / 16
    k3b = _PI_SQUARED * (135 * zfour - 96 * zsix) / 4
    k3a = -30 * zsix - 90 * z**8
    terms = np.zeros(4)
    maxk = int(np.ceil(16 * z / np.pi))
    for k in range(maxk, 0, -1):  # Horner's scheme for sum c_i q^(i^2), odd integers
        m = 2 * k - 1
        msquared, mfour, msix = m**2, m**4, m**6
        qpower = np.power(q, 8 * k)
        coeffs = np.array(
            [
                1.0,
                k1a + k1b * msquared,
                k2a + k2b * msquared + k2c * mfour,
                k3a + k3b * msquared + k3c * mfour + k3d * msix,
            ]
        )
        terms *= qpower
        terms += coeffs
    terms *= q
    terms *= _SQRT2PI
    terms /= np.array([z, 6 * zfour, 72 * z**7, 6480 * z**10])
    q = np.exp(-_PI_SQUARED / 2 / zsquared)
    ks = np.arange(maxk, 0, -1)
    ksquared = ks**2
    sqrt3z = _SQRT3 * z
    kspi = np.pi * ks
    qpwers = q**ksquared
    k2extra = np.sum(ksquared * qpwers)
    k2extra *= _PI_SQUARED * _SQRT2PI / (-36 * zthree)
    terms[2] += k2extra
    k3extra = np.sum((sqrt3z + kspi) * (sqrt3z - kspi) * ksquared * qpwers)
    k3extra *= _PI_SQUARED * _SQRT2PI / (216 * zsix)
    terms[3] += k3extra
    powers_of_n = np.power(n * 1.0, np.arange(len(terms)) / 2.0)
    terms /= powers_of_n
    return sum(terms)


def ks_isf(level: float, n: int) -> float:
    """`scipy.stats.kstwo.isf(level, n)`: SciPy finds the d where the CDF reaches 1 - `level`
    (Brent's method to 1e-14); where that CDF is its Pelz-Good series (n > 140, n d^1.5 > 1.4,
    n d^2 < 18, d < 0.5: the levels of drift tests) this bisects the same series to the last
    bits, without importing `scipy.stats`; elsewhere `kstwo.isf` itself is asked. (The root
    of the CDF, not of `ks_sf`, which is another series there: they differ by up to 5e-7 in
    distance at drift-test levels, as in SciPy.)"""
    target = 1.0 - level
    low = max((1.4 / n) ** (2 / 3), 1.0 / n) * (1 + 1e-9) if n <= 100000 else 1.0 / n
    high = min(math.sqrt(18.0 / n), 0.5) * (1 - 1e-9)
    inside = n > 140 and low < high and n * high < n - 1
    if not (inside and 0.0 < level < 1.0):
        from scipy.stats import kstwo

        return float(kstwo.isf(level, n))
    from scipy.special import kolmogi

    guess = float(kolmogi(level)) / math.sqrt(n)  # the Kolmogorov limit's root: near this one
    low, high = max(low, 0.8 * guess), min(high, 1.1 * guess)
    f_low, f_high = _pelz_good_cdf(n, low) - target, _pelz_good_cdf(n, high) - target
    if low < high and f_low < 0 < f_high:
        side = 0
        for _ in range(200):  # regula falsi, Illinois variant: the bracket shrinks on both sides
            middle = (low * f_high - high * f_low) / (f_high - f_low)
            if not low < middle < high:
                middle = 0.5 * (low + high)
                if middle in (low, high):
                    break
            f_middle = _pelz_good_cdf(n, middle) - target
            if f_middle < 0:
                low, f_low = middle, f_middle
                f_high = f_high / 2 if side == -1 else f_high
                side = -1
            elif f_middle > 0:
                high, f_high = middle, f_middle
                f_low = f_low / 2 if side == 1 else f_low
                side = 1
            else:
                return float(middle)
            if high - low <= 1e-15 * high:
                break
        return float(0.5 * (low + high))
    from scipy.stats import kstwo

    return float(kstwo.isf(level, n))
