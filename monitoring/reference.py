"""What a bundle says "normal" looks like: the fitted drift detectors for inputs and outputs,
the feature weights, and the label-free performance estimator.

Built once per watched model from its bundle and the `monitoring` section of the config:
`Bundle.load_reference()` (training inputs in time order with the model's out-of-fold outputs
and, in newer bundles, the true `label`) fits the drift detectors; the labelled held-out sample
(`Bundle.load_holdout()`, else the labelled reference) calibrates the estimator's band.
`reference_from_frames` does the same from frames and the facts it needs (benchmarks build no
bundle).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from monitoring.calibration import calendar_features
from monitoring.drift import DriftDetector
from monitoring.estimate import PerformanceEstimator
from monitoring.importance import weights
from monitoring.windows import WindowEncoding
from occam.bundle import Bundle
from occam.config import MonitoringConfig
from occam.metadata import LABEL_COLUMN, BundleMetadata, proba_columns
from occam.metrics import predicted_labels
from occam.schema import FeatureSchema

log = logging.getLogger(__name__)

#: Column names of the model's outputs in the output detector.
PREDICTED, CONFIDENCE = "predicted_class", "confidence"


@dataclass(frozen=True)
class Reference:
    """One watched model. `excluded` are the schema features left out of drift checks (the
    configured ones and calendar features); `created_ts` is the training time (Unix seconds).
    `importance` holds the bundle's feature importances, `weights` the normalised weights of the
    checked inputs; `estimator` estimates the goal metrics without labels; `decision_weights`
    turn probabilities into the answered label (`occam.metrics.predicted_labels`); `encoding`
    (built once, on first use) turns prediction records into the window's columns."""

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
    importance: dict[str, float]
    weights: dict[str, float]
    estimator: PerformanceEstimator
    decision_weights: dict[str, float] | None = None

    @cached_property
    def encoding(self) -> WindowEncoding:
        """How the monitor's window keeps this model's predictions as columns."""
        return WindowEncoding(self.inputs, self.outputs, tuple(self.classes))


def created_timestamp(metadata: BundleMetadata) -> float | None:
    """The bundle's training time (Unix seconds) from its metadata, None when unknown."""
    created = metadata.created
    return None if created is None else created.timestamp()


def output_frame(predicted: np.ndarray, confidence: np.ndarray) -> pd.DataFrame:
    """The frame the output detector checks: predicted class and top-class probability."""
    return pd.DataFrame({PREDICTED: np.asarray(predicted, dtype=str), CONFIDENCE: confidence})


def build_reference(bundle: Bundle, config: MonitoringConfig, seed: int = 0) -> Reference:
    """Load the bundle's reference (and holdout) samples and fit the detectors and estimator."""
    metadata = bundle.metadata
    return reference_from_frames(
        tag=bundle.tag,
        schema=bundle.schema,
        classes=bundle.classes,
        raw=bundle.load_reference(),
        holdout=bundle.load_holdout(),
        config=config,
        seed=seed,
        decision_weights=bundle.decision_weights,
        positive=metadata.positive_label,
        goals=metadata.goal_thresholds,
        time_column=metadata.time_column,
        train_rows=metadata.data.train_rows,
        importance=bundle.feature_importance,
        created_ts=created_timestamp(metadata),
    )


def labelled_sample(
    holdout: pd.DataFrame | None, raw: pd.DataFrame, classes: list[str]
) -> tuple[pd.DataFrame | None, str]:
    """The labelled rows that calibrate the estimator's band, and where they came from."""
    columns = [LABEL_COLUMN, *proba_columns(classes)]
    for frame, source in ((holdout, "holdout"), (raw, "reference")):
        if frame is not None and set(columns) <= set(frame.columns):
            return frame[columns].dropna(), source
    return None, "none"


def reference_from_frames(
    *,
    tag: str,
    schema: FeatureSchema,
    classes: list[str],
    raw: pd.DataFrame,
    holdout: pd.DataFrame | None,
    config: MonitoringConfig,
    seed: int = 0,
    decision_weights: dict[str, float] | None = None,
    positive: str,
    goals: Mapping[str, float],
    time_column: str | None = None,
    train_rows: int | None = None,
    importance: Mapping[str, float] | None = None,
    created_ts: float | None = None,
) -> Reference:
    """A `Reference` from the reference sample `raw` (inputs in time order, `proba_<class>`,
    optionally `label`), the labelled `holdout` (or None) and what the bundle's metadata says:
    the `positive` class, the `goals` (metric -> threshold), the `time_column`, the training
    period's rows (`train_rows`), the feature `importance` and the training time
    (`created_ts`, Unix seconds)."""
    excluded = [n for n in config.drift_exclude if n in schema.names]
    if config.exclude_calendar_features:
        found = calendar_features(raw, time_column, schema.names)
        excluded += [n for n in found if n not in excluded]
    if excluded:
        log.info("drift checks leave out %s", ", ".join(excluded))
    period_rows = train_rows
    options = {
        "p_value": config.p_value,
        "correction": config.correction,
        "margin": config.drift_margin,
        "min_effect_size": config.min_effect_size,
        "seed": seed,
        "backend": config.drift_backend,
    }
    inputs = DriftDetector(
        [n for n in schema.numeric if n not in excluded],
        [n for n in schema.categorical if n not in excluded],
        **options,  # type: ignore[arg-type]
    ).fit(schema.coerce(raw), config.window_rows, config.calibration_chunk_rows, period_rows)
    proba = raw[proba_columns(classes)].to_numpy(dtype=float)
    predicted = predicted_labels(proba, classes, decision_weights)  # as the service answers
    confidence = proba.max(axis=1)
    outputs = DriftDetector([CONFIDENCE], [PREDICTED], **options).fit(  # type: ignore[arg-type]
        output_frame(predicted, confidence),
        config.window_rows,
        config.calibration_chunk_rows,
        period_rows,
    )
    goals = dict(goals)
    estimator = PerformanceEstimator(
        classes,
        positive,
        list(goals),
        level=config.band_level,
        seed=seed,
        decision_weights=decision_weights,
    )
    labelled, source = labelled_sample(holdout, raw, classes)
    if labelled is None:
        estimator.fit(None, None, config.window_rows, source)
    else:
        estimator.fit(
            labelled[proba_columns(classes)].to_numpy(dtype=float),
            labelled[LABEL_COLUMN].astype(str).to_numpy(),
            config.window_rows,
            source,
        )
    importance = {str(n): float(v) for n, v in (importance or {}).items()}
    return Reference(
        tag=tag,
        version=tag.split(":", 1)[-1],
        created_ts=created_ts,
        schema=schema,
        classes=classes,
        positive=positive,
        goals=goals,
        excluded=excluded,
        inputs=inputs,
        outputs=outputs,
        class_ratio={c: float(np.mean(predicted == c)) for c in classes},
        confidence_mean=float(confidence.mean()),
        rows=len(raw),
        importance=importance,
        weights=weights(importance, inputs.names_),
        estimator=estimator,
        decision_weights=decision_weights,
    )
