"""The demo's retrain loop tells its outcome from measurements: a refused challenger is scored
on the windows after its refusal beside the champion that served them, and the monitor's live
metric with its interval is quoted from when the decision was taken and from the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from occam.config import load_config
from occam.demo import _Loop
from occam.loopback import ReplayStats
from occam.metrics import score
from occam.timeline import Interval, WindowPoint
from tests.conftest import ROOT
from training.data import load_frame


def window(index: int, truth: dict[str, float], live: dict[str, Interval]) -> WindowPoint:
    return WindowPoint(index=index, phase="production period", rows=500, wall_time=0.0,
                       truth=truth, live=live)  # fmt: skip


def test_a_refused_challenger_is_scored_on_the_later_windows_and_told(trained: Any) -> None:
    bundle = trained.bundle
    config = trained.config_path
    frame = load_frame(ROOT / "data" / "flights.csv.gz").iloc[40_000:40_500]
    stats = ReplayStats()
    stats.truth = frame["late"].astype(str).tolist()
    cfg = load_config(config)
    # the same bundle stands in as the refused challenger: a real model, scored on real rows
    loop = _Loop(Path(config), "key", bundle, bundle, stage="refused", challenger=bundle,
                 decided=0)  # fmt: skip
    point = window(1, {}, {})
    loop.record_refused(point, frame, stats, 0, cfg)
    proba = bundle.load_pipeline().predict_proba(bundle.schema.coerce(frame))
    expected = score("roc_auc", np.array(stats.truth), proba, list(bundle.classes), "late",
                     bundle.decision_weights)  # fmt: skip
    assert loop.refused_truth[1]["roc_auc"] == expected
    assert set(loop.refused_truth[1]) == {g.metric for g in cfg.goals}

    # the narration: the refused challenger against the champion on the same later windows,
    # and the live metric with its interval at the decision and at the end
    champion_truth = {m: v - 0.01 for m, v in loop.refused_truth[1].items()}
    windows = [
        window(0, {}, {"roc_auc": Interval(0.66, 0.64, 0.68)}),
        window(1, champion_truth, {"roc_auc": Interval(0.65, 0.62, 0.67)}),
    ]
    lines: list[str] = []
    loop.tell(windows, cfg, lines.append)
    story = "\n".join(lines)
    assert "the challenger was refused after window 1" in story, story
    assert f"the refused challenger {expected:.3f}" in story, story
    assert f"the champion on the same rows {expected - 0.01:.3f} (+0.010, better in 1 of 1" in (
        story
    ), story
    assert "0.660 [0.640, 0.680] when the decision was taken, 0.650 [0.620, 0.670] at the end" in (
        story
    ), story


def test_a_loop_that_never_decided_says_so(trained: Any) -> None:
    from occam.config import load_config

    bundle = trained.bundle
    cfg = load_config(trained.config_path)
    lines: list[str] = []
    _Loop(Path(trained.config_path), "key", bundle, bundle).tell([], cfg, lines.append)
    assert lines == ["the loop: the monitor never recommended retraining in the production period"]
    failed = _Loop(Path(trained.config_path), "key", bundle, bundle, stage="failed")
    lines.clear()
    failed.tell([], cfg, lines.append)
    assert lines == [f"the loop: no promotion (failed); champion {bundle.tag} served on"]


def test_a_window_of_one_class_leaves_out_what_it_does_not_define(trained: Any) -> None:
    """A replayed window whose true labels are all one class (a season where every room is
    expensive) has no ROC AUC: the demo leaves it out of the window's truth and of the loop's
    means, instead of printing nan and scikit-learn's warning."""
    import warnings

    bundle = trained.bundle
    cfg = load_config(trained.config_path)
    frame = load_frame(ROOT / "data" / "flights.csv.gz").iloc[40_000:40_300]
    stats = ReplayStats()
    stats.truth = ["late"] * len(frame)
    loop = _Loop(Path(trained.config_path), "key", bundle, bundle, stage="refused",
                 challenger=bundle, decided=0)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # none may reach the console
        loop.record_refused(window(1, {}, {}), frame, stats, 0, cfg)
    assert "roc_auc" not in loop.refused_truth[1]
    assert loop.refused_truth[1]["balanced_accuracy"] >= 0  # defined on one class
