"""Which inputs the model relies on: permutation importance on held-out rows.

A feature's importance is how much the first goal metric drops, on held-out rows, when that
feature's values are shuffled among the rows (mean over `repeats` shuffles). It is measured on
the served pipeline with raw feature columns, so it is keyed by the schema's feature names and
says what the monitor should weigh drift by. Near zero or negative: the model does not need it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance

from training.evaluate import make_scorer


def feature_importance(
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
) -> dict[str, float]:
    """Feature name -> mean drop of `metric` over `repeats` shuffles, on at most `max_rows`
    rows of `x` (a seeded random subset; every feature uses the same rows), most important
    first."""
    if len(x) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(x), max_rows, replace=False))
        x, y = x.iloc[rows], np.asarray(y)[rows]
    result = permutation_importance(
        model,
        x,
        y,
        scoring=make_scorer(metric, positive, weights),
        n_repeats=repeats,
        random_state=seed,
        n_jobs=n_jobs,
    )
    means = {
        str(name): float(v) for name, v in zip(x.columns, result.importances_mean, strict=True)
    }
    return dict(sorted(means.items(), key=lambda kv: -kv[1]))
