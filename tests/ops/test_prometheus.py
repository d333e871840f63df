"""The scrape config, the config helper for integration tests, and the shipped rules loaded by a
real Prometheus."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from tests.ops.promtools import (
    ROOT,
    alerts,
    free_port,
    query,
    render_rules,
    start_prometheus,
    stop_prometheus,
    write_prometheus_config,
)

CONFIG = ROOT / "prometheus" / "prometheus.yml"
RULES = ROOT / "prometheus" / "alerts.yml"
JOBS = {"occam-service", "occam-monitor"}


def check_config(promtool: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, cwd=ROOT
    )


def test_shipped_config_passes_promtool(promtool: str) -> None:
    result = check_config(promtool, CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shipped_config_scrapes_the_jobs_the_rules_select() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == JOBS
    rules = RULES.read_text()
    for job in JOBS:
        assert f'job="{job}"' in rules


def test_written_config_passes_promtool(tmp_path: Path, promtool: str) -> None:
    rules = render_rules(RULES, tmp_path / "alerts.yml", for_override="1s")
    path = write_prometheus_config(
        tmp_path / "prometheus.yml", "127.0.0.1:3000", "127.0.0.1:9108", rules
    )
    result = check_config(promtool, path)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(path.read_text())
    assert config["global"]["scrape_interval"] == "1s"
    assert {job["job_name"] for job in config["scrape_configs"]} == JOBS


def test_real_prometheus_fires_the_shipped_rules(tmp_path: Path, promtool: str) -> None:
    """With short `for:` and no targets, the "down" rules (which also catch absent targets)
    fire in a real Prometheus within seconds, and their annotations are rendered."""
    rules = render_rules(RULES, tmp_path / "alerts.yml", for_override="1s")
    config = write_prometheus_config(tmp_path / "prometheus.yml", None, None, rules)
    port = free_port()
    proc = start_prometheus(tmp_path, port, config)
    try:
        assert query(port, "vector(1)")["status"] == "success"
        deadline = time.monotonic() + 30
        firing: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline and len(firing) < 2:
            firing = {a["labels"]["alertname"]: a for a in alerts(port)}
            time.sleep(0.5)
    finally:
        stop_prometheus(proc)
    assert set(firing) == {"OccamServiceDown", "OccamSidecarDown"}
    assert firing["OccamSidecarDown"]["labels"]["job"] == "occam-monitor"
    assert "runbooks.md#occamsidecardown" in str(firing["OccamSidecarDown"]["annotations"])
