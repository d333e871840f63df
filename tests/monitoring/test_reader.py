"""The log reader: offsets, partial lines, malformed lines, rotation, byte budget."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from monitoring.reader import SegmentMark, read_new, segment_files
from occam.records import dumps, segment_name
from tests.monitoring.logs import append, feedback, prediction, rejected


def test_reads_each_record_once_across_calls(tmp_path: Path) -> None:
    append(tmp_path, [prediction("a"), feedback("a", "yes"), rejected()])
    first = read_new(tmp_path, {})
    assert (len(first.predictions), len(first.feedback), len(first.rejected)) == (1, 1, 1)
    assert first.predictions[0]["id"] == "a" and first.malformed == 0
    again = read_new(tmp_path, first.segments)
    assert again.records == 0 and again.segments == first.segments
    append(tmp_path, [prediction("b")])
    second = read_new(tmp_path, first.segments)
    assert [r["id"] for r in second.predictions] == ["b"]


def test_partial_last_line_waits_until_completed(tmp_path: Path) -> None:
    line = dumps(prediction("a"))
    path = append(tmp_path, [prediction("z"), line[:40]])
    batch = read_new(tmp_path, {})
    assert [r["id"] for r in batch.predictions] == ["z"] and batch.malformed == 0
    assert batch.segments[path.name].offset == len(dumps(prediction("z")))
    assert batch.unread_bytes == 40 and not batch.more
    assert read_new(tmp_path, batch.segments).records == 0  # still partial: still unread
    append(tmp_path, [line[40:]])
    done = read_new(tmp_path, batch.segments)
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
    second = read_new(tmp_path, first.segments)
    assert {r["id"] for r in second.predictions} == {"w0-b", "w1-b"}
    assert segment_name(0, 10, 1) in second.segments


def test_other_files_and_deleted_segments(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a segment\n")
    (tmp_path / ".occam-monitor").mkdir()
    old = append(tmp_path, [prediction("a")], segment=0)
    batch = read_new(tmp_path, {})
    assert [name for name, _, _ in segment_files(tmp_path)] == [old.name]
    old.unlink()  # an old segment removed once read
    gone = read_new(tmp_path, batch.segments)
    assert gone.segments == {} and gone.events == {"deleted": 1} and gone.lost_bytes == 0
    assert read_new(tmp_path / "missing", {}).records == 0


def test_byte_budget_reads_a_backlog_in_steps(tmp_path: Path) -> None:
    records = [prediction(f"r{i:03d}") for i in range(100)]
    append(tmp_path, records)
    line = len(dumps(records[0]))
    marks: dict[str, SegmentMark] = {}
    seen: list[str] = []
    steps = 0
    while True:
        batch = read_new(tmp_path, marks, max_bytes=10 * line + 5)
        seen += [r["id"] for r in batch.predictions]
        marks = batch.segments
        steps += 1
        if not batch.more:
            break
    assert seen == [f"r{i:03d}" for i in range(100)] and steps == 10


def test_a_segment_cut_below_its_offset_is_never_read_twice(tmp_path: Path) -> None:
    path = append(tmp_path, [prediction(f"r{i}") for i in range(10)])
    first = read_new(tmp_path, {})
    assert len(first.predictions) == 10
    with open(path, "r+b") as handle:  # someone cuts the file to its first 3 lines and a half
        handle.truncate(3 * len(dumps(prediction("r0"))) + 20)
    cut = read_new(tmp_path, first.segments)
    assert cut.records == 0 and cut.events == {"truncated": 1} and cut.lost_bytes == 0
    append(tmp_path, [prediction("new")])  # the writer goes on appending: read, once
    after = read_new(tmp_path, cut.segments)
    assert [r["id"] for r in after.predictions] == ["new"] and after.malformed == 0
    assert not after.events


def test_unread_bytes_that_disappear_are_counted_lost(tmp_path: Path) -> None:
    line = dumps(prediction("a"))
    path = append(tmp_path, [prediction("a"), line[:30]])  # a partial line, seen, unread
    other = append(tmp_path, [prediction("b")], segment=1)
    first = read_new(tmp_path, {})
    append(tmp_path, [line[30:]], segment=0)
    path.write_bytes(b"")  # cut to nothing below the read point: 30 seen bytes never read
    other.unlink()
    batch = read_new(tmp_path, first.segments)
    assert batch.events == {"truncated": 1, "deleted": 1} and batch.lost_bytes == 30


def test_a_segment_deleted_before_it_was_read_is_counted(tmp_path: Path) -> None:
    path = append(tmp_path, [prediction("a")])
    seen = read_new(tmp_path, {}, max_bytes=0)  # looked at, not read (a byte budget of 0)
    assert seen.more and seen.segments[path.name].offset == 0
    path.unlink()
    batch = read_new(tmp_path, seen.segments)
    assert batch.events == {"deleted_unread": 1}
    assert batch.lost_bytes == len(dumps(prediction("a")))


def test_a_renamed_segment_carries_on_where_it_was(tmp_path: Path) -> None:
    path = append(tmp_path, [prediction("a"), prediction("b")], segment=0)
    first = read_new(tmp_path, {})
    moved = path.rename(tmp_path / segment_name(0, 1, 7))
    append(tmp_path, [prediction("c")], segment=7)
    batch = read_new(tmp_path, first.segments)
    assert [r["id"] for r in batch.predictions] == ["c"] and batch.events == {"renamed": 1}
    assert moved.name in batch.segments and path.name not in batch.segments


def test_a_replaced_or_rewritten_segment_is_read_as_the_new_file_it_is(tmp_path: Path) -> None:
    path = append(tmp_path, [prediction("a"), prediction("b")])
    first = read_new(tmp_path, {})
    fresh = tmp_path / "fresh.tmp"
    fresh.write_bytes(dumps(prediction("c")))
    os.replace(fresh, path)  # same name, a new file (another inode)
    replaced = read_new(tmp_path, first.segments)
    assert [r["id"] for r in replaced.predictions] == ["c"]
    assert replaced.events == {"replaced": 1, "deleted": 1}
    with open(path, "r+b") as handle:  # same inode, other content, longer than before
        handle.write(dumps(prediction("d")) + dumps(prediction("e")))
    rewritten = read_new(tmp_path, replaced.segments)
    assert [r["id"] for r in rewritten.predictions] == ["d", "e"]
    assert rewritten.events == {"rewritten": 1}


def test_the_byte_budget_spans_files(tmp_path: Path) -> None:
    line = len(dumps(prediction("a")))
    append(tmp_path, [prediction("a"), prediction("b")], worker=0)
    append(tmp_path, [prediction("c"), prediction("d")], worker=1)
    first = read_new(tmp_path, {}, max_bytes=3 * line)
    assert [r["id"] for r in first.predictions] == ["a", "b", "c"] and first.more
    rest = read_new(tmp_path, first.segments, max_bytes=3 * line)
    assert [r["id"] for r in rest.predictions] == ["d"] and not rest.more


def test_a_new_segment_on_a_recycled_inode_is_new_and_the_old_one_deleted(
    tmp_path: Path,
) -> None:
    old = append(tmp_path, [prediction("a")], segment=0)
    marks = read_new(tmp_path, {}).segments
    old.unlink()
    new = append(tmp_path, [prediction("b")], segment=1)
    # the file system gave the new file the deleted one's inode (ext4 and tmpfs do)
    marks = {old.name: replace(marks[old.name], inode=new.stat().st_ino)}
    batch = read_new(tmp_path, marks)
    assert [r["id"] for r in batch.predictions] == ["b"]
    assert batch.events == {"deleted": 1}
