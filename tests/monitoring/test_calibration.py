"""Calendar features of the reference's time column: dates have a calendar, a period index
(numbers, as the bundle stores it) has none and is never read as nanoseconds since 1970."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.calibration import calendar_features

ROWS = 3000


@pytest.mark.parametrize("dtype", [np.int64, np.float64])
def test_a_period_index_has_no_calendar_features(dtype: type) -> None:
    """Period numbers spaced one day apart when misread as nanoseconds: a feature that follows
    that misread weekday is data, not a calendar feature, and stays in the drift checks."""
    day_ns = 86_400 * 10**9
    period: np.ndarray = (np.arange(ROWS) // 8 * day_ns).astype(dtype)
    misread = pd.to_datetime(pd.Series(period))
    frame = pd.DataFrame(
        {
            "period": period,
            "weekday": misread.dt.day_name(),
            "temp": np.random.default_rng(0).normal(size=ROWS),
        }
    )
    assert calendar_features(frame, "period", ["weekday", "temp"]) == []
    # the same feature beside the same days written as dates is a calendar feature
    dated = frame.assign(period=misread.dt.strftime("%Y-%m-%dT%H:%M:%S"))
    assert calendar_features(dated, "period", ["weekday", "temp"]) == ["weekday"]


def test_day_numbers_read_back_from_the_reference_csv_have_none(tmp_path: Path) -> None:
    """Day numbers 1, 2, ... as the bundle's reference CSV gives them back: a feature with a
    seven-day cycle in them is not taken for a weekday (the numbers are not dates)."""
    days = np.arange(ROWS) // 10 + 1
    pd.DataFrame({"day": days, "weekly": days % 7}).to_csv(tmp_path / "reference.csv", index=False)
    frame = pd.read_csv(tmp_path / "reference.csv")
    assert pd.api.types.is_integer_dtype(frame["day"])
    assert calendar_features(frame, "day", ["weekly"]) == []
