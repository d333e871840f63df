"""Time columns of every common form, and split points as a date, a number or a share."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from occam.config import ConfigError, OccamConfig, parse_config
from occam.timecol import TimeColumnError, detect_format, parse_share, read_time
from training.checks import check_columns
from training.data import DataError, Features, split_frame

N = 400
STARTS = {
    "year": np.repeat(np.arange(1990, 2010), N // 20),
    "period": np.arange(N),
    "float period": np.arange(N) / 7.0,
    "unix_s": 1_600_000_000 + np.arange(N) * 86_400,
    "unix_ms": (1_600_000_000 + np.arange(N) * 86_400) * 1000,
    "iso date": pd.date_range("2020-01-01", periods=N).strftime("%Y-%m-%d").to_numpy(),
    "iso datetime": pd.date_range("2020-01-01", periods=N, freq="h")
    .strftime("%Y-%m-%dT%H:%M:%S")
    .to_numpy(),
}
EXPECTED = {
    "year": "year",
    "period": "period",
    "float period": "period",
    "unix_s": "unix_s",
    "unix_ms": "unix_ms",
    "iso date": "datetime",
    "iso datetime": "datetime",
}


def config(time_format: str = "auto", **split: object) -> OccamConfig:
    return parse_config(
        {
            "project": "t",
            "data": {
                "path": "x.csv",
                "target": "y",
                "time_column": "t",
                "time_format": time_format,
                "split": split,
            },
            "goals": [{"metric": "accuracy", "threshold": 0.5}],
        }
    )


def frame(kind: str, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "t": rng.permutation(STARTS[kind]),
            "a": rng.normal(size=N),
            "y": rng.choice(["p", "q"], size=N),
        }
    )


@pytest.mark.parametrize("kind", list(STARTS))
def test_each_form_is_detected(kind: str) -> None:
    assert detect_format(pd.Series(STARTS[kind]), "t") == EXPECTED[kind]


def test_integer_years_are_never_nanoseconds() -> None:
    axis = read_time(pd.Series([2001, 2002, None]), "t")
    assert axis.format == "year"
    assert list(axis.values.dropna()) == [pd.Timestamp("2001-01-01"), pd.Timestamp("2002-01-01")]
    assert axis.describe(axis.values.iloc[0]) == "2001"
    seconds = read_time(pd.Series([1_600_000_000]), "t")
    assert seconds.values.iloc[0] == pd.Timestamp("2020-09-13 12:26:40")
    millis = read_time(pd.Series([1_600_000_000_000]), "t", "unix_ms")
    assert millis.values.iloc[0] == pd.Timestamp("2020-09-13 12:26:40")


def test_a_declared_format_wins_over_detection() -> None:
    axis = read_time(pd.Series([1995, 2000, 2005]), "t", "period")
    assert axis.format == "period" and not axis.detected
    assert list(axis.values) == [1995.0, 2000.0, 2005.0]


def test_numbers_declared_as_datetime_are_refused_with_the_fix() -> None:
    with pytest.raises(TimeColumnError, match="set it to year, period, unix_s or unix_ms"):
        read_time(pd.Series([2001, 2002]), "t", "datetime")


def test_unreadable_text_names_the_formats() -> None:
    with pytest.raises(TimeColumnError, match=r"data\.time_format"):
        detect_format(pd.Series(["soon", "later", "never"]), "t")


def test_bad_time_rows_are_counted_by_the_column_check() -> None:
    data = frame("iso date").astype({"t": object})
    data.loc[:2, "t"] = "not a date"
    report = check_columns(data, Features(["a"], []), config())
    [error] = report.errors
    assert error.column == "t" and error.rows == 3 and "'not a date'" in error.message
    [info] = [f for f in report.findings if f.check == "time column"]
    assert "read as datetime (detected" in info.message


@pytest.mark.parametrize(
    ("kind", "start", "production"),
    [
        ("year", 2005, 100),
        ("year", "2005", 100),
        ("year", "2005-01-01", 100),
        ("period", 300, 100),
        ("float period", 50, 50),
        ("unix_s", 1_600_000_000 + 300 * 86_400, 100),
        ("unix_ms", (1_600_000_000 + 300 * 86_400) * 1000, 100),
        ("iso date", "2020-10-27", 100),
        ("iso datetime", "2020-01-13T12:00:00", 100),
        ("period", "last 25%", 100),
        ("iso date", "last 25%", 100),
    ],
)
def test_production_start_in_the_columns_units(kind: str, start: object, production: int) -> None:
    split = split_frame(frame(kind), config(production_start=start))
    assert len(split.production) == production
    assert len(split.train) + len(split.test) == N - production
    assert split.test_times is not None and split.production_times is not None
    assert split.test_times.max() < split.production_times.min()


def test_test_start_cuts_the_test_rows_by_time() -> None:
    split = split_frame(frame("period"), config(production_start=300, test_start=250))
    assert (len(split.train), len(split.test), len(split.production)) == (250, 50, 100)
    assert split.period("test") == ["250", "299"]
    share = split_frame(frame("period"), config(test_start="last 10%"))
    assert (len(share.train), len(share.test)) == (360, 40)


@pytest.mark.parametrize(
    ("start", "words"),
    [
        (2030, ["production period is empty", "`t`", "1990 .. 2009", "last 30%"]),
        (1980, ["training period is empty", "1990 .. 2009"]),
    ],
)
def test_an_empty_period_names_the_column_the_values_and_the_fix(
    start: int, words: list[str]
) -> None:
    with pytest.raises(DataError) as caught:
        split_frame(frame("year"), config(production_start=start))
    for word in words:
        assert word in str(caught.value)


def test_an_empty_test_period_is_an_error() -> None:
    with pytest.raises(DataError, match="test period is empty"):
        split_frame(frame("period"), config(production_start=300, test_start=350))


def test_a_number_on_a_date_column_says_to_write_a_date() -> None:
    with pytest.raises(DataError, match="write a date in quotes"):
        split_frame(frame("iso date"), config(production_start=2020))


def test_a_date_on_a_period_column_says_to_write_a_number() -> None:
    with pytest.raises(DataError, match="holds period numbers"):
        split_frame(frame("period"), config(production_start="2020-01-01"))


def test_shares() -> None:
    assert parse_share("last 30%") == pytest.approx(0.3)
    assert parse_share(" LAST 12.5 % ") == pytest.approx(0.125)
    assert parse_share("2015-01-01") is None
    with pytest.raises(ValueError):
        parse_share("last 0%")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (True, "not a split point"),
        ("last 130%", "between 0% and 100%"),
        ("last thirty percent", "write a share as 'last 30%'"),
        ("whenever", "neither a date"),
    ],
)
def test_bad_split_points_name_the_key_and_the_forms(value: object, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(production_start=value)
    assert "`data.split.production_start`" in str(caught.value)
    assert fragment in str(caught.value)


def test_yaml_numbers_need_no_quotes() -> None:
    parsed = config(production_start=2015, test_start=2012.5)
    assert parsed.data.split.production_start == 2015
    assert parsed.data.split.test_start == 2012.5


def test_test_start_needs_the_time_strategy() -> None:
    with pytest.raises(ConfigError, match="test_strategy: time"):
        config(test_start=5, test_strategy="random")


def test_a_yaml_date_without_quotes_is_a_date() -> None:
    import yaml

    raw = yaml.safe_load("production_start: 2020-10-27\ntest_start: 2020-10-01 12:00:00\n")
    parsed = config(**raw)
    assert parsed.data.split.production_start == "2020-10-27"
    assert parsed.data.split.test_start == "2020-10-01T12:00:00"
    split = split_frame(frame("iso date"), parsed)
    assert len(split.production) == 100 and split.period("test") == [
        "2020-10-02",
        "2020-10-26",
    ]  # noon cut
