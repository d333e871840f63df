"""The compact prediction log (`serving.log_format: compact`): every record kind through the real
writer and the shared reader, a folder of both formats, bad lines, segment identity, size."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from occam import logread
from occam.config import ConfigError, load_config
from occam.logread import SegmentMark, read_all, read_new
from occam.records import (
    HEADER_PREFIX,
    PROBABILITY_DIGITS,
    CompactDecoder,
    CompactEncoder,
    FeedbackRecord,
    LogFormat,
    PredictionRecord,
    Record,
    RejectedRecord,
    dumps,
    record_of,
    segment_name,
    segment_records,
)
from service.log import SegmentWriter
from tests.conftest import small_config, write_config

NOW = 1_764_700_000.0
MARKS: dict[str, list[str]] = {"unseen_category": [], "out_of_range": [], "missing": []}


def prediction(i: int, version: str = "v1", **fields: object) -> PredictionRecord:
    base: dict[str, object] = {
        "id": f"{i:032x}",
        "ts": NOW + i * 0.25,
        "model_version": version,
        "features": {"distance": 100 + i, "origin": "JFK", "temp": 20.5, "note": None},
        "label": "late",
        "predicted": "late",
        "probabilities": {"late": 0.625, "on_time": 0.375},
        "abstained": False,
        "marks": MARKS,
    }
    return PredictionRecord(**{**base, **fields})  # type: ignore[arg-type]


def every_kind() -> list[Record]:
    """One of each kind and variant: marks, an abstention with its own label, a label that is
    not a class, a shadow row of another version, feedback, rejections, a row whose features
    are not the model's (a ``json`` line in a compact segment), a non-finite time."""
    return [
        prediction(0),
        prediction(
            1,
            marks={
                "unseen_category": ["origin"],
                "out_of_range": ["temp", "distance"],
                "missing": ["note"],
            },
        ),
        prediction(2, label="unsure", abstained=True),
        prediction(3, label="on_time", predicted="late"),
        prediction(4, version="v2", shadow=True, probabilities={"late": 0.1, "on_time": 0.9}),
        FeedbackRecord(id=f"{0:032x}", ts=NOW + 60, label="on_time"),
        RejectedRecord(ts=NOW + 61, model_version="v1", reason="wrong_type", field="distance"),
        RejectedRecord(ts=NOW + 62, model_version="v1", reason="too_many_rows", field=None),
        prediction(5, features={"distance": 1, "origin": "LGA"}),  # a feature left out
        prediction(6, probabilities={"late": 0.5, "maybe": 0.5}),  # other classes
        prediction(7),
    ]


def read_records(folder: Path, max_bytes: int = 1 << 30) -> tuple[list[Record], int]:
    """Every record the shared reader gives (shadow rows included) and the malformed count."""
    records: list[Record] = []
    malformed = 0
    for batch in read_all(folder, max_bytes=max_bytes):
        raws = batch.predictions + batch.shadow + batch.feedback + batch.rejected
        records += [record_of(raw) for raw in raws]
        malformed += batch.malformed
    return records, malformed


def by_time(records: Sequence[Record]) -> list[Record]:
    return sorted(records, key=lambda r: (r.ts, r.kind, getattr(r, "shadow", False)))


@pytest.mark.parametrize("fmt", ["compact", "json"])
@pytest.mark.parametrize("durability", ["write", "fsync", "queue"])
def test_every_record_kind_round_trips_through_writer_and_reader(
    tmp_path: Path, fmt: LogFormat, durability: str
) -> None:
    writer = SegmentWriter(tmp_path, worker=1, log_format=fmt, durability=durability)  # type: ignore[arg-type]
    records = every_kind()
    writer.start()
    assert writer.submit(records[:4]) == 0
    assert writer.submit(records[4:]) == 0
    writer.close()
    assert writer.written == len(records) and writer.dropped == 0
    read, malformed = read_records(tmp_path)
    assert malformed == 0
    assert by_time(read) == by_time(records)  # exact: times in ms, probabilities of 4 decimals
    files = sorted(tmp_path.iterdir())
    assert by_time([r for f in files for r in segment_records(f.read_bytes())]) == by_time(records)
    if fmt == "compact":
        # v2 arrived after v1's segment was begun: a new segment whose header lists both
        # (with 'queue', both requests may be encoded before the first write: one segment)
        assert len(files) == (2 if durability != "queue" else len(files))
        assert all(f.read_bytes().startswith(HEADER_PREFIX) for f in files)
        header = json.loads(files[-1].read_bytes().split(b"\n")[0])
        assert [m[0] for m in header["models"]] == ["v1", "v2"]
        lines = [line for f in files for line in f.read_bytes().splitlines()[1:]]
        assert sum(line.startswith(b"{") for line in lines) == 2  # the two misfits
    else:
        assert len(files) == 1 and not files[0].read_bytes().startswith(HEADER_PREFIX)


def test_a_compact_prediction_line_is_at_most_150_bytes() -> None:
    """A flights row as a client sends it, a uuid4 id, a time a day after the writer started,
    probabilities with full float precision: 538+ bytes as a JSON object, <= 150 compact."""
    features = {"sched_hour": 6, "distance": 1389, "temp": 39.92, "dewp": 24.98, "humid": 54.81,
                "wind_dir": 260.0, "wind_speed": 16.11, "precip": 0.0, "pressure": 1011.7,
                "visib": 10.0, "carrier": "AA", "origin": "LGA", "dest": "DFW",
                "day_of_week": "Tue"}  # fmt: skip
    record = prediction(
        0,
        id=uuid.uuid4().hex,
        ts=NOW + 86_399.123,
        model_version="occam-flights:gb3jmqxolcirkax4",
        features=features,
        probabilities={"late": 0.41359492925396424, "on_time": 0.5864050707460358},
    )
    encoder = CompactEncoder(int(NOW))
    line = encoder.encode(record)
    assert len(dumps(record)) > 500 and len(line) <= 150, line
    assert line.startswith(b"[1,") and line.endswith(b"]\n")


def test_probabilities_are_kept_to_the_documented_decimals(tmp_path: Path) -> None:
    exact = {"late": 0.41359492925396424, "on_time": 0.5864050707460358}
    writer = SegmentWriter(tmp_path, worker=1).start()
    writer.submit([prediction(0, probabilities=exact)])
    writer.close()
    (read,), _ = read_records(tmp_path)
    logged = read.probabilities  # type: ignore[union-attr]
    assert logged == {"late": 0.4136, "on_time": 0.5864}
    assert all(abs(logged[c] - exact[c]) <= 0.5 * 10**-PROBABILITY_DIGITS for c in exact)


def test_a_folder_of_both_formats_is_read_whole_and_step_by_step(tmp_path: Path) -> None:
    """Old ``json`` segments stay readable beside compact ones; a compact segment read from
    the middle (another call, a small byte budget) is decoded with its header."""
    old = SegmentWriter(tmp_path, worker=1, pid=10, log_format="json").start()
    new = SegmentWriter(tmp_path, worker=1, pid=11, segment_bytes=1024).start()
    first: list[Record] = [prediction(i) for i in range(20)]
    old.submit(first[:10])
    new.submit(first[10:])
    marks: dict[str, SegmentMark] = {}
    read: list[Record] = []
    later: list[Record] = [prediction(i) for i in range(20, 40)]
    later.append(FeedbackRecord("a", NOW + 99, "late"))
    for step in range(200):
        batch = read_new(tmp_path, marks, max_bytes=700)  # > a json line
        assert batch.malformed == 0
        read += [record_of(r) for r in batch.predictions + batch.feedback]
        marks = batch.segments
        if step == 3:  # more records while the reader is part-way through
            new.submit(later)
            new.close()
            old.close()
        if step > 3 and not batch.more and batch.unread_bytes == 0:
            break
    assert by_time(read) == by_time(first + later)
    assert len([n for n in marks if "-p11-" in n]) > 2  # compact segments rotated


@pytest.mark.parametrize("chunk", [1_000_000, 300])
def test_bad_lines_in_a_compact_segment_are_counted_once_and_spare_their_neighbours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(logread, "PARSE_CHUNK_BYTES", chunk)  # one parse, or several
    writer = SegmentWriter(tmp_path, worker=1, pid=3).start()
    writer.submit([prediction(i) for i in range(3)])
    assert writer.path is not None
    with open(writer.path, "ab") as handle:
        handle.write(b'[1,"cut short",12\n')  # a compact line cut by a crash, then ended
        handle.write(b"{broken\n")
        handle.write(b"[1,2]\n")  # valid JSON, not a record
        handle.write(b'[1,"x",1,-1,0,0,0.5,0.5,1,"JFK",2.0,null]\n')  # a model index < 0
        handle.write(b'[1,"x",1,7,0,0,0.5,0.5,1,"JFK",2.0,null]\n')  # a model it lacks
    writer.submit([prediction(i) for i in range(3, 6)])
    writer.close()
    batch = read_new(tmp_path, {})
    assert batch.malformed == 5
    assert [r["id"] for r in batch.predictions] == [f"{i:032x}" for i in range(6)]


def test_each_compact_segment_has_its_own_first_line_so_a_replaced_one_is_read_anew(
    tmp_path: Path,
) -> None:
    """Two writers with the same model write headers that differ (their random segment id),
    so the reader's identity (inode and first line) tells a replaced segment from the old one
    even when the new file has the old one's name and starts with the same tables."""
    one = SegmentWriter(tmp_path, worker=1, pid=5).start()
    one.submit([prediction(i) for i in range(3)])
    one.close()
    path = tmp_path / segment_name(1, 5, 0)
    first = read_new(tmp_path, {})
    assert len(first.predictions) == 3
    head = path.read_bytes().split(b"\n")[0]
    path.unlink()
    two = SegmentWriter(tmp_path, worker=1, pid=5).start()  # a restarted worker, same pid
    two.submit([prediction(i) for i in range(10, 15)])
    two.close()
    assert two.path == path and path.read_bytes().split(b"\n")[0] != head
    again = read_new(tmp_path, first.segments)
    assert [r["id"] for r in again.predictions] == [f"{i:032x}" for i in range(10, 15)]
    assert again.malformed == 0 and set(again.events) <= {"replaced", "rewritten"}
    assert sum(again.events.values()) == 1


def test_the_format_key_is_checked_by_name(tmp_path: Path) -> None:
    raw = small_config(tmp_path)
    raw["serving"]["log_format"] = "xml"
    with pytest.raises(ConfigError, match=r"`serving.log_format`: .*'compact' or 'json'"):
        load_config(write_config(tmp_path, raw))
    raw["serving"]["log_format"] = "json"
    assert load_config(write_config(tmp_path, raw)).serving.log_format == "json"
    del raw["serving"]["log_format"]
    assert load_config(write_config(tmp_path, raw)).serving.log_format == "compact"


def test_times_are_kept_to_the_millisecond_however_long_the_writer_has_run() -> None:
    encoder = CompactEncoder(int(NOW) - 400 * 86_400)  # a worker up for 400 days
    record = prediction(0, ts=NOW + 0.1234567)
    line = encoder.encode(record)
    header, _ = encoder.header("0" * 16, pid=1, worker=1)
    raw = CompactDecoder(header).decode(json.loads(line))
    assert raw is not None and abs(raw["ts"] - record.ts) <= 0.0005
    assert len(line) < len(dumps(record)) // 3


def test_unread_records_leave_a_compact_header_out(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, worker=1, pid=4).start()
    writer.submit([prediction(i) for i in range(5)])
    writer.close()
    assert writer.path is not None
    assert logread.unread_records(writer.path, 0) == 5
    second = writer.path.read_bytes().index(b"\n", writer.path.read_bytes().index(b"\n") + 1)
    assert logread.unread_records(writer.path, second + 1) == 4  # after the first record
    assert logread.unread_records(tmp_path / "gone.jsonl", 0) == 0


def test_a_segment_from_a_newer_compact_version_is_counted_malformed_not_misread(
    tmp_path: Path,
) -> None:
    writer = SegmentWriter(tmp_path, worker=1, pid=2).start()
    writer.submit([prediction(i) for i in range(3)])
    writer.close()
    assert writer.path is not None
    data = writer.path.read_bytes()
    writer.path.write_bytes(data.replace(b'{"occam_log":1,', b'{"occam_log":2,', 1))
    batch = read_new(tmp_path, {})
    assert batch.records == 0 and batch.malformed == 4  # the header and its 3 lines
