"""Goal metrics: one registry (`GOAL_METRICS`) shared by the config, the training gate and the
live monitor.

Each metric is defined once, as a `GoalMetric`: its name, its scoring function, whether it
refers to a positive class, and whether it can be estimated without labels from calibrated
probabilities (confidence-based performance estimation). All metrics are "higher is better" and
lie in [0, 1]. `score(metric, ...)` is the front door; training (`training.evaluate`) and the
monitoring sidecar both call it, so a live metric is computed exactly as the gate computed it on
the held-out test set.

Labels are decided from calibrated probabilities by `predicted_labels`: the class with the
highest probability times its decision weight (the bundle's `decision_weights`; all 1 means the
plain most likely class). Weights express how the user weighs errors per class (a forest with
`class_weight: balanced` decides as if the classes were equally common) while the probabilities
stay honest. Every label metric, the service's answers and the monitor use this one rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def _skm() -> Any:
    """`sklearn.metrics`, imported on first use: the monitor reads most goal metrics off its own
    confusion matrices and intervals, and importing scikit-learn costs it about 20 MiB."""
    from sklearn import metrics

    return metrics


#: (y_true as str, proba with columns in `classes` order, decided labels, classes, index of the
#: positive class) -> value
_Scorer = Callable[[np.ndarray, np.ndarray, np.ndarray, list[str], int], float]


class LabelDecider:
    """`predicted_labels` for fixed classes and weights, with both prepared once (the service
    decides every request's labels with one)."""

    def __init__(self, classes: list[str], weights: Mapping[str, float] | None = None) -> None:
        self.names = np.asarray([str(c) for c in classes])
        self.scale = (
            np.asarray([float(weights.get(str(c), 1.0)) for c in classes]) if weights else None
        )

    def __call__(self, proba: np.ndarray) -> np.ndarray:
        proba = np.asarray(proba, dtype=float)
        if self.scale is not None:
            proba = proba * self.scale
        return self.names[np.argmax(proba, axis=1)]


def predicted_labels(
    proba: np.ndarray, classes: list[str], weights: Mapping[str, float] | None = None
) -> np.ndarray:
    """The decided label of each row: argmax over classes of probability x decision weight
    (a missing weight counts 1; None: the most likely class)."""
    return LabelDecider(classes, weights)(proba)


@dataclass(frozen=True)
class GoalMetric:
    """One goal metric.

    `needs_positive`: on a binary target the metric is computed for one class
    (`goals_positive_label`); with more classes it is a macro average over classes.
    `estimable`: a label-free estimate from calibrated probabilities is possible.
    """

    name: str
    needs_positive: bool
    estimable: bool
    description: str
    scorer: _Scorer = field(repr=False, compare=False)

    def score(
        self,
        y_true: Any,
        proba: np.ndarray,
        classes: list[str],
        positive: str,
        weights: Mapping[str, float] | None = None,
    ) -> float:
        """The metric of probabilities `proba` (columns in `classes` order) against `y_true`.

        `positive` is the class binary metrics refer to (the last class when it is not one of
        `classes`); `weights` the decision weights that turn probabilities into labels (see
        `predicted_labels`). NaN when the metric is undefined on these rows (ROC AUC with one
        class).
        """
        y = np.asarray(y_true).astype(str)
        names = [str(c) for c in classes]
        pos = names.index(positive) if positive in names else len(names) - 1
        proba = np.asarray(proba, dtype=float)
        return float(self.scorer(y, proba, predicted_labels(proba, names, weights), names, pos))


def _accuracy(y: np.ndarray, _: np.ndarray, pred: np.ndarray, c: list[str], pos: int) -> float:
    return float(_skm().accuracy_score(y, pred))


def _balanced_accuracy(
    y: np.ndarray, _: np.ndarray, pred: np.ndarray, c: list[str], pos: int
) -> float:
    return float(_skm().balanced_accuracy_score(y, pred))


def _roc_auc(
    y: np.ndarray, proba: np.ndarray, _: np.ndarray, classes: list[str], pos: int
) -> float:
    if len(np.unique(y)) < 2:
        return float("nan")
    if len(classes) == 2:
        return float(_skm().roc_auc_score(y == classes[pos], proba[:, pos]))
    # scikit-learn wants rows that sum to 1 within 1e-5; probabilities read back from the log are
    # rounded (`occam.records.PROBABILITY_DIGITS`), so four classes may sum to 1 +- 2e-4
    total = proba.sum(axis=1, keepdims=True)
    proba = np.divide(proba, total, out=np.full_like(proba, 1 / len(classes)), where=total > 0)
    return float(_skm().roc_auc_score(y, proba, multi_class="ovr", labels=classes))


def _average_precision(
    y: np.ndarray, proba: np.ndarray, _: np.ndarray, classes: list[str], pos: int
) -> float:
    if len(classes) == 2:
        return float(_skm().average_precision_score(y == classes[pos], proba[:, pos]))
    onehot = y[:, None] == np.asarray(classes)[None, :]
    return float(_skm().average_precision_score(onehot, proba, average="macro"))


def _label_metric(function: str) -> _Scorer:
    """f1/precision/recall of the top-class prediction: binary for the positive class, else
    macro-averaged over classes; 0 where undefined (nothing predicted or nothing true).
    `function` names the `sklearn.metrics` scorer."""

    def scorer(
        y: np.ndarray, _: np.ndarray, pred: np.ndarray, classes: list[str], pos: int
    ) -> float:
        kwargs: dict[str, Any] = {"zero_division": 0}
        if len(classes) == 2:
            kwargs |= {"pos_label": classes[pos], "average": "binary"}
        else:
            kwargs |= {"labels": classes, "average": "macro"}
        return float(getattr(_skm(), function)(y, pred, **kwargs))

    return scorer


_ALL = (
    GoalMetric("accuracy", False, True, "share of rows whose top class is right", _accuracy),
    GoalMetric(
        "balanced_accuracy",
        False,
        True,
        "mean recall over classes (accuracy that ignores class balance)",
        _balanced_accuracy,
    ),
    GoalMetric(
        "roc_auc",
        False,
        True,
        "ranking quality of the positive class's probability (one-vs-rest macro average "
        "with more classes)",
        _roc_auc,
    ),
    GoalMetric(
        "average_precision",
        True,
        False,
        "area under the precision-recall curve of the positive class",
        _average_precision,
    ),
    GoalMetric(
        "f1", True, True, "harmonic mean of precision and recall", _label_metric("f1_score")
    ),
    GoalMetric(
        "precision",
        True,
        True,
        "share of rows predicted positive that are positive",
        _label_metric("precision_score"),
    ),
    GoalMetric(
        "recall",
        True,
        True,
        "share of positive rows predicted positive",
        _label_metric("recall_score"),
    ),
)

#: Every goal metric Occam knows, by name. Add a metric here and nowhere else.
GOAL_METRICS: dict[str, GoalMetric] = {m.name: m for m in _ALL}


def metric_names() -> list[str]:
    """The registered metric names, in registry order (for error messages and `--help`)."""
    return list(GOAL_METRICS)


def get_metric(name: str) -> GoalMetric:
    """The registered metric `name`; `ValueError` naming every allowed name otherwise."""
    try:
        return GOAL_METRICS[name]
    except KeyError:
        raise ValueError(
            f"unknown goal metric {name!r}; allowed: {', '.join(map(repr, metric_names()))}"
        ) from None


def score(
    metric: str,
    y_true: Any,
    proba: np.ndarray,
    classes: list[str],
    positive: str,
    weights: Mapping[str, float] | None = None,
) -> float:
    """Score probabilities `proba` (columns in `classes` order) against true labels with the
    registered metric `metric`; see `GoalMetric.score`."""
    return get_metric(metric).score(y_true, proba, classes, positive, weights)
