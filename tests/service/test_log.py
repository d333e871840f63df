"""The prediction log writer: the `occam.records` format, segments, back-pressure, flush."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from occam.records import (
    FeedbackRecord,
    PredictionRecord,
    Record,
    RejectedRecord,
    segment_key,
    segment_name,
)
from service import log as log_module
from service.log import SegmentWriter

from .conftest import read_log


def prediction(i: int) -> PredictionRecord:
    return PredictionRecord(
        id=f"{i:032x}",
        ts=1700000000.0 + i,
        model_version="v1",
        features={"distance": 100 + i, "origin": "JFK", "temp": None},
        label="late",
        predicted="late",
        probabilities={"late": 0.75, "on_time": 0.25},
        abstained=False,
        marks={"unseen_category": [], "out_of_range": [], "missing": ["temp"]},
    )


def test_records_are_written_in_the_documented_format_and_read_back(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, worker=2, pid=1234).start()
    records: list[Record] = [
        prediction(0),
        FeedbackRecord(id=f"{0:032x}", ts=1.5, label="on_time"),
        RejectedRecord(ts=2.0, model_version="v1", reason="wrong_type", field="distance"),
    ]
    assert writer.submit(records) == 0
    writer.close()
    names = [path.name for path in tmp_path.iterdir()]
    assert names == [segment_name(2, 1234, 0)] == ["occam-w2-p1234-000000.jsonl"]
    assert segment_key(names[0]) == (2, 1234, 0)
    assert read_log(tmp_path) == records
    assert writer.written == 3 and writer.dropped == 0
    assert (tmp_path / names[0]).read_bytes().endswith(b"\n")


def test_a_full_segment_is_closed_and_the_next_one_started(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, worker=1, pid=7, segment_bytes=2048).start()
    records = [prediction(i) for i in range(40)]
    writer.submit(records)
    writer.close()
    paths = sorted(tmp_path.iterdir())
    assert len(paths) > 3
    assert [segment_key(path.name) for path in paths] == [(1, 7, i) for i in range(len(paths))]
    assert all(path.stat().st_size <= 2048 for path in paths)
    assert read_log(tmp_path) == records  # in order, none lost, no line split across files


def test_an_existing_segment_is_never_appended_to(tmp_path: Path) -> None:
    # A restarted worker that got the same pid must not write into the old process's file.
    old = tmp_path / segment_name(1, 99, 0)
    old.write_bytes(b"")
    writer = SegmentWriter(tmp_path, worker=1, pid=99).start()
    writer.submit([prediction(1)])
    writer.close()
    assert old.read_bytes() == b""
    assert writer.path == tmp_path / segment_name(1, 99, 1)


def test_a_full_queue_drops_and_counts_instead_of_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A disk that hangs: the first write blocks until released.
    entered, release = threading.Event(), threading.Event()
    real_write = os.write

    def slow_write(fd: int, data: Any) -> int:
        entered.set()
        release.wait(10)
        return real_write(fd, data)

    monkeypatch.setattr(log_module.os, "write", slow_write)
    dropped: list[int] = []
    writer = SegmentWriter(tmp_path, worker=1, capacity=10, on_drop=dropped.append).start()
    writer.submit([prediction(0)])
    assert entered.wait(10)  # the writer thread is stuck in the disk
    assert writer.submit(prediction(i) for i in range(1, 16)) == 5  # returns at once
    assert writer.dropped == 5 and sum(dropped) == 5
    release.set()
    writer.close()
    assert [r.id for r in read_log(tmp_path)] == [f"{i:032x}" for i in range(11)]  # type: ignore[union-attr]


def test_a_failing_disk_counts_the_records_as_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_space(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(log_module.os, "write", no_space)
    dropped: list[int] = []
    writer = SegmentWriter(tmp_path, worker=1, on_drop=dropped.append).start()
    writer.submit([prediction(0), prediction(1)])
    writer.close()
    assert writer.dropped == 2 and dropped == [2]
    assert writer.written == 0


def test_close_writes_what_is_queued(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, worker=1, flush_interval=3600).start()
    writer.submit([prediction(i) for i in range(5)])
    writer.close()
    assert len(read_log(tmp_path)) == 5


def test_start_fails_when_the_folder_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError):
        SegmentWriter(blocker / "logs", worker=1).start()
