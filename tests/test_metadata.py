"""occam/metadata.py: the bundle metadata's one typed definition, its JSON form, and bundles
saved by older (or newer) versions of Occam."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import pytest

from occam.bundle import (
    BundleIncompatible,
    BundleMetadata,
    get_bundle,
    latest_production,
    list_bundles,
    resolve_serving_bundle,
)
from occam.metadata import (
    METADATA_VERSION,
    MetadataError,
    proba_column,
    proba_columns,
)
from occam.signing import SIGNING_KEY_ENV, SIGNING_KEY_FILE_ENV
from tests.bundles import model_name, save_old_bundle, tiny_metadata, tiny_metadata_json
from training import card


@pytest.fixture
def unsigned(monkeypatch: pytest.MonkeyPatch, bentoml_home: Any) -> None:
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    monkeypatch.delenv(SIGNING_KEY_FILE_ENV, raising=False)


def test_json_round_trip_keeps_every_part() -> None:
    raw = tiny_metadata_json()
    raw["slices"] = {
        "metric": "roc_auc",
        "columns": {"origin": [{"value": "EWR", "rows": 40, "roc_auc": 0.4, "accuracy": 0.7}]},
        "worst": {"column": "origin", "value": "EWR", "rows": 40, "roc_auc": 0.4},
    }
    raw["gate"]["goals"][0]["ci_low"] = float("nan")
    metadata = BundleMetadata.from_json(raw)
    assert metadata.slices.columns["origin"][0].score == 0.4
    assert metadata.slices.worst is not None and metadata.slices.worst.score == 0.4
    assert metadata.feature_schema.names == ["x"]
    stored = json.loads(metadata.to_json())
    # the file keeps the layout bundles always had: score under the metric's name, `schema`
    assert stored["slices"]["columns"]["origin"][0]["roc_auc"] == 0.4
    assert "score" not in stored["slices"]["columns"]["origin"][0]
    assert stored["schema"]["features"][0]["name"] == "x"
    assert stored["metadata_version"] == METADATA_VERSION
    again = BundleMetadata.from_json(metadata.to_json())
    assert math.isnan(again.gate.goals[0].ci_low)
    assert again.model_dump(exclude={"gate", "metadata_version"}) == metadata.model_dump(
        exclude={"gate", "metadata_version"}
    )


def test_metadata_is_frozen() -> None:
    metadata = tiny_metadata()
    with pytest.raises(ValueError, match="frozen"):
        metadata.project = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        metadata.gate.passed = False  # type: ignore[misc]


def test_reference_column_names_are_defined_once() -> None:
    assert proba_column("late") == "proba_late"
    assert proba_columns(["a", "b"], own=True) == ["model_proba_a", "model_proba_b"]


def test_bundle_of_the_first_version_still_loads_and_serves(unsigned: None) -> None:
    """The oldest layout: none of calibration, Brier gate, importance, decision weights,
    staleness, samples, challenger verdict, nor `metadata_version`; a monitoring section with
    a key this Occam no longer knows."""
    raw = tiny_metadata_json()
    raw["monitoring"] = {"window_rows": 500, "a_key_since_removed": True}
    name = model_name()
    tag = save_old_bundle(name, raw, promoted=True)
    bundle = resolve_serving_bundle(name, tag)  # found, verified
    metadata = bundle.metadata
    assert metadata.metadata_version == 0
    assert metadata.gate.brier is None and metadata.model.calibration is None
    assert bundle.feature_importance == {} and bundle.decision_weights is None
    assert metadata.staleness is None and metadata.challenge is None
    assert metadata.abstain is None
    # the monitoring section keeps what this Occam reads: removed keys are left out
    assert metadata.monitoring is not None and metadata.monitoring.window_rows == 500
    assert bundle.schema.names == ["x"] and bundle.classes == ["a", "b"]
    assert bundle.load_pipeline().predict_proba(bundle.load_reference()[["x"]]).shape == (20, 2)
    assert latest_production(name) == bundle
    text = card.render(metadata, tag=bundle.tag, stage=bundle.stage)
    assert "## Goals" in text and "brier (lower is better)" not in text


def test_bundle_missing_what_serving_needs_says_how_to_rebuild(
    unsigned: None, caplog: pytest.LogCaptureFixture
) -> None:
    raw = tiny_metadata_json()
    del raw["schema"]
    raw["gate"]["goals"][0].pop("model")
    name = model_name()
    tag = save_old_bundle(name, raw, promoted=True)
    with pytest.raises(BundleIncompatible) as caught:
        get_bundle(tag)
    message = str(caught.value)
    assert tag in message and "metadata.json" in message
    assert "schema" in message and "gate.goals.0.model" in message
    assert "rebuild the bundle with `occam train --config occam.yaml`" in message
    with pytest.raises(BundleIncompatible, match="occam train --config"):
        resolve_serving_bundle(name, tag)
    # listing the store leaves it out, saying why, so that other bundles still serve
    with caplog.at_level(logging.WARNING, logger="occam.bundle"):
        assert list_bundles(name) == []
    assert any("occam train --config" in r.getMessage() for r in caplog.records)


def test_bundle_from_a_newer_occam_asks_for_an_upgrade(unsigned: None) -> None:
    raw = tiny_metadata_json() | {"metadata_version": METADATA_VERSION + 1}
    tag = save_old_bundle(model_name(), raw, promoted=False)
    with pytest.raises(BundleIncompatible, match="upgrade Occam"):
        get_bundle(tag)


def test_unreadable_metadata_names_the_problem() -> None:
    with pytest.raises(MetadataError, match="not valid JSON"):
        BundleMetadata.from_json(b"{oops")
    with pytest.raises(MetadataError, match="not a JSON object"):
        BundleMetadata.from_json(b"[1, 2]")
