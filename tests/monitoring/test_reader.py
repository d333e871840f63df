"""The log reader: offsets, partial lines, malformed lines, rotation, byte budget."""

from __future__ import annotations

from pathlib import Path

from monitoring.reader import read_new, segment_files
from occam.records import dumps, segment_name
from tests.monitoring.logs import append, feedback, prediction, rejected


def test_reads_each_record_once_across_calls(tmp_path: Path) -> None:
    append(tmp_path, [prediction("a"), feedback("a", "yes"), rejected()])
    first = read_new(tmp_path, {})
    assert (len(first.predictions), len(first.feedback), len(first.rejected)) == (1, 1, 1)
    assert first.predictions[0]["id"] == "a" and first.malformed == 0
    again = read_new(tmp_path, first.offsets)
    assert again.records == 0 and again.offsets == first.offsets
    append(tmp_path, [prediction("b")])
    second = read_new(tmp_path, first.offsets)
    assert [r["id"] for r in second.predictions] == ["b"]


def test_partial_last_line_waits_until_completed(tmp_path: Path) -> None:
    line = dumps(prediction("a"))
    path = append(tmp_path, [prediction("z"), line[:40]])
    batch = read_new(tmp_path, {})
    assert [r["id"] for r in batch.predictions] == ["z"] and batch.malformed == 0
    assert batch.offsets[path.name] == len(dumps(prediction("z")))
    assert batch.unread_bytes == 40 and not batch.more
    assert read_new(tmp_path, batch.offsets).records == 0  # still partial: still unread
    append(tmp_path, [line[40:]])
    done = read_new(tmp_path, batch.offsets)
    assert [r["id"] for r in done.predictions] == ["a"] and done.unread_bytes == 0


def test_malformed_lines_are_counted_and_skipped(tmp_path: Path) -> None:
    bad = [
        b"not json\n",
        b"[1, 2]\n",
        b'{"kind": "nonsense", "ts": 1}\n',
        b'{"kind": "feedback", "id": "a"}\n',  # no ts, no label
        b'{"kind": "prediction", "id": "a", "ts": "yesterday"}\n',
        b"\x00\x00\x00\n",
        b"\n",
        b'{"kind": "feedback", "id": 7, "ts": 1, "label": "yes"}\n',
    ]
    append(tmp_path, [prediction("a"), *bad, feedback("a", "yes")])
    batch = read_new(tmp_path, {})
    assert batch.malformed == len(bad)
    assert len(batch.predictions) == 1 and len(batch.feedback) == 1


def test_unknown_extra_fields_are_ignored(tmp_path: Path) -> None:
    line = dumps(feedback("a", "yes")).replace(b'"kind"', b'"source":"app","kind"')
    append(tmp_path, [line])
    batch = read_new(tmp_path, {})
    assert batch.malformed == 0 and batch.feedback[0]["source"] == "app"


def test_rotation_and_several_workers(tmp_path: Path) -> None:
    append(tmp_path, [prediction("w0-a")], worker=0, pid=10, segment=0)
    append(tmp_path, [prediction("w1-a")], worker=1, pid=11, segment=0)
    first = read_new(tmp_path, {})
    assert {r["id"] for r in first.predictions} == {"w0-a", "w1-a"}
    # worker 0 rotates: its old segment is complete, the new one starts from byte 0
    append(tmp_path, [prediction("w0-b")], worker=0, pid=10, segment=1)
    append(tmp_path, [prediction("w1-b")], worker=1, pid=11, segment=0)
    second = read_new(tmp_path, first.offsets)
    assert {r["id"] for r in second.predictions} == {"w0-b", "w1-b"}
    assert segment_name(0, 10, 1) in second.offsets


def test_other_files_and_deleted_segments(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a segment\n")
    (tmp_path / ".occam-monitor").mkdir()
    old = append(tmp_path, [prediction("a")], segment=0)
    batch = read_new(tmp_path, {})
    assert [name for name, _ in segment_files(tmp_path)] == [old.name]
    old.unlink()  # an old segment removed once read
    assert read_new(tmp_path, batch.offsets).offsets == {}
    assert read_new(tmp_path / "missing", {}).records == 0


def test_byte_budget_reads_a_backlog_in_steps(tmp_path: Path) -> None:
    records = [prediction(f"r{i:03d}") for i in range(100)]
    append(tmp_path, records)
    line = len(dumps(records[0]))
    offsets: dict[str, int] = {}
    seen: list[str] = []
    steps = 0
    while True:
        batch = read_new(tmp_path, offsets, max_bytes=10 * line + 5)
        seen += [r["id"] for r in batch.predictions]
        offsets = batch.offsets
        steps += 1
        if not batch.more:
            break
    assert seen == [f"r{i:03d}" for i in range(100)] and steps == 10


def test_a_segment_smaller_than_its_offset_is_a_new_file(tmp_path: Path) -> None:
    path = append(tmp_path, [prediction("a"), prediction("b")])
    offsets = read_new(tmp_path, {}).offsets
    path.unlink()
    append(tmp_path, [prediction("c")])  # same name, new file (segments are never rewritten)
    assert [r["id"] for r in read_new(tmp_path, offsets).predictions] == ["c"]
