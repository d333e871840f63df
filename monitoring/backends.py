"""The per-feature significance tests behind `monitoring.drift`, from one of two backends.

`monitoring.drift_backend` picks:

- ``alibi`` (default): alibi-detect's `TabularDrift` (licence: Business Source License 1.1);
- ``scipy``: the very same tests written against SciPy alone: the two-sample Kolmogorov-Smirnov
  test (asymptotic p-value) for numeric columns, the Chi-squared test of the contingency table
  of category counts (over the categories seen in the reference or the window) for
  categorical ones, then Bonferroni or the Benjamini-Hochberg FDR ladder, as alibi-detect does.
  With it the sidecar never imports alibi-detect (nor the deep-learning stacks it can pull in).

Both return p-values and statistics as float32, as alibi-detect does, so verdicts agree.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

Backend = Literal["alibi", "scipy"]


@dataclass(frozen=True)
class TestResult:
    """Per-column p-values and statistics, and the corrected significance level (0.0: none of
    the FDR ladder's rungs was reached, nothing is significant)."""

    p_values: np.ndarray
    statistics: np.ndarray
    threshold: float


class Tests(Protocol):
    def run(self, x: np.ndarray) -> TestResult: ...


class AlibiTests:
    """alibi-detect's `TabularDrift` on an encoded reference (categorical columns as codes)."""

    def __init__(
        self,
        reference: np.ndarray,
        categorical: Sequence[int],
        p_value: float,
        correction: Literal["bonferroni", "fdr"],
    ) -> None:
        # alibi-detect imports `transformers` when present, which then logs that no deep
        # learning framework is installed; Occam needs none, so that advisory is muted.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from alibi_detect.cd import TabularDrift

        self.detector: Any = TabularDrift(
            reference,
            p_val=p_value,
            categories_per_feature={i: None for i in categorical},
            correction=correction,
        )

    def run(self, x: np.ndarray) -> TestResult:
        out = self.detector.predict(x, drift_type="batch", return_p_val=True, return_distance=True)[
            "data"
        ]
        cut = out["threshold"]
        return TestResult(
            p_values=np.asarray(out["p_val"], dtype=np.float32),
            statistics=np.asarray(out["distance"], dtype=np.float32),
            threshold=float(cut) if np.ndim(cut) == 0 else 0.0,
        )


class ScipyTests:
    """The same tests with SciPy only; see the module docstring.

    The KS statistic is computed as `scipy.stats.ks_2samp` does (largest gap between the two
    empirical CDFs) against the reference sorted once, and its asymptotic two-sided p-value is
    `ks_2samp`'s own formula (`kstwo.sf(d, round(n m / (n + m)))`), for all columns in one call.
    """

    def __init__(
        self,
        reference: np.ndarray,
        categorical: Sequence[int],
        p_value: float,
        correction: Literal["bonferroni", "fdr"],
    ) -> None:
        n = reference.shape[1]
        self.categorical = [f for f in range(n) if f in set(categorical)]
        self.numeric = [f for f in range(n) if f not in set(categorical)]
        self.sorted = np.sort(reference[:, self.numeric], axis=0)
        self.reference = reference
        self.counts = {f: np.bincount(reference[:, f].astype(np.int64)) for f in self.categorical}
        self.p_value = p_value
        self.correction = correction

    def run(self, x: np.ndarray) -> TestResult:
        from scipy.stats import chi2_contingency, kstwo

        n = self.reference.shape[1]
        p_values = np.zeros(n, dtype=np.float32)
        statistics = np.zeros(n, dtype=np.float32)
        if self.numeric:
            ref_rows, rows = len(self.sorted), len(x)
            window = np.sort(x[:, self.numeric], axis=0)
            gaps = np.empty(len(self.numeric))
            for j in range(len(self.numeric)):
                points = np.concatenate([self.sorted[:, j], window[:, j]])
                cdf_ref = np.searchsorted(self.sorted[:, j], points, side="right") / ref_rows
                cdf_new = np.searchsorted(window[:, j], points, side="right") / rows
                gaps[j] = np.max(np.abs(cdf_ref - cdf_new))
            big, small = max(ref_rows, rows), min(ref_rows, rows)
            effective = np.round(big * small / (big + small))
            statistics[self.numeric] = gaps
            p_values[self.numeric] = np.clip(kstwo.sf(gaps, effective), 0, 1)
        for f in self.categorical:
            # category codes are small non-negative integers: count them, keep the categories
            # seen in the reference or the window (alibi-detect's union of categories)
            new = np.bincount(x[:, f].astype(np.int64))
            ref = self.counts[f]
            size = max(len(ref), len(new))
            table = np.vstack(
                [np.pad(ref, (0, size - len(ref))), np.pad(new, (0, size - len(new)))]
            )
            table = table[:, table.sum(axis=0) > 0]
            statistics[f], p_values[f], _, _ = chi2_contingency(table)
        return TestResult(p_values, statistics, self._threshold(p_values))

    def _threshold(self, p_values: np.ndarray) -> float:
        n = len(p_values)
        if self.correction == "bonferroni":
            return self.p_value / n
        ladder = self.p_value * np.arange(1, n + 1) / n
        below = np.where(np.sort(p_values) < ladder)[0]
        return float(ladder[below.max()]) if len(below) else 0.0


def make_tests(
    backend: Backend,
    reference: np.ndarray,
    categorical: Sequence[int],
    p_value: float,
    correction: Literal["bonferroni", "fdr"],
) -> Tests:
    """The tests of `backend` fitted on the encoded `reference`."""
    kind = AlibiTests if backend == "alibi" else ScipyTests
    return kind(reference, categorical, p_value, correction)
