#!/usr/bin/env bash
# One command: builds berth (release) and runs bench/services.py (see its docstring). Needs Docker and
# berth-test/busybox:latest (scripts/test-images.sh builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p berth
VENV="${BERTH_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || { echo "no venv at $VENV (scripts/test creates it)" >&2; exit 1; }
# Safety net: if this run put the engine into swarm mode and the script dies without leaving, leave.
swarm_before=$(docker info --format '{{.Swarm.LocalNodeState}}')
leave() {
  if [ "$swarm_before" = inactive ] && [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != inactive ]; then
    docker swarm leave --force >/dev/null 2>&1 || true
  fi
}
trap leave EXIT
"$VENV/bin/python" bench/services.py "$@"
