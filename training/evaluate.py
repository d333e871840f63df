"""Scoring: one function scores the model and the baseline alike; the gate compares them to
the goals. All metrics are "higher is better" and lie in [0, 1]."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from occam.config import Goal
from occam.metadata import BrierGate, GateRecord, GoalResult
from occam.metrics import (
    predicted_labels,
    score,
)  # re-exported: the gate and the monitor share them
from occam.schema import category_key

#: Decision weights per class (see `occam.metrics.predicted_labels`); None: most likely class.
Weights = Mapping[str, float] | None


def aligned_proba(estimator: Any, x: Any, classes: list[str]) -> np.ndarray:
    """predict_proba with columns in `classes` order (zeros for a class the estimator lacks)."""
    proba = estimator.predict_proba(x)
    own = [str(c) for c in estimator.classes_]
    out = np.zeros((proba.shape[0], len(classes)))
    for i, c in enumerate(own):
        out[:, classes.index(c)] = proba[:, i]
    return out


def make_scorer(
    metric: str, positive: str, weights: Weights = None
) -> Callable[[Any, pd.DataFrame, Any], float]:
    """An sklearn scorer (estimator, X, y) -> float using `score`, for cross-validation."""

    def scorer(estimator: Any, X: pd.DataFrame, y: Any) -> float:
        classes = [str(c) for c in estimator.classes_]
        return score(metric, y, estimator.predict_proba(X), classes, positive, weights)

    scorer.__name__ = f"occam_{metric}"
    return scorer


def bootstrap_ci(
    metric: str,
    y: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    positive: str,
    n_boot: int,
    confidence: float,
    seed: int,
    weights: Weights = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `metric` over rows resampled with replacement."""
    y = np.asarray(y).astype(str)
    return percentile_interval(
        lambda idx: score(metric, y[idx], proba[idx], classes, positive, weights),
        len(y),
        n_boot,
        confidence,
        seed,
    )


def percentile_interval(
    statistic: Callable[[np.ndarray], float],
    rows: int,
    n_boot: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """The percentile bootstrap interval (at `confidence`) of `statistic(positions)` over
    `n_boot` resamples of `rows` row positions drawn with replacement (seeded by `seed`).

    Resamples where the statistic is NaN (e.g. one class only) are left out; (nan, nan) when
    `n_boot` is 0 or every resample gave NaN. The one resampling loop of training: the gate's
    intervals (`bootstrap_ci`) and the champion gate's paired differences
    (`training.challenger.paired_bootstrap`) both use it.
    """
    if n_boot == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        value = statistic(rng.integers(0, rows, rows))
        if not np.isnan(value):
            values.append(value)
    if not values:
        return (float("nan"), float("nan"))
    alpha = (1 - confidence) / 2
    return (float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha)))


#: The training gate's result is the bundle's record of it (`occam.metadata`).
GateResult = GateRecord


def gate(
    goals: list[Goal],
    y: np.ndarray,
    model_proba: np.ndarray,
    baseline_proba: np.ndarray,
    classes: list[str],
    positive: str,
    margin: float,
    n_boot: int,
    confidence: float,
    seed: int,
    weights: Weights = None,
) -> GateResult:
    """Score model and baseline on the same rows with the same function, with bootstrap CIs,
    and compare their Brier scores. The model's labels follow its decision `weights`; the
    baseline's are its own most likely class."""
    results = []
    for goal in goals:
        m = score(goal.metric, y, model_proba, classes, positive, weights)
        b = score(goal.metric, y, baseline_proba, classes, positive)
        lo, hi = bootstrap_ci(
            goal.metric, y, model_proba, classes, positive, n_boot, confidence, seed, weights
        )
        blo, bhi = bootstrap_ci(
            goal.metric, y, baseline_proba, classes, positive, n_boot, confidence, seed
        )
        results.append(
            GoalResult(
                metric=goal.metric,
                threshold=goal.threshold,
                baseline=b,
                model=m,
                ci_low=lo,
                ci_high=hi,
                baseline_ci_low=blo,
                baseline_ci_high=bhi,
                met=m >= goal.threshold,
                beats_baseline=m - b >= margin,
            )
        )
    return GateResult(
        goals=tuple(results),
        margin=margin,
        brier=BrierGate(
            model=brier(y, model_proba, classes), baseline=brier(y, baseline_proba, classes)
        ),
    )


def per_class_report(
    y: np.ndarray, proba: np.ndarray, classes: list[str], weights: Weights = None
) -> dict[str, Any]:
    """Precision, recall, F1 and support per class, and the confusion matrix (rows = truth)."""
    predicted = predicted_labels(proba, classes, weights)
    y = np.asarray(y).astype(str)
    p, r, f, s = skm.precision_recall_fscore_support(y, predicted, labels=classes, zero_division=0)
    return {
        "per_class": {
            c: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": {
            "labels": classes,
            "matrix": skm.confusion_matrix(y, predicted, labels=classes).tolist(),
        },
        "brier": brier(y, proba, classes),
    }


def brier(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> float:
    """Multi-class Brier score: mean squared distance between probabilities and the one-hot
    truth, summed over classes (0 is perfect; for two classes, twice sklearn's binary score)."""
    onehot = (np.asarray(y).astype(str)[:, None] == np.asarray(classes)[None, :]).astype(float)
    return float(np.mean(np.sum((proba - onehot) ** 2, axis=1)))


def slice_report(
    frame: pd.DataFrame,
    y: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    positive: str,
    columns: list[str],
    metric: str,
    min_rows: int,
    weights: Weights = None,
) -> dict[str, Any]:
    """`metric` and accuracy per value of each slice column (values with >= min_rows rows),
    and the worst slice by `metric`.

    Slice values are named by the text the model's schema gives them (`category_text`, with
    `MISSING_CATEGORY` for a missing value), so a code read as 12.0 from a CSV with gaps is
    the slice "12", the category the card and the service call it."""
    out: dict[str, Any] = {"metric": metric, "columns": {}, "worst": None}
    worst: tuple[float, str, str, int] | None = None
    y = np.asarray(y).astype(str)
    for column in columns:
        rows: list[dict[str, Any]] = []
        values = frame[column].map(category_key).to_numpy(dtype=object)
        for value in pd.unique(values):
            mask = values == value
            if mask.sum() < min_rows:
                continue
            m = score(metric, y[mask], proba[mask], classes, positive, weights)
            acc = score("accuracy", y[mask], proba[mask], classes, positive, weights)
            rows.append({"value": str(value), "rows": int(mask.sum()), metric: m, "accuracy": acc})
            if not np.isnan(m) and (worst is None or m < worst[0]):
                worst = (m, column, str(value), int(mask.sum()))
        out["columns"][column] = sorted(rows, key=lambda r: r[metric])
    if worst is not None:
        out["worst"] = {"column": worst[1], "value": worst[2], "rows": worst[3], metric: worst[0]}
    return out


def abstain_threshold(
    y: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    target_precision: float,
    weights: Weights = None,
) -> dict[str, Any]:
    """The lowest confidence (top-class probability) at which answered rows reach
    `target_precision` accuracy (of the decided label); rows under it are answered "I don't
    know".

    Returns the threshold, the precision and coverage (share answered) it gives on these rows,
    and `reached`: False when even the most confident rows miss the target (threshold 1.0).
    """
    confidence = proba.max(axis=1)
    correct = predicted_labels(proba, classes, weights) == np.asarray(y).astype(str)
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(correct[order])
    answered = np.arange(1, len(order) + 1)
    precision = hits / answered
    # Only cut between distinct confidence values: equal confidences are answered together.
    sorted_conf = confidence[order]
    boundary = np.r_[sorted_conf[1:] != sorted_conf[:-1], True]
    ok = np.where(boundary & (precision >= target_precision))[0]
    if len(ok) == 0:
        return {"threshold": 1.0, "precision": float("nan"), "coverage": 0.0, "reached": False}
    last = int(ok.max())
    return {
        "threshold": float(sorted_conf[last]),
        "precision": float(precision[last]),
        "coverage": float(answered[last] / len(order)),
        "reached": True,
    }


def abstain_effect(
    y: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    threshold: float,
    weights: Weights = None,
) -> dict[str, float]:
    """Precision and coverage that a confidence threshold gives on other rows (the test set)."""
    confidence = proba.max(axis=1)
    answered = confidence >= threshold
    correct = predicted_labels(proba, classes, weights) == np.asarray(y).astype(str)
    precision = float(correct[answered].mean()) if answered.any() else float("nan")
    return {"precision": precision, "coverage": float(answered.mean())}
