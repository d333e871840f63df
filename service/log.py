"""The prediction log writer: JSON-lines segments in the format of `occam.records`.

A request encodes its records (one JSON line each) and appends them to an in-memory queue; a
background thread writes them out every `flush_interval` seconds (sooner when the queue fills
up), so a slow disk never holds a request. The queue is bounded: when it is full, new records are
dropped and counted (`dropped`, and the `on_drop` callback feeds
occam_service_log_dropped_records_total) rather than making requests wait. A write that fails
(disk full, permissions) counts its records as dropped too. `close()` writes what is queued.

Each process writes its own files (`occam-w<worker>-p<pid>-<segment>.jsonl`), opened with
O_APPEND and written in whole lines, and never reopens a segment it did not create, so a
reader can follow every file by name and byte offset.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from occam.records import Record, dumps, segment_name

log = logging.getLogger("occam.service.log")


class SegmentWriter:
    """Appends records to `folder` from a background thread; see the module docstring.

    `worker` is the server's worker index (part of the file name), `segment_bytes` the size
    past which a new segment is started, `capacity` the most records waiting for the disk,
    `flush_interval` how long (seconds) records may wait before they are written.
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
    ) -> None:
        self.folder = Path(folder)
        self.worker = worker
        self.segment_bytes = segment_bytes
        self.capacity = capacity
        self.flush_interval = flush_interval
        self.on_drop = on_drop
        self.pid = os.getpid() if pid is None else pid
        self.dropped = 0
        self.written = 0
        self._pending: collections.deque[bytes] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._segment = -1
        self._size = 0
        self._last_error = 0.0

    @property
    def path(self) -> Path | None:
        """The segment being written, None before the first write."""
        if self._segment < 0:
            return None
        return self.folder / self._name(self._segment)

    def start(self) -> SegmentWriter:
        """Create the folder (raising OSError when it cannot be) and start the writer thread."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="occam-log-writer", daemon=True)
        self._thread.start()
        return self

    def submit(self, records: Iterable[Record]) -> int:
        """Queue records for writing; return how many were dropped because the queue was full."""
        pending = self._pending
        dropped = 0
        for record in records:
            # A soft bound: len() and append() are each atomic; a race overshoots by a record.
            if len(pending) >= self.capacity:
                dropped += 1
            else:
                # Encoded here, in the request's thread: the writer thread then only writes
                # bytes (without the GIL), and never takes the event loop's turn for long.
                pending.append(dumps(record))
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
        self._drain()  # whatever the thread left, if it never ran or timed out
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        pending = self._pending
        while pending:
            chunk: list[bytes] = []
            size = 0
            rotate = False
            while pending and size < 1_000_000:
                line = pending.popleft()
                if self._size + size + len(line) > self.segment_bytes and (self._size or size):
                    if chunk:
                        self._write(chunk, rotate)
                        chunk, size = [], 0
                    rotate = True
                chunk.append(line)
                size += len(line)
            if chunk:
                self._write(chunk, rotate)

    def _write(self, lines: list[bytes], rotate: bool = False) -> None:
        try:
            if self._fd is None or rotate:
                self._rotate()
            assert self._fd is not None
            data = memoryview(b"".join(lines))
            while data:  # a regular file may take fewer bytes than asked; the rest follows
                written = os.write(self._fd, data)
                data = data[written:]
                self._size += written
            self.written += len(lines)
        except OSError as exc:
            self._count_dropped(len(lines))
            now = time.monotonic()
            if now - self._last_error > 60:  # say it, but not once per record
                self._last_error = now
                log.error("prediction log: cannot write to %s: %s", self.folder, exc)

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

    def _name(self, segment: int) -> str:
        return segment_name(self.worker, self.pid, segment)

    def _count_dropped(self, count: int) -> None:
        self.dropped += count
        if self.on_drop is not None:
            self.on_drop(count)
