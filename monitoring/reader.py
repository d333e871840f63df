"""The prediction log reader, for the monitor: it lives in `occam.logread` (shared with
`occam retrain`); these names are re-exported for the monitor's modules."""

from __future__ import annotations

from occam.logread import (
    DEFAULT_MAX_BYTES,
    HEAD_BYTES,
    SEGMENT_EVENTS,
    Batch,
    SegmentFile,
    SegmentMark,
    gc_paused,
    parse_into,
    read_all,
    read_new,
    segment_files,
    segment_stats,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "HEAD_BYTES",
    "SEGMENT_EVENTS",
    "Batch",
    "SegmentFile",
    "SegmentMark",
    "gc_paused",
    "parse_into",
    "read_all",
    "read_new",
    "segment_files",
    "segment_stats",
]
