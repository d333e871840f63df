"""Effect sizes, and each feature's alarm level calibrated on time-ordered chunks of the reference.

Effect size (0 = same distribution, 1 = disjoint), the same scale for both kinds of feature:

- numeric: the Kolmogorov-Smirnov distance, the largest gap between the two empirical CDFs;
- categorical: the total variation distance, half the L1 distance between the category shares
  (the largest difference in probability that any set of categories can show).

Why calibrate: real traffic arrives in time order and varies inside any period (weather by the
day, weekdays, seasons). A window of consecutive rows differs from a reference spread over
months even when nothing is wrong, so p-values alarm on every large window. The alarm level of a
feature is therefore "how far a stretch of the reference period itself strays from the rest of
it": the reference (kept in time order by training) is cut into overlapping chunks that span
about as much time as one live window, and each chunk's effect size against the rest of the
reference is measured. Sampling noise is then put on the window's own scale:

    level = max(0, largest chunk effect - mean noise at chunk size) + noise(95%) at window size

where the noise figures come from random (time-shuffled) chunks, scaled by
sqrt(1/n + 1/m). A chunk holds `chunk_rows` reference rows: by default the rows that cover the
same time as `window_rows` live rows when traffic runs at the training period's rate of rows
(the reference is a sample of the training rows, so it holds fewer rows per day).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

#: Calendar parts of a timestamp whose cycle is longer than a day.
CALENDAR_PARTS = ("dayofweek", "day", "dayofyear", "month", "quarter")


def ks_distance(a: np.ndarray, b: np.ndarray, b_sorted: bool = False) -> float:
    """Kolmogorov-Smirnov distance between two samples (NaN when either is empty); `b_sorted`
    says `b` is sorted already."""
    if not len(a) or not len(b):
        return float("nan")
    a, b = np.sort(a), (b if b_sorted else np.sort(b))
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def tv_distance(a: np.ndarray, b: np.ndarray, n_codes: int) -> float:
    """Total variation distance between two samples of integer codes in [0, n_codes)."""
    if not len(a) or not len(b):
        return float("nan")
    share_a = np.bincount(a, minlength=n_codes) / len(a)
    share_b = np.bincount(b, minlength=n_codes) / len(b)
    return float(0.5 * np.abs(share_a - share_b).sum())


def effect_size(a: np.ndarray, b: np.ndarray, n_codes: int | None, b_sorted: bool = False) -> float:
    """KS distance for numeric samples (`n_codes` None), TV distance for category codes."""
    if n_codes is None:
        return ks_distance(a, b, b_sorted)
    return tv_distance(a.astype(np.int64), b.astype(np.int64), n_codes)


def default_chunk_rows(window_rows: int, reference_rows: int, period_rows: int | None) -> int:
    """Reference rows that span the time of `window_rows` live rows (see the module docstring).

    `period_rows` is how many training rows the reference was sampled from; None means the
    reference holds every row of its period.
    """
    rate = reference_rows / period_rows if period_rows else 1.0
    return max(1, round(window_rows * min(rate, 1.0)))


def alarm_levels(
    reference: np.ndarray,
    n_codes: Sequence[int | None],
    window_rows: int,
    chunk_rows: int,
    n_null: int = 30,
    seed: int = 0,
) -> np.ndarray:
    """Calibrated effect-size level per column of `reference` (rows in time order).

    `n_codes[j]` is the number of category codes of column j, None for a numeric column. The
    chunk size is kept within [10, rows // 4] so that every chunk has a "rest" to differ from.
    """
    rows = len(reference)
    chunk = int(min(max(chunk_rows, 10), max(rows // 4, 1)))
    if rows < 2 * chunk:
        return np.zeros(len(n_codes))
    starts = range(0, rows - chunk + 1, max(chunk // 4, 1))
    rng = np.random.default_rng(seed)
    null_masks = []
    for _ in range(n_null):
        mask = np.zeros(rows, dtype=bool)
        mask[rng.choice(rows, chunk, replace=False)] = True
        null_masks.append(mask)
    scale = math.sqrt(1 / window_rows + 1 / rows) / math.sqrt(1 / chunk + 1 / (rows - chunk))
    levels = np.zeros(len(n_codes))
    for j, codes in enumerate(n_codes):
        column = reference[:, j]
        in_time = max(
            effect_size(column[s : s + chunk], np.r_[column[:s], column[s + chunk :]], codes)
            for s in starts
        )
        null = np.array([effect_size(column[m], column[~m], codes) for m in null_masks])
        signal = max(in_time - float(null.mean()), 0.0)
        levels[j] = signal + float(np.quantile(null, 0.95)) * scale
    return levels


def calendar_features(
    reference: pd.DataFrame, time_column: str | None, names: Sequence[str], share: float = 0.99
) -> list[str]:
    """Features that are (in at least `share` of reference rows) a function of the time
    column's weekday, day of month, day of year, month or quarter: they drift in any window
    shorter than their cycle, so they are left out of drift checks.

    Only a column of dates has a calendar. The bundle stores years and Unix times as ISO
    datetimes, but a period index (day 1, 2, ...) as its numbers: a numeric column is a period
    index, never nanoseconds since 1970, so it has no calendar features (the reference is in
    time order already; the chunks of `alarm_levels` are runs of its rows)."""
    if not time_column or time_column not in reference:
        return []
    column = reference[time_column]
    if pd.api.types.is_numeric_dtype(column):
        return []
    times = pd.to_datetime(column, errors="coerce")
    if times.isna().mean() > 1 - share:
        return []
    parts = [getattr(times.dt, part) for part in CALENDAR_PARTS]
    # A part with few rows per value "determines" any feature by chance; skip those.
    parts = [key for key in parts if 1 < key.nunique() <= len(reference) / 20]
    found = []
    for name in names:
        values = reference[name].astype(str)
        if values.value_counts(normalize=True).iloc[0] >= share:
            continue  # (nearly) constant: any part would "determine" it
        for key in parts:
            counts = pd.crosstab(key, values)
            if counts.max(axis=1).sum() >= share * len(values):
                found.append(name)
                break
    return found
