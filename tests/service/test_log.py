"""The prediction log writer: the `occam.records` format, segments, back-pressure, flush."""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from occam.config import ConfigError, ServingConfig
from occam.logread import read_all
from occam.records import (
    FeedbackRecord,
    LogFormat,
    PredictionRecord,
    Record,
    RejectedRecord,
    record_of,
    segment_key,
    segment_name,
)
from service import log as log_module
from service.log import REDACT_KEY_ENV, SegmentWriter

from .conftest import read_log


@pytest.fixture(params=["compact", "json"])
def fmt(request: pytest.FixtureRequest) -> LogFormat:
    """Each segment format (`serving.log_format`)."""
    return request.param  # type: ignore[no-any-return]


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


def test_records_are_written_in_the_documented_format_and_read_back(
    tmp_path: Path, fmt: LogFormat
) -> None:
    writer = SegmentWriter(tmp_path, log_format=fmt, worker=2, pid=1234).start()
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


def test_a_full_segment_is_closed_and_the_next_one_started(tmp_path: Path, fmt: LogFormat) -> None:
    writer = SegmentWriter(tmp_path, log_format=fmt, worker=1, pid=7, segment_bytes=2048).start()
    records = [prediction(i) for i in range(120)]
    writer.submit(records)
    writer.close()
    paths = sorted(tmp_path.iterdir())
    assert len(paths) > 3
    assert [segment_key(path.name) for path in paths] == [(1, 7, i) for i in range(len(paths))]
    assert all(path.stat().st_size <= 2048 for path in paths)
    assert read_log(tmp_path) == records  # in order, none lost, no line split across files


def test_an_existing_segment_is_never_appended_to(tmp_path: Path, fmt: LogFormat) -> None:
    # A restarted worker that got the same pid must not write into the old process's file.
    old = tmp_path / segment_name(1, 99, 0)
    old.write_bytes(b"")
    writer = SegmentWriter(tmp_path, log_format=fmt, worker=1, pid=99).start()
    writer.submit([prediction(1)])
    writer.close()
    assert old.read_bytes() == b""
    assert writer.path == tmp_path / segment_name(1, 99, 1)


def test_a_full_queue_drops_and_counts_instead_of_blocking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: LogFormat
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
    writer = SegmentWriter(
        tmp_path, log_format=fmt, worker=1, capacity=10, on_drop=dropped.append, durability="queue"
    ).start()
    writer.submit([prediction(0)])
    assert entered.wait(10)  # the writer thread is stuck in the disk
    assert writer.submit(prediction(i) for i in range(1, 16)) == 5  # returns at once
    assert writer.dropped == 5 and sum(dropped) == 5
    release.set()
    writer.close()
    assert [r.id for r in read_log(tmp_path)] == [f"{i:032x}" for i in range(11)]  # type: ignore[union-attr]


def test_a_failing_disk_counts_the_records_as_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: LogFormat
) -> None:
    def no_space(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(log_module.os, "write", no_space)
    dropped: list[int] = []
    writer = SegmentWriter(tmp_path, log_format=fmt, worker=1, on_drop=dropped.append).start()
    writer.submit([prediction(0), prediction(1)])
    writer.close()
    assert writer.dropped == 2 and dropped == [2]
    assert writer.written == 0


def test_close_writes_what_is_queued(tmp_path: Path, fmt: LogFormat) -> None:
    writer = SegmentWriter(
        tmp_path, log_format=fmt, worker=1, flush_interval=3600, durability="queue"
    ).start()
    writer.submit([prediction(i) for i in range(5)])
    writer.close()
    assert len(read_log(tmp_path)) == 5


def test_start_fails_when_the_folder_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError):
        SegmentWriter(blocker / "logs", worker=1).start()


def test_write_durability_puts_records_in_the_file_before_submit_returns(
    tmp_path: Path, fmt: LogFormat
) -> None:
    writer = SegmentWriter(tmp_path, log_format=fmt, worker=1, pid=5).start()
    assert writer._thread is None  # no background thread: nothing waits in memory
    writer.submit([prediction(0), prediction(1)])
    assert [r.id for r in read_log(tmp_path)] == [f"{i:032x}" for i in range(2)]  # type: ignore[union-attr]
    fsynced = SegmentWriter(tmp_path, log_format=fmt, worker=2, pid=5, durability="fsync").start()
    fsynced.submit([prediction(2)])
    assert len(read_log(tmp_path)) == 3 and fsynced.written == 1
    writer.close()
    fsynced.close()


def full_disk_after(budget: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """os.write takes `budget` more bytes in all (a short write at the edge), then ENOSPC."""
    real_write = os.write
    left = [budget]

    def write(fd: int, data: Any) -> int:
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        taken = real_write(fd, bytes(data)[: left[0]])
        left[0] -= taken
        return taken

    monkeypatch.setattr(log_module.os, "write", write)


def test_a_disk_full_mid_write_counts_exactly_and_leaves_no_merged_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = len(log_module.dumps(prediction(0)))
    full_disk_after(3 * line + 40, monkeypatch)  # room for 3 lines and part of the 4th
    dropped: list[int] = []
    writer = SegmentWriter(tmp_path, log_format="json", worker=1, on_drop=dropped.append).start()
    assert writer.submit([prediction(i) for i in range(6)]) == 3
    assert writer.written == 3 and dropped == [3]
    assert writer.path is not None and writer.path.stat().st_size == 3 * line  # cut line undone
    monkeypatch.undo()  # space again
    writer.submit([prediction(9)])
    writer.close()
    ids = [r.id for r in read_log(tmp_path)]  # type: ignore[union-attr]
    assert ids == [f"{i:032x}" for i in (0, 1, 2, 9)]


def test_when_the_cut_line_cannot_be_undone_the_next_write_starts_a_fresh_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = len(log_module.dumps(prediction(0)))
    full_disk_after(line + 10, monkeypatch)

    def no_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(log_module.os, "ftruncate", no_truncate)
    writer = SegmentWriter(tmp_path, log_format="json", worker=1).start()
    writer.submit([prediction(0), prediction(1)])
    assert (writer.written, writer.dropped) == (1, 1)
    monkeypatch.undo()
    writer.submit([prediction(2)])
    writer.close()
    assert writer.path is not None
    lines = writer.path.read_bytes().split(b"\n")
    assert len(lines) == 4 and lines[-1] == b""  # a, the fragment on its own line, c
    assert len(lines[1]) == 10 and lines[2] == log_module.dumps(prediction(2))[:-1]


def test_a_deleted_segment_is_left_for_a_new_one(tmp_path: Path, fmt: LogFormat) -> None:
    writer = SegmentWriter(tmp_path, log_format=fmt, worker=1, pid=3).start()
    writer.submit([prediction(0)])
    assert writer.path is not None
    writer.path.unlink()  # retention took it
    writer.submit([prediction(1)])
    writer.close()
    assert writer.path == tmp_path / segment_name(1, 3, 1)
    assert [r.id for r in read_log(tmp_path)] == [f"{1:032x}"]  # type: ignore[union-attr]


def serving(tmp_path: Path, **keys: Any) -> ServingConfig:
    return ServingConfig(log_dir=tmp_path, **keys)


def test_redacted_columns_are_hashed_with_the_key_or_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REDACT_KEY_ENV, "k" * 32)
    config = serving(tmp_path, log_redact=["origin", "temp"])
    writer = SegmentWriter.from_config(config, worker=1, features=["distance", "origin", "temp"])
    writer.start().submit([prediction(0), prediction(1)])
    writer.close()
    logged = read_log(tmp_path)
    features = [r.features for r in logged]  # type: ignore[union-attr]
    expected = "hmac-sha256:" + hmac.new(b"k" * 32, b'"JFK"', hashlib.sha256).hexdigest()
    assert features[0]["origin"] == features[1]["origin"] == expected  # equal stays equal
    assert features[0]["temp"] is None and features[0]["distance"] == 100  # null stays null
    assert b"JFK" not in b"".join(p.read_bytes() for p in tmp_path.iterdir())

    dropped = serving(tmp_path / "d", log_redact=["origin"], log_redact_mode="drop")
    writer = SegmentWriter.from_config(dropped, worker=1).start()
    writer.submit([prediction(0)])
    writer.close()
    assert "origin" not in read_log(tmp_path / "d")[0].features  # type: ignore[union-attr]


def test_redaction_config_errors_name_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REDACT_KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=r"`serving.log_redact` with .* OCCAM_LOG_REDACT_KEY"):
        SegmentWriter.from_config(serving(tmp_path, log_redact=["origin"]), worker=1)
    with pytest.raises(ConfigError, match=r"`serving.log_redact`: \['zip'\] are not features"):
        SegmentWriter.from_config(
            serving(tmp_path, log_redact=["zip"], log_redact_mode="drop"),
            worker=1,
            features=["origin"],
        )
    key_file = tmp_path / "key"
    key_file.write_text("s" * 20 + "\n")
    config = serving(tmp_path, log_redact=["origin"], log_redact_key_file=key_file)
    writer = SegmentWriter.from_config(config, worker=1)
    assert writer.redactor is not None
    assert writer.redactor.hash("JFK").endswith(
        hmac.new(b"s" * 20, b'"JFK"', hashlib.sha256).hexdigest()
    )


def test_the_shared_reader_reads_the_whole_log_in_bounded_batches(
    tmp_path: Path, fmt: LogFormat
) -> None:
    """`occam.logread.read_all` (the reader of `occam retrain` and the monitor) gives every
    record the writer wrote, in order, in batches of at most the byte budget; a line longer
    than the budget is still read, and a partial last line is left alone."""
    writer = SegmentWriter(tmp_path, log_format=fmt, worker=1, pid=5, segment_bytes=4096).start()
    records: list[Record] = [prediction(i) for i in range(60)]
    records.insert(30, FeedbackRecord(id=f"{3:032x}", ts=9.0, label="late"))
    writer.submit(records)
    writer.close()
    last = max(tmp_path.iterdir())
    with open(last, "ab") as handle:
        handle.write(b'{"kind": "feedback", "id": "x", "ts": 1')  # a writer mid-append
    budget = 200  # smaller than a prediction line: never stuck, never skipped
    batches = list(read_all(tmp_path, max_bytes=budget))
    assert len(batches) > 10
    assert all(batch.bytes_read <= 2 * budget for batch in batches)
    read = [record_of(raw) for batch in batches for raw in batch.predictions + batch.feedback]
    assert sorted(read, key=lambda r: r.ts) == sorted(records, key=lambda r: r.ts)
    assert sum(batch.malformed for batch in batches) == 0
    assert [batch.records for batch in read_all(tmp_path / "absent")] == [0]


def compact_sizes(writer: SegmentWriter) -> tuple[int, int]:
    """(header bytes, line bytes) of `writer`'s compact segments for `prediction(0..9)`."""
    line = len(writer._encode(prediction(0)))  # learns the model: the header's length is final
    return writer._header_len(), line


def test_a_disk_full_mid_write_of_a_compact_segment_counts_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped: list[int] = []
    writer = SegmentWriter(tmp_path, worker=1, on_drop=dropped.append).start()
    header, line = compact_sizes(writer)
    full_disk_after(header + 3 * line + 40, monkeypatch)  # the header, 3 lines, part of a 4th
    assert writer.submit([prediction(i) for i in range(6)]) == 3
    assert writer.written == 3 and dropped == [3]
    assert writer.path is not None and writer.path.stat().st_size == header + 3 * line
    monkeypatch.undo()
    writer.submit([prediction(9)])
    writer.close()
    assert [r.id for r in read_log(tmp_path)] == [f"{i:032x}" for i in (0, 1, 2, 9)]  # type: ignore[union-attr]


def test_a_compact_header_cut_by_a_full_disk_is_taken_back_and_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = SegmentWriter(tmp_path, worker=1).start()
    header, _ = compact_sizes(writer)
    full_disk_after(header - 7, monkeypatch)
    assert writer.submit([prediction(0), prediction(1)]) == 2
    assert writer.written == 0 and writer.path is not None and writer.path.stat().st_size == 0
    monkeypatch.undo()
    writer.submit([prediction(5)])
    writer.close()
    batch = read_all(tmp_path).__next__()
    assert [r["id"] for r in batch.predictions] == [f"{5:032x}"]
    assert batch.malformed == 0 and batch.unread_bytes == 0 and len(list(tmp_path.iterdir())) == 1


def test_a_cut_compact_header_that_cannot_be_taken_back_leaves_its_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = SegmentWriter(tmp_path, worker=1, pid=8).start()
    header, _ = compact_sizes(writer)
    full_disk_after(header - 7, monkeypatch)

    def no_truncate(fd: int, length: int) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(log_module.os, "ftruncate", no_truncate)
    assert writer.submit([prediction(0)]) == 1
    monkeypatch.undo()
    writer.submit([prediction(1), prediction(2)])
    writer.close()
    assert writer.path == tmp_path / segment_name(1, 8, 1)  # a fresh segment, header first
    batch = read_all(tmp_path).__next__()
    assert [r["id"] for r in batch.predictions] == [f"{i:032x}" for i in (1, 2)]
    assert batch.malformed == 0 and batch.unread_bytes == header - 7  # the cut header, unread
    assert (writer.written, writer.dropped) == (2, 1)
