"""`occam retrain` as a user runs it: a real `occam serve` writes the prediction log, feedback
arrives over HTTP, and the command gates the challenger against the champion, records the run
in MLflow, and exits 0 (promoted) or 4 (not promoted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from occam.config import load_config
from occam.loopback import replay, rows_as_instances
from tests.conftest import ROOT, small_config, write_config
from tests.service.conftest import occam_serve
from tests.training.test_retrain import copy_champion
from training.data import load_frame
from training.retrain import build_retrain_set

pytestmark = pytest.mark.integration


def test_retrain_from_a_served_log_with_feedback(tmp_path: Path, trained: Any) -> None:
    champion = copy_champion(trained.bundle)
    raw = small_config(tmp_path)
    raw["output"]["model_name"] = champion.tag.split(":")[0]
    raw["retrain"] = {"original": "last_rows", "original_rows": 3000, "min_gate_rows": 200}
    raw["tracking"] = {"uri": "sqlite:///mlruns.db"}
    config_path = write_config(tmp_path, raw)
    config = load_config(config_path)

    frame = load_frame(ROOT / "data" / "flights.csv.gz")
    production = frame[pd.to_datetime(frame["scheduled_departure"]) >= "2013-07-01"].head(2000)
    features = champion.schema.names
    with occam_serve(config_path, OCCAM_MODEL_TAG=champion.tag) as server:
        stats = replay(server.url, production, features, "late", feedback_share=0.5, seed=3)
    assert stats.rejected_requests == 0 and stats.feedback > 600

    # The retrain set holds exactly the rows that got feedback, as the service received them.
    found = build_retrain_set(config, champion)
    assert found.labelled == stats.feedback
    assert found.log_train_rows + len(found.gate) == stats.feedback
    assert len(found.gate) == max(200, -(-stats.feedback * 3 // 10))
    sent = dict(zip(stats.ids, rows_as_instances(production, features), strict=True))
    truth = dict(zip(stats.ids, production["late"].astype(str), strict=True))
    labelled_ids = [i for i, _, _ in stats.labelled]
    gate_ids = labelled_ids[-len(found.gate) :]
    assert found.gate["late"].tolist() == [truth[i] for i in gate_ids]
    assert found.gate[features].astype(object).where(found.gate[features].notna(), None).to_dict(
        orient="records"
    ) == [sent[i] for i in gate_ids]

    done = subprocess.run(
        [sys.executable, "-m", "occam.cli", "retrain", "--config", str(config_path)],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode in (0, 4), done.stderr
    out = done.stderr
    assert "champion vs challenger" in out and "difference (CI)" in out
    metrics = json.loads((tmp_path / "reports" / "retrain" / "metrics.json").read_text())
    decision = metrics["challenge"]
    assert decision["champion"] == champion.tag and decision["rows"] == len(found.gate)
    promoted = done.returncode == 0
    assert decision["passed"] is promoted
    assert metrics["stage"] == ("production" if promoted else "candidate")
    assert ("promoted:" in out) is promoted and ("not promoted:" in out) is not promoted
    card = (tmp_path / "reports" / "retrain" / "model_card.md").read_text()
    assert "## Champion vs challenger" in card

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path.resolve()}/mlruns.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(config.project)
    assert experiment is not None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`occam.kind` = 'retrain'",
    )
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["occam.bundle_tag"] == metrics["tag"]
    assert run.data.tags["occam.champion"] == champion.tag
    assert run.data.metrics["gate.passed"] == float(promoted)
    for c in decision["comparisons"]:
        assert run.data.metrics[f"gate.challenger.{c['metric']}"] == pytest.approx(c["challenger"])
        assert run.data.metrics[f"gate.champion.{c['metric']}"] == pytest.approx(c["champion"])
    alias = "champion" if promoted else "challenger"
    version = client.get_model_version_by_alias(champion.tag.split(":")[0], alias)
    assert version.tags["occam.bundle_tag"] == metrics["tag"]
    assert yaml.safe_load(config_path.read_text())["retrain"]["min_gate_rows"] == 200


def test_retrain_without_a_champion_exits_3_and_says_what_to_do(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, small_config(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "occam.cli", "retrain", "--config", str(config_path)],
        cwd=ROOT,
        env={**os.environ, "BENTOML_HOME": str(tmp_path / "empty-store"), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 3, done.stderr
    assert "no champion" in done.stderr and "occam train" in done.stderr
    assert not (tmp_path / "mlruns.db").exists()
