"""Prediction-log records made by a real bundle on rows of the bundled flights data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from occam.bundle import Bundle
from occam.config import OccamConfig
from occam.metrics import predicted_labels
from occam.records import FeedbackRecord, PredictionRecord, Record
from tests.monitoring.logs import append
from training.data import load_frame, split_frame


@dataclass(frozen=True)
class Replayed:
    """What was written: prediction ids, true labels and probabilities (bundle class order)."""

    ids: list[str]
    labels: np.ndarray
    proba: np.ndarray


def periods(config: OccamConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(held-out test rows of the training period, production rows), each in time order."""
    frame = load_frame(config.data.path)
    frame = frame[~frame[config.data.target].isin(config.labels.unknown_values)]
    split = split_frame(frame, config)
    return split.test, split.production


def records(
    bundle: Bundle,
    rows: pd.DataFrame,
    prefix: str,
    feedback_every: int = 0,
    version: str | None = None,
    t0: float = 1_700_000_000.0,
) -> tuple[list[Record], Replayed]:
    """Predictions for `rows` (and feedback for every `feedback_every`-th one)."""
    schema = bundle.schema
    proba = bundle.load_pipeline().predict_proba(schema.coerce(rows))
    classes = bundle.classes
    decided = predicted_labels(proba, classes, bundle.decision_weights)  # as the service answers
    target = bundle.metadata.target
    out: list[Record] = []
    ids = []
    for i, (features, p, label) in enumerate(
        zip(rows[schema.names].to_dict("records"), proba, rows[target].astype(str), strict=True)
    ):
        ident = f"{prefix}-{i}"
        ids.append(ident)
        clean = {
            k: None if isinstance(v, float) and np.isnan(v) else v for k, v in features.items()
        }
        top = str(decided[i])
        out.append(
            PredictionRecord(
                id=ident,
                ts=t0 + i,
                model_version=version or bundle.version,
                features=clean,
                label=top,
                predicted=top,
                probabilities=dict(zip(classes, map(float, p), strict=True)),
                abstained=False,
                marks={
                    "missing": [k for k, v in clean.items() if v is None],
                    "unseen_category": [],
                    "out_of_range": [],
                },
            )
        )
        if feedback_every and i % feedback_every == 0:
            out.append(FeedbackRecord(id=ident, ts=t0 + i + 0.5, label=label))
    return out, Replayed(ids, rows[target].astype(str).to_numpy(), proba)


def write(folder: Path, recs: list[Record], worker: int = 0, segment: int = 0) -> None:
    append(folder, recs, worker=worker, pid=100 + worker, segment=segment)
