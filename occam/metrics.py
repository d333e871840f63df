"""Goal metrics: one `score` function shared by the training gate and the live monitor.

All metrics are "higher is better" and lie in [0, 1]. Training (`training.evaluate`) and the
monitoring sidecar both import `score` from here, so a live metric is computed exactly as the
gate computed it on the held-out test set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn import metrics as skm


def score(metric: str, y_true: Any, proba: np.ndarray, classes: list[str], positive: str) -> float:
    """Score probabilities `proba` (columns in `classes` order) against true labels.

    `positive` is the class that binary metrics (roc_auc, average_precision, f1, precision,
    recall) refer to; with more than two classes these use macro averages over classes.
    """
    y = np.asarray(y_true).astype(str)
    classes = [str(c) for c in classes]
    predicted = np.asarray(classes)[np.argmax(proba, axis=1)]
    binary = len(classes) == 2
    pos = classes.index(positive) if positive in classes else len(classes) - 1
    if metric == "accuracy":
        return float(skm.accuracy_score(y, predicted))
    if metric == "balanced_accuracy":
        return float(skm.balanced_accuracy_score(y, predicted))
    if metric == "roc_auc":
        if len(np.unique(y)) < 2:
            return float("nan")
        if binary:
            return float(skm.roc_auc_score(y == classes[pos], proba[:, pos]))
        return float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
    if metric == "average_precision":
        if binary:
            return float(skm.average_precision_score(y == classes[pos], proba[:, pos]))
        onehot = y[:, None] == np.asarray(classes)[None, :]
        return float(skm.average_precision_score(onehot, proba, average="macro"))
    functions: dict[str, Callable[..., float]] = {
        "f1": skm.f1_score,
        "precision": skm.precision_score,
        "recall": skm.recall_score,
    }
    if metric in functions:
        kwargs: dict[str, Any] = {"zero_division": 0}
        if binary:
            kwargs |= {"pos_label": classes[pos], "average": "binary"}
        else:
            kwargs |= {"labels": classes, "average": "macro"}
        return float(functions[metric](y, predicted, **kwargs))
    raise ValueError(f"unknown metric {metric!r}")
