#!/usr/bin/env bash
# One command: builds berth and the load generator (release) and runs bench/soak.py (see its docstring).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p berth -p berth-loadgen
VENV="${BERTH_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || { echo "no venv at $VENV (scripts/test creates it)" >&2; exit 1; }
exec "$VENV/bin/python" bench/soak.py "$@"
