#!/usr/bin/env bash
# make planted-free: the qmpd that `make run` builds carries no planted-bug code (issue 19).
# 1. Cargo's feature resolution for that build: qmp-core without `planted-bugs` (only qmp-sim
#    and tests enable it; resolver 2 unifies features only across the packages of one build,
#    so `-p qmp-io` is not affected by qmp-sim, but `cargo build --workspace` would be).
# 2. The binary: none of the planted variants' names (they derive Debug and Serialize, so a
#    build with the feature holds them as strings) and no planted-only symbol.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO="${CARGO:-cargo}"
for dep in qmp-core qmp-driver; do
    if $CARGO tree -p qmp-io -e features -i "$dep" | grep -n 'planted'; then
        echo "planted-free: qmp-io's build enables $dep's planted bugs" >&2
        exit 1
    fi
done
$CARGO build --release --quiet -p qmp-io --bin qmpd
BIN="${CARGO_TARGET_DIR:-target}/release/qmpd"
WORDS='QueueLimitOffByOne|LastThrottledEventDropped|NoResumeOnClose|OobReplyHeldBehindInBand|EventBeforeNegotiation|EarlyBytesAfterSuspension|IdNotEchoedOnError|CommandDroppedWithoutId|FdLeakedOnClose|RoundRobinBroken|NamedFdsDieWithConnection|planted_bug|held_replies|flush_held|LostEof|LockOutlivesHolder|lock_outlives_holder'
found=$( (strings -a "$BIN"; nm -C "$BIN" 2>/dev/null || true) | grep -E -c "$WORDS" || true)
if [ "$found" != "0" ]; then
    (strings -a "$BIN"; nm -C "$BIN" 2>/dev/null || true) | grep -E "$WORDS" | head >&2
    echo "planted-free: $BIN holds planted-bug names" >&2
    exit 1
fi
echo "planted-free: $BIN has no planted-bug code (cargo tree and strings/nm checked)"
