"""The retrain policy: hysteresis and the recommendation with its reasons.

Reasons (each True, False, or None when it cannot be judged yet):

- ``data_drift``: the window drift verdict held for `consecutive` counted windows in a row
  (the "model at risk" verdict; one noisy window does not flip it);
- ``prediction_drift``: the same for the model's outputs (predicted class mix, confidence);
- ``live_metric``: a goal metric under its threshold on at least the minimum number of labels;
- ``model_age``: the model is older than the configured maximum.

Retraining is recommended when any reason is True; `monitoring.notify` tells the configured
command and/or webhook.
"""

from __future__ import annotations

from dataclasses import dataclass

REASONS = ("data_drift", "live_metric", "prediction_drift", "model_age")


def advance(run: int, verdict: bool | None, counted: bool) -> int:
    """The run length of drifting windows after a check.

    A check without a verdict, or one that does not count as a new window (too few new rows
    since the last counted one), leaves the run as it was.
    """
    if verdict is None or not counted:
        return run
    return run + 1 if verdict else 0


@dataclass(frozen=True)
class Recommendation:
    """Whether to retrain, and why: `reasons[name]` is True, False or None (not judged)."""

    reasons: dict[str, bool | None]

    @property
    def recommended(self) -> bool:
        return any(self.reasons.values())

    @property
    def active(self) -> tuple[str, ...]:
        return tuple(r for r in REASONS if self.reasons.get(r))


def recommend(
    *,
    data_drift_run: int | None,
    prediction_drift_run: int | None,
    consecutive: int,
    live_below: bool | None,
    model_age_seconds: float | None,
    max_model_age_seconds: float,
) -> Recommendation:
    """The recommendation; a run of None means no verdict has been reached for this model."""
    return Recommendation(
        reasons={
            "data_drift": None if data_drift_run is None else data_drift_run >= consecutive,
            "live_metric": live_below,
            "prediction_drift": (
                None if prediction_drift_run is None else prediction_drift_run >= consecutive
            ),
            "model_age": (
                None if model_age_seconds is None else model_age_seconds > max_model_age_seconds
            ),
        }
    )
