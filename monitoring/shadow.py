"""Shadow against champion: the same rows, scored by both, judged on the same feedback.

The service logs a shadow challenger's rows with ``"shadow": true``, the challenger's
``model_version`` and the id of the served row (`occam.records`); the reader keeps them apart
(`Batch.shadow`). `ShadowTracker` remembers the last shadow rows and the champion's rows with the
same ids, joins feedback to both, and `compare` scores both with the goal metrics (the live
metric, as `monitoring.quality.live_quality`) and the label-free estimate (the watched model's
estimator, `monitoring.estimate`) on their windows. Exported as ``occam_shadow_*{metric, role}``
with role ``shadow`` or ``champion`` (docs/metrics.md). The tracker lives in memory only: after
a monitor restart the comparison starts again from the next shadow rows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from monitoring.quality import LiveQuality, live_quality
from monitoring.windows import FeedbackJoin

#: The two sides of a comparison (the `role` label).
ROLES = ("shadow", "champion")


@dataclass(frozen=True)
class ShadowComparison:
    """Both sides on the same rows: live goal metrics (`live[role]`) and the label-free estimate
    of each goal metric on the last rows (`estimate[role]`, empty when not estimable)."""

    version: str
    rows_total: int
    live: dict[str, LiveQuality]
    estimate: dict[str, dict[str, float]]


class ShadowTracker:
    """The last `window_rows` shadow rows and their champion twins, with feedback joined to
    both (at most `label_rows` labelled rows each)."""

    def __init__(self, window_rows: int, label_rows: int) -> None:
        self.window_rows, self.label_rows = window_rows, label_rows
        self.version: str | None = None
        self._reset()

    def _reset(self) -> None:
        self.joins = {role: FeedbackJoin(self.window_rows, self.label_rows) for role in ROLES}
        self.rows: dict[str, deque[dict[str, float]]] = {
            role: deque(maxlen=self.window_rows) for role in ROLES
        }
        self.rows_total = 0

    def add(
        self,
        served: Sequence[dict[str, Any]],
        shadow: Sequence[dict[str, Any]],
        feedback: Sequence[dict[str, Any]],
    ) -> None:
        """Take a batch: the served prediction records, the shadow ones and the feedback. A new
        challenger version starts the comparison afresh."""
        if shadow:
            version = str(shadow[-1]["model_version"])
            if version != self.version:
                self._reset()
                self.version = version
            mine = [r for r in shadow if r["model_version"] == version]
            ids = {r["id"] for r in mine}
            twins = [r for r in served if r["id"] in ids]
            for role, records in (("shadow", mine), ("champion", twins)):
                self.joins[role].add_predictions(records)
                self.rows[role].extend(r["probabilities"] for r in records)
            self.rows_total += len(mine)
        if feedback and self.version is not None:
            for join in self.joins.values():
                join.add_feedback(feedback)

    def compare(
        self,
        classes: Sequence[str],
        positive: str,
        goals: dict[str, float],
        min_labels: int,
        level: float,
        estimator: Any,
        decision_weights: dict[str, float] | None = None,
    ) -> ShadowComparison | None:
        """Both sides scored; None before the first shadow row."""
        if self.version is None:
            return None
        import numpy as np

        live = {}
        estimate: dict[str, dict[str, float]] = {}
        for role in ROLES:
            live[role] = live_quality(
                self.joins[role],
                classes,
                positive,
                goals,
                min_labels,
                level,
                None,
                decision_weights,
            )
            rows = self.rows[role]
            proba = np.array([[r.get(c, 0.0) for c in classes] for r in rows], float)
            found = estimator.estimate(proba.reshape(len(rows), len(classes))) if rows else None
            estimate[role] = {m: u.value for m, u in found.metrics.items()} if found else {}
        return ShadowComparison(self.version, self.rows_total, live, estimate)
