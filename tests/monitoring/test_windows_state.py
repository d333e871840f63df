"""Count-based windows, the feedback join, and the checkpointed state."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from monitoring.reader import read_new
from monitoring.state import CheckpointError, MonitorState
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
    unmatched = join.add_feedback(
        [asdict(feedback("r0", "no")), asdict(feedback("r0", "yes")), asdict(feedback("zz", "no"))]
    )
    assert unmatched == 2 and join.matched == 1 and join.coverage == 0.5
    labels, proba = join.labelled_arrays(["no", "yes"])
    assert labels.tolist() == ["no"] and proba.tolist() == [[0.3, 0.7]]
    join.add_predictions(rows(3, start=2))  # r0 (labelled) and r1 are forgotten
    assert len(join) == 3 and join.matched == 0 and join.coverage == 0.0
    assert join.add_feedback([asdict(feedback("r1", "no"))]) == 1
    assert len(join.labelled) == 1  # the labelled rows stay for the live metric


def test_feedback_join_keeps_the_last_labels() -> None:
    join = FeedbackJoin(capacity=100, label_capacity=4)
    join.add_predictions(rows(10))
    join.add_feedback([asdict(feedback(f"r{i}", "yes")) for i in range(10)])
    labels, proba = join.labelled_arrays(["no", "yes"])
    assert len(labels) == 4 and proba.shape == (4, 2)
    empty = FeedbackJoin(1, 1).labelled_arrays(["no", "yes"])
    assert empty[0].shape == (0,) and empty[1].shape == (0, 2)


def new_state() -> MonitorState:
    return MonitorState.new(window_rows=5, min_window_rows=2, join_rows=100, label_rows=10)


def test_state_counts_feeds_and_survives_a_restart(tmp_path: Path) -> None:
    logs, checkpoint = tmp_path / "logs", tmp_path / "state" / "state.pkl"
    append(logs, [prediction(f"p{i}") for i in range(7)])
    append(logs, [feedback("p6", "no"), rejected(), b"garbage\n"], worker=1)
    state = new_state()
    state.apply(read_new(logs, state.offsets))
    assert state.records == {"prediction": 7, "feedback": 1, "rejected": 1}
    assert state.malformed == 1 and len(state.window) == 5 and state.join.matched == 1
    state.runs.data_drift = 3
    state.save(checkpoint)
    assert [p.name for p in checkpoint.parent.iterdir()] == ["state.pkl"]  # no temp file left

    append(logs, [prediction("p7")])
    restored = MonitorState.load(checkpoint, 5, 2, 100, 10)
    restored.apply(read_new(logs, restored.offsets))
    assert restored.records == {"prediction": 8, "feedback": 1, "rejected": 1}
    assert [r["id"] for r in restored.window.rows] == ["p3", "p4", "p5", "p6", "p7"]
    assert restored.runs.data_drift == 3 and restored.join.matched == 1


def test_a_crash_before_the_checkpoint_rereads_instead_of_double_counting(tmp_path: Path) -> None:
    logs, checkpoint = tmp_path / "logs", tmp_path / "state.pkl"
    append(logs, [prediction("a"), prediction("b")])
    state = new_state()
    state.apply(read_new(logs, state.offsets))
    state.save(checkpoint)
    append(logs, [prediction("c"), feedback("a", "yes")])
    state.apply(read_new(logs, state.offsets))  # applied, then "killed" before saving
    again = MonitorState.load(checkpoint, 5, 2, 100, 10)
    again.apply(read_new(logs, again.offsets))
    assert again.records == state.records == {"prediction": 3, "feedback": 1, "rejected": 0}
    assert again.join.matched == state.join.matched == 1


def test_older_model_rows_stay_out_of_the_window(tmp_path: Path) -> None:
    state = new_state()
    state.adopt_model("v1")
    append(tmp_path, [prediction("a", version="v1")])
    state.apply(read_new(tmp_path, state.offsets))
    assert state.confirmed
    state.adopt_model("v2")
    assert state.skipped_versions == {"v1"} and len(state.window) == 0
    append(tmp_path, [prediction("b", version="v1"), prediction("c", version="v2")])
    state.apply(read_new(tmp_path, state.offsets))
    assert [r["id"] for r in state.window.rows] == ["c"]
    assert state.records["prediction"] == 3 and state.rows_total == 1


def test_time_order_is_restored_across_workers(tmp_path: Path) -> None:
    append(tmp_path, [prediction("late", ts=20.0)], worker=0)
    append(tmp_path, [prediction("early", ts=10.0)], worker=1)
    state = new_state()
    state.apply(read_new(tmp_path, state.offsets))
    assert [r["id"] for r in state.window.rows] == ["early", "late"]
    assert state.last_record_ts == 20.0


def test_an_unreadable_checkpoint_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    path = tmp_path / "state.pkl"
    path.write_bytes(b"\x80\x05garbage")
    with pytest.raises(CheckpointError, match="move it away"):
        MonitorState.load(path, 5, 2, 100, 10)
