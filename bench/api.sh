#!/usr/bin/env bash
# One command: builds berth and the load generator (release) and runs bench/api.py (see its docstring).
# fakecloud (cargo install) and moto (pip) are installed once into .cache/bench/, never in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p berth -p berth-loadgen
mkdir -p .cache/bench
if [ ! -x .cache/bench/fakecloud/bin/fakecloud ]; then
  cargo install fakecloud --locked --root .cache/bench/fakecloud
fi
if [ ! -x .cache/bench/moto-venv/bin/moto_server ]; then
  python3 -m venv .cache/bench/moto-venv
  .cache/bench/moto-venv/bin/pip install -q 'moto[server]'
fi
VENV="${BERTH_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || { echo "no venv at $VENV (scripts/test creates it)" >&2; exit 1; }
exec "$VENV/bin/python" bench/api.py "$@"
