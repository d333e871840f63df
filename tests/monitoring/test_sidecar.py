"""The sidecar on a real bundle and real rows: ingest, check, resume, follow a new model."""

from __future__ import annotations

import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from monitoring.sidecar import Sidecar, start_exporter
from occam.bundle import Bundle, BundleError
from occam.config import OccamConfig, load_config
from occam.metrics import score
from tests.monitoring import replay


@pytest.fixture(scope="module")
def config(trained: Any) -> OccamConfig:
    return load_config(trained.config_path)


@pytest.fixture(scope="module")
def held_out(config: OccamConfig) -> Any:
    return replay.periods(config)[0]


def with_logs(config: OccamConfig, folder: Path, **monitoring: Any) -> OccamConfig:
    return config.model_copy(
        update={
            "serving": config.serving.model_copy(update={"log_dir": folder}),
            "monitoring": config.monitoring.model_copy(
                update={"state_dir": folder.parent / "monitor-state", **monitoring}
            ),
        }
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def metrics(sidecar: Sidecar) -> Any:
    registry = CollectorRegistry()
    sidecar.collector(registry)
    return registry.get_sample_value


def test_ingest_check_and_live_metric(
    trained: Any, config: OccamConfig, held_out: Any, tmp_path: Path
) -> None:
    cfg = with_logs(config, tmp_path / "logs")
    bundle = trained.bundle
    recs, done = replay.records(bundle, held_out.iloc[:1500], "a", feedback_every=2)
    replay.write(cfg.serving.log_dir, recs[:1200], worker=0)
    replay.write(cfg.serving.log_dir, recs[1200:], worker=1)
    sidecar = Sidecar(cfg, clock=Clock())
    sidecar.run(once=True)
    value = metrics(sidecar)
    assert value("occam_records_read_total", {"kind": "prediction"}) == 1500
    assert value("occam_records_read_total", {"kind": "feedback"}) == 750
    assert value("occam_window_rows") == cfg.monitoring.window_rows
    assert value("occam_model_info", {"model_version": bundle.version}) == 1
    assert value("occam_data_drift") in (0, 1) and value("occam_model_at_risk") == 0
    # the live metric is the training gate's score on the same labelled rows
    labelled = np.arange(0, 1500, 2)[-cfg.monitoring.live_window_labels :]
    for goal in cfg.goals:
        expected = score(
            goal.metric,
            done.labels[labelled],
            done.proba[labelled],
            bundle.classes,
            bundle.metadata.positive_label,
            bundle.decision_weights,  # the rule the service answered labels by
        )
        assert value("occam_live_metric", {"metric": goal.metric}) == pytest.approx(expected)
    assert value("occam_live_labels") == len(labelled)
    assert value("occam_feedback_coverage_ratio") == pytest.approx(0.5)
    excluded = sidecar.reference.excluded if sidecar.reference else []
    assert "day_of_week" in excluded  # a calendar feature, left out of drift
    assert value("occam_feature_drifted", {"feature": "day_of_week"}) is None
    assert value("occam_feature_drifted", {"feature": "temp"}) in (0, 1)

    # restart from the checkpoint: nothing counted twice, new rows counted once
    more, _ = replay.records(bundle, held_out.iloc[1500:1700], "b")
    replay.write(cfg.serving.log_dir, more, worker=0)
    again = Sidecar(cfg, clock=Clock())
    again.run(once=True)
    value = metrics(again)
    assert value("occam_records_read_total", {"kind": "prediction"}) == 1700
    assert value("occam_records_read_total", {"kind": "feedback"}) == 750


def test_follows_a_newer_model_from_the_log(
    trained: Any, config: OccamConfig, held_out: Any, tmp_path: Path
) -> None:
    old: Bundle = trained.bundle
    new = replace(
        old,
        tag=f"{old.tag.split(':')[0]}:newer",
        metadata=old.metadata.model_copy(update={"created_at": "2099-01-01T00:00:00+00:00"}),
    )

    def find(version: str | None) -> Bundle:
        if version in (None, old.version):
            return old
        if version == "newer":
            return new
        raise BundleError(f"no model {version}")

    cfg = with_logs(config, tmp_path / "logs", min_window_rows=50)
    first, _ = replay.records(old, held_out.iloc[:300], "old")
    replay.write(cfg.serving.log_dir, first)
    sidecar = Sidecar(cfg, clock=Clock(), find_bundle=find)
    sidecar.run(once=True)
    assert sidecar.state.model_version == old.version and sidecar.state.confirmed

    # a recommendation made for the old model holds until a new model is served
    sidecar.state.runs = replace(
        sidecar.state.runs, risk_active=("live_metric",), notified_reasons=("live_metric",)
    )
    second, _ = replay.records(new, held_out.iloc[300:400], "new", version="newer")
    stale, _ = replay.records(old, held_out.iloc[400:450], "stale")
    ghost, _ = replay.records(old, held_out.iloc[450:460], "ghost", version="unknown-model")
    replay.write(cfg.serving.log_dir, second + stale + ghost, worker=1)
    sidecar.run(once=True)
    value = metrics(sidecar)
    assert value("occam_model_info", {"model_version": "newer"}) == 1
    assert value("occam_model_info", {"model_version": old.version}) is None
    assert value("occam_window_rows") == 100  # only the new model's rows
    assert value("occam_records_read_total", {"kind": "prediction"}) == 460
    assert sidecar.state.skipped_versions == {old.version, "unknown-model"}
    assert sidecar.state.runs.risk_active == () and sidecar.state.runs.notified_reasons == ()
    assert value("occam_retrain_recommended") in (None, 0)


def test_without_a_bundle_it_still_counts(config: OccamConfig, tmp_path: Path) -> None:
    def nothing(version: str | None) -> Bundle:
        raise BundleError("empty model store")

    cfg = with_logs(config, tmp_path / "logs")
    replay.write(cfg.serving.log_dir, [])
    (cfg.serving.log_dir / "occam-w0-p100-000000.jsonl").write_bytes(b"junk\n")
    sidecar = Sidecar(cfg, clock=Clock(), find_bundle=nothing)
    sidecar.run(once=True)
    value = metrics(sidecar)
    assert value("occam_malformed_records_total") == 1
    assert value("occam_model_info", {"model_version": "x"}) is None
    assert value("occam_last_check_timestamp_seconds") is None


def test_metrics_endpoint(trained: Any, config: OccamConfig, tmp_path: Path) -> None:
    sidecar = Sidecar(with_logs(config, tmp_path / "logs"), clock=Clock())
    sidecar.run(once=True)
    server, _ = start_exporter(sidecar, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert f'occam_model_info{{model_version="{trained.bundle.version}"}} 1.0' in body
    assert "\noccam_window_rows 0.0\n" in body
    assert "\noccam_data_drift " not in body  # no verdict on an empty window


def test_gauges_keep_the_last_counted_window_between_windows(
    trained: Any, config: OccamConfig, held_out: Any, tmp_path: Path
) -> None:
    cfg = with_logs(config, tmp_path / "logs")
    recs, _ = replay.records(trained.bundle, held_out.iloc[:1000], "a", feedback_every=2)
    replay.write(cfg.serving.log_dir, recs)
    clock = Clock()
    sidecar = Sidecar(cfg, clock=clock)
    sidecar.run(once=True)
    counted = sidecar.last_counted
    assert counted is not None and counted.counted and counted.model_at_risk is not None
    value = metrics(sidecar)
    before = {
        name: value(name)
        for name in ("occam_model_at_risk", "occam_weighted_drift", "occam_drifted_features_ratio")
    }
    # 300 more rows: a check runs (time is due) but the window does not count yet
    more, _ = replay.records(trained.bundle, held_out.iloc[1000:1300], "b")
    replay.write(cfg.serving.log_dir, more, worker=1)
    clock.now += 60
    sidecar.run(once=True)
    assert sidecar.last_check is not None and not sidecar.last_check.counted
    assert sidecar.last_counted is counted
    value = metrics(sidecar)
    assert {name: value(name) for name in before} == before
    assert value("occam_last_counted_window_timestamp_seconds") == counted.timestamp
    assert value("occam_last_check_timestamp_seconds") == clock.now
