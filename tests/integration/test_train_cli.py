"""`occam train` as a user runs it: real data, real model store, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, small_config, write_config

pytestmark = pytest.mark.integration


def run_train(tmp: Path, raw: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    config = write_config(tmp, raw)
    env = {**os.environ, "BENTOML_HOME": str(tmp / "store"), "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "occam.cli", "train", "--config", str(config)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def store_labels(tmp: Path) -> list[str]:
    """The stage labels of every model in the test's store, read from the files BentoML wrote."""
    import yaml

    return [
        yaml.safe_load(p.read_text())["labels"]["stage"]
        for p in (tmp / "store" / "models").glob("*/*/model.yaml")
    ]


def test_train_promotes_and_the_bundle_loads_back(tmp_path: Path) -> None:
    done = run_train(tmp_path, small_config(tmp_path))
    assert done.returncode == 0, done.stderr
    out = done.stderr
    assert "goal" in out and "baseline" in out and "model (95% CI)" in out
    assert "promoted" in out and "brier" in out  # the calibration gate is in the table
    assert store_labels(tmp_path) == ["production"]
    assert audit_actions(tmp_path) == [("promote", "roc_auc", True)]
    # load it back in a fresh process, as the service will
    code = (
        "from occam.bundle import latest_production\n"
        "b = latest_production('occam-flights'); b.verify()\n"
        "ref = b.load_reference(); p = b.load_pipeline()\n"
        "x = b.schema.coerce(ref)\n"
        "import numpy as np\n"
        "oof = ref[[f'proba_{c}' for c in b.classes]].to_numpy()\n"
        "assert np.allclose(oof.sum(axis=1), 1) and p.predict_proba(x).shape == oof.shape\n"
        "assert b.metadata.reference.outputs.startswith('out-of-fold')\n"
        "hold = b.load_holdout(); assert list(hold.columns[-3:]) == "
        "[*(f'proba_{c}' for c in b.classes), 'label']\n"
        "assert set(ref['label']) == set(hold['label']) == set(b.classes)\n"
        "assert sorted(b.feature_importance) == sorted(b.schema.names)\n"
        "print(b.stage, len(ref), sorted(b.schema.to_dict()['features'][0]), b.onnx_path.name)\n"
    )
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "store")}
    check = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("production 2000 ")
    assert "model.onnx" in check.stdout
    card = (tmp_path / "reports" / "model_card.md").read_text()
    assert "## Goals" in card and "## When to retrain" in card and "Worst slice" in card
    for section in ("### Calibration", "## What the model relies on", "## How fast it goes stale"):
        assert section in card
    assert "brier (lower is better)" in card and "![Reliability curve](reliability.png)" in card
    assert (tmp_path / "reports" / "reliability.png").stat().st_size > 10_000
    assert (tmp_path / "reports" / "metrics.json").is_file()


def test_impossible_goal_exits_4_and_is_not_promoted(tmp_path: Path) -> None:
    raw = small_config(tmp_path)
    raw["goals"] = [{"metric": "roc_auc", "threshold": 0.99}]
    done = run_train(tmp_path, raw)
    assert done.returncode == 4, done.stderr
    assert "NOT promoted" in done.stderr
    assert store_labels(tmp_path) == ["candidate"]
    assert audit_actions(tmp_path) == [("reject", "roc_auc", False)]


def audit_actions(tmp: Path) -> list[tuple[str, str, bool]]:
    """(action, first goal, its verdict) of each audit record `occam train` left in the store."""
    lines = (tmp / "store" / "occam" / "audit.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [(r["action"], r["gate"][0]["metric"], r["gate"][0]["passed"]) for r in records]


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    raw = small_config(tmp_path)
    raw["search"]["n_candidatez"] = 3
    done = run_train(tmp_path, raw)
    assert done.returncode == 2
    assert "search.n_candidatez" in done.stderr and "n_candidates" in done.stderr
    raw = small_config(tmp_path)
    raw["search"]["space"] = {"min_leaf": {"low": 1, "high": 3}}
    done = run_train(tmp_path, raw)
    assert done.returncode == 2 and "['min_leaf'] are not RandomForestClassifier" in done.stderr


def test_bad_data_exits_3_naming_the_column(tmp_path: Path) -> None:
    raw = small_config(tmp_path)
    raw["data"]["numeric"] = [*raw["data"]["numeric"], "wind_gust"]
    done = run_train(tmp_path, raw)
    assert done.returncode == 3
    assert "[wind_gust]" in done.stderr and "missing column" in done.stderr


def test_too_many_unknown_labels_exit_3(tmp_path: Path) -> None:
    raw = small_config(tmp_path)
    raw["labels"]["unknown_values"] = ["late"]  # a quarter of the rows
    raw["labels"]["max_unknown_share"] = 0.2
    done = run_train(tmp_path, raw)
    assert done.returncode == 3
    assert "may not be in the" in done.stderr


def test_same_config_and_seed_give_the_same_metrics(tmp_path: Path) -> None:
    from occam.config import load_config
    from training.pipeline import train

    config = load_config(write_config(tmp_path, small_config(tmp_path)))
    first, second = train(config), train(config)
    assert first.gate.to_dict() == second.gate.to_dict()
    assert first.metadata.model.best_params == second.metadata.model.best_params
    assert first.metadata.data.fingerprint == second.metadata.data.fingerprint
