#!/usr/bin/env bash
# One command: builds berth (release) and runs bench/ha.py (see its docstring): API write throughput and
# p99 with SQLite vs a 3-member local etcd next to raw etcd puts, and leader failover time. Needs etcd and
# etcdctl (scripts/test installs etcd-server and etcd-client); no Docker. About 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p berth
VENV="${BERTH_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || { echo "no venv at $VENV (scripts/test creates it)" >&2; exit 1; }
exec "$VENV/bin/python" bench/ha.py "$@"
