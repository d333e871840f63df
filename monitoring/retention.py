"""Retention of the prediction log, applied by the monitor (it knows what it has read).

`monitoring.log_retention_hours` deletes segments last written longer ago than that, read or
not. `monitoring.log_retention_bytes` keeps the folder under a size: first by deleting the
oldest segments read to their end that their writer has left (a later segment of the same
worker process exists), then, if that is not enough, the oldest unread ones. Records deleted
unread are counted line by line first (`LogAccount.lost_records`; a compact segment's header
line is not a record), so nothing disappears without a count. The newest segment of each
writer is deleted only by age; a writer that finds its segment deleted starts a new one
(`service.log`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from monitoring.state import MonitorState
from occam.logread import segment_stats, unread_records

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Segment:
    name: str
    size: int
    inode: int
    mtime: float
    latest: bool


def _segments(folder: Path) -> list[_Segment]:
    """The segments in `folder`, oldest written first, each marked `latest` when it is its
    writer's (worker, pid) newest."""
    found = segment_stats(folder)
    newest: dict[tuple[int, int], int] = {}
    for f in found:
        writer = f.key[:2]
        newest[writer] = max(newest.get(writer, -1), f.key[2])
    found.sort(key=lambda f: (f.mtime, f.key))
    return [
        _Segment(f.name, f.size, f.inode, f.mtime, newest[f.key[:2]] == f.key[2]) for f in found
    ]


def apply_retention(
    folder: Path,
    state: MonitorState,
    now: float,
    max_bytes: int | None,
    max_hours: float | None,
) -> int:
    """Delete segments as the module docstring says, count what goes in `state.account`,
    drop their marks from `state.segments`; forget state rows older than `max_hours`. Returns
    the number of segments deleted."""
    if max_hours is not None:
        state.expire(now - max_hours * 3600)
    if max_bytes is None and max_hours is None:
        return 0
    segments = _segments(folder)
    total = sum(s.size for s in segments)
    deleted = 0

    def read_to_end(s: _Segment) -> bool:
        mark = state.segments.get(s.name)
        return mark is not None and mark.inode == s.inode and mark.offset >= s.size

    def delete(s: _Segment) -> None:
        nonlocal total, deleted
        mark = state.segments.get(s.name)
        offset = mark.offset if mark is not None and mark.inode == s.inode else 0
        lost = unread_records(folder / s.name, offset) if offset < s.size else 0
        try:
            os.unlink(folder / s.name)
        except FileNotFoundError:
            return
        state.segments.pop(s.name, None)
        account = state.account
        account.lost_records += lost
        account.retained_segments += 1
        account.retained_bytes += s.size
        total -= s.size
        deleted += 1
        if lost:
            log.warning("retention deleted log segment %s with %d records unread", s.name, lost)

    kept = []
    for s in segments:
        if max_hours is not None and s.mtime < now - max_hours * 3600:
            delete(s)
        else:
            kept.append(s)
    if max_bytes is not None:
        for done_only in (True, False):
            for s in list(kept):
                if total <= max_bytes:
                    break
                if s.latest or (done_only and not read_to_end(s)):
                    continue
                delete(s)
                kept.remove(s)
    return deleted
