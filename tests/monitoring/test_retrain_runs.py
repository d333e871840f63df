"""The monitor starts `occam retrain`: one run at a time, its outcome read from the exit code,
counted and exported (real commands, not mocks)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from monitoring.exporter import MonitorCollector
from monitoring.notify import Notifier
from monitoring.state import Runs
from tests.monitoring.test_exporter import new_state, status
from tests.monitoring.test_notify import rec, wait_for


def _exit(code: int) -> list[str]:
    return [sys.executable, "-c", f"raise SystemExit({code})"]


def test_exit_codes_are_outcomes_and_exported() -> None:
    outcomes = {}
    for code in (0, 4, 3):
        notifier = Notifier(_exit(code), None, 0)
        assert notifier.update(rec("data_drift"), Runs(), 1.0, "v1")
        wait_for(lambda n=notifier: sum(n.runs.values()) == 1)  # type: ignore[misc]
        outcomes[code] = {k: v for k, v in notifier.runs.items() if v}
    assert outcomes == {0: {"promoted": 1}, 4: {"not_promoted": 1}, 3: {"failed": 1}}
    registry = CollectorRegistry()
    runs = {"promoted": 2, "not_promoted": 1, "failed": 1}
    MonitorCollector(lambda: _with_runs(runs), registry=registry)
    text = generate_latest(registry).decode()
    assert 'occam_retrain_runs_total{outcome="failed"} 1.0' in text
    assert 'occam_retrain_runs_total{outcome="promoted"} 2.0' in text


def _with_runs(runs: dict[str, int]):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return replace(status(None, None, new_state()), retrain_runs=runs)


def test_a_failed_run_counts_as_a_failed_notification_and_a_timeout_fails() -> None:
    notifier = Notifier([sys.executable, "-c", "import time; time.sleep(30)"], None, 0,
                        command_timeout_seconds=0.5)  # fmt: skip
    assert notifier.update(rec("data_drift"), Runs(), 1.0, "v1")
    wait_for(lambda: notifier.failed == 1)
    assert notifier.runs["failed"] == 1 and notifier.sent == 0


def test_at_most_one_run_at_a_time(tmp_path: Path) -> None:
    release = threading.Event()
    running, most = [0], [0]
    lock = threading.Lock()

    def run(argv: object, env: object) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(30)
        with lock:
            running[0] -= 1
        return 0

    notifier = Notifier(["occam", "retrain"], None, 0, run_command=run)
    runs = Runs()
    assert notifier.update(rec("data_drift"), runs, 1.0, "v1")
    wait_for(lambda: running[0] == 1)
    assert notifier.update(rec("data_drift", "live_metric"), runs, 2.0, "v1")
    release.set()
    wait_for(lambda: notifier.runs["promoted"] == 2)
    assert most[0] == 1 and notifier.runs["promoted"] == 2
