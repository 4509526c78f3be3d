#!/usr/bin/env bash
# make test-clients: real QMP clients (qemu.qmp's QMPClient, the legacy QEMUMonitorProtocol,
# qmp-shell) against a fresh qmpd per test (QMPD_RUNTIME=tokio: on the tokio adapter). CLIENTS_AGAINST_QEMU=1 also runs them against
# QEMU 7.2 (the same tests must pass there: that is how they were written).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p qmp-io --bin qmpd
# QMPD_RUNTIME=std|tokio: which adapter qmpd serves with (targets.py passes --runtime).
echo "qmpd runtime: ${QMPD_RUNTIME:-std}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
args=(--qmpd "$TARGET_DIR/release/qmpd")
if [ "${CLIENTS_AGAINST_QEMU:-0}" = 1 ]; then
    args+=(--qemu "$(command -v qemu-system-x86_64)")
fi
exec python3 tests/clients/harness.py "${args[@]}"
