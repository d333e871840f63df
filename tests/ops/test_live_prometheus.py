"""The shipped rules (with short `for:`) and every dashboard query on a real Prometheus that
scrapes stand-in exporters: the drift, live-metric and retrain alerts fire with their features
and reasons named, the health alerts stay quiet, and every panel query returns data."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ops.fake_exporters import monitor_registry, serve, service_registry
from tests.ops.promtools import (
    ROOT,
    alerts,
    dashboard_queries,
    free_port,
    query,
    render_rules,
    start_prometheus,
    stop_prometheus,
    write_prometheus_config,
)

EXPECTED = {
    "OccamFeatureDrift",
    "OccamModelAtRisk",
    "OccamLiveMetricBelowGoal",
    "OccamRetrainRecommended",
}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp: Path = tmp_path_factory.mktemp("prometheus-live")
    rules = render_rules(ROOT / "prometheus" / "alerts.yml", tmp / "alerts.yml", "1s")
    with (
        serve(service_registry(), free_port()) as service,
        serve(monitor_registry(), free_port()) as monitor,
    ):
        config = write_prometheus_config(tmp / "prometheus.yml", service, monitor, rules)
        port = free_port()
        proc = start_prometheus(tmp, port, config)
        try:
            wait_for(lambda: {a["labels"]["alertname"] for a in alerts(port)} >= EXPECTED)
            yield port
        finally:
            stop_prometheus(proc)


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.5)


def firing(port: int) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for alert in alerts(port):
        found.setdefault(alert["labels"]["alertname"], []).append(alert)
    return found


def test_only_the_expected_alerts_fire(prometheus: int) -> None:
    assert set(firing(prometheus)) == EXPECTED


def test_drift_alert_names_the_drifted_features(prometheus: int) -> None:
    (alert,) = firing(prometheus)["OccamModelAtRisk"]
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["job"] == "occam-monitor"
    description = alert["annotations"]["description"]
    assert "Reasons: estimate, live_metric." in description
    assert "balanced_accuracy >= 0.620 (estimate 0.610, live 0.660)" in description
    assert "relies on them: dewp, temp." in description


def test_live_metric_alert_is_per_goal_metric(prometheus: int) -> None:
    (alert,) = firing(prometheus)["OccamLiveMetricBelowGoal"]
    assert alert["labels"]["metric"] == "roc_auc"
    assert "under the goal of 0.7" in alert["annotations"]["description"]


def test_retrain_alert_lists_its_reasons(prometheus: int) -> None:
    (alert,) = firing(prometheus)["OccamRetrainRecommended"]
    assert "Reasons: estimate, live_metric." in alert["annotations"]["description"]


def test_every_dashboard_query_returns_data(prometheus: int) -> None:
    wait_for(lambda: query(prometheus, "count(up == 1)")["data"]["result"][0]["value"][1] == "2")
    queries = dashboard_queries(ROOT / "grafana" / "dashboards" / "model-health.json")

    def empty_panels() -> list[tuple[str, str]]:
        empty = []
        for title, expr in queries:
            answer = query(prometheus, expr)
            assert answer["status"] == "success", (title, expr, answer.get("error"))
            if not answer["data"]["result"]:
                empty.append((title, expr))
        return empty

    # rate() needs two scrapes in its range; on a loaded machine the second can lag the first
    deadline = time.monotonic() + 30
    while empty_panels() and time.monotonic() < deadline:
        time.sleep(1)
    assert empty_panels() == []
