"""What training leaves for the monitor, on the bundled flights data (the session's `trained`
model): calibrated probabilities that beat the baseline's Brier score, an ONNX form equal to
scikit-learn, the holdout sample, the labelled reference and the feature importance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from occam.bundle import HOLDOUT_FILE, get_bundle, save_bundle
from training.export import onnx_feed


def test_calibrated_model_beats_the_baselines_brier_score(trained: Any) -> None:
    gate = trained.gate
    assert gate.brier.passed and gate.brier.model < gate.brier.baseline
    cal = trained.report["model"]["calibration"]
    assert cal["method"] in {"sigmoid", "isotonic"}
    assert cal["oof_brier"][cal["method"]] == min(cal["oof_brier"].values())
    # calibration improved the forest's out-of-fold probabilities and its ECE on test
    assert cal["oof_brier"][cal["method"]] < cal["oof_brier_uncalibrated"]
    assert cal["ece_test"] < cal["ece_test_uncalibrated"]
    metrics = json.loads(trained.metrics_path.read_text())
    assert metrics["gate"]["brier"]["passed"] is True
    assert Path(cal["plot"]).is_file() and Path(cal["plot"]).stat().st_size > 10_000


def test_onnx_gives_the_calibrated_probabilities_of_sklearn(trained: Any) -> None:
    import onnxruntime as ort

    bundle = trained.bundle
    assert bundle.metadata["inference"]["format"] == "onnx", bundle.metadata["inference"]
    holdout = bundle.load_holdout()
    x = bundle.schema.coerce(holdout)
    session = ort.InferenceSession(str(bundle.onnx_path), providers=["CPUExecutionProvider"])
    labels, proba = session.run(None, onnx_feed(bundle.schema, x))
    pipeline = bundle.load_pipeline()
    assert type(pipeline.steps[-1][1]).__name__ == "CalibratedClassifierCV"
    expected = pipeline.predict_proba(x)
    assert np.max(np.abs(np.asarray(proba) - expected)) <= 1e-5
    assert np.array_equal(np.asarray(labels).ravel(), pipeline.predict(x))
    # the holdout's probabilities are the served model's
    stored = holdout[[f"proba_{c}" for c in bundle.classes]].to_numpy()
    assert np.allclose(stored, expected, atol=1e-9)


def test_holdout_and_reference_carry_true_labels_in_time_order(trained: Any) -> None:
    bundle = trained.bundle
    report = trained.report
    holdout = bundle.load_holdout()
    assert holdout is not None and len(holdout) == report["data"]["test_rows"]
    columns = [report["time_column"], *bundle.schema.names]
    columns += [f"proba_{c}" for c in bundle.classes] + ["label"]
    assert list(holdout.columns) == columns
    assert set(holdout["label"]) == set(bundle.classes)
    times = pd.to_datetime(holdout[report["time_column"]])
    assert times.is_monotonic_increasing
    assert times.min() > pd.Timestamp(report["data"]["train_period"][1]) - pd.Timedelta(hours=1)
    reference = bundle.load_reference()
    assert reference["label"].dtype == object and set(reference["label"]) == set(bundle.classes)
    # reference outputs are calibrated out-of-fold probabilities: the abstain threshold's basis
    assert report["abstain"]["chosen_on"].startswith("calibrated out-of-fold")
    assert "precision" in report["abstain"]["test"]


def test_feature_importance_is_stored_per_feature(trained: Any) -> None:
    bundle = get_bundle(trained.bundle.tag)
    importance = bundle.feature_importance
    assert set(importance) == set(bundle.schema.names)
    assert importance == bundle.metadata["feature_importance"]
    assert all(isinstance(v, float) for v in importance.values())
    top = next(iter(importance))
    assert importance[top] == max(importance.values()) > 0.005  # something matters
    card = trained.card_path.read_text()
    assert (
        "## What the model relies on: is every feature worth having?" in card and f"`{top}`" in card
    )


def test_staleness_scores_time_ordered_chunks_of_the_held_out_period(trained: Any) -> None:
    stale = trained.report["staleness"]
    chunks = stale["chunks"]
    assert (
        len(chunks) == 5 and sum(c["rows"] for c in chunks) == trained.report["data"]["test_rows"]
    )
    days = [c["days_since_train_end"] for c in chunks]
    assert days == sorted(days) and days[0] > 0
    assert set(chunks[0]["metrics"]) == {g["metric"] for g in trained.report["goals"]}
    assert "## How fast it goes stale" in trained.card_path.read_text()


def test_bundle_without_holdout_or_importance_still_loads(trained: Any) -> None:
    metadata = {k: v for k, v in trained.bundle.metadata.items() if k != "feature_importance"}
    old = save_bundle(
        "occam-old-format",
        pipeline=trained.bundle.load_pipeline(),
        metadata=metadata,
        reference=trained.bundle.load_reference().drop(columns=["label"]),
        promoted=False,
    )
    old.verify()
    assert not (old.path / HOLDOUT_FILE).exists()
    assert old.load_holdout() is None and old.feature_importance == {}
    assert "label" not in old.load_reference().columns


def test_holdout_round_trip_keeps_every_value(trained: Any) -> None:
    holdout = trained.bundle.load_holdout()
    again = save_bundle(
        "occam-round-trip",
        pipeline=trained.bundle.load_pipeline(),
        metadata=trained.bundle.metadata,
        reference=trained.bundle.load_reference(),
        promoted=False,
        holdout=holdout,
    )
    again.verify()
    back = again.load_holdout()
    assert back is not None
    pd.testing.assert_frame_equal(back, holdout)
    assert again.feature_importance == trained.bundle.feature_importance
