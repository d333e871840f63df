"""`occam init`'s inference on small synthetic frames: id-like and constant columns, category
codes, time columns of each form, the proposed split, and the config text it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from training.init import (
    CLOCK_CORRELATION,
    MAX_CODE_VALUES,
    classify_column,
    detect_time,
    follows_time,
    name_tokens,
    propose_split,
    write_starter,
)

N = 600


def frame(seed: int = 0) -> pd.DataFrame:
    """A small labelled frame with one column of each kind init must recognise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=N)
    code = rng.integers(1, 5, N)
    y = np.where(x + (code == 2) + rng.normal(scale=0.8, size=N) > 0.5, 1, 0)
    return pd.DataFrame(
        {
            "row_id": np.arange(N) + 1000,
            "user": [f"u{i:05d}" for i in rng.permutation(N)],
            "day": pd.date_range("2019-01-01", periods=N, freq="D").strftime("%Y-%m-%d"),
            "x": x,
            "code": code,
            "colour": rng.choice(["red", "green", "blue"], N),
            "constant": 7,
            "sparse": np.where(rng.random(N) < 0.7, np.nan, rng.normal(size=N)),
            "y": y,
        }
    )


def test_name_tokens_split_snake_and_camel_case() -> None:
    assert name_tokens("createdAt") == ["created", "at"]
    assert name_tokens("user_ID") == ["user", "id"]
    assert name_tokens("Unnamed: 0") == ["unnamed", "0"]


@pytest.mark.parametrize(
    ("column", "role", "why"),
    [
        ("row_id", "excluded", "id-like"),  # an id name
        ("user", "excluded", "id-like"),  # every value distinct
        ("constant", "excluded", "constant"),
        ("sparse", "excluded", "missing"),
        ("x", "numeric", "distinct"),
        ("code", "categorical", "codes"),
        ("colour", "categorical", "3 values"),
    ],
)
def test_each_column_gets_its_role_and_reason(column: str, role: str, why: str) -> None:
    data = frame()
    decided = classify_column(data[column], float(data[column].isna().mean()))
    assert (decided.role, decided.name) == (role, column)
    assert why in decided.reason


def test_whole_numbers_are_codes_up_to_the_limit_and_numbers_beyond() -> None:
    few = pd.Series(np.tile(np.arange(MAX_CODE_VALUES), 20), name="grade")
    many = pd.Series(np.tile(np.arange(MAX_CODE_VALUES + 1), 20), name="grade")
    halves = pd.Series(np.tile(np.arange(4) / 2, 50), name="score")
    with_missing = pd.Series([1.0, 2.0, np.nan, 3.0] * 50, name="level")  # read as floats
    assert classify_column(few, 0.0).role == "categorical"
    assert classify_column(many, 0.0).role == "numeric"
    assert classify_column(halves, 0.0).role == "numeric"
    assert classify_column(with_missing, 0.25).role == "categorical"


@pytest.mark.parametrize("name", ["uid", "respondent_uid", "caseUUID"])
def test_an_identifier_name_excludes_a_column_whose_values_repeat(name: str) -> None:
    """ANES' `uid` (year x 10,000 + n) is 87% distinct, under the share rule, and numbered in
    time order: kept as a feature it acts as a clock. Its name says what it is."""
    values = pd.Series(np.repeat(np.arange(300) + 19_920_000, 2))  # 50% distinct
    decided = classify_column(values.rename(name), 0.0)
    assert (decided.role, decided.name) == ("excluded", name)
    assert "id-like" in decided.reason


def test_distinct_measurements_are_not_id_like() -> None:
    measured = pd.Series(np.random.default_rng(1).normal(size=500), name="pressure")
    assert classify_column(measured, 0.0).role == "numeric"


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("date", pd.date_range("2020-01-01", periods=N, freq="D").strftime("%Y-%m-%d"), "datetime"),
        (
            "when",
            pd.date_range("2020-01-01", periods=N, freq="h").strftime("%Y-%m-%dT%H:%M:%S"),
            "datetime",
        ),
        ("year", np.repeat(np.arange(1978, 1990), N // 12), "year"),
        ("period", np.arange(N) // 10, "period"),
        ("t", np.arange(N) / 4, "period"),
        ("created_at", 1_600_000_000 + np.arange(N) * 3600, "unix_s"),
        ("ts", 1_600_000_000_000 + np.arange(N) * 60_000, "unix_ms"),
    ],
)
def test_time_columns_of_every_form_are_detected(name: str, values: object, expected: str) -> None:
    data = pd.DataFrame({name: values, "x": np.arange(N), "y": np.arange(N) % 2})
    found = detect_time(data, "y")
    assert found is not None and (found.name, found.format) == (name, expected)


def test_numbers_without_a_time_name_and_calendar_parts_are_not_time() -> None:
    rng = np.random.default_rng(2)
    data = pd.DataFrame(
        {
            "amount": 1_600_000_000 + rng.integers(0, 10**6, N),  # Unix-sized, not named so
            "month": rng.integers(1, 13, N),
            "label": ["2020-01-01 text"] * N,  # not an ISO date
            "y": np.arange(N) % 2,
        }
    )
    assert detect_time(data, "y") is None


def test_iso_dates_win_over_a_year_column() -> None:
    data = pd.DataFrame(
        {
            "year": np.repeat([2019, 2020], N // 2),
            "day": pd.date_range("2019-06-01", periods=N, freq="D").strftime("%Y-%m-%d"),
            "y": np.arange(N) % 2,
        }
    )
    assert detect_time(data, "y").name == "day"  # type: ignore[union-attr]


def test_split_on_years_leaves_about_thirty_percent_after_a_year_boundary() -> None:
    data = frame().assign(year=np.repeat(np.arange(2000, 2012), N // 12)).drop(columns="day")
    time = detect_time(data, "y")
    assert time is not None
    split = propose_split(data, time)
    assert split is not None
    assert isinstance(split.production_start, int)
    later = data[data.year >= split.production_start]
    assert split.production_rows == len(later)
    assert 0.2 <= len(later) / N <= 0.4
    assert split.period_rows == N - len(later)


def test_split_on_dates_starts_on_a_month() -> None:
    days = pd.date_range("2021-01-01", periods=N, freq="D")
    data = pd.DataFrame({"day": days.strftime("%Y-%m-%d"), "y": np.arange(N) % 2})
    time = detect_time(data, "y")
    assert time is not None
    split = propose_split(data, time)
    assert split is not None and str(split.production_start).endswith("-01")
    assert split.production_rows == int((days >= pd.Timestamp(split.production_start)).sum())


def test_starter_config_lists_features_excludes_with_reasons_and_loads(tmp_path: Path) -> None:
    from occam.config import parse_config

    csv = tmp_path / "survey.csv"
    frame().to_csv(csv, index=False)
    out = tmp_path / "occam.yaml"
    starter = write_starter(csv, "y", out, quick=True)
    text = out.read_text()
    raw = yaml.safe_load(text)
    data = raw["data"]
    assert data["path"] == "survey.csv"
    assert data["time_column"] == "day"
    assert str(data["split"]["production_start"]).endswith("-01")
    assert sorted(data["numeric"]) == ["x"]
    assert sorted(data["categorical"]) == ["code", "colour"]
    assert sorted(data["exclude"]) == ["constant", "row_id", "sparse", "user"]
    assert "# id-like" in text and "# constant" in text
    assert "Goals are a product decision" in text
    assert "class balance" in text
    assert [g["metric"] for g in raw["goals"]] == ["balanced_accuracy", "roc_auc"]
    for goal, proposed in zip(raw["goals"], starter.quick.goals, strict=True):
        assert goal["threshold"] == pytest.approx(proposed.threshold)
        assert proposed.baseline < goal["threshold"] < proposed.quick_model
    assert raw["output"]["model_name"] == "occam-survey"
    config = parse_config(raw, source=str(out), base_dir=tmp_path)  # loads as written
    assert config.data.split.production_start == data["split"]["production_start"]


def test_an_existing_file_is_kept_without_force(tmp_path: Path) -> None:
    csv = tmp_path / "survey.csv"
    frame().to_csv(csv, index=False)
    out = tmp_path / "occam.yaml"
    out.write_text("# mine\n")
    with pytest.raises(FileExistsError, match="--force"):
        write_starter(csv, "y", out, quick=True)
    assert out.read_text() == "# mine\n"
    write_starter(csv, "y", out, force=True, quick=True)
    assert out.read_text().startswith("# Starter config")


def test_an_unusable_target_is_named(tmp_path: Path) -> None:
    from training.data import DataError

    csv = tmp_path / "survey.csv"
    frame().to_csv(csv, index=False)
    with pytest.raises(DataError, match="'label' is not a column"):
        write_starter(csv, "label", tmp_path / "a.yaml")
    with pytest.raises(DataError, match="'x' holds 600 distinct values"):
        write_starter(csv, "x", tmp_path / "b.yaml")
    assert not (tmp_path / "a.yaml").exists() and not (tmp_path / "b.yaml").exists()


@pytest.mark.parametrize(
    ("name", "values", "fmt"),
    [
        ("year", np.repeat(np.arange(2000, 2012), N // 12), "year"),
        ("year", np.repeat(np.arange(70, 82), N // 12), "period"),  # two-digit years
        ("created_at", 1_600_000_000 + np.arange(N) * 3600, "unix_s"),
        ("day", pd.date_range("2021-01-01", periods=N, freq="D").strftime("%Y-%m-%d"), "datetime"),
    ],
)
def test_training_reads_the_proposed_split_as_init_counted_it(
    name: str, values: object, fmt: str, tmp_path: Path
) -> None:
    """The config loads as written, and training's own split puts exactly the rows init
    announced in the production period, with non-empty training and test parts."""
    from occam.config import load_config
    from training.data import split_frame

    data = frame().drop(columns="day").assign(**{name: values})
    csv = tmp_path / "panel.csv"
    data.to_csv(csv, index=False)
    out = tmp_path / "occam.yaml"
    starter = write_starter(csv, "y", out, quick=True)
    assert starter.time is not None and starter.time.format == fmt
    assert starter.split is not None
    config = load_config(out)
    assert config.data.time_format == fmt
    split = split_frame(pd.read_csv(csv), config)
    assert len(split.production) == starter.split.production_rows
    assert len(split.train) + len(split.test) == starter.split.period_rows
    assert len(split.test) == round(starter.split.period_rows * 0.2)


def test_a_feature_near_the_leakage_level_is_marked_strong_with_both_fixes(
    tmp_path: Path,
) -> None:
    data = frame()
    data["echo"] = data["y"] * 10.0 + np.random.default_rng(3).normal(scale=0.5, size=N)
    csv = tmp_path / "survey.csv"
    data.to_csv(csv, index=False)
    starter = write_starter(csv, "y", tmp_path / "occam.yaml", quick=True)
    assert set(starter.quick.strong_features) == {"echo"}
    line = next(t for t in starter.text.splitlines() if t.strip().startswith('- "echo"'))
    assert "STRONG" in line and "`exclude`" in line and "`allow_strong_features`" in line


def test_rows_without_a_label_are_counted_in_a_warning(tmp_path: Path) -> None:
    data = frame()
    data.loc[:9, "y"] = np.nan
    csv = tmp_path / "survey.csv"
    data.to_csv(csv, index=False)
    starter = write_starter(csv, "y", tmp_path / "occam.yaml", quick=True)
    assert starter.unlabelled == 10
    assert "WARNING: 10 row(s) have no y" in starter.text
    assert sum(starter.class_counts.values()) == starter.split.period_rows  # type: ignore[union-attr]


def test_a_column_that_stops_being_recorded_is_excluded() -> None:
    """Never missing in the rows the model learns from, missing later: the service would
    refuse every later row, so init leaves it out and says why."""
    column = pd.Series([1.0] * 400 + [np.nan] * 200, name="urbanism").mul(np.tile([1, 2, 3], 200))
    decided = classify_column(column, missing_share=0.1, learned_missing=0.0, later_missing=0.5)
    assert decided.role == "excluded" and "refuses a missing value" in decided.reason
    kept = classify_column(column, missing_share=0.1, learned_missing=0.02, later_missing=0.5)
    assert kept.role == "categorical"


def test_a_number_that_counts_time_beside_the_time_column_is_excluded(tmp_path: Path) -> None:
    """A day count next to a date is a second clock: every production value lies past the
    training range, so the forest cannot use it and it would drift in every window. A number
    that merely trends with time (here a rank correlation near 0.8) stays a feature."""
    data = frame()
    rng = np.random.default_rng(1)
    # days since 1970 at the hour of the record: a second clock (not whole, so not id-like)
    data["day_number"] = np.arange(N) + 17_000 + rng.integers(0, 24, N) / 24
    data["experience"] = np.arange(N) / 50 + rng.normal(scale=3, size=N)
    trend = follows_time(data["experience"], pd.to_datetime(data["day"]).values)
    assert trend is not None and 0.5 < trend < CLOCK_CORRELATION
    assert follows_time(data["day_number"], pd.to_datetime(data["day"]).values) == pytest.approx(1)
    assert follows_time(data["colour"], pd.to_datetime(data["day"]).values) is None
    csv = tmp_path / "survey.csv"
    data.to_csv(csv, index=False)
    out = tmp_path / "occam.yaml"
    write_starter(csv, "y", out, quick=True)
    text = out.read_text()
    raw = yaml.safe_load(text)
    assert "day_number" in raw["data"]["exclude"]
    assert "experience" in raw["data"]["numeric"]
    assert "follows the time column day (rank correlation 1.000): a second clock" in text


def test_whole_numbers_with_new_values_later_are_numeric_not_codes() -> None:
    """A small count that grows (parking spaces 0-2 while the model learns, 3 later) would be
    refused by the service as an unknown category code: init makes it numeric and says why.
    Codes whose later values were all seen stay categorical."""
    column = pd.Series([0, 1, 2] * 200 + [3], name="parking_spaces")
    decided = classify_column(column, 0.0, later_new=[3.0])
    assert decided.role == "numeric"
    assert "later rows hold 3 that the training rows never do" in decided.reason
    assert classify_column(column, 0.0, later_new=[]).role == "categorical"


def test_an_id_name_over_a_fixed_set_of_entities_is_a_category() -> None:
    """`plot_id` (24 survey plots, each in every period) names entities that recur: a category.
    Ids that keep arriving (a new value in later rows) or that are too many to be a category
    are left out."""
    plots = pd.Series(np.tile(np.arange(1, 25), 50), name="plot_id")
    kept = classify_column(plots, 0.0, later_new=[])
    assert kept.role == "categorical" and "fixed set of entities" in kept.reason
    assert classify_column(plots, 0.0, later_new=[25]).role == "excluded"
    users = pd.Series(np.tile(np.arange(200), 5), name="user_id")
    assert classify_column(users, 0.0, later_new=[]).role == "excluded"


def test_without_a_time_column_the_goals_are_scored_on_the_rows_training_holds_out(
    tmp_path: Path,
) -> None:
    """Without a time column training holds out a stratified random 20%; the quick model that
    proposes the goals is scored on those very rows (it used the file's last 20%: on 569 rows
    the proposed goal then sat above what the trained model scored on its own held-out rows)."""
    from occam.config import load_config
    from training.data import load_frame, split_frame
    from training.init import quick_split

    data = frame().drop(columns=["day"])
    csv = tmp_path / "survey.csv"
    data.to_csv(csv, index=False)
    out = tmp_path / "occam.yaml"
    write_starter(csv, "y", out, quick=True)
    config = load_config(out)
    assert config.data.split.test_strategy == "random"
    split = split_frame(load_frame(csv), config)
    train, test = quick_split(data, "y", config.seed, timed=False)
    assert sorted(test.index) == sorted(split.test.index)
    assert sorted(train.index) == sorted(split.train.index)
