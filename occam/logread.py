"""Reading the prediction log (`occam.records`): every segment file, by identity and byte offset.

The one stateless log reader: the monitor (`monitoring.sidecar`, with checkpointed marks) and
`occam retrain` (`training.retrain.read_log`, the whole log through `read_all`) both use it.

The reader itself keeps no state: `read_new` takes the `SegmentMark`s reached so far (per file
name: inode, first-bytes checksum, offset, size seen) and returns the new complete records with
the marks after them. The caller applies the records to its state and only then saves state and
marks together (see `monitoring.state`), so a crash between the two re-reads the same lines
instead of losing or double-counting them.

A segment is known by its inode and the checksum of its first line, not only by its name: a
segment cut below the read offset is read on from its new end (never again from the start), a
segment deleted or cut before it was read is counted (`Batch.lost_bytes`, `Batch.events`), a
renamed segment carries on where it was, a replaced one is read as the new file it is.

A line counts once it ends with ``\\n``; a partial last line (a writer mid-write, or one that
died mid-write) is left unread until it is completed. Lines that are not a valid record are
counted as malformed and skipped. Fields beyond the contract's are ignored, so a newer writer
does not blind an older reader.

Parsing uses `pydantic_core.from_json` (Rust, already a dependency through pydantic): about
three times faster than `json.loads` on prediction records. The compact lines of a chunk are
joined into one JSON array and parsed in one call; a chunk that does not parse that way is
parsed line by line, so a bad line is counted once and skipped (see `_parse_chunk`). Compact
lines are turned back into the same record dicts as ``json`` lines by
`occam.records.CompactDecoder`, with the segment's header read from its first line
(`segment_decoder`). The cyclic garbage collector is
paused while a batch is parsed: the parsed records hold no cycles, and collecting while
hundreds of thousands of fresh dicts pile up would halve the rate.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic_core import from_json

from occam.records import (
    HEADER_PREFIX,
    CompactDecoder,
    CompactRows,
    MalformedRecord,
    SegmentHeader,
    segment_key,
)

log = logging.getLogger(__name__)

#: Bytes read per call at most (across files), so a long backlog is taken in steps.
DEFAULT_MAX_BYTES = 16_000_000


@dataclass
class Batch:
    """New records from one `read_new` call, in file order (files sorted by worker, pid, segment).

    `segments` maps every segment file present to its mark after this batch; `unread_bytes` is
    what is left in the files after this batch (partial lines included), `more` whether the byte
    budget stopped the read before the end of some file. `events` counts what happened to
    segments (see `SEGMENT_EVENTS`) and `lost_bytes` the bytes seen in a segment but gone
    before they were read.

    `rows` (only when read with ``columnar=True``): when every served prediction of the batch
    is a compact line of one model shape, they are all here, kept as parsed, and `predictions`
    is empty; otherwise it is None and they are all in `predictions`. `prediction_records()`
    gives the dicts either way.
    """

    predictions: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    #: A shadow challenger's prediction rows (``"shadow": true``): kept out of `predictions`.
    shadow: list[dict[str, Any]] = field(default_factory=list)
    malformed: int = 0
    segments: dict[str, SegmentMark] = field(default_factory=dict)
    bytes_read: int = 0
    unread_bytes: int = 0
    more: bool = False
    events: Counter[str] = field(default_factory=Counter)
    lost_bytes: int = 0
    rows: CompactRows | None = None
    #: Whether served compact predictions may be kept in `rows`.
    columnar: bool = False

    @property
    def records(self) -> int:
        """Valid records in the batch (all kinds)."""
        served = len(self.predictions) + (len(self.rows) if self.rows is not None else 0)
        return served + len(self.feedback) + len(self.rejected)

    def prediction_records(self) -> list[dict[str, Any]]:
        """The served predictions as record dicts, in file order (moves `rows` into
        `predictions`)."""
        self.materialize()
        return self.predictions

    def materialize(self) -> None:
        """Turn `rows` into record dicts at the front of `predictions` (file order kept)."""
        if self.rows is not None:
            self.predictions[:0] = self.rows.records()
            self.rows = None

    def event(self, name: str) -> None:
        self.events[name] += 1

    def lost(self, count: int) -> None:
        self.lost_bytes += max(count, 0)


def _valid(raw: Any) -> str | None:
    """The record's kind when `raw` is a valid record, else None.

    Written for speed (it runs once per log line): fields are looked up directly and a
    missing one surfaces as KeyError.
    """
    if type(raw) is not dict:
        return None
    try:
        kind = raw["kind"]
        ts = raw["ts"]
        if type(ts) is not float and type(ts) is not int:
            return None
        if kind == "prediction":
            valid = (
                type(raw["id"]) is str
                and type(raw["features"]) is dict
                and type(raw["probabilities"]) is dict
                and type(raw["marks"]) is dict
                and type(raw["predicted"]) is str
                and type(raw["model_version"]) is str
                and "label" in raw
                and "abstained" in raw
            )
        elif kind == "feedback":
            valid = type(raw["id"]) is str and type(raw["label"]) is str
        elif kind == "rejected":
            valid = "model_version" in raw and "reason" in raw and "field" in raw
        else:
            return None
    except KeyError:
        return None
    return kind if valid else None


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (see the module docstring). Callers that keep a
    batch around should hold the pause until they have applied and dropped it: the collection
    that was put off runs at the next allocation after the pause and scans what is alive."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_into(data: bytes, batch: Batch, decoder: CompactDecoder | None = None) -> None:
    """Parse complete lines (`data` ends with ``\\n``) and append the records to `batch`.

    `decoder` reads compact lines (the header of the segment `data` comes from; a header line
    inside `data` replaces it), None for a ``json`` segment or one read from its start."""
    with gc_paused():
        _parse_lines(data, batch, decoder)


#: A line that is not JSON (per-line parsing).
_NOT_JSON = object()


#: Bytes of lines parsed with one `from_json` call at most: one bad line sends only its chunk
#: to the line-by-line parse, and the joined copy stays small.
PARSE_CHUNK_BYTES = 1_000_000


def _parse_lines(
    data: bytes, batch: Batch, decoder: CompactDecoder | None
) -> CompactDecoder | None:
    """Parse the lines in chunks of about `PARSE_CHUNK_BYTES`; returns the decoder in force
    after the last one (a header line replaces the one given)."""
    start, size = 0, len(data)
    while start < size:
        end = data.rfind(b"\n", start, start + PARSE_CHUNK_BYTES) + 1
        if end <= start:  # one line longer than a chunk
            end = data.index(b"\n", start) + 1
        decoder = _parse_chunk(data[start:end], batch, decoder)
        start = end
    return decoder


def _parse_chunk(
    data: bytes, batch: Batch, decoder: CompactDecoder | None
) -> CompactDecoder | None:
    """Parse a chunk's lines; returns the decoder in force after the chunk.

    Compact lines are parsed with one `from_json` call (the lines joined into one JSON array;
    strings cached only as object keys, as ids would only churn the cache); a chunk where that
    fails, gives another number of values than lines, or holds any invalid record is parsed
    again line by line, so a bad line is counted and skipped exactly and never takes its
    neighbours with it. ``json`` lines are parsed one by one (measured faster for JSON objects:
    the joined parse gains nothing there and costs a copy)."""
    compact = decoder is not None or data.startswith(HEADER_PREFIX)
    if compact:
        lines = data.count(b"\n")
        try:
            values = from_json(b"[" + data[:-1].replace(b"\n", b",") + b"]", cache_strings="keys")
        except ValueError:
            values = None
        if type(values) is list and len(values) == lines:
            sorted_ = _sort(values, decoder, strict=True, batch=batch)
            if sorted_ is not None:
                return _apply(sorted_, batch)
    cache: Literal["keys", True] = "keys" if compact else True
    parsed: list[Any] = []
    for line in data.split(b"\n")[:-1]:
        try:
            parsed.append(from_json(line, cache_strings=cache))
        except ValueError:
            parsed.append(_NOT_JSON)
    sorted_ = _sort(parsed, decoder, strict=False)
    assert sorted_ is not None
    return _apply(sorted_, batch)


_Sorted = tuple[
    list[dict[str, Any]],
    list[dict[str, Any]],
    list[dict[str, Any]],
    list[dict[str, Any]],
    int,
    "CompactDecoder | None",
    "CompactRows | None",
]


def _apply(sorted_: _Sorted, batch: Batch) -> CompactDecoder | None:
    """Add a chunk's records to `batch`, keeping `Batch.rows`'s rule: served predictions are
    all in `rows` (one model shape) or all in `predictions`, in file order."""
    predictions, feedback, rejected, shadow, malformed, decoder, rows = sorted_
    if rows is not None and len(rows):  # the chunk's served predictions are all `rows`
        kept = batch.rows
        if kept is None and not batch.predictions:
            batch.rows = rows
        elif kept is not None and kept.shape == rows.shape:
            kept.extend(rows)
        else:
            batch.materialize()
            batch.predictions += rows.records()
    elif predictions:
        batch.materialize()
        batch.predictions += predictions
    batch.feedback += feedback
    batch.rejected += rejected
    batch.shadow += shadow
    batch.malformed += malformed
    return decoder


def _sort(
    values: list[Any], decoder: CompactDecoder | None, strict: bool, batch: Batch | None = None
) -> _Sorted | None:
    """The records of parsed lines by kind, the malformed count, the decoder after them and
    the served compact predictions kept as rows (see `Batch.rows`; only for a `batch` read
    ``columnar``, and only when the chunk's served predictions are all such rows); None when
    `strict` and some line is not a valid record or header."""
    predictions: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    shadow: list[dict[str, Any]] = []
    lists = (predictions, shadow, feedback, rejected)
    sinks = {"prediction": predictions, "feedback": feedback, "rejected": rejected}
    malformed = 0
    start = 0
    if values and type(values[0]) is dict and "occam_log" in values[0]:  # a segment's start
        decoder = _header_decoder(values[0])
        malformed += decoder is None
        start = 1
    rest = values[start:] if start else values
    rows = None
    if decoder is not None and set(map(type, rest)) <= {list}:  # a compact chunk
        rows = _rows_sink(rest, decoder, batch) if batch is not None and batch.columnar else None
        others = decoder.take_rows(rest, rows) if rows is not None else None
        if others is not None:  # the served predictions taken as rows at once
            bad = decoder.decode_all(others, *lists)
        else:
            bad = decoder.decode_all(rest, *lists, rows=rows)
        if rows is not None and len(rows) and predictions:  # mixed: decode again as dicts
            for sink in lists:
                sink.clear()
            rows = None
            bad = decoder.decode_all(rest, *lists)
        malformed += bad
    else:
        for value in rest:
            if type(value) is list:
                bad = decoder.decode_all([value], *lists) if decoder is not None else 1
                malformed += bad
            else:
                kind = _valid(value)
                if kind is None:
                    if type(value) is dict and "occam_log" in value:  # a header
                        decoder = _header_decoder(value)
                        malformed += decoder is None
                    else:
                        malformed += 1
                elif kind == "prediction" and value.get("shadow") is True:
                    shadow.append(value)
                else:
                    sinks[kind].append(value)
    if strict and malformed:
        return None
    return predictions, feedback, rejected, shadow, malformed, decoder, rows


def _rows_sink(lines: list[list[Any]], decoder: CompactDecoder, batch: Batch) -> CompactRows | None:
    """Where a compact chunk's served predictions go as rows: the model shape of the batch's
    rows when this segment's header lists it, else that of the chunk's first prediction line;
    None when there is none, or its shape names a class or feature twice."""
    models = decoder.header.models
    if batch.rows is not None and batch.rows.shape in models:
        model = models.index(batch.rows.shape)
    else:
        first = next((e for e in lines if e and type(e[0]) is int and e[0] & 3 == 1), None)
        if first is None or len(first) < 4:
            return None
        model = first[3]
        if type(model) is not int or not 0 <= model < len(models):
            return None
    rows = CompactRows(models[model], model)
    return rows if rows.unique else None


def _header_decoder(raw: dict[str, Any]) -> CompactDecoder | None:
    """The decoder of a parsed header line, None when it is not a valid one (its lines are
    then counted as malformed)."""
    try:
        return CompactDecoder(SegmentHeader.of(raw))
    except MalformedRecord:
        return None


#: Compact headers already parsed, by their line's bytes (a segment's header never changes).
_DECODERS: dict[bytes, CompactDecoder] = {}
#: A compact header is read up to this length (a longer first line is not a header).
MAX_HEADER_BYTES = 4_000_000


def segment_decoder(path: Path) -> CompactDecoder | None:
    """The decoder for the compact segment `path` (its first line), None for a ``json``
    segment, one whose header is not complete yet or not valid, or a file that is gone."""
    head = _read(path, 0, HEAD_BYTES)
    if not head.startswith(HEADER_PREFIX):
        return None
    end = head.find(b"\n")
    if end < 0:
        head = _read(path, 0, MAX_HEADER_BYTES)
        end = head.find(b"\n")
        if end < 0:
            return None
    line = head[: end + 1]
    decoder = _DECODERS.get(line)
    if decoder is None:
        try:
            decoder = CompactDecoder(SegmentHeader.of(from_json(line)))
        except (ValueError, MalformedRecord):
            return None
        if len(_DECODERS) >= 1024:  # segments come and go: keep the cache bounded
            _DECODERS.clear()
        _DECODERS[line] = decoder
    return decoder


@dataclass(frozen=True)
class SegmentMark:
    """How far one segment file has been read, and which file it is.

    `inode` and `head_sha` (SHA-256 hex of its first `head_len` bytes: the first line, at most
    `HEAD_BYTES`) identify the file apart from its name; `offset` is the byte after the last
    complete line read, `size` the file size when it was last looked at (what was known to
    exist, for counting what disappears unread).
    """

    inode: int
    offset: int
    size: int
    head_len: int = 0
    head_sha: str = ""

    def to_list(self) -> list[int | str]:
        return [self.inode, self.offset, self.size, self.head_len, self.head_sha]

    @classmethod
    def from_list(cls, raw: Any) -> SegmentMark:
        """The inverse of `to_list`; raises ValueError for anything else."""
        if not isinstance(raw, list) or len(raw) != 5:
            raise ValueError(f"a segment mark is a list of 5 values, got {raw!r:.80}")
        inode, offset, size, head_len, head_sha = raw
        numbers = (inode, offset, size, head_len)
        if not all(type(v) is int and v >= 0 for v in numbers) or type(head_sha) is not str:
            raise ValueError(f"bad segment mark {raw!r:.80}")
        return cls(inode, offset, size, head_len, head_sha)


#: Bytes of a segment's beginning (its first line, at most this) that identify it.
HEAD_BYTES = 4096
#: Segment events counted by `read_new` (exported as occam_log_segment_events_total{event}).
SEGMENT_EVENTS = ("truncated", "rewritten", "replaced", "renamed", "deleted", "deleted_unread")


@dataclass(frozen=True)
class SegmentFile:
    """One log segment as found on disk: its name's (worker, pid, segment) `key`, size in
    bytes, inode and modification time (Unix seconds)."""

    key: tuple[int, int, int]
    name: str
    size: int
    inode: int
    mtime: float


def segment_stats(folder: Path) -> list[SegmentFile]:
    """The log segments in `folder` (other files ignored), in (worker, pid, segment) order;
    [] when the folder does not exist. A file deleted while listing is left out."""
    found: list[SegmentFile] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        key = segment_key(entry.name)
        if key is None:
            continue
        try:
            stat = entry.stat()
        except FileNotFoundError:  # deleted between listing and stat
            continue
        found.append(SegmentFile(key, entry.name, stat.st_size, stat.st_ino, stat.st_mtime))
    found.sort(key=lambda f: f.key)
    return found


def segment_files(folder: Path) -> list[tuple[str, int, int]]:
    """(name, size in bytes, inode) of the log segments in `folder`, in (worker, pid, segment)
    order."""
    return [(f.name, f.size, f.inode) for f in segment_stats(folder)]


def _head(path: Path, length: int) -> str | None:
    """SHA-256 hex of the first `length` bytes of `path`; None when it is shorter or gone."""
    data = _read(path, 0, length)
    return hashlib.sha256(data).hexdigest() if len(data) == length else None


def _identify(
    folder: Path,
    name: str,
    size: int,
    inode: int,
    marks: dict[str, SegmentMark],
    gone: dict[int, str],
    batch: Batch,
) -> SegmentMark | None:
    """The mark to continue `name` from (None: read it from the start), counting events.

    Same name and inode with the same first bytes: the same file. A smaller size than the read
    offset is a truncation: reading goes on from the new end (the bytes below it were read
    already; the unread bytes that were seen are counted lost), never from the start. A known
    name with another inode was replaced; a known inode whose name vanished was renamed; the
    same inode with other first bytes was rewritten.
    """
    mark = marks.get(name)
    if mark is not None and mark.inode != inode:
        batch.event("replaced")
        gone[mark.inode] = name  # the old file: counted below if its bytes were unread
        mark = None
    if mark is None:
        old = gone.get(inode)
        if old is not None and old != name and old in marks:
            mark = marks[old]
            if mark.head_len and _head(folder / name, mark.head_len) != mark.head_sha:
                return None  # a new file on a recycled inode
            del gone[inode]
            batch.event("renamed")
        else:
            return None
    if size < mark.offset:
        batch.event("truncated")
        batch.lost(mark.size - mark.offset)
        log.warning(
            "log segment %s was cut to %d bytes below its read offset %d; reading on from its "
            "new end (nothing is read twice)",
            name,
            size,
            mark.offset,
        )
        return SegmentMark(inode, size, size, min(mark.head_len, size), "")
    changed = mark.head_len and size != mark.size  # it changed: is it still the same file?
    if changed and _head(folder / name, mark.head_len) != mark.head_sha:
        batch.event("rewritten")
        batch.lost(mark.size - mark.offset)
        log.warning("log segment %s was rewritten in place; reading it anew", name)
        return None
    return mark


def read_new(
    folder: Path,
    marks: dict[str, SegmentMark],
    max_bytes: int = DEFAULT_MAX_BYTES,
    columnar: bool = False,
) -> Batch:
    """Read complete lines past `marks` from every segment in `folder`, up to `max_bytes`.

    Files are identified by inode and first bytes (see `_identify`), so truncation, rewriting,
    replacement, renaming and deletion are counted in `batch.events` and what disappeared
    unread in `batch.lost_bytes`; nothing is read twice. `columnar`: served compact
    predictions may come as `Batch.rows` (a batch with shadow rows never has them).
    """
    batch = Batch(columnar=columnar)
    budget = max_bytes
    files = segment_files(folder)
    present = {name for name, _, _ in files}
    gone = {m.inode: name for name, m in marks.items() if name not in present}
    for name, size, inode in files:
        mark = _identify(folder, name, size, inode, marks, gone, batch)
        offset = mark.offset if mark is not None else 0
        head_len, head_sha = (mark.head_len, mark.head_sha) if mark is not None else (0, "")
        want = size - offset
        if want > 0 and budget > 0:
            data = _read(folder / name, offset, min(want, budget))
            end = data.rfind(b"\n") + 1
            if end:
                decoder = segment_decoder(folder / name) if offset else None
                parse_into(data[:end], batch, decoder)
                offset += end
                batch.bytes_read += end
                budget -= end
            if len(data) < want:
                batch.more = True
        elif want > 0:
            batch.more = True
        if not head_sha and offset > 0:
            head = _read(folder / name, 0, min(offset, HEAD_BYTES))
            head_len = (head.find(b"\n") + 1) or len(head)
            head_sha = hashlib.sha256(head[:head_len]).hexdigest()
        batch.segments[name] = SegmentMark(inode, offset, size, head_len, head_sha)
        batch.unread_bytes += size - offset
    for name in gone.values():  # renamed ones were taken out by `_identify`
        mark = marks[name]
        unread = mark.size - mark.offset
        batch.event("deleted_unread" if unread > 0 else "deleted")
        if unread > 0:
            batch.lost(unread)
            log.warning("log segment %s was deleted with %d bytes unread", name, unread)
    if batch.shadow:  # the shadow comparison pairs shadow rows with served dicts
        batch.materialize()
    return batch


def _read(path: Path, offset: int, length: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(length)
    except FileNotFoundError:
        return b""


def read_all(folder: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Iterator[Batch]:
    """Every complete record of every segment in `folder`, from the start, as successive
    batches of at most `max_bytes` each (so a caller can keep a bounded part; memory holds one
    batch at a time). Stateless: nothing is remembered between calls."""
    marks: dict[str, SegmentMark] = {}
    budget = max_bytes
    while True:
        batch = read_new(folder, marks, budget)
        if batch.more and batch.bytes_read == 0:  # one line longer than the budget
            budget *= 2
            continue
        yield batch
        if not batch.more:
            return
        marks, budget = batch.segments, max_bytes


def unread_records(path: Path, offset: int) -> int:
    """Complete lines of `path` from `offset` on that are records: every line but a compact
    segment's header (what retention counts as lost when it deletes a segment unread); 0 for a
    file that is gone."""
    count = 0
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            first = True
            while chunk := handle.read(1 << 20):
                if first and offset == 0 and chunk.startswith(HEADER_PREFIX):
                    count -= 1  # the header line (counted below with the others)
                first = False
                count += chunk.count(b"\n")
    except FileNotFoundError:
        return 0
    return max(count, 0)
