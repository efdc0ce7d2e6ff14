#!/usr/bin/env bash
# One command: builds berth (release) and runs bench/fleet.py (see its docstring): `berth server` +
# `berth sim --instances 5000`, 50,000 tasks via 10 services and via RunTask (count 10).
# Scale with FLEET_INSTANCES / FLEET_TASKS / FLEET_SERVICES. Loopback only; bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p berth
VENV="${BERTH_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || { echo "no venv at $VENV (scripts/test creates it)" >&2; exit 1; }
# 5,000 held long-polls = 5,000 connections on each side.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
"$VENV/bin/python" bench/fleet.py "$@"
