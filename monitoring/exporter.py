"""The Prometheus exporter: a custom collector that turns the sidecar's status into metrics.

Every scrape builds fresh metric families from one `Status` (names and help texts in
`monitoring.catalog`, meaning in docs/metrics.md). A gauge whose value is not known yet (no
reference model, window under its minimum, too few labels) is *absent*, never 0: absence cannot
be read as "no drift". Verdicts and window figures come from the last *counted* window (see
`monitoring.check`); only the time of the last check and the live metrics from feedback (value,
interval, label count, coverage) follow every check. The collector never raises: if building
the families fails, it logs, counts `occam_exporter_errors_total` and serves the counters of
the last good scrape.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from monitoring.catalog import COUNTERS, GAUGES
from monitoring.check import CheckResult
from monitoring.notify import RUN_OUTCOME_NAMES
from monitoring.reference import PREDICTED, Reference
from monitoring.shadow import ShadowComparison
from monitoring.state import LogAccount
from occam.config import MonitoringConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Status:
    """What the sidecar knows at scrape time. `check` is the last *successful* check and
    `counted` the last successful check of a counted window (each None before the first one,
    and after a switch to another model until its first one)."""

    config: MonitoringConfig
    now: float
    records: dict[str, int]
    malformed: int
    feedback_unmatched: int
    window_rows: int
    unread_bytes: int
    last_record_ts: float | None
    checks: int
    check_errors: int
    notifications_sent: int
    notifications_failed: int
    reference: Reference | None
    check: CheckResult | None
    feedback_duplicates: int = 0
    feedback_label_shift: float | None = None
    account: LogAccount | None = None
    log_bytes: int = 0
    log_segments: int = 0
    counted: CheckResult | None = None
    shadow: ShadowComparison | None = None
    #: Retrain command runs by outcome (`monitoring.notify.RUN_OUTCOME_NAMES`).
    retrain_runs: dict[str, int] | None = None


class _Families:
    """Metric families by name; `gauge` skips unknown (None or NaN) values."""

    def __init__(self) -> None:
        self.families: dict[str, Metric] = {}

    def gauge(self, name: str, value: float | bool | None, **labels: str) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        self._add(GaugeMetricFamily, name, GAUGES[name], float(value), labels)

    def counter(self, name: str, value: float, **labels: str) -> None:
        self._add(CounterMetricFamily, name, COUNTERS[name], float(value), labels)

    def _add(
        self,
        kind: type[GaugeMetricFamily] | type[CounterMetricFamily],
        name: str,
        doc: str,
        value: float,
        labels: dict[str, str],
    ) -> None:
        family = self.families.get(name)
        if family is None:
            family = kind(name, doc, labels=sorted(labels))
            self.families[name] = family
        assert isinstance(family, GaugeMetricFamily | CounterMetricFamily)
        family.add_metric([labels[k] for k in sorted(labels)], value)


def _shadow(out: _Families, c: ShadowComparison) -> None:
    """Shadow challenger against champion on the same rows (`monitoring.shadow`)."""
    out.counter("occam_shadow_rows", c.rows_total)
    for role, live in c.live.items():
        out.gauge("occam_shadow_live_labels", live.labels, role=role)
        for metric, value in live.metrics.items():
            out.gauge("occam_shadow_live_metric", value, metric=metric, role=role)
    for role, estimate in c.estimate.items():
        for metric, value in estimate.items():
            out.gauge("occam_shadow_goal_estimate", value, metric=metric, role=role)


def _output(name: str) -> str:
    return "class_mix" if name == PREDICTED else "confidence"


def _counters(out: _Families, s: Status, exporter_errors: int) -> None:
    for kind in ("prediction", "feedback", "rejected"):
        out.counter("occam_records_read", s.records.get(kind, 0), kind=kind)
    out.counter("occam_malformed_records", s.malformed)
    out.counter("occam_rejected_rows", s.records.get("rejected", 0))
    out.counter("occam_feedback_unmatched", s.feedback_unmatched)
    out.counter("occam_checks", s.checks)
    out.counter("occam_check_errors", s.check_errors)
    out.counter("occam_retrain_notifications", s.notifications_sent, outcome="sent")
    out.counter("occam_retrain_notifications", s.notifications_failed, outcome="failed")
    out.counter("occam_exporter_errors", exporter_errors)
    runs = s.retrain_runs or {}
    for outcome in RUN_OUTCOME_NAMES:
        out.counter("occam_retrain_runs", runs.get(outcome, 0), outcome=outcome)
    _log_counters(out, s)


def _log_counters(out: _Families, s: Status) -> None:
    """The log's own accounting: feedback duplicates, losses, segment events, retention."""
    out.counter("occam_feedback_duplicates", s.feedback_duplicates)
    a = s.account or LogAccount()
    out.counter("occam_log_lost_bytes", a.lost_bytes)
    out.counter("occam_log_lost_records", a.lost_records)
    for event, count in sorted(a.events.items()):
        out.counter("occam_log_segment_events", count, event=event)
    out.counter("occam_log_retention_deleted_segments", a.retained_segments)
    out.counter("occam_log_retention_deleted_bytes", a.retained_bytes)
    out.counter("occam_state_expired_rows", a.expired_rows)


def _log_gauges(out: _Families, s: Status) -> None:
    c = s.config
    out.gauge("occam_log_bytes", s.log_bytes)
    out.gauge("occam_log_segments", s.log_segments)
    out.gauge("occam_log_retention_bytes", c.log_retention_bytes)
    hours = c.log_retention_hours
    out.gauge("occam_log_retention_seconds", None if hours is None else hours * 3600)
    out.gauge("occam_feedback_label_shift", s.feedback_label_shift)
    out.gauge("occam_feedback_label_shift_threshold", c.feedback_shift_threshold)


def _settings(out: _Families, s: Status) -> None:
    c = s.config
    out.gauge("occam_window_rows", s.window_rows)
    out.gauge("occam_window_size_rows", c.window_rows)
    out.gauge("occam_window_min_rows", c.min_window_rows)
    out.gauge("occam_drift_share_threshold", c.drift_share_threshold)
    out.gauge("occam_drift_required_windows", c.consecutive_windows)
    out.gauge("occam_live_min_labels", c.live_min_labels)
    out.gauge("occam_band_level", c.band_level)
    out.gauge("occam_risk_enter_confidence", c.risk_enter_confidence)
    out.gauge("occam_risk_exit_confidence", c.risk_exit_confidence)
    out.gauge("occam_risk_exit_windows", c.risk_exit_windows)
    out.gauge("occam_weighted_drift_threshold", c.weighted_drift_threshold)
    out.gauge("occam_weighted_drift_exit_threshold", c.weighted_drift_exit)
    out.gauge("occam_max_model_age_seconds", c.max_model_age_days * 86400)
    out.gauge("occam_unread_log_bytes", s.unread_bytes)
    out.gauge("occam_last_record_timestamp_seconds", s.last_record_ts)
    _log_gauges(out, s)


def _model(out: _Families, ref: Reference, now: float) -> None:
    out.gauge("occam_model_info", 1, model_version=ref.version)
    out.gauge("occam_model_created_timestamp_seconds", ref.created_ts)
    age = None if ref.created_ts is None else max(now - ref.created_ts, 0.0)
    out.gauge("occam_model_age_seconds", age)
    out.gauge("occam_reference_rows", ref.rows)
    for metric, threshold in ref.goals.items():
        out.gauge("occam_goal_threshold", threshold, metric=metric)
    for label, ratio in ref.class_ratio.items():
        out.gauge("occam_reference_class_ratio", ratio, label=label)
    out.gauge("occam_reference_confidence_mean", ref.confidence_mean)
    for name, level in zip(ref.inputs.names_, ref.inputs.thresholds_, strict=True):
        out.gauge("occam_feature_drift_threshold", level, feature=name)
    for name, level in zip(ref.outputs.names_, ref.outputs.thresholds_, strict=True):
        out.gauge("occam_output_drift_threshold", level, output=_output(name))
    for name, value in ref.importance.items():
        if name in ref.schema.names:  # label values only from the schema
            out.gauge("occam_feature_importance", value, feature=name)
    for metric, sd in ref.estimator.systematic_.items():
        out.gauge("occam_estimate_systematic_error", sd, metric=metric)


def _latest(out: _Families, c: CheckResult) -> None:
    """Figures that follow every check, counted or not."""
    out.gauge("occam_last_check_timestamp_seconds", c.timestamp)
    out.gauge("occam_live_labels", c.live.labels)
    if c.live.served is not None:
        out.gauge("occam_live_labels_served_oldest_timestamp_seconds", c.live.served[0])
        out.gauge("occam_live_labels_served_newest_timestamp_seconds", c.live.served[1])
    out.gauge("occam_feedback_coverage_ratio", c.coverage)
    # measurements on the labelled rows, which feedback updates between windows; the verdict
    # drawn from them (occam_model_at_risk_reason{reason="live_metric"}) is the counted window's
    for metric, value in c.live.metrics.items():
        out.gauge("occam_live_metric", value, metric=metric)
        interval = c.live.intervals.get(metric)
        if interval is not None:
            out.gauge("occam_live_metric_lower", interval.lower, metric=metric)
            out.gauge("occam_live_metric_upper", interval.upper, metric=metric)


def _counted(out: _Families, c: CheckResult) -> None:
    """The last counted window: its figures and verdicts."""
    out.gauge("occam_last_counted_window_timestamp_seconds", c.timestamp)
    out.gauge("occam_drift_check_duration_seconds", c.duration_seconds)
    if c.drift is not None:
        for name, f in c.drift.features.items():
            out.gauge("occam_feature_drift_p_value", f.p_value, feature=name)
            out.gauge("occam_feature_drift_statistic", f.statistic, feature=name)
            out.gauge("occam_feature_drift_effect_size", f.effect_size, feature=name)
            out.gauge("occam_feature_drifted", f.drifted, feature=name)
            if c.weighted is not None:
                share = c.weighted.contributions.get(name, 0.0)
                out.gauge("occam_weighted_drift_contribution", share, feature=name)
        out.gauge("occam_drifted_features_ratio", c.drift.drifted_share)
    if c.weighted is not None:
        out.gauge("occam_weighted_drift", c.weighted.score)
    out.gauge("occam_data_drift", c.data_drift)
    out.gauge("occam_drift_consecutive_windows", c.data_drift_run)
    if c.estimate is not None:
        for metric, u in c.estimate.metrics.items():
            out.gauge("occam_goal_estimate", u.value, metric=metric)
            out.gauge("occam_goal_estimate_lower", u.lower, metric=metric)
            out.gauge("occam_goal_estimate_upper", u.upper, metric=metric)
            judged = c.anchored.metrics.get(metric) if c.anchored is not None else None
            if judged is not None:
                out.gauge("occam_goal_estimate_bias", judged.value - u.value, metric=metric)
    out.gauge("occam_model_at_risk", c.model_at_risk)
    for reason, active in c.reasons.items():
        out.gauge("occam_model_at_risk_reason", active, reason=reason)
    out.gauge("occam_prediction_drift", c.prediction_drift)
    out.gauge("occam_prediction_drift_p_value", c.prediction_p_value)
    if c.output_drift is not None:
        for name, f in c.output_drift.features.items():
            out.gauge("occam_output_drift_effect_size", f.effect_size, output=_output(name))
    q = c.quality
    if q is not None:
        for label, ratio in q.class_ratio.items():
            out.gauge("occam_prediction_class_ratio", ratio, label=label)
        out.gauge("occam_confidence_mean", q.confidence_mean)
        out.gauge("occam_abstention_ratio", q.abstention_ratio)
        out.gauge("occam_missing_ratio", q.missing_ratio)
        out.gauge("occam_unseen_category_ratio", q.unseen_category_ratio)
        out.gauge("occam_out_of_range_ratio", q.out_of_range_ratio)
    out.gauge("occam_retrain_recommended", c.recommendation.recommended)
    for reason, verdict in c.recommendation.reasons.items():
        out.gauge("occam_retrain_reason", verdict, reason=reason)


class MonitorCollector(Collector):
    """Collector over `status()`; registers itself in `registry` when one is given."""

    def __init__(
        self, status: Callable[[], Status], registry: CollectorRegistry | None = None
    ) -> None:
        self.status = status
        self.errors = 0
        self._last_counters: list[Metric] = []
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterator[Metric]:
        try:
            s = self.status()
            out = _Families()
            _counters(out, s, self.errors)
            counters = list(out.families.values())
            _settings(out, s)
            if s.reference is not None:
                _model(out, s.reference, s.now)
            if s.check is not None:
                _latest(out, s.check)
            if s.counted is not None:
                _counted(out, s.counted)
            if s.shadow is not None:
                _shadow(out, s.shadow)
            families = list(out.families.values())
            self._last_counters = counters
        except Exception:
            self.errors += 1
            log.exception("building the metrics failed; serving the last counters only")
            fallback = _Families()
            fallback.counter("occam_exporter_errors", self.errors)
            kept = [m for m in self._last_counters if m.name != "occam_exporter_errors"]
            families = [*kept, *fallback.families.values()]
        yield from families
