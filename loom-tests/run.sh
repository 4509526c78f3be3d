#!/usr/bin/env bash
# make loom: every loom model of qmp-io's locking and wake-up code, in release, with
# LOOM_MAX_PREEMPTIONS=2, in its own target dir (--cfg loom rebuilds every crate, so sharing
# the normal target dir would throw away the normal build each time).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="${RUSTFLAGS:-} --cfg loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-$PWD/target/loom}"
start=$SECONDS
cargo test --release -p qmp-loom -- --test-threads=2 "$@"
echo "loom: all models passed in $((SECONDS - start)) s (LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS)"
