"""Reading the prediction log (`occam.records`): every segment file, by name and byte offset.

The reader itself keeps no state: `read_new` takes the offsets reached so far and returns the
new complete records with the offsets after them. The caller applies the records to its state
and only then saves state and offsets together (see `monitoring.state`), so a crash between
the two re-reads the same lines instead of losing or double-counting them.

A line counts once it ends with ``\\n``; a partial last line (a writer mid-write, or one that
died mid-write) is left unread until it is completed. Lines that are not a valid record are
counted as malformed and skipped. Fields beyond the contract's are ignored, so a newer writer
does not blind an older reader.

Parsing uses `pydantic_core.from_json` (Rust, already a dependency through pydantic): about
three times faster than `json.loads` on prediction records. The cyclic garbage collector is
paused while a batch is parsed: the parsed records hold no cycles, and collecting while
hundreds of thousands of fresh dicts pile up would halve the rate.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_core import from_json

from occam.records import segment_key

log = logging.getLogger(__name__)

#: Bytes read per call at most (across files), so a long backlog is taken in steps.
DEFAULT_MAX_BYTES = 16_000_000


@dataclass
class Batch:
    """New records from one `read_new` call, in file order (files sorted by worker, pid, segment).

    `offsets` maps every segment file present to the byte offset after its last complete line
    read; `unread_bytes` is what is left in the files after this batch (partial lines included),
    `more` whether the byte budget stopped the read before the end of some file.
    """

    predictions: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    malformed: int = 0
    offsets: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0
    unread_bytes: int = 0
    more: bool = False

    @property
    def records(self) -> int:
        """Valid records in the batch (all kinds)."""
        return len(self.predictions) + len(self.feedback) + len(self.rejected)


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


def parse_into(data: bytes, batch: Batch) -> None:
    """Parse complete lines (`data` ends with ``\\n``) and append the records to `batch`."""
    with gc_paused():
        _parse_lines(data, batch)


def _parse_lines(data: bytes, batch: Batch) -> None:
    lines = data.split(b"\n")
    lines.pop()  # the empty string after the final newline
    sinks = {"prediction": batch.predictions, "feedback": batch.feedback}
    rejected = batch.rejected
    malformed = 0
    for line in lines:
        try:
            raw = from_json(line)
        except ValueError:
            malformed += 1
            continue
        kind = _valid(raw)
        if kind is None:
            malformed += 1
        else:
            sinks.get(kind, rejected).append(raw)
    batch.malformed += malformed


def segment_files(folder: Path) -> list[tuple[str, int]]:
    """(name, size in bytes) of the log segments in `folder`, in (worker, pid, segment) order."""
    found: list[tuple[tuple[int, int, int], str, int]] = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return []
    for entry in entries:
        key = segment_key(entry.name)
        if key is None:
            continue
        try:
            size = entry.stat().st_size
        except FileNotFoundError:  # deleted between listing and stat
            continue
        found.append((key, entry.name, size))
    found.sort()
    return [(name, size) for _, name, size in found]


def read_new(folder: Path, offsets: dict[str, int], max_bytes: int = DEFAULT_MAX_BYTES) -> Batch:
    """Read complete lines past `offsets` from every segment in `folder`, up to `max_bytes`.

    Files that disappeared drop out of the returned offsets; a file smaller than its offset
    is a new file under a reused name (segments are never rewritten) and is read from the start.
    """
    batch = Batch()
    budget = max_bytes
    for name, size in segment_files(folder):
        offset = offsets.get(name, 0)
        if size < offset:
            log.warning("log segment %s shrank below its read offset; reading it anew", name)
            offset = 0
        want = size - offset
        if want > 0 and budget > 0:
            data = _read(folder / name, offset, min(want, budget))
            end = data.rfind(b"\n") + 1
            if end:
                parse_into(data[:end], batch)
                offset += end
                batch.bytes_read += end
                budget -= end
            if len(data) < want:
                batch.more = True
        elif want > 0:
            batch.more = True
        batch.offsets[name] = offset
        batch.unread_bytes += size - offset
    return batch


def _read(path: Path, offset: int, length: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(length)
    except FileNotFoundError:
        return b""
