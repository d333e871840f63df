"""Label-free estimates (CBPE), live-metric intervals and importance-weighted drift."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from monitoring.drift import DriftResult, FeatureDrift
from monitoring.estimate import (
    ESTIMABLE,
    PerformanceEstimator,
    Uncertain,
    anchored,
    class_codes,
    confusion_metric,
)
from monitoring.importance import weighted_drift, weights
from monitoring.interval import WilsonUncertain, live_intervals
from monitoring.reference import build_reference
from occam.config import MonitoringConfig, load_config
from occam.metrics import score
from tests.monitoring import replay


def calibrated(rows: int, classes: int, seed: int, sharp: float = 1.5) -> tuple[Any, Any]:
    """Probabilities and labels drawn from them (so the probabilities are calibrated)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, sharp, (rows, classes))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    codes = (rng.random(rows)[:, None] > np.cumsum(proba, axis=1)[:, :-1]).sum(axis=1)
    return proba, codes


@pytest.mark.parametrize("k", [2, 3])
def test_confusion_metrics_equal_the_gate_score(k: int) -> None:
    classes = [f"c{i}" for i in range(k)]
    proba, codes = calibrated(700, k, seed=k)
    labels = np.asarray(classes)[codes]
    predicted = proba.argmax(axis=1)
    confusion = np.zeros((k, k))
    np.add.at(confusion, (codes, predicted), 1)
    for metric in ("accuracy", "balanced_accuracy", "precision", "recall", "f1"):
        expected = score(metric, labels, proba, classes, classes[-1])
        assert float(confusion_metric(metric, confusion, k - 1)) == pytest.approx(expected)


@pytest.mark.parametrize("k", [2, 3])
def test_estimate_tracks_the_truth_of_calibrated_windows(k: int) -> None:
    classes = [f"c{i}" for i in range(k)]
    metrics = list(ESTIMABLE)
    proba, codes = calibrated(6000, k, seed=10 + k)
    estimator = PerformanceEstimator(classes, classes[-1], metrics, level=0.9)
    estimator.fit(proba, np.asarray(classes)[codes], window_rows=1000)
    assert estimator.source_ == "holdout" and estimator.chunk_rows_ == 1000
    inside = {m: 0 for m in metrics}
    for seed in range(30):
        proba, codes = calibrated(1000, k, seed=100 + seed)
        found = estimator.estimate(proba).metrics
        for m in metrics:
            truth = score(m, np.asarray(classes)[codes], proba, classes, classes[-1])
            u = found[m]
            assert abs(u.value - truth) < 0.08, (m, u, truth)
            inside[m] += u.lower <= truth <= u.upper
    assert all(n >= 24 for n in inside.values()), inside  # 90% bands: at least 80% inside


def test_systematic_error_widens_the_band_when_probabilities_are_overconfident() -> None:
    proba, codes = calibrated(6000, 2, seed=3)
    sharp = proba**3 / (proba**3).sum(axis=1, keepdims=True)  # overconfident, same ranking
    labels = np.asarray(["a", "b"])[codes]
    honest = PerformanceEstimator(["a", "b"], "b", ["accuracy"]).fit(proba, labels, 1000)
    fooled = PerformanceEstimator(["a", "b"], "b", ["accuracy"]).fit(sharp, labels, 1000)
    assert fooled.systematic_["accuracy"] > 0.05 > honest.systematic_["accuracy"]


def test_anchoring_on_labels_corrects_the_bias() -> None:
    window = PerformanceEstimator(["a", "b"], "b", ["accuracy"])
    window.fit(None, None, 100)
    plain = Uncertain(0.80, 0.02, 0.9, systematic=0.015)
    est = type(window.estimate(np.array([[0.2, 0.8]])))
    fixed = anchored(
        est(metrics={"accuracy": plain}, rows=1000),
        est(metrics={"accuracy": Uncertain(0.81, 0.02, 0.9)}, rows=1000),
        {"accuracy": Uncertain(0.70, 0.01, 0.9)},
    )
    u = fixed.metrics["accuracy"]
    assert u.value == pytest.approx(0.69)  # the labels showed 11 points of optimism
    assert u.sd == pytest.approx(np.sqrt(0.02**2 + 0.01**2))


def test_wilson_interval() -> None:
    u = WilsonUncertain(0.8, 0.0, 0.95, n=100)
    # the textbook 95% Wilson interval of 80 successes in 100
    assert (round(u.lower, 4), round(u.upper, 4)) == (0.7112, 0.8666)
    assert u.quantile(0.5) == 0.8
    assert WilsonUncertain(1.0, 0.0, 0.9, n=50).upper == pytest.approx(1.0)


def test_live_intervals_cover_their_values() -> None:
    classes = ["a", "b", "c"]
    proba, codes = calibrated(800, 3, seed=5)
    labels = np.asarray(classes)[codes]
    values = {
        m: score(m, labels, proba, classes, "c")
        for m in ("accuracy", "balanced_accuracy", "roc_auc", "f1", "average_precision")
    }
    found = live_intervals(class_codes(labels, classes), proba, values, classes, "c", 0.9)
    for m, u in found.items():
        assert u.lower < values[m] < u.upper, m
        assert 0.005 < u.sd < 0.06, (m, u.sd)


def test_weighted_drift_and_the_features_it_names() -> None:
    def feature(effect: float, threshold: float, drifted: bool) -> FeatureDrift:
        return FeatureDrift("numeric", 0.0, effect, effect, threshold, drifted, drifted)

    drift = DriftResult(
        features={
            "a": feature(0.6, 0.2, True),
            "b": feature(0.9, 0.1, True),
            "c": feature(0.15, 0.1, False),  # over its level but not significant
        },
        rows=1000,
        p_value_threshold=0.01,
    )
    w = weights({"a": 0.3, "b": 0.1, "c": 0.6, "d": -0.2}, ["a", "b", "c", "d"])
    assert w == pytest.approx({"a": 0.3, "b": 0.1, "c": 0.6, "d": 0.0})
    result = weighted_drift(drift, w)
    assert result.score == pytest.approx(0.3 * 0.4 / 0.8 + 0.1 * 0.8 / 0.9)
    assert result.named == ("a", "b")  # the important one first, though b moved further
    assert weights({}, ["x", "y"]) == {"x": 0.5, "y": 0.5}


def test_estimate_tracks_held_out_windows_of_the_bundled_data(trained: Any) -> None:
    """The held-out period of the bundled flights data, in time-ordered 500-row windows: the
    true goal metric lies within the estimate's 90% band on most of them. (The band's
    systematic part was measured on chunks of this same period; its sampling part was not.)"""
    config = load_config(trained.config_path)
    mon = MonitoringConfig(window_rows=500, min_window_rows=100)
    bundle = trained.bundle
    ref = build_reference(bundle, mon)
    assert ref.estimator.source_ == "holdout" and ref.estimator.metrics_
    held_out = replay.periods(config)[0]
    proba = bundle.load_pipeline().predict_proba(bundle.schema.coerce(held_out))
    labels = held_out[config.data.target].astype(str).to_numpy()
    inside = total = 0
    for start in range(0, len(held_out) - 499, 500):
        part = slice(start, start + 500)
        for metric, u in ref.estimator.estimate(proba[part]).metrics.items():
            truth = score(
                metric, labels[part], proba[part], bundle.classes, ref.positive,
                bundle.decision_weights,
            )  # fmt: skip
            inside += u.lower <= truth <= u.upper
            total += 1
    assert total >= 10 and inside >= 0.8 * total, (inside, total)


def test_the_systematic_part_is_an_upper_bound_wider_with_fewer_chunks() -> None:
    from monitoring.estimate import systematic_bound

    # errors of 0.1 with no noise: the bound shrinks to 0.1 as the chunks grow in number
    bounds = [systematic_bound([0.1, -0.1], [0.0, 0.0], n, 0.9) for n in (2, 4, 8, 50, 10_000)]
    assert bounds == sorted(bounds, reverse=True)
    assert bounds[1] == pytest.approx(0.1 * math.sqrt(4 / 1.0636), rel=1e-3)  # chi2(4) 10%: 1.0636
    assert bounds[-1] == pytest.approx(0.1, rel=0.02)
    # chunks that err by their noise alone: 4 of them cannot show the systematic part is 0
    noise_only = systematic_bound([0.02, -0.02, 0.02, -0.02], [0.02] * 4, 4, 0.9)
    assert 0.02 < noise_only < 0.04
    # ... many can: the bound shrinks towards 0 (as the fourth root of the chunks)
    assert systematic_bound([0.02, -0.02] * 5000, [0.02] * 10_000, 10_000, 0.9) < 0.003


def test_sampling_noise_of_a_large_window_scales_from_a_subsample() -> None:
    proba, _ = calibrated(20_000, 2, seed=3)
    estimator = PerformanceEstimator(["c0", "c1"], "c1", ["accuracy", "balanced_accuracy"])
    estimator.fit(None, None, 20_000)
    large = estimator.estimate(proba).metrics
    whole = PerformanceEstimator(["c0", "c1"], "c1", ["accuracy", "balanced_accuracy"])
    whole.fit(None, None, 20_000)
    for m, u in large.items():
        # the sd of a share of n rows is sqrt(p (1 - p) / n) for accuracy; both within 30%
        exact = whole._estimate(proba[:4000])[m].sd * np.sqrt(4000 / 20_000)
        assert u.sd == pytest.approx(exact, rel=0.3)


def test_live_metrics_off_the_confusion_matrix_equal_the_gate_score() -> None:
    from monitoring.quality import live_quality
    from monitoring.windows import FeedbackJoin

    classes = ["a", "b", "c"]
    proba, codes = calibrated(600, 3, seed=4)
    join = FeedbackJoin(1000, 1000)
    join.add_predictions(
        [
            {"id": f"r{i}", "ts": 0.0, "probabilities": dict(zip(classes, p, strict=True))}
            for i, p in enumerate(proba.tolist())
        ]
    )
    join.add_feedback(
        [{"id": f"r{i}", "label": classes[c], "ts": 0.0} for i, c in enumerate(codes)]
    )
    weights = {"a": 1.0, "b": 1.3, "c": 0.8}
    goals = {"accuracy": 0.5, "balanced_accuracy": 0.5, "f1": 0.5}
    live = live_quality(join, classes, "c", goals, 100, decision_weights=weights)
    labels = np.asarray(classes)[codes]
    for metric in goals:
        expected = score(metric, labels, proba, classes, "c", weights)
        assert live.metrics[metric] == pytest.approx(expected, abs=1e-12)
