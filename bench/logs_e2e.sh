#!/usr/bin/env bash
# One command: builds berth (release) and runs bench/logs_e2e.py (see its docstring). Needs Docker and
# berth-test/busybox:latest (scripts/test-images.sh builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${BERTH_BIN:-}" ] || cargo build --release -p berth
VENV="${BERTH_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || { echo "no venv at $VENV (scripts/test creates it)" >&2; exit 1; }
exec "$VENV/bin/python" bench/logs_e2e.py "$@"
