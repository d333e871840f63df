"""The champion-vs-challenger gate, called directly on seeded labels and probabilities."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from occam.config import Goal
from occam.metrics import score
from training.challenger import (
    ChallengerGate,
    compare,
    paired_bootstrap,
    render_markdown,
    slice_floors,
    table_rows,
)

CLASSES = ["late", "on_time"]
GOALS = [Goal(metric="roc_auc", threshold=0.7), Goal(metric="balanced_accuracy", threshold=0.6)]


def model_outputs(y: np.ndarray, skill: float, seed: int) -> np.ndarray:
    """Probabilities whose separation of the classes grows with `skill` (0: coin flips)."""
    rng = np.random.default_rng(seed)
    p_late = np.clip(
        0.5 + skill * np.where(y == "late", 0.3, -0.3) + rng.normal(0, 0.2, len(y)), 0, 1
    )
    return np.column_stack([p_late, 1 - p_late])


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return np.random.default_rng(1).choice(CLASSES, size=600)


def gate_of(comparisons: tuple, slices: tuple = (), training: bool = True) -> ChallengerGate:
    return ChallengerGate(
        champion="m:champ",
        challenger="m:chal",
        rows=600,
        tolerance=0.01,
        require_interval=False,
        confidence=0.95,
        training_gate_passed=training,
        comparisons=comparisons,
        slices=slices,
    )


def run_compare(y: np.ndarray, old: np.ndarray, new: np.ndarray, **kw: object) -> tuple:
    options = {"tolerance": 0.01, "require_interval": False, "n_boot": 40, "confidence": 0.95}
    return compare(GOALS, y, old, new, CLASSES, "late", seed=0, **(options | kw))  # type: ignore[arg-type]


def test_a_better_challenger_passes_and_a_worse_one_is_refused(rows: np.ndarray) -> None:
    weak, strong = model_outputs(rows, 0.6, 2), model_outputs(rows, 1.5, 3)
    better = gate_of(run_compare(rows, weak, strong))
    assert better.passed, better.reasons()
    assert all(c.difference > 0 and c.difference_low > 0 for c in better.comparisons)
    worse = gate_of(run_compare(rows, strong, weak))
    assert not worse.passed
    reasons = " ".join(worse.reasons())
    assert "under the champion's" in reasons


def test_scores_are_the_shared_metric_on_the_gate_rows(rows: np.ndarray) -> None:
    old, new = model_outputs(rows, 0.6, 2), model_outputs(rows, 1.5, 3)
    auc = run_compare(rows, old, new)[0]
    assert auc.champion == score("roc_auc", rows, old, CLASSES, "late")
    assert auc.challenger == score("roc_auc", rows, new, CLASSES, "late")
    assert auc.difference == pytest.approx(auc.challenger - auc.champion)
    assert auc.difference_low <= auc.difference <= auc.difference_high


def test_meeting_the_goals_is_not_enough_when_worse_than_the_champion(rows: np.ndarray) -> None:
    great, good = model_outputs(rows, 1.5, 2), model_outputs(rows, 0.8, 3)
    comparisons = run_compare(rows, great, good)
    assert all(c.meets_goal for c in comparisons)
    assert not any(c.within_tolerance for c in comparisons)
    # ... and a large enough tolerance lets it through
    assert all(c.within_tolerance for c in run_compare(rows, great, good, tolerance=0.5))


def test_interval_gate_refuses_an_equal_challenger_that_tolerance_alone_accepts(
    rows: np.ndarray,
) -> None:
    same = model_outputs(rows, 1.5, 2)
    noisy = model_outputs(rows, 1.5, 3)  # as good on average, different on each row
    plain = run_compare(rows, same, noisy, tolerance=0.05)
    strict = run_compare(rows, same, noisy, tolerance=0.0, require_interval=True)
    assert all(c.within_tolerance and c.interval_ok for c in plain)
    assert not all(c.interval_ok for c in strict)


def test_paired_interval_is_narrower_than_the_scores_spread(rows: np.ndarray) -> None:
    # Two models that agree closely: a paired interval of their difference is tight even though
    # each score alone varies a lot between resamples.
    old = model_outputs(rows, 1.0, 2)
    new = np.column_stack([np.clip(old[:, 0] + 0.01, 0, 1), 1 - np.clip(old[:, 0] + 0.01, 0, 1)])
    low, high = paired_bootstrap("roc_auc", rows, old, new, CLASSES, "late", 40, 0.95, 0)
    assert high - low < 0.01
    assert paired_bootstrap("roc_auc", rows, old, new, CLASSES, "late", 0, 0.95, 0) != (low, high)


def test_slice_floors_flag_a_weak_slice_with_enough_rows(rows: np.ndarray) -> None:
    strong = model_outputs(rows, 1.5, 3)
    frame = pd.DataFrame({"origin": np.where(np.arange(len(rows)) < 300, "JFK", "EWR")})
    coin = model_outputs(rows, 0.0, 4)
    proba = np.where((frame["origin"] == "EWR").to_numpy()[:, None], coin, strong)
    found = slice_floors(
        frame, rows, proba, CLASSES, "late", ["origin", "absent"], {"roc_auc": 0.7}, 100
    )
    by_value = {s.value: s for s in found}
    assert set(by_value) == {"JFK", "EWR"}
    assert by_value["JFK"].passed and not by_value["EWR"].passed
    assert (
        slice_floors(frame, rows, proba, CLASSES, "late", ["origin"], {"roc_auc": 0.7}, 301) == ()
    )
    gate = gate_of(run_compare(rows, coin, strong), slices=found)
    assert not gate.passed
    assert any("slice origin=EWR" in r for r in gate.reasons())


def test_a_failed_training_gate_blocks_promotion_and_the_card_says_why(rows: np.ndarray) -> None:
    gate = gate_of(
        run_compare(rows, model_outputs(rows, 0.6, 2), model_outputs(rows, 1.5, 3)), training=False
    )
    assert not gate.passed
    text = render_markdown(gate, {"gate_rows": 600, "gate_period": None})
    assert "**Not promoted**" in text and "training gate failed" in text
    assert "| roc_auc | 0.70 |" in text
    assert len(table_rows(gate)) == 2
    as_dict = gate.to_dict()
    assert as_dict["passed"] is False and as_dict["comparisons"][0]["passed"] is True


def test_each_model_is_scored_by_its_own_decision_weights(rows: np.ndarray) -> None:
    # a champion whose probabilities lean to "on_time" answers "late" only through its weights
    shy = model_outputs(rows, 1.0, 4) * np.array([0.5, 1.0])
    shy = shy / shy.sum(axis=1, keepdims=True)
    weights = {"late": 2.0, "on_time": 0.5}
    plain = {c.metric: c for c in run_compare(rows, shy, shy)}
    weighted = {c.metric: c for c in run_compare(rows, shy, shy, champion_weights=weights)}
    expected = score("balanced_accuracy", rows, shy, CLASSES, "late", weights)
    assert weighted["balanced_accuracy"].champion == pytest.approx(expected)
    assert weighted["balanced_accuracy"].champion != pytest.approx(
        plain["balanced_accuracy"].champion
    )
    assert weighted["balanced_accuracy"].challenger == plain["balanced_accuracy"].challenger
    assert weighted["roc_auc"].champion == plain["roc_auc"].champion  # probabilities only
