#!/usr/bin/env bash
# Proves what the README promises a fresh machine: building berth needs no `protoc` (the etcd client's
# gRPC code is kept in vendor/etcd-client), and the built binary starts `berth up` far enough to answer
# /_berth/health. Run by ./scripts/test after the build; BERTH_BIN names the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
BERTH_BIN=${BERTH_BIN:-target/debug/berth}

# 1. No build script in the graph generates protobuf code (that is what needs protoc).
if cargo tree --workspace --locked -e build,normal --prefix none 2>/dev/null \
     | grep -E '^(prost-build|tonic-build|tonic-prost-build|protoc-bin-vendored|protobuf-src) ' >/dev/null; then
  echo "a protobuf code generator is back in the build graph: a fresh machine would need protoc" >&2
  cargo tree --workspace --locked -e build -i prost-build >&2 || true
  exit 1
fi

# 2. The etcd crate builds with protoc out of reach: PROTOC unset, and a `protoc` first on PATH that
#    fails loudly if anything calls it.
POISON=$(mktemp -d)
UPDIR=$(mktemp -d)
cleanup() {
  [ -n "${UP_PID:-}" ] && kill "$UP_PID" 2>/dev/null && wait "$UP_PID" 2>/dev/null || true
  rm -rf "$POISON" "$UPDIR"
}
trap cleanup EXIT
printf '#!/bin/sh\necho "protoc was called during the build" >&2\nexit 99\n' > "$POISON/protoc"
chmod +x "$POISON/protoc"
env -u PROTOC PATH="$POISON:$PATH" cargo build -q --locked -p berth-store-etcd

# 3. `berth up` answers /_berth/health (a throwaway data dir and a free port).
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env -u PROTOC PATH="$POISON:$PATH" "$BERTH_BIN" up --listen "127.0.0.1:$PORT" --data-dir "$UPDIR/data" \
  >"$UPDIR/up.log" 2>&1 &
UP_PID=$!
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$PORT/_berth/health" >"$UPDIR/health.json" 2>/dev/null; then
    if grep -q '"status":"ok"' "$UPDIR/health.json"; then
      if grep -q $'\x1b\\[' "$UPDIR/up.log"; then
        echo "berth up wrote ANSI colour codes to a log file" >&2
        exit 1
      fi
      echo "clean machine: built without protoc; berth up answered $(cat "$UPDIR/health.json")"
      exit 0
    fi
  fi
  if ! kill -0 "$UP_PID" 2>/dev/null; then
    echo "berth up exited early:" >&2; cat "$UPDIR/up.log" >&2; exit 1
  fi
  sleep 0.2
done
echo "berth up did not answer /_berth/health within 20 s:" >&2
cat "$UPDIR/up.log" >&2
exit 1
