#!/usr/bin/env bash
# The main job (README): set up, then `occam demo`: train on the bundled flights data when no
# model is promoted yet, start the service, the monitor and Prometheus (installed here when
# missing), replay held-out then production traffic with feedback, and narrate what the monitor
# concludes. Extra arguments go to `occam demo` (e.g. --keep-running).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_prometheus.sh || echo "Prometheus could not be installed: the demo runs without alerts" >&2
export BENTOML_DO_NOT_TRACK=True
exec .venv/bin/occam demo --config occam.yaml "$@"
