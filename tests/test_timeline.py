"""occam/timeline.py in a real browser: the page parses, shows one truth point per window and
goal, the goal lines, the estimate band, the alert spans, and is not blank on screen."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from occam.timeline import (
    ESTIMATE,
    GOAL,
    AlertSpan,
    Interval,
    LoopEvent,
    Timeline,
    WindowPoint,
    render_html,
    write_timeline,
)
from tests.browser import count_kind, has_colour, rendered_dom, screenshot

GOALS = {"roc_auc": 0.70, "balanced_accuracy": 0.62}


def timeline(windows: int = 20, promoted: int | None = None) -> Timeline:
    """Held-out windows meeting the goals, then production windows falling under them; with
    `promoted`, a retrain after window 12, its shadow, and a promotion after window `promoted`
    (0-based), the old champion's truth drawn for the windows after it."""
    rng = np.random.default_rng(0)
    points = []
    for i in range(windows):
        drop = 0.0 if i < 8 else 0.06
        auc, ba = 0.73 - drop + rng.normal(0, 0.01), 0.66 - drop + rng.normal(0, 0.01)
        points.append(WindowPoint(
            index=i, phase="held-out" if i < 5 else "production", rows=1000,
            wall_time=1000.0 + 3 * i, first_time=f"2013-{6 + i // 10:02d}-{1 + i % 10:02d}",
            truth={"roc_auc": auc, "balanced_accuracy": ba},
            estimate={"roc_auc": Interval(auc + 0.01, auc - 0.02, auc + 0.04)},
            live={"roc_auc": Interval(auc, auc - 0.03, auc + 0.03)} if i > 2 else {},
            drift={"temp": 0.5 + 0.2 * max(0, i - 8), "origin": 0.4},
            weighted_drift=0.1, at_risk=i >= 10, reasons=("estimate",) if i >= 10 else (),
            champion_truth={"roc_auc": auc - 0.03, "balanced_accuracy": ba - 0.03}
            if promoted is not None and i > promoted else {},
        ))  # fmt: skip
    return Timeline(
        title="flights-late: a test timeline",
        goals=GOALS,
        windows=points,
        alerts=[AlertSpan("OccamModelAtRisk", 1000.0 + 3 * 13, 1000.0 + 3 * 19)],
        top_features=[("temp", 0.03), ("origin", 0.01)],
        weighted_drift_threshold=0.3,
        events=[]
        if promoted is None
        else [
            LoopEvent("retrain", 11, "retrained: m:2 passed the gate"),
            LoopEvent("shadow", 11, "m:2 in shadow"),
            LoopEvent("promotion", promoted, "m:2 promoted"),
        ],
    )


def test_the_browser_shows_every_window_goal_band_and_alert(tmp_path: Path) -> None:
    page = write_timeline(timeline(20), tmp_path / "timeline.html")
    dom = rendered_dom(page)
    assert count_kind(dom, "window-truth") == 20 * len(GOALS)
    assert count_kind(dom, "goal-line") == len(GOALS)
    assert count_kind(dom, "estimate-band") == 1  # roc_auc only: no gap in its band
    assert count_kind(dom, "live") == 17
    assert count_kind(dom, "alert-span") == 1
    assert count_kind(dom, "verdict") == 1  # windows 11-20 at risk: one run
    assert count_kind(dom, "phase-boundary") == len(GOALS) + 1
    assert "OccamModelAtRisk" in dom


def test_the_screenshot_is_a_chart_not_a_blank_page(tmp_path: Path) -> None:
    page = write_timeline(timeline(20), tmp_path / "timeline.html")
    pixels = screenshot(page, tmp_path / "timeline.png", 1150, 1000)
    ink = (pixels.min(axis=2) < 200).mean()
    assert ink > 0.03, f"only {ink:.1%} of the screenshot is drawn"
    assert has_colour(pixels, GOAL) > 200  # the dashed goal lines
    assert has_colour(pixels, "#C0392B") > 200  # the alert span
    # the estimate band is drawn translucent over white: a light blue, not the line's colour
    assert has_colour(pixels, ESTIMATE) > 100


def test_windows_with_no_truth_or_band_leave_gaps_not_errors() -> None:
    empty = Timeline(title="t", goals={"roc_auc": 0.7}, windows=[
        WindowPoint(index=i, phase="production", rows=10, wall_time=float(i)) for i in range(3)
    ])  # fmt: skip
    page = render_html(empty)
    assert 'data-kind="window-truth"' not in page
    assert "no alert fired during the replay" in page


def test_the_loop_steps_and_the_old_champion_after_the_promotion_are_drawn(
    tmp_path: Path,
) -> None:
    page = write_timeline(timeline(20, promoted=13), tmp_path / "timeline.html")
    dom = rendered_dom(page)
    goals = len(GOALS)
    assert count_kind(dom, "loop-event") == 3 * goals  # each step in every goal's panel
    for step in ("retrain", "shadow", "promotion"):
        assert f'data-event="{step}"' in dom
    assert count_kind(dom, "champion-truth") == goals  # one run of windows 15-20 per goal
    assert "m:2 promoted (after window 14)" in dom
    assert count_kind(dom, "window-truth") == 20 * goals
    plain = rendered_dom(write_timeline(timeline(20), tmp_path / "plain.html"))
    assert count_kind(plain, "loop-event") == 0 and count_kind(plain, "champion-truth") == 0
