"""Count-based windows over the prediction log.

- `PredictionWindow`: the last `size` prediction records; a verdict needs at least `min_rows`.
- `FeedbackJoin`: remembers the probabilities of the last `capacity` predictions by id, joins
  feedback (true labels) to them, and keeps the last `label_capacity` labelled rows for the
  live goal metrics. Each prediction is labelled at most once.

Records are kept as the dicts read from the log; columns are built only when a check needs them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from occam.records import MARK_KINDS


@dataclass(frozen=True)
class WindowData:
    """The columns of a window, oldest row first.

    `features` holds the inputs as received (one column per requested name, NaN where a row
    lacks it); `predicted` the top class, `confidence` the top-class probability, `abstained`
    whether the answer was the abstain label; `marks[kind]` whether a row carries that mark
    (see `occam.records.MARK_KINDS`).
    """

    features: pd.DataFrame
    predicted: np.ndarray
    confidence: np.ndarray
    abstained: np.ndarray
    marks: dict[str, np.ndarray]

    @property
    def rows(self) -> int:
        return len(self.predicted)


class PredictionWindow:
    """The last `size` prediction records; `ready` once it holds `min_rows`."""

    def __init__(self, size: int, min_rows: int, rows: Iterable[dict[str, Any]] = ()) -> None:
        self.size = size
        self.min_rows = min_rows
        self.rows: deque[dict[str, Any]] = deque(rows, maxlen=size)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ready(self) -> bool:
        """Whether the window holds enough rows for a verdict."""
        return len(self.rows) >= self.min_rows

    def extend(self, records: Sequence[dict[str, Any]]) -> None:
        self.rows.extend(records[-self.size :])

    def clear(self) -> None:
        self.rows.clear()

    def data(self, names: Sequence[str]) -> WindowData:
        """The window's columns; `names` are the feature columns to build."""
        rows = list(self.rows)
        features = pd.DataFrame.from_records([r["features"] for r in rows], columns=list(names))
        confidence = np.fromiter(
            (max(r["probabilities"].values(), default=np.nan) for r in rows), float, len(rows)
        )
        marks = {
            kind: np.fromiter((bool(r["marks"].get(kind)) for r in rows), bool, len(rows))
            for kind in MARK_KINDS
        }
        return WindowData(
            features=features,
            predicted=np.asarray([r["predicted"] for r in rows], dtype=object),
            confidence=confidence,
            abstained=np.fromiter((bool(r["abstained"]) for r in rows), bool, len(rows)),
            marks=marks,
        )


class FeedbackJoin:
    """Joins feedback to predictions by id; see the module docstring.

    `matched` counts remembered predictions that received feedback, `coverage` is their share.
    """

    def __init__(self, capacity: int, label_capacity: int) -> None:
        self.capacity = capacity
        self.label_capacity = label_capacity
        self.ids: deque[str] = deque()
        # id -> probabilities of a prediction not yet labelled, or None once labelled.
        self.pending: dict[str, dict[str, float] | None] = {}
        self.matched = 0
        self.labelled: deque[tuple[dict[str, float], str]] = deque(maxlen=label_capacity)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def coverage(self) -> float | None:
        """Share of remembered predictions with feedback; None before any prediction."""
        return self.matched / len(self.ids) if self.ids else None

    def add_predictions(self, records: Sequence[dict[str, Any]]) -> None:
        ids, pending = self.ids, self.pending
        for record in records[-self.capacity :]:
            ident = record["id"]
            if ident in pending:  # a repeated id: keep the first prediction
                continue
            ids.append(ident)
            pending[ident] = record["probabilities"]
        while len(ids) > self.capacity:
            if pending.pop(ids.popleft(), 0) is None:
                self.matched -= 1

    def add_feedback(self, records: Iterable[dict[str, Any]]) -> int:
        """Label the predictions the records refer to; return how many matched none."""
        unmatched = 0
        pending = self.pending
        for record in records:
            probabilities = pending.get(record["id"])
            if probabilities is None:  # unknown, forgotten, or already labelled
                unmatched += 1
                continue
            pending[record["id"]] = None
            self.matched += 1
            self.labelled.append((probabilities, record["label"]))
        return unmatched

    def clear(self) -> None:
        self.ids.clear()
        self.pending.clear()
        self.labelled.clear()
        self.matched = 0

    def labelled_arrays(self, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """True labels and probabilities (columns in `classes` order) of the labelled rows."""
        rows = list(self.labelled)
        proba = np.array([[p.get(c, 0.0) for c in classes] for p, _ in rows], dtype=float)
        labels = np.asarray([label for _, label in rows], dtype=object)
        return labels, proba.reshape(len(rows), len(classes))

    def to_state(self) -> dict[str, Any]:
        return {
            "ids": list(self.ids),
            "pending": self.pending,
            "matched": self.matched,
            "labelled": list(self.labelled),
        }

    @classmethod
    def from_state(cls, raw: dict[str, Any], capacity: int, label_capacity: int) -> FeedbackJoin:
        join = cls(capacity, label_capacity)
        join.ids = deque(raw["ids"])
        join.pending = raw["pending"]
        join.matched = raw["matched"]
        join.labelled = deque(raw["labelled"], maxlen=label_capacity)
        join.add_predictions([])  # apply a smaller capacity than the saved one
        return join
