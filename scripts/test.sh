#!/usr/bin/env bash
# The test command (README; `.ci/run` calls it): set up, then lint, type-check and test.
# Installs Debian's prometheus/promtool, amtool and chromium when missing (the tests start a real
# Prometheus and check rendered pages in a headless browser).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
bash scripts/install_prometheus.sh --browser
export BENTOML_DO_NOT_TRACK=True
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
