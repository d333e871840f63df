"""Count-based windows over the prediction log.

- `PredictionWindow`: the last `size` prediction records; a verdict needs at least `min_rows`.
- `FeedbackJoin`: remembers the probabilities of the last `capacity` predictions by id, joins
  feedback (true labels) to them, and keeps the last `label_capacity` labelled rows for the
  live goal metrics. Each prediction is labelled at most once, across all replicas: the first
  label the monitor reads wins (records of one read are taken in timestamp order), later ones
  are counted as duplicates and ignored. `label_shift` compares the label mix of the labelled
  rows with the mix their predictions expected (a sudden gap is the mark of poisoned feedback).

Records are kept as the dicts read from the log; columns are built only when a check needs them.
"""

from __future__ import annotations

import operator
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

    `inputs` holds each row's features as received (a mapping per row), `features` the same as
    a frame (one column per requested name, NaN where a row lacks it; built on demand: the
    drift check encodes `inputs` directly); `predicted` the top class, `confidence` the top-class
    probability, `abstained` whether the answer was the abstain label; `marks[kind]` whether a
    row carries that mark (see `occam.records.MARK_KINDS`); `proba` the probabilities in the
    order of the classes asked for (None when none were).
    """

    inputs: list[dict[str, Any]]
    names: tuple[str, ...]
    predicted: np.ndarray
    confidence: np.ndarray
    abstained: np.ndarray
    marks: dict[str, np.ndarray]
    proba: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.predicted)

    @property
    def features(self) -> pd.DataFrame:
        return pd.DataFrame.from_records(self.inputs, columns=list(self.names))


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

    def forget_before(self, cutoff: float) -> int:
        """Drop rows whose ts is older than `cutoff` (Unix seconds); return how many."""
        rows = self.rows
        dropped = 0
        while rows and rows[0]["ts"] < cutoff:
            rows.popleft()
            dropped += 1
        return dropped

    def data(self, names: Sequence[str], classes: Sequence[str] | None = None) -> WindowData:
        """The window's columns in one pass over its rows; `names` are the feature columns,
        `classes` the order of the probability columns (None: no `proba`)."""
        rows = list(self.rows)
        n = len(rows)
        probabilities = [r["probabilities"] for r in rows]
        proba = None
        complete = False  # every row holds every class
        if classes is not None:
            pick = operator.itemgetter(*classes)
            try:
                picked = list(map(pick, probabilities))
                complete = True
            except KeyError:
                picked = [[p.get(c, 0.0) for c in classes] for p in probabilities]
            proba = np.array(picked, float).reshape(n, len(classes))
            sizes = np.fromiter(map(len, probabilities), int, n)
            complete = complete and bool(n) and bool((sizes == len(classes)).all())
        if proba is not None and complete:
            confidence = proba.max(axis=1)  # each row holds exactly the classes
        else:
            confidence = np.fromiter(
                (max(p.values(), default=np.nan) for p in probabilities), float, n
            )
        marks = [r["marks"] for r in rows]
        return WindowData(
            inputs=[r["features"] for r in rows],
            names=tuple(names),
            predicted=np.asarray([r["predicted"] for r in rows], dtype=object),
            confidence=confidence,
            abstained=np.fromiter(map(bool, map(operator.itemgetter("abstained"), rows)), bool, n),
            marks={kind: _flags(marks, kind) for kind in MARK_KINDS},
            proba=proba,
        )


def _flags(marks: list[dict[str, Any]], kind: str) -> np.ndarray:
    """Whether each row's marks carry `kind` (one C-level pass)."""
    return np.fromiter(map(bool, map(operator.methodcaller("get", kind), marks)), bool, len(marks))


class FeedbackJoin:
    """Joins feedback to predictions by id; see the module docstring.

    `ids` holds (id, ts) of the remembered predictions, oldest first; `pending` maps each id to
    its probabilities until it is labelled (then None). `matched` counts remembered predictions
    that received feedback, `coverage` is their share. `labelled` holds (probabilities, true
    label, feedback ts) of the last labelled rows.
    """

    def __init__(self, capacity: int, label_capacity: int) -> None:
        self.capacity = capacity
        self.ids: deque[tuple[str, float]] = deque()
        self.pending: dict[str, dict[str, float] | None] = {}
        self.matched = 0
        self.labelled: deque[tuple[dict[str, float], str, float]] = deque(maxlen=label_capacity)

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
            ids.append((ident, float(record["ts"])))
            pending[ident] = record["probabilities"]
        while len(ids) > self.capacity:
            self._forget_oldest()

    def _forget_oldest(self) -> None:
        ident, _ = self.ids.popleft()
        if self.pending.pop(ident, 0) is None:
            self.matched -= 1

    def add_feedback(self, records: Iterable[dict[str, Any]]) -> tuple[int, int]:
        """Label the predictions the records refer to; return (unmatched, duplicates): feedback
        naming no remembered prediction, and feedback for a prediction already labelled."""
        unmatched = duplicates = 0
        pending = self.pending
        for record in records:
            ident = record["id"]
            if ident not in pending:  # unknown or forgotten
                unmatched += 1
                continue
            probabilities = pending[ident]
            if probabilities is None:  # already labelled: the first label stays
                duplicates += 1
                continue
            pending[ident] = None
            self.matched += 1
            self.labelled.append((probabilities, record["label"], float(record["ts"])))
        return unmatched, duplicates

    def forget_before(self, cutoff: float) -> int:
        """Drop remembered predictions and labelled rows older than `cutoff` (Unix seconds; the
        ts of the prediction, of the feedback for labelled rows); return how many remembered
        predictions were dropped."""
        dropped = 0
        while self.ids and self.ids[0][1] < cutoff:
            self._forget_oldest()
            dropped += 1
        while self.labelled and self.labelled[0][2] < cutoff:
            self.labelled.popleft()
        return dropped

    def clear(self) -> None:
        self.ids.clear()
        self.pending.clear()
        self.labelled.clear()
        self.matched = 0

    def labelled_arrays(self, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """True labels and probabilities (columns in `classes` order) of the labelled rows."""
        rows = list(self.labelled)
        proba = np.array([[p.get(c, 0.0) for c in classes] for p, _, _ in rows], dtype=float)
        labels = np.asarray([label for _, label, _ in rows], dtype=object)
        return labels, proba.reshape(len(rows), len(classes))

    def label_shift(self, min_labels: int) -> float | None:
        """Total variation distance between the label mix of the labelled rows and the mix
        their predictions expected (mean probability per class; the probabilities are
        calibrated, so honest labels match it up to noise). In [0, 1]; None under `min_labels`
        labelled rows. Labels outside the predicted classes count in full."""
        rows = list(self.labelled)
        if len(rows) < max(min_labels, 1):
            return None
        expected: dict[str, float] = {}
        observed: dict[str, float] = {}
        for probabilities, label, _ in rows:
            for cls, p in probabilities.items():
                expected[cls] = expected.get(cls, 0.0) + p
            observed[label] = observed.get(label, 0.0) + 1.0
        n = len(rows)
        classes = expected.keys() | observed.keys()
        gap = sum(abs(expected.get(c, 0.0) - observed.get(c, 0.0)) for c in classes)
        return 0.5 * gap / n

    def to_state(self) -> dict[str, Any]:
        """JSON-ready state (lists and dicts of str and numbers)."""
        return {
            "ids": [list(pair) for pair in self.ids],
            "pending": self.pending,
            "matched": self.matched,
            "labelled": [list(row) for row in self.labelled],
        }

    @classmethod
    def from_state(cls, raw: dict[str, Any], capacity: int, label_capacity: int) -> FeedbackJoin:
        """The inverse of `to_state`; raises ValueError/TypeError/KeyError on a malformed state."""
        join = cls(capacity, label_capacity)
        join.ids = deque((str(i), float(ts)) for i, ts in raw["ids"])
        pending = raw["pending"]
        if not isinstance(pending, dict):
            raise TypeError("join.pending is not a mapping")
        join.pending = {str(k): _probabilities(v) for k, v in pending.items()}
        join.matched = int(raw["matched"])
        join.labelled = deque(
            ((_probabilities(p) or {}, str(label), float(ts)) for p, label, ts in raw["labelled"]),
            maxlen=label_capacity,
        )
        join.add_predictions([])  # apply a smaller capacity than the saved one
        return join


def _probabilities(raw: Any) -> dict[str, float] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TypeError("probabilities are not a mapping")
    return {str(k): float(v) for k, v in raw.items()}
