#!/usr/bin/env bash
# make compat: build qmpd (release), find QEMU 7.2, run the differential suite.
# QMPD_RUNTIME=tokio runs qmpd on the tokio adapter (default std).
# Env: QEMU=path to qemu-system-x86_64; COMPAT_JOBS=parallel cases (default 3);
#      COMPAT_ARGS=extra arguments for compat.py (e.g. "-k ^F").
set -euo pipefail
cd "$(dirname "$0")/../.."
QEMU="${QEMU:-$(command -v qemu-system-x86_64 || true)}"
if [ -z "$QEMU" ]; then
    echo "compat: qemu-system-x86_64 not found (run: make deps)" >&2
    exit 2
fi
"$QEMU" --version | head -1
python3 -m unittest -q tests/compat/test_harness.py tests/compat/test_schema_gen.py
cargo build --release --quiet -p qmp-io --bin qmpd
# QMPD_RUNTIME=std|tokio: which adapter qmpd serves with (targets.py passes --runtime).
echo "qmpd runtime: ${QMPD_RUNTIME:-std}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
QMPD="$TARGET_DIR/release/qmpd"
status=0
python3 tests/compat/compat.py --qemu "$QEMU" --qmpd "$QMPD" ${COMPAT_ARGS:-} || status=$?
# Every command of QEMU's schema with invalid arguments (about half a minute).
python3 tests/compat/schema_diff.py --qemu "$QEMU" --qmpd "$QMPD" || status=$?
# qmpd's own query-qmp-schema, structure by structure against QEMU's.
python3 tests/compat/schema_export.py --qemu "$QEMU" --qmpd "$QMPD" || status=$?
exit $status
