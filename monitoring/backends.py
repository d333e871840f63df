"""The per-feature significance tests behind `monitoring.drift`, from one of two backends.

`monitoring.drift_backend` picks:

- ``alibi`` (default): alibi-detect's `TabularDrift` (licence: Business Source License 1.1);
- ``scipy``: the very same tests written against SciPy alone: the two-sample Kolmogorov-Smirnov
  test (asymptotic p-value) for numeric columns, the Chi-squared test of the contingency table
  of category counts (over the categories seen in the reference or the window) for
  categorical ones, then Bonferroni or the Benjamini-Hochberg FDR ladder, as alibi-detect does.
  With it the sidecar never imports alibi-detect (nor the deep-learning stacks it can pull in).

Where the cost goes, and why most columns need no exact test: a column drifts only when its
test is significant *and* its effect size passes its alarm level (`monitoring.drift`). So every
column is first *screened* in one vectorised pass shared by both backends (`Screen`): its effect
size (KS distance against the reference sorted once at fit time; total variation distance from
category counts kept at fit time), its statistic (the KS distance; the Chi-squared statistic of
the same table, Yates-corrected with one degree of freedom as SciPy does) and a cheap p-value
(KS: the Kolmogorov limit distribution, `kstwobign`, within a few per cent of the exact
asymptotic p-value at window sizes; Chi-squared: the same formula). Only the *candidates*, the
columns whose effect size passes their alarm level and whose screening p-value is under
`SCREEN_MARGIN` times the corrected level (so only columns that may drift), then get the
backend's own test, and only their p-values can make a verdict; the other columns report the
screening p-value and statistic. With the FDR correction the ladder depends on every p-value, so
then every column gets the backend's test. Exact p-values (the ones alibi-detect gives) cost
about 1 ms per numeric column (`kstwo.sf`), which would be most of a check at 15 features.

A candidate whose screening p-value is already under the corrected level is significant by
the exact test too, so alibi-detect is not asked either (Bonferroni only): the Kolmogorov
limit's tail bounds the exact asymptotic one from above, `kstwo.sf(d, n) <= kstwobign.sf(d
sqrt(n))` (checked on 400 levels from 1e-300 to 0.3 at every n from 5 to 200,000 tried: the
exact p-value is at most 0.9986 times the limit's; `test_backends`). Such a column reports the
limit's p-value. Only the columns near their significance level then pay for the exact test:
on a window where several columns moved a lot, that is most of the check's cost saved.

Both return p-values and statistics as float32, as alibi-detect does, so verdicts agree.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from monitoring.stats import chi2_contingency, chi2_sf, kolmogorov_sf, ks_isf, ks_sf

Backend = Literal["alibi", "scipy"]

#: A column gets the exact test when its screening p-value is under this many times the
#: corrected level (and its effect passes its alarm level): the Kolmogorov limit differs from
#: the exact asymptotic p-value by a few per cent at window sizes, far less than this factor.
SCREEN_MARGIN = 4.0

#: A limit p-value this far (relatively) under the corrected level decides significance
#: without the exact test: far above float32 rounding, far below the bound's measured slack.
LIMIT_MARGIN = 1e-6


@dataclass(frozen=True)
class TestResult:
    """Per-column p-values, statistics and effect sizes, and the corrected significance level
    (0.0: none of the FDR ladder's rungs was reached, nothing is significant). `exact[j]` says
    whether column j got the backend's own test (a candidate), `significant[j]` whether its
    test is significant after the correction."""

    p_values: np.ndarray
    statistics: np.ndarray
    effects: np.ndarray
    significant: np.ndarray
    exact: np.ndarray
    threshold: float


class Screen:
    """The shared vectorised pass over all columns; see the module docstring.

    `reference` is the encoded reference (numbers, then category codes in [0, n_codes)),
    `n_codes[j]` the number of codes of column j (None: numeric).
    """

    def __init__(
        self,
        reference: np.ndarray,
        n_codes: Sequence[int | None],
        p_value: float,
        correction: Literal["bonferroni", "fdr"],
    ) -> None:
        self.n_codes = list(n_codes)
        self.numeric = [j for j, c in enumerate(self.n_codes) if c is None]
        self.categorical = [j for j, c in enumerate(self.n_codes) if c is not None]
        self.rows = len(reference)
        self.sorted = np.sort(reference[:, self.numeric], axis=0)
        self.counts = {
            j: np.bincount(reference[:, j].astype(np.int64), minlength=int(self.n_codes[j] or 0))
            for j in self.categorical
        }
        self.p_value = p_value
        self.correction = correction

    def screen(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Effect sizes, statistics and screening p-values of every column of window `x`."""
        n = len(self.n_codes)
        effects, statistics, p_values = np.zeros(n), np.zeros(n), np.ones(n)
        rows = len(x)
        if self.numeric and rows:
            window = np.sort(x[:, self.numeric], axis=0)
            for i, j in enumerate(self.numeric):
                effects[j] = _ks(window[:, i], self.sorted[:, i])
            statistics[self.numeric] = effects[self.numeric]
            p_values[self.numeric] = self.screen_p(effects[self.numeric], self.effective(rows))
        dofs = []
        for j in self.categorical:
            ref = self.counts[j]
            new = np.bincount(x[:, j].astype(np.int64), minlength=len(ref))
            effects[j] = 0.5 * np.abs(new / max(rows, 1) - ref / self.rows).sum()
            statistics[j], dof = _chi2(ref, new)
            dofs.append(dof)
        if self.categorical:
            p_values[self.categorical] = chi2_sf(statistics[self.categorical], dofs)
        return effects, statistics, p_values

    def effective(self, rows: int) -> int:
        """The KS test's effective size of the reference against a window of `rows` rows,
        `round(n m / (n + m))` as `ks_2samp` takes it."""
        big, small = max(self.rows, rows), min(self.rows, rows)
        return round(big * small / (big + small))

    @staticmethod
    def screen_p(d: Any, effective: int) -> Any:
        """The screening p-value of KS distance(s) `d` at effective size `effective`."""
        return kolmogorov_sf(np.asarray(d) * math.sqrt(effective))

    def threshold(self, p_values: np.ndarray) -> float:
        """The corrected per-column level: Bonferroni, or the highest rung of the FDR ladder
        reached (0.0 when none is)."""
        n = len(p_values)
        if self.correction == "bonferroni":
            return self.p_value / n
        ladder = self.p_value * np.arange(1, n + 1) / n
        below = np.where(np.sort(p_values) < ladder)[0]
        return float(ladder[below.max()]) if len(below) else 0.0


def _ks(a_sorted: np.ndarray, b_sorted: np.ndarray) -> float:
    """KS distance of two sorted samples (the formula of `calibration.ks_distance`)."""
    points = np.concatenate([a_sorted, b_sorted])
    cdf_a = np.searchsorted(a_sorted, points, side="right") / len(a_sorted)
    cdf_b = np.searchsorted(b_sorted, points, side="right") / len(b_sorted)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def _chi2(ref: np.ndarray, new: np.ndarray) -> tuple[float, int]:
    """Chi-squared statistic and degrees of freedom of the 2 x k table of counts over the
    categories seen in either sample (Yates' correction at one degree of freedom)."""
    size = max(len(ref), len(new))
    table = np.vstack([np.pad(ref, (0, size - len(ref))), np.pad(new, (0, size - len(new)))])
    table = table[:, table.sum(axis=0) > 0].astype(float)
    dof = table.shape[1] - 1
    if dof < 1 or table.sum(axis=1).min() <= 0:
        return 0.0, max(dof, 1)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    gap = table - expected
    if dof == 1:
        gap = np.sign(gap) * np.minimum(np.abs(gap), 0.5)
        gap = table - expected - gap
    return float(np.sum(gap * gap / expected)), dof


@functools.lru_cache(maxsize=64)
def ks_critical(n: int, level: float) -> float:
    """The KS distance whose asymptotic p-value (`kstwo.sf(d, n)`, what `ks_2samp` and
    alibi-detect compute) equals `level`: a distance above it is significant at `level`. Found
    once per effective size and level (an exact p-value costs O(n), a millisecond at n = 1,400;
    in the tail drift tests meet, `monitoring.stats` computes both without `scipy.stats`)."""
    return ks_isf(level, n)


#: Distances this close to the critical one get their exact p-value: `kstwo.isf` (and
#: `stats.ks_isf`, the same root) is exact to about 1e-7 in distance only (its p-value to about
#: 1e-5 relative), far inside this margin.
CRITICAL_TOLERANCE = 1e-4


def ks_significant(d: float, n: int, level: float) -> tuple[bool, float | None]:
    """Whether KS distance `d` at effective size `n` is significant at `level` (the decision of
    `kstwo.sf(d, n) < level` taken as float32, as alibi-detect compares), and the exact p-value
    when it had to be computed (near the critical distance), else None."""
    critical = ks_critical(n, level)
    if abs(d - critical) < CRITICAL_TOLERANCE:
        p = float(np.clip(ks_sf(d, n), 0, 1))
        return bool(np.float32(p) < level), p
    return d > critical, None


class ScipyTests(Screen):
    """The backend's tests with SciPy only; see the module docstring.

    Chi-squared: `chi2_contingency`'s statistic and p-value, as alibi-detect computes them. KS:
    the significance decision is the exact one of `ks_2samp`'s asymptotic p-value
    (`kstwo.sf(d, round(n m / (n + m)))` under the corrected level) made by comparing the
    distance with `ks_critical`; the p-value reported is the screen's (Kolmogorov limit), except
    within `CRITICAL_TOLERANCE` of the critical distance and under FDR (whose ladder needs every
    p-value), where the exact p-value is computed.
    """

    def exact(self, x: np.ndarray, columns: np.ndarray, effects: np.ndarray) -> tuple:
        """(p-values, statistics, significant) of `columns` of window `x`."""
        p_values: list[float] = []
        statistics: list[float] = []
        significant: list[bool] = []
        effective = self.effective(len(x))
        cut = self.threshold(np.ones(len(self.n_codes)))
        for j in columns:
            if self.n_codes[j] is None:
                d = float(effects[j])
                if self.correction == "fdr":  # the ladder needs every exact p-value
                    p = float(np.clip(ks_sf(d, effective), 0, 1))
                    significant.append(bool(np.float32(p) < cut))
                else:
                    decided, exact_p = ks_significant(d, effective, cut)
                    p = float(self.screen_p(d, effective)) if exact_p is None else exact_p
                    significant.append(decided)
                statistics.append(d)
                p_values.append(p)
                continue
            # category codes are small non-negative integers: count them, keep the categories
            # seen in the reference or the window (alibi-detect's union of categories)
            ref, new = self.counts[j], np.bincount(x[:, j].astype(np.int64))
            size = max(len(ref), len(new))
            table = np.vstack(
                [np.pad(ref, (0, size - len(ref))), np.pad(new, (0, size - len(new)))]
            )
            table = table[:, table.sum(axis=0) > 0]
            statistic, p = chi2_contingency(table)
            statistics.append(statistic)
            p_values.append(p)
            significant.append(bool(np.float32(p) < cut))
        return p_values, statistics, significant


class AlibiTests(Screen):
    """alibi-detect's `TabularDrift`, one detector per column (categorical columns as codes),
    so that only the candidates are tested."""

    def __init__(
        self,
        reference: np.ndarray,
        n_codes: Sequence[int | None],
        p_value: float,
        correction: Literal["bonferroni", "fdr"],
    ) -> None:
        super().__init__(reference, n_codes, p_value, correction)
        # alibi-detect imports `transformers` when present, which then logs that no deep
        # learning framework is installed; Occam needs none, so that advisory is muted.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from alibi_detect.cd import TabularDrift

        with warnings.catch_warnings():  # "all features are assumed to be numerical": yes
            warnings.simplefilter("ignore", UserWarning)
            self.detectors: list[Any] = [
                TabularDrift(
                    reference[:, [j]],
                    p_val=p_value,
                    categories_per_feature={0: None} if codes is not None else None,
                )
                for j, codes in enumerate(self.n_codes)
            ]

    def exact(self, x: np.ndarray, columns: np.ndarray, effects: np.ndarray) -> tuple:
        """(p-values, statistics, significant) of `columns` of window `x`, from alibi-detect."""
        p_values: list[float] = []
        statistics: list[float] = []
        significant: list[bool] = []
        cut = self.threshold(np.ones(len(self.n_codes)))
        effective = self.effective(len(x))
        for j in columns:
            if self.n_codes[j] is None and self.correction == "bonferroni":
                # the Kolmogorov limit bounds the exact p-value from above (see the module
                # docstring): a distance whose limit p-value is already under the cut is
                # significant by alibi-detect's exact test too, which is then not needed
                d = float(effects[j])
                limit = float(self.screen_p(d, effective))
                if limit < cut * (1 - LIMIT_MARGIN):
                    p_values.append(limit)
                    statistics.append(d)
                    significant.append(True)
                    continue
            # the per-feature scores `TabularDrift.predict` computes, without its wrapping
            detector = self.detectors[j]
            p, distance = detector.feature_score(detector.x_ref, x[:, [j]])
            p_values.append(p[0])
            statistics.append(distance[0])
            significant.append(bool(np.float32(p[0]) < cut))
        return p_values, statistics, significant


class Tests:
    """A backend's tests on screened windows: `run(x, thresholds)`."""

    def __init__(self, backend: ScipyTests | AlibiTests) -> None:
        self.backend = backend

    def run(self, x: np.ndarray, thresholds: np.ndarray) -> TestResult:
        """Test window `x` (encoded as the reference): screen every column, then give the
        candidates (see the module docstring; every column under FDR) the exact test."""
        b = self.backend
        effects, statistics, p_values = b.screen(x)
        fdr = b.correction == "fdr"
        if fdr:
            exact = np.ones(len(effects), bool)
        else:
            exact = (effects > thresholds) & (p_values < SCREEN_MARGIN * b.threshold(p_values))
        significant = np.zeros(len(effects), bool)
        columns = np.flatnonzero(exact)
        if len(columns):
            p, s, sig = b.exact(x, columns, effects)
            p_values[columns], statistics[columns], significant[columns] = p, s, sig
        p_values = p_values.astype(np.float32)
        cut = b.threshold(p_values)
        if fdr:
            significant = p_values < cut
        else:  # the screen's word for columns that cannot drift (informational)
            significant[~exact] = p_values[~exact] < cut
        return TestResult(
            p_values=p_values,
            statistics=statistics.astype(np.float32),
            effects=effects,
            significant=significant,
            exact=exact,
            threshold=cut,
        )


def make_tests(
    backend: Backend,
    reference: np.ndarray,
    n_codes: Sequence[int | None],
    p_value: float,
    correction: Literal["bonferroni", "fdr"],
) -> Tests:
    """The tests of `backend` fitted on the encoded `reference`."""
    kind = AlibiTests if backend == "alibi" else ScipyTests
    return Tests(kind(reference, n_codes, p_value, correction))
