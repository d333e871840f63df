#!/usr/bin/env bash
# Create .venv (Python 3.11) and install Occam with pinned versions (constraints.txt).
# Idempotent: re-running only installs what changed. Usage: bash scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
extras=""
[ "${1:-}" = "--dev" ] && extras="[dev]"
stamp=".venv/.occam-installed${extras}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    echo "setup: installing Occam and its pinned dependencies into .venv (a minute or two) ..." >&2
    log=$(mktemp)
    if ! { .venv/bin/python -m pip install --upgrade pip \
           && .venv/bin/python -m pip install -c constraints.txt -e ".${extras}"; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "setup: pip install failed (full log: $log)" >&2
        exit 1
    fi
    rm -f "$log"
    touch "$stamp"
fi
