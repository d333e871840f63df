"""Fixtures for the ops tests: the Prometheus tools, and a real Prometheus with no targets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.promtools import (
    free_port,
    require_tool,
    start_prometheus,
    stop_prometheus,
    write_prometheus_config,
)


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return require_tool("amtool")


@pytest.fixture(scope="module")
def empty_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """Port of a real Prometheus with no targets and no rules: it parses and runs any query."""
    tmp: Path = tmp_path_factory.mktemp("prometheus-empty")
    config = write_prometheus_config(tmp / "prometheus.yml", None, None, None)
    port = free_port()
    proc = start_prometheus(tmp, port, config)
    try:
        yield port
    finally:
        stop_prometheus(proc)
