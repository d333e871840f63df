"""Which inputs the model relies on: permutation importance on held-out rows.

A feature's importance is how much the first goal metric drops, on held-out rows, when that
feature's values are shuffled among the rows (mean over `repeats` shuffles). It is measured on
the served pipeline with raw feature columns, so it is keyed by the schema's feature names and
says what the monitor should weigh drift by. Near zero or negative: the model does not need it;
`adds_nothing` says when a feature's importance is at or below zero within its noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from occam.metrics import score

#: Disjoint random blocks of the held-out rows behind each importance's noise (`Importance.se`).
BLOCKS = 10


@dataclass(frozen=True)
class Importance:
    """One feature's permutation importance: `mean` drop of the metric over `repeats`
    shuffles (the metric's units), `std` the spread of the drops over the shuffles, and `se`
    the standard error of the mean drop from `BLOCKS` disjoint random blocks of the held-out
    rows (each block scored before and after the same shuffles), which holds the rows'
    sampling noise too.
    """

    mean: float
    std: float
    repeats: int
    se: float = 0.0

    @property
    def adds_nothing(self) -> bool:
        """At or below zero within its noise: the mean drop does not clear two standard errors
        (`se`) or twice the spread over shuffles (`std`); a drop of exactly zero (the model
        never reads it) counts too."""
        return self.mean - 2 * max(self.se, self.std) <= 0


def permutation_scores(
    model: Any,
    x: pd.DataFrame,
    y: np.ndarray,
    metric: str,
    positive: str,
    weights: dict[str, float] | None,
    *,
    repeats: int,
    max_rows: int,
    seed: int,
    n_jobs: int = 1,
) -> dict[str, Importance]:
    """Feature name -> its `Importance` over `repeats` shuffles on at most `max_rows` rows of
    `x` (a seeded random subset; every feature uses the same rows), most important first.
    `n_jobs` is accepted for the callers' sake; the shuffles run in this process."""
    rng = np.random.default_rng(seed)
    if len(x) > max_rows:
        rows = np.sort(rng.choice(len(x), max_rows, replace=False))
        x, y = x.iloc[rows], np.asarray(y)[rows]
    y = np.asarray(y).astype(str)
    classes = [str(c) for c in model.classes_]
    blocks = [b for b in np.array_split(rng.permutation(len(y)), BLOCKS) if len(b)]

    def scores(proba: np.ndarray) -> tuple[float, np.ndarray]:
        """The metric on all rows and on each block."""
        whole = score(metric, y, proba, classes, positive, weights)
        parts = [score(metric, y[b], proba[b], classes, positive, weights) for b in blocks]
        return whole, np.asarray(parts, dtype=float)

    base, base_parts = scores(model.predict_proba(x))
    out = {}
    for name in x.columns:
        drops, part_drops = [], []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[name] = rng.permutation(shuffled[name].to_numpy())
            whole, parts = scores(model.predict_proba(shuffled))
            drops.append(base - whole)
            part_drops.append(base_parts - parts)
        per_block = np.nanmean(np.asarray(part_drops), axis=0)
        finite = per_block[np.isfinite(per_block)]
        se = float(np.std(finite, ddof=1) / np.sqrt(len(finite))) if len(finite) > 1 else 0.0
        out[str(name)] = Importance(
            mean=float(np.mean(drops)), std=float(np.std(drops)), repeats=repeats, se=se
        )
    return dict(sorted(out.items(), key=lambda kv: -kv[1].mean))
