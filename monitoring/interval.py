"""Confidence intervals of the live goal metrics, from the labelled predictions.

- accuracy: the Wilson score interval (exact enough from 30 labels, never outside [0, 1]);
- ROC AUC: DeLong's variance (one-vs-rest per class and the mean of the standard deviations
  with more than two classes, which bounds the macro average's from above);
- balanced accuracy, precision, recall, F1, average precision: a bootstrap (`draws` resamples
  of the labelled rows, seeded: the same labels give the same interval).

Each interval is an `Uncertain` (the value with its spread) so that the risk policy compares
live metrics and label-free estimates with a goal in the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from monitoring.estimate import Uncertain, auc_classes, confusion_metric, decided, z_score
from monitoring.stats import rankdata
from occam.metrics import score

DRAWS = 100


@dataclass(frozen=True)
class WilsonUncertain(Uncertain):
    """A proportion of `n` trials: its band and quantiles follow the Wilson score interval."""

    n: int = 0

    def _bound(self, z: float) -> float:
        if self.n <= 0:
            return self.value
        p, n = self.value, self.n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return min(1.0, max(0.0, centre + math.copysign(half, z)))

    @property
    def lower(self) -> float:
        return self._bound(-z_score((1 + self.level) / 2))

    @property
    def upper(self) -> float:
        return self._bound(z_score((1 + self.level) / 2))

    def quantile(self, q: float) -> float:
        return self._bound(z_score(q)) if q != 0.5 else self.value


def _delong_sd(score_: np.ndarray, positive: np.ndarray) -> float:
    """DeLong's standard deviation of the ROC AUC of `score_` for the boolean labels."""
    pos, neg = score_[positive], score_[~positive]
    n1, n0 = len(pos), len(neg)
    if n1 < 2 or n0 < 2:
        return float("nan")
    ranks = rankdata(np.r_[pos, neg])
    v10 = (ranks[:n1] - rankdata(pos)) / n0
    v01 = 1 - (ranks[n1:] - rankdata(neg)) / n1
    return float(math.sqrt(v10.var(ddof=1) / n1 + v01.var(ddof=1) / n0))


def live_intervals(
    labels: np.ndarray,
    proba: np.ndarray,
    values: dict[str, float],
    classes: Sequence[str],
    positive: str,
    level: float,
    draws: int = DRAWS,
    seed: int = 0,
    decision_weights: dict[str, float] | None = None,
) -> dict[str, Uncertain]:
    """Intervals around the live `values` (metric -> value, as `occam.metrics.score` gave them)
    of the labelled rows (`labels` as class codes, `proba` rows x classes); labels are decided
    with `decision_weights` as the service decides them."""
    k = len(classes)
    pos = list(classes).index(positive) if positive in classes else k - 1
    n = len(labels)
    weights = decision_weights or {}
    predicted = decided(
        proba, np.asarray([weights.get(str(c), 1.0) for c in classes]) if weights else None
    )
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, (draws, n))  # bootstrap resamples of the labelled rows
    cells = (labels * k + predicted)[picks] + (np.arange(draws) * k * k)[:, None]
    confusions = np.bincount(cells.ravel(), minlength=draws * k * k).reshape(draws, k, k)
    out: dict[str, Uncertain] = {}
    for metric, value in values.items():
        if metric == "accuracy":
            sd = math.sqrt(value * (1 - value) / n) if n else 0.0
            out[metric] = WilsonUncertain(value, sd, level, n=n)
            continue
        if metric == "roc_auc":
            sds = [_delong_sd(proba[:, c], labels == c) for c in auc_classes(k, pos)]
            sd = float(np.mean(sds))
        elif metric == "average_precision":
            picks = picks[: min(draws, 30)]
            names = np.asarray(classes)
            sd = float(
                np.nanstd(
                    [
                        score(metric, names[labels[i]], proba[i], list(classes), positive)
                        for i in picks
                    ],
                    ddof=1,
                )
            )
        else:
            sd = float(np.nanstd(confusion_metric(metric, confusions, pos), ddof=1))
        if not math.isnan(sd):
            out[metric] = Uncertain(value, sd, level)
    return out
