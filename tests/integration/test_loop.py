"""The loop's moving parts on real processes: a real `occam serve` (hot swap on its poll) and a
real `occam monitor`; `occam promote` and `occam rollback` change what is served, and the
monitor follows both without a restart: it watches the served model, starts its windows
afresh, and keeps the other model's rows out."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from occam.loopback import http_json, replay, sample, scrape
from tests.conftest import ROOT
from tests.monitoring import monitor_process
from tests.service.conftest import occam_serve, serving_config
from tests.service.test_swap import _bundles
from training.data import load_frame

pytestmark = pytest.mark.integration


def _wait(what: str, done: Callable[[], bool], timeout: float = 90) -> None:
    """Poll `done` until true; fail naming `what` if it never is (no assertion on time)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.2)


def _occam(config: Path, env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "occam.cli", *args, "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_monitor_follows_a_promotion_and_a_rollback_without_a_restart(
    trained: Any, tmp_path: Path
) -> None:
    name = "occam-test-follow"
    first, second = _bundles(trained, name, 2)
    config = serving_config(trained, tmp_path, model_name=name, reload_interval_seconds=0.2)
    raw = yaml.safe_load(config.read_text())
    raw["monitoring"] = {**raw.get("monitoring", {}), "state_dir": str(tmp_path / "state"),
                         "poll_interval_seconds": 0.1, "check_interval_seconds": 0.5}  # fmt: skip
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**os.environ, "OCCAM_AUDIT_LOG": str(tmp_path / "audit.jsonl")}
    frame = load_frame(ROOT / "data" / "flights.csv.gz")
    rows = frame[pd.to_datetime(frame["scheduled_departure"]) >= "2013-06-01"].head(900)
    features = first.schema.names
    sent = 0

    with occam_serve(config, OCCAM_AUDIT_LOG=env["OCCAM_AUDIT_LOG"]) as server:
        monitor, url = monitor_process.start(config, env)
        try:

            def send(part: pd.DataFrame, version: str) -> None:
                nonlocal sent
                stats = replay(server.url, part, features, "late", feedback_share=0.5, seed=sent)
                assert stats.rejected_requests == 0
                assert set(stats.versions) == {version}
                sent += len(part)

            def watching(version: str, window: int) -> Callable[[], bool]:
                def done() -> bool:
                    samples = scrape(url)
                    read = sample(samples, "occam_records_read_total", kind="prediction")
                    return (
                        read == sent
                        and sample(samples, "occam_model_info", model_version=version) == 1
                        and sample(samples, "occam_window_rows") == window
                    )

                return done

            def served(version: str) -> Callable[[], bool]:
                return lambda: http_json(f"{server.url}/model")[1].get("version") == version

            send(rows.iloc[:300], first.version)
            _wait(f"the monitor watches {first.version}", watching(first.version, 300))

            _occam(config, env, "promote", second.tag, "--reason", "test: promote")
            _wait(f"the service serves {second.version}", served(second.version))
            send(rows.iloc[300:600], second.version)
            _wait(f"the monitor follows {second.version}", watching(second.version, 300))

            _occam(config, env, "rollback", "--reason", "test: roll back")
            _wait(f"the service serves {first.version} again", served(first.version))
            send(rows.iloc[600:800], first.version)
            # the older model again, its window afresh: only the rows since the rollback
            _wait(f"the monitor follows {first.version} back", watching(first.version, 200))
            samples = scrape(url)
            assert sample(samples, "occam_model_info", model_version=second.version) is None
            assert monitor.poll() is None  # the same process all along
        finally:
            monitor.terminate()
            monitor.wait(timeout=30)
