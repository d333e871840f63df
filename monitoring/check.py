"""One check: drift, quality, label-free estimates, live metrics and the risk verdict.

`run_check` is a pure function of the sidecar's state: it returns a `CheckResult` holding the
new hysteresis memory (`runs`), which the sidecar applies (`state.runs = result.runs`).

A window *counts* once `check_every_rows` new predictions (default: a whole window) arrived
since the last counted one, so counted windows do not overlap by default. Only a counted window
moves the hysteresis, and the exporter shows the verdicts of the last counted window; checks in
between refresh the live labels and the status figures only. Until the window holds
`min_window_rows` there is no verdict (None), never a silent "no risk".

Two levels of drift: per feature (informational, `DriftResult.features[name].drifted`, with the
old window verdict `data_drift`: the share of drifted features reaches `drift_share_threshold`)
and the importance-weighted drift (`monitoring.importance`), one of the three reasons of the
"model at risk" verdict (`monitoring.policy`) next to the label-free estimate and the live metric.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from monitoring.drift import DriftResult
from monitoring.estimate import WindowEstimate, anchored
from monitoring.importance import WeightedDrift, weighted_drift
from monitoring.policy import (
    RISK_REASONS,
    Recommendation,
    RiskLevels,
    Signal,
    advance,
    drift_signal,
    goal_signal,
    recommend,
    step,
)
from monitoring.quality import DataQuality, LiveQuality, data_quality, live_quality
from monitoring.reference import Reference
from monitoring.state import MonitorState, Runs
from occam.config import MonitoringConfig


@dataclass(frozen=True)
class CheckResult:
    """Everything one check found; None means "no verdict / not measurable yet".

    `prediction_p_value` is the smaller of the two output tests' p-values, Bonferroni-adjusted
    for the two tests. `timestamp` is Unix seconds, `duration_seconds` the time the check took.
    `estimate` is the label-free estimate, `anchored` the one the policy judged (corrected by
    the bias measured on the labelled predictions when there are enough; see
    `monitoring.estimate.anchored`). `signals` are this window's evidence per risk reason,
    `missed` the goals likely missed (per goal reason), `named` the damaging features (largest
    weighted-drift contribution first); `runs` the hysteresis memory after this check, which the
    sidecar applies.
    """

    timestamp: float
    duration_seconds: float
    window_rows: int
    drift: DriftResult | None
    data_drift: bool | None
    output_drift: DriftResult | None
    prediction_drift: bool | None
    prediction_p_value: float | None
    quality: DataQuality | None
    weighted: WeightedDrift | None
    estimate: WindowEstimate | None
    anchored: WindowEstimate | None
    live: LiveQuality
    coverage: float | None
    counted: bool
    data_drift_run: int | None
    prediction_drift_run: int | None
    signals: dict[str, Signal]
    missed: dict[str, tuple[str, ...]]
    named: tuple[str, ...]
    runs: Runs
    judged: bool
    model_age_seconds: float | None
    recommendation: Recommendation

    @property
    def model_at_risk(self) -> bool | None:
        """1 while any risk reason is active; None before the model's first counted window."""
        return bool(self.runs.risk_active) if self.judged else None

    @property
    def reasons(self) -> dict[str, bool | None]:
        """Each risk reason: active or not (None before the first counted window)."""
        active = self.runs.risk_active
        return {r: (r in active) if self.judged else None for r in RISK_REASONS}


def run_check(
    state: MonitorState,
    ref: Reference,
    config: MonitoringConfig,
    now: float,
    reuse: CheckResult | None = None,
) -> CheckResult:
    """Check the current windows; `state` is only read (see the module docstring), except
    that an unbound window is bound to `ref.encoding` (`PredictionWindow.bind`: the same rows,
    kept as columns from then on).

    `reuse`: the previous result, when the window has not changed since; its drift, estimate
    and quality figures are kept instead of being computed again.
    """
    started = time.perf_counter()
    window = state.window
    levels = RiskLevels.from_config(config)
    if reuse is None:
        window.bind(ref.encoding)  # a no-op once bound (the sidecar binds when it loads `ref`)
    data = window.data() if len(window) and reuse is None else None
    quality = data_quality(data, ref.classes) if data is not None else None
    drift = output = None
    weighted = None
    estimate = None
    data_drift = prediction_drift = None
    p_value = None
    if reuse is not None:
        quality, drift, output = reuse.quality, reuse.drift, reuse.output_drift
        data_drift, prediction_drift = reuse.data_drift, reuse.prediction_drift
        p_value, weighted, estimate = reuse.prediction_p_value, reuse.weighted, reuse.estimate
    elif data is not None and window.ready:
        assert data.encoded is not None and data.outputs is not None  # a bound window's
        drift = ref.inputs.check_encoded(data.encoded)
        output = ref.outputs.check_encoded(data.outputs)
        data_drift = bool(drift.features) and drift.drifted_share >= config.drift_share_threshold
        prediction_drift = bool(output.drifted)
        p_value = min(1.0, 2 * min(f.p_value for f in output.features.values()))
        weighted = weighted_drift(drift, ref.weights)
        assert data.proba is not None  # asked for with the classes
        estimate = ref.estimator.estimate(data.proba)
    live = live_quality(
        state.join,
        ref.classes,
        ref.positive,
        ref.goals,
        config.live_min_labels,
        config.band_level,
        ref.estimator,
        ref.decision_weights,
    )
    judged_estimate = estimate
    if estimate is not None and live.estimated is not None:
        judged_estimate = anchored(estimate, live.estimated, live.intervals)
    estimate_signal, estimate_missed = (
        goal_signal(judged_estimate.metrics, ref.goals, levels)
        if judged_estimate is not None
        else (Signal.UNKNOWN, ())
    )
    live_signal, live_missed = goal_signal(live.intervals, ref.goals, levels)
    signals = {
        "estimate": estimate_signal,
        "live_metric": live_signal,
        "drift": drift_signal(weighted.score if weighted is not None else None, levels),
    }
    runs = state.runs
    new_rows = state.rows_total - runs.counted_rows
    counted = reuse is None and data_drift is not None and new_rows >= config.every_rows
    if counted:
        runs = step(
            replace(
                runs,
                counted_rows=state.rows_total,
                data_drift=advance(runs.data_drift, data_drift, True),
                prediction_drift=advance(runs.prediction_drift, prediction_drift, True),
            ),
            signals,
            levels,
        )
    has_verdict = data_drift is not None
    judged = counted or runs.counted_rows > 0
    age = None if ref.created_ts is None else max(now - ref.created_ts, 0.0)
    return CheckResult(
        timestamp=now,
        duration_seconds=time.perf_counter() - started,
        window_rows=len(window),
        drift=drift,
        data_drift=data_drift,
        output_drift=output,
        prediction_drift=prediction_drift,
        prediction_p_value=p_value,
        quality=quality,
        weighted=weighted,
        estimate=estimate,
        anchored=judged_estimate,
        live=live,
        coverage=state.join.coverage,
        counted=counted,
        data_drift_run=runs.data_drift if has_verdict else None,
        prediction_drift_run=runs.prediction_drift if has_verdict else None,
        signals=signals,
        missed={"estimate": estimate_missed, "live_metric": live_missed},
        named=weighted.named if weighted is not None else (),
        runs=runs,
        judged=judged,
        model_age_seconds=age,
        recommendation=recommend(runs, judged, age, config.max_model_age_days * 86400),
    )


def describe(result: CheckResult) -> str:
    """One line naming the active reasons, the goals likely missed and the damaging features."""
    parts = []
    for reason in result.runs.risk_active:
        goals = result.missed.get(reason, ())
        parts.append(f"{reason} ({', '.join(goals)})" if goals else reason)
    text = ", ".join(parts) or "none"
    if result.named:
        text += "; inputs that moved most where the model relies on them: "
        text += ", ".join(result.named)
    return text
