"""MLflow tracking of a real training run, read back with the MLflow client from the local
SQLite store the config names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from occam.config import OccamConfig, parse_config
from occam.metadata import BundleMetadata
from tests.bundles import tiny_metadata_json
from tests.conftest import ROOT, small_config
from training.data import load_frame
from training.tracking import (
    CHALLENGER,
    CHAMPION,
    EvalRows,
    log_run,
    mirror_alias,
    run_params,
)


def tracked_config(tmp: Path, **tracking: Any) -> OccamConfig:
    raw = small_config(tmp)
    raw["tracking"] = {"uri": "sqlite:///runs/mlruns.db", **tracking}
    return parse_config(raw, base_dir=tmp)


def client_for(config: OccamConfig) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=config.tracking.uri, registry_uri=config.tracking.uri)


@pytest.fixture(scope="module")
def later_rows(trained: Any) -> EvalRows:
    """The trained model's probabilities on 2,000 production rows, with their true labels."""
    frame = load_frame(ROOT / "data" / "flights.csv.gz")
    rows = frame[pd.to_datetime(frame["scheduled_departure"]) >= "2013-07-01"].head(2000)
    bundle = trained.bundle
    proba = bundle.load_pipeline().predict_proba(bundle.schema.coerce(rows))
    assert list(bundle.load_pipeline().classes_) == bundle.classes
    return EvalRows(rows["late"].astype(str).to_numpy(), proba, bundle.classes, "late", "test")


def test_relative_sqlite_uri_is_taken_from_the_config_folder(tmp_path: Path) -> None:
    config = tracked_config(tmp_path)
    assert config.tracking.uri == f"sqlite:///{tmp_path.resolve()}/runs/mlruns.db"
    assert config.tracking.artifacts_dir == (tmp_path / "mlartifacts").resolve()
    server = parse_config(
        {**small_config(tmp_path), "tracking": {"uri": "http://127.0.0.1:5000"}}, base_dir=tmp_path
    )
    assert server.tracking.uri == "http://127.0.0.1:5000"


def test_a_training_run_reads_back_from_the_local_store(
    tmp_path: Path, trained: Any, later_rows: EvalRows
) -> None:
    config = tracked_config(tmp_path)
    metadata, bundle = trained.metadata, trained.bundle
    outcome = log_run(config, metadata, trained.card_path, bundle, eval_rows=later_rows)
    assert outcome.ok, outcome.error
    assert (tmp_path / "runs" / "mlruns.db").is_file()

    client = client_for(config)
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["occam.bundle_tag"] == bundle.tag
    assert run.data.tags["occam.data_fingerprint"] == metadata.data.fingerprint
    assert run.data.tags["occam.kind"] == "train"
    for goal in metadata.gate.goals:
        metric = goal.metric
        assert run.data.metrics[f"test.{metric}"] == pytest.approx(goal.model)
        assert run.data.metrics[f"test.{metric}.ci_low"] == pytest.approx(goal.ci_low)
        assert run.data.metrics[f"baseline.{metric}"] == pytest.approx(goal.baseline)
    assert run.data.params["goals.roc_auc"] == "0.7"
    assert run.data.params["model.best.min_samples_leaf"] == str(
        metadata.model.best_params["min_samples_leaf"]
    )
    rounds = client.get_metric_history(outcome.run_id, "search.round_best_score")
    assert [m.value for m in sorted(rounds, key=lambda m: m.step)] == pytest.approx(
        list(metadata.model.search.round_best_scores)
    )
    names = {a.path for a in client.list_artifacts(outcome.run_id)}
    assert {"model_card.md", "metrics.json", "plots"} <= names
    plots = {Path(a.path).name for a in client.list_artifacts(outcome.run_id, "plots")}
    assert plots == {"roc.png", "precision_recall.png", "calibration.png", "slices.png",
                     "search_path.png"}  # fmt: skip
    card = Path(client.download_artifacts(outcome.run_id, "model_card.md", str(tmp_path)))
    assert card.read_text() == trained.card_path.read_text()

    name = config.output.model_name
    champion = client.get_model_version_by_alias(name, CHAMPION)
    assert str(champion.version) == outcome.model_version and champion.run_id == outcome.run_id
    assert champion.tags["occam.bundle_tag"] == bundle.tag

    second = log_run(config, metadata, trained.card_path, bundle)  # no rows: no curves
    assert second.ok and second.model_version != outcome.model_version
    assert mirror_alias(config, bundle.tag, CHALLENGER).ok
    assert (
        client.get_model_version_by_alias(name, CHALLENGER).tags["occam.bundle_tag"] == bundle.tag
    )
    missing = mirror_alias(config, "occam-flights:nosuchversion", CHAMPION)
    assert not missing.ok and "no MLflow model version" in str(missing.error)


def test_tracking_failure_is_reported_not_raised(tmp_path: Path, trained: Any) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the store's folder should be")
    config = tracked_config(tmp_path, uri=f"sqlite:///{blocked}/mlruns.db")
    outcome = log_run(config, trained.metadata, trained.card_path, trained.bundle)
    assert not outcome.ok and outcome.run_id is None
    assert outcome.error


def test_disabled_tracking_writes_nothing(tmp_path: Path, trained: Any) -> None:
    config = tracked_config(tmp_path, enabled=False)
    outcome = log_run(config, trained.metadata, trained.card_path, trained.bundle)
    assert outcome.ok and outcome.run_id is None
    assert not (tmp_path / "runs").exists()
    assert np.isfinite(trained.metadata.gate.goals[0].model)


def test_a_human_goal_is_logged_at_the_level_measured_not_the_placeholder(tmp_path: Path) -> None:
    """The config says `threshold: human` (a placeholder 0); the bundle records the average
    labeller's level measured at training, and that is the parameter the run gets."""
    raw = small_config(tmp_path)
    raw["labels"] = {**raw.get("labels", {}), "annotators": ["p", "q", "c"]}
    raw["goals"] = [
        {"metric": "accuracy", "threshold": "human"},
        {"metric": "roc_auc", "threshold": 0.7},
    ]
    config = parse_config(raw, base_dir=tmp_path)
    assert config.goals[0].human and config.goals[0].threshold == 0.0
    measured = tiny_metadata_json()
    measured["goals"] = [
        {"metric": "accuracy", "threshold": 0.8125, "human": True},
        {"metric": "roc_auc", "threshold": 0.7},
    ]
    params = run_params(config, BundleMetadata.from_json(measured), "train")
    assert params["goals.accuracy"] == "0.8125"
    assert params["goals.roc_auc"] == "0.7"
    assert params["goals.human"] == '["accuracy"]'
    plain = run_params(config, BundleMetadata.from_json(tiny_metadata_json()), "train")
    assert "goals.human" not in plain
