"""Each data check on a small crafted bad dataset produces its named message."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from occam.config import OccamConfig, parse_config
from training.checks import check_columns, check_values, single_feature_auc
from training.data import Features, choose_features


def config(**data: object) -> OccamConfig:
    return parse_config(
        {
            "project": "t",
            "data": {"path": "x.csv", "target": "y", **data},
            "goals": [{"metric": "accuracy", "threshold": 0.5}],
        }
    )


def good_frame(n: int = 400, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return pd.DataFrame(
        {
            "a": a,
            "b": rng.choice(["x", "y", "z"], size=n),
            "c": rng.normal(size=n),
            "y": np.where(a + rng.normal(scale=2, size=n) > 0, "yes", "no"),
        }
    )


FEATURES = Features(numeric=["a", "c"], categorical=["b"])


def messages(report: object) -> list[str]:
    return [str(f) for f in report.findings]  # type: ignore[attr-defined]


def test_clean_data_has_no_errors_or_warnings() -> None:
    frame = good_frame()
    assert check_columns(frame, FEATURES, config()).findings == []
    report = check_values(frame, FEATURES, config())
    assert report.errors == [] and report.warnings == []


def test_missing_feature_and_target_columns_are_named() -> None:
    frame = good_frame().drop(columns=["c", "y"])
    report = check_columns(frame, FEATURES, config())
    text = "\n".join(messages(report))
    assert "ERROR missing column: [c]" in text and "`data.numeric`" in text
    assert "ERROR missing column: [y]" in text


def test_wrong_type_counts_rows_and_gives_examples() -> None:
    frame = good_frame()
    frame["a"] = frame["a"].astype(object)
    frame.loc[:4, "a"] = "n/a"
    report = check_columns(frame, FEATURES, config())
    [finding] = report.errors
    assert finding.check == "wrong type" and finding.column == "a" and finding.rows == 5
    assert "'n/a'" in finding.message and "data.categorical" in finding.message


def test_missing_values_warn_then_stop() -> None:
    frame = good_frame()
    frame.loc[:39, "c"] = np.nan  # 10%: a warning
    report = check_values(frame, FEATURES, config())
    assert [f.check for f in report.warnings] == ["missing values"]
    assert report.warnings[0].rows == 40
    frame.loc[:299, "c"] = np.nan  # 75%: above max_missing_share
    report = check_values(frame, FEATURES, config())
    assert report.errors[0].check == "missing values"
    assert "data.max_missing_share" in report.errors[0].message


def test_constant_column_is_dropped_with_a_warning() -> None:
    frame = good_frame()
    frame["c"] = 3.0
    report = check_values(frame, FEATURES, config())
    assert report.dropped_features == ["c"]
    assert any(f.check == "constant column" and f.column == "c" for f in report.warnings)


def test_duplicates_and_conflicting_labels_are_counted() -> None:
    frame = good_frame()
    frame = pd.concat([frame, frame.iloc[:7]], ignore_index=True)  # 7 exact duplicates
    conflict = frame.iloc[[10]].copy()
    conflict["y"] = "no" if frame.loc[10, "y"] == "yes" else "yes"
    frame = pd.concat([frame, conflict], ignore_index=True)
    report = check_values(frame, FEATURES, config())
    by_check = {f.check: f for f in report.warnings}
    assert by_check["duplicate rows"].rows == 7
    assert by_check["conflicting labels"].rows == 2


def test_single_class_is_an_error() -> None:
    frame = good_frame()
    frame["y"] = "yes"
    report = check_values(frame, FEATURES, config())
    assert any(f.check == "class balance" and "only one class" in f.message for f in report.errors)


def test_leaky_feature_is_an_error_naming_the_column() -> None:
    frame = good_frame()
    frame["c"] = np.where(frame["y"] == "yes", 1.0, 0.0) + np.random.default_rng(1).normal(
        scale=0.01, size=len(frame)
    )
    report = check_values(frame, FEATURES, config())
    [leak] = [f for f in report.errors if f.check == "leakage"]
    assert leak.column == "c" and "data.exclude" in leak.message


def test_single_feature_auc_is_near_half_for_noise() -> None:
    rng = np.random.default_rng(0)
    target = pd.Series(rng.choice(["a", "b"], size=5000))
    assert single_feature_auc(pd.Series(rng.normal(size=5000)), target) < 0.56


def test_missing_target_values_are_an_error() -> None:
    frame = good_frame()
    frame.loc[:2, "y"] = None
    report = check_values(frame, FEATURES, config())
    assert any(f.check == "missing target" and f.rows == 3 for f in report.errors)


@pytest.mark.parametrize("explicit", [True, False])
def test_feature_inference(explicit: bool) -> None:
    frame = good_frame()
    cfg = config(numeric=["a"], categorical=["b"]) if explicit else config(exclude=["c"])
    features = choose_features(frame, cfg)
    assert features.numeric == ["a"] and features.categorical == ["b"]
