"""Loading the dataset, deciding the features, and splitting it in time."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from occam.config import OccamConfig


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
    """Read a CSV (optionally compressed) or Parquet file."""
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} not found; fix `data.path` in the config")
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    try:
        return pd.read_csv(path, low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"data file {path} cannot be read as CSV: {exc}") from None


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
    """Training rows (for the search), held-out test rows, and the untouched production period."""

    train: pd.DataFrame
    test: pd.DataFrame
    production: pd.DataFrame


def split_frame(frame: pd.DataFrame, config: OccamConfig) -> Split:
    """Cut off the production period by time, then hold out the test share of the rest."""
    data = config.data
    split = data.split
    if split.production_start is not None:
        if data.time_column is None:
            raise DataError(
                "`data.split.production_start` needs `data.time_column`: name the column holding "
                "each row's time"
            )
        times = pd.to_datetime(frame[data.time_column], errors="coerce")
        start = pd.Timestamp(split.production_start)
        period = frame[times < start]
        production = frame[times >= start]
    else:
        period, production = frame, frame.iloc[0:0]
    if len(period) < 50:
        raise DataError(
            f"only {len(period)} rows fall before data.split.production_start="
            f"{split.production_start!r}; move it later"
        )
    if split.test_strategy == "time":
        if data.time_column is not None:
            order = pd.to_datetime(period[data.time_column], errors="coerce")
            period = period.iloc[order.argsort(kind="stable")]
        cut = round(len(period) * (1 - split.test_size))
        train, test = period.iloc[:cut], period.iloc[cut:]
    else:
        train, test = train_test_split(
            period,
            test_size=split.test_size,
            random_state=config.seed,
            stratify=period[data.target],
        )
    return Split(train=train, test=test, production=production)
