"""The goal-metric registry: each metric defined once; the config validates against it."""

from __future__ import annotations

import numpy as np
import pytest

from occam.config import ConfigError, parse_config
from occam.metrics import (
    GOAL_METRICS,
    GoalMetric,
    get_metric,
    metric_names,
    predicted_labels,
    score,
)
from training.calibration import decision_weights

MINIMAL = {
    "project": "p",
    "data": {"path": "d.csv", "target": "y"},
    "goals": [{"metric": "roc_auc", "threshold": 0.7}],
}
CLASSES = ["a", "b", "c"]


def test_registry_holds_every_metric_once_with_its_properties() -> None:
    assert list(GOAL_METRICS) == metric_names()
    assert all(isinstance(m, GoalMetric) and m.name == n for n, m in GOAL_METRICS.items())
    assert {n for n, m in GOAL_METRICS.items() if m.needs_positive} == {
        "average_precision",
        "f1",
        "precision",
        "recall",
    }
    assert not GOAL_METRICS["average_precision"].estimable
    assert GOAL_METRICS["accuracy"].estimable and GOAL_METRICS["roc_auc"].estimable


@pytest.mark.parametrize("name", sorted(GOAL_METRICS))
def test_front_door_scores_with_the_registered_function(name: str) -> None:
    rng = np.random.default_rng(1)
    y = rng.choice(CLASSES, 300)
    proba = rng.dirichlet([1, 1, 1], 300)
    proba[np.arange(300), [CLASSES.index(v) for v in y]] += 0.5  # some signal
    proba /= proba.sum(axis=1, keepdims=True)
    value = score(name, y, proba, CLASSES, "c")
    assert value == GOAL_METRICS[name].score(y, proba, CLASSES, "c")
    assert 0.4 < value <= 1  # informative probabilities beat a guess (1/3) on every metric


def test_unknown_metric_error_lists_every_name() -> None:
    with pytest.raises(ValueError) as err:
        get_metric("auc")
    message = str(err.value)
    assert "'auc'" in message
    assert all(name in message for name in GOAL_METRICS)
    with pytest.raises(ValueError, match="allowed: 'accuracy', 'balanced_accuracy'"):
        score("auc", ["a"], np.array([[1.0, 0, 0]]), CLASSES, "a")


def test_config_validates_goals_and_scoring_against_the_registry() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**MINIMAL, "goals": [{"metric": "auc", "threshold": 0.7}]})
    message = str(err.value)
    assert "`goals.0.metric`" in message and "got 'auc'" in message
    assert all(name in message for name in GOAL_METRICS)
    with pytest.raises(ConfigError, match=r"`search.scoring`.*allowed: .*'roc_auc'"):
        parse_config({**MINIMAL, "search": {"scoring": "logloss"}})
    ok = parse_config({**MINIMAL, "search": {"scoring": "f1"}})
    assert ok.scoring == "f1" and ok.goals[0].metric == "roc_auc"


def test_decision_weights_choose_the_label_and_every_label_metric_follows() -> None:
    proba = np.array([[0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    classes = ["late", "on_time"]
    assert predicted_labels(proba, classes).tolist() == ["on_time", "late", "on_time"]
    weights = {"late": 2.5, "on_time": 0.625}  # 'balanced' for 20% late
    assert predicted_labels(proba, classes, weights).tolist() == ["late", "late", "on_time"]
    y = np.array(["late", "late", "on_time"])
    assert score("accuracy", y, proba, classes, "late") == pytest.approx(2 / 3)
    assert score("accuracy", y, proba, classes, "late", weights) == 1.0
    # ranking metrics do not depend on the decision
    assert score("roc_auc", y, proba, classes, "late", weights) == score(
        "roc_auc", y, proba, classes, "late"
    )


def test_balanced_class_weight_gives_inverse_class_shares() -> None:
    y = np.array(["late"] * 20 + ["on_time"] * 80)
    weights = decision_weights("balanced_subsample", y, ["late", "on_time"])
    assert weights == pytest.approx({"late": 2.5, "on_time": 0.625})
    assert decision_weights(None, y, ["late", "on_time"]) is None
    assert decision_weights({"late": 3}, y, ["late", "on_time"]) == {"late": 3.0}


def test_multiclass_roc_auc_of_probabilities_rounded_as_the_log_keeps_them() -> None:
    """Four classes rounded to `PROBABILITY_DIGITS` decimals may sum to 1 +- 2e-4, which
    scikit-learn refuses; the score is that of the rows scaled back to 1."""
    from occam.records import PROBABILITY_DIGITS

    rng = np.random.default_rng(3)
    classes = ["a", "b", "c", "d"]
    proba = rng.dirichlet(np.ones(4), size=400)
    y = np.array([rng.choice(classes, p=p) for p in proba])
    rounded = np.round(proba, PROBABILITY_DIGITS)
    assert np.abs(rounded.sum(axis=1) - 1).max() > 1e-5  # what scikit-learn refuses
    exact = score("roc_auc", y, proba, classes, "d")
    assert score("roc_auc", y, rounded, classes, "d") == pytest.approx(exact, abs=1e-3)
