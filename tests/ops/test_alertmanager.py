"""The example Alertmanager config: valid for amtool, and routes each severity the rules use."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.ops.promtools import ROOT

CONFIG = ROOT / "prometheus" / "alertmanager.yml"
RULES = ROOT / "prometheus" / "alerts.yml"


def amtool_run(amtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([amtool, *args], capture_output=True, text=True, cwd=ROOT)


def test_amtool_check_config(amtool: str) -> None:
    result = amtool_run(amtool, "check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("severity", "receiver"), [("critical", "occam-pager"), ("warning", "occam-ticket")]
)
def test_severity_routes_to_its_receiver(amtool: str, severity: str, receiver: str) -> None:
    result = amtool_run(
        amtool, "config", "routes", "test", f"--config.file={CONFIG}",
        f"severity={severity}", "alertname=OccamModelAtRisk", "job=occam-monitor",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.split() == [receiver]


def test_rules_use_only_routed_severities() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    used = {rule["labels"]["severity"] for group in groups for rule in group["rules"]}
    assert used <= {"critical", "warning"}


def test_receivers_are_webhooks() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    for receiver in config["receivers"]:
        assert receiver["webhook_configs"][0]["url"].startswith("http")
