"""Training on a CSV that is not flights: an integer year as the time column, category codes read
as numbers (with gaps, so pandas reads them as floats), a 0/1 label with a numeric positive
label, a strong but legitimate feature, a feature that adds nothing, and several labellers with
a goal set to `human`. The card must speak of this data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from occam.config import parse_config
from training.data import DataError
from training.pipeline import TrainResult, train

ROWS = 1500


def make_csv(path: Path, seed: int = 0) -> Path:
    """Years 2001-2015 (100 rows each); `code` an integer category with gaps; `level` strong."""
    rng = np.random.default_rng(seed)
    year = np.repeat(np.arange(2001, 2016), ROWS // 15)
    code = rng.choice([3, 12, 40], size=ROWS).astype(float)
    code[rng.random(ROWS) < 0.05] = np.nan
    signal = rng.normal(size=ROWS) + np.where(code == 12, 0.8, 0.0)
    truth = (signal + rng.normal(scale=0.7, size=ROWS) > 0.4).astype(int)
    # Three labellers who each flip 10% of the labels; their majority is the label.
    votes = {
        name: np.where(rng.random(ROWS) < 0.1, 1 - truth, truth) for name in ("ann", "bob", "cy")
    }
    label = (np.sum(list(votes.values()), axis=0) >= 2).astype(int)
    frame = pd.DataFrame(
        {
            "year": year,
            "signal": signal,
            "level": np.round(np.where(label == 1, 1.9, -1.9) + rng.normal(size=ROWS), 2),
            "code": code,
            "noise": rng.normal(size=ROWS),
            "label": label,
            **votes,
        }
    )
    frame.to_csv(path, index=False)
    return path


def raw_config(tmp: Path, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "project": "any-csv",
        "seed": 1,
        "data": {
            "path": str(make_csv(tmp / "data.csv")),
            "target": "label",
            "time_column": "year",
            "numeric": ["signal", "level", "noise"],
            "categorical": ["code"],
            "split": {"production_start": 2013, "test_start": "last 25%"},
        },
        "goals": [{"metric": "roc_auc", "threshold": 0.6}],
        "goals_positive_label": 1,
        "labels": {
            "unknown_values": [-1],
            "find_label_issues": False,
            "annotators": ["ann", "bob", "cy"],
        },
        "baseline": {"margin": 0.01},
        "model": {"params": {"n_estimators": 30}},
        "search": {"n_candidates": 2, "max_rounds": 1, "min_rounds": 1, "cv": 2},
        "evaluation": {"bootstrap": 30, "importance_repeats": 5},
        "output": {"model_name": "any-csv", "reports_dir": str(tmp / "reports")},
        "tracking": {"enabled": False},
    }
    for key, value in extra.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    tmp = tmp_path_factory.mktemp("anycsv")
    return train(parse_config(raw_config(tmp)))


def test_integer_years_split_where_the_config_says(result: TrainResult) -> None:
    data = result.report["data"]
    assert data["production_rows"] == 300  # 2013, 2014, 2015
    assert data["train_period"] == ["2001", "2009"] and data["test_period"] == ["2010", "2012"]
    assert data["production_start"] == "2013"
    metrics = json.loads(result.metrics_path.read_text())
    assert metrics["time"]["format"] == "year" and metrics["time"]["detected"] is True
    assert metrics["time"]["periods"]["production"] == ["2013", "2015"]
    # the bundle's samples store years as ISO datetimes, which every reader parses right
    holdout = result.bundle.load_holdout()
    assert holdout is not None
    years = pd.to_datetime(holdout["year"]).dt.year
    assert (years.min(), years.max()) == (2010, 2012) and years.is_monotonic_increasing
    reference = pd.to_datetime(result.bundle.load_reference()["year"]).dt.year
    assert (reference.min(), reference.max()) == (2001, 2009)


def test_numeric_labels_and_codes_become_canonical_text(result: TrainResult) -> None:
    assert result.report["classes"] == ["0", "1"]
    assert result.report["positive_label"] == "1"
    assert result.bundle.schema["code"].categories == ("12", "3", "40")


def test_card_and_metrics_judge_every_feature(result: TrainResult) -> None:
    metrics = json.loads(result.metrics_path.read_text())
    features = metrics["features"]
    assert set(features) == {"signal", "level", "noise", "code"}
    assert features["level"]["single_feature_score"] >= 0.98
    assert features["noise"]["adds_nothing"] is True
    assert features["level"]["adds_nothing"] is False
    findings = {(f["check"], f["column"]) for f in metrics["data"]["findings"]}
    assert ("strong feature", "level") in findings
    assert ("feature adds nothing", "noise") in findings
    card = result.card_path.read_text()
    assert "## What the model relies on: is every feature worth having?" in card
    assert "data.allow_strong_features: [level]" in card
    assert "Learned from `year` 2001 to 2012 (year)" in card
    assert "near the leakage level" in card


def test_card_speaks_of_this_data_only(result: TrainResult) -> None:
    card = result.card_path.read_text().lower()
    for word in ("flight", "carrier", "route", "season", "delay"):
        assert word not in card


def test_labellers_against_the_consensus_are_reported(result: TrainResult) -> None:
    metrics = json.loads(result.metrics_path.read_text())
    names = [item["name"] for item in metrics["labellers"]]
    assert names == ["ann", "bob", "cy"]
    for item in metrics["labellers"]:
        # Scored where the other two agree (82% of the 1200 labelled rows of the training
        # period); each flips 10%, and two agreeing others are wrong 1% of the time: ~0.89.
        assert 0.85 < item["accuracy"] < 0.93 and 900 < item["rows"] < 1080
        assert 0.5 < item["goals"]["roc_auc"] < 1
    assert "## Against people" in result.card_path.read_text()


def test_a_human_goal_is_measured_and_shown_beside_the_model(tmp_path: Path) -> None:
    raw = raw_config(
        tmp_path,
        goals=[{"metric": "accuracy", "threshold": "human"}],
        **{"data.target": "consensus"},
    )
    done = train(parse_config(raw))
    [goal] = done.report["goals"]
    levels = [
        item["goals"]["accuracy"] for item in json.loads(done.metrics_path.read_text())["labellers"]
    ]
    assert goal["human"] is True and goal["threshold"] == pytest.approx(np.mean(levels), abs=1e-6)
    assert 0.8 < goal["threshold"] < 0.95
    card = done.card_path.read_text()
    assert "must reach the average labeller's" in card


def test_an_empty_production_period_names_the_column_and_the_fix(tmp_path: Path) -> None:
    raw = raw_config(tmp_path, **{"data.split": {"production_start": 2020}})
    with pytest.raises(DataError) as caught:
        train(parse_config(raw))
    message = str(caught.value)
    assert "production period is empty" in message and "`year`" in message
    assert "2001 .. 2015" in message and "last 30%" in message
