"""Drift weighted by what the model relies on.

Training stores each feature's permutation importance on held-out rows in the bundle
(`feature_importance`: mean drop of the first goal metric when the feature is shuffled). A
feature's weight is its importance clipped at 0, divided by the sum over the checked features
(equal weights when no feature has a positive importance, e.g. an old bundle without them).

A feature's *excess* is how far its effect size went past its calibrated alarm level, as a share
of the way from that level to a disjoint distribution (effect size 1):

    excess = max(0, effect - level) / (1 - level)      (0 unless the feature drifted)

and the window's weighted drift is the weighted sum of the excesses, in [0, 1]: 0.5 (the default
extreme level) means "features carrying half of the model's reliance moved all the way to inputs
never seen in training", or all of it moved half of the way. The damaging features are the
drifted ones, largest contribution (weight x excess) first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from monitoring.drift import DriftResult

#: At most this many damaging features are named in a verdict.
NAMED_FEATURES = 5


def weights(importance: Mapping[str, float], names: Sequence[str]) -> dict[str, float]:
    """Normalised, non-negative weights of the checked features `names`."""
    clipped = {n: max(float(importance.get(n, 0.0)), 0.0) for n in names}
    total = sum(clipped.values())
    if total <= 0:
        return {n: 1 / len(names) for n in names} if names else {}
    return {n: v / total for n, v in clipped.items()}


@dataclass(frozen=True)
class WeightedDrift:
    """The window's importance-weighted drift `score` and each feature's contribution to it
    (`contributions`, drifted features only, largest first)."""

    score: float
    contributions: dict[str, float]

    @property
    def named(self) -> tuple[str, ...]:
        """The damaging features: the largest contributions."""
        return tuple(n for n, c in self.contributions.items() if c > 0)[:NAMED_FEATURES]


def weighted_drift(drift: DriftResult, feature_weights: Mapping[str, float]) -> WeightedDrift:
    """Weighted drift of one window's per-feature result."""
    contributions = {}
    for name, f in drift.features.items():
        if not f.drifted:
            continue
        excess = max(f.effect_size - f.threshold, 0.0) / max(1.0 - f.threshold, 1e-9)
        contributions[name] = feature_weights.get(name, 0.0) * min(excess, 1.0)
    ranked = dict(sorted(contributions.items(), key=lambda kv: -kv[1]))
    return WeightedDrift(score=float(sum(ranked.values())), contributions=ranked)
