"""Helpers for tests that need Prometheus tooling: find promtool/amtool/prometheus, render the
shipped rules with short `for:`, write a scrape config, run a real Prometheus on a loopback port,
query it, and list the dashboard's queries with Grafana's macros replaced.

Also used by the end-to-end integration test, so nothing here depends on tests/ops fixtures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from occam.loopback import free_port, write_prometheus_config
from scripts.render_rules import DEFAULT_RUNBOOK_BASE, render_rules

__all__ = [
    "DEFAULT_RUNBOOK_BASE",
    "ROOT",
    "alerts",
    "dashboard_queries",
    "flat_panels",
    "free_port",
    "query",
    "render_rules",
    "require_tool",
    "start_prometheus",
    "stop_prometheus",
    "write_prometheus_config",
]

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "bash scripts/install_prometheus.sh (Debian: prometheus, prometheus-alertmanager)"
#: Grafana macros and the concrete values they get when a query runs outside Grafana.
MACROS = {
    "$__rate_interval": "1m",
    "${__rate_interval}": "1m",
    "$__interval": "15s",
    "${__interval}": "15s",
    "$__range": "5m",
    "${__range}": "5m",
}


def require_tool(name: str) -> str:
    """Path of the executable `name`. Missing: fails under CI (CI=true installs it), else skips."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found; install it with: {INSTALL_HINT}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)
    return path


def start_prometheus(
    tmpdir: str | Path, port: int, config: str | Path, timeout: float = 30.0
) -> subprocess.Popen[bytes]:
    """Start the real `prometheus` on 127.0.0.1:`port` with `config`, its TSDB and its log
    (prometheus.log) under `tmpdir`, and return once /-/ready answers. The caller stops it
    (`stop_prometheus`). Raises RuntimeError with the log's tail if it exits or is not ready.
    """
    binary = require_tool("prometheus")
    tmp = Path(tmpdir)
    log_path = tmp / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1) as resp:
                if resp.status == 200:
                    return proc
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    stop_prometheus(proc)
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"prometheus on port {port} not ready (exit {proc.returncode}):\n{tail}")


def stop_prometheus(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a Prometheus from `start_prometheus`: SIGTERM, then SIGKILL after `timeout` s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _get(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read()
    except urllib.error.HTTPError as err:  # 400/422 carry Prometheus' JSON error
        body = err.read()
    result: dict[str, Any] = json.loads(body)
    return result


def query(port: int, expr: str) -> dict[str, Any]:
    """Prometheus' whole JSON answer to the instant query `expr` (check ["status"] ==
    "success"; the samples are in ["data"]["result"])."""
    return _get(f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))


def alerts(port: int, state: str | None = "firing") -> list[dict[str, Any]]:
    """Alerts from /api/v1/alerts in `state` ("firing", "pending"; None: all), each with
    "labels", "annotations", "state" and "value"."""
    found: list[dict[str, Any]] = _get(f"http://127.0.0.1:{port}/api/v1/alerts")["data"]["alerts"]
    return [a for a in found if state is None or a["state"] == state]


def dashboard_queries(
    path: str | Path, macros: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel of a dashboard JSON (rows' nested
    panels too), with Grafana's macros replaced by concrete values (`MACROS`, updated with
    `macros`). Raises ValueError if a query still holds a `$` variable afterwards.
    """
    values = MACROS | (macros or {})
    # Longest names first, so "$__interval" does not eat the start of "$__interval_ms".
    names = sorted(values, key=len, reverse=True)
    dashboard = json.loads(Path(path).read_text())
    found = []
    for panel in flat_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if not expr:
                continue
            for name in names:
                expr = expr.replace(name, values[name])
            if "$" in expr:
                raise ValueError(f"panel {panel.get('title')!r}: unreplaced variable in {expr!r}")
            found.append((str(panel.get("title", "")), expr))
    return found


def flat_panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every panel of a dashboard's `panels`, with the panels nested in rows after their row."""
    flat = []
    for panel in panels:
        flat.append(panel)
        flat.extend(flat_panels(panel.get("panels", [])))
    return flat
