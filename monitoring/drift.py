"""Per-feature drift: significance tests, an effect size, and a calibrated alarm level.

`DriftDetector` runs the per-column tests of `monitoring.backends` (alibi-detect's
`TabularDrift` by default, or the same tests in SciPy: Kolmogorov-Smirnov for numeric columns,
Chi-squared for categorical ones, with the Bonferroni or FDR correction across columns) and
returns a `DriftResult` keyed by column *name*. A column drifts only when both hold:

- its test is significant after the correction (the change is real), and
- its effect size exceeds its alarm level: `margin` times the level calibrated on time-ordered
  chunks of the reference (`monitoring.calibration`), and at least `min_effect_size`
  (the change is larger than the reference period's own ups and downs).

Encoding: a missing number counts as a value below every number (so a change in the missing
share is a change in distribution); categories become codes, every category the reference does
not hold sharing one "unseen" code. The same detector serves the model's outputs (predicted
class, confidence) for prediction drift.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from monitoring.backends import Backend, make_tests
from monitoring.calibration import alarm_levels, default_chunk_rows
from occam.schema import MISSING_CATEGORY

log = logging.getLogger(__name__)

#: What a missing number becomes for the tests: below every real value, still finite.
MISSING_NUMBER = -1e300


def _numbers(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """`values` as floats, NaN for None and for what is not a number."""
    try:
        return np.array(values, dtype=float)
    except (TypeError, ValueError):
        pass
    column = np.array(values, dtype=object)
    column[np.equal(column, np.array(None))] = np.nan  # the usual case: numbers and missing ones
    try:
        return column.astype(float)
    except (TypeError, ValueError):
        coerced = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce")
        return coerced.to_numpy(dtype=float)


def _category_text(value: object) -> str:
    """A categorical value as `FeatureSchema.coerce` writes it."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return MISSING_CATEGORY
    return str(value)


@dataclass(frozen=True)
class FeatureDrift:
    """One column's drift in one window.

    `p_value`: the test's p-value (KS or Chi2), before correction; `statistic`: the test
    statistic (KS distance, or Chi2); `effect_size`: KS or total variation distance in [0, 1];
    `threshold`: the alarm level on the effect size; `drifted`: significant and over the level.
    """

    kind: Literal["numeric", "categorical"]
    p_value: float
    statistic: float
    effect_size: float
    threshold: float
    significant: bool
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """Drift of every checked column in one window of `rows` rows, keyed by column name.

    `p_value_threshold` is the per-column significance level after the correction.
    """

    features: dict[str, FeatureDrift]
    rows: int
    p_value_threshold: float

    @property
    def drifted(self) -> list[str]:
        """Names of the drifted columns."""
        return [name for name, f in self.features.items() if f.drifted]

    @property
    def drifted_share(self) -> float:
        """Share of checked columns that drifted (0 when none is checked)."""
        return len(self.drifted) / len(self.features) if self.features else 0.0


class DriftDetector:
    """Drift of numeric and categorical columns against a reference; see the module docstring.

    Fitted state: `names_`, `categories_` (reference categories per categorical column),
    `levels_` (calibrated levels), `thresholds_` (the alarm levels used: margin, floor applied),
    `chunk_rows_`.
    """

    def __init__(
        self,
        numeric: Sequence[str],
        categorical: Sequence[str],
        *,
        p_value: float = 0.05,
        correction: Literal["bonferroni", "fdr"] = "bonferroni",
        margin: float = 1.0,
        min_effect_size: float = 0.0,
        seed: int = 0,
        backend: Backend = "alibi",
    ) -> None:
        self.numeric = numeric
        self.categorical = categorical
        self.p_value = p_value
        self.correction = correction
        self.margin = margin
        self.min_effect_size = min_effect_size
        self.seed = seed
        self.backend = backend

    def fit(
        self,
        reference: pd.DataFrame,
        window_rows: int,
        chunk_rows: int | None = None,
        period_rows: int | None = None,
    ) -> DriftDetector:
        """Learn categories, calibrate alarm levels for windows of `window_rows` rows, and set up
        the tests. `reference` must be in time order; `chunk_rows` overrides the calibration
        chunk size, else it follows from `period_rows` (see `calibration.default_chunk_rows`)."""
        self.names_ = [*self.numeric, *self.categorical]
        self.categories_ = {
            name: sorted(reference[name].astype(str).unique()) for name in self.categorical
        }
        self._codes = {
            name: {c: i for i, c in enumerate(cats)} for name, cats in self.categories_.items()
        }
        self._n_codes: list[int | None] = [
            *([None] * len(self.numeric)),
            *(len(self.categories_[n]) + 1 for n in self.categorical),
        ]
        encoded = self.encode(reference)
        self.chunk_rows_ = chunk_rows or default_chunk_rows(
            window_rows, len(reference), period_rows
        )
        self.levels_ = alarm_levels(
            encoded, self._n_codes, window_rows, self.chunk_rows_, seed=self.seed
        )
        self.thresholds_ = np.maximum(self.levels_ * self.margin, self.min_effect_size)
        # the reference sorted and counted once: a window then costs one sort of its own
        self.tests_ = make_tests(
            self.backend, encoded, self._n_codes, self.p_value, self.correction
        )
        return self

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """The columns as one float matrix: numbers (missing -> `MISSING_NUMBER`), then codes."""
        columns = []
        for name in self.numeric:
            values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
            columns.append(np.where(np.isnan(values), MISSING_NUMBER, values))
        for name in self.categorical:
            codes = self._codes[name]
            unseen = len(codes)
            values = frame[name].astype(str).map(codes).fillna(unseen)
            columns.append(values.to_numpy(dtype=float))
        return np.column_stack(columns) if columns else np.empty((len(frame), 0))

    def encode_records(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """`encode` straight from feature mappings (one per row, as logged), without building a
        frame: numbers as floats (missing or not a number -> `MISSING_NUMBER`), categories as
        `FeatureSchema.coerce` turns them into text (missing -> `MISSING_CATEGORY`), then codes.
        A feature a row lacks is missing."""
        names = self.names_
        if not names:
            return np.empty((len(rows), 0))
        columns = [[r.get(name) for r in rows] for name in names]
        return self.encode_columns(columns)

    def encode_columns(self, columns: Sequence[Sequence[Any] | np.ndarray]) -> np.ndarray:
        """`encode_records` of columns already apart: one sequence of values per checked
        column, in the order of `names_`."""
        rows = len(columns[0]) if len(columns) else 0
        x = np.empty((rows, len(self.names_)))
        for j in range(len(self.numeric)):
            column = _numbers(columns[j])
            x[:, j] = np.where(np.isnan(column), MISSING_NUMBER, column)
        for j, name in enumerate(self.categorical, start=len(self.numeric)):
            codes = self._codes[name]
            unseen = len(codes)
            found = np.fromiter(map(codes.get, columns[j], itertools.repeat(-1)), float, rows)
            for i in np.flatnonzero(found < 0):  # not a known category's text as such
                found[i] = codes.get(_category_text(columns[j][i]), unseen)
            x[:, j] = found
        return x

    def check(self, frame: pd.DataFrame) -> DriftResult:
        """Test every column of `frame` (same columns as the reference) against the reference."""
        if not self.names_ or not len(frame):
            return DriftResult(features={}, rows=len(frame), p_value_threshold=self.p_value)
        return self.check_encoded(self.encode(frame))

    def check_encoded(self, x: np.ndarray) -> DriftResult:
        """`check` of a window already encoded (`encode`, `encode_records`)."""
        if not self.names_ or not len(x):
            return DriftResult(features={}, rows=len(x), p_value_threshold=self.p_value)
        tested = self.tests_.run(x, self.thresholds_)
        cut = tested.threshold  # 0.0: FDR without a discovery, nothing is significant
        features = {}
        for j, name in enumerate(self.names_):
            p_value = float(tested.p_values[j])
            significant = bool(tested.significant[j])
            effect = float(tested.effects[j])
            threshold = float(self.thresholds_[j])
            features[name] = FeatureDrift(
                kind="numeric" if self._n_codes[j] is None else "categorical",
                p_value=p_value,
                statistic=float(tested.statistics[j]),
                effect_size=effect,
                threshold=threshold,
                significant=significant,
                drifted=significant and effect > threshold,
            )
        return DriftResult(
            features=features,
            rows=len(x),
            p_value_threshold=cut if cut > 0 else self._corrected_level(),
        )

    def _corrected_level(self) -> float:
        # Bonferroni's level; for FDR without discoveries, the level the smallest p-value
        # would have had to beat (the first rung of the Benjamini-Hochberg ladder) is the same.
        return self.p_value / max(len(self.names_), 1)
