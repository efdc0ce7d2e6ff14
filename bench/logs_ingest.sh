#!/usr/bin/env bash
# One command: builds berth (release), installs moto[server] from PyPI into .cache/bench/moto-venv (once),
# and runs bench/logs_ingest.py (see its docstring): PutLogEvents throughput and GetLogEvents /
# FilterLogEvents latency of berth and of moto_server, side by side. No Docker needed.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${BERTH_BIN:-}" ] || cargo build --release -p berth
VENV="${BERTH_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || { echo "no venv at $VENV (scripts/test creates it)" >&2; exit 1; }
MOTO_VENV=.cache/bench/moto-venv
MOTO_VERSION=5.2.5
if ! "$MOTO_VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install -q "moto[server]==$MOTO_VERSION"
fi
export MOTO_SERVER="$PWD/$MOTO_VENV/bin/moto_server"
exec "$VENV/bin/python" bench/logs_ingest.py "$@"
