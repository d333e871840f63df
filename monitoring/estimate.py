"""Label-free estimates of the goal metrics (confidence-based performance estimation, CBPE).

When the model's probabilities are calibrated, row i belongs to class c with probability
`proba[i, c]`, so the confusion matrix of a window is known in expectation without any label:

    E[C[t, p]] = sum of proba[i, t] over the rows i predicted as p.

Accuracy, balanced accuracy, precision, recall and F1 follow from that expected confusion matrix
(as in NannyML's CBPE); ROC AUC from the expected true- and false-positive counts along the rows
sorted by score (one-vs-rest macro average with more than two classes).

The band around an estimate has two parts, added as variances:

- sampling noise: even with perfect probabilities the realised metric of a window varies. It is
  measured by drawing labels from the probabilities (`draws` times) and scoring each draw;
- systematic error: how far the estimate strayed from the true metric on time-ordered chunks of
  labelled data the model did not train on (the bundle's holdout sample; the reference sample's
  out-of-fold rows when there is none), beyond what sampling noise explains there. This is
  calibrated as the drift levels are: on time-ordered chunks of a period where nothing went
  wrong. A holdout holds few independent chunks (4 to 10 typically), so the errors' spread is
  itself uncertain: the systematic part is the largest one the chunks are consistent with at the
  band's level (`systematic_bound`: the Chi-squared upper bound of the errors' mean square, less
  the noise), not the point estimate `max(0, mean(error^2) - mean(noise^2))`, which is 0 whenever
  a few chunks happen to err by no more than their noise. (On the detection benchmark's 18 real
  datasets the point estimate, even inflated by Student's t, left the truth outside the band on
  14% of in-distribution windows; the bound on 10%. Verdicts did not change.)

Both parts give a standard deviation `sd`; the band at level L is `estimate +- z((1+L)/2) sd`,
and `quantile(q)` (`estimate + z(q) sd`) is what the risk policy compares with a goal.

Anchoring on labels (`anchored`): once feedback has labelled enough recent predictions, the
estimator's present error is *measured* instead of assumed: on those labelled rows the estimate
is compared with the true metric, and that bias corrects the window's estimate. Its standard
deviation is the window's (sampling noise and systematic part: the bias measured on other rows
can move from one window to the next by about that much) plus the live metric's. This catches
the drops CBPE cannot see (a changed relation between inputs and label, a new class) and
silences its false alarms where calibration drifted but the labels show the goal met. Without
labels the plain estimate stands.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from monitoring.stats import chi2_isf, rankdata
from occam.metrics import GOAL_METRICS

#: Metrics this module knows how to estimate; a goal is estimated when the registry
#: (`occam.metrics.GOAL_METRICS`) also calls it estimable. Others are judged from feedback only.
ESTIMABLE = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc")


def estimable(metric: str) -> bool:
    """Whether `metric` gets a label-free estimate."""
    found = GOAL_METRICS.get(metric)
    return metric in ESTIMABLE and found is not None and found.estimable


def decided(proba: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """The decided class code of each row: argmax of probability x decision weight, the rule
    of `occam.metrics.predicted_labels` (None: the most likely class)."""
    return (proba if weights is None else proba * weights).argmax(axis=1)


#: Labels drawn per window to measure sampling noise.
DRAWS = 64
#: Sampling noise of a larger window is measured on this many of its rows (drawn at random) and
#: scaled by sqrt(NOISE_ROWS / rows), as the noise of a share of n rows scales.
NOISE_ROWS = 5000


def z_score(q: float) -> float:
    """The standard normal quantile at `q` in (0, 1)."""
    return NormalDist().inv_cdf(q)


@dataclass(frozen=True)
class Uncertain:
    """A metric value with its uncertainty: `sd` (normal) and its two-sided band at `level`;
    `systematic` is the part of `sd` that is not sampling noise."""

    value: float
    sd: float
    level: float
    systematic: float = 0.0  # the part of `sd` that is not sampling noise

    @property
    def lower(self) -> float:
        return max(0.0, self.value - z_score((1 + self.level) / 2) * self.sd)

    @property
    def upper(self) -> float:
        return min(1.0, self.value + z_score((1 + self.level) / 2) * self.sd)

    def quantile(self, q: float) -> float:
        """The value the true metric lies under with probability `q`."""
        return self.value + z_score(q) * self.sd


def systematic_bound(
    errors: Sequence[float], noise: Sequence[float], independent: int, level: float
) -> float:
    """The largest systematic error (sd) that chunk `errors` (true minus estimated metric), each
    with the sampling noise sd `noise`, are consistent with at confidence `level`.

    The errors' mean square estimates noise^2 + systematic^2 with `independent` degrees of
    freedom (the non-overlapping chunks), so its one-sided upper bound is
    `independent * mean(errors^2) / chi2.ppf(1 - level, independent)`; the systematic part is
    what that bound leaves above the noise. A few chunks cannot show that a systematic error is
    0, only that it is at most so much: with 4 chunks whose errors are all noise, the bound is
    about 1.7 times the noise."""
    n = max(int(independent), 1)
    mean_square = float(np.mean(np.square(errors)))
    upper = n * mean_square / chi2_isf(level, n)
    return math.sqrt(max(upper - float(np.mean(np.square(noise))), 0.0))


# -- metrics from confusion matrices (vectorised over leading axes) ---------------------------


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def confusion_metric(metric: str, confusion: np.ndarray, pos: int) -> np.ndarray:
    """`metric` from confusion matrices `(..., k, k)` (true x predicted), as `occam.metrics.score`
    computes it: binary precision/recall/F1 for class `pos`, macro averages with k > 2."""
    k = confusion.shape[-1]
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    true_n = confusion.sum(axis=-1)
    pred_n = confusion.sum(axis=-2)
    if metric == "accuracy":
        return _ratio(tp.sum(-1), true_n.sum(-1))
    if metric == "balanced_accuracy":
        recall = _ratio(tp, true_n)
        present = true_n > 0  # scikit-learn leaves out classes absent from the labels
        return _ratio((recall * present).sum(-1), present.sum(-1).astype(float))
    if metric == "precision":
        per = _ratio(tp, pred_n)
    elif metric == "recall":
        per = _ratio(tp, true_n)
    elif metric == "f1":
        per = _ratio(2 * tp, true_n + pred_n)
    else:
        raise ValueError(f"{metric!r} is not a confusion-matrix metric")
    return per[..., pos] if k == 2 else per.mean(-1)


def _confusions(labels: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices of label codes `(draws, n)` against predicted codes `(n,)`."""
    draws = labels.shape[0]
    cells = labels * k + predicted[None, :] + (np.arange(draws) * k * k)[:, None]
    return np.bincount(cells.ravel(), minlength=draws * k * k).reshape(draws, k, k).astype(float)


def _auc_expected(score: np.ndarray, p: np.ndarray) -> float:
    """Expected ROC AUC: expected TP/FP counts along the rows sorted by score (ties grouped)."""
    order = np.argsort(-score, kind="stable")
    s, w = score[order], p[order]
    tp, fp = np.cumsum(w), np.cumsum(1 - w)
    last = np.r_[s[1:] != s[:-1], True]  # the end of each group of tied scores
    tp, fp = np.r_[0.0, tp[last]], np.r_[0.0, fp[last]]
    if tp[-1] <= 0 or fp[-1] <= 0:
        return float("nan")
    x, y = fp / fp[-1], tp / tp[-1]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1])) / 2)


def _auc_of_masks(ranks: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC AUC (Mann-Whitney) of each row of boolean `positive` given the score ranks."""
    n1 = positive.sum(-1).astype(float)
    n0 = positive.shape[-1] - n1
    rank_sum = positive.astype(float) @ ranks
    return _ratio(rank_sum - n1 * (n1 + 1) / 2, n1 * n0) + np.where(n1 * n0 > 0, 0, np.nan)


def auc_classes(k: int, pos: int) -> list[int]:
    """The classes whose one-vs-rest AUC makes the metric (the positive one when binary)."""
    return [pos] if k == 2 else list(range(k))


# -- the estimator -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowEstimate:
    """Estimates of the estimable goal metrics on one window, keyed by metric name."""

    metrics: dict[str, Uncertain]
    rows: int


class PerformanceEstimator:
    """CBPE for the goal metrics it can estimate; see the module docstring.

    `decision_weights` (class -> weight, None: all 1) decide the labels as the service does.
    Fitted state: `metrics_` (the estimated goal metrics), `systematic_` (metric -> systematic
    error sd from the labelled chunks), `chunk_rows_`, `chunks_`, `source_` (where the labelled
    chunks came from: "holdout", "reference" or "none").
    """

    def __init__(
        self,
        classes: Sequence[str],
        positive: str,
        metrics: Sequence[str],
        *,
        level: float = 0.9,
        draws: int = DRAWS,
        seed: int = 0,
        decision_weights: dict[str, float] | None = None,
    ) -> None:
        self.classes = classes
        self.positive = positive
        self.metrics = metrics
        self.decision_weights = decision_weights
        self.level = level
        self.draws = draws
        self.seed = seed

    @property
    def _pos(self) -> int:
        classes = list(self.classes)
        return classes.index(self.positive) if self.positive in classes else len(classes) - 1

    def fit(
        self,
        proba: np.ndarray | None,
        labels: np.ndarray | None,
        window_rows: int,
        source: str = "holdout",
    ) -> PerformanceEstimator:
        """Measure the systematic error on time-ordered chunks of labelled rows (`proba` with
        columns in class order, `labels` as class names); None: no labelled rows (no
        systematic part). Chunks span `window_rows` rows, fewer when the sample is short (at
        least 4 chunks), and overlap by half."""
        self.metrics_ = [m for m in self.metrics if estimable(m)]
        weights = self.decision_weights or {}
        self.weights_ = (
            np.asarray([float(weights.get(str(c), 1.0)) for c in self.classes]) if weights else None
        )
        self.systematic_ = dict.fromkeys(self.metrics_, 0.0)
        self.chunk_rows_, self.chunks_, self.source_ = 0, 0, "none"
        if proba is None or labels is None or not self.metrics_:
            return self
        codes = class_codes(labels, self.classes)
        known = codes >= 0
        proba, codes = proba[known], codes[known]
        rows = len(codes)
        chunk = min(window_rows, rows // 4)
        if chunk < 50:
            return self
        starts = range(0, rows - chunk + 1, max(chunk // 2, 1))
        errors: dict[str, list[float]] = {m: [] for m in self.metrics_}
        noise: dict[str, list[float]] = {m: [] for m in self.metrics_}
        for s in starts:
            part, truth = proba[s : s + chunk], codes[s : s + chunk]
            estimate = self._estimate(part)
            actual = self._score(part, truth[None, :])
            for m in self.metrics_:
                if not math.isnan(actual[m][0]) and not math.isnan(estimate[m].value):
                    errors[m].append(float(actual[m][0]) - estimate[m].value)
                    noise[m].append(estimate[m].sd)
        for m in self.metrics_:
            if errors[m]:
                self.systematic_[m] = systematic_bound(
                    errors[m], noise[m], rows // chunk, self.level
                )
        self.chunk_rows_, self.chunks_, self.source_ = chunk, len(starts), source
        return self

    def estimate(self, proba: np.ndarray) -> WindowEstimate:
        """Estimates of the window whose calibrated probabilities are `proba` (rows x classes)."""
        if not len(proba):
            return WindowEstimate(metrics={}, rows=0)
        found = self._estimate(proba)
        out = {}
        for m, u in found.items():
            if math.isnan(u.value):
                continue
            systematic = self.systematic_.get(m, 0.0)
            sd = math.sqrt(u.sd**2 + systematic**2)
            out[m] = Uncertain(u.value, sd, self.level, systematic)
        return WindowEstimate(metrics=out, rows=len(proba))

    def _estimate(self, proba: np.ndarray) -> dict[str, Uncertain]:
        """Expected metric and its sampling noise (no systematic part)."""
        k = proba.shape[1]
        predicted = decided(proba, self.weights_)
        expected = np.zeros((k, k))
        for p in range(k):  # E[C[t, p]] = sum of proba[:, t] over rows predicted p
            expected[:, p] = proba[predicted == p].sum(axis=0)
        rng = np.random.default_rng(self.seed)
        noisy, shrink = proba, 1.0
        if len(proba) > NOISE_ROWS:  # sampling noise shrinks as 1 / sqrt(rows)
            noisy = proba[np.sort(rng.choice(len(proba), NOISE_ROWS, replace=False))]
            shrink = math.sqrt(NOISE_ROWS / len(proba))
        cumulative = np.cumsum(noisy, axis=1)[:, :-1]
        uniform = rng.random((self.draws, len(noisy)))
        draws = np.zeros(uniform.shape, dtype=np.intp)  # class code: thresholds passed
        for threshold in cumulative.T:  # a loop over classes: no (draws, rows, k) array
            draws += uniform > threshold
        sampled = self._score(noisy, draws)
        out = {}
        for m in self.metrics_:
            if m == "roc_auc":
                cls = auc_classes(k, self._pos)
                value = float(np.mean([_auc_expected(proba[:, c], proba[:, c]) for c in cls]))
            else:
                value = float(confusion_metric(m, expected, self._pos))
            spread = sampled[m][~np.isnan(sampled[m])]
            sd = shrink * float(spread.std(ddof=1)) if len(spread) > 1 else 0.0
            out[m] = Uncertain(value, sd, self.level)
        return out

    def _score(self, proba: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        """Each metric for every row of label codes `labels` (draws x rows)."""
        k = proba.shape[1]
        predicted = decided(proba, self.weights_)
        confusions = _confusions(labels, predicted, k)
        out = {}
        for m in self.metrics_:
            if m == "roc_auc":
                per = [
                    _auc_of_masks(rankdata(proba[:, c]), labels == c)
                    for c in auc_classes(k, self._pos)
                ]
                out[m] = np.mean(per, axis=0)
            else:
                out[m] = confusion_metric(m, confusions, self._pos)
        return out


def anchored(
    window: WindowEstimate, on_labels: WindowEstimate, live: dict[str, Uncertain]
) -> WindowEstimate:
    """The window's estimates corrected by the bias measured on the labelled rows: `on_labels`
    is the estimate of the labelled rows, `live` their true metric with its uncertainty. Metrics
    without a live value keep their plain estimate."""
    out = dict(window.metrics)
    for m, u in window.metrics.items():
        if m not in live or m not in on_labels.metrics:
            continue
        labelled = on_labels.metrics[m]
        bias = live[m].value - labelled.value
        sd = math.sqrt(u.sd**2 + live[m].sd ** 2)
        out[m] = Uncertain(min(max(u.value + bias, 0.0), 1.0), sd, u.level)
    return WindowEstimate(metrics=out, rows=window.rows)


def class_codes(labels: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Class codes of `labels` (-1 for a label that is not a class)."""
    index = {str(c): i for i, c in enumerate(classes)}
    found = map(index.get, map(str, labels), itertools.repeat(-1))
    return np.fromiter(found, dtype=np.int64, count=len(labels))
