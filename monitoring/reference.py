"""What a bundle says "normal" looks like: the fitted drift detectors for inputs and outputs.

Built once per watched model from its bundle (`Bundle.load_reference()`: training inputs in
time order with the model's outputs) and the `monitoring` section of the config.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitoring.calibration import calendar_features
from monitoring.drift import DriftDetector
from occam.bundle import Bundle
from occam.config import MonitoringConfig
from occam.metrics import predicted_labels
from occam.schema import FeatureSchema

log = logging.getLogger(__name__)

#: Column names of the model's outputs in the output detector.
PREDICTED, CONFIDENCE = "predicted_class", "confidence"


@dataclass(frozen=True)
class Reference:
    """One watched model. `excluded` are the schema features left out of drift checks (the
    configured ones and calendar features); `created_ts` is the training time (Unix seconds)."""

    tag: str
    version: str
    created_ts: float | None
    schema: FeatureSchema
    classes: list[str]
    positive: str
    goals: dict[str, float]
    excluded: list[str]
    inputs: DriftDetector
    outputs: DriftDetector
    class_ratio: dict[str, float]
    confidence_mean: float
    rows: int
    #: The bundle's decision weights: labels are `occam.metrics.predicted_labels` with them.
    decision_weights: dict[str, float] | None = None


def created_timestamp(metadata: dict[str, object]) -> float | None:
    """The bundle's training time (Unix seconds) from its metadata, None when unknown."""
    try:
        stamp = dt.datetime.fromisoformat(str(metadata["created_at"]))
    except (KeyError, ValueError):
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def output_frame(predicted: np.ndarray, confidence: np.ndarray) -> pd.DataFrame:
    """The frame the output detector checks: predicted class and top-class probability."""
    return pd.DataFrame({PREDICTED: np.asarray(predicted, dtype=str), CONFIDENCE: confidence})


def build_reference(bundle: Bundle, config: MonitoringConfig, seed: int = 0) -> Reference:
    """Load the bundle's reference sample and fit the input and output detectors."""
    metadata = bundle.metadata
    schema = bundle.schema
    raw = bundle.load_reference()
    classes = bundle.classes
    excluded = [n for n in config.drift_exclude if n in schema.names]
    if config.exclude_calendar_features:
        found = calendar_features(raw, metadata.get("time_column"), schema.names)
        excluded += [n for n in found if n not in excluded]
    if excluded:
        log.info("drift checks leave out %s", ", ".join(excluded))
    period_rows = (metadata.get("data") or {}).get("train_rows")
    options = {
        "p_value": config.p_value,
        "correction": config.correction,
        "margin": config.drift_margin,
        "min_effect_size": config.min_effect_size,
        "seed": seed,
    }
    inputs = DriftDetector(
        [n for n in schema.numeric if n not in excluded],
        [n for n in schema.categorical if n not in excluded],
        **options,  # type: ignore[arg-type]
    ).fit(schema.coerce(raw), config.window_rows, config.calibration_chunk_rows, period_rows)
    proba = raw[[f"proba_{c}" for c in classes]].to_numpy(dtype=float)
    # the service answers the label the decision weights choose; the reference must say the same
    predicted = predicted_labels(proba, classes, bundle.decision_weights)
    confidence = proba.max(axis=1)
    outputs = DriftDetector([CONFIDENCE], [PREDICTED], **options).fit(  # type: ignore[arg-type]
        output_frame(predicted, confidence),
        config.window_rows,
        config.calibration_chunk_rows,
        period_rows,
    )
    return Reference(
        tag=bundle.tag,
        version=bundle.version,
        created_ts=created_timestamp(metadata),
        schema=schema,
        classes=classes,
        positive=str(metadata.get("positive_label") or classes[-1]),
        goals={str(g["metric"]): float(g["threshold"]) for g in metadata.get("goals", [])},
        excluded=excluded,
        inputs=inputs,
        outputs=outputs,
        class_ratio={c: float(np.mean(predicted == c)) for c in classes},
        confidence_mean=float(confidence.mean()),
        rows=len(raw),
        decision_weights=bundle.decision_weights,
    )
