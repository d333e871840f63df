"""Count-based windows over the prediction log.

- `PredictionWindow`: the last `size` prediction records; a verdict needs at least `min_rows`.
  Once bound to a model's `WindowEncoding` it keeps columns, not records: each batch of records
  is encoded once when it arrives (`extend`) into numpy arrays (the drift encoder's float matrix
  of the checked inputs, the probabilities in the model's class order, the predicted class as a
  code, confidence, abstained, mark flags, ts), so a check only slices arrays.
- `FeedbackJoin`: remembers the probabilities of the last `capacity` predictions by id, joins
  feedback (true labels) to them, and keeps the last `label_capacity` labelled rows for the
  live goal metrics. Each prediction is labelled at most once, across all replicas: the first
  label the monitor reads wins (records of one read are taken in timestamp order), later ones
  are counted as duplicates and ignored. `label_shift` compares the label mix of the labelled
  rows with the mix their predictions expected (a sudden gap is the mark of poisoned feedback).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import operator
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitoring.drift import MISSING_NUMBER, DriftDetector
from occam.records import ABSTAINED_BIT, MARK_KINDS, CompactRows

log = logging.getLogger(__name__)

#: Answers that are not one of the model's classes (e.g. a foreign abstain label) keep their
#: own text up to this many; any further one shares the last code (bounded memory).
MAX_OTHER_LABELS = 16


@dataclass(frozen=True)
class WindowEncoding:
    """How a window's records become columns for one model: the fitted input and output drift
    detectors (`monitoring.reference`) and the class order of the probabilities.

    `fingerprint` names the encoding (checked inputs, their categories, the classes and the
    output detector's classes): columns encoded under one fingerprint are only ever read under
    the same one (a checkpoint written for another bundle or config is not reused)."""

    inputs: DriftDetector
    outputs: DriftDetector
    classes: tuple[str, ...]
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        (predicted,) = self.outputs.categorical
        described = {
            "numeric": list(self.inputs.numeric),
            "categorical": {n: self.inputs.categories_[n] for n in self.inputs.categorical},
            "classes": list(self.classes),
            "predicted": self.outputs.categories_[predicted],
        }
        digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
        object.__setattr__(self, "fingerprint", digest)

    @property
    def features(self) -> int:
        """Width of the encoded input matrix (the checked inputs)."""
        return len(self.inputs.names_)

    def encode(
        self, records: Sequence[dict[str, Any]], labels: LabelCodes
    ) -> dict[str, np.ndarray]:
        """The columns of `records` (prediction records as logged), one array per `COLUMNS`
        entry; new answers that are not classes are added to `labels`."""
        n = len(records)
        k = len(self.classes)
        probabilities = [r["probabilities"] for r in records]
        try:  # one C-level pass: every row holds every class (the usual case)
            picked = map(operator.itemgetter(*self.classes), probabilities)
            flat = np.fromiter(itertools.chain.from_iterable(picked) if k > 1 else picked, float)
        except KeyError:
            flat = np.array([[p.get(c, 0.0) for c in self.classes] for p in probabilities], float)
        proba = flat.reshape(n, k)
        sizes = np.fromiter(map(len, probabilities), int, n)
        confidence = proba.max(axis=1) if k else np.full(n, np.nan)
        for i in np.flatnonzero(sizes != k):  # other classes than the model's: as logged
            confidence[i] = max(probabilities[i].values(), default=np.nan)
        names = self.inputs.names_
        x = self.inputs.encode_columns(_columns(records, names)) if names else np.empty((n, 0))
        marks = [r["marks"] for r in records]
        return {
            "x": x,
            "proba": proba,
            "predicted": labels.codes([r["predicted"] for r in records]),
            "confidence": confidence,
            "abstained": np.fromiter(
                map(bool, map(operator.itemgetter("abstained"), records)), bool, n
            ),
            "marks": np.column_stack([_flags(marks, kind) for kind in MARK_KINDS])
            if n
            else np.zeros((0, len(MARK_KINDS)), bool),
            "ts": np.fromiter(map(float, map(operator.itemgetter("ts"), records)), float, n),
        }

    def encode_rows(self, rows: CompactRows, labels: LabelCodes) -> dict[str, np.ndarray]:
        """`encode` of served predictions kept as compact rows: the same columns, read from
        the parsed lines by position (one transposition) instead of from record dicts."""
        n = len(rows)
        shape = rows.shape
        k, width = len(self.classes), len(shape.classes)
        start = 6 + width
        cols: list[Sequence[Any]] = (
            list(zip(*rows.lines, strict=True)) if n else [()] * (start + len(shape.features))
        )
        position = {c: 6 + i for i, c in enumerate(shape.classes)}
        proba = np.zeros((n, k))
        for j, c in enumerate(self.classes):  # a class the rows lack is 0, as in `encode`
            if c in position:
                proba[:, j] = np.fromiter(cols[position[c]], float, n)
        if width == k:  # as `encode`: the top of the model's classes (a lacking one is 0)
            confidence = proba.max(axis=1) if k else np.full(n, np.nan)
        elif width:  # other classes than the model's: as logged
            logged = np.column_stack([np.fromiter(cols[6 + i], float, n) for i in range(width)])
            confidence = logged.max(axis=1)
        else:
            confidence = np.full(n, np.nan)
        index = {f: start + i for i, f in enumerate(shape.features)}
        names = self.inputs.names_
        missing = [None] * n
        columns = [cols[index[name]] if name in index else missing for name in names]
        x = self.inputs.encode_columns(columns) if names else np.empty((n, 0))
        code = np.fromiter(cols[0], np.int64, n)
        return {
            "x": x,
            "proba": proba,
            "predicted": labels.codes(rows.predicted),
            "confidence": confidence,
            "abstained": (code & ABSTAINED_BIT) != 0,
            "marks": _mark_flags(rows.marks),
            "ts": np.fromiter(rows.ts, float, n),
        }


def _mark_flags(marks: list[Any]) -> np.ndarray:
    """Whether each row carries each mark kind (columns in `MARK_KINDS` order), from compact
    marks as logged (0, or one list of feature indices per kind; see `CompactRows`)."""
    flags = np.zeros((len(marks), len(MARK_KINDS)), bool)
    marked = np.fromiter(map(list.__instancecheck__, marks), bool, len(marks))
    if marked.any():
        lists = itertools.chain.from_iterable(itertools.compress(marks, marked))
        sizes = np.fromiter(map(len, lists), np.int64).reshape(-1, len(MARK_KINDS))
        flags[marked] = sizes > 0
    return flags


def _columns(records: Sequence[dict[str, Any]], names: Sequence[str]) -> list[Sequence[Any]]:
    """The values of `names` in the records' features, one sequence per name (None where a
    row lacks the feature): one C-level pass per row when every row holds every name."""
    feats = list(map(operator.itemgetter("features"), records))
    try:
        picked = list(map(operator.itemgetter(*names), feats))
    except KeyError:
        return [list(map(operator.methodcaller("get", name), feats)) for name in names]
    return (
        [picked]
        if len(names) == 1
        else list(zip(*picked, strict=True))
        if picked
        else [[]] * len(names)
    )


class LabelCodes:
    """Answers as integer codes: the model's classes first (code = class index), then up to
    `MAX_OTHER_LABELS` other answers in the order they appeared."""

    def __init__(self, classes: Sequence[str], others: Sequence[str] = ()) -> None:
        self.labels = [*classes, *others][: len(classes) + MAX_OTHER_LABELS]
        self._codes = {label: i for i, label in enumerate(self.labels)}
        self.classes = len(classes)

    def codes(self, answers: Sequence[Any]) -> np.ndarray:
        found = np.fromiter(map(self._codes.get, answers, itertools.repeat(-1)), np.int32)
        for i in np.flatnonzero(found < 0):
            found[i] = self._add(str(answers[i]))
        return found

    def _add(self, label: str) -> int:
        if label in self._codes:
            return self._codes[label]
        if len(self.labels) >= self.classes + MAX_OTHER_LABELS:
            return len(self.labels) - 1
        self._codes[label] = len(self.labels)
        self.labels.append(label)
        return len(self.labels) - 1

    @property
    def others(self) -> list[str]:
        return self.labels[self.classes :]


#: The window's columns: name -> (little-endian dtype as stored, width: None for one value
#: per row, else the name of the width: "features", "classes" or "marks").
COLUMNS: dict[str, tuple[str, str | None]] = {
    "x": ("<f8", "features"),
    "proba": ("<f8", "classes"),
    "predicted": ("<i4", None),
    "confidence": ("<f8", None),
    "abstained": ("|b1", None),
    "marks": ("|b1", "marks"),
    "ts": ("<f8", None),
}


@dataclass(frozen=True)
class WindowData:
    """The columns of a window, oldest row first.

    `predicted` the top class, `confidence` the top-class probability, `abstained` whether the
    answer was the abstain label; `marks[kind]` whether a row carries that mark (see
    `occam.records.MARK_KINDS`); `proba` the probabilities in the order of the classes asked
    for (None when none were). A bound window (see `PredictionWindow`) gives `encoded`, the
    checked inputs as the input drift detector encodes them, and `outputs`, the matrix the
    output detector checks (confidence, predicted class code); an unbound one gives `inputs`,
    each row's features as received (a mapping per row), and `features`, the same as a frame
    (one column per requested name, NaN where a row lacks it). Arrays of a bound window are
    views, valid until the window next changes.
    """

    inputs: list[dict[str, Any]]
    names: tuple[str, ...]
    predicted: np.ndarray
    confidence: np.ndarray
    abstained: np.ndarray
    marks: dict[str, np.ndarray]
    proba: np.ndarray | None = None
    encoded: np.ndarray | None = None
    outputs: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return len(self.predicted)

    @property
    def features(self) -> Any:
        """`inputs` as a pandas frame (unbound windows only)."""
        import pandas as pd

        return pd.DataFrame.from_records(self.inputs, columns=list(self.names))


class _Store:
    """Rows [start, end) of preallocated arrays, oldest first; at most `size` rows.

    Appending past the end moves the kept rows to the front (one copy of at most `size` rows
    per `capacity - size` rows appended), so the rows are always one contiguous slice. The
    capacity grows to twice `size` as rows arrive (a large configured window costs memory only
    when it fills)."""

    def __init__(self, size: int, widths: dict[str, int]) -> None:
        self.size = size
        self.widths = widths
        self.start = self.end = 0
        self.arrays = self._allocate(min(2 * size, 1024))

    def _allocate(self, capacity: int) -> dict[str, np.ndarray]:
        out = {}
        for name, (dtype, width) in COLUMNS.items():
            shape = (capacity,) if width is None else (capacity, self.widths[width])
            out[name] = np.zeros(shape, np.dtype(dtype).newbyteorder("="))
        return out

    def __len__(self) -> int:
        return self.end - self.start

    def append(self, columns: dict[str, np.ndarray]) -> None:
        n = len(columns["ts"])
        if n > self.size:
            columns = {name: a[-self.size :] for name, a in columns.items()}
            n = self.size
        if not n:
            return
        keep = min(len(self), self.size - n)
        capacity = len(self.arrays["ts"])
        if self.end + n > capacity:
            if capacity < 2 * self.size and keep + n > capacity // 2:
                grown = self._allocate(min(2 * self.size, max(2 * capacity, 2 * (keep + n))))
            else:
                grown = self.arrays
            for name, a in self.arrays.items():
                grown[name][:keep] = a[self.end - keep : self.end]
            self.arrays = grown
            self.start, self.end = 0, keep
        for name, a in self.arrays.items():
            a[self.end : self.end + n] = columns[name]
        self.end += n
        self.start = max(self.start, self.end - self.size)

    def view(self, name: str) -> np.ndarray:
        return self.arrays[name][self.start : self.end]

    def drop_oldest(self, n: int) -> None:
        self.start = min(self.start + n, self.end)


class PredictionWindow:
    """The last `size` prediction records; `ready` once it holds `min_rows`.

    Unbound (before `bind`) it keeps the records as read (`rows`); `bind(encoding)` encodes them
    and from then on each batch is encoded as it arrives (`extend`). A window restored from a
    checkpoint may hold columns of an encoding (`fingerprint`) before it is bound: `bind`
    keeps them when the encoding is the same, and starts the window afresh (logged) otherwise.
    """

    def __init__(self, size: int, min_rows: int, rows: Iterable[dict[str, Any]] = ()) -> None:
        self.size = size
        self.min_rows = min_rows
        self.encoding: WindowEncoding | None = None
        self.fingerprint: str | None = None  # of the columns in `_store`
        self._store: _Store | None = None
        self._labels: LabelCodes | None = None
        self._pending: deque[dict[str, Any]] = deque(rows, maxlen=size)

    def __len__(self) -> int:
        stored = len(self._store) if self._store is not None else 0
        return min(self.size, stored + len(self._pending))

    @property
    def ready(self) -> bool:
        """Whether the window holds enough rows for a verdict."""
        return len(self) >= self.min_rows

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The records kept as read, oldest first: every row of an unbound window that arrived
        since its last columns (a bound window keeps none)."""
        return list(self._pending)

    def bind(self, encoding: WindowEncoding) -> None:
        """Encode under `encoding` from now on: rows kept as records are encoded, columns of
        the same encoding are kept, columns of another one are dropped (logged)."""
        if self.encoding is not None and self.encoding.fingerprint == encoding.fingerprint:
            self.encoding = encoding
            return
        store = self._store
        if store is not None and (
            self.fingerprint != encoding.fingerprint or store.widths != self._widths(encoding)
        ):
            if len(store):
                log.info(
                    "the monitor window's %d rows were encoded for another model or config: "
                    "the window starts afresh",
                    len(store),
                )
            store = None
        if store is None:
            store = _Store(self.size, self._widths(encoding))
            self._labels = LabelCodes(encoding.classes)
        elif self._labels is None:
            self._labels = LabelCodes(encoding.classes)
        self._store, self.encoding, self.fingerprint = store, encoding, encoding.fingerprint
        pending = list(self._pending)
        self._pending.clear()
        self.extend(pending)

    @staticmethod
    def _widths(encoding: WindowEncoding) -> dict[str, int]:
        return {
            "features": encoding.features,
            "classes": len(encoding.classes),
            "marks": len(MARK_KINDS),
        }

    def extend(self, records: Sequence[dict[str, Any]]) -> None:
        """Add prediction records (oldest first); a bound window encodes them now."""
        records = records[-self.size :]
        if self.encoding is None:
            self._pending.extend(records)
            if self._store is not None and len(self._pending) >= self.size:
                self._store = None  # every stored row is older than the window
            return
        if records:
            assert self._store is not None and self._labels is not None
            self._store.append(self.encoding.encode(records, self._labels))

    def extend_rows(self, rows: CompactRows) -> None:
        """`extend` with served predictions kept as compact rows (oldest first)."""
        rows = rows.tail(self.size)
        if self.encoding is None or not len(rows):
            self.extend(rows.records())
            return
        assert self._store is not None and self._labels is not None
        self._store.append(self.encoding.encode_rows(rows, self._labels))

    def clear(self) -> None:
        self._pending.clear()
        if self._store is not None:
            self._store.drop_oldest(len(self._store))

    def forget_before(self, cutoff: float) -> int:
        """Drop rows whose ts is older than `cutoff` (Unix seconds); return how many."""
        dropped = 0
        store = self._store
        if store is not None and len(store):
            ts = store.view("ts")
            below = ts < cutoff
            old = len(ts) if below.all() else int(np.argmin(below))  # the first row kept
            store.drop_oldest(old)
            dropped += old
            if old < len(ts):
                return dropped
        rows = self._pending
        while rows and rows[0]["ts"] < cutoff:
            rows.popleft()
            dropped += 1
        return dropped

    def data(self, names: Sequence[str] = (), classes: Sequence[str] | None = None) -> WindowData:
        """The window's columns. Bound: views of the stored arrays (`names` and `classes` are
        the encoding's); unbound: one pass over the records, `names` the feature columns,
        `classes` the order of the probability columns (None: no `proba`)."""
        if self.encoding is None:
            return _from_records(list(self._pending), names, classes)
        store, labels = self._store, self._labels
        assert store is not None and labels is not None
        codes = store.view("predicted")
        confidence = store.view("confidence")
        marks = store.view("marks")
        outputs = self.encoding.outputs
        (out_name,) = outputs.categorical
        out_codes = outputs._codes[out_name]
        unseen = len(out_codes)
        to_output = np.array([out_codes.get(label, unseen) for label in labels.labels], float)
        encoded_outputs = np.empty((len(codes), 2))
        encoded_outputs[:, 0] = np.where(np.isnan(confidence), MISSING_NUMBER, confidence)
        encoded_outputs[:, 1] = to_output[codes]
        return WindowData(
            inputs=[],
            names=tuple(self.encoding.inputs.names_),
            predicted=np.array(labels.labels, dtype=str)[codes],
            confidence=confidence,
            abstained=store.view("abstained"),
            marks={kind: marks[:, j] for j, kind in enumerate(MARK_KINDS)},
            proba=store.view("proba"),
            encoded=store.view("x"),
            outputs=encoded_outputs,
        )

    def to_state(self) -> dict[str, Any] | list[dict[str, Any]]:
        """JSON-ready state. A window without columns is its list of records (the format of
        earlier checkpoints); else `fingerprint`, `rows`, `widths`, `labels` (answers that are
        not classes, by code), `columns` (each column's values as base64 of its little-endian
        bytes, rows oldest first, see `COLUMNS`) and `pending` (records not yet encoded)."""
        store = self._store
        if store is None or not len(store):
            return list(self._pending)
        return {
            "fingerprint": self.fingerprint,
            "rows": len(store),
            "widths": store.widths,
            "labels": self._labels.labels if self._labels is not None else [],
            "columns": {
                name: base64.b64encode(
                    np.ascontiguousarray(store.view(name), dtype=dtype).tobytes()
                ).decode()
                for name, (dtype, _) in COLUMNS.items()
            },
            "pending": list(self._pending),
        }

    @classmethod
    def from_state(cls, raw: Any, size: int, min_rows: int) -> PredictionWindow:
        """The inverse of `to_state` (the last `size` rows); raises ValueError/TypeError/
        KeyError on a malformed state. Records (the earlier format) are kept to be encoded when
        the window is bound."""
        if isinstance(raw, list):
            if not all(isinstance(r, dict) for r in raw):
                raise TypeError("window is not a list of records")
            return cls(size, min_rows, raw)
        if not isinstance(raw, dict):
            raise TypeError("window is neither records nor columns")
        window = cls.from_state(raw["pending"], size, min_rows)
        rows = int(raw["rows"])
        widths = {str(k): int(v) for k, v in dict(raw["widths"]).items()}
        if set(widths) != {"features", "classes", "marks"} or widths["marks"] != len(MARK_KINDS):
            raise ValueError("window widths are not features, classes and marks")
        columns = {}
        for name, (dtype, width) in COLUMNS.items():
            shape = (rows,) if width is None else (rows, widths[width])
            data = base64.b64decode(raw["columns"][name], validate=True)
            values = np.frombuffer(data, np.dtype(dtype))
            if values.size != int(np.prod(shape)):
                raise ValueError(f"window column {name} holds {values.size} values, not {shape}")
            columns[name] = values.reshape(shape)
        labels = [str(label) for label in raw["labels"]]
        codes = columns["predicted"]
        if rows and (codes.min() < 0 or codes.max() >= len(labels)):
            raise ValueError("window column predicted holds codes without a label")
        store = _Store(size, widths)
        store.append(columns)
        window._store = store
        window.fingerprint = str(raw["fingerprint"])
        window._labels = LabelCodes(labels[: widths["classes"]], labels[widths["classes"] :])
        return window


def _from_records(
    rows: list[dict[str, Any]], names: Sequence[str], classes: Sequence[str] | None
) -> WindowData:
    """`PredictionWindow.data` of records (an unbound window), in one pass over them."""
    n = len(rows)
    probabilities = [r["probabilities"] for r in rows]
    proba = None
    complete = False  # every row holds every class
    if classes is not None:
        pick = operator.itemgetter(*classes)
        try:
            picked = list(map(pick, probabilities))
            complete = True
        except KeyError:
            picked = [[p.get(c, 0.0) for c in classes] for p in probabilities]
        proba = np.array(picked, float).reshape(n, len(classes))
        sizes = np.fromiter(map(len, probabilities), int, n)
        complete = complete and bool(n) and bool((sizes == len(classes)).all())
    if proba is not None and complete:
        confidence = proba.max(axis=1)  # each row holds exactly the classes
    else:
        confidence = np.fromiter((max(p.values(), default=np.nan) for p in probabilities), float, n)
    marks = [r["marks"] for r in rows]
    return WindowData(
        inputs=[r["features"] for r in rows],
        names=tuple(names),
        predicted=np.asarray([r["predicted"] for r in rows], dtype=object),
        confidence=confidence,
        abstained=np.fromiter(map(bool, map(operator.itemgetter("abstained"), rows)), bool, n),
        marks={kind: _flags(marks, kind) for kind in MARK_KINDS},
        proba=proba,
    )


def _flags(marks: list[dict[str, Any]], kind: str) -> np.ndarray:
    """Whether each row's marks carry `kind` (one C-level pass)."""
    return np.fromiter(map(bool, map(operator.methodcaller("get", kind), marks)), bool, len(marks))


class FeedbackJoin:
    """Joins feedback to predictions by id; see the module docstring.

    `ids` holds (id, ts) of the remembered predictions, oldest first; `pending` maps each id to
    its (probabilities, prediction ts) until it is labelled (then None). `matched` counts
    remembered predictions that received feedback, `coverage` is their share. `labelled` holds
    (probabilities, true label, feedback ts, prediction ts) of the last labelled rows: the
    prediction ts says which served rows the live metrics judge (labels arrive late, so the
    live evidence is about older traffic than the window's); NaN when a checkpoint of an older
    version did not keep it.
    """

    def __init__(self, capacity: int, label_capacity: int) -> None:
        self.capacity = capacity
        self.ids: deque[tuple[str, float]] = deque()
        self.pending: dict[str, tuple[dict[str, float], float] | None] = {}
        self.matched = 0
        self.labelled: deque[tuple[dict[str, float], str, float, float]] = deque(
            maxlen=label_capacity
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def coverage(self) -> float | None:
        """Share of remembered predictions with feedback; None before any prediction."""
        return self.matched / len(self.ids) if self.ids else None

    def add_predictions(self, records: Sequence[dict[str, Any]]) -> None:
        ids, pending = self.ids, self.pending
        for record in records[-self.capacity :]:
            ident = record["id"]
            if ident in pending:  # a repeated id: keep the first prediction
                continue
            ts = float(record["ts"])
            ids.append((ident, ts))
            pending[ident] = (record["probabilities"], ts)
        self._trim()

    def add_rows(self, rows: CompactRows) -> None:
        """`add_predictions` of served predictions kept as compact rows."""
        ids, pending = self.ids, self.pending
        rows = rows.tail(self.capacity)
        classes = rows.shape.classes
        idents = list(map(operator.itemgetter(1), rows.lines))
        cut = operator.itemgetter(slice(6, 6 + len(classes)))
        probabilities = map(dict, map(zip, itertools.repeat(classes), map(cut, rows.lines)))
        times = list(map(float, rows.ts))
        if len(set(idents)) == len(idents) and pending.keys().isdisjoint(idents):
            ids.extend(zip(idents, times, strict=True))  # no repeated id: at once
            pending.update(zip(idents, zip(probabilities, times, strict=True), strict=True))
        else:
            for ident, ts, p in zip(idents, times, probabilities, strict=True):
                if ident in pending:  # a repeated id: keep the first prediction
                    continue
                ids.append((ident, ts))
                pending[ident] = (p, ts)
        self._trim()

    def _trim(self) -> None:
        """Forget the oldest predictions beyond `capacity` (one loop, no call per row)."""
        excess = len(self.ids) - self.capacity
        if excess <= 0:
            return
        popleft, pop = self.ids.popleft, self.pending.pop
        labelled = 0
        for _ in range(excess):
            ident, _ts = popleft()
            if pop(ident, 0) is None:
                labelled += 1
        self.matched -= labelled

    def _forget_oldest(self) -> None:
        ident, _ = self.ids.popleft()
        if self.pending.pop(ident, 0) is None:
            self.matched -= 1

    def add_feedback(self, records: Iterable[dict[str, Any]]) -> tuple[int, int]:
        """Label the predictions the records refer to; return (unmatched, duplicates): feedback
        naming no remembered prediction, and feedback for a prediction already labelled."""
        unmatched = duplicates = 0
        pending = self.pending
        for record in records:
            ident = record["id"]
            if ident not in pending:  # unknown or forgotten
                unmatched += 1
                continue
            served = pending[ident]
            if served is None:  # already labelled: the first label stays
                duplicates += 1
                continue
            pending[ident] = None
            self.matched += 1
            self.labelled.append((served[0], record["label"], float(record["ts"]), served[1]))
        return unmatched, duplicates

    def forget_before(self, cutoff: float) -> int:
        """Drop remembered predictions and labelled rows older than `cutoff` (Unix seconds; the
        ts of the prediction, of the feedback for labelled rows); return how many remembered
        predictions were dropped."""
        dropped = 0
        while self.ids and self.ids[0][1] < cutoff:
            self._forget_oldest()
            dropped += 1
        while self.labelled and self.labelled[0][2] < cutoff:
            self.labelled.popleft()
        return dropped

    def clear(self) -> None:
        self.ids.clear()
        self.pending.clear()
        self.labelled.clear()
        self.matched = 0

    def labelled_arrays(self, classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """True labels and probabilities (columns in `classes` order) of the labelled rows."""
        rows = list(self.labelled)
        probabilities = list(map(operator.itemgetter(0), rows))
        try:
            picked = list(map(operator.itemgetter(*classes), probabilities))
        except KeyError:  # a row without every class: 0 for the missing ones
            picked = [[p.get(c, 0.0) for c in classes] for p in probabilities]
        proba = np.array(picked, dtype=float)
        labels = np.asarray(list(map(operator.itemgetter(1), rows)), dtype=object)
        return labels, proba.reshape(len(rows), len(classes))

    def served_times(self) -> np.ndarray:
        """When each labelled row's prediction was served (Unix seconds, in `labelled_arrays`
        order; NaN where an older checkpoint did not keep it)."""
        return np.fromiter(map(operator.itemgetter(3), self.labelled), float, len(self.labelled))

    def label_shift(self, min_labels: int) -> float | None:
        """Total variation distance between the label mix of the labelled rows and the mix
        their predictions expected (mean probability per class; the probabilities are
        calibrated, so honest labels match it up to noise). In [0, 1]; None under `min_labels`
        labelled rows. Labels outside the predicted classes count in full."""
        rows = list(self.labelled)
        if len(rows) < max(min_labels, 1):
            return None
        expected: dict[str, float] = {}
        observed: dict[str, float] = {}
        for probabilities, label, *_ in rows:
            for cls, p in probabilities.items():
                expected[cls] = expected.get(cls, 0.0) + p
            observed[label] = observed.get(label, 0.0) + 1.0
        n = len(rows)
        classes = expected.keys() | observed.keys()
        gap = sum(abs(expected.get(c, 0.0) - observed.get(c, 0.0)) for c in classes)
        return 0.5 * gap / n

    def to_state(self) -> dict[str, Any]:
        """JSON-ready state (lists and dicts of str and numbers; tuples are written as arrays,
        so the rows are passed as they are: copying 100,000 pairs into lists was the largest
        part of a checkpoint, which the sidecar writes every few seconds)."""
        return {
            "ids": list(self.ids),
            "pending": self.pending,
            "matched": self.matched,
            "labelled": list(self.labelled),
        }

    @classmethod
    def from_state(cls, raw: dict[str, Any], capacity: int, label_capacity: int) -> FeedbackJoin:
        """The inverse of `to_state`; raises ValueError/TypeError/KeyError on a malformed state."""
        join = cls(capacity, label_capacity)
        join.ids = deque((str(i), float(ts)) for i, ts in raw["ids"])
        pending = raw["pending"]
        if not isinstance(pending, dict):
            raise TypeError("join.pending is not a mapping")
        served = dict(join.ids)
        join.pending = {str(k): _pending(v, served.get(str(k))) for k, v in pending.items()}
        join.matched = int(raw["matched"])
        join.labelled = deque(map(_labelled, raw["labelled"]), maxlen=label_capacity)
        join.add_predictions([])  # apply a smaller capacity than the saved one
        return join


def _pending(raw: Any, ts: float | None) -> tuple[dict[str, float], float] | None:
    """A checkpointed `pending` value: None, [probabilities, ts], or (written before the
    prediction ts was kept) the probabilities alone, whose ts comes from `ids`."""
    if raw is None:
        return None
    if isinstance(raw, list | tuple) and len(raw) == 2:
        return _probabilities(raw[0]) or {}, float(raw[1])
    return _probabilities(raw) or {}, float("nan") if ts is None else ts


def _labelled(raw: Any) -> tuple[dict[str, float], str, float, float]:
    """A checkpointed labelled row: [probabilities, label, feedback ts, prediction ts], or
    (written before the prediction ts was kept) the first three, the prediction ts unknown."""
    probabilities, label, ts, *served = raw
    if len(served) > 1:
        raise ValueError(f"a labelled row has {len(raw)} fields, not 3 or 4")
    return (
        _probabilities(probabilities) or {},
        str(label),
        float(ts),
        float(served[0]) if served else float("nan"),
    )


def _probabilities(raw: Any) -> dict[str, float] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TypeError("probabilities are not a mapping")
    return {str(k): float(v) for k, v in raw.items()}
