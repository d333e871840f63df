"""occam/: the bundle store's contract and the demo's reading of the monitor's metrics."""

from __future__ import annotations

from typing import Any

import pytest

from occam.bundle import BundleError, get_bundle, latest_production, resolve_serving_bundle
from occam.demo import explain
from occam.loopback import parse_metrics


def test_unknown_model_name_has_no_production_bundle(bentoml_home: Any) -> None:
    assert latest_production("never-trained-model") is None
    with pytest.raises(BundleError, match="run `occam train`"):
        resolve_serving_bundle("never-trained-model", None)


def test_tampered_bundle_is_refused_naming_the_file(trained: Any) -> None:
    bundle = get_bundle(trained.bundle.tag)
    bundle.verify()
    reference = bundle.path / "reference.csv.gz"
    original = reference.read_bytes()
    try:
        reference.write_bytes(original + b"\n")
        with pytest.raises(BundleError, match=r"reference\.csv\.gz does not match its recorded"):
            resolve_serving_bundle("occam-flights", trained.bundle.tag)
    finally:
        reference.write_bytes(original)
    bundle.verify()


EXPOSITION = """\
# TYPE occam_model_at_risk gauge
occam_model_at_risk 1
# TYPE occam_model_at_risk_reason gauge
occam_model_at_risk_reason{reason="estimate"} 1
occam_model_at_risk_reason{reason="live_metric"} 0
occam_model_at_risk_reason{reason="drift"} 0
# TYPE occam_goal_estimate gauge
occam_goal_estimate{metric="roc_auc"} 0.64
# TYPE occam_goal_estimate_lower gauge
occam_goal_estimate_lower{metric="roc_auc"} 0.61
# TYPE occam_goal_estimate_upper gauge
occam_goal_estimate_upper{metric="roc_auc"} 0.67
# TYPE occam_live_metric gauge
occam_live_metric{metric="roc_auc"} 0.69
# TYPE occam_live_metric_lower gauge
occam_live_metric_lower{metric="roc_auc"} 0.65
# TYPE occam_live_metric_upper gauge
occam_live_metric_upper{metric="roc_auc"} 0.73
# TYPE occam_live_labels gauge
occam_live_labels 600
# TYPE occam_weighted_drift gauge
occam_weighted_drift 0.12
# TYPE occam_weighted_drift_threshold gauge
occam_weighted_drift_threshold 0.3
# TYPE occam_feature_importance gauge
occam_feature_importance{feature="temp"} 0.05
occam_feature_importance{feature="origin"} 0.01
# TYPE occam_feature_drift_threshold gauge
occam_feature_drift_threshold{feature="temp"} 0.1
occam_feature_drift_threshold{feature="origin"} 0.1
# TYPE occam_feature_drift_effect_size gauge
occam_feature_drift_effect_size{feature="temp"} 0.25
occam_feature_drift_effect_size{feature="origin"} 0.3
"""


def test_explain_names_the_goal_the_estimate_and_the_features() -> None:
    lines = explain(parse_metrics(EXPOSITION), {"roc_auc": 0.70})
    assert "estimated roc_auc (no labels) 0.640 [0.610, 0.670]: band under the goal 0.70" in lines
    assert "live roc_auc on 600 labels 0.690 [0.650, 0.730]: not under the goal 0.70" in lines
    # temp moved less than origin but matters five times more: it is named first
    drift = next(line for line in lines if line.startswith("importance-weighted drift"))
    assert drift.index("temp 2.5x") < drift.index("origin 3.0x"), drift
    assert lines[-1] == "monitor verdict: model at risk, reasons: estimate"


def test_explain_without_a_verdict_says_so() -> None:
    text = "# TYPE occam_window_rows gauge\noccam_window_rows 120\n"
    assert explain(parse_metrics(text), {"roc_auc": 0.7}) == ["monitor verdict: no verdict yet"]
