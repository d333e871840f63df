"""The prediction log: the one contract between the service (writer) and the sidecar (reader).

The service appends one JSON object per line (UTF-8, ``\\n``-terminated) to segment files in the
configured log folder. Every line is written with a single ``write`` on a file opened with
``O_APPEND``, so a line is never interleaved with another; a crash can leave at most one
partial last line, which the reader leaves unread until it is completed.

File names: ``occam-w<worker>-p<pid>-<segment:06d>.jsonl``. A writer starts a new segment when
the current one passes its size limit; segments are never renamed or rewritten, so a reader can
track each file by name and byte offset alone. Old segments may be deleted once read.

Record kinds (field ``kind``), all with ``ts`` (Unix time in seconds, float):

- ``prediction``: ``id`` (unique per row; what feedback refers to), ``model_version``,
  ``features`` (as received), ``label`` (the answer, the abstain label when abstained),
  ``predicted`` (the top class, even when abstained), ``probabilities`` ({class: p}),
  ``abstained`` (bool), ``marks`` ({"unseen_category": [feature...], "out_of_range":
  [feature...], "missing": [feature...]}), and ``shadow`` (true only for a shadow challenger's
  row: same ``id`` as the served row, the challenger's ``model_version``, never answered to the
  caller; the field is left out of served rows, so readers older than it read those unchanged and
  refuse shadow rows as malformed, never mistaking them for served ones).
- ``feedback``: ``id`` (a prediction's id), ``label`` (the true class).
- ``rejected``: ``model_version``, ``reason`` (short code, e.g. ``missing_feature``), ``field``
  (or null): a row the service refused; its features are not logged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic_core import to_json

SEGMENT_PATTERN = re.compile(r"^occam-w(?P<worker>\d+)-p(?P<pid>\d+)-(?P<segment>\d{6})\.jsonl$")
MARK_KINDS = ("unseen_category", "out_of_range", "missing")
Kind = Literal["prediction", "feedback", "rejected"]


def segment_name(worker: int, pid: int, segment: int) -> str:
    return f"occam-w{worker}-p{pid}-{segment:06d}.jsonl"


def segment_key(name: str) -> tuple[int, int, int] | None:
    """(worker, pid, segment) for a log segment's file name, None for any other file."""
    match = SEGMENT_PATTERN.match(name)
    if match is None:
        return None
    return (int(match["worker"]), int(match["pid"]), int(match["segment"]))


@dataclass(frozen=True)
class PredictionRecord:
    id: str
    ts: float
    model_version: str
    features: dict[str, Any]
    label: str
    predicted: str
    probabilities: dict[str, float]
    abstained: bool
    marks: dict[str, list[str]]
    kind: Literal["prediction"] = "prediction"
    #: A shadow challenger's row (`serving.shadow_tag`): logged, never answered.
    shadow: bool = False


@dataclass(frozen=True)
class FeedbackRecord:
    id: str
    ts: float
    label: str
    kind: Literal["feedback"] = "feedback"


@dataclass(frozen=True)
class RejectedRecord:
    ts: float
    model_version: str
    reason: str
    field: str | None
    kind: Literal["rejected"] = "rejected"


Record = PredictionRecord | FeedbackRecord | RejectedRecord


def dumps(record: Record) -> bytes:
    """One log line, newline included. Non-finite numbers are written as null, so a line is
    always strict JSON.

    pydantic-core's Rust encoder (installed with pydantic) is about 4x faster than `json.dumps`
    here (1.6 against 6.4 us for a prediction record); the service encodes in the request's
    thread, so this is most of the log's cost for large batches.
    """
    fields = record.__dict__
    if fields.get("shadow") is False:  # served rows stay readable by readers older than shadow
        fields = {k: v for k, v in fields.items() if k != "shadow"}
    return to_json(fields, inf_nan_mode="null") + b"\n"


class MalformedRecord(ValueError):
    """A log line that is not a valid record."""


_KINDS: dict[str, type[Record]] = {
    "prediction": PredictionRecord,
    "feedback": FeedbackRecord,
    "rejected": RejectedRecord,
}


def record_of(raw: dict[str, Any]) -> Record:
    """The record for a parsed line that `occam.logread` found valid (its `kind` and fields
    checked); fields beyond the contract's are ignored, as the reader ignores them."""
    cls = _KINDS[raw["kind"]]
    return cls(**{k: v for k, v in raw.items() if k in cls.__dataclass_fields__})


def loads(line: bytes | str) -> Record:
    """Parse one log line; raise `MalformedRecord` when it is not a valid record."""
    try:
        raw = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedRecord(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise MalformedRecord("not a JSON object")
    kind = raw.get("kind")
    cls = _KINDS.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise MalformedRecord(f"unknown kind {kind!r}")
    try:
        record = cls(**raw)
    except TypeError as exc:
        raise MalformedRecord(f"bad fields for {kind}: {exc}") from None
    if not isinstance(record.ts, (int, float)):
        raise MalformedRecord("ts is not a number")
    return record
