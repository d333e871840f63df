#!/usr/bin/env bash
# The main job (README): set up, then `occam demo`: train with `occam train` when no model is
# promoted yet, issue an API key (`occam keys add`), start the service, the monitor and
# Prometheus (installed here when missing), replay held-out then production traffic one monitor
# window at a time with feedback, say what the truth, the monitor and Prometheus' alerts show,
# and draw reports/timeline.html. Extra arguments go to `occam demo` (e.g. --keep-running).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_prometheus.sh || echo "Prometheus could not be installed: the demo runs without alerts" >&2
export BENTOML_DO_NOT_TRACK=True
exec .venv/bin/occam demo --config occam.yaml "$@"
