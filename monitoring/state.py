"""What the sidecar knows, and its checkpoint.

`MonitorState` holds the read offsets, the counters, the windows, the hysteresis run lengths and
the retrain notification memory. `apply(batch)` takes a `reader.Batch` into the state and moves
the offsets past it in the same step; `save` writes state and offsets together into one file,
atomically (temporary file, fsync, `os.replace`). After a crash or `kill -9` the sidecar
resumes from the last checkpoint: the lines read since then are read again and applied to the
state as it was when those offsets were saved, so no record is lost or counted twice.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from monitoring.reader import Batch
from monitoring.windows import FeedbackJoin, PredictionWindow

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
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
class MonitorState:
    """See the module docstring. `model_version` is the watched model, `confirmed` whether the
    log has shown its predictions yet; `rows_total` counts predictions added to the window since
    it was adopted. Rows of `skipped_versions` are counted as read but kept out of the windows
    (they come from an older model still being served somewhere)."""

    window: PredictionWindow
    join: FeedbackJoin
    offsets: dict[str, int] = field(default_factory=dict)
    records: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    malformed: int = 0
    feedback_unmatched: int = 0
    unread_bytes: int = 0
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
        """Count the batch's records, feed the windows, and adopt its offsets."""
        predictions = batch.predictions
        if len(batch.offsets) > 1 and predictions:
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
        self.feedback_unmatched += self.join.add_feedback(batch.feedback)
        self.records["prediction"] += len(batch.predictions)
        self.records["feedback"] += len(batch.feedback)
        self.records["rejected"] += len(batch.rejected)
        self.malformed += batch.malformed
        newest = [
            float(kind[-1]["ts"])
            for kind in (batch.predictions, batch.feedback, batch.rejected)
            if kind
        ]
        if newest:
            self.last_record_ts = max([*newest, self.last_record_ts or 0.0])
        self.offsets = batch.offsets
        self.unread_bytes = batch.unread_bytes

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
        return {
            "format": FORMAT_VERSION,
            "offsets": self.offsets,
            "records": self.records,
            "malformed": self.malformed,
            "feedback_unmatched": self.feedback_unmatched,
            "last_record_ts": self.last_record_ts,
            "model_version": self.model_version,
            "confirmed": self.confirmed,
            "skipped_versions": sorted(self.skipped_versions),
            "rows_total": self.rows_total,
            "runs": self.runs.__dict__,
            "window": list(self.window.rows),
            "join": self.join.to_state(),
        }

    def save(self, path: Path) -> None:
        """Write the checkpoint atomically: a reader of `path` sees the old or the new file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = pickle.dumps(self.to_dict(), protocol=pickle.HIGHEST_PROTOCOL)
        fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
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
        over, which would count every record again).
        """
        state = cls.new(window_rows, min_window_rows, join_rows, label_rows)
        if not path.is_file():
            return state
        try:
            raw = pickle.loads(path.read_bytes())
            if raw.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {raw.get('format')!r}, expected {FORMAT_VERSION}")
            state.offsets = dict(raw["offsets"])
            state.records = {k: int(raw["records"].get(k, 0)) for k in KINDS}
            state.malformed = int(raw["malformed"])
            state.feedback_unmatched = int(raw["feedback_unmatched"])
            state.last_record_ts = raw["last_record_ts"]
            state.model_version = raw["model_version"]
            state.confirmed = bool(raw["confirmed"])
            state.skipped_versions = set(raw["skipped_versions"])
            state.rows_total = int(raw["rows_total"])
            runs = dict(raw["runs"])
            runs["notified_reasons"] = tuple(runs.get("notified_reasons", ()))
            state.runs = Runs(**runs)
            state.window = PredictionWindow(window_rows, min_window_rows, raw["window"])
            state.join = FeedbackJoin.from_state(raw["join"], join_rows, label_rows)
        except Exception as exc:
            raise CheckpointError(
                f"monitor checkpoint {path} cannot be read ({type(exc).__name__}: {exc}); move "
                "it away to start over (every record in the log will be read again)"
            ) from None
        return state


class CheckpointError(RuntimeError):
    """A checkpoint file that exists but cannot be used."""
