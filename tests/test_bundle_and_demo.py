"""occam/: the bundle store's contract and the demo's reading of the monitor."""

from __future__ import annotations

from typing import Any

import pytest

from occam.bundle import BundleError, get_bundle, latest_production, resolve_serving_bundle
from occam.demo import monitor_summary, parse_metrics


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
# TYPE occam_window_rows gauge
occam_window_rows 1000
# TYPE occam_data_drift gauge
occam_data_drift 1
# TYPE occam_model_at_risk gauge
occam_model_at_risk 0
# TYPE occam_feature_drifted gauge
occam_feature_drifted{feature="temp"} 1
occam_feature_drifted{feature="origin"} 0
# TYPE occam_live_metric gauge
occam_live_metric{metric="roc_auc"} 0.651
# TYPE occam_goal_threshold gauge
occam_goal_threshold{metric="roc_auc"} 0.7
# TYPE occam_retrain_recommended gauge
occam_retrain_recommended 1
# TYPE occam_retrain_reason gauge
occam_retrain_reason{reason="live_metric"} 1
occam_retrain_reason{reason="data_drift"} 0
"""


def test_monitor_summary_reads_the_verdicts() -> None:
    summary = monitor_summary(parse_metrics(EXPOSITION))
    assert "drifted inputs: temp;" in summary
    assert "data drift verdict YES" in summary and "model at risk no" in summary
    assert "live roc_auc 0.651 (goal 0.70)" in summary
    assert summary.endswith("RETRAIN recommended: live_metric")


def test_monitor_summary_without_a_verdict_says_so() -> None:
    text = "# TYPE occam_window_rows gauge\noccam_window_rows 120\n"
    assert monitor_summary(parse_metrics(text)) == "window 120 rows: too small for a verdict yet"
