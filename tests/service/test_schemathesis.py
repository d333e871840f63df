"""Schemathesis against a real `occam serve`: at least 1,000 generated requests from the
service's own /docs.json, every check schemathesis has, and never a 5xx.

No check is excluded: BentoML's generated spec alone would fail `positive_data_acceptance`
(rows typed as any object, the request body optional) and `status_code_conformance` (no 202,
413, 415); `service.openapi` documents the served bundle's exact rows and the real answers.

Needs the dev dependency `schemathesis` (the `st` command) in the environment.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import occam_serve, serving_config

pytestmark = pytest.mark.integration
MIN_CASES = 1000


def test_no_generated_request_gets_a_5xx_or_breaks_the_spec(trained: Any, tmp_path: Path) -> None:
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
    if st is None:
        pytest.fail("schemathesis is needed: .venv/bin/pip install schemathesis")
    report = tmp_path / "schemathesis.json"
    with occam_serve(serving_config(trained, tmp_path)) as server:
        command = [
            st, "run", f"{server.url}/docs.json",
            "--checks", "all",
            "--max-examples", "500",
            "--seed", "20240601",
            "--generation-database", "none",
            "--request-timeout", "30",
            "--no-color",
            "--report", "json", "--report-json-path", str(report),
        ]  # fmt: skip
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=900,
        )
        status = server.process.poll()
    assert status is None, "the server died during the run"
    summary = json.loads(report.read_text())
    assert result.returncode == 0, result.stdout[-6000:]
    assert summary["failures"] == [] and summary["errors"] == []
    assert summary["test_cases"]["generated"] >= MIN_CASES, summary["test_cases"]
    assert summary["operations"]["tested"] >= 7  # predict, feedback, model and the probes
