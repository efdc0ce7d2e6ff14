#!/usr/bin/env bash
exec cargo run --release -p berth-placement --example bench "$@"
