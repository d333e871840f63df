"""The prediction-log record: one strict JSON line per record, read back unchanged."""

from __future__ import annotations

import json

import pytest

from occam.records import (
    FeedbackRecord,
    MalformedRecord,
    PredictionRecord,
    dumps,
    loads,
    segment_key,
    segment_name,
)


def test_round_trip_and_one_line() -> None:
    record = PredictionRecord(
        id="a1", ts=1.5, model_version="v1", features={"temp": 81.2, "origin": "JFK"},
        label="late", predicted="late", probabilities={"late": 0.6, "on_time": 0.4},
        abstained=False, marks={"unseen_category": [], "out_of_range": ["temp"], "missing": []},
    )  # fmt: skip
    line = dumps(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert loads(line) == record
    assert loads(dumps(FeedbackRecord(id="a1", ts=2.0, label="late"))).kind == "feedback"


def test_non_finite_numbers_become_null_so_lines_stay_strict_json() -> None:
    record = FeedbackRecord(id="x", ts=float("nan"), label="late")
    line = dumps(record)
    json.loads(line, parse_constant=lambda name: pytest.fail(f"non-strict JSON {name}"))
    with pytest.raises(MalformedRecord, match="ts is not a number"):
        loads(line)


@pytest.mark.parametrize(
    "line", [b"{not json", b"[1, 2]", b'{"kind": "other"}', b'{"kind": "feedback", "id": "x"}']
)
def test_malformed_lines_are_named(line: bytes) -> None:
    with pytest.raises(MalformedRecord):
        loads(line)


def test_segment_names_round_trip() -> None:
    assert segment_key(segment_name(2, 4321, 7)) == (2, 4321, 7)
    assert segment_key("occam-w2-p4321-000007.jsonl.tmp") is None


def test_the_fast_constructor_builds_the_constructors_record_and_keeps_it_frozen() -> None:
    import dataclasses

    fields = {
        "id": "0" * 32,
        "ts": 1_790_000_000.25,
        "model_version": "occam-flights:abc",
        "features": {"distance": 2475, "carrier": "VX"},
        "label": "late",
        "predicted": "on_time",
        "probabilities": {"late": 0.4, "on_time": 0.6},
        "abstained": True,
        "marks": {"missing": [], "unseen_category": ["carrier"], "out_of_range": []},
    }
    fast, slow = PredictionRecord.of(**fields), PredictionRecord(**fields)
    assert fast == slow and fast.__dict__ == slow.__dict__
    assert dumps(fast) == dumps(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.label = "x"  # type: ignore[misc]
