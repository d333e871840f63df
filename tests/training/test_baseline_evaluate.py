"""Baselines, the shared scoring function, the gate, abstaining."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from occam.config import BaselineConfig, Goal, RuleConfig
from occam.schema import MISSING_CATEGORY, FeatureSchema
from training.baseline import RuleClassifier, make_baseline
from training.evaluate import (
    abstain_effect,
    abstain_threshold,
    bootstrap_ci,
    brier,
    gate,
    score,
    slice_report,
)

CLASSES = ["late", "on_time"]


def data(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.choice(CLASSES, size=n, p=[0.3, 0.7])
    signal = np.where(y == "late", 0.65, 0.35) + rng.normal(scale=0.2, size=n)
    p_late = np.clip(signal, 0.01, 0.99)
    return y, np.column_stack([p_late, 1 - p_late])


@pytest.mark.parametrize(
    ("metric", "reference"),
    [
        ("roc_auc", lambda y, p: skm.roc_auc_score(y == "late", p[:, 0])),
        (
            "balanced_accuracy",
            lambda y, p: skm.balanced_accuracy_score(y, np.asarray(CLASSES)[p.argmax(1)]),
        ),
        ("f1", lambda y, p: skm.f1_score(y, np.asarray(CLASSES)[p.argmax(1)], pos_label="late")),
        ("average_precision", lambda y, p: skm.average_precision_score(y == "late", p[:, 0])),
    ],
)
def test_score_matches_sklearn(metric: str, reference: object) -> None:
    y, p = data()
    assert score(metric, y, p, CLASSES, "late") == pytest.approx(reference(y, p))  # type: ignore[operator]


def test_rule_baseline_predicts_by_its_rule() -> None:
    x = pd.DataFrame({"precip": [0.0, 0.3, np.nan, 1.0]})
    rule = RuleClassifier("precip", ">", 0.1, "late", "on_time").fit(x, ["late", "on_time"] * 2)
    assert rule.predict(x).tolist() == ["on_time", "late", "on_time", "late"]
    assert rule.predict_proba(x)[1].tolist() == [1.0, 0.0]


def test_rule_baseline_errors_name_the_key() -> None:
    x = pd.DataFrame({"precip": [0.0, 1.0]})
    with pytest.raises(ValueError, match=r"baseline\.rule\.feature='rain'"):
        RuleClassifier("rain", ">", 0, "a", "b").fit(x, ["a", "b"])
    with pytest.raises(ValueError, match=r"baseline\.rule\.then='x' is not a class"):
        RuleClassifier("precip", ">", 0, "x", "b").fit(x, ["a", "b"])


def test_make_baseline_from_config() -> None:
    rule = RuleConfig(feature="f", op="<", value=1, then="a", otherwise="b")
    assert isinstance(make_baseline(BaselineConfig(strategy="rule", rule=rule), 0), RuleClassifier)
    assert make_baseline(BaselineConfig(strategy="stratified"), 3).get_params()["random_state"] == 3


def test_gate_passes_fails_and_notices_a_sufficient_baseline() -> None:
    y, model = data()
    prior = np.tile([0.3, 0.7], (len(y), 1))
    goals = [Goal(metric="roc_auc", threshold=0.7)]
    result = gate(goals, y, model, prior, CLASSES, "late", 0.05, 100, 0.95, 0)
    assert result.passed and not result.baseline_meets_goals
    g = result.goals[0]
    assert g.ci_low < g.model < g.ci_high and g.baseline == pytest.approx(0.5)
    impossible = gate(
        [Goal(metric="roc_auc", threshold=0.99)], y, model, prior, CLASSES, "late", 0.05, 0, 0.95, 0
    )
    assert not impossible.passed and not impossible.goals[0].met
    # the model as its own baseline: goals met, but the margin is not
    same = gate(goals, y, model, model, CLASSES, "late", 0.05, 0, 0.95, 0)
    assert not same.passed and same.baseline_meets_goals and not same.goals[0].beats_baseline


def test_bootstrap_interval_narrows_with_more_rows() -> None:
    small = bootstrap_ci("roc_auc", *data(300), CLASSES, "late", 200, 0.95, 0)
    large = bootstrap_ci("roc_auc", *data(5000), CLASSES, "late", 200, 0.95, 0)
    assert (large[1] - large[0]) < (small[1] - small[0])


def test_abstain_threshold_reaches_target_precision() -> None:
    y, p = data(4000)
    chosen = abstain_threshold(y, p, CLASSES, 0.9)
    assert chosen["reached"] and chosen["precision"] >= 0.9 and 0 < chosen["coverage"] < 1
    effect = abstain_effect(y, p, CLASSES, chosen["threshold"])
    assert effect["precision"] == pytest.approx(chosen["precision"])
    assert effect["coverage"] == pytest.approx(chosen["coverage"])
    assert not abstain_threshold(y, np.full_like(p, 0.5), CLASSES, 0.99)["reached"]


def test_brier_and_slices() -> None:
    y, p = data(1000)
    onehot = (y[:, None] == np.asarray(CLASSES)).astype(float)
    assert brier(y, onehot, CLASSES) == 0.0
    frame = pd.DataFrame({"origin": np.where(np.arange(1000) < 600, "JFK", "EWR")})
    p[600:] = p[600:, ::-1]  # EWR rows get inverted probabilities: the worst slice
    report = slice_report(frame, y, p, CLASSES, "late", ["origin"], "roc_auc", 100)
    assert report["worst"]["value"] == "EWR" and report["worst"]["roc_auc"] < 0.5


def test_slices_name_float_codes_as_the_schema_does() -> None:
    """A code column read as floats (integers with gaps) slices as "12", the category the
    schema learns, not "12.0"; a missing value is the schema's missing category, not "nan"."""
    y, p = data(900)
    codes = np.repeat([12.0, 7.0, np.nan], 300)
    frame = pd.DataFrame({"carrier_code": codes})
    report = slice_report(frame, y, p, CLASSES, "late", ["carrier_code"], "roc_auc", 100)
    values = {row["value"] for row in report["columns"]["carrier_code"]}
    assert values == {"12", "7", MISSING_CATEGORY}
    schema = FeatureSchema.from_frame(frame, [], ["carrier_code"])
    assert values - {MISSING_CATEGORY} == set(schema["carrier_code"].categories or ())
    assert set(schema.coerce(frame)["carrier_code"]) == values
