"""Shared fixtures. The whole test session uses its own BentoML model store, so tests never
touch (or depend on) the developer's ~/bentoml."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
_STORE = tempfile.mkdtemp(prefix="occam-test-bentoml-")
# Set before anything imports bentoml: its model store location is read once.
os.environ["BENTOML_HOME"] = _STORE
os.environ["BENTOML_DO_NOT_TRACK"] = "True"


def small_config(tmp: Path, **overrides: Any) -> dict[str, Any]:
    """The default occam.yaml with a small, fast search, writing into `tmp`."""
    raw = yaml.safe_load((ROOT / "occam.yaml").read_text())
    raw["data"]["path"] = str(ROOT / "data" / "flights.csv.gz")
    raw["output"]["reports_dir"] = str(tmp / "reports")
    raw["output"]["reference_rows"] = 2000
    raw["serving"] = {**raw.get("serving", {}), "log_dir": str(tmp / "logs")}
    raw["model"]["params"]["n_estimators"] = 30
    raw["search"] |= {"n_candidates": 2, "max_rounds": 2, "min_rounds": 1, "cv": 2, "n_jobs": 1}
    raw["evaluation"]["bootstrap"] = 50
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return raw


def write_config(tmp: Path, raw: dict[str, Any]) -> Path:
    path = tmp / "occam.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


#: The model name of the session's trained bundle (`trained`).
SESSION_MODEL = "occam-session"


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    return Path(_STORE)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A small promoted model trained once per session on the bundled data.

    Returns the `TrainResult` (bundle, gate, report); its config file is `result.config_path`.
    """
    from occam.config import load_config
    from training.pipeline import train

    tmp = tmp_path_factory.mktemp("trained")
    # a model name of its own: tests that train the default config promote `occam-flights`
    # bundles, and the registry retires the others of that name
    config_path = write_config(tmp, small_config(tmp, **{"output.model_name": SESSION_MODEL}))
    result = train(load_config(config_path))
    assert result.promoted, result.gate.to_dict()
    object.__setattr__(result, "config_path", config_path)
    return result
