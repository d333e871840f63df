"""The log-accounting metrics the monitor exports: exact values from a state fed by real
segment files (truncation, deletion, retention, duplicate and shifted feedback)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitoring.exporter import MonitorCollector, Status
from monitoring.reader import read_new
from monitoring.retention import apply_retention
from monitoring.sidecar import watched_config
from monitoring.state import MonitorState
from occam.config import ConfigError, MonitoringConfig, OccamConfig, parse_config
from occam.records import dumps
from tests.monitoring.logs import append, feedback, prediction

NOW = time.time()
GOAL = {"metric": "roc_auc", "threshold": 0.6}
CONFIG = MonitoringConfig(live_min_labels=10, log_retention_bytes=1_000_000, log_retention_hours=48)


def status(state: MonitorState) -> Status:
    return Status(
        config=CONFIG,
        now=time.time(),
        records=dict(state.records),
        malformed=state.malformed,
        feedback_unmatched=state.feedback_unmatched,
        window_rows=len(state.window),
        unread_bytes=state.unread_bytes,
        last_record_ts=state.last_record_ts,
        checks=0,
        check_errors=0,
        notifications_sent=0,
        notifications_failed=0,
        reference=None,
        check=None,
        feedback_duplicates=state.feedback_duplicates,
        feedback_label_shift=state.join.label_shift(CONFIG.live_min_labels),
        account=state.account,
        log_bytes=state.log_bytes,
        log_segments=state.log_segments,
    )


def test_the_log_accounting_is_exported_exactly(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    line = len(dumps(prediction("p00", ts=NOW)))
    cut = append(logs, [prediction(f"p{i:02d}", ts=NOW) for i in range(20)], worker=0, segment=0)
    append(logs, [prediction(f"q{i:02d}", ts=NOW) for i in range(5)], worker=0, segment=1)
    state = MonitorState.new(100, 10, 1000, 1000)
    state.apply(read_new(logs, state.segments))
    # every label contradicts its prediction (p(yes) = 0.7): shift 0.7; one duplicate
    append(logs, [feedback(f"p{i:02d}", "no", ts=NOW) for i in range(20)], worker=1)
    append(logs, [feedback("p00", "yes", ts=NOW)], worker=2)
    state.apply(read_new(logs, state.segments))
    os.truncate(cut, 5 * line)  # cut below the read point
    old = append(logs, [prediction(f"o{i}", ts=NOW) for i in range(7)], worker=3, segment=0)
    append(logs, [prediction("o-new", ts=NOW)], worker=3, segment=1)
    past = time.time() - 72 * 3600
    os.utime(old, (past, past))  # older than the 48 h retention, never read
    apply_retention(logs, state, time.time(), CONFIG.log_retention_bytes, 48)
    state.apply(read_new(logs, state.segments))

    registry = CollectorRegistry()
    MonitorCollector(lambda: status(state), registry=registry)
    value = registry.get_sample_value
    assert value("occam_records_read_total", {"kind": "prediction"}) == 26  # 20 + 5 + o-new
    assert value("occam_feedback_duplicates_total") == 1
    assert value("occam_feedback_label_shift") == 0.7
    assert value("occam_feedback_label_shift_threshold") == 0.25
    assert value("occam_log_segment_events_total", {"event": "truncated"}) == 1
    assert value("occam_log_segment_events_total", {"event": "deleted"}) == 0
    assert value("occam_log_lost_records_total") == 7  # the old segment, deleted unread
    assert value("occam_log_lost_bytes_total") == 0  # the cut bytes had been read
    assert value("occam_log_retention_deleted_segments_total") == 1
    old_bytes = 7 * len(dumps(prediction("o0", ts=NOW)))
    assert value("occam_log_retention_deleted_bytes_total") == old_bytes
    assert value("occam_log_segments") == 5
    assert value("occam_log_bytes") == sum(p.stat().st_size for p in logs.iterdir())
    assert value("occam_log_retention_bytes") == 1_000_000
    assert value("occam_log_retention_seconds") == 48 * 3600
    assert value("occam_state_expired_rows_total") == 0  # the rows are recent
    apply_retention(logs, state, NOW + 49 * 3600, None, 48)  # two days on: all rows expire
    assert state.account.expired_rows == 26 + 26 and len(state.window) == 0


def test_redacted_columns_leave_the_drift_checks() -> None:
    raw = {"serving": {"log_redact": ["origin", "temp"]}, "monitoring": {"drift_exclude": ["temp"]}}
    config = OccamConfig.model_validate(
        {"project": "p", "data": {"path": "x.csv", "target": "y"}, "goals": [GOAL], **raw}
    )
    assert watched_config(config).monitoring.drift_exclude == ["temp", "origin"]


def test_a_checkpoint_folder_inside_the_log_folder_is_a_config_error(tmp_path: Path) -> None:
    raw = {
        "project": "p",
        "data": {"path": "x.csv", "target": "y"},
        "goals": [GOAL],
        "serving": {"log_dir": "logs"},
        "monitoring": {"state_dir": "logs/.state"},
    }
    with pytest.raises(
        ConfigError, match=r"`monitoring.state_dir` .* lies inside `serving.log_dir`"
    ):
        parse_config(raw, base_dir=tmp_path)
    raw["monitoring"] = {}
    assert parse_config(raw, base_dir=tmp_path).monitoring.state_dir == tmp_path / "monitor-state"
