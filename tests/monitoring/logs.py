"""Builders of log records and log files for the monitoring tests."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from occam.records import (
    FeedbackRecord,
    PredictionRecord,
    Record,
    RejectedRecord,
    dumps,
    segment_name,
)


def prediction(
    ident: str,
    *,
    features: dict[str, Any] | None = None,
    version: str = "v1",
    proba: dict[str, float] | None = None,
    ts: float = 1_700_000_000.0,
    marks: dict[str, list[str]] | None = None,
    abstained: bool = False,
) -> PredictionRecord:
    proba = proba or {"no": 0.3, "yes": 0.7}
    top = max(proba, key=lambda c: proba[c])
    return PredictionRecord(
        id=ident,
        ts=ts,
        model_version=version,
        features=features if features is not None else {"x": 1.0, "c": "a"},
        label="unknown" if abstained else top,
        predicted=top,
        probabilities=proba,
        abstained=abstained,
        marks=marks or {"unseen_category": [], "out_of_range": [], "missing": []},
    )


def feedback(ident: str, label: str, ts: float = 1_700_000_001.0) -> FeedbackRecord:
    return FeedbackRecord(id=ident, ts=ts, label=label)


def rejected(reason: str = "missing_feature", field: str | None = "x") -> RejectedRecord:
    return RejectedRecord(ts=1_700_000_000.0, model_version="v1", reason=reason, field=field)


def append(
    folder: Path, records: Iterable[Record | bytes], worker: int = 0, pid: int = 1, segment: int = 0
) -> Path:
    """Append records (or raw bytes) to a segment file with one O_APPEND write, as the service."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / segment_name(worker, pid, segment)
    data = b"".join(r if isinstance(r, bytes) else dumps(r) for r in records)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return path
