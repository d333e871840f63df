"""Loading the dataset, deciding the features, and splitting it in time."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from occam.config import OccamConfig
from occam.datafile import DataFileError, read_table
from occam.timecol import TimeAxis, TimeColumnError, read_time


class DataError(ValueError):
    """A dataset that cannot be trained on; the message names the columns and the fix."""


@dataclass(frozen=True)
class Features:
    numeric: list[str]
    categorical: list[str]

    @property
    def names(self) -> list[str]:
        return [*self.numeric, *self.categorical]


def load_frame(path: Path) -> pd.DataFrame:
    """Read a CSV (optionally compressed) or Parquet file (`occam.datafile.read_table`)."""
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} not found; fix `data.path` in the config")
    try:
        return read_table(path)
    except DataFileError as exc:
        raise DataError(str(exc)) from None


def fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 over the frame's values and column names: same data, same fingerprint."""
    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
    return hashlib.sha256(hashed + "|".join(map(str, frame.columns)).encode()).hexdigest()


def choose_features(frame: pd.DataFrame, config: OccamConfig) -> Features:
    """Configured feature lists, or all other columns split by dtype when none are given."""
    data = config.data
    if data.numeric is not None or data.categorical is not None:
        return Features(numeric=list(data.numeric or []), categorical=list(data.categorical or []))
    skip = {data.target, data.time_column, *data.exclude, *config.labels.annotators}
    columns = [c for c in frame.columns if c not in skip]
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(frame[c])]
    categorical = [c for c in columns if c not in numeric]
    return Features(numeric=numeric, categorical=categorical)


@dataclass(frozen=True)
class Split:
    """Training rows (for the search), held-out test rows, and the untouched production period,
    each in time order when there is a time column. `axis` is the time column as read (None
    without one); `*_times` are each part's times in its row order."""

    train: pd.DataFrame
    test: pd.DataFrame
    production: pd.DataFrame
    axis: TimeAxis | None = None
    train_times: pd.Series | None = None
    test_times: pd.Series | None = None
    production_times: pd.Series | None = None

    def period(self, part: str) -> list[str] | None:
        """[first, last] time of `part` ('train', 'test' or 'production') as the user writes
        them; None without a time column or rows."""
        times = getattr(self, f"{part}_times")
        if self.axis is None or times is None or times.dropna().empty:
            return None
        seen = times.dropna()
        return [self.axis.describe(seen.min()), self.axis.describe(seen.max())]


def time_axis(frame: pd.DataFrame, config: OccamConfig) -> TimeAxis | None:
    """The configured time column read in `data.time_format`; None without one. Raises
    `DataError` naming the column when it cannot be read."""
    column = config.data.time_column
    if column is None:
        return None
    try:
        return read_time(frame[column], column, config.data.time_format)
    except TimeColumnError as exc:
        raise DataError(str(exc)) from None


def split_frame(frame: pd.DataFrame, config: OccamConfig) -> Split:
    """Cut off the production period by time, then hold out the test rows of the rest.

    Split points take the forms of `occam.timecol` (a date, a number in the column's units, a
    share "last 30%"). Rows without a readable time are left out of every part when the data
    has a time column. Raises `DataError` when a part is empty (or the training period has fewer
    than 50 rows), naming the column, the times seen and the fix.
    """
    split = config.data.split
    axis = time_axis(frame, config)
    if axis is None:
        for key, value in (
            ("production_start", split.production_start),
            ("test_start", split.test_start),
        ):
            if value is not None:
                raise DataError(
                    f"`data.split.{key}` needs `data.time_column`: name the column holding each "
                    "row's time"
                )
        train, test = _hold_out(frame, config)
        return Split(train=frame.iloc[train], test=frame.iloc[test], production=frame.iloc[0:0])
    times = axis.values
    readable = times.notna().to_numpy()
    frame, times = frame[readable], times[readable]
    order = np.argsort(times.to_numpy(), kind="stable")
    frame, times = frame.iloc[order], times.iloc[order]
    if split.production_start is not None:
        (period, period_times), (production, production_times) = _cut(
            axis, frame, times, split.production_start, "production_start", "production"
        )
    else:
        period, production = frame, frame.iloc[0:0]
        period_times, production_times = times, times.iloc[0:0]
    if len(period) < 50:
        raise DataError(
            f"only {len(period)} rows fall before data.split.production_start="
            f"{split.production_start!r} (`{axis.column}`: {axis.span(times)}); move it later"
        )
    if split.test_start is not None:
        (train, train_times), (test, test_times) = _cut(
            axis, period, period_times, split.test_start, "test_start", "test"
        )
    else:
        early, late = _hold_out(period, config)
        train, test = period.iloc[early], period.iloc[late]
        train_times, test_times = period_times.iloc[early], period_times.iloc[late]
    return Split(train, test, production, axis, train_times, test_times, production_times)


def _cut(
    axis: TimeAxis, frame: pd.DataFrame, times: pd.Series, value: object, name: str, later: str
) -> tuple[tuple[pd.DataFrame, pd.Series], tuple[pd.DataFrame, pd.Series]]:
    """Rows of `frame` (sorted by `times`) before and from the split point `value` of
    `data.split.<name>`, each with its times; raises `DataError` when either side is empty
    (`later` names the part from the point on: "production" or "test")."""
    key = f"data.split.{name}"
    start = cut_point(axis, value, key, times)
    before = (times < start).to_numpy()
    early, late = frame[before], frame[~before]
    _not_empty(axis, early, key, value, start, "training", times)
    _not_empty(axis, late, key, value, start, later, times)
    return (early, times[before]), (late, times[~before])


def _hold_out(period: pd.DataFrame, config: OccamConfig) -> tuple[np.ndarray, np.ndarray]:
    """`hold_out` with the config's split settings."""
    split = config.data.split
    return hold_out(period, config.data.target, split.test_size, split.test_strategy, config.seed)


def hold_out(
    period: pd.DataFrame, target: str, test_size: float, strategy: str, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the training and held-out rows of `period`: the last `test_size` share
    (strategy "time") or a sample of that size stratified by `target`, drawn with `seed`
    (raises ValueError when a class is too rare to stratify)."""
    positions = np.arange(len(period))
    if strategy == "time":
        cut = round(len(period) * (1 - test_size))
        return positions[:cut], positions[cut:]
    train, test = train_test_split(
        positions, test_size=test_size, random_state=seed, stratify=period[target]
    )
    return np.asarray(train), np.asarray(test)


def cut_point(axis: TimeAxis, value: object, key: str, among: pd.Series | None = None) -> object:
    """Where the split point `value` of config key `key` falls on `axis` (a share counts the
    rows of `among`, default all); raises `DataError` naming the key."""
    try:
        return axis.split_point(value, key, among)  # type: ignore[arg-type]
    except TimeColumnError as exc:
        raise DataError(str(exc)) from None


def _not_empty(
    axis: TimeAxis,
    part: pd.DataFrame,
    key: str,
    value: object,
    point: object,
    name: str,
    times: pd.Series,
) -> None:
    """An empty training, test or production period is an error with the times seen."""
    if len(part):
        return
    side = "before" if name == "training" else "from"
    raise DataError(
        f"the {name} period is empty: no row of `{axis.column}` falls {side} `{key}`="
        f"{value!r} (read as {axis.describe(point)}); the column holds {axis.span(times)}. "
        f"Move `{key}` inside that span, write a share such as 'last 30%', or set "
        "`data.time_format` if the column is read in the wrong units"
    )
