"""Every metric the sidecar exports: name (counters without `_total`) -> help text.

docs/metrics.md documents each of them (a test keeps the two in step). Units are base units:
seconds, bytes, ratios in [0, 1]. Per-feature metrics carry the label `feature` only.
"""

from __future__ import annotations

COUNTERS: dict[str, str] = {
    "occam_records_read": "Log records read, by kind (prediction, feedback, rejected)",
    "occam_malformed_records": "Log lines that were not a valid record (skipped)",
    "occam_rejected_rows": "Rows the service rejected, from its 'rejected' records",
    "occam_feedback_unmatched": "Feedback naming no remembered, not yet labelled prediction",
    "occam_checks": "Checks completed",
    "occam_check_errors": "Checks that failed; the previous results stay exported",
    "occam_retrain_notifications": "Retrain notifications (command/webhook calls), by outcome",
    "occam_exporter_errors": "Scrapes that could not build the full metric set",
    # the log's accounting (docs/metrics.md, "Every record accounted for")
    "occam_feedback_duplicates": "Feedback for a prediction already labelled (the first wins)",
    "occam_log_lost_bytes": "Log bytes seen but gone before they were read (cut, deleted)",
    "occam_log_lost_records": "Log records deleted unread by retention (counted before)",
    "occam_log_segment_events": "Log segments truncated, rewritten, replaced, renamed or deleted",
    "occam_log_retention_deleted_segments": "Log segments deleted by retention",
    "occam_log_retention_deleted_bytes": "Bytes of log segments deleted by retention",
    "occam_state_expired_rows": "Window and feedback rows the monitor forgot for their age",
    "occam_retrain_runs": "Retrain command runs by outcome (promoted, not_promoted, failed)",
    "occam_shadow_rows": "Rows the current shadow challenger scored (logged, never answered)",
}

GAUGES: dict[str, str] = {
    # shadow challenger against champion on the same rows (role: shadow, champion)
    "occam_shadow_live_metric": "Goal metric on the shadowed rows with feedback, by role",
    "occam_shadow_live_labels": "Shadowed rows with feedback, by role",
    "occam_shadow_goal_estimate": "Label-free estimate of a goal metric on the shadowed rows, "
    "by role",
    # window and settings
    "occam_window_rows": "Prediction rows in the current window",
    "occam_window_size_rows": "Configured window size in rows",
    "occam_window_min_rows": "Rows a window needs before any drift verdict",
    "occam_drift_share_threshold": "Share of drifted features at which a window drifts",
    "occam_drift_required_windows": "Drifting windows in a row that recommend attention",
    "occam_band_level": "Two-sided level of the estimate and live-metric bands",
    "occam_risk_enter_confidence": "Probability of a missed goal that enters 'model at risk'",
    "occam_risk_exit_confidence": "Probability of a missed goal under which the evidence clears",
    "occam_risk_exit_windows": "Clearing counted windows in a row that end a risk reason",
    "occam_weighted_drift_threshold": "Importance-weighted drift that puts the model at risk",
    "occam_weighted_drift_exit_threshold": "Importance-weighted drift under which it clears",
    "occam_live_min_labels": "Labelled rows needed before live metrics are judged",
    "occam_max_model_age_seconds": "Model age at which retraining is recommended",
    "occam_unread_log_bytes": "Bytes of the prediction log not read yet (partial lines included)",
    "occam_last_record_timestamp_seconds": "The ts field of the last record read (Unix time)",
    "occam_log_bytes": "Bytes in the log's segment files at the last read",
    "occam_log_segments": "Segment files in the log folder at the last read",
    "occam_log_retention_bytes": "Configured log size limit (absent: none)",
    "occam_log_retention_seconds": "Configured log age limit (absent: none)",
    "occam_feedback_label_shift": "TVD between recent feedback labels and their predicted mix",
    "occam_feedback_label_shift_threshold": "Alarm level on occam_feedback_label_shift",
    # the watched model and its reference
    "occam_model_info": "The watched model, by version (value always 1)",
    "occam_model_created_timestamp_seconds": "When the watched model was trained (Unix time)",
    "occam_model_age_seconds": "Age of the watched model",
    "occam_reference_rows": "Rows in the model's reference sample",
    "occam_goal_threshold": "Goal threshold of a metric, as in the training gate",
    "occam_reference_class_ratio": "Share of reference rows per predicted class",
    "occam_reference_confidence_mean": "Mean top-class probability on the reference sample",
    "occam_feature_drift_threshold": "Calibrated alarm level on a feature's drift effect size",
    "occam_output_drift_threshold": "Calibrated alarm level on an output's drift effect size",
    "occam_feature_importance": "Permutation importance of a feature (drop of the first goal)",
    "occam_estimate_systematic_error": "Estimate error sd on labelled chunks beyond sampling noise",
    # the last check
    "occam_last_check_timestamp_seconds": "When the last successful check ran (Unix time)",
    "occam_last_counted_window_timestamp_seconds": "When the last counted window was checked",
    "occam_drift_check_duration_seconds": "Duration of the last counted window's check",
    "occam_feature_drift_p_value": "Feature test p-value (KS or Chi2) before correction",
    "occam_feature_drift_statistic": "Feature test statistic (KS distance or Chi2)",
    "occam_feature_drift_effect_size": "Feature effect size: KS or total variation distance",
    "occam_feature_drifted": "1 if the feature drifted: significant and over its threshold",
    "occam_drifted_features_ratio": "Share of checked features that drifted in the window",
    "occam_data_drift": "1 if the window drifted: drifted share >= threshold",
    "occam_drift_consecutive_windows": "Drifting counted windows in a row (run length)",
    "occam_weighted_drift": "Importance-weighted drift of the last counted window (0-1)",
    "occam_weighted_drift_contribution": "A feature's share of the importance-weighted drift",
    "occam_goal_estimate": "Label-free estimate of a goal metric on the last counted window",
    "occam_goal_estimate_lower": "Lower end of the estimate's band",
    "occam_goal_estimate_upper": "Upper end of the estimate's band",
    "occam_goal_estimate_bias": "Estimate's bias measured on labelled rows (added when judged)",
    "occam_model_at_risk": "1 if a goal is likely missed (last counted window, hysteresis)",
    "occam_model_at_risk_reason": "1 if this reason (estimate, live_metric, drift) is active",
    "occam_prediction_drift": "1 if the predicted-class mix or the confidence drifted",
    "occam_prediction_drift_p_value": "Smallest output test p-value, Bonferroni-adjusted for 2",
    "occam_output_drift_effect_size": "Effect size of an output's drift (class_mix, confidence)",
    "occam_prediction_class_ratio": "Share of window rows per predicted (top) class",
    "occam_confidence_mean": "Mean top-class probability in the window",
    "occam_abstention_ratio": "Share of window rows answered with the abstain label",
    "occam_missing_ratio": "Share of window rows with a missing feature",
    "occam_unseen_category_ratio": "Share of window rows with a category unseen in training",
    "occam_out_of_range_ratio": "Share of window rows with a number out of the training range",
    "occam_live_metric": "Goal metric on the last labelled predictions",
    "occam_live_metric_lower": "Lower end of the live metric's interval",
    "occam_live_metric_upper": "Upper end of the live metric's interval",
    "occam_live_labels": "Labelled predictions in the live window",
    "occam_live_labels_served_oldest_timestamp_seconds": "When the oldest prediction the live "
    "metrics score was served (labels come late: the live verdict judges this traffic)",
    "occam_live_labels_served_newest_timestamp_seconds": "When the newest prediction the live "
    "metrics score was served",
    "occam_feedback_coverage_ratio": "Share of remembered predictions that received feedback",
    "occam_retrain_recommended": "1 if retraining is recommended (any reason is 1)",
    "occam_retrain_reason": "1 if this reason recommends retraining, 0 if not",
}


def exposed_names() -> list[str]:
    """Every sample name as Prometheus sees it (counters with `_total`)."""
    return sorted([f"{n}_total" for n in COUNTERS] + list(GAUGES))
