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
    assert "perfect on held-out rows" in leak.message
    assert "data.allow_strong_features: [c]" in leak.message


def test_a_function_of_the_label_stops_training() -> None:
    frame = good_frame(n=800)
    rng = np.random.default_rng(2)
    # A code recorded from the outcome: 20 codes per class, each code only ever with its class.
    frame["b"] = frame["y"] + "-" + rng.integers(0, 20, size=len(frame)).astype(str)
    report = check_values(frame, FEATURES, config())
    [leak] = [f for f in report.errors if f.check == "leakage"]
    assert leak.column == "b" and "a function of the label" in leak.message
    assert "40 repeated values" in leak.message


@pytest.mark.parametrize("kind", ["integer", "text"])
def test_an_id_like_column_stops_training(kind: str) -> None:
    frame = good_frame()
    ids = np.random.default_rng(3).permutation(len(frame)) + 1000
    frame["b"] = ids if kind == "integer" else [f"customer-{i}" for i in ids]
    features = Features(numeric=["a", "c", "b"], categorical=[]) if kind == "integer" else FEATURES
    report = check_values(frame, features, config())
    [leak] = [f for f in report.errors if f.check == "leakage"]
    assert leak.column == "b" and "id-like" in leak.message


def strong_frame(n: int = 1200, seed: int = 4) -> pd.DataFrame:
    """A real measurement that alone predicts the class with ROC AUC near 0.995 (classes
    overlap at the edges, so a few rows are on the wrong side of any cut)."""
    rng = np.random.default_rng(seed)
    frame = good_frame(n=n, seed=seed)
    sign = np.where(frame["y"] == "yes", 1.0, -1.0)
    frame["c"] = np.round(1.82 * sign + rng.normal(size=n), 2)
    return frame


def test_a_legitimate_strong_feature_warns_and_names_both_fixes() -> None:
    report = check_values(strong_frame(), FEATURES, config())
    assert report.errors == []
    [warning] = [f for f in report.warnings if f.check == "strong feature"]
    assert warning.column == "c"
    assert "data.allow_strong_features: [c]" in warning.message
    assert "data.exclude" in warning.message
    [strength] = [s for s in report.strengths if s.name == "c"]
    assert 0.98 <= strength.score < 1.0 and strength.accuracy < 1.0 and strength.leak is None


def test_allowing_a_strong_feature_by_name_silences_the_warning() -> None:
    report = check_values(strong_frame(), FEATURES, config(allow_strong_features=["c"]))
    assert report.errors == [] and report.warnings == []
    assert any(f.check == "strong feature" and f.level == "info" for f in report.findings)


def test_allowing_an_unknown_feature_is_named() -> None:
    report = check_values(good_frame(), FEATURES, config(allow_strong_features=["nope"]))
    [warning] = report.warnings
    assert warning.column == "nope" and "not a feature" in warning.message


def test_ordinary_features_are_scored_on_held_out_rows() -> None:
    report = check_values(good_frame(), FEATURES, config())
    scores = {s.name: s.score for s in report.strengths}
    assert set(scores) == {"a", "b", "c"}
    assert scores["a"] > 0.6 and scores["b"] < 0.65 and scores["c"] < 0.65


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
