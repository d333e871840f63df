"""Calibrated probabilities: the forest's vote shares turned into probabilities one can trust.

A Random Forest with balanced class weights votes too high for the rare class, so its "0.7" is
not 70%. The served model is a scikit-learn Pipeline whose last step is a
`CalibratedClassifierCV(forest, ensemble=False)`: one forest fitted on every training row, and
one calibration map fitted on the forest's out-of-fold probabilities (time-ordered folds when the
split is by time). Serving costs the same as the bare forest, and the ONNX form converts it.

The method (sigmoid or isotonic) is chosen by the Brier score of *cross-validated calibrated*
out-of-fold probabilities: the forest's out-of-fold probabilities are calibrated fold by fold
with a map fitted on the other folds, so neither the forest nor the map has seen the row. These
same probabilities are the honest basis for the abstain threshold and the monitor's reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline

from training.evaluate import aligned_proba, brier

Method = Literal["sigmoid", "isotonic"]
METHODS: tuple[Method, ...] = ("sigmoid", "isotonic")
#: Name of the pipeline's last step: the calibrated forest.
CALIBRATED = "calibrated"


class ProbaPassthrough(ClassifierMixin, BaseEstimator):
    """A "classifier" whose input is already a probability matrix: `predict_proba(P) == P`.

    Lets `CalibratedClassifierCV` fit its calibration map on stored out-of-fold probabilities
    (exactly as it would on a model's) without refitting any forest.
    """

    def __init__(self, classes: tuple[str, ...] = ()) -> None:
        self.classes = classes

    def fit(self, X: Any, y: Any) -> ProbaPassthrough:
        self.classes_ = np.asarray(self.classes)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray(X, dtype=float)

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_)[np.argmax(np.asarray(X), axis=1)]


def calibrate_oof(
    oof: np.ndarray, y: np.ndarray, classes: list[str], method: Method, folds: list[np.ndarray]
) -> np.ndarray:
    """Out-of-fold probabilities calibrated fold by fold: the rows of each fold (index array in
    `folds`) get the map fitted on the other folds' rows."""
    base = FrozenEstimator(ProbaPassthrough(tuple(classes)).fit(oof, y))
    out = np.empty_like(oof, dtype=float)
    for fold in folds:
        rest = np.setdiff1d(np.arange(len(y)), fold)
        mapped = CalibratedClassifierCV(base, method=method).fit(oof[rest], y[rest])
        out[fold] = aligned_proba(mapped, oof[fold], classes)
    return out


@dataclass(frozen=True)
class CalibrationChoice:
    """The chosen method, each candidate's Brier score on cross-validated calibrated
    out-of-fold probabilities, and the uncalibrated forest's on the same rows."""

    method: Method
    brier: dict[str, float]
    uncalibrated_brier: float
    calibrated_oof: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "oof_brier": self.brier,
            "oof_brier_uncalibrated": self.uncalibrated_brier,
            "chosen_on": "Brier score of cross-validated calibrated out-of-fold probabilities",
        }


def choose_method(
    oof: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    folds: list[np.ndarray],
    setting: Literal["auto", "sigmoid", "isotonic"] = "auto",
) -> CalibrationChoice:
    """Calibrate `oof` both ways and keep the lower Brier score (ties go to sigmoid, the simpler
    map); a fixed `setting` is still scored, for the card."""
    candidates = {m: calibrate_oof(oof, y, classes, m, folds) for m in METHODS}
    scores: dict[str, float] = {m: brier(y, p, classes) for m, p in candidates.items()}
    method: Method = min(METHODS, key=lambda m: scores[m]) if setting == "auto" else setting
    return CalibrationChoice(
        method=method,
        brier=scores,
        uncalibrated_brier=brier(y, oof, classes),
        calibrated_oof=candidates[method],
    )


def calibrated_pipeline(pipeline: Pipeline, method: Method, cv: Any) -> Pipeline:
    """The unfitted served model: the pipeline's preprocessing, then its forest wrapped in
    `CalibratedClassifierCV(method, cv, ensemble=False)` (one forest on all rows, one map fitted
    on its out-of-fold probabilities)."""
    *prepare, (_, forest) = pipeline.steps
    calibrated = CalibratedClassifierCV(clone(forest), method=method, cv=cv, ensemble=False)
    return Pipeline([*[(name, clone(step)) for name, step in prepare], (CALIBRATED, calibrated)])


def bare_forest_proba(model: Pipeline, x: Any, classes: list[str]) -> np.ndarray:
    """The calibrated model's own forest, uncalibrated, on rows `x` (for the reliability plot)."""
    forest = model.steps[-1][1].calibrated_classifiers_[0].estimator
    return aligned_proba(forest, model[:-1].transform(x), classes)


def reliability(
    y: np.ndarray, proba: np.ndarray, classes: list[str], positive: str, bins: int
) -> dict[str, Any]:
    """Reliability curve and expected calibration error (ECE) with `bins` equal-width bins.

    Binary targets: the positive class's probability against how often the row is positive.
    More classes: the top-class probability against how often the top class is right
    (top-label calibration). ECE is the mean |observed - predicted| over bins, weighted by rows;
    0 is perfect.
    """
    y = np.asarray(y).astype(str)
    if len(classes) == 2:
        pos = classes.index(positive)
        predicted, observed = proba[:, pos], (y == positive).astype(float)
        kind = f"P({positive})"
    else:
        predicted = proba.max(axis=1)
        observed = (np.asarray(classes)[proba.argmax(axis=1)] == y).astype(float)
        kind = "top-class probability"
    which = np.clip((predicted * bins).astype(int), 0, bins - 1)
    curve = []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        mean_p, freq = float(predicted[mask].mean()), float(observed[mask].mean())
        curve.append({"bin": b, "rows": int(mask.sum()), "predicted": mean_p, "observed": freq})
        ece += mask.mean() * abs(freq - mean_p)
    return {"kind": kind, "bins": bins, "ece": float(ece), "curve": curve}


def decision_weights(
    class_weight: Any, y: np.ndarray, classes: list[str]
) -> dict[str, float] | None:
    """Decision weights from the forest's `class_weight` (see `occam.metrics.predicted_labels`).

    `class_weight` says how the user weighs errors per class; once the probabilities are
    calibrated, the forest's vote no longer carries it, so the decision does: 'balanced' (and
    'balanced_subsample') give each class n / (classes x rows of the class) on the training
    rows, a mapping gives its own weights, None gives None (the most likely class).
    """
    if class_weight is None:
        return None
    if isinstance(class_weight, str):
        values, counts = np.unique(np.asarray(y).astype(str), return_counts=True)
        shares = dict(zip(values.tolist(), counts.tolist(), strict=True))
        return {c: len(y) / (len(classes) * shares[c]) for c in classes if c in shares}
    return {str(c): float(w) for c, w in dict(class_weight).items()}
