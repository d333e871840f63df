"""docker-compose.yml cannot run here, so its wiring is checked: it mounts exactly the files the
other ops tests check, at the paths the configs refer to."""

from __future__ import annotations

import posixpath
from typing import Any

import yaml

from occam.config import load_config
from tests.ops.promtools import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
TESTED_FILES = {
    "prometheus/prometheus.yml",
    "prometheus/alerts.yml",
    "prometheus/alertmanager.yml",
    "grafana/provisioning/datasources",
    "grafana/provisioning/dashboards",
    "grafana/dashboards",
}


def bind_mounts(service: str) -> dict[str, str]:
    """Container path -> repo-relative source, for a service's ./ bind mounts."""
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            mounts[target] = posixpath.normpath(source)
    return mounts


def host(target: str) -> str:
    return target.split("://")[-1].split(":")[0]


def test_compose_has_the_stack() -> None:
    assert {"service", "monitor", "prometheus", "alertmanager", "grafana"} <= set(SERVICES)


def test_mounts_exactly_the_tested_files_and_they_exist() -> None:
    sources = {src for name in SERVICES for src in bind_mounts(name).values()}
    assert sources == TESTED_FILES
    for source in sources:
        assert (ROOT / source).exists(), source


def test_prometheus_finds_its_rules_in_the_container() -> None:
    mounts = bind_mounts("prometheus")
    config_in_container = "/etc/prometheus/prometheus.yml"  # the image's default --config.file
    assert mounts[config_in_container] == "prometheus/prometheus.yml"
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    for rule_file in config["rule_files"]:
        in_container = posixpath.join(posixpath.dirname(config_in_container), rule_file)
        assert mounts.get(in_container) == "prometheus/alerts.yml"


def test_prometheus_targets_are_compose_services() -> None:
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"][0] for job in config["scrape_configs"]
    }
    assert host(targets["occam-service"]) == "service"
    command = SERVICES["service"]["command"].split()
    assert "--host" in command and command[command.index("--host") + 1] == "0.0.0.0"
    assert targets["occam-service"].endswith(f":{command[command.index('--port') + 1]}")
    assert host(targets["occam-monitor"]) == "monitor"
    monitor_port = load_config(ROOT / "occam.yaml").monitoring.port
    assert targets["occam-monitor"].endswith(f":{monitor_port}")
    (am,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert host(am) == "alertmanager"
    assert bind_mounts("alertmanager")["/etc/alertmanager/alertmanager.yml"] == (
        "prometheus/alertmanager.yml"
    )


def test_grafana_provisioning_points_at_the_mounted_dashboards() -> None:
    mounts = bind_mounts("grafana")
    providers = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "dashboards" / "occam.yml").read_text()
    )["providers"]
    (dashboards_dir,) = [t for t, s in mounts.items() if s == "grafana/dashboards"]
    assert [p["options"]["path"] for p in providers] == [dashboards_dir]
    for kind in ("datasources", "dashboards"):
        assert mounts[f"/etc/grafana/provisioning/{kind}"] == f"grafana/provisioning/{kind}"
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert posixpath.dirname(home) == dashboards_dir
    assert (ROOT / "grafana" / "dashboards" / posixpath.basename(home)).is_file()
    (source,) = yaml.safe_load(
        (ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    assert host(source["url"]) == "prometheus"


def test_image_copies_files_that_exist() -> None:
    dockerfile = SERVICES["service"]["build"]["dockerfile_inline"]
    copies = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    sources = [source for line in copies for source in line]
    assert {"pyproject.toml", "README.md", "occam.yaml", "occam", "monitoring"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
    assert SERVICES["monitor"]["image"] == SERVICES["service"]["image"]
