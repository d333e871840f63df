"""How fast the model goes stale: the goal metrics on time-ordered chunks of the held-out period.

The held-out test period follows the training period in time (with the time split), so scoring
it chunk by chunk shows how each goal metric moves as the time since the end of the training
data grows: the basis for a retrain cadence, beside the monitor's live evidence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from occam.config import Goal
from occam.metrics import score


def staleness(
    times: pd.Series | None,
    train_end: Any,
    y: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    positive: str,
    goals: list[Goal],
    chunks: int,
    weights: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Score each goal metric on `chunks` consecutive, equal-sized chunks of the held-out rows.

    `times` are the rows' times in row order (None without a time column: then the chunks are
    in row order and only rows are counted); `train_end` is the last training time. Each chunk
    records its rows, first and last time, and `days_since_train_end` (from the end of the
    training data to the chunk's last row). Rows are sorted by time first.
    """
    y = np.asarray(y).astype(str)
    order = np.arange(len(y))
    stamps = None
    if times is not None:
        stamps = pd.to_datetime(pd.Series(times).reset_index(drop=True), errors="coerce")
        order = np.argsort(stamps.to_numpy(), kind="stable")
    end = pd.Timestamp(train_end) if stamps is not None and train_end is not None else None
    rows: list[dict[str, Any]] = []
    seen = 0
    for part in np.array_split(order, min(chunks, len(order))):
        seen += len(part)
        row: dict[str, Any] = {"rows": len(part), "rows_since_train_end": seen}
        if stamps is not None:
            first, last = stamps.iloc[part].min(), stamps.iloc[part].max()
            row["from"], row["to"] = str(first), str(last)
            if end is not None and not pd.isna(last):
                row["days_since_train_end"] = float((last - end) / pd.Timedelta(days=1))
        row["metrics"] = {
            g.metric: score(g.metric, y[part], proba[part], classes, positive, weights)
            for g in goals
        }
        rows.append(row)
    return {
        "train_end": str(end) if end is not None else None,
        "thresholds": {g.metric: g.threshold for g in goals},
        "chunks": rows,
    }
