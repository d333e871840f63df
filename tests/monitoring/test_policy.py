"""Hysteresis and the retrain recommendation (notifications: test_notify.py)."""

from __future__ import annotations

import itertools

from monitoring.estimate import Uncertain
from monitoring.policy import (
    RiskLevels,
    Signal,
    advance,
    drift_signal,
    goal_signal,
    recommend,
    step,
)
from monitoring.state import Runs

LEVELS = RiskLevels(enter_confidence=0.8, exit_confidence=0.5, enter_windows=1, exit_windows=3)
GOALS = {"accuracy": 0.7}


def verdicts(values: list[float], sd: float = 0.01) -> list[bool]:
    """'At risk' after each counted window whose estimated accuracy is `values[i]`."""
    runs, out = Runs(), []
    for value in values:
        signal, _ = goal_signal({"accuracy": Uncertain(value, sd, 0.9)}, GOALS, LEVELS)
        runs = step(runs, {"estimate": signal}, LEVELS)
        out.append("estimate" in runs.risk_active)
    return out


def test_goal_signal_levels() -> None:
    def signal(value: float) -> Signal:
        return goal_signal({"accuracy": Uncertain(value, 0.01, 0.9)}, GOALS, LEVELS)[0]

    # missed with probability >= 0.8: the estimate is 0.84 sd or more under the goal
    assert signal(0.69) is Signal.ENTER
    assert goal_signal({"accuracy": Uncertain(0.69, 0.01, 0.9)}, GOALS, LEVELS)[1] == ("accuracy",)
    assert signal(0.695) is Signal.HOLD  # likely under, not confidently: no change
    assert signal(0.70) is Signal.CLEAR and signal(0.75) is Signal.CLEAR
    assert goal_signal({}, GOALS, LEVELS) == (Signal.UNKNOWN, ())
    assert goal_signal({"roc_auc": Uncertain(0.1, 0.01, 0.9)}, GOALS, LEVELS)[0] is (
        Signal.UNKNOWN
    )  # not a goal


def test_drift_signal_levels() -> None:
    assert drift_signal(None, LEVELS) is Signal.UNKNOWN
    assert drift_signal(0.5, LEVELS) is Signal.ENTER
    assert drift_signal(0.4, LEVELS) is Signal.HOLD
    assert drift_signal(0.1, LEVELS) is Signal.CLEAR


def test_no_flapping_on_a_metric_oscillating_around_its_goal() -> None:
    # the live balanced accuracy of the demo run, against its goal 0.62
    oscillating = [0.624, 0.646, 0.655, 0.683, 0.570, 0.604, 0.631, 0.598, 0.640, 0.610]
    flags = verdicts([v + 0.08 for v in oscillating], sd=0.02)  # goal 0.7 here
    changes = sum(a != b for a, b in itertools.pairwise(flags))
    assert flags[:4] == [False] * 4  # fine while above the goal
    assert flags[4] and all(flags[4:])  # enters once, holds: never 3 clear windows in a row
    assert changes == 1


def test_enter_once_and_exit_after_clear_windows() -> None:
    values = [0.75, 0.65, 0.66, 0.75, 0.75, 0.68, 0.75, 0.75, 0.75, 0.75]
    # 0.68 at window 5 enters again; the third clear window in a row (8) ends it
    assert verdicts(values) == [False, True, True, True, True, True, True, True, False, False]


def test_unknown_windows_leave_the_verdict_alone() -> None:
    runs = step(Runs(), {"live_metric": Signal.ENTER}, LEVELS)
    assert runs.risk_active == ("live_metric",)
    for _ in range(5):  # feedback stops: nothing to judge, the verdict holds
        runs = step(runs, {"live_metric": Signal.UNKNOWN}, LEVELS)
    assert runs.risk_active == ("live_metric",)


def test_step_is_pure_and_needs_enter_windows() -> None:
    levels = RiskLevels(enter_windows=2, exit_windows=1)
    before = Runs()
    after = step(before, {"drift": Signal.ENTER}, levels)
    assert before.risk_enter == {} and before.risk_active == ()
    assert after.risk_active == () and after.risk_enter["drift"] == 1
    after = step(after, {"drift": Signal.HOLD}, levels)  # the run is broken
    after = step(after, {"drift": Signal.ENTER}, levels)
    assert after.risk_active == ()
    after = step(after, {"drift": Signal.ENTER}, levels)
    assert after.risk_active == ("drift",)
    assert step(after, {"drift": Signal.CLEAR}, levels).risk_active == ()


def test_recommendation_follows_active_reasons_and_age() -> None:
    runs = Runs(risk_active=("estimate",))
    rec = recommend(runs, judged=True, model_age_seconds=10.0, max_model_age_seconds=100.0)
    assert rec.recommended and rec.active == ("estimate",)
    assert rec.reasons == {
        "estimate": True,
        "live_metric": False,
        "drift": False,
        "model_age": False,
    }
    old = recommend(Runs(), judged=True, model_age_seconds=101.0, max_model_age_seconds=100.0)
    assert old.active == ("model_age",)


def test_unknown_reasons_are_none_not_false() -> None:
    rec = recommend(Runs(), judged=False, model_age_seconds=None, max_model_age_seconds=100.0)
    assert not rec.recommended and set(rec.reasons.values()) == {None}


def test_run_length_of_informational_drift() -> None:
    run = 0
    for verdict, counted, expected in [
        (True, True, 1),
        (True, False, 1),  # a check within the same window does not count again
        (None, True, 1),  # no verdict: the run stays as it was
        (False, True, 0),
    ]:
        run = advance(run, verdict, counted)
        assert run == expected
