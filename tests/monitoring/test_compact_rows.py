"""Served compact predictions read as rows (`read_new(columnar=True)`, `occam.records.CompactRows`)
give the monitor exactly what the record dicts give: the same records, windows and join."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitoring.reader import Batch, SegmentMark, read_new
from monitoring.reference import Reference
from monitoring.state import MonitorState
from monitoring.windows import FeedbackJoin, PredictionWindow
from occam.config import MonitoringConfig
from occam.records import (
    CompactDecoder,
    CompactRows,
    ModelShape,
    PredictionRecord,
    Record,
    SegmentHeader,
)
from service.log import SegmentWriter
from tests.monitoring import synthetic
from tests.monitoring.logs import feedback, prediction, rejected

CONFIG = MonitoringConfig(window_rows=200, min_window_rows=50, live_min_labels=100)
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def ref() -> Reference:
    return synthetic.reference(CONFIG)


def varied(n: int, start: int = 0, worker: int = 0) -> list[PredictionRecord]:
    """Served rows of one model shape with what a live log holds: missing, non-numeric and
    unseen values, abstentions, answers that are not classes, marks."""
    rng = np.random.default_rng(start + 1000 * worker)
    out = []
    for i in range(start, start + n):
        p = round(float(rng.uniform(0.05, 0.95)), 4)
        features: dict[str, Any] = {"x": float(rng.normal()), "c": str(rng.choice(["a", "b"]))}
        kind = i % 6
        if kind == 1:
            features["x"] = None
        elif kind == 2:
            features["x"] = "not a number"
        elif kind == 3:
            features["c"] = "never seen"
        elif kind == 4:
            features["c"] = None
        marks = {
            "unseen_category": ["c"] if kind == 3 else [],
            "out_of_range": ["x"] if kind == 5 else [],
            "missing": ["c"] if kind == 4 else [],
        }
        record = prediction(
            f"w{worker}-{i}",
            features=features,
            proba={"no": round(1 - p, 4), "yes": p},
            ts=T0 + i + worker * 0.5,
            marks=marks,
            abstained=i % 5 == 0,
        )
        if i % 11 == 0:
            record = PredictionRecord(**{**record.__dict__, "predicted": "maybe"})
        out.append(record)
    return out


def write(folder: Path, worker: int, records: list[Record]) -> None:
    writer = SegmentWriter(folder, worker=worker, pid=100 + worker)
    writer.start()
    assert writer.submit(records) == 0
    writer.close()


def read_both(folder: Path, max_bytes: int) -> list[tuple[Batch, Batch]]:
    """The log read step by step with and without rows, batch by batch."""
    plain: dict[str, SegmentMark] = {}
    rowed: dict[str, SegmentMark] = {}
    pairs = []
    while True:
        a = read_new(folder, plain, max_bytes)
        b = read_new(folder, rowed, max_bytes, columnar=True)
        pairs.append((a, b))
        plain, rowed = a.segments, b.segments
        if not a.more:
            assert not b.more
            return pairs


@pytest.mark.parametrize(("max_bytes", "some_rows"), [(700, True), (5_000, True), (1 << 30, False)])
def test_rows_are_the_same_records_as_the_dicts(
    tmp_path: Path, max_bytes: int, some_rows: bool
) -> None:
    """Small batches of one shape keep rows; a batch with json lines, another model version
    or shadow rows gives dicts only (whole log at once); both give the same records."""
    plain_rows: list[Record] = [*varied(40), feedback("w0-3", "yes"), rejected()]
    write(tmp_path, 0, plain_rows + varied(30, start=40))
    other_version = [prediction(f"v2-{i}", version="v2", ts=T0 + 100 + i) for i in range(5)]
    misfit = prediction("odd", features={"x": 1.0})  # not the model's features: a json line
    shadow = PredictionRecord(**{**varied(1, start=3)[0].__dict__, "shadow": True})
    write(tmp_path, 1, [*varied(20, worker=1), misfit, *other_version, shadow, *varied(5, 90, 1)])
    with (tmp_path / "occam-w1-p101-000000.jsonl").open("ab") as f:
        f.write(b'[1,"broken"]\n')  # a bad line: counted once either way
    pairs = read_both(tmp_path, max_bytes)
    kept = 0
    for a, b in pairs:
        kept += len(b.rows) if b.rows is not None else 0
        assert b.records == a.records
        assert b.prediction_records() == a.predictions
        assert (b.shadow, b.feedback, b.rejected) == (a.shadow, a.feedback, a.rejected)
        assert (b.malformed, b.segments, b.unread_bytes) == (
            a.malformed,
            a.segments,
            a.unread_bytes,
        )
        assert b.rows is None
    assert sum(a.malformed for a, _ in pairs) == 1
    assert (kept > 0) == some_rows


def test_a_batch_of_one_model_shape_keeps_rows(tmp_path: Path) -> None:
    write(tmp_path, 0, [*varied(50), feedback("w0-1", "no")])
    write(tmp_path, 1, varied(50, worker=1))
    batch = read_new(tmp_path, {}, columnar=True)
    assert batch.rows is not None and len(batch.rows) == 100 and not batch.predictions
    assert len(batch.feedback) == 1


def columns(window: PredictionWindow) -> dict[str, Any]:
    data = window.data()
    return {
        "encoded": data.encoded,
        "outputs": data.outputs,
        "proba": data.proba,
        "confidence": data.confidence,
        "predicted": data.predicted.astype(str),
        "abstained": data.abstained,
        **{f"mark_{k}": v for k, v in data.marks.items()},
    }


def test_state_from_rows_equals_state_from_records(tmp_path: Path, ref: Reference) -> None:
    """Two writers (rows put back in time order), a window smaller than the batch, a join
    smaller than it, and a repeated id: columns, join and counters are the same."""
    write(tmp_path, 0, [*varied(150), feedback("w0-7", "yes"), feedback("w0-7", "no")])
    write(tmp_path, 1, [*varied(150, worker=1), *varied(2, start=10, worker=1)])
    states = []
    for columnar in (False, True):
        state = MonitorState.new(120, 50, 90, 40)
        state.adopt_model("v1")
        state.window.bind(ref.encoding)
        marks: dict[str, SegmentMark] = {}
        kept = 0
        while True:
            batch = read_new(tmp_path, marks, 9_000, columnar=columnar)
            kept += len(batch.rows) if batch.rows is not None else 0
            state.apply(batch)
            marks = batch.segments
            if not batch.more:
                break
        assert (kept > 0) == columnar
        states.append(state)
    plain, rowed = states
    got, want = columns(rowed.window), columns(plain.window)
    for name in want:
        assert np.array_equal(got[name], want[name], equal_nan=name != "predicted"), name
    assert rowed.join.to_state() == plain.join.to_state()
    assert rowed.to_dict()["records"] == plain.to_dict()["records"]
    assert (rowed.rows_total, rowed.last_record_ts, rowed.confirmed) == (
        plain.rows_total,
        plain.last_record_ts,
        plain.confirmed,
    )


def test_join_from_rows_keeps_the_first_of_repeated_ids(tmp_path: Path) -> None:
    write(tmp_path, 0, [*varied(5), *varied(3)])  # ids w0-0..2 twice
    batch = read_new(tmp_path, {}, columnar=True)
    assert batch.rows is not None
    join = FeedbackJoin(capacity=4, label_capacity=10)
    join.add_rows(batch.rows)
    records = batch.rows.records()
    want = FeedbackJoin(capacity=4, label_capacity=10)
    want.add_predictions(records)
    assert join.to_state() == want.to_state()


SHAPE = ModelShape("v1", ("no", "yes"), ("x", "c"))
HEADER = SegmentHeader("0" * 16, 1_700_000_000, 1, 0, (SHAPE,))
GOOD = [1, "a", 5, 0, 1, 0, 0.25, 0.75, 1.5, "u"]


@pytest.mark.parametrize(
    "odd",
    [
        GOOD,
        [5, "b", 6, 0, [1, "unsure"], [[1], [0], []], 0.5, 0.5, None, "v"],  # abstained, marks
        [1, "b", 6, 0, ["maybe", 0], [[True], [], []], 0.5, 0.5, 1, "v"],  # a bool index
        [1, "b", 6, 0, 0, [[1], [], {}], 0.5, 0.5, 1, "v"],  # a mapping read as no index
        [1, "b", 6, 0, 0, [[], [], []], 0.5, 0.5, 1, "v"],  # bad: marks without an index
        [1, "b", 6, 0, 0, [[-1], [], []], 0.5, 0.5, 1, "v"],  # bad: negative index
        [1, "b", 6, 0, 0, [[2], [], []], 0.5, 0.5, 1, "v"],  # bad: no such feature
        [1, "b", 6, 0, 0, 3, 0.5, 0.5, 1, "v"],  # bad: marks not 0
        [1, "b", 6, 0, [0.5, 1], 0, 0.5, 0.5, 1, "v"],  # bad: answer
        [1, "b", 6, 0, 7, 0, 0.5, 0.5, 1, "v"],  # bad: no such class
        [1, "b", 6.5, 0, 0, 0, 0.5, 0.5, 1, "v"],  # bad: time not whole
        [1, 7, 6, 0, 0, 0, 0.5, 0.5, 1, "v"],  # bad: id
        [1, "b", 6, 1, 0, 0, 0.5, 0.5, 1, "v"],  # bad: no such model
        [1, "b", 6, 0, 0, 0, 0.5, 0.5, 1],  # bad: width
        [True, "b", 6, 0, 0, 0, 0.5, 0.5, 1, "v"],  # bad: code
        [9, "b", 6, 0, 0, 0, 0.5, 0.5, 1, "v"],  # a shadow row
        [2, "a", 7, "no"],  # feedback
    ],
)
def test_rows_taken_at_once_are_what_decode_all_gives(odd: list[Any]) -> None:
    """`take_rows` (the fast path) either takes a chunk exactly as `decode_all` reads it, or
    declines it; `decode_all` with a rows sink gives the same records too."""
    decoder = CompactDecoder(HEADER)
    chunk = [GOOD, odd, [1, "c", 9, 0, [0, 1], [[1], [], [0]], 0.9, 0.1, 2.5, "w"]]
    want: tuple[list[dict[str, Any]], ...] = ([], [], [], [])
    want_bad = decoder.decode_all(chunk, *want)
    fast = CompactRows(HEADER.models[0], 0)
    others = decoder.take_rows(chunk, fast)
    if others is not None:
        got: tuple[list[dict[str, Any]], ...] = ([], [], [], [])
        assert decoder.decode_all(others, *got) == want_bad
        assert (fast.records(), *got[1:]) == want
    else:
        assert len(fast) == 0
    sink = CompactRows(HEADER.models[0], 0)
    got = ([], [], [], [])
    assert decoder.decode_all(chunk, *got, rows=sink) == want_bad
    assert (sink.records() + got[0], *got[1:]) == want
