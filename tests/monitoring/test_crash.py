"""Crash safety of the real `occam monitor` process: killed with SIGKILL mid-stream and
restarted, it ends with exactly as many records read as were written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from monitoring.state import MonitorState
from occam.records import Record, dumps
from tests.conftest import small_config, write_config
from tests.monitoring.logs import append, feedback, prediction, rejected

WORKERS = 2
BATCHES = 120  # per worker
PER_BATCH = 250  # predictions per write


class Writer(threading.Thread):
    """Two "service workers" appending predictions, feedback, rejections and the odd bad line,
    rotating segments, sometimes leaving a line half-written for a moment."""

    def __init__(self, folder: Path) -> None:
        super().__init__(daemon=True)
        self.folder = folder
        self.counts = {"prediction": 0, "feedback": 0, "rejected": 0, "malformed": 0}
        self.progress = 0.0

    def run(self) -> None:
        for b in range(BATCHES):
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
            self.progress = (b + 1) / BATCHES
            time.sleep(0.04)


def start(config: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "occam.cli",
            "monitor",
            "--config",
            str(config),
            "--port",
            "0",
            "--host",
            "127.0.0.1",
        ],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        found = re.search(r"metrics on (http://\S+)", line)
        if found:
            threading.Thread(target=process.stderr.read, daemon=True).start()  # drain
            return process, found.group(1)
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"occam monitor did not start (exit {process.poll()})")


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        m[0]: float(m[1])
        for m in re.findall(r"^(occam_\w+(?:\{[^}]*\})?) (\S+)$", text, flags=re.M)
    }


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
    checkpoint = logs / ".occam-monitor" / "state.pkl"

    writer = Writer(logs)
    writer.start()
    kills = 0
    for kill_at in (0.3, 0.65):  # two kills while the writer is still writing
        process, url = start(config, env)
        before = read_totals(url)[0]
        while writer.is_alive() and (writer.progress < kill_at or read_totals(url)[0] <= before):
            time.sleep(0.01)
        assert writer.is_alive(), "the writer finished before the kill: make it write longer"
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        kills += 1
    process, url = start(config, env)
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
    assert state.malformed == c["malformed"] and kills == 2
