"""Count-based windows, the feedback join, and the checkpointed state."""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitoring.reader import read_new
from monitoring.state import FORMAT_NAME, CheckpointError, MonitorState
from monitoring.windows import FeedbackJoin, PredictionWindow
from tests.monitoring.logs import append, feedback, prediction, rejected


def rows(n: int, start: int = 0) -> list[dict]:
    return [asdict(prediction(f"r{i}", features={"x": float(i)})) for i in range(start, start + n)]


def test_window_keeps_the_last_rows_and_needs_its_minimum() -> None:
    window = PredictionWindow(size=5, min_rows=3)
    window.extend(rows(2))
    assert len(window) == 2 and not window.ready
    window.extend(rows(10, start=2))
    assert len(window) == 5 and window.ready
    data = window.data(["x", "absent"])
    assert data.features["x"].tolist() == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert data.features["absent"].isna().all()  # a feature a row lacks is missing
    assert data.confidence.tolist() == [0.7] * 5 and data.predicted.tolist() == ["yes"] * 5


def test_window_marks_and_abstentions() -> None:
    window = PredictionWindow(size=4, min_rows=1)
    marked = prediction("m", marks={"missing": ["x"], "unseen_category": [], "out_of_range": []})
    window.extend([asdict(marked), asdict(prediction("a", abstained=True)), *rows(2)])
    data = window.data(["x"])
    assert data.marks["missing"].tolist() == [True, False, False, False]
    assert data.marks["out_of_range"].sum() == 0
    assert data.abstained.tolist() == [False, True, False, False]


def test_feedback_join_labels_each_prediction_once() -> None:
    join = FeedbackJoin(capacity=3, label_capacity=10)
    join.add_predictions(rows(2))
    assert join.coverage == 0.0
    unmatched, duplicates = join.add_feedback(
        [asdict(feedback("r0", "no")), asdict(feedback("r0", "yes")), asdict(feedback("zz", "no"))]
    )
    assert (unmatched, duplicates) == (1, 1) and join.matched == 1 and join.coverage == 0.5
    labels, proba = join.labelled_arrays(["no", "yes"])
    assert labels.tolist() == ["no"] and proba.tolist() == [[0.3, 0.7]]
    join.add_predictions(rows(3, start=2))  # r0 (labelled) and r1 are forgotten
    assert len(join) == 3 and join.matched == 0 and join.coverage == 0.0
    assert join.add_feedback([asdict(feedback("r1", "no"))]) == (1, 0)
    assert len(join.labelled) == 1  # the labelled rows stay for the live metric


def test_feedback_join_keeps_the_last_labels() -> None:
    join = FeedbackJoin(capacity=100, label_capacity=4)
    join.add_predictions(rows(10))
    join.add_feedback([asdict(feedback(f"r{i}", "yes")) for i in range(10)])
    labels, proba = join.labelled_arrays(["no", "yes"])
    assert len(labels) == 4 and proba.shape == (4, 2)
    empty = FeedbackJoin(1, 1).labelled_arrays(["no", "yes"])
    assert empty[0].shape == (0,) and empty[1].shape == (0, 2)


def test_the_live_labels_say_when_their_predictions_were_served() -> None:
    """Labels come back late: the join keeps when each labelled prediction was served, which
    is the traffic the live metrics judge (`occam_live_labels_served_*_timestamp_seconds`)."""
    join = FeedbackJoin(capacity=100, label_capacity=3)
    join.add_predictions([asdict(prediction(f"r{i}", ts=1_000.0 + i)) for i in range(6)])
    join.add_feedback([asdict(feedback(f"r{i}", "yes", ts=5_000.0 + i)) for i in (4, 0, 2, 5)])
    # the last 3 labels: r0, r2, r5 (feedback order), served at 1000, 1002 and 1005
    assert join.served_times().tolist() == [1_000.0, 1_002.0, 1_005.0]
    again = FeedbackJoin.from_state(json.loads(json.dumps(join.to_state())), 100, 3)
    assert again.served_times().tolist() == [1_000.0, 1_002.0, 1_005.0]
    again.add_feedback([asdict(feedback("r1", "no"))])
    assert again.served_times().tolist() == [1_002.0, 1_005.0, 1_001.0]


def test_a_join_checkpointed_before_served_times_were_kept_still_loads() -> None:
    """The older checkpoint form: pending probabilities alone, labelled rows of 3 fields. A
    pending prediction's time comes from `ids`; an old labelled row's is unknown (NaN), so
    the exported span leaves it out rather than guess."""
    old = {
        "ids": [["r0", 1_000.0], ["r1", 1_001.0]],
        "pending": {"r0": None, "r1": {"no": 0.4, "yes": 0.6}},
        "matched": 1,
        "labelled": [[{"no": 0.3, "yes": 0.7}, "no", 5_000.0]],
    }
    join = FeedbackJoin.from_state(old, 100, 10)
    assert np.isnan(join.served_times()).tolist() == [True]
    join.add_feedback([asdict(feedback("r1", "yes"))])
    assert join.served_times()[1] == 1_001.0
    labels, proba = join.labelled_arrays(["no", "yes"])
    assert labels.tolist() == ["no", "yes"] and proba.tolist() == [[0.3, 0.7], [0.4, 0.6]]
    with pytest.raises(ValueError, match="5 fields"):
        FeedbackJoin.from_state({**old, "labelled": [[{}, "no", 1.0, 2.0, 3.0]]}, 100, 10)


def new_state() -> MonitorState:
    return MonitorState.new(window_rows=5, min_window_rows=2, join_rows=100, label_rows=10)


def test_state_counts_feeds_and_survives_a_restart(tmp_path: Path) -> None:
    logs, checkpoint = tmp_path / "logs", tmp_path / "state" / "monitor-checkpoint.json"
    append(logs, [prediction(f"p{i}") for i in range(7)])
    append(logs, [feedback("p6", "no"), rejected(), b"garbage\n"], worker=1)
    state = new_state()
    state.apply(read_new(logs, state.segments))
    assert state.records == {"prediction": 7, "feedback": 1, "rejected": 1}
    assert state.malformed == 1 and len(state.window) == 5 and state.join.matched == 1
    state.runs.data_drift = 3
    state.save(checkpoint)
    names = [p.name for p in checkpoint.parent.iterdir()]
    assert names == ["monitor-checkpoint.json"]  # no temp file left

    append(logs, [prediction("p7")])
    restored = MonitorState.load(checkpoint, 5, 2, 100, 10)
    restored.apply(read_new(logs, restored.segments))
    assert restored.records == {"prediction": 8, "feedback": 1, "rejected": 1}
    assert [r["id"] for r in restored.window.rows] == ["p3", "p4", "p5", "p6", "p7"]
    assert restored.runs.data_drift == 3 and restored.join.matched == 1


def test_a_crash_before_the_checkpoint_rereads_instead_of_double_counting(tmp_path: Path) -> None:
    logs, checkpoint = tmp_path / "logs", tmp_path / "monitor-checkpoint.json"
    append(logs, [prediction("a"), prediction("b")])
    state = new_state()
    state.apply(read_new(logs, state.segments))
    state.save(checkpoint)
    append(logs, [prediction("c"), feedback("a", "yes")])
    state.apply(read_new(logs, state.segments))  # applied, then "killed" before saving
    again = MonitorState.load(checkpoint, 5, 2, 100, 10)
    again.apply(read_new(logs, again.segments))
    assert again.records == state.records == {"prediction": 3, "feedback": 1, "rejected": 0}
    assert again.join.matched == state.join.matched == 1


def test_older_model_rows_stay_out_of_the_window(tmp_path: Path) -> None:
    state = new_state()
    state.adopt_model("v1")
    append(tmp_path, [prediction("a", version="v1")])
    state.apply(read_new(tmp_path, state.segments))
    assert state.confirmed
    state.adopt_model("v2")
    assert state.skipped_versions == {"v1"} and len(state.window) == 0
    append(tmp_path, [prediction("b", version="v1"), prediction("c", version="v2")])
    state.apply(read_new(tmp_path, state.segments))
    assert [r["id"] for r in state.window.rows] == ["c"]
    assert state.records["prediction"] == 3 and state.rows_total == 1


def test_time_order_is_restored_across_workers(tmp_path: Path) -> None:
    append(tmp_path, [prediction("late", ts=20.0)], worker=0)
    append(tmp_path, [prediction("early", ts=10.0)], worker=1)
    state = new_state()
    state.apply(read_new(tmp_path, state.segments))
    assert [r["id"] for r in state.window.rows] == ["early", "late"]
    assert state.last_record_ts == 20.0


def test_an_unreadable_checkpoint_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    path = tmp_path / "monitor-checkpoint.json"
    path.write_bytes(b"\x80\x05garbage")
    with pytest.raises(CheckpointError, match="Move it away"):
        MonitorState.load(path, 5, 2, 100, 10)


class _Exploit:
    """A pickle that creates a file when unpickled: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_a_crafted_pickle_checkpoint_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "monitor-checkpoint.json"
    path.write_bytes(pickle.dumps({"format": 1, "x": _Exploit(marker)}))
    with pytest.raises(CheckpointError, match="not an Occam monitor checkpoint"):
        MonitorState.load(path, 5, 2, 100, 10)
    assert not marker.exists()


def test_a_tampered_or_cut_checkpoint_is_refused(tmp_path: Path) -> None:
    logs, path = tmp_path / "logs", tmp_path / "monitor-checkpoint.json"
    append(logs, [prediction("a"), feedback("a", "yes")])
    state = new_state()
    state.apply(read_new(logs, state.segments))
    state.save(path)
    good = path.read_bytes()
    header, payload = good.split(b"\n", 1)
    assert json.loads(header)["sha256"] == hashlib.sha256(payload).hexdigest()
    loaded = MonitorState.load(path, 5, 2, 100, 10)
    assert loaded.to_dict() == state.to_dict()  # a JSON round trip keeps everything

    path.write_bytes(good.replace(b'"prediction":1', b'"prediction":0'))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        MonitorState.load(path, 5, 2, 100, 10)
    path.write_bytes(good[:-5])
    with pytest.raises(CheckpointError, match="cut or grown"):
        MonitorState.load(path, 5, 2, 100, 10)
    wrong = json.dumps({**json.loads(header), "version": 1}).encode()
    path.write_bytes(wrong + b"\n" + payload)
    with pytest.raises(CheckpointError, match="format version 1, expected 2"):
        MonitorState.load(path, 5, 2, 100, 10)
    # a payload with the right checksum but the wrong shape (e.g. hand-edited and re-summed)
    bad = b'{"segments": {"x": [1, 2]}}'
    header = json.dumps(
        {
            "format": FORMAT_NAME,
            "version": 2,
            "sha256": hashlib.sha256(bad).hexdigest(),
            "length": len(bad),
        }
    ).encode()
    path.write_bytes(header + b"\n" + bad)
    with pytest.raises(CheckpointError, match="not a usable Occam checkpoint"):
        MonitorState.load(path, 5, 2, 100, 10)


def test_the_first_label_wins_and_duplicates_are_counted(tmp_path: Path) -> None:
    append(tmp_path, [prediction("a"), prediction("b")], worker=0)
    append(tmp_path, [feedback("a", "no", ts=5.0)], worker=1)  # replica 1 answered first
    append(tmp_path, [feedback("a", "yes", ts=6.0), feedback("b", "yes", ts=6.0)], worker=2)
    state = new_state()
    state.apply(read_new(tmp_path, state.segments))
    assert state.feedback_duplicates == 1 and state.feedback_unmatched == 0
    assert [label for _, label, *_ in state.join.labelled] == ["no", "yes"]  # a first, then b
    append(tmp_path, [feedback("b", "no", ts=7.0)], worker=1)
    state.apply(read_new(tmp_path, state.segments))
    assert state.feedback_duplicates == 2 and state.join.matched == 2


def test_label_shift_compares_feedback_with_what_its_predictions_expected() -> None:
    join = FeedbackJoin(capacity=1000, label_capacity=1000)
    join.add_predictions(rows(100))  # every prediction: p(yes) = 0.7
    assert join.label_shift(min_labels=1) is None
    honest = [asdict(feedback(f"r{i}", "yes" if i % 10 < 7 else "no")) for i in range(100)]
    join.add_feedback(honest)
    assert join.label_shift(min_labels=100) == pytest.approx(0.0)
    assert join.label_shift(min_labels=101) is None
    flipped = FeedbackJoin(capacity=1000, label_capacity=1000)
    flipped.add_predictions(rows(100))
    flipped.add_feedback([asdict(feedback(f"r{i}", "no")) for i in range(100)])
    assert flipped.label_shift(min_labels=10) == pytest.approx(0.7)


def test_expire_forgets_old_rows_in_window_and_join() -> None:
    state = new_state()
    old = [asdict(prediction(f"o{i}", ts=100.0)) for i in range(2)]
    new = [asdict(prediction(f"n{i}", ts=200.0)) for i in range(2)]
    state.window.extend(old + new)
    state.join.add_predictions(old + new)
    state.join.add_feedback(
        [asdict(feedback("o0", "yes", ts=100.0)), asdict(feedback("n0", "yes", ts=200.0))]
    )
    state.expire(150.0)
    assert [r["id"] for r in state.window.rows] == ["n0", "n1"]
    assert [i for i, _ in state.join.ids] == ["n0", "n1"] and state.join.matched == 1
    assert len(state.join.labelled) == 1 and state.account.expired_rows == 4
