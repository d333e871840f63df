"""One check: drift, quality, live metrics and the retrain policy on the current windows.

Two levels of drift verdict:

- per feature (informational): `DriftResult.features[name].drifted`;
- per window: `data_drift` when the share of checked features that drifted reaches
  `drift_share_threshold`; held for `consecutive_windows` counted windows in a row it becomes
  `model_at_risk`, which drives alerts and the retrain recommendation.

A window counts for hysteresis once `check_every_rows` new predictions (default: a whole window)
arrived since the last counted one, so consecutive counted windows do not overlap by default;
checks in between refresh every figure but do not move the run lengths. Until the window holds
`min_window_rows` there is no verdict (None), never a silent "no drift".
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from monitoring.drift import DriftResult
from monitoring.policy import Recommendation, advance, recommend
from monitoring.quality import DataQuality, LiveQuality, data_quality, live_quality
from monitoring.reference import Reference, output_frame
from monitoring.state import MonitorState
from occam.config import MonitoringConfig


@dataclass(frozen=True)
class CheckResult:
    """Everything one check found; None means "no verdict / not measurable yet".

    `prediction_p_value` is the smaller of the two output tests' p-values, Bonferroni-adjusted
    for the two tests. `timestamp` is Unix seconds, `duration_seconds` the time the check took.
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
    live: LiveQuality
    coverage: float | None
    counted: bool
    data_drift_run: int | None
    prediction_drift_run: int | None
    model_at_risk: bool | None
    model_age_seconds: float | None
    recommendation: Recommendation


def every_rows(config: MonitoringConfig) -> int:
    """New predictions that make a window count for hysteresis."""
    return config.check_every_rows or config.window_rows


def run_check(
    state: MonitorState,
    ref: Reference,
    config: MonitoringConfig,
    now: float,
    reuse: CheckResult | None = None,
) -> CheckResult:
    """Check the current windows; advances the hysteresis runs in `state.runs`.

    `reuse`: the previous result, when the window has not changed since; its drift and
    quality figures are kept instead of being computed again.
    """
    started = time.perf_counter()
    window = state.window
    data = window.data(ref.schema.names) if len(window) and reuse is None else None
    quality = data_quality(data, ref.classes) if data is not None else None
    drift = output = None
    data_drift = prediction_drift = None
    p_value = None
    if reuse is not None:
        quality, drift, output = reuse.quality, reuse.drift, reuse.output_drift
        data_drift, prediction_drift = reuse.data_drift, reuse.prediction_drift
        p_value = reuse.prediction_p_value
    elif data is not None and window.ready:
        frame = ref.schema.coerce(data.features)
        drift = ref.inputs.check(frame[ref.inputs.names_])
        output = ref.outputs.check(output_frame(data.predicted, data.confidence))
        data_drift = bool(drift.features) and drift.drifted_share >= config.drift_share_threshold
        prediction_drift = bool(output.drifted)
        p_value = min(1.0, 2 * min(f.p_value for f in output.features.values()))
    runs = state.runs
    new_rows = state.rows_total - runs.counted_rows
    counted = reuse is None and data_drift is not None and new_rows >= every_rows(config)
    if counted:
        runs.counted_rows = state.rows_total
    runs.data_drift = advance(runs.data_drift, data_drift, counted)
    runs.prediction_drift = advance(runs.prediction_drift, prediction_drift, counted)
    has_verdict = data_drift is not None
    live = live_quality(
        state.join,
        ref.classes,
        ref.positive,
        ref.goals,
        config.live_min_labels,
        ref.decision_weights,
    )
    age = None if ref.created_ts is None else max(now - ref.created_ts, 0.0)
    recommendation = recommend(
        data_drift_run=runs.data_drift if has_verdict else None,
        prediction_drift_run=runs.prediction_drift if has_verdict else None,
        consecutive=config.consecutive_windows,
        live_below=bool(live.below) if live.metrics else None,
        model_age_seconds=age,
        max_model_age_seconds=config.max_model_age_days * 86400,
    )
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
        live=live,
        coverage=state.join.coverage,
        counted=counted,
        data_drift_run=runs.data_drift if has_verdict else None,
        prediction_drift_run=runs.prediction_drift if has_verdict else None,
        model_at_risk=(runs.data_drift >= config.consecutive_windows) if has_verdict else None,
        model_age_seconds=age,
        recommendation=recommendation,
    )
