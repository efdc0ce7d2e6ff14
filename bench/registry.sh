#!/usr/bin/env bash
# One command: docker push/pull of a ~100 MB multi-layer image to berth's registry and to the CNCF
# distribution registry (Debian's `docker-registry`, installed here for the benchmark's own use) on
# this machine, in one run. Builds berth (release), then runs bench/registry.py (see its docstring).
# Needs Docker and berth-test/busybox:latest (scripts/test-images.sh builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v docker-registry >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null
fi
cargo build --release -p berth
VENV="${BERTH_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || { echo "no venv at $VENV (scripts/test creates it)" >&2; exit 1; }
BERTH_BIN="${BERTH_BIN:-${CARGO_TARGET_DIR:-target}/release/berth}" "$VENV/bin/python" bench/registry.py "$@"
