"""Stand-ins for the service's and the monitor's /metrics, with the documented metric names and
a drifted, under-goal state. They let the ops tests run the shipped rules and the dashboard's
queries against a real Prometheus without training a model; the integration test does the same
with the real processes."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

FEATURES = {"temp": 1, "dewp": 1, "distance": 0}  # name -> drifted
LABELS = ["on_time", "late", "unknown"]


def monitor_registry() -> CollectorRegistry:
    """The monitor's metrics: data drift holds (model at risk), roc_auc under its goal."""
    reg = CollectorRegistry()

    def gauge(name: str, value: float, **labels: str) -> None:
        metric = Gauge(name, name, list(labels), registry=reg)
        (metric.labels(**labels) if labels else metric).set(value)

    def gauges(name: str, label: str, values: Mapping[str, float]) -> None:
        metric = Gauge(name, name, [label], registry=reg)
        for key, value in values.items():
            metric.labels(key).set(value)

    read = Counter("occam_records_read", "records", ["kind"], registry=reg)
    for kind, count in {"prediction": 2000, "feedback": 300, "rejected": 5}.items():
        read.labels(kind).inc(count)
    for name in ("occam_malformed_records", "occam_rejected_rows", "occam_check_errors"):
        Counter(name, name, registry=reg)
    Counter("occam_checks", "checks", registry=reg).inc(12)
    for name, value in {
        "occam_window_rows": 1000, "occam_window_size_rows": 1000, "occam_window_min_rows": 200,
        "occam_drifted_features_ratio": 0.5, "occam_drift_share_threshold": 0.3,
        "occam_data_drift": 1, "occam_drift_consecutive_windows": 3, "occam_model_at_risk": 1,
        "occam_prediction_drift": 0, "occam_prediction_drift_p_value": 0.4,
        "occam_confidence_mean": 0.74, "occam_reference_confidence_mean": 0.76,
        "occam_abstention_ratio": 0.05, "occam_missing_ratio": 0.01,
        "occam_unseen_category_ratio": 0.002, "occam_out_of_range_ratio": 0.03,
        "occam_live_labels": 300, "occam_live_min_labels": 200,
        "occam_live_labels_served_oldest_timestamp_seconds": time.time() - 7200,
        "occam_live_labels_served_newest_timestamp_seconds": time.time() - 600,
        "occam_feedback_coverage_ratio": 0.3, "occam_retrain_recommended": 1,
        "occam_model_created_timestamp_seconds": time.time() - 86400,
        "occam_model_age_seconds": 86400, "occam_max_model_age_seconds": 90 * 86400,
        "occam_last_check_timestamp_seconds": time.time(),
        "occam_drift_check_duration_seconds": 0.08,
    }.items():  # fmt: skip
        gauge(name, value)
    per_feature = {  # name -> (value of a drifted feature, value of a calm one)
        "occam_feature_drifted": (1, 0),
        "occam_feature_drift_p_value": (0.001, 0.6),
        "occam_feature_drift_statistic": (0.2, 0.01),
        "occam_feature_drift_effect_size": (0.3, 0.02),
        "occam_feature_drift_threshold": (0.1, 0.1),
    }
    for name, (drifted, calm) in per_feature.items():
        gauges(name, "feature", {f: drifted if d else calm for f, d in FEATURES.items()})
    gauges("occam_prediction_class_ratio", "label", {"on_time": 0.7, "late": 0.25, "unknown": 0.05})
    gauges("occam_reference_class_ratio", "label", {"on_time": 0.75, "late": 0.22, "unknown": 0.03})
    gauges("occam_live_metric", "metric", {"roc_auc": 0.65, "balanced_accuracy": 0.66})
    gauges("occam_goal_threshold", "metric", {"roc_auc": 0.70, "balanced_accuracy": 0.62})
    gauges("occam_live_metric_lower", "metric", {"roc_auc": 0.62, "balanced_accuracy": 0.63})
    gauges("occam_live_metric_upper", "metric", {"roc_auc": 0.68, "balanced_accuracy": 0.69})
    gauges("occam_goal_estimate", "metric", {"roc_auc": 0.66, "balanced_accuracy": 0.61})
    gauges("occam_goal_estimate_lower", "metric", {"roc_auc": 0.63, "balanced_accuracy": 0.58})
    gauges("occam_goal_estimate_upper", "metric", {"roc_auc": 0.69, "balanced_accuracy": 0.64})
    risk = {"estimate": 1, "live_metric": 1, "drift": 0}
    gauges("occam_model_at_risk_reason", "reason", risk)
    gauges("occam_retrain_reason", "reason", {**risk, "model_age": 0})
    gauges(
        "occam_weighted_drift_contribution",
        "feature",
        {f: 0.1 if d else 0.0 for f, d in FEATURES.items()},
    )
    gauge("occam_weighted_drift", 0.2)
    gauge("occam_weighted_drift_threshold", 0.5)
    gauge("occam_model_info", 1, model_version="occam-flights:abc123")
    Counter("occam_shadow_rows", "shadow rows", registry=reg).inc(400)
    shadow = {"shadow": 0.71, "champion": 0.66}  # role -> roc_auc on the same rows
    live = Gauge("occam_shadow_live_metric", "shadow", ["metric", "role"], registry=reg)
    estimate = Gauge("occam_shadow_goal_estimate", "shadow", ["metric", "role"], registry=reg)
    labels = Gauge("occam_shadow_live_labels", "shadow", ["role"], registry=reg)
    for role, value in shadow.items():
        live.labels("roc_auc", role).set(value)
        estimate.labels("roc_auc", role).set(value + 0.01)
        labels.labels(role).set(120)
    runs = Counter("occam_retrain_runs", "retrain runs", ["outcome"], registry=reg)
    for outcome, count in {"promoted": 1, "not_promoted": 1, "failed": 0}.items():
        runs.labels(outcome).inc(count)
    return reg


def service_registry() -> CollectorRegistry:
    """BentoML's HTTP metrics (namespace bentoml_service) and the service's own counters."""
    reg = CollectorRegistry()
    http = ["endpoint", "service_name", "service_version", "http_response_code", "runner_name"]
    requests = Counter("bentoml_service_request", "requests", http, registry=reg)
    duration = Histogram("bentoml_service_request_duration_seconds", "time", http, registry=reg)
    for endpoint in ("/predict", "/feedback"):
        for code in ("200", "500"):
            requests.labels(endpoint, "occam", "v1", code, "Occam")
        requests.labels(endpoint, "occam", "v1", "200", "Occam").inc(100)
        duration.labels(endpoint, "occam", "v1", "200", "Occam").observe(0.02)
    predictions = Counter(
        "occam_service_predictions", "rows", ["model_version", "label"], registry=reg
    )
    for label in LABELS:
        predictions.labels("occam-flights:abc123", label).inc(10)
    Counter("occam_service_abstentions", "rows", ["model_version"], registry=reg).labels(
        "occam-flights:abc123"
    )
    Counter("occam_service_rejected_rows", "rows", ["reason"], registry=reg).labels(
        "missing_feature"
    )
    Counter("occam_service_feedback_labels", "labels", ["label"], registry=reg).labels("late")
    Counter("occam_service_log_dropped_records", "records", registry=reg)
    return reg


@contextmanager
def serve(registry: CollectorRegistry, port: int) -> Iterator[str]:
    """Serve `registry` on 127.0.0.1:`port`/metrics; yields the "host:port" scrape target."""
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
