"""Champion vs challenger: both models scored on the same newest labelled rows.

The rows are the retrain set's gate rows: production rows with feedback, newer than anything
either model trained on. For every goal metric the gate reports both scores, their difference
(challenger - champion) and a *paired* bootstrap interval of it (each resample scores both
models on the same rows, so the interval reflects the models' difference, not the rows'
difficulty). The challenger is promoted only when, on every goal metric:

- it meets the goal's threshold;
- it scores at least the champion's score minus `retrain.tolerance`;
- with `retrain.require_interval`, the interval's lower bound is at least -tolerance;

and every slice with at least `evaluation.min_slice_rows` gate rows scores at least its floor
(`evaluation.slice_floors`). The challenger's own training gate (goals and baseline on its
held-out test part) must have passed too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from occam.config import Goal
from occam.metadata import ChallengeRecord, MetricComparisonRecord, SliceFloorRecord
from occam.metrics import score
from training.evaluate import Weights, percentile_interval

# One goal metric and one slice floor of the gate: the bundle's records of them.
MetricComparison = MetricComparisonRecord
SliceFloor = SliceFloorRecord


#: The decision of the gate and the table behind it: the bundle's record of it.
ChallengerGate = ChallengeRecord


def paired_bootstrap(
    metric: str,
    y: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    classes: list[str],
    positive: str,
    n_boot: int,
    confidence: float,
    seed: int,
    *,
    champion_weights: Weights = None,
    challenger_weights: Weights = None,
) -> tuple[float, float]:
    """Percentile interval of score(challenger) - score(champion) over rows resampled with
    replacement, both models on the same resample, each answering by its own decision weights
    (`occam.metrics.predicted_labels`). (nan, nan) when `n_boot` is 0."""
    y = np.asarray(y).astype(str)

    def difference(idx: np.ndarray) -> float:
        a = score(metric, y[idx], challenger[idx], classes, positive, challenger_weights)
        b = score(metric, y[idx], champion[idx], classes, positive, champion_weights)
        return a - b  # NaN when either is: that resample is left out

    return percentile_interval(difference, len(y), n_boot, confidence, seed)


def compare(
    goals: list[Goal],
    y: np.ndarray,
    champion: np.ndarray,
    challenger: np.ndarray,
    classes: list[str],
    positive: str,
    *,
    tolerance: float,
    require_interval: bool,
    n_boot: int,
    confidence: float,
    seed: int,
    champion_weights: Weights = None,
    challenger_weights: Weights = None,
) -> tuple[MetricComparison, ...]:
    """Score both models' probabilities (columns in `classes` order) on the same rows, each
    by the label rule it answers with (its bundle's decision weights; None: the top class)."""
    out = []
    for goal in goals:
        a = score(goal.metric, y, challenger, classes, positive, challenger_weights)
        b = score(goal.metric, y, champion, classes, positive, champion_weights)
        low, high = paired_bootstrap(
            goal.metric,
            y,
            champion,
            challenger,
            classes,
            positive,
            n_boot,
            confidence,
            seed,
            champion_weights=champion_weights,
            challenger_weights=challenger_weights,
        )
        out.append(
            MetricComparison(
                metric=goal.metric,
                threshold=goal.threshold,
                champion=b,
                challenger=a,
                difference=a - b,
                difference_low=low,
                difference_high=high,
                meets_goal=bool(a >= goal.threshold),
                within_tolerance=bool(a - b >= -tolerance),
                interval_ok=not require_interval or bool(low >= -tolerance),
            )
        )
    return tuple(out)


def slice_floors(
    frame: pd.DataFrame,
    y: np.ndarray,
    proba: np.ndarray,
    classes: list[str],
    positive: str,
    columns: list[str],
    floors: Mapping[str, float],
    min_rows: int,
    weights: Weights = None,
) -> tuple[SliceFloor, ...]:
    """Each (slice column value, floored metric) with at least `min_rows` rows; a column
    missing from `frame` (not logged: only features are) is skipped."""
    out = []
    y = np.asarray(y).astype(str)
    for column in columns:
        if column not in frame.columns:
            continue
        values = frame[column].astype(str).to_numpy()
        for value in pd.unique(values):
            mask = values == value
            if mask.sum() < min_rows:
                continue
            for metric, floor in floors.items():
                value_score = score(metric, y[mask], proba[mask], classes, positive, weights)
                out.append(
                    SliceFloor(
                        column=column,
                        value=str(value),
                        rows=int(mask.sum()),
                        metric=metric,
                        score=value_score,
                        floor=floor,
                    )
                )
    return tuple(out)


def table_rows(gate: ChallengerGate) -> list[tuple[str, ...]]:
    """(goal, threshold, champion, challenger, difference [interval], pass) per goal metric."""
    rows: list[tuple[str, ...]] = []
    for c in gate.comparisons:
        interval = (
            ""
            if np.isnan(c.difference_low)
            else f" [{c.difference_low:+.4f}, {c.difference_high:+.4f}]"
        )
        rows.append(
            (
                c.metric,
                f"{c.threshold:.2f}",
                f"{c.champion:.4f}",
                f"{c.challenger:.4f}",
                f"{c.difference:+.4f}{interval}",
                "yes" if c.passed else "no",
            )
        )
    return rows


TABLE_HEADER = ("goal", "threshold", "champion", "challenger", "difference (CI)", "pass")


def render_markdown(gate: ChallengerGate, summary: dict[str, Any], held: bool = False) -> str:
    """The card section: the decision, the table, failing slices and where the rows came from.
    `held`: the gate passed but the challenger stays a candidate for a shadow run."""
    percent = round(gate.confidence * 100)
    decision = (
        "Not promoted" if not gate.passed else "Passed, held for shadow" if held else "Promoted"
    )
    lines = [
        "## Champion vs challenger",
        "",
        f"**{decision}**: challenger `{gate.challenger}` "
        f"against champion `{gate.champion}` on the {gate.rows} newest labelled production "
        "rows, which neither model trained on. Tolerance "
        f"{gate.tolerance}; difference = challenger - champion with its paired bootstrap "
        f"{percent}% interval"
        + (" (its lower bound is gated too)." if gate.require_interval else "."),
        "",
        "| " + " | ".join(TABLE_HEADER) + " |",
        "|" + "---|" * len(TABLE_HEADER),
        *("| " + " | ".join(row) + " |" for row in table_rows(gate)),
        "",
    ]
    if gate.slices:
        failing = [s for s in gate.slices if not s.passed]
        lines.append(
            f"Slice floors: {len(gate.slices) - len(failing)} of {len(gate.slices)} slice "
            "scores at or above their floor."
        )
        lines += [
            f"- {s.column}={s.value} ({s.rows} rows): {s.metric} {s.score:.4f} < {s.floor}"
            for s in failing
        ]
        lines.append("")
    if not gate.passed:
        lines += ["Why not:", *(f"- {r}" for r in gate.reasons()), ""]
    lines += [
        "Retrain set: "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items() if v is not None),
        "",
    ]
    return "\n".join(lines)
