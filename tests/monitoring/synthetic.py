"""A small synthetic model reference (no bundle, no training) for exporter and check tests."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pandas as pd

from monitoring.drift import DriftDetector
from monitoring.estimate import PerformanceEstimator
from monitoring.importance import weights
from monitoring.reference import CONFIDENCE, PREDICTED, Reference, output_frame
from monitoring.state import MonitorState
from occam.config import MonitoringConfig
from occam.schema import FeatureSchema
from tests.monitoring.logs import feedback, prediction

CLASSES = ["no", "yes"]


def reference(config: MonitoringConfig, rows: int = 2000, seed: int = 0) -> Reference:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(0, 1, rows), "c": rng.choice(["a", "b"], rows)})
    schema = FeatureSchema.from_frame(frame, ["x"], ["c"])
    p_yes = rng.uniform(0.1, 0.9, rows)
    predicted = np.where(p_yes >= 0.5, "yes", "no")
    confidence = np.maximum(p_yes, 1 - p_yes)
    backend = config.drift_backend
    inputs = DriftDetector(["x"], ["c"], margin=config.drift_margin, backend=backend).fit(
        schema.coerce(frame), config.window_rows
    )
    outputs = DriftDetector(
        [CONFIDENCE], [PREDICTED], margin=config.drift_margin, backend=backend
    ).fit(output_frame(predicted, confidence), config.window_rows)
    goals = {"roc_auc": 0.7, "balanced_accuracy": 0.6}
    # calibrated probabilities: the labels are drawn from them
    labels = np.where(rng.random(rows) < p_yes, "yes", "no")
    estimator = PerformanceEstimator(CLASSES, "yes", list(goals), level=config.band_level).fit(
        np.column_stack([1 - p_yes, p_yes]), labels, config.window_rows
    )
    importance = {"x": 0.08, "c": 0.02}
    return Reference(
        tag="model:v1",
        version="v1",
        created_ts=1_000_000.0,
        schema=schema,
        classes=CLASSES,
        positive="yes",
        goals=goals,
        excluded=[],
        inputs=inputs,
        outputs=outputs,
        class_ratio={c: float(np.mean(predicted == c)) for c in CLASSES},
        confidence_mean=float(confidence.mean()),
        rows=rows,
        importance=importance,
        weights=weights(importance, inputs.names_),
        estimator=estimator,
    )


def feed(
    state: MonitorState,
    n: int,
    shift: float = 0.0,
    labelled: int = 0,
    seed: int = 1,
    start: int = 0,
) -> None:
    """Add `n` predictions (x ~ N(shift, 1)) and feedback for the first `labelled` of them,
    with labels that agree with the prediction 80% of the time."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(start, start + n):
        p_yes = float(rng.uniform(0.1, 0.9))
        records.append(
            asdict(
                prediction(
                    f"r{i}",
                    features={"x": float(rng.normal(shift, 1)), "c": str(rng.choice(["a", "b"]))},
                    proba={"no": 1 - p_yes, "yes": p_yes},
                )
            )
        )
    state.window.extend(records)
    state.join.add_predictions(records)
    state.rows_total += n
    state.records["prediction"] += n
    fb = []
    for r in records[:labelled]:
        agree = rng.random() < 0.8
        label = r["predicted"] if agree else ("no" if r["predicted"] == "yes" else "yes")
        fb.append(asdict(feedback(r["id"], label)))
    state.join.add_feedback(fb)
    state.records["feedback"] += len(fb)
