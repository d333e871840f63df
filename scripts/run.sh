#!/usr/bin/env bash
# The main job (README): set up, then train on the bundled flights data with occam.yaml.
# Extra arguments go to `occam train`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export BENTOML_DO_NOT_TRACK=True
exec .venv/bin/occam train --config occam.yaml "$@"
