"""Calibration pieces on synthetic probabilities whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from training.calibration import calibrate_oof, choose_method, reliability
from training.evaluate import brier

CLASSES = ["no", "yes"]


def overconfident(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True P(yes) uniform in [0.1, 0.9]; the 'model' pushes it towards the ends."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.1, 0.9, n)
    y = np.where(rng.uniform(size=n) < p, "yes", "no")
    logit = np.log(p / (1 - p)) * 3  # three times too sure
    q = 1 / (1 + np.exp(-logit))
    return y, np.column_stack([1 - q, q]), np.column_stack([1 - p, p])


def folds(n: int, k: int = 3) -> list[np.ndarray]:
    return np.array_split(np.arange(n), k)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibrating_out_of_fold_fixes_overconfidence(method: str) -> None:
    y, raw, truth = overconfident()
    fixed = calibrate_oof(raw, y, CLASSES, method, folds(len(y)))  # type: ignore[arg-type]
    assert np.allclose(fixed.sum(axis=1), 1)
    assert brier(y, fixed, CLASSES) < brier(y, raw, CLASSES) - 0.02
    # close to the best possible (the true probabilities)
    assert brier(y, fixed, CLASSES) < brier(y, truth, CLASSES) + 0.01
    assert reliability(y, fixed, CLASSES, "yes", 10)["ece"] < 0.03
    assert reliability(y, raw, CLASSES, "yes", 10)["ece"] > 0.08


def test_choice_takes_the_lower_brier_and_a_fixed_setting_is_kept() -> None:
    y, raw, _ = overconfident()
    auto = choose_method(raw, y, CLASSES, folds(len(y)))
    assert auto.brier[auto.method] == min(auto.brier.values())
    assert auto.uncalibrated_brier > max(auto.brier.values())
    fixed = choose_method(raw, y, CLASSES, folds(len(y)), "isotonic")
    assert fixed.method == "isotonic"
    assert brier(y, fixed.calibrated_oof, CLASSES) == pytest.approx(fixed.brier["isotonic"])


def test_reliability_curve_of_true_probabilities_lies_on_the_diagonal() -> None:
    y, _, truth = overconfident(20000)
    rel = reliability(y, truth, CLASSES, "yes", 10)
    assert rel["ece"] < 0.02 and rel["kind"] == "P(yes)"
    assert sum(p["rows"] for p in rel["curve"]) == len(y)
    for point in rel["curve"]:
        assert abs(point["observed"] - point["predicted"]) < 0.05
    # more classes: top-label reliability
    three = np.column_stack([truth, np.zeros(len(y))])
    assert reliability(y, three, ["no", "yes", "x"], "yes", 5)["kind"] == "top-class probability"
