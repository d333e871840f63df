"""Hysteresis and the retrain recommendation (notifications: test_notify.py)."""

from __future__ import annotations

import pytest

from monitoring.policy import advance, recommend


def test_hysteresis_needs_consecutive_counted_windows() -> None:
    run = 0
    for verdict, counted, expected in [
        (True, True, 1),
        (True, False, 1),  # a check within the same window does not count again
        (None, True, 1),  # no verdict: the run stays as it was
        (True, True, 2),
        (False, True, 0),  # one quiet window resets it
        (True, True, 1),
    ]:
        run = advance(run, verdict, counted)
        assert run == expected


def test_one_noisy_window_does_not_recommend() -> None:
    runs = [advance(0, True, True)]
    rec = recommend(
        data_drift_run=runs[-1],
        prediction_drift_run=0,
        consecutive=2,
        live_below=None,
        model_age_seconds=10.0,
        max_model_age_seconds=100.0,
    )
    assert not rec.recommended
    assert rec.reasons == {
        "data_drift": False,
        "live_metric": None,
        "prediction_drift": False,
        "model_age": False,
    }


@pytest.mark.parametrize(
    ("kwargs", "active"),
    [
        ({"data_drift_run": 2}, ("data_drift",)),
        ({"prediction_drift_run": 3}, ("prediction_drift",)),
        ({"live_below": True}, ("live_metric",)),
        ({"model_age_seconds": 101.0}, ("model_age",)),
        ({"data_drift_run": 5, "live_below": True}, ("data_drift", "live_metric")),
    ],
)
def test_each_reason(kwargs: dict, active: tuple[str, ...]) -> None:
    base = {
        "data_drift_run": 0,
        "prediction_drift_run": 0,
        "consecutive": 2,
        "live_below": False,
        "model_age_seconds": 1.0,
        "max_model_age_seconds": 100.0,
    }
    rec = recommend(**(base | kwargs))
    assert rec.recommended and rec.active == active


def test_unknown_reasons_are_none_not_false() -> None:
    rec = recommend(
        data_drift_run=None,
        prediction_drift_run=None,
        consecutive=2,
        live_below=None,
        model_age_seconds=None,
        max_model_age_seconds=100.0,
    )
    assert not rec.recommended and set(rec.reasons.values()) == {None}
