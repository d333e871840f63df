"""The alert rules: promtool checks and unit tests, each rule's metadata, and its runbook."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.promtools import DEFAULT_RUNBOOK_BASE, ROOT, render_rules

RULES = ROOT / "prometheus" / "alerts.yml"
RULE_TESTS = sorted((ROOT / "prometheus" / "tests").glob("*.test.yml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
SEVERITIES = {"critical", "warning"}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def alert_rules(path: Path = RULES) -> list[dict[str, Any]]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def runbook_sections() -> dict[str, str]:
    """Runbook text by GitHub anchor of its `## ` heading."""
    sections: dict[str, str] = {}
    anchor = None
    for line in RUNBOOKS.read_text().splitlines():
        if line.startswith("## "):
            anchor = re.sub(r"[^\w\- ]", "", line[3:].strip().lower()).replace(" ", "-")
            sections[anchor] = ""
        elif anchor is not None:
            sections[anchor] += line + "\n"
    return sections


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=ROOT)


def test_promtool_check_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(promtool: str) -> None:
    assert RULE_TESTS, "no prometheus/tests/*.test.yml"
    result = run(promtool, "test", "rules", *RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown staying quiet"
    assert (firing | quiet) - names == set(), "tests name alerts that do not exist"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_rule_has_for_severity_and_annotations(rule: dict[str, Any]) -> None:
    assert DURATION.match(str(rule.get("for", ""))), "every rule needs a `for:` duration"
    assert rule["labels"]["severity"] in SEVERITIES
    notes = rule["annotations"]
    assert notes["summary"].strip() and notes["description"].strip()
    assert "$labels" in notes["description"] + notes["summary"] or "$value" in notes["description"]
    assert notes["runbook_url"] == f"{DEFAULT_RUNBOOK_BASE}#{rule['alert'].lower()}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_runbook_section_exists_and_says_what_to_do(rule: dict[str, Any]) -> None:
    anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
    sections = runbook_sections()
    assert anchor in sections, f"docs/runbooks.md has no '## {rule['alert']}'"
    for part in ("**Meaning.**", "**Check.**", "**Act.**"):
        assert part in sections[anchor], f"{rule['alert']}: runbook lacks {part}"


def test_runbooks_have_no_stale_sections() -> None:
    assert set(runbook_sections()) == {rule["alert"].lower() for rule in alert_rules()}


def test_rules_compare_against_exported_thresholds() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    assert "occam_goal_threshold" in exprs["OccamLiveMetricBelowGoal"]
    assert "occam_live_min_labels" in exprs["OccamLiveMetricBelowGoal"]
    assert "occam_max_model_age_seconds" in exprs["OccamModelTooOld"]
    for expr in exprs.values():  # no hard-coded drift, goal or label thresholds
        assert not re.search(r"(drift|live_metric|live_labels)\S*\s*[<>]=?\s*[0-9]", expr)


def test_render_rules_sets_every_for_and_keeps_the_file_valid(
    tmp_path: Path, promtool: str
) -> None:
    out = render_rules(RULES, tmp_path / "alerts.yml", for_override="5s")
    assert {rule["for"] for rule in alert_rules(out)} == {"5s"}
    assert [r["expr"] for r in alert_rules(out)] == [r["expr"] for r in alert_rules()]
    assert out.read_text().startswith("# Occam alert rules")  # comments kept
    result = run(promtool, "check", "rules", out)
    assert result.returncode == 0, result.stdout + result.stderr


def test_render_rules_sets_one_rules_for_over_the_common_one(tmp_path: Path, promtool: str) -> None:
    out = render_rules(
        RULES, tmp_path / "alerts.yml", for_override="5s", for_alerts={"OccamServiceDown": "30s"}
    )
    durations = {rule["alert"]: rule["for"] for rule in alert_rules(out)}
    assert durations.pop("OccamServiceDown") == "30s"
    assert set(durations.values()) == {"5s"}
    # without a common override the others keep the shipped durations
    out = render_rules(RULES, tmp_path / "kept.yml", for_alerts={"OccamSidecarDown": "30s"})
    for rule, source in zip(alert_rules(out), alert_rules(), strict=True):
        assert rule["for"] == ("30s" if rule["alert"] == "OccamSidecarDown" else source["for"])
    result = run(promtool, "check", "rules", out)
    assert result.returncode == 0, result.stdout + result.stderr


def test_render_rules_refuses_an_unknown_alert_or_a_bad_duration_for_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no alert named OccamNope"):
        render_rules(RULES, tmp_path / "a.yml", for_alerts={"OccamNope": "30s"})
    with pytest.raises(ValueError, match="OccamServiceDown='half a minute'"):
        render_rules(RULES, tmp_path / "a.yml", for_alerts={"OccamServiceDown": "half a minute"})
    result = run(sys.executable, ROOT / "scripts" / "render_rules.py", RULES, tmp_path / "a.yml",
                 "--for-alert", "OccamServiceDown")  # fmt: skip
    assert result.returncode == 2 and "expected NAME=DURATION" in result.stderr


def test_render_rules_rebases_runbook_links(tmp_path: Path) -> None:
    base = "https://wiki.example.com/ml/occam-runbooks.md"
    out = render_rules(RULES, tmp_path / "alerts.yml", runbook_base=base)
    for rule, source in zip(alert_rules(out), alert_rules(), strict=True):
        assert rule["annotations"]["runbook_url"] == f"{base}#{rule['alert'].lower()}"
        assert rule["for"] == source["for"]


def test_render_rules_rejects_a_bad_duration(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="5 seconds"):
        render_rules(RULES, tmp_path / "alerts.yml", for_override="5 seconds")
