"""The "model health" dashboard: valid for Grafana's dashboard schema (offline), wired to the
provisioned datasource, covering what ops needs, and every query runs on a real Prometheus."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.ops.promtools import ROOT, dashboard_queries, flat_panels, query

DASHBOARD = ROOT / "grafana" / "dashboards" / "model-health.json"
SCHEMA = ROOT / "grafana" / "schema" / "dashboard.schema.json"
DATASOURCES = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
#: Metrics the issue asks the dashboard to show (traffic, errors, latency, prediction mix and
#: abstentions, drift per feature vs threshold, drifted share vs threshold, prediction drift,
#: live metric vs goal, feedback coverage, data quality, model version and age, retraining).
REQUIRED_METRICS = [
    "bentoml_service_request_total",
    "bentoml_service_request_duration_seconds_bucket",
    "occam_service_predictions_total",
    "occam_abstention_ratio",
    "occam_feature_drift_threshold",
    "occam_feature_drifted",
    "occam_drifted_features_ratio",
    "occam_drift_share_threshold",
    "occam_prediction_drift",
    "occam_prediction_class_ratio",
    "occam_live_metric",
    "occam_live_labels_served_newest_timestamp_seconds",
    "occam_goal_threshold",
    "occam_feedback_coverage_ratio",
    "occam_missing_ratio",
    "occam_unseen_category_ratio",
    "occam_out_of_range_ratio",
    "occam_model_info",
    "occam_model_age_seconds",
    "occam_retrain_recommended",
    "occam_retrain_reason",
]


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def validator() -> jsonschema.Draft7Validator:
    schema = load(SCHEMA)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def panels() -> list[dict[str, Any]]:
    return [p for p in flat_panels(load(DASHBOARD)["panels"]) if p["type"] != "row"]


def test_dashboard_is_valid_against_the_grafana_schema() -> None:
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator().iter_errors(load(DASHBOARD))
    ]
    assert errors == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d["panels"][1].update(titel="typo"),
        lambda d: d.pop("schemaVersion"),
        lambda d: d["panels"][1]["gridPos"].update(w="wide"),
        lambda d: d["panels"][1].pop("type"),
    ],
    ids=["unknown-key", "no-schemaVersion", "bad-gridPos", "panel-without-type"],
)
def test_schema_catches_broken_dashboards(mutate: Any) -> None:
    broken = copy.deepcopy(load(DASHBOARD))
    mutate(broken)
    assert not validator().is_valid(broken)


def test_every_panel_and_query_uses_the_provisioned_datasource() -> None:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert source["type"] == "prometheus"
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"], panel["title"]


def test_panel_ids_and_titles_are_unique() -> None:
    every = flat_panels(load(DASHBOARD)["panels"])
    assert len({p["id"] for p in every}) == len(every)
    titles = [p["title"] for p in panels()]
    assert len(set(titles)) == len(titles)


def test_dashboard_shows_what_ops_needs() -> None:
    exprs = " ".join(expr for _, expr in dashboard_queries(DASHBOARD))
    missing = [m for m in REQUIRED_METRICS if m not in exprs]
    assert missing == []


def test_dashboard_queries_replace_macros() -> None:
    queries = dashboard_queries(DASHBOARD)
    assert len(queries) == sum(len(p["targets"]) for p in panels())
    assert any("[1m]" in expr for _, expr in queries)
    assert all("$" not in expr for _, expr in queries)
    custom = dashboard_queries(DASHBOARD, {"$__rate_interval": "30s"})
    assert any("[30s]" in expr for _, expr in custom)


def test_dashboard_queries_refuse_unknown_variables(tmp_path: Path) -> None:
    board = load(DASHBOARD)
    board["panels"][1]["targets"][0]["expr"] = 'up{job="$job"}'
    path = tmp_path / "board.json"
    path.write_text(json.dumps(board))
    with pytest.raises(ValueError, match=r"\$job"):
        dashboard_queries(path)


def test_every_query_runs_on_a_real_prometheus(empty_prometheus: int) -> None:
    failures = []
    for title, expr in dashboard_queries(DASHBOARD):
        answer = query(empty_prometheus, expr)
        if answer["status"] != "success":
            failures.append((title, expr, answer.get("error")))
    assert failures == []


def test_panels_fit_the_grid_without_overlapping() -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in flat_panels(load(DASHBOARD)["panels"]):
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
