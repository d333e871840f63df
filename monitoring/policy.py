"""The risk policy: one "model at risk" verdict with hysteresis, the retrain recommendation, and
its notifications. All hysteresis lives here.

Each counted window brings one `Signal` per risk reason:

- ``estimate``: the label-free estimate of a goal metric (`monitoring.estimate`);
- ``live_metric``: a goal metric on the labelled predictions, with its interval
  (`monitoring.interval`); not judged (UNKNOWN) until `live_min_labels` labels arrived;
- ``drift``: the importance-weighted drift (`monitoring.importance`) against its explicit
  extreme level.

For the two goal reasons a goal is *likely missed* when the metric lies under its threshold with
probability at least `risk_enter_confidence` (the one-sided band at that level lies under the
goal): ENTER (default 0.8: odds of 4 to 1). The evidence *clears* when, for every goal, that
probability is at most `risk_exit_confidence` (default 0.5: every estimate is back at or above
its goal): CLEAR. In between:
HOLD. Drift enters at `weighted_drift_threshold` and clears under `weighted_drift_exit`.

A reason becomes active after `risk_enter_windows` entering windows in a row and stays active
until `risk_exit_windows` clearing windows in a row (or a new model is watched, which starts
afresh). HOLD resets both runs; UNKNOWN (no verdict possible) leaves them as they were. So a
metric that oscillates around its goal changes the verdict once, not on every window.
`occam_model_at_risk` is 1 while any reason is active; retraining is recommended for the active
risk reasons and for ``model_age``. A configured command and/or webhook is called once per new
recommendation (`monitoring.notify`: one whose reasons were not all notified already, at most
once per cooldown; the memory of what was notified lives in the checkpoint, `state.Runs`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

from monitoring.estimate import Uncertain
from monitoring.state import Runs
from occam.config import MonitoringConfig

log = logging.getLogger(__name__)

#: The reasons of "model at risk", in the order they are reported.
RISK_REASONS = ("estimate", "live_metric", "drift")
#: The reasons of the retrain recommendation.
REASONS = (*RISK_REASONS, "model_age")


class Signal(enum.Enum):
    """What one counted window says about one risk reason."""

    ENTER = "enter"
    HOLD = "hold"
    CLEAR = "clear"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class RiskLevels:
    """The policy's levels (see the module docstring); `from_config` reads them."""

    enter_confidence: float = 0.8
    exit_confidence: float = 0.5
    enter_windows: int = 1
    exit_windows: int = 2
    drift_threshold: float = 0.5
    drift_exit: float = 0.3

    @classmethod
    def from_config(cls, config: MonitoringConfig) -> RiskLevels:
        return cls(
            enter_confidence=config.risk_enter_confidence,
            exit_confidence=config.risk_exit_confidence,
            enter_windows=config.risk_enter_windows,
            exit_windows=config.risk_exit_windows,
            drift_threshold=config.weighted_drift_threshold,
            drift_exit=config.weighted_drift_exit,
        )


def goal_signal(
    metrics: Mapping[str, Uncertain], goals: Mapping[str, float], levels: RiskLevels
) -> tuple[Signal, tuple[str, ...]]:
    """The signal of goal metrics with their uncertainty, and the goals likely missed."""
    judged = {m: u for m, u in metrics.items() if m in goals}
    if not judged:
        return Signal.UNKNOWN, ()
    missed = tuple(m for m, u in judged.items() if u.quantile(levels.enter_confidence) < goals[m])
    if missed:
        return Signal.ENTER, missed
    if all(u.quantile(levels.exit_confidence) >= goals[m] for m, u in judged.items()):
        return Signal.CLEAR, ()
    return Signal.HOLD, ()


def drift_signal(weighted: float | None, levels: RiskLevels) -> Signal:
    """The signal of an importance-weighted drift score (None: no verdict)."""
    if weighted is None:
        return Signal.UNKNOWN
    if weighted >= levels.drift_threshold:
        return Signal.ENTER
    return Signal.CLEAR if weighted < levels.drift_exit else Signal.HOLD


def step(runs: Runs, signals: Mapping[str, Signal], levels: RiskLevels) -> Runs:
    """The hysteresis after one counted window (a new `Runs`; `runs` is left unchanged)."""
    enter, clear = dict(runs.risk_enter), dict(runs.risk_clear)
    active = set(runs.risk_active)
    for reason in RISK_REASONS:
        signal = signals.get(reason, Signal.UNKNOWN)
        if signal is Signal.UNKNOWN:
            continue
        enter[reason] = enter.get(reason, 0) + 1 if signal is Signal.ENTER else 0
        clear[reason] = clear.get(reason, 0) + 1 if signal is Signal.CLEAR else 0
        if enter[reason] >= levels.enter_windows:
            active.add(reason)
        elif clear[reason] >= levels.exit_windows:
            active.discard(reason)
    return replace(
        runs,
        risk_enter=enter,
        risk_clear=clear,
        risk_active=tuple(r for r in RISK_REASONS if r in active),
    )


def advance(run: int, verdict: bool | None, counted: bool) -> int:
    """The run length of drifting windows after a check (informational drift gauges).

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
    runs: Runs,
    judged: bool,
    model_age_seconds: float | None,
    max_model_age_seconds: float,
) -> Recommendation:
    """The recommendation: the active risk reasons (None before the model's first counted
    window, `judged` False) and the model's age."""
    reasons: dict[str, bool | None] = {
        r: (r in runs.risk_active) if judged else None for r in RISK_REASONS
    }
    reasons["model_age"] = (
        None if model_age_seconds is None else model_age_seconds > max_model_age_seconds
    )
    return Recommendation(reasons=reasons)
