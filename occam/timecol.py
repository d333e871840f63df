"""Reading a time column of any common form, and where the config's split points fall on it.

A time column may hold ISO dates or datetimes, integer years, an integer or float period index
(day 1, 2, ...), or Unix timestamps in seconds or milliseconds. `data.time_format` declares which,
or `auto` (the default) detects it from the values; a number is never read as nanoseconds since
1970. Dates, years and Unix timestamps become pandas timestamps; a period index stays a float, so
that "rows since" is all a period column can say.

A split point (`data.split.production_start`, `data.split.test_start`) is a date string, a number
in the column's own units (a year, a period number, Unix seconds or milliseconds), or a share of
the latest rows, `"last 30%"`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

TimeFormat = Literal["auto", "datetime", "year", "period", "unix_s", "unix_ms"]
#: The formats a time column can be read as (what `auto` resolves to).
FORMATS: tuple[str, ...] = ("datetime", "year", "period", "unix_s", "unix_ms")
#: Integer years `auto` accepts: a wider span is more likely a period index or an id.
YEARS = (1000, 2200)
#: Unix seconds `auto` accepts (1973-03-03 .. 2103-02-04); milliseconds are 1000 times these.
UNIX_SECONDS = (1e8, 4.2e9)
_SHARE = re.compile(r"^\s*last\s+(\d+(?:\.\d+)?)\s*%\s*$", re.IGNORECASE)
SplitValue = str | int | float


class TimeColumnError(ValueError):
    """A time column or split point that cannot be read; the message names it and the fix."""


def parse_share(value: object) -> float | None:
    """`"last 30%"` -> 0.3; None when `value` is not a share string. Raises `ValueError` for a
    share outside (0%, 100%)."""
    if not isinstance(value, str):
        return None
    match = _SHARE.match(value)
    if match is None:
        return None
    share = float(match.group(1)) / 100
    if not 0 < share < 1:
        raise ValueError(f"{value!r}: the share must lie between 0% and 100% (e.g. 'last 30%')")
    return share


def check_split_value(value: object) -> SplitValue:
    """Validate the form of a split point (config time, no data yet): a share string, a number,
    or a date string (a YAML date written without quotes arrives as a date and becomes its ISO
    text). Raises `ValueError` naming the forms allowed."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(
            f"{value!r} is not a split point; write a date ('2015-06-01'), a number in the time "
            "column's units (2015, 120, 1700000000) or a share ('last 30%')"
        )
    if isinstance(value, float) and not np.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    if not isinstance(value, str) or parse_share(value) is not None:
        return value
    if value.strip().lower().startswith("last"):
        raise ValueError(f"{value!r}: write a share as 'last 30%'")
    if _number(value) is None:
        try:
            pd.Timestamp(value)
        except (ValueError, TypeError):
            raise ValueError(
                f"{value!r} is neither a date (e.g. '2015-06-01'), a number (e.g. 2015) nor a "
                "share (e.g. 'last 30%')"
            ) from None
    return value


def _number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if np.isfinite(number) else None


@dataclass(frozen=True)
class TimeAxis:
    """A time column read in one format. `values` keeps the frame's index: timestamps (format
    datetime, year, unix_s, unix_ms) or floats (period); NaT/NaN where a row has no readable
    time. `detected` says whether `auto` chose the format."""

    column: str
    format: str
    detected: bool
    values: pd.Series

    @property
    def is_datetime(self) -> bool:
        return self.format != "period"

    def describe(self, value: object) -> str:
        """One time value as the user would write it (a year as 2015, a period as 120)."""
        if value is None or pd.isna(value):  # type: ignore[call-overload]
            return "n/a"
        if self.format == "period":  # exact: 1234567 stays 1234567 (not 1.23457e+06)
            number = float(value)  # type: ignore[arg-type]
            return str(int(number)) if number.is_integer() else repr(number)
        stamp = pd.Timestamp(value)  # type: ignore[arg-type]
        if self.format == "year":
            return str(stamp.year)
        if stamp == stamp.normalize():
            return stamp.strftime("%Y-%m-%d")
        return stamp.isoformat()

    def span(self, values: pd.Series | None = None) -> str:
        """`first .. last (format)` of `values` (default: the whole column)."""
        seen = (self.values if values is None else values).dropna()
        if seen.empty:
            return f"no readable values ({self.format})"
        how = "detected" if self.detected else "data.time_format"
        return f"{self.describe(seen.min())} .. {self.describe(seen.max())} ({self.format}, {how})"

    def unreadable(self, raw: pd.Series) -> pd.Series:
        """Rows with a value that could not be read as a time (missing values excluded)."""
        return self.values.isna() & raw.notna()

    def split_point(self, value: SplitValue, key: str, among: pd.Series | None = None) -> object:
        """The time at which `key`'s split `value` starts, comparable with `values`: a share
        counts the latest rows of `among` (readable times; default the whole column)."""
        times = (self.values if among is None else among).dropna()
        share = parse_share(value)
        if share is not None:
            if times.empty:
                raise TimeColumnError(f"`{key}`: {value!r} needs rows with a readable time")
            ordered = np.sort(times.to_numpy())
            position = min(round(len(ordered) * (1 - share)), len(ordered) - 1)
            return ordered[position]
        number = value if not isinstance(value, str) else _number(value)
        if self.format == "datetime" or number is None:
            return self._date_point(value, key)
        return self._number_point(float(number), key)

    def _date_point(self, value: SplitValue, key: str) -> object:
        if self.format == "period":
            raise TimeColumnError(
                f"`{key}`: {value!r} is a date but `{self.column}` holds period numbers "
                f"({self.span()}); write a number in the column's units or a share "
                "('last 30%')"
            )
        if not isinstance(value, str):
            raise TimeColumnError(
                f"`{key}`: {value!r} is a number but `{self.column}` holds dates "
                f"({self.span()}); write a date in quotes, e.g. "
                f"'{self.describe(self.values.max())}', or a share ('last 30%'); or set "
                "`data.time_format` if the column is not dates"
            )
        try:
            return _naive(pd.Timestamp(value))
        except (ValueError, TypeError):
            raise TimeColumnError(
                f"`{key}`: {value!r} is not a date; write e.g. '2015-06-01' or a share ('last 30%')"
            ) from None

    def _number_point(self, number: float, key: str) -> object:
        if self.format == "period":
            return number
        if self.format == "year":
            if not number.is_integer():
                raise TimeColumnError(
                    f"`{key}`: {number!r} is not a whole year; `{self.column}` holds years "
                    f"({self.span()})"
                )
            return pd.Timestamp(year=int(number), month=1, day=1)
        return pd.Timestamp(number, unit="s" if self.format == "unix_s" else "ms")


def _naive(stamp: pd.Timestamp) -> pd.Timestamp:
    return stamp.tz_convert(None) if stamp.tzinfo is not None else stamp


def detect_format(raw: pd.Series, column: str) -> str:
    """The format `auto` reads `raw` as; raises `TimeColumnError` when none fits."""
    seen = raw.dropna()
    if pd.api.types.is_datetime64_any_dtype(raw):
        return "datetime"
    if pd.api.types.is_bool_dtype(raw):
        raise TimeColumnError(f"`data.time_column` `{column}` holds booleans, not times")
    numbers = pd.to_numeric(seen, errors="coerce")
    if seen.empty:
        raise TimeColumnError(f"`data.time_column` `{column}` has no values")
    if numbers.notna().all():
        return _numeric_format(numbers.to_numpy(dtype=float))
    dates = _read_dates(seen)
    if dates.notna().mean() >= 0.5:
        return "datetime"
    examples = ", ".join(repr(v) for v in seen.astype(str).unique()[:3])
    raise TimeColumnError(
        f"`data.time_column` `{column}`: cannot tell how to read its values as times (e.g. "
        f"{examples}); set `data.time_format` to one of {', '.join(FORMATS)}, or fix the column"
    )


def _numeric_format(values: np.ndarray) -> str:
    low, high = float(values.min()), float(values.max())
    integral = bool(np.all(np.mod(values, 1) == 0))
    if integral and YEARS[0] <= low and high <= YEARS[1]:
        return "year"
    if UNIX_SECONDS[0] <= low and high <= UNIX_SECONDS[1]:
        return "unix_s"
    if UNIX_SECONDS[0] * 1000 <= low and high <= UNIX_SECONDS[1] * 1000:
        return "unix_ms"
    return "period"


def _read_dates(raw: pd.Series) -> pd.Series:
    """ISO dates and datetimes (any offset converted to UTC, then naive); NaT where unreadable."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        out = pd.to_datetime(raw)
    else:
        text = raw.astype("string")
        try:
            out = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
        except (ValueError, TypeError):
            out = pd.to_datetime(text, errors="coerce", format="mixed", utc=True)
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert(None)
    return out.astype("datetime64[ns]")


def read_time(raw: pd.Series, column: str, time_format: str = "auto") -> TimeAxis:
    """Read the time column `raw` (named `column`) in `time_format` (`auto`: detect)."""
    detected = time_format == "auto"
    fmt = detect_format(raw, column) if detected else time_format
    if fmt not in FORMATS:
        raise TimeColumnError(f"`data.time_format`: {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt == "datetime":
        if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
            raise TimeColumnError(
                f"`data.time_column` `{column}` holds numbers (e.g. {raw.dropna().iloc[0]!r}) "
                "but `data.time_format` is datetime; set it to year, period, unix_s or unix_ms "
                "(or auto)"
            )
        values = _read_dates(raw)
    else:
        numbers = pd.to_numeric(raw, errors="coerce").astype(float)
        if fmt == "period":
            values = numbers
        elif fmt == "year":
            whole = numbers.where(np.mod(numbers, 1) == 0)
            values = pd.to_datetime(
                whole.astype("Int64").astype("string"), format="%Y", errors="coerce"
            )
        else:
            unit = "s" if fmt == "unix_s" else "ms"
            values = pd.to_datetime(numbers, unit=unit, errors="coerce")
    values.index = raw.index
    return TimeAxis(column=column, format=fmt, detected=detected, values=values)


__all__ = [
    "FORMATS",
    "TimeAxis",
    "TimeColumnError",
    "TimeFormat",
    "check_split_value",
    "detect_format",
    "parse_share",
    "read_time",
]
