"""The prediction log writer: segments in the format of `occam.records`, compact (the default)
or JSON objects (`serving.log_format`).

A compact segment's header goes out in the same write as the segment's first records; when
a record names a model version the segment's header does not list (a promotion, a shadow
challenger), the writer starts a new segment whose header does. A header that could not be
written in full is taken back with the records after it (and written again with the next
ones); if it cannot be taken back the segment is left for a new one.

Durability (`serving.log_durability`):

- ``write`` (default): `submit` encodes the request's records and writes them to the segment
  with write(2) before it returns, so before the answer is sent. The page cache outlives the
  process: a worker killed with SIGKILL right after answering loses no record.
- ``fsync``: the same, plus fdatasync before returning (survives a power cut; costs a disk
  flush per request).
- ``queue``: `submit` appends to an in-memory queue that a background thread writes every
  `flush_interval` seconds (sooner when it fills up), so a slow disk never holds a request. The
  queue is bounded: when full, new records are dropped and counted. A killed worker loses what
  was queued, uncounted; use it only where that is acceptable (see docs/service.md).

Every record that is not written is counted (`dropped`, and the `on_drop` callback feeds
occam_service_log_dropped_records_total). A write that fails part-way (disk full) counts the
records whose line was written in full as written and the rest as dropped; the cut-off line is
removed again (ftruncate) or, if that fails, ended by a newline before the next write, so no
line ever merges with the next one (the reader counts such a fragment as malformed).

Each process writes its own files (`occam-w<worker>-p<pid>-<segment>.jsonl`), opened with
O_APPEND and O_EXCL, and never reopens a segment it did not create. When its segment was
deleted (retention) it starts a new one rather than writing into an unlinked file.

Redaction (`serving.log_redact`): the named feature columns are replaced by
``hmac-sha256:<hex>`` (HMAC-SHA256 of the value's JSON text with a secret key) or dropped,
before a prediction record is encoded. The key comes from `serving.log_redact_key_file` or the
environment variable OCCAM_LOG_REDACT_KEY and is never logged.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic_core import to_json

from occam.config import ConfigError, ServingConfig
from occam.records import (
    CompactEncoder,
    LogFormat,
    PredictionRecord,
    Record,
    dumps,
    segment_name,
)

log = logging.getLogger("occam.service.log")

Durability = Literal["queue", "write", "fsync"]
REDACT_KEY_ENV = "OCCAM_LOG_REDACT_KEY"
HASH_PREFIX = "hmac-sha256:"


class Redactor:
    """Replaces (`mode` 'hash') or drops (`mode` 'drop') the `columns` of prediction records'
    features; see the module docstring. A missing or null value stays as it is."""

    def __init__(self, columns: Sequence[str], mode: Literal["hash", "drop"], key: bytes) -> None:
        self.columns = tuple(columns)
        self.mode = mode
        self._key = key

    def hash(self, value: object) -> str:
        digest = hmac.new(self._key, to_json(value), hashlib.sha256).hexdigest()
        return HASH_PREFIX + digest

    def apply(self, record: Record) -> Record:
        if not isinstance(record, PredictionRecord):
            return record
        features = dict(record.features)
        for column in self.columns:
            if column not in features:
                continue
            if self.mode == "drop":
                del features[column]
            elif features[column] is not None:
                features[column] = self.hash(features[column])
        return replace(record, features=features)

    @classmethod
    def from_config(
        cls, serving: ServingConfig, features: Sequence[str] | None = None
    ) -> Redactor | None:
        """The redactor `serving.log_redact` asks for (None when it is empty); raises
        `ConfigError` naming the key for an unknown column or a missing key."""
        columns = serving.log_redact
        if not columns:
            return None
        if features is not None:
            unknown = [c for c in columns if c not in features]
            if unknown:
                raise ConfigError(
                    f"`serving.log_redact`: {unknown} are not features of the served model; "
                    f"its features are {list(features)}"
                )
        if serving.log_redact_mode == "drop":
            return cls(columns, "drop", b"")
        return cls(columns, "hash", _redact_key(serving))


def _redact_key(serving: ServingConfig) -> bytes:
    path = serving.log_redact_key_file
    if path is not None:
        try:
            key = Path(path).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(
                f"`serving.log_redact_key_file`: cannot read {path}: {exc.strerror}"
            ) from None
    else:
        key = os.environ.get(REDACT_KEY_ENV, "").encode()
    if len(key) < 16:
        raise ConfigError(
            "`serving.log_redact` with `log_redact_mode: hash` needs a secret key of at least 16 "
            f"bytes: set `serving.log_redact_key_file` or the environment variable "
            f"{REDACT_KEY_ENV} (or use `log_redact_mode: drop`)"
        )
    return key


class SegmentWriter:
    """Appends records to `folder`; see the module docstring.

    `worker` is the server's worker index (part of the file name), `segment_bytes` the size
    past which a new segment is started, `durability` when records reach the file,
    `capacity` the most records waiting for the disk and `flush_interval` how long (seconds)
    they may wait (both for 'queue' only), `redactor` what to hide from the log, `log_format`
    the segment format ('compact' or 'json', see `occam.records`).
    """

    def __init__(
        self,
        folder: Path,
        *,
        worker: int,
        segment_bytes: int = 64_000_000,
        capacity: int = 100_000,
        flush_interval: float = 0.05,
        on_drop: Callable[[int], None] | None = None,
        pid: int | None = None,
        durability: Durability = "write",
        redactor: Redactor | None = None,
        log_format: LogFormat = "compact",
    ) -> None:
        self.folder = Path(folder)
        self.worker = worker
        self.segment_bytes = segment_bytes
        self.capacity = capacity
        self.flush_interval = flush_interval
        self.on_drop = on_drop
        self.pid = os.getpid() if pid is None else pid
        self.durability = durability
        self.redactor = redactor
        self.dropped = 0
        self.written = 0
        self._pending: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._segment = -1
        self._size = 0
        self._torn = False
        self._last_error = 0.0
        self.log_format = log_format
        self._encoder = CompactEncoder(int(time.time())) if log_format == "compact" else None
        #: The current segment's header line while it is still to be written (compact only).
        self._header = b""
        #: How many model shapes the current segment's header lists.
        self._header_models = 0

    @classmethod
    def from_config(
        cls,
        serving: ServingConfig,
        *,
        worker: int,
        on_drop: Callable[[int], None] | None = None,
        features: Sequence[str] | None = None,
    ) -> SegmentWriter:
        """A writer as `serving` says (folder, segment size, queue, durability, redaction);
        `features` are the served model's, to check `serving.log_redact` against. Not started."""
        return cls(
            serving.log_dir,
            worker=worker,
            segment_bytes=serving.log_segment_bytes,
            capacity=serving.log_queue_records,
            on_drop=on_drop,
            durability=serving.log_durability,
            redactor=Redactor.from_config(serving, features),
            log_format=serving.log_format,
        )

    @property
    def path(self) -> Path | None:
        """The segment being written, None before the first write."""
        if self._segment < 0:
            return None
        return self.folder / self._name(self._segment)

    def start(self) -> SegmentWriter:
        """Create the folder (raising OSError when it cannot be); start the writer thread when
        the durability is 'queue'."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.durability == "queue":
            self._thread = threading.Thread(target=self._run, name="occam-log-writer", daemon=True)
            self._thread.start()
        return self

    def _encode(self, record: Record) -> bytes:
        if self.redactor is not None:
            record = self.redactor.apply(record)
        if self._encoder is not None:
            return self._encoder.encode(record)
        return dumps(record)

    def submit(self, records: Iterable[Record]) -> int:
        """Log records (written before returning unless the durability is 'queue'); return how
        many were dropped (queue full, or the write failed)."""
        if self.durability != "queue":
            lines = [self._encode(r) for r in records]
            if not lines:
                return 0
            with self._lock:
                before = self.dropped
                self._write_lines(lines)
                if self.durability == "fsync" and self._fd is not None:
                    try:
                        os.fdatasync(self._fd)
                    except OSError as exc:
                        self._say(exc)
                return self.dropped - before
        pending = self._pending
        dropped = 0
        for record in records:
            # A soft bound: len() and append() are each atomic; a race overshoots by a record.
            if len(pending) >= self.capacity:
                dropped += 1
            else:
                # Encoded here, in the request's thread: the writer thread then only writes
                # bytes (without the GIL), and never takes the event loop's turn for long.
                pending.append(self._encode(record))
        if dropped:
            self._count_dropped(dropped)
        if len(pending) * 2 >= self.capacity:
            self._wake.set()
        return dropped

    def close(self, timeout: float = 10.0) -> None:
        """Write everything queued, stop the thread and close the file."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            self._drain()  # whatever the thread left, if it never ran or timed out
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            with self._lock:
                self._drain()

    def _drain(self) -> None:
        pending = self._pending
        while pending:
            chunk: list[bytes] = []
            size = 0
            while pending and size < 1_000_000:
                line = pending.popleft()
                chunk.append(line)
                size += len(line)
            self._write_lines(chunk)

    def _write_lines(self, lines: list[bytes]) -> None:
        """Write lines in as few writes as segments they span (a line never spans two)."""
        chunk: list[bytes] = []
        size = 0
        # A compact header must list every model the lines were encoded against: they were all
        # encoded before this point, so a header written from now on does.
        rotate = self._encoder is not None and self._encoder.size > self._header_models
        # `used`: bytes in the segment `chunk` goes to; `fresh`: it holds no line yet (it takes
        # one line whatever its length)
        fresh = rotate or self._fd is None or self._size == 0
        if self._fd is not None and not rotate:
            used = self._size + len(self._header)
        else:
            used = self._header_len()
        for line in lines:
            if used + size + len(line) > self.segment_bytes and (size > 0 or not fresh):
                if chunk:
                    self._write(chunk, rotate)
                chunk, size, used, rotate, fresh = [], 0, self._header_len(), True, True
            chunk.append(line)
            size += len(line)
        if chunk:
            self._write(chunk, rotate)

    def _write(self, lines: list[bytes], rotate: bool) -> None:
        """Write whole lines, starting a new segment when asked or when the current one was
        deleted; count exactly what did and did not reach the file."""
        data = b"".join(lines)
        try:
            if self._fd is None or rotate or os.fstat(self._fd).st_nlink == 0:
                self._rotate()  # a deleted segment (retention) is left, not written into
        except OSError as exc:
            self._count_dropped(len(lines))
            self._say(exc)
            return
        assert self._fd is not None
        prefix = self._header or (b"\n" if self._torn else b"")
        view = memoryview(prefix + data)
        start, done = self._size, 0
        try:
            while done < len(view):  # a regular file may take fewer bytes than asked
                done += os.write(self._fd, view[done:])
        except OSError as exc:
            self._say(exc)
        self._size += done
        if done >= len(self._header):
            self._header = b""  # written in full (or none was due)
        if done == len(view):
            self._torn = False
            self.written += len(lines)
            return
        complete = bytes(view[len(prefix) : done]).count(b"\n") if done > len(prefix) else 0
        self.written += complete
        self._count_dropped(len(lines) - complete)
        if done and view[done - 1] != ord("\n"):
            keep = bytes(view[:done]).rfind(b"\n") + 1
            try:
                os.ftruncate(self._fd, start + keep)  # take the cut-off line back
                self._size = start + keep
                self._torn = False
            except OSError:
                self._torn = True  # the next write starts with a newline
                if self._header:  # a cut header cannot be mended: leave the segment
                    os.close(self._fd)
                    self._fd = None
        elif done:
            self._torn = False

    def _rotate(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL
        while True:  # never append to a segment another process (an earlier pid) created
            self._segment += 1
            try:
                self._fd = os.open(self.folder / self._name(self._segment), flags, 0o644)
                break
            except FileExistsError:
                continue
        self._size = 0
        self._torn = False
        if self._encoder is not None:
            header, self._header_models = self._encoder.header(
                os.urandom(8).hex(), self.pid, self.worker
            )
            self._header = header.line()

    def _header_len(self) -> int:
        """The length of a new segment's header line (0 for 'json' segments)."""
        if self._encoder is None:
            return 0
        header, _ = self._encoder.header("0" * 16, self.pid, self.worker)
        return len(header.line())

    def _name(self, segment: int) -> str:
        return segment_name(self.worker, self.pid, segment)

    def _say(self, exc: OSError) -> None:
        now = time.monotonic()
        if now - self._last_error > 60:  # say it, but not once per record
            self._last_error = now
            log.error("prediction log: cannot write to %s: %s", self.folder, exc)

    def _count_dropped(self, count: int) -> None:
        if count <= 0:
            return
        self.dropped += count
        if self.on_drop is not None:
            self.on_drop(count)
