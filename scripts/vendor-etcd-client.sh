#!/usr/bin/env bash
# Regenerates vendor/etcd-client/src/rpc/gen/ (etcd-client's gRPC code) from the upstream crate's own
# build script. Needs `protoc` (apt-get install protobuf-compiler) — only here, never to build berth.
# Usage: scripts/vendor-etcd-client.sh [version]   (default: the vendored version)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VERSION=${1:-$(sed -n 's/^version = "\(.*\)"/\1/p' vendor/etcd-client/Cargo.toml | head -1)}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/src"
cat > "$WORK/Cargo.toml" <<TOML
[package]
name = "gen-etcd"
version = "0.0.0"
edition = "2021"
[dependencies]
etcd-client = "=$VERSION"
[workspace]
TOML
echo 'fn main() {}' > "$WORK/src/main.rs"
(cd "$WORK" && cargo build -q)
OUT=$(ls -d "$WORK"/target/debug/build/etcd-client-*/out | head -1)
mkdir -p "$ROOT/vendor/etcd-client/src/rpc/gen"
for f in authpb etcdserverpb mvccpb v3electionpb v3lockpb; do
  cp "$OUT/$f.rs" "$ROOT/vendor/etcd-client/src/rpc/gen/$f.rs"
done
echo "vendor/etcd-client/src/rpc/gen/ regenerated from etcd-client $VERSION"
