"""Data quality of the window, the model's outputs, and live quality from feedback.

Data quality counts rows, not cells: `missing_ratio` is the share of window rows with at least
one missing feature (as marked by the service), likewise for unseen categories and out-of-range
numbers. Live quality scores the last labelled predictions with `occam.metrics.score`, the very
function the training gate used, against the same goal thresholds, with an interval around each
value (`monitoring.interval`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from monitoring.estimate import (
    PerformanceEstimator,
    Uncertain,
    WindowEstimate,
    class_codes,
    confusion_metric,
    decided,
)
from monitoring.interval import live_intervals
from monitoring.windows import FeedbackJoin, WindowData
from occam.metrics import score

#: Goal metrics read off the confusion matrix of the labelled rows (the very values of
#: `occam.metrics.score`, without scikit-learn's input checks: tests/monitoring/test_estimate.py);
#: precision, recall and F1 only when binary (scikit-learn's macro average skips classes absent
#: from both labels and answers). Others are scored by `occam.metrics.score`.
FROM_CONFUSION = ("accuracy", "balanced_accuracy")
BINARY_FROM_CONFUSION = ("precision", "recall", "f1")


@dataclass(frozen=True)
class DataQuality:
    """Shares (0-1) of window rows: with a missing feature, an unseen category, a number out of
    the training range; answered with the abstain label. `confidence_mean` is the mean top-class
    probability, `class_ratio` the share of rows per predicted (top) class."""

    rows: int
    missing_ratio: float
    unseen_category_ratio: float
    out_of_range_ratio: float
    abstention_ratio: float
    confidence_mean: float
    class_ratio: dict[str, float]


def data_quality(data: WindowData, classes: Sequence[str]) -> DataQuality | None:
    """Quality figures of a window; None for an empty window."""
    if not data.rows:
        return None
    predicted = data.predicted.astype(str)
    return DataQuality(
        rows=data.rows,
        missing_ratio=float(data.marks["missing"].mean()),
        unseen_category_ratio=float(data.marks["unseen_category"].mean()),
        out_of_range_ratio=float(data.marks["out_of_range"].mean()),
        abstention_ratio=float(data.abstained.mean()),
        confidence_mean=float(np.nanmean(data.confidence)) if data.rows else float("nan"),
        class_ratio={c: float(np.mean(predicted == c)) for c in classes},
    )


@dataclass(frozen=True)
class LiveQuality:
    """Goal metrics on the last `labels` labelled predictions.

    `metrics` is empty until `labels >= min_labels` (too few labels to judge); `intervals`
    holds each value with its uncertainty (band at the configured level), `estimated` the
    label-free estimate of the same rows (to measure the estimator's bias); `below` lists the
    goals whose live value is under their threshold. `served` is when the scored predictions
    were served (oldest, newest; Unix seconds; None when unknown): labels come back late, so
    the live metrics judge older traffic than the window's, and this says which.
    """

    labels: int
    min_labels: int
    metrics: dict[str, float]
    thresholds: dict[str, float]
    intervals: dict[str, Uncertain]
    estimated: WindowEstimate | None = None
    served: tuple[float, float] | None = None

    @property
    def judged(self) -> bool:
        return self.labels >= self.min_labels

    @property
    def below(self) -> list[str]:
        return [m for m, v in self.metrics.items() if v < self.thresholds[m]]


def live_quality(
    join: FeedbackJoin,
    classes: Sequence[str],
    positive: str,
    goals: dict[str, float],
    min_labels: int,
    level: float = 0.9,
    estimator: PerformanceEstimator | None = None,
    decision_weights: dict[str, float] | None = None,
) -> LiveQuality:
    """Score the labelled rows whose true label is a class (feedback naming anything else, such
    as an "unknown" label, is left out). `goals` maps metric name to threshold; `level` is the
    two-sided level of the intervals."""
    labels, proba = join.labelled_arrays(classes)
    known = np.isin(labels.astype(str), list(classes))
    labels, proba = labels[known], proba[known]
    times = join.served_times()[known]
    times = times[~np.isnan(times)]
    served = (float(times.min()), float(times.max())) if len(times) else None
    metrics: dict[str, float] = {}
    codes = class_codes(labels, classes)
    if len(labels) >= min_labels:
        k = len(classes)
        pos = list(classes).index(positive) if positive in classes else k - 1
        weights = decision_weights or {}
        predicted = decided(
            proba, np.asarray([weights.get(str(c), 1.0) for c in classes]) if weights else None
        )
        confusion = np.bincount(codes * k + predicted, minlength=k * k).reshape(k, k)
        with warnings.catch_warnings():
            # e.g. "y_pred contains classes not in y_true" when the labels hold one class:
            # a fact about the traffic, not worth a warning on every check.
            warnings.simplefilter("ignore", UserWarning)
            for metric in goals:
                if metric in FROM_CONFUSION or (k == 2 and metric in BINARY_FROM_CONFUSION):
                    value = float(confusion_metric(metric, confusion.astype(float), pos))
                else:
                    value = score(metric, labels, proba, list(classes), positive, decision_weights)
                if not np.isnan(value):  # e.g. ROC AUC on labels of a single class
                    metrics[metric] = value
    intervals = (
        live_intervals(
            codes, proba, metrics, classes, positive, level=level, decision_weights=decision_weights
        )
        if metrics
        else {}
    )
    return LiveQuality(
        labels=len(labels),
        min_labels=min_labels,
        metrics=metrics,
        thresholds=dict(goals),
        intervals=intervals,
        estimated=estimator.estimate(proba) if estimator is not None and metrics else None,
        served=served,
    )
