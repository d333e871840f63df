"""The exporter: exact values from a fresh registry, absent verdicts, never raising."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest, start_http_server

from monitoring.catalog import COUNTERS, GAUGES, exposed_names
from monitoring.check import CheckResult, run_check
from monitoring.exporter import MonitorCollector, Status
from monitoring.reference import Reference
from monitoring.state import MonitorState
from occam.config import MonitoringConfig
from occam.metrics import score
from tests.monitoring import synthetic

ROOT = Path(__file__).resolve().parents[2]
CONFIG = MonitoringConfig(window_rows=200, min_window_rows=50, live_min_labels=100)


def status(
    ref: Reference | None,
    check: CheckResult | None,
    state: MonitorState,
    counted: CheckResult | None = None,
) -> Status:
    return Status(
        config=CONFIG,
        now=2_000_000.0,
        records=dict(state.records),
        malformed=3,
        feedback_unmatched=1,
        window_rows=len(state.window),
        unread_bytes=42,
        last_record_ts=1_700_000_000.0,
        checks=5,
        check_errors=1,
        notifications_sent=0,
        notifications_failed=0,
        reference=ref,
        check=check,
        counted=counted if counted is not None else (check if check and check.counted else None),
    )


def new_state() -> MonitorState:
    return MonitorState.new(CONFIG.window_rows, CONFIG.min_window_rows, 10_000, 1000)


@pytest.fixture(scope="module")
def ref() -> Reference:
    return synthetic.reference(CONFIG)


def registry_for(s: Status) -> CollectorRegistry:
    registry = CollectorRegistry()
    MonitorCollector(lambda: s, registry=registry)
    return registry


def test_before_any_model_only_counters_and_settings(ref: Reference) -> None:
    registry = registry_for(status(None, None, new_state()))
    value = registry.get_sample_value
    assert value("occam_records_read_total", {"kind": "prediction"}) == 0
    assert value("occam_malformed_records_total") == 3
    assert value("occam_check_errors_total") == 1
    assert value("occam_window_size_rows") == 200 and value("occam_window_min_rows") == 50
    assert value("occam_unread_log_bytes") == 42
    for verdict in (
        "occam_data_drift",
        "occam_model_at_risk",
        "occam_prediction_drift",
        "occam_retrain_recommended",
        "occam_drifted_features_ratio",
        "occam_last_check_timestamp_seconds",
    ):
        assert value(verdict) is None, verdict
    assert value("occam_model_info", {"model_version": "v1"}) is None


def test_a_window_under_its_minimum_gives_no_verdict(ref: Reference) -> None:
    state = new_state()
    synthetic.feed(state, 20)
    check = run_check(state, ref, CONFIG, now=2_000_000.0)
    assert not check.counted and check.model_at_risk is None
    value = registry_for(status(ref, check, state)).get_sample_value
    assert value("occam_window_rows") == 20
    assert value("occam_last_check_timestamp_seconds") == 2_000_000.0
    for verdict in (
        "occam_data_drift",
        "occam_model_at_risk",
        "occam_retrain_recommended",
        "occam_weighted_drift",
        "occam_missing_ratio",
    ):
        assert value(verdict) is None, verdict
    assert value("occam_model_at_risk_reason", {"reason": "estimate"}) is None
    assert value("occam_goal_estimate", {"metric": "roc_auc"}) is None
    assert value("occam_feature_drifted", {"feature": "x"}) is None
    # thresholds and importances are drawn before any verdict
    assert value("occam_feature_drift_threshold", {"feature": "x"}) == pytest.approx(
        float(ref.inputs.thresholds_[0])
    )
    assert value("occam_feature_importance", {"feature": "x"}) == 0.08
    assert value("occam_weighted_drift_threshold") == CONFIG.weighted_drift_threshold
    assert value("occam_risk_enter_confidence") == CONFIG.risk_enter_confidence


def test_exact_values_of_a_counted_window(ref: Reference) -> None:
    state = new_state()
    synthetic.feed(state, 300, shift=3.0, labelled=150)
    check = run_check(state, ref, CONFIG, now=2_000_000.0)
    assert check.counted
    value = registry_for(status(ref, check, state)).get_sample_value
    assert value("occam_records_read_total", {"kind": "prediction"}) == 300
    assert value("occam_records_read_total", {"kind": "feedback"}) == 150
    assert value("occam_window_rows") == 200
    assert check.drift is not None and check.drift.drifted == ["x"]
    x = check.drift.features["x"]
    assert value("occam_feature_drifted", {"feature": "x"}) == 1
    assert value("occam_feature_drifted", {"feature": "c"}) == 0
    assert value("occam_feature_drift_effect_size", {"feature": "x"}) == x.effect_size
    assert value("occam_feature_drift_p_value", {"feature": "x"}) == x.p_value
    assert value("occam_drifted_features_ratio") == 0.5
    assert value("occam_data_drift") == 1
    assert value("occam_drift_consecutive_windows") == 1  # 300 rows >= one window of 200
    # x carries 80% of the importance and moved to nearly disjoint values (shift 3 sd)
    excess = (x.effect_size - x.threshold) / (1 - x.threshold)
    assert value("occam_weighted_drift") == pytest.approx(0.8 * excess)
    assert value("occam_weighted_drift_contribution", {"feature": "x"}) == pytest.approx(
        0.8 * excess
    )
    assert value("occam_weighted_drift_contribution", {"feature": "c"}) == 0
    assert check.named == ("x",)
    # the extreme level (0.25) is passed: at risk for drift alone, the estimate is fine
    assert value("occam_model_at_risk") == 1
    assert value("occam_model_at_risk_reason", {"reason": "drift"}) == 1
    assert value("occam_model_at_risk_reason", {"reason": "estimate"}) == 0
    assert value("occam_retrain_reason", {"reason": "drift"}) == 1
    assert value("occam_retrain_recommended") == 1
    assert check.estimate is not None
    auc = check.estimate.metrics["roc_auc"]
    assert value("occam_goal_estimate", {"metric": "roc_auc"}) == auc.value
    assert value("occam_goal_estimate_lower", {"metric": "roc_auc"}) == auc.lower
    assert value("occam_goal_estimate_upper", {"metric": "roc_auc"}) == auc.upper
    assert auc.lower < auc.value < auc.upper
    labels, proba = state.join.labelled_arrays(synthetic.CLASSES)
    assert value("occam_live_labels") == 150
    served = state.join.served_times()
    assert value("occam_live_labels_served_oldest_timestamp_seconds") == served.min()
    assert value("occam_live_labels_served_newest_timestamp_seconds") == served.max()
    live = value("occam_live_metric", {"metric": "roc_auc"})
    assert live == pytest.approx(score("roc_auc", labels, proba, synthetic.CLASSES, "yes"))
    lower = value("occam_live_metric_lower", {"metric": "roc_auc"})
    upper = value("occam_live_metric_upper", {"metric": "roc_auc"})
    assert lower < live < upper
    assert value("occam_goal_threshold", {"metric": "roc_auc"}) == 0.7
    assert value("occam_feedback_coverage_ratio") == 0.5
    assert value("occam_model_info", {"model_version": "v1"}) == 1
    assert value("occam_model_age_seconds") == 1_000_000.0
    assert value("occam_max_model_age_seconds") == 90 * 86400
    ratios = [value("occam_prediction_class_ratio", {"label": c}) for c in synthetic.CLASSES]
    assert sum(r for r in ratios if r is not None) == pytest.approx(1)


def test_gauges_show_the_last_counted_window(ref: Reference) -> None:
    state = new_state()
    synthetic.feed(state, 200, shift=3.0)
    counted = run_check(state, ref, CONFIG, now=2_000_000.0)
    assert counted.counted and counted.model_at_risk
    state.runs = counted.runs  # what the sidecar applies
    synthetic.feed(state, 150, start=200, labelled=150)  # the window is mostly quiet again
    partial = run_check(state, ref, CONFIG, now=2_000_050.0)
    assert not partial.counted and partial.drift is not None
    assert partial.weighted is not None and counted.weighted is not None
    assert partial.weighted.score < counted.weighted.score
    value = registry_for(status(ref, partial, state, counted)).get_sample_value
    # the verdicts and window figures are the counted window's ...
    assert value("occam_model_at_risk") == 1
    assert value("occam_weighted_drift") == counted.weighted.score
    assert value("occam_last_counted_window_timestamp_seconds") == 2_000_000.0
    # ... the measurements on labelled rows and the check time follow every check
    assert value("occam_live_labels") == 150
    live = partial.live.metrics["roc_auc"]
    assert value("occam_live_metric", {"metric": "roc_auc"}) == live
    assert value("occam_last_check_timestamp_seconds") == 2_000_050.0


def test_a_failing_status_never_raises(ref: Reference) -> None:
    state = new_state()
    calls = {"n": 0}

    def provider() -> Status:
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("broken")
        return status(ref, None, state)

    registry = CollectorRegistry()
    MonitorCollector(provider, registry=registry)
    assert registry.get_sample_value("occam_malformed_records_total") == 3
    text = generate_latest(registry).decode()  # second scrape fails inside
    assert "occam_exporter_errors_total 1.0" in text
    assert "occam_malformed_records_total 3.0" in text  # the last good counters
    assert "occam_window_rows" not in text


def test_broken_check_values_do_not_break_the_scrape(ref: Reference) -> None:
    state = new_state()
    synthetic.feed(state, 200)
    check = run_check(state, ref, CONFIG, now=2_000_000.0)
    assert check.counted
    broken = replace(check, quality=object())  # type: ignore[arg-type]
    registry = registry_for(status(ref, broken, state))
    assert registry.get_sample_value("occam_exporter_errors_total") == 1


def exposition(ref: Reference) -> str:
    state = new_state()
    synthetic.feed(state, 300, labelled=150)
    check = run_check(state, ref, CONFIG, now=2_000_000.0)
    return generate_latest(registry_for(status(ref, check, state))).decode()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_check_metrics(ref: Reference) -> None:
    done = subprocess.run(
        ["promtool", "check", "metrics"], input=exposition(ref), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_exported_metric_is_in_the_catalog_and_documented(ref: Reference) -> None:
    names = set(re.findall(r"^# TYPE (\S+) ", exposition(ref), flags=re.M))
    assert names <= set(exposed_names())
    assert len(exposed_names()) == len(COUNTERS) + len(GAUGES)
    docs = (ROOT / "docs" / "metrics.md").read_text()
    missing = [n for n in exposed_names() if f"`{n}`" not in docs]
    assert missing == []


def test_served_over_real_http(ref: Reference) -> None:
    registry = CollectorRegistry()
    MonitorCollector(lambda: status(ref, None, new_state()), registry=registry)
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'occam_records_read_total{kind="prediction"} 0.0' in body
    assert 'occam_model_info{model_version="v1"} 1.0' in body
