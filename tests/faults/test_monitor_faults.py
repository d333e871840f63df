"""Faults under a real `occam monitor`: segments cut, deleted and aged out under it, and a
crafted checkpoint. Each is detected and counted; nothing is read twice; nothing is run."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from monitoring.state import STATE_FILE, MonitorState
from occam.records import dumps
from service.log import SegmentWriter
from tests.conftest import small_config, write_config
from tests.monitoring.logs import append, prediction
from tests.monitoring.monitor_process import scrape, start


@pytest.fixture
def empty_store() -> dict[str, str]:
    return {**os.environ, "BENTOML_HOME": tempfile.mkdtemp(prefix="occam-empty-store-")}


def monitor_config(tmp_path: Path, **monitoring: Any) -> Path:
    raw = small_config(tmp_path)
    raw["monitoring"] = {"checkpoint_interval_seconds": 0.2, "poll_interval_seconds": 0.05}
    raw["monitoring"].update(monitoring)
    return write_config(tmp_path, raw)


def wait_for(url: str, name: str, value: float, timeout: float = 60) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        metrics = scrape(url)
        if metrics.get(name) == value:
            return metrics
        assert time.monotonic() < deadline, f"{name} = {metrics.get(name)}, expected {value}"
        time.sleep(0.1)


def batch(prefix: str, n: int) -> list[Any]:
    return [prediction(f"{prefix}{i}", ts=time.time()) for i in range(n)]


READ = 'occam_records_read_total{kind="prediction"}'


def test_cut_and_deleted_segments_are_counted_never_read_twice(
    tmp_path: Path, empty_store: dict[str, str]
) -> None:
    config = monitor_config(tmp_path)
    logs = tmp_path / "logs"
    cut = append(logs, batch("a", 3000), worker=0, pid=10, segment=0)
    done = append(logs, batch("b", 1000), worker=0, pid=10, segment=1)
    process, url = start(config, empty_store)
    try:
        wait_for(url, READ, 4000)
        os.truncate(cut, 100 * len(dumps(prediction("a0", ts=time.time()))))  # below the read point
        done.unlink()  # read to its end, then deleted
        append(logs, batch("c", 500), worker=0, pid=10, segment=2)
        metrics = wait_for(url, READ, 4500)  # not 4500 + the 100 lines left in the cut file
        time.sleep(1.0)  # several more polls: still nothing read twice
        metrics = scrape(url)
        assert metrics[READ] == 4500
        assert metrics['occam_log_segment_events_total{event="truncated"}'] == 1
        assert metrics['occam_log_segment_events_total{event="deleted"}'] == 1
        assert metrics["occam_log_lost_bytes_total"] == 0  # what vanished had been read

        unread = append(logs, batch("d", 200), worker=1, pid=11, segment=0)
        wait_for(url, READ, 4700)
        process.send_signal(signal.SIGKILL)  # killed: restarts from its last checkpoint
        process.wait(10)
        partial = dumps(prediction("e0", ts=time.time()))
        append(logs, [*batch("e", 10), partial[:50]], worker=1, pid=11, segment=1)
        process, url = start(config, empty_store)
        wait_for(url, READ, 4710)  # the 50-byte partial line stays unread
        process.send_signal(signal.SIGTERM)  # stopped (its checkpoint knows those 50 bytes) ...
        assert process.wait(30) == 0
        unread.unlink()  # ... while both segments of that writer are deleted
        (logs / unread.name.replace("000000", "000001")).unlink()
        process, url = start(config, empty_store)
        metrics = wait_for(url, 'occam_log_segment_events_total{event="deleted_unread"}', 1)
        assert metrics["occam_log_lost_bytes_total"] == 50
        assert metrics[READ] == 4710
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def _written(logs: Path, records: list[Any], log_format: str, pid: int) -> Path:
    """One segment written by the service's own writer (`log_format`), closed."""
    writer = SegmentWriter(logs, worker=0, pid=pid, log_format=log_format).start()  # type: ignore[arg-type]
    writer.submit(records)
    writer.close()
    path = writer.path
    assert path is not None
    return path


@pytest.mark.parametrize("log_format", ["json", "compact"])
def test_retention_deletes_and_counts_unread_records_exactly(
    tmp_path: Path, empty_store: dict[str, str], log_format: str
) -> None:
    """Segments deleted unread count their records, never a compact segment's header line."""
    config = monitor_config(tmp_path, log_retention_hours=24)
    logs = tmp_path / "logs"
    old = [_written(logs, batch(f"old{s}-", 300), log_format, pid=5 + s) for s in range(3)]
    for path in old:  # written three days ago, never read
        past = time.time() - 72 * 3600
        os.utime(path, (past, past))
    append(logs, batch("new", 400), worker=1, pid=6, segment=0)
    result = subprocess.run(
        [sys.executable, "-m", "occam.cli", "monitor", "--config", str(config), "--once"],
        env=empty_store,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    state = MonitorState.load(tmp_path / "monitor-state" / STATE_FILE, 1000, 200, 100_000, 1000)
    assert state.records["prediction"] == 400
    assert state.account.lost_records == 900 and state.account.retained_segments == 3
    assert sorted(p.name for p in logs.iterdir()) == ["occam-w1-p6-000000.jsonl"]


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("content", ["pickle", "garbage", "tampered"])
def test_a_crafted_checkpoint_is_refused_with_exit_6_and_runs_nothing(
    tmp_path: Path, empty_store: dict[str, str], content: str
) -> None:
    config = monitor_config(tmp_path)
    append(tmp_path / "logs", batch("a", 10))
    checkpoint = tmp_path / "monitor-state" / STATE_FILE
    marker = tmp_path / "code-ran"
    command = [sys.executable, "-m", "occam.cli", "monitor", "--config", str(config), "--once"]
    if content == "tampered":
        subprocess.run(command, env=empty_store, check=True, capture_output=True, timeout=300)
        saved = checkpoint.read_bytes()
        checkpoint.write_bytes(saved.replace(b'"prediction":10', b'"prediction":0'))
    else:
        checkpoint.parent.mkdir(parents=True)
        data = pickle.dumps(_Exploit(marker)) if content == "pickle" else os.urandom(4096)
        checkpoint.write_bytes(data)
    result = subprocess.run(command, env=empty_store, capture_output=True, text=True, timeout=300)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 6, output
    assert "monitor checkpoint refused" in output and "nothing in it was run" in output
    assert not marker.exists()
