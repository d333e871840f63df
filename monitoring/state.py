"""What the sidecar knows, and its checkpoint.

`MonitorState` holds the segment marks (read offsets and file identities), the counters, the
windows, the hysteresis run lengths and the retrain notification memory. `apply(batch)` takes a
`reader.Batch` into the state and moves the marks past it in the same step; `save` writes state
and marks together into one file, atomically (temporary file, fsync, `os.replace`, fsync of the
folder). After a crash or `kill -9` the sidecar resumes from the last checkpoint: the lines read
since then are read again and applied to the state as it was when those marks were saved, so no
record is lost or counted twice.

The checkpoint is data only, never code: one header line of JSON (`format`, `version`,
`sha256` and `length` of the payload) and the payload, a JSON object. `load` refuses with
`CheckpointError` anything else (a pickle, garbage, a payload whose checksum does not match,
a wrong version or shape), and reads at most `MAX_CHECKPOINT_BYTES`. The window is stored as
its columns (`PredictionWindow.to_state`: base64 of little-endian arrays, with the fingerprint
of the encoding they were made with); a window restored for another bundle or config starts
afresh when the sidecar binds it to its model. A checkpoint of format 2 (the window as records)
is read and its records are encoded when the window is bound.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np
from pydantic_core import from_json, to_json

from monitoring.reader import SEGMENT_EVENTS, Batch, SegmentMark
from monitoring.windows import FeedbackJoin, PredictionWindow
from occam.records import CompactRows

log = logging.getLogger(__name__)

FORMAT_NAME = "occam-monitor-checkpoint"
FORMAT_VERSION = 3
#: Versions `load` reads: 2 held the window as records (they are encoded when the window is
#: bound to its model), 3 holds it as columns (`PredictionWindow.to_state`).
READABLE_VERSIONS = (2, 3)
#: The checkpoint file name inside `monitoring.state_dir`.
STATE_FILE = "monitor-checkpoint.json"
#: A checkpoint larger than this is refused unread (the window and the join are bounded, so a
#: real one stays far below: about 100 bytes per remembered prediction, and per window row
#: about 11 bytes per checked input and class, as base64 of float64).
MAX_CHECKPOINT_BYTES = 1 << 30
_HEADER_BYTES = 512
KINDS = ("prediction", "feedback", "rejected")


@dataclass
class Runs:
    """Hysteresis and notification memory, kept across restarts.

    `data_drift` / `prediction_drift`: how many counted windows in a row had that verdict.
    `counted_rows`: `MonitorState.rows_total` when the last window was counted.
    `notified_at` (Unix seconds) and `notified_reasons`: the last retrain notification.
    `risk_enter` / `risk_clear`: per risk reason, counted windows in a row that entered /
    cleared it; `risk_active`: the active risk reasons (see `monitoring.policy`).
    """

    data_drift: int = 0
    prediction_drift: int = 0
    counted_rows: int = 0
    notified_at: float | None = None
    notified_reasons: tuple[str, ...] = ()
    risk_enter: dict[str, int] = field(default_factory=dict)
    risk_clear: dict[str, int] = field(default_factory=dict)
    risk_active: tuple[str, ...] = ()


@dataclass
class LogAccount:
    """What happened to the log apart from its records (all counters, monotonic).

    `lost_bytes`: bytes seen in a segment that disappeared before they were read (truncation,
    deletion, rewriting by someone else); `lost_records`: records deleted unread by retention
    (counted line by line before the file was removed); `events[event]`: see
    `monitoring.reader.SEGMENT_EVENTS`; `retained_segments` / `retained_bytes`: segments and
    bytes deleted by retention; `expired_rows`: window and join rows dropped for their age.
    """

    lost_bytes: int = 0
    lost_records: int = 0
    events: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SEGMENT_EVENTS, 0))
    retained_segments: int = 0
    retained_bytes: int = 0
    expired_rows: int = 0


@dataclass
class MonitorState:
    """See the module docstring. `model_version` is the watched model, `confirmed` whether the
    log has shown its predictions yet; `rows_total` counts predictions added to the window since
    it was adopted. Rows of `skipped_versions` are counted as read but kept out of the windows
    (they come from an older model still being served somewhere). `log_bytes` and
    `log_segments` describe the log folder at the last read."""

    window: PredictionWindow
    join: FeedbackJoin
    segments: dict[str, SegmentMark] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    malformed: int = 0
    feedback_unmatched: int = 0
    feedback_duplicates: int = 0
    account: LogAccount = field(default_factory=LogAccount)
    unread_bytes: int = 0
    log_bytes: int = 0
    log_segments: int = 0
    last_record_ts: float | None = None
    model_version: str | None = None
    confirmed: bool = False
    skipped_versions: set[str] = field(default_factory=set)
    rows_total: int = 0
    runs: Runs = field(default_factory=Runs)

    @classmethod
    def new(
        cls, window_rows: int, min_window_rows: int, join_rows: int, label_rows: int
    ) -> MonitorState:
        return cls(
            window=PredictionWindow(window_rows, min_window_rows),
            join=FeedbackJoin(join_rows, label_rows),
        )

    def apply(self, batch: Batch) -> None:
        """Count the batch's records and segment events, feed the windows, adopt its marks."""
        if batch.rows is not None:
            self._apply_rows(batch, batch.rows)
        else:
            self._apply_predictions(batch)
        feedback = batch.feedback
        several = len(batch.segments) > 1
        if several and feedback:
            feedback.sort(key=itemgetter("ts"))  # the first label (in time) wins
        unmatched, duplicates = self.join.add_feedback(feedback)
        self.feedback_unmatched += unmatched
        self.feedback_duplicates += duplicates
        self.records["feedback"] += len(batch.feedback)
        self.records["rejected"] += len(batch.rejected)
        self.malformed += batch.malformed
        newest = [float(kind[-1]["ts"]) for kind in (batch.feedback, batch.rejected) if kind]
        if batch.rows is not None and len(batch.rows):
            newest.append(float(batch.rows.ts[-1]))
        elif batch.predictions:
            newest.append(float(batch.predictions[-1]["ts"]))
        if newest:
            self.last_record_ts = max([*newest, self.last_record_ts or 0.0])
        self.count_events(batch.events, batch.lost_bytes)
        self.segments = batch.segments
        self.unread_bytes = batch.unread_bytes
        self.log_bytes = sum(m.size for m in batch.segments.values())
        self.log_segments = len(batch.segments)

    def _apply_rows(self, batch: Batch, rows: CompactRows) -> None:
        """`apply` of served predictions kept as compact rows (one model shape)."""
        if len(batch.segments) > 1 and len(rows):  # several writers: restore time order
            order = np.argsort(np.asarray(rows.ts, float), kind="stable")
            rows = batch.rows = rows.take(order.tolist())
        self.records["prediction"] += len(rows)
        if rows.shape.version in self.skipped_versions or not len(rows):
            return
        if not self.confirmed:
            self.confirmed = rows.shape.version == self.model_version
        self.window.extend_rows(rows)
        self.join.add_rows(rows)
        self.rows_total += len(rows)

    def _apply_predictions(self, batch: Batch) -> None:
        """`apply` of served predictions as record dicts."""
        predictions = batch.predictions
        several = len(batch.segments) > 1
        if several and predictions:
            predictions.sort(key=itemgetter("ts"))  # several writers: restore time order
        if self.skipped_versions:
            skipped = self.skipped_versions
            predictions = [r for r in predictions if r["model_version"] not in skipped]
        if predictions and not self.confirmed:
            version = self.model_version
            self.confirmed = any(r["model_version"] == version for r in predictions)
        self.window.extend(predictions)
        self.join.add_predictions(predictions)
        self.rows_total += len(predictions)
        self.records["prediction"] += len(batch.predictions)

    def count_events(self, events: Counter[str] | dict[str, int], lost_bytes: int) -> None:
        account = self.account
        for event, count in events.items():
            account.events[event] = account.events.get(event, 0) + count
        account.lost_bytes += lost_bytes

    def expire(self, cutoff: float) -> None:
        """Forget window and join rows older than `cutoff` (Unix seconds): log retention applied
        to the monitor's own state."""
        self.account.expired_rows += self.window.forget_before(cutoff)
        self.account.expired_rows += self.join.forget_before(cutoff)

    def adopt_model(self, version: str) -> None:
        """Start watching model `version`: empty windows and hysteresis, keep counters. A model
        the log had confirmed is older than its successor: its rows are skipped from now on."""
        if version == self.model_version:
            return
        if self.model_version is not None and self.confirmed:
            self.skipped_versions.add(self.model_version)
        self.skipped_versions.discard(version)
        self.model_version = version
        self.confirmed = False
        self.window.clear()
        self.join.clear()
        self.rows_total = 0
        self.runs.data_drift = self.runs.prediction_drift = self.runs.counted_rows = 0

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's payload: JSON-ready (dicts, lists, str, numbers, bools, None)."""
        return {
            "segments": {name: mark.to_list() for name, mark in self.segments.items()},
            "records": self.records,
            "malformed": self.malformed,
            "feedback_unmatched": self.feedback_unmatched,
            "feedback_duplicates": self.feedback_duplicates,
            "account": self.account.__dict__,
            "log_bytes": self.log_bytes,
            "log_segments": self.log_segments,
            "unread_bytes": self.unread_bytes,
            "last_record_ts": self.last_record_ts,
            "model_version": self.model_version,
            "confirmed": self.confirmed,
            "skipped_versions": sorted(self.skipped_versions),
            "rows_total": self.rows_total,
            "runs": {
                **self.runs.__dict__,
                "notified_reasons": list(self.runs.notified_reasons),
                "risk_active": list(self.runs.risk_active),
            },
            "window": self.window.to_state(),
            "join": self.join.to_state(),
        }

    def save(self, path: Path) -> None:
        """Write the checkpoint atomically: a reader of `path` sees the old or the new file,
        and after a power cut the new one is on disk once `save` returned."""
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = to_json(self.to_dict(), inf_nan_mode="null")
        header = json.dumps(
            {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "sha256": hashlib.sha256(payload).hexdigest(),
                "length": len(payload),
            }
        ).encode()
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(header + b"\n")
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)

    @classmethod
    def load(
        cls, path: Path, window_rows: int, min_window_rows: int, join_rows: int, label_rows: int
    ) -> MonitorState:
        """The checkpointed state, or a new one when `path` does not exist.

        Raises `CheckpointError` for a file that cannot be used (rather than silently starting
        over, which would count every record again). Nothing in the file is executed: it is
        parsed as JSON after its checksum matched.
        """
        state = cls.new(window_rows, min_window_rows, join_rows, label_rows)
        if not path.is_file():
            return state
        try:
            raw = read_checkpoint(path)
            state.segments = {
                str(name): SegmentMark.from_list(mark) for name, mark in raw["segments"].items()
            }
            state.records = {k: int(raw["records"].get(k, 0)) for k in KINDS}
            state.malformed = int(raw["malformed"])
            state.feedback_unmatched = int(raw["feedback_unmatched"])
            state.feedback_duplicates = int(raw["feedback_duplicates"])
            account = dict(raw["account"])
            events = {str(k): int(v) for k, v in dict(account.pop("events")).items()}
            state.account = LogAccount(
                events={**dict.fromkeys(SEGMENT_EVENTS, 0), **events},
                **{k: int(v) for k, v in account.items()},
            )
            state.log_bytes = int(raw["log_bytes"])
            state.log_segments = int(raw["log_segments"])
            state.unread_bytes = int(raw["unread_bytes"])
            ts = raw["last_record_ts"]
            state.last_record_ts = None if ts is None else float(ts)
            version = raw["model_version"]
            state.model_version = None if version is None else str(version)
            state.confirmed = bool(raw["confirmed"])
            state.skipped_versions = {str(v) for v in raw["skipped_versions"]}
            state.rows_total = int(raw["rows_total"])
            runs = dict(raw["runs"])
            runs["notified_reasons"] = tuple(str(r) for r in runs.get("notified_reasons", ()))
            runs["risk_active"] = tuple(str(r) for r in runs.get("risk_active", ()))
            state.runs = Runs(**runs)
            state.window = PredictionWindow.from_state(raw["window"], window_rows, min_window_rows)
            state.join = FeedbackJoin.from_state(raw["join"], join_rows, label_rows)
        except CheckpointError:
            raise
        except Exception as exc:
            raise CheckpointError(
                f"monitor checkpoint {path} is not a usable Occam checkpoint "
                f"({type(exc).__name__}: {exc}); nothing in it was run. Move it away to start "
                "over (every record in the log will then be read again)"
            ) from None
        return state


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The payload of a checkpoint file, checked against its header; `CheckpointError` when
    the file is not one (no header, wrong format or version, size or checksum mismatch)."""

    def refuse(reason: str) -> CheckpointError:
        return CheckpointError(
            f"monitor checkpoint {path} refused: {reason}; nothing in it was run. Move it away "
            "to start over (every record in the log will then be read again)"
        )

    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise refuse(f"{size} bytes, more than the {MAX_CHECKPOINT_BYTES} allowed")
    with open(path, "rb") as handle:
        first = handle.readline(_HEADER_BYTES)
        try:
            header = json.loads(first)
        except (ValueError, UnicodeDecodeError):
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise refuse("not an Occam monitor checkpoint (no JSON header line)")
        if header.get("version") not in READABLE_VERSIONS:
            expected = " or ".join(map(str, READABLE_VERSIONS))
            raise refuse(f"format version {header.get('version')!r}, expected {expected}")
        length, digest = header.get("length"), header.get("sha256")
        if type(length) is not int or not isinstance(digest, str):
            raise refuse("header without length and sha256")
        payload = handle.read(length + 1)
    if len(payload) != length:
        raise refuse(f"payload of {len(payload)} bytes, the header says {length} (cut or grown)")
    if hashlib.sha256(payload).hexdigest() != digest:
        raise refuse("checksum mismatch (corrupt or tampered)")
    try:
        raw = from_json(payload)
    except ValueError as exc:
        raise refuse(f"payload is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise refuse("payload is not a JSON object")
    return raw


class CheckpointError(RuntimeError):
    """A checkpoint file that exists but cannot be used."""
