"""Helpers of bench/bench_monitor.py: the sidecar's cost, reading a backlog (ingest rate) and
following a log written at a steady rate (CPU and memory of a real `occam monitor`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import yaml

from bench.monitor_replay import log_bytes, prediction_dicts
from monitoring.reader import gc_paused, read_new
from monitoring.sidecar import Sidecar
from monitoring.state import MonitorState
from occam.config import OccamConfig
from occam.records import segment_name


def ingest_rate(bundle: Any, config: OccamConfig, rows: pd.DataFrame, work: Path) -> dict[str, Any]:
    """Records/s from log files to updated metrics: the sidecar reads a backlog of ~360,000
    records (2 workers, 20% feedback) with its checks on, after its reference is loaded."""
    folder = work / "ingest-logs"
    folder.mkdir()
    cfg = config.model_copy(
        update={
            "serving": config.serving.model_copy(update={"log_dir": folder}),
            "monitoring": config.monitoring.model_copy(update={"state_dir": work / "state"}),
        }
    )
    proba = bundle.load_pipeline().predict_proba(bundle.schema.coerce(rows))
    base = prediction_dicts(bundle, rows, proba, "x")
    written = 0
    for worker in (0, 1):
        chunks = []
        for copy in range(150_000 // len(base) + 1):
            copies = [r | {"id": f"w{worker}-{copy}-{r['id']}"} for r in base]
            chunks.append(log_bytes(copies, feedback_every=5))
            written += len(copies) + (len(copies) + 4) // 5
        (folder / segment_name(worker, 100 + worker, 0)).write_bytes(b"".join(chunks))
    size = sum(p.stat().st_size for p in folder.iterdir())
    sidecar = Sidecar(cfg, find_bundle=lambda version: bundle)
    sidecar._load(None)  # the reference is built once at start-up, not per record
    started = time.perf_counter()
    while sidecar.step():
        pass
    seconds = time.perf_counter() - started
    read = sum(sidecar.state.records.values())
    state = MonitorState.new(1000, 200, 100_000, 1000)
    started = time.perf_counter()
    more = True
    while more:
        with gc_paused():
            batch = read_new(folder, state.segments)
            state.apply(batch)
            more = batch.more
            del batch
    reader_only = time.perf_counter() - started
    return {
        "records": read,
        "written": written,
        "megabytes": round(size / 1e6, 1),
        "seconds": round(seconds, 2),
        "records_per_second": round(read / seconds),
        "checks": sidecar.checks,
        "reader_only_records_per_second": round(read / reader_only),
    }


def follow_live_log(
    bundle: Any,
    config: OccamConfig,
    rows: pd.DataFrame,
    rate: int,
    work: Path,
    seconds: float = 20.0,
) -> dict[str, Any]:
    """CPU and memory of a real `occam monitor` process while a writer appends `rate`
    records/s (every 50 ms, like the service's log thread)."""
    folder = work / f"live-{rate}"
    raw = json_config(config, folder)
    path = work / f"live-{rate}.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "occam.cli",
            "monitor",
            "--config",
            str(path),
            "--port",
            "0",
            "--host",
            "127.0.0.1",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=os.environ.copy(),
    )
    assert proc.stderr is not None
    url = None
    while url is None:
        line = proc.stderr.readline()
        found = re.search(r"metrics on (http://\S+)", line)
        url = found.group(1) if found else url
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    base = prediction_dicts(
        bundle, rows, bundle.load_pipeline().predict_proba(bundle.schema.coerce(rows)), "live"
    )
    per_tick = max(1, rate // 20)
    written, stop = [0], threading.Event()

    def writer() -> None:
        with open(folder / segment_name(0, 1, 0), "ab", buffering=0) as handle:
            i = 0
            while not stop.is_set():
                batch = [base[(i + j) % len(base)] | {"id": f"l{i + j}"} for j in range(per_tick)]
                handle.write(log_bytes(batch, feedback_every=0))
                written[0] += per_tick
                i += per_tick
                time.sleep(0.05)

    thread = threading.Thread(target=writer, daemon=True)
    time.sleep(8)  # start-up: imports, reference and calibration
    thread.start()
    monitor = psutil.Process(proc.pid)
    monitor.cpu_percent(None)
    cpu, rss = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        cpu.append(monitor.cpu_percent(1.0))
        rss.append(monitor.memory_info().rss)
    stop.set()
    thread.join()
    time.sleep(2)
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    read = float(re.search(r'occam_records_read_total\{kind="prediction"\} (\S+)', text).group(1))  # type: ignore[union-attr]
    proc.terminate()
    proc.wait(30)
    return {
        "rate_records_per_second": per_tick * 20,
        "cpu_percent_of_one_core": round(float(np.mean(cpu)), 1),
        "rss_mb_max": round(max(rss) / 1e6),
        "written": written[0],
        "read": int(read),
    }


def json_config(config: OccamConfig, folder: Path) -> dict[str, Any]:
    raw = config.model_dump(mode="json")
    raw["serving"]["log_dir"] = str(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return raw
