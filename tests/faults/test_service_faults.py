"""Faults under a real `occam serve`: a worker killed with SIGKILL under load, a full disk.
Every answered record is in the log or counted as dropped, exactly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from http.client import HTTPException
from pathlib import Path
from typing import Any

import pytest

from monitoring.reader import read_new
from occam.records import segment_key
from tests.service.conftest import HeldOut, http, occam_serve, serving_config


class Load:
    """Client threads posting predictions (5 rows) and feedback for two of the answered rows,
    remembering every id the service answered (200 / 202)."""

    def __init__(self, url: str, rows: list[dict[str, Any]], label: str, threads: int) -> None:
        self.url, self.rows, self.label = url, rows, label
        self.predicted: set[str] = set()
        self.labelled: set[str] = set()
        self.failures = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(k,)) for k in range(threads)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(60)

    def answered(self) -> int:
        with self._lock:
            return len(self.predicted)

    def _run(self, k: int) -> None:
        i = k
        while not self.stop.is_set():
            start = (i * 5) % (len(self.rows) - 5)
            i += 7
            try:
                status, body = http(
                    "POST", f"{self.url}/predict", {"instances": self.rows[start : start + 5]}
                )
            except (OSError, HTTPException):  # the worker died mid-request or mid-answer
                self.failures += 1
                continue
            if status != 200:
                self.failures += 1
                continue
            ids = [p["id"] for p in body["predictions"]]
            with self._lock:
                self.predicted.update(ids)
            labels = {"labels": [{"id": ident, "label": self.label} for ident in ids[:2]]}
            try:
                status, _ = http("POST", f"{self.url}/feedback", labels)
            except (OSError, HTTPException):
                continue
            if status == 202:
                with self._lock:
                    self.labelled.update(ids[:2])


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def worker_pids(logs: Path) -> dict[int, int]:
    """{worker index: pid} of the workers that wrote a segment, the newest pid per worker."""
    found: dict[int, int] = {}
    for path in logs.iterdir() if logs.is_dir() else []:
        key = segment_key(path.name)
        if key is not None and path.stat().st_size > 0:
            found[key[0]] = key[1] if key[0] not in found else max(found[key[0]], key[1])
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def dropped_total(url: str) -> float:
    _, text = http("GET", f"{url}/metrics")
    found = re.search(r"^occam_service_log_dropped_records_total (\S+)$", text, flags=re.M)
    return float(found.group(1)) if found else 0.0


def test_a_worker_killed_under_load_loses_no_answered_record(
    trained: Any, tmp_path: Path, held_out: HeldOut
) -> None:
    config = serving_config(trained, tmp_path)  # log_durability: write (the default)
    logs = tmp_path / "logs"
    label = trained.bundle.classes[0]
    with occam_serve(config, workers=2) as server:
        with Load(server.url, held_out.instances, label, threads=4) as load:
            wait_until(lambda: len(worker_pids(logs)) == 2, 60, "both workers to log")
            wait_until(lambda: load.answered() >= 500, 120, "500 answered rows")
            victim = worker_pids(logs)[2]
            before = load.answered()
            os.kill(victim, signal.SIGKILL)  # mid-load: requests are in flight on it
            wait_until(lambda: not alive(victim), 10, "the worker to die")
            wait_until(lambda: load.answered() >= before + 500, 120, "500 more answered rows")
        dropped = dropped_total(server.url)
    batch = read_new(logs, {}, max_bytes=1 << 40)
    logged = {r["id"] for r in batch.predictions}
    labelled = {r["id"] for r in batch.feedback}
    victim_files = [p for p in logs.iterdir() if f"-p{victim}-" in p.name]
    assert victim_files and any(p.stat().st_size for p in victim_files)
    assert dropped == 0  # the surviving workers' count; the victim's died with it
    assert load.predicted - logged == set()  # every answered prediction is in the log
    assert load.labelled - labelled == set()  # and every accepted label
    assert batch.malformed <= 1  # at most the victim's last line, cut by the kill


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 256 KiB tmpfs (needs root to mount); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_counts_written_and_dropped_records_exactly(
    trained: Any, tmp_path: Path, held_out: HeldOut, small_disk: Path
) -> None:
    config = serving_config(trained, tmp_path)
    text = config.read_text().replace(str(tmp_path / "logs"), str(small_disk / "logs"))
    config.write_text(text)
    answered: list[str] = []
    with occam_serve(config, workers=1) as server:
        url = server.url
        extra = 0
        while extra < 20:  # until the disk is full: 20 requests that dropped rows
            start = (len(answered) * 3) % (len(held_out.instances) - 20)
            status, body = http(
                "POST", f"{url}/predict", {"instances": held_out.instances[start : start + 20]}
            )
            assert status == 200, body
            answered += [p["id"] for p in body["predictions"]]
            if dropped_total(url) > 0:
                extra += 1
            assert len(answered) < 100_000, "the disk never filled up"
        dropped = dropped_total(url)
    batch = read_new(small_disk / "logs", {}, max_bytes=1 << 40)
    logged = [r["id"] for r in batch.predictions]
    assert batch.malformed == 0 and batch.unread_bytes == 0  # no cut or merged line
    assert len(set(logged)) == len(logged) and set(logged) <= set(answered)
    assert len(logged) + dropped == len(answered)  # exact: written + dropped = answered
    assert dropped > 19 * 20  # the first request to hit the limit was partly written
