"""Crash safety of the real `occam monitor` process: killed with SIGKILL three times mid-stream
and restarted, it ends with exactly as many records read as were written."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from monitoring.state import MonitorState
from occam.records import Record, dumps
from tests.conftest import small_config, write_config
from tests.monitoring.logs import append, feedback, prediction, rejected
from tests.monitoring.monitor_process import scrape, start

WORKERS = 2
PER_BATCH = 250  # predictions per write


class Writer(threading.Thread):
    """Two "service workers" appending predictions, feedback, rejections and the odd bad line,
    rotating segments, sometimes leaving a line half-written for a moment, until `done` is
    set; `batches` counts the rounds written."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.counts = {"prediction": 0, "feedback": 0, "rejected": 0, "malformed": 0}
        self.batches = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            b = self.batches
            for w in range(WORKERS):
                segment = b // 40  # rotate every 40 batches
                recs: list[Record] = [
                    prediction(f"{w}-{b}-{i}", ts=time.time()) for i in range(PER_BATCH)
                ]
                recs += [feedback(f"{w}-{b}-{i}", "yes") for i in range(0, PER_BATCH, 5)]
                lines = [dumps(r) for r in recs] + [dumps(rejected()), b"{broken\n"]
                if b % 7 == 3:  # a line split over two writes, as a writer mid-write
                    head, tail = lines[-3][:30], lines[-3][30:]
                    append(self.folder, [*lines[:-3], head], worker=w, pid=900 + w, segment=segment)
                    time.sleep(0.01)
                    append(self.folder, [tail, *lines[-2:]], worker=w, pid=900 + w, segment=segment)
                else:
                    append(self.folder, lines, worker=w, pid=900 + w, segment=segment)
                self.counts["prediction"] += PER_BATCH
                self.counts["feedback"] += PER_BATCH // 5
                self.counts["rejected"] += 1
                self.counts["malformed"] += 1
            self.batches += 1
            time.sleep(0.04)


def read_totals(url: str) -> tuple[float, float, float, float]:
    m = scrape(url)
    return (
        m['occam_records_read_total{kind="prediction"}'],
        m['occam_records_read_total{kind="feedback"}'],
        m['occam_records_read_total{kind="rejected"}'],
        m["occam_malformed_records_total"],
    )


def test_sigkill_mid_stream_loses_and_repeats_nothing(tmp_path: Path) -> None:
    raw = small_config(tmp_path)
    raw["monitoring"] = {"checkpoint_interval_seconds": 0.1, "poll_interval_seconds": 0.02}
    config = write_config(tmp_path, raw)
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "BENTOML_HOME": tempfile.mkdtemp(prefix="occam-empty-store-")}
    checkpoint = tmp_path / "monitor-state" / "monitor-checkpoint.json"

    writer = Writer(logs)
    writer.start()
    kills = 0
    for _ in range(3):  # three kills while the writer is writing and the monitor reading
        process, url = start(config, env)
        before, batches = read_totals(url)[0], writer.batches
        deadline = time.monotonic() + 120
        while writer.batches < batches + 10 or read_totals(url)[0] <= before:
            assert time.monotonic() < deadline, "the monitor read nothing new"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        kills += 1
    process, url = start(config, env)
    # `occam monitor` reads JSON and CSV only and keeps pandas' pyarrow out (55 MiB resident)
    assert "libarrow" not in Path(f"/proc/{process.pid}/maps").read_text()
    # and runs its math single-threaded: its own thread and the metrics endpoint's, no
    # OpenBLAS threads spinning beside them (monitoring.one_math_thread)
    threads = len(list(Path(f"/proc/{process.pid}/task").iterdir()))
    assert threads == 2, f"{threads} threads"
    writer.done.set()
    writer.join(60)
    c = writer.counts
    expected = (c["prediction"], c["feedback"], c["rejected"], c["malformed"])
    deadline = time.monotonic() + 60
    while read_totals(url) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    assert read_totals(url) == expected
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
    state = MonitorState.load(checkpoint, 1000, 200, 100_000, 1000)
    assert state.records == {
        "prediction": c["prediction"],
        "feedback": c["feedback"],
        "rejected": c["rejected"],
    }
    assert state.malformed == c["malformed"] and kills == 3
