"""The window as columns built at ingest: the same values as reading the records at check time,
across batches that wrap its buffer, in its checkpoint, and refused for another encoding."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitoring.check import run_check
from monitoring.reader import read_new
from monitoring.reference import Reference
from monitoring.state import FORMAT_NAME, CheckpointError, MonitorState
from monitoring.windows import PredictionWindow, WindowEncoding
from occam.config import MonitoringConfig
from tests.monitoring import synthetic
from tests.monitoring.logs import append, prediction

CONFIG = MonitoringConfig(window_rows=200, min_window_rows=50, live_min_labels=100)


@pytest.fixture(scope="module")
def ref() -> Reference:
    return synthetic.reference(CONFIG)


def odd_records(n: int, start: int = 0) -> list[dict[str, Any]]:
    """Records with what a live log holds besides plain rows: missing and non-numeric numbers,
    unseen and missing categories, a lacking feature, a class missing from the probabilities,
    an answer that is not a class, abstentions and marks."""
    rng = np.random.default_rng(start)
    out = []
    for i in range(start, start + n):
        p = float(rng.uniform(0.05, 0.95))
        features: dict[str, Any] = {"x": float(rng.normal()), "c": str(rng.choice(["a", "b"]))}
        proba = {"no": 1 - p, "yes": p}
        kind = i % 7
        if kind == 1:
            features["x"] = None
        elif kind == 2:
            features["x"] = "not a number"
        elif kind == 3:
            features["c"] = "never seen"
        elif kind == 4:
            features["c"] = None
        elif kind == 5:
            del features["x"]
        elif kind == 6:
            proba = {"yes": p}  # a class the model holds is absent
        record = asdict(
            prediction(
                f"r{i}",
                features=features,
                proba=proba,
                ts=1000.0 + i,
                abstained=i % 5 == 0,
                marks={"unseen_category": ["c"] if kind == 3 else [], "missing": [], "x": []},
            )
        )
        if i % 11 == 0:
            record["predicted"] = "maybe"  # not one of the classes
        out.append(record)
    return out


def expected(ref: Reference, records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The columns as the check read them from the records before the window kept columns."""
    data = PredictionWindow(len(records), 1, records).data(ref.schema.names, ref.classes)
    assert data.proba is not None
    return {
        "encoded": ref.inputs.encode_records(data.inputs),
        "outputs": ref.outputs.encode_columns(
            [data.confidence, data.predicted.astype(str).tolist()]
        ),
        "proba": data.proba,
        "confidence": data.confidence,
        "predicted": data.predicted.astype(str),
        "abstained": data.abstained,
        **{f"mark_{k}": v for k, v in data.marks.items()},
    }


def columns(window: PredictionWindow) -> dict[str, np.ndarray]:
    data = window.data()
    return {
        "encoded": data.encoded,  # type: ignore[dict-item]
        "outputs": data.outputs,  # type: ignore[dict-item]
        "proba": data.proba,  # type: ignore[dict-item]
        "confidence": data.confidence,
        "predicted": data.predicted.astype(str),
        "abstained": data.abstained,
        **{f"mark_{k}": v for k, v in data.marks.items()},
    }


def assert_same(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys()
    for name in want:
        assert np.array_equal(got[name], want[name], equal_nan=name != "predicted"), name


def test_columns_built_at_ingest_equal_the_records_read_at_check_time(ref: Reference) -> None:
    records = odd_records(60)
    window = PredictionWindow(size=25, min_rows=5)
    window.bind(ref.encoding)
    for start, stop in [(0, 3), (3, 20), (20, 21), (21, 50), (50, 60)]:  # wraps its buffer
        window.extend(records[start:stop])
        assert len(window) == min(stop, 25)
        assert_same(columns(window), expected(ref, records[max(0, stop - 25) : stop]))
    window.extend(records * 2)  # a batch larger than the window: its last rows
    assert_same(columns(window), expected(ref, records[-25:]))


def test_binding_encodes_the_records_kept_before(ref: Reference) -> None:
    records = odd_records(30)
    window = PredictionWindow(size=20, min_rows=5)
    window.extend(records[:12])
    window.bind(ref.encoding)
    window.extend(records[12:])
    assert window.rows == []  # kept as columns, not records
    assert_same(columns(window), expected(ref, records[10:]))


def test_a_bound_window_forgets_rows_by_age(ref: Reference) -> None:
    window = PredictionWindow(size=50, min_rows=5)
    window.bind(ref.encoding)
    records = odd_records(40)
    window.extend(records)
    assert window.forget_before(1000.0 + 15) == 15
    assert_same(columns(window), expected(ref, records[15:]))
    assert window.forget_before(0.0) == 0
    assert window.forget_before(1e12) == 25 and len(window) == 0


def test_the_check_of_a_bound_window_equals_the_check_of_its_records(ref: Reference) -> None:
    records = odd_records(150)
    results = []
    for bound in (False, True):
        state = MonitorState.new(CONFIG.window_rows, CONFIG.min_window_rows, 10_000, 1000)
        if bound:
            state.window.bind(ref.encoding)
        state.window.extend(records)
        state.rows_total = len(records)
        results.append(run_check(state, ref, CONFIG, 2000.0))
    unbound, bound_result = results
    assert bound_result.drift == unbound.drift and bound_result.output_drift == unbound.output_drift
    assert bound_result.quality == unbound.quality
    assert bound_result.estimate == unbound.estimate and bound_result.runs == unbound.runs


def checkpoint(tmp_path: Path, ref: Reference, n: int = 30) -> tuple[Path, MonitorState]:
    logs, path = tmp_path / "logs", tmp_path / "state" / "monitor-checkpoint.json"
    append(logs, [prediction(f"p{i}", ts=1000.0 + i) for i in range(n)])
    state = MonitorState.new(20, 5, 100, 10)
    state.window.bind(ref.encoding)
    state.apply(read_new(logs, state.segments))
    state.save(path)
    return path, state


def test_the_checkpoint_keeps_the_columns(tmp_path: Path, ref: Reference) -> None:
    path, state = checkpoint(tmp_path, ref)
    raw = json.loads(path.read_bytes().split(b"\n", 1)[1])
    assert raw["window"]["fingerprint"] == ref.encoding.fingerprint
    assert set(raw["window"]["columns"]) == {
        "x", "proba", "predicted", "confidence", "abstained", "marks", "ts"
    }  # fmt: skip
    loaded = MonitorState.load(path, 20, 5, 100, 10)
    assert loaded.to_dict() == state.to_dict() and len(loaded.window) == 20
    loaded.window.bind(ref.encoding)
    assert_same(columns(loaded.window), columns(state.window))
    smaller = MonitorState.load(path, 8, 5, 100, 10)  # a smaller configured window: its last rows
    smaller.window.bind(ref.encoding)
    kept, full = smaller.window.data().encoded, state.window.data().encoded
    assert kept is not None and full is not None and np.array_equal(kept, full[-8:])


def test_columns_of_another_encoding_start_the_window_afresh(
    tmp_path: Path, ref: Reference, caplog: pytest.LogCaptureFixture
) -> None:
    path, _ = checkpoint(tmp_path, ref)
    loaded = MonitorState.load(path, 20, 5, 100, 10)
    other = WindowEncoding(ref.inputs, ref.outputs, ("yes", "no"))  # another class order
    assert other.fingerprint != ref.encoding.fingerprint
    with caplog.at_level(logging.INFO, logger="monitoring.windows"):
        loaded.window.bind(other)
    assert len(loaded.window) == 0 and "starts afresh" in caplog.text
    assert loaded.records["prediction"] == 30  # the counters stay exact
    loaded.window.extend(odd_records(3))
    assert len(loaded.window) == 3


def write(path: Path, payload: dict[str, Any], version: int) -> None:
    body = json.dumps(payload).encode()
    header = {
        "format": FORMAT_NAME,
        "version": version,
        "sha256": hashlib.sha256(body).hexdigest(),
        "length": len(body),
    }
    path.write_bytes(json.dumps(header).encode() + b"\n" + body)


def test_a_checkpoint_of_the_previous_format_is_converted(tmp_path: Path, ref: Reference) -> None:
    path, state = checkpoint(tmp_path, ref)
    payload = state.to_dict()
    records = odd_records(20)
    payload["window"] = records  # format 2 held the window's records
    write(path, payload, version=2)
    loaded = MonitorState.load(path, 20, 5, 100, 10)
    assert loaded.records == state.records and len(loaded.window) == 20
    loaded.window.bind(ref.encoding)
    assert_same(columns(loaded.window), expected(ref, records))


def test_a_checkpoint_with_cut_columns_is_refused(tmp_path: Path, ref: Reference) -> None:
    path, state = checkpoint(tmp_path, ref)
    payload = state.to_dict()
    payload["window"]["columns"]["x"] = payload["window"]["columns"]["x"][:-12]  # re-summed
    write(path, payload, version=3)
    with pytest.raises(CheckpointError, match="not a usable Occam checkpoint"):
        MonitorState.load(path, 20, 5, 100, 10)
    payload = state.to_dict()
    payload["window"]["columns"]["predicted"] = payload["window"]["columns"]["ts"]
    write(path, payload, version=3)
    with pytest.raises(CheckpointError, match="not a usable Occam checkpoint"):
        MonitorState.load(path, 20, 5, 100, 10)


def test_rows_read_before_the_model_is_known_join_the_restored_columns(
    tmp_path: Path, ref: Reference
) -> None:
    path, _ = checkpoint(tmp_path, ref)  # p0..p29, the window keeps p10..p29
    loaded = MonitorState.load(path, 20, 5, 100, 10)
    later = odd_records(5, start=100)
    loaded.window.extend(later)  # read while no bundle could be loaded: kept as records
    assert len(loaded.window) == 20 and loaded.window.rows == later
    loaded.window.bind(ref.encoding)
    logged = [asdict(prediction(f"p{i}", ts=1000.0 + i)) for i in range(15, 30)]
    assert_same(columns(loaded.window), expected(ref, logged + later))
