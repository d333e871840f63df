"""The prediction log: the one contract between the service (writer) and the sidecar (reader).

The service appends one JSON value per line (UTF-8, ``\\n``-terminated) to segment files in the
configured log folder. Every line is written with a single ``write`` on a file opened with
``O_APPEND``, so a line is never interleaved with another; a crash can leave at most one
partial last line, which the reader leaves unread until it is completed.

Two segment formats (`serving.log_format`); a reader reads both, and both in one folder:

- ``json`` (the first format): every line is one record as a JSON object with named fields
  (below), e.g. ``{"id":"9f…","ts":1764700000.123,"model_version":"occam-flights:v3",
  "features":{"carrier":"AA",…},"label":"late","predicted":"late","probabilities":{"late":0.61,
  "on_time":0.39},"abstained":false,"marks":{"unseen_category":[],"out_of_range":[],
  "missing":[]},"kind":"prediction"}`` (about 540 bytes on the flights data).
- ``compact`` (the default; `COMPACT_VERSION`): the segment's first line is a header, a JSON object
  ``{"occam_log":1,"segment":"<16 random hex digits>","ts0":<whole Unix seconds>,"pid":…,
  "worker":…,"models":[[model_version,[class…],[feature…]],…]}``; every other line is a record
  as a JSON array without keys (about 145 bytes per prediction on the flights data):

  - prediction ``[code,id,dt,m,answer,marks,p_1…p_k,x_1…x_n]``: ``code`` is 1, plus 4 when
    abstained, plus 8 for a shadow row; ``dt`` the record's time in milliseconds after ``ts0``
    (so ``ts`` = ts0 + dt / 1000, to the millisecond); ``m`` the index of the record's model in
    the header's ``models``; ``answer`` is the class index when ``label`` = ``predicted``, else
    ``[predicted, label]`` (each a class index, or the text when it is not a class, e.g. the
    abstain label); ``marks`` 0 when the row has none, else three lists of feature indices
    (in `MARK_KINDS` order); ``p`` the probabilities in the model's class order, rounded to
    `PROBABILITY_DIGITS` decimals; ``x`` the features' values in the model's feature order.
  - feedback ``[2,id,dt,label]``; rejected ``[3,dt,model_version,reason,field]``.
  - a record that does not fit the header (a row whose features are not the model's, a
    non-finite time, more than `MAX_MODELS` versions) is written as a ``json`` line, which a
    compact segment may hold anywhere after its header.

  The header is written with the segment's first records (one write); a writer that meets a
  model version not in its header starts a new segment whose header lists it. The random
  ``segment`` id makes every segment's first line unique, which the reader's segment identity
  (inode and first line) relies on. ``ts0`` is fixed for the writer's lifetime.

The reader (`occam.logread`) gives every record, whichever the format, as the dict its ``json``
line parses to (a compact row without marks shares one `NO_MARKS` dict: never modify a record).
A reader older than the compact format counts compact lines as malformed: upgrade the monitor
before the service, or keep `serving.log_format: json` until then.

File names (both formats): ``occam-w<worker>-p<pid>-<segment:06d>.jsonl``. A writer starts a
new segment when the current one passes its size limit; segments are never renamed or
rewritten, so a reader can track each file by name and byte offset alone. Old segments may be
deleted once read.

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

import itertools
import json
import math
import operator
import re
import threading
from collections.abc import Sequence
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

    @classmethod
    def of(
        cls,
        id: str,
        ts: float,
        model_version: str,
        features: dict[str, Any],
        label: str,
        predicted: str,
        probabilities: dict[str, float],
        abstained: bool,
        marks: dict[str, list[str]],
    ) -> PredictionRecord:
        """`cls(...)` with these fields (a served, not shadow, prediction), built without the
        frozen dataclass's `object.__setattr__` per field: a third of the time, and a 1,000-row
        request builds 1,000 of them. Equal to the constructor's record, and as frozen
        (tests/test_records.py)."""
        record = object.__new__(cls)
        record.__dict__.update(
            id=id,
            ts=ts,
            model_version=model_version,
            features=features,
            label=label,
            predicted=predicted,
            probabilities=probabilities,
            abstained=abstained,
            marks=marks,
            kind="prediction",
            shadow=False,
        )
        return record


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


# --- The compact segment format (see the module docstring) --------------------------------

LogFormat = Literal["compact", "json"]
#: The compact format's version, the header's ``occam_log`` value.
COMPACT_VERSION = 1
#: A compact segment's first bytes: how a reader tells it from a ``json`` segment.
HEADER_PREFIX = b'{"occam_log":'
#: Decimals kept of each probability in compact lines (an error of at most 5e-5 per value).
PROBABILITY_DIGITS = 4
#: Model versions one writer's header lists at most; records of further versions are written
#: as ``json`` lines.
MAX_MODELS = 64
PREDICTION_CODE, FEEDBACK_CODE, REJECTED_CODE = 1, 2, 3
_EMPTY: list[str] = []  # compared with, never changed
ABSTAINED_BIT, SHADOW_BIT = 4, 8


@dataclass(frozen=True)
class ModelShape:
    """One entry of a compact header's ``models``: a model version, its classes and the
    features of its rows, each in the order compact lines list their values."""

    version: str
    classes: tuple[str, ...]
    features: tuple[str, ...]


@dataclass(frozen=True)
class SegmentHeader:
    """A compact segment's first line: `segment` (random hex, unique per segment), `ts0`
    (whole Unix seconds; compact times are milliseconds after it), the writer's `pid` and
    `worker`, and the `models` its lines index."""

    segment: str
    ts0: int
    pid: int
    worker: int
    models: tuple[ModelShape, ...]

    def line(self) -> bytes:
        models = [[m.version, list(m.classes), list(m.features)] for m in self.models]
        raw = {
            "occam_log": COMPACT_VERSION,
            "segment": self.segment,
            "ts0": self.ts0,
            "pid": self.pid,
            "worker": self.worker,
            "models": models,
        }
        return to_json(raw) + b"\n"

    @classmethod
    def of(cls, raw: Any) -> SegmentHeader:
        """The header for a parsed header line; raises `MalformedRecord` for anything else
        (a newer version included)."""
        try:
            version = raw["occam_log"]
            if version != COMPACT_VERSION:
                raise MalformedRecord(f"compact log version {version!r} is not {COMPACT_VERSION}")
            models = tuple(
                ModelShape(str(v), tuple(map(str, c)), tuple(map(str, f)))
                for v, c, f in raw["models"]
            )
            ts0, pid, worker = raw["ts0"], raw["pid"], raw["worker"]
            if not all(type(v) is int for v in (ts0, pid, worker)):
                raise MalformedRecord("header ts0, pid and worker must be whole numbers")
            return cls(str(raw["segment"]), ts0, pid, worker, models)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, MalformedRecord):
                raise
            raise MalformedRecord(f"not a compact segment header: {exc!r}") from None


class CompactEncoder:
    """Encodes records as compact lines for one writer (thread-safe).

    Its table of model shapes only grows (indices stay valid for the writer's life), so a line
    fits every segment whose header was written after the line was encoded; `size` is the
    table's length, which the writer compares with its segment's header to know when a new
    segment (and header) is needed.
    """

    def __init__(self, ts0: int) -> None:
        self.ts0 = ts0
        self.models: list[ModelShape] = []
        #: version -> (its index, its shape, feature -> index, class -> index)
        self._index: dict[str, tuple[int, ModelShape, dict[str, int], dict[str, int]]] = {}
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self.models)

    def header(self, segment: str, pid: int, worker: int) -> tuple[SegmentHeader, int]:
        """The header of a new segment and the table length it covers."""
        with self._lock:
            return SegmentHeader(segment, self.ts0, pid, worker, tuple(self.models)), self.size

    def encode(self, record: Record) -> bytes:
        """The record's line (newline included): compact when it fits, else `dumps`."""
        try:
            raw = self._compact(record)
        except (TypeError, ValueError, OverflowError, AttributeError):
            raw = None
        if raw is None:
            return dumps(record)
        return to_json(raw, inf_nan_mode="null") + b"\n"

    def _dt(self, ts: float) -> int | None:
        if (type(ts) is not float and type(ts) is not int) or not math.isfinite(ts):
            return None
        return round((ts - self.ts0) * 1000)

    def _compact(self, record: Record) -> list[Any] | None:
        dt = self._dt(record.ts)
        if dt is None:
            return None
        if isinstance(record, FeedbackRecord):
            if type(record.id) is not str or type(record.label) is not str:
                return None
            return [FEEDBACK_CODE, record.id, dt, record.label]
        if isinstance(record, RejectedRecord):
            return [REJECTED_CODE, dt, record.model_version, record.reason, record.field]
        entry = self._index.get(record.model_version) or self._learn(record)
        if entry is None:
            return None
        m, shape, index, positions = entry
        features, probabilities = record.features, record.probabilities
        if features.keys() != index.keys() or probabilities.keys() != positions.keys():
            return None
        label, predicted = record.label, record.predicted
        if type(record.id) is not str or type(label) is not str or type(predicted) is not str:
            return None
        top = positions.get(predicted, predicted)
        answer: Any = top if label == predicted else [top, positions.get(label, label)]
        marks: Any = record.marks
        if (
            len(marks) == 3
            and marks["unseen_category"] == _EMPTY
            and marks["out_of_range"] == _EMPTY
            and marks["missing"] == _EMPTY
        ):
            marks = 0
        else:
            marks = self._marks(marks, index)
            if marks is None:
                return None
        abstained, shadow = record.abstained, record.shadow
        if type(abstained) is not bool or type(shadow) is not bool:
            return None
        code = PREDICTION_CODE | (ABSTAINED_BIT if abstained else 0) | (SHADOW_BIT if shadow else 0)
        line = [code, record.id, dt, m, answer, marks]
        line += [round(probabilities[c], PROBABILITY_DIGITS) for c in shape.classes]
        line += map(features.__getitem__, shape.features)
        return line

    @staticmethod
    def _marks(marks: dict[str, list[str]], index: dict[str, int]) -> Any:
        """The feature indices per mark kind; None when `marks` are not the contract's."""
        if len(marks) != len(MARK_KINDS):
            return None
        lists = [marks[kind] for kind in MARK_KINDS]  # KeyError: not the contract's marks
        if any(type(names) is not list for names in lists):
            return None
        if any(type(name) is not str or name not in index for names in lists for name in names):
            return None
        return [[index[name] for name in names] for names in lists]

    def _learn(
        self, record: PredictionRecord
    ) -> tuple[int, ModelShape, dict[str, int], dict[str, int]] | None:
        """A table entry for a record's new model version (its features as this record has
        them, plus any marked missing), None when the table is full."""
        with self._lock:
            known = self._index.get(record.model_version)
            if known is not None:
                return known
            if len(self.models) >= MAX_MODELS or type(record.model_version) is not str:
                return None
            names = list(record.features)
            names += [n for n in record.marks.get("missing", []) if n not in record.features]
            classes = tuple(record.probabilities)
            if not all(type(v) is str for v in (*names, *classes)):
                return None
            shape = ModelShape(record.model_version, classes, tuple(names))
            entry = (
                len(self.models),
                shape,
                {f: i for i, f in enumerate(shape.features)},
                {c: i for i, c in enumerate(classes)},
            )
            self.models.append(shape)
            self._index[shape.version] = entry
            return entry


#: The marks of a compact line without any, as the reader gives them (shared by every such
#: record read: never modify a record's marks).
NO_MARKS: dict[str, list[str]] = {kind: [] for kind in MARK_KINDS}


class CompactDecoder:
    """Turns one compact segment's record lines (parsed JSON arrays) back into the record dicts
    a ``json`` line gives (same keys, same order; ``ts`` to the millisecond, probabilities as
    rounded; a row without marks gets the shared `NO_MARKS`)."""

    def __init__(self, header: SegmentHeader) -> None:
        self.header = header
        self.ts0 = header.ts0
        self._models = [
            (
                m.version,
                m.classes,
                m.features,
                6 + len(m.classes),
                6 + len(m.classes) + len(m.features),
            )
            for m in header.models
        ]

    def decode(self, e: list[Any]) -> dict[str, Any] | None:
        """The record dict of one parsed compact line, None when it is not a valid one."""
        out: list[dict[str, Any]] = []
        if self.decode_all([e], out, out, out, out):
            return None
        return out[0]

    def decode_all(
        self,
        values: list[Any],
        predictions: list[dict[str, Any]],
        shadow: list[dict[str, Any]],
        feedback: list[dict[str, Any]],
        rejected: list[dict[str, Any]],
        rows: CompactRows | None = None,
    ) -> int:
        """Append the record dicts of parsed compact lines to the list of their kind (a shadow
        challenger's rows to `shadow`); return how many values were not valid compact lines.

        With `rows`, a valid served prediction of `rows.model` (an index in this segment's
        header) is appended to `rows` as parsed, without building its dict (see
        `CompactRows`); any other prediction still goes to `predictions`.

        Written for speed (it runs once per record): a prediction's fields are checked by type
        and count, and any other fault surfaces as an exception."""
        models, ts0, no_marks = self._models, self.ts0, NO_MARKS
        served, shadows = predictions.append, shadow.append
        keep = rows.model if rows is not None else -1
        if rows is not None:  # bound appends: this runs once per record
            kept, kept_ts = rows.lines.append, rows.ts.append
            kept_predicted, kept_label, kept_marks = (
                rows.predicted.append,
                rows.label.append,
                rows.marks.append,
            )
        bad = 0
        for e in values:
            try:
                if type(e) is not list:
                    bad += 1
                    continue
                code = e[0]
                if type(code) is not int:
                    bad += 1
                    continue
                kind = code & 3
                if kind == PREDICTION_CODE:
                    ident, dt, m, answer, marks = e[1], e[2], e[3], e[4], e[5]
                    if type(ident) is not str or type(dt) is not int or type(m) is not int or m < 0:
                        bad += 1
                        continue
                    version, classes, features, start, width = models[m]
                    if len(e) != width:
                        bad += 1
                        continue
                    if type(answer) is int and answer >= 0:
                        predicted = label = classes[answer]
                    else:
                        top, said = answer
                        predicted = classes[top] if type(top) is int and top >= 0 else top
                        label = classes[said] if type(said) is int and said >= 0 else said
                        if type(predicted) is not str or type(label) is not str:
                            bad += 1
                            continue
                    if type(marks) is int:
                        if marks != 0:
                            bad += 1
                            continue
                        marks = no_marks
                    else:
                        unseen, out, missing = marks
                        if min((*unseen, *out, *missing)) < 0:
                            bad += 1
                            continue
                        marks = {
                            "unseen_category": [features[i] for i in unseen],
                            "out_of_range": [features[i] for i in out],
                            "missing": [features[i] for i in missing],
                        }
                    if m == keep and not code & SHADOW_BIT:
                        kept(e)
                        kept_ts(ts0 + dt / 1000)
                        kept_predicted(predicted)
                        kept_label(label)
                        kept_marks(e[5])  # checked above; names only when asked
                        continue
                    raw = {
                        "id": ident,
                        "ts": ts0 + dt / 1000,
                        "model_version": version,
                        "features": dict(zip(features, e[start:])),  # noqa: B905 (width checked)
                        "label": label,
                        "predicted": predicted,
                        "probabilities": dict(zip(classes, e[6:start])),  # noqa: B905
                        "abstained": code & ABSTAINED_BIT != 0,
                        "marks": marks,
                        "kind": "prediction",
                    }
                    if code & SHADOW_BIT:
                        raw["shadow"] = True
                        shadows(raw)
                    else:
                        served(raw)
                elif kind == FEEDBACK_CODE:
                    _, ident, dt, label = e
                    if type(ident) is not str or type(dt) is not int or type(label) is not str:
                        bad += 1
                        continue
                    feedback.append(
                        {"id": ident, "ts": ts0 + dt / 1000, "label": label, "kind": "feedback"}
                    )
                elif kind == REJECTED_CODE:
                    _, dt, version, reason, field = e
                    if type(dt) is not int:
                        bad += 1
                        continue
                    rejected.append(
                        {
                            "ts": ts0 + dt / 1000,
                            "model_version": version,
                            "reason": reason,
                            "field": field,
                            "kind": "rejected",
                        }
                    )
                else:
                    bad += 1
            except (IndexError, KeyError, TypeError, ValueError):
                bad += 1
        return bad

    def take_rows(self, values: list[Any], rows: CompactRows) -> list[Any] | None:
        """The fast path of `decode_all` with `rows` for a chunk: when every served prediction
        line among `values` (all lists) is a valid line of `rows.model`, append them all to
        `rows` (checked column by column, not line by line) and return the other values, in
        order, for `decode_all`; else return None and leave `rows` as it was (the caller then
        decodes the chunk with `decode_all`, which finds and counts the bad lines)."""
        try:
            return self._take_rows(values, rows)
        except (IndexError, KeyError, TypeError, ValueError):
            return None

    def _take_rows(self, values: list[Any], rows: CompactRows) -> list[Any] | None:
        codes = list(map(operator.itemgetter(0), values))
        if set(map(type, codes)) - {int}:
            return None
        served = [(c & 3) == PREDICTION_CODE and not c & SHADOW_BIT for c in codes]
        lines = list(itertools.compress(values, served))
        others = [v for v, s in zip(values, served, strict=True) if not s]
        if not lines:
            return others
        _, classes, features, _, width = self._models[rows.model]
        if set(map(len, lines)) != {width}:
            return None
        _, idents, dts, models, answers, marks = itertools.islice(zip(*lines, strict=True), 6)
        if (
            set(map(type, idents)) != {str}
            or set(map(type, dts)) != {int}
            or set(map(type, models)) != {int}
            or set(models) != {rows.model}
        ):
            return None
        if set(map(type, answers)) == {int} and min(answers) >= 0:  # label = predicted class
            predicted: list[Any] = list(map(classes.__getitem__, answers))  # IndexError: no class
            return self._take(rows, lines, others, dts, predicted, predicted, marks, features)
        predicted = list(answers)
        labels: list[Any] = list(answers)
        for i, answer in enumerate(answers):
            if type(answer) is int and answer >= 0:
                predicted[i] = labels[i] = classes[answer]  # IndexError: not a class
            else:
                top, said = answer
                predicted[i] = classes[top] if type(top) is int and top >= 0 else top
                labels[i] = classes[said] if type(said) is int and said >= 0 else said
                if type(predicted[i]) is not str or type(labels[i]) is not str:
                    return None
        return self._take(rows, lines, others, dts, predicted, labels, marks, features)

    def _take(
        self,
        rows: CompactRows,
        lines: list[Any],
        others: list[Any],
        dts: Sequence[int],
        predicted: list[Any],
        labels: list[Any],
        marks: Sequence[Any],
        features: tuple[str, ...],
    ) -> list[Any] | None:
        """The end of `_take_rows`: check the marks (all at once: 0, or three lists of feature
        indices, not all empty), then append the rows."""
        kinds = set(map(type, marks))
        if not kinds <= {int, list}:
            return None
        if int in kinds and {m for m in marks if type(m) is int} != {0}:
            return None
        if list in kinds:
            marked = [m for m in marks if type(m) is list]
            if set(map(len, marked)) != {3}:
                return None
            parts = list(itertools.chain.from_iterable(marked))
            if set(map(type, parts)) != {list}:
                return None
            sizes = list(map(len, parts))
            if 0 in map(sum, zip(*[iter(sizes)] * 3, strict=True)):  # decode_all: min() of none
                return None
            flat = list(itertools.chain.from_iterable(parts))
            if set(map(type, flat)) != {int} or min(flat) < 0 or max(flat) >= len(features):
                return None
        ts0 = self.ts0
        rows.lines += lines
        rows.ts += [ts0 + dt / 1000 for dt in dts]
        rows.predicted += predicted
        rows.label += labels
        rows.marks += marks
        return others


class CompactRows:
    """Served prediction lines of one model shape, kept as parsed (lists) rather than as record
    dicts: the monitor turns them into columns directly (`monitoring.windows`), which costs a
    fraction of building a dict per record and reading it back.

    `model` is the index of `shape` in the header of the segment being decoded (set by the
    reader per segment). Per row: `lines` the parsed line (``[code, id, dt, m, answer, marks,
    p_1..p_k, x_1..x_n]``, checked by `CompactDecoder.decode_all`), `ts` Unix seconds,
    `predicted` and `label` as text, `marks` as logged (0, or the three lists of feature
    indices in `MARK_KINDS` order, checked). `records()` gives the very dicts `decode_all`
    would have given, in the same order.
    """

    def __init__(self, shape: ModelShape, model: int = -1) -> None:
        self.shape = shape
        self.model = model
        self.lines: list[list[Any]] = []
        self.ts: list[float] = []
        self.predicted: list[str] = []
        self.label: list[str] = []
        self.marks: list[Any] = []

    def __len__(self) -> int:
        return len(self.lines)

    def extend(self, other: CompactRows) -> None:
        """Append `other`'s rows (of the same shape)."""
        self.lines += other.lines
        self.ts += other.ts
        self.predicted += other.predicted
        self.label += other.label
        self.marks += other.marks

    @property
    def unique(self) -> bool:
        """Whether the shape names each class and feature once (a record dict would merge a
        repeated name; such rows are only read as dicts)."""
        shape = self.shape
        return len(set(shape.classes)) == len(shape.classes) and len(set(shape.features)) == len(
            shape.features
        )

    def take(self, order: Any) -> CompactRows:
        """The rows at the positions `order` (any iterable of indices), in that order."""
        out = CompactRows(self.shape, self.model)
        positions = list(order)
        if not positions:
            return out
        pick = operator.itemgetter(*positions)
        for name in ("lines", "ts", "predicted", "label", "marks"):
            picked = pick(getattr(self, name))
            setattr(out, name, list(picked) if len(positions) > 1 else [picked])
        return out

    def tail(self, count: int) -> CompactRows:
        """The last `count` rows (all when fewer)."""
        return self if len(self) <= count else self.take(range(len(self) - count, len(self)))

    def records(self) -> list[dict[str, Any]]:
        """The record dicts of the rows, as `CompactDecoder.decode_all` builds them."""
        version, classes, features = self.shape.version, self.shape.classes, self.shape.features
        start = 6 + len(classes)
        return [
            {
                "id": e[1],
                "ts": ts,
                "model_version": version,
                "features": dict(zip(features, e[start:])),  # noqa: B905 (width checked)
                "label": label,
                "predicted": predicted,
                "probabilities": dict(zip(classes, e[6:start])),  # noqa: B905
                "abstained": e[0] & ABSTAINED_BIT != 0,
                "marks": NO_MARKS if type(marks) is int else _named(marks, features),
                "kind": "prediction",
            }
            for e, ts, predicted, label, marks in zip(
                self.lines, self.ts, self.predicted, self.label, self.marks, strict=True
            )
        ]


def _named(marks: list[list[int]], features: tuple[str, ...]) -> dict[str, list[str]]:
    """A compact line's marks (feature indices per kind) as the record dict gives them."""
    unseen, out, missing = marks
    return {
        "unseen_category": [features[j] for j in unseen],
        "out_of_range": [features[j] for j in out],
        "missing": [features[j] for j in missing],
    }


def segment_records(data: bytes) -> list[Record]:
    """The records of a whole segment's lines (either format; a compact segment's header read
    from its first line); raises `MalformedRecord` on the first line that is not a valid record.
    For tests and tools; the reader of a live log is `occam.logread`."""
    records: list[Record] = []
    decoder: CompactDecoder | None = None
    for line in data.splitlines():
        if line.startswith(HEADER_PREFIX):
            decoder = CompactDecoder(SegmentHeader.of(json.loads(line)))
        elif line.startswith(b"["):
            try:
                value = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise MalformedRecord(f"not JSON: {exc}") from None
            raw = decoder.decode(value) if decoder is not None else None
            if raw is None:
                raise MalformedRecord(
                    f"not a compact record (or no header before it): {line!r:.80}"
                )
            records.append(record_of(raw))
        else:
            records.append(loads(line))
    return records
