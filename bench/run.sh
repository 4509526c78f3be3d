#!/usr/bin/env bash
# make bench: qmpd on both runtimes side by side with QEMU 7.2 (issues 7 and 20).
#
# Builds qmp-bench and qmpd in release, starts qmpd on the std adapter (label qmpd), qmpd on the
# tokio adapter (`--runtime tokio`, label qmpd-tokio) and (when installed) QEMU 7.2
# (`qemu-system-x86_64 -machine none`), runs every qmp-bench mode against each in alternation
# (qmpd, qmpd-tokio, QEMU, ROUNDS times), and prints two comparisons with QEMU (medians over the
# rounds and factors): qmpd with the issue-7 targets, qmpd-tokio with issue 20's. The
# single-client modes run against servers set up for one client (QEMU with one QMP monitor), the
# connections and events modes against servers with CLIENTS monitors. Idle memory is measured once per server on fresh processes with IDLE
# negotiated connections each.
#
# Knobs (environment): ROUNDS (3: an odd count, so the median is one round's figure and one
# slow round cannot decide it), DURATION seconds per measuring loop (2), CLIENTS for the
# connections/events modes (8), IDLE connections (1000), BENCH_OUT results directory
# (target/bench-results), RT=1 runs every server and the client under `chrt -f 50` (real-time
# scheduling, so that other work on a shared machine does not decide the tail latencies; the
# same treatment for every server). A full run takes about 3 minutes on 2 cores once built. The
# sequential and pipelined modes also run against `qmp-bench floor-server` (label floor), the
# cheapest possible server, so the report shows the ceiling any server has on this machine and
# client.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-2}
CLIENTS=${CLIENTS:-8}
IDLE=${IDLE:-1000}
OUT=${BENCH_OUT:-$ROOT/target/bench-results}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
PREFIX=()
if [ "${RT:-0}" = 1 ]; then
    PREFIX=(chrt -f 50)
fi

# 1,000 idle connections cost the client and each server one descriptor apiece, QEMU one more
# per listening chardev.
need=$((2 * IDLE + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    ulimit -n "$need" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi

cargo build --release -p qmp-bench --bin qmp-bench -p qmp-io --bin qmpd
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# start_qmpd NAME CLIENTS [RUNTIME]: one listener serving CLIENTS clients at once, on the std
# (default) or tokio adapter, with the test commands (the OOB mode's x-oob-test lock); sets PID.
start_qmpd() {
    "${PREFIX[@]}" "$BIN/qmpd" --listen "unix:$WORK/$1.sock,clients=$2" --max-connections $(($2 + 8)) \
        --runtime "${3:-std}" --test-commands --log warn >"$OUT/$1.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    wait_socket "$WORK/$1.sock"
}

# start_qemu NAME N: QEMU 7.2 with N QMP monitors, one socket chardev each (QEMU serves one
# client per chardev): $WORK/NAME-0.sock ... NAME-(N-1).sock; sets PID.
start_qemu() {
    local args=() i
    for ((i = 0; i < $2; i++)); do
        args+=(-chardev "socket,id=c$i,path=$WORK/$1-$i.sock,server=on,wait=off"
            -mon "chardev=c$i,mode=control")
    done
    "${PREFIX[@]}" qemu-system-x86_64 -machine none -nodefaults -display none "${args[@]}" \
        >"$OUT/$1.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
    wait_socket "$WORK/$1-$(($2 - 1)).sock"
}

# stop_pid PID...: stops servers this script started (and forgets them).
stop_pid() {
    local p q keep
    for p in "$@"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
        keep=()
        for q in "${PIDS[@]}"; do [ "$q" = "$p" ] || keep+=("$q"); done
        PIDS=("${keep[@]}")
    done
}

# bench LABEL SOCKET-ARGS... -- MODE-ARGS...: one qmp-bench run, JSON appended to results.
# A failing mode is reported and the run goes on (the comparison then shows n/a).
bench() {
    local label=$1
    shift
    "${PREFIX[@]}" "$BIN/qmp-bench" --label "$label" --json "$@" >>"$RESULTS" || echo "bench: a $label run failed: $*" >&2
}

# qemu_bench ARGS...: the same against QEMU's single monitor, when QEMU is installed;
# qemu_bench_n ARGS...: against its CLIENTS monitors (the modes with many clients).
qemu_bench() {
    if [ "$HAVE_QEMU" = 1 ]; then
        bench qemu "${QEMU_SOCK[@]}" "$@"
    fi
}
qemu_bench_n() {
    if [ "$HAVE_QEMU" = 1 ]; then
        bench qemu "${QEMU_N_SOCK[@]}" "$@"
    fi
}

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    lscpu | grep -E '^(Model name|CPU\(s\)):' || true
    free -h | grep -E '^Mem:' || true
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "scheduling: ${PREFIX[*]:-default}"
} | tee "$OUT/machine.txt"

HAVE_QEMU=0
if command -v qemu-system-x86_64 >/dev/null; then
    HAVE_QEMU=1
    qemu-system-x86_64 --version | head -1 | tee -a "$OUT/machine.txt"
else
    echo "bench: qemu-system-x86_64 not installed: qmpd figures only" >&2
fi

common=(--duration "$DURATION" --clients "$CLIENTS")
# Each server twice: as a user with one client runs it (one listener serving one client; QEMU
# with one QMP monitor), for the single-client modes, and with CLIENTS clients at once for the
# connections and events modes. QEMU's main loop polls every monitor's chardev, so a QEMU with 8
# monitors answers one client 25-30 % slower than a QEMU with one (measured here): comparing
# single-client figures with it would flatter qmpd.
start_qmpd qmpd 1
# --pid adds the server's own CPU time per operation, which other load does not distort.
QMPD_SOCK=(--socket "$WORK/qmpd.sock" --pid "$PID")
start_qmpd qmpd-n "$CLIENTS"
QMPD_N_SOCK=(--socket "$WORK/qmpd-n.sock" --pid "$PID")
start_qmpd qmpd-tokio 1 tokio
TOKIO_SOCK=(--socket "$WORK/qmpd-tokio.sock" --pid "$PID")
start_qmpd qmpd-tokio-n "$CLIENTS" tokio
TOKIO_N_SOCK=(--socket "$WORK/qmpd-tokio-n.sock" --pid "$PID")
QEMU_SOCK=()
QEMU_N_SOCK=()
if [ "$HAVE_QEMU" = 1 ]; then
    start_qemu qemu 1
    QEMU_SOCK=(--socket "$WORK/qemu-0.sock" --pid "$PID")
    start_qemu qemu-n "$CLIENTS"
    QEMU_N_SOCK=(--socket "$WORK/qemu-n-{i}.sock" --socket-count "$CLIENTS" --pid "$PID")
fi

# The ceiling of this machine and client: a server that parses nothing and answers every line
# with one fixed reply (`qmp-bench floor-server`), for the two request/reply throughput modes.
"${PREFIX[@]}" "$BIN/qmp-bench" floor-server "$WORK/floor.sock" >"$OUT/floor.log" 2>&1 &
FLOOR_PID=$!
PIDS+=("$FLOOR_PID")
wait_socket "$WORK/floor.sock"

for ((r = 1; r <= ROUNDS; r++)); do
    echo "== round $r/$ROUNDS" >&2
    for mode in sequential pipelined; do
        bench qmpd "${QMPD_SOCK[@]}" "${common[@]}" --mode "$mode"
        bench qmpd-tokio "${TOKIO_SOCK[@]}" "${common[@]}" --mode "$mode"
        qemu_bench "${common[@]}" --mode "$mode"
        bench floor --socket "$WORK/floor.sock" "${common[@]}" --mode "$mode"
    done
    for mode in connections events; do
        bench qmpd "${QMPD_N_SOCK[@]}" "${common[@]}" --mode "$mode"
        bench qmpd-tokio "${TOKIO_N_SOCK[@]}" "${common[@]}" --mode "$mode"
        qemu_bench_n "${common[@]}" --mode "$mode"
    done
    # OOB: the x-oob-test lock (issue 7's figure) exists only in qmpd; under in-band load on both.
    # On tokio the lock is an awaiting (async) handler holding the in-band lane.
    bench qmpd "${QMPD_SOCK[@]}" "${common[@]}" --mode oob-latency --oob-method lock
    bench qmpd-tokio "${TOKIO_SOCK[@]}" "${common[@]}" --mode oob-latency --oob-method lock
    bench qmpd "${QMPD_SOCK[@]}" "${common[@]}" --mode oob-latency --oob-method load
    bench qmpd-tokio "${TOKIO_SOCK[@]}" "${common[@]}" --mode oob-latency --oob-method load
    qemu_bench "${common[@]}" --mode oob-latency --oob-method load
    # QEMU reads one byte per system call (5-20 s per MiB here): exactly one request per round.
    bench qmpd "${QMPD_SOCK[@]}" "${common[@]}" --mode large
    bench qmpd-tokio "${TOKIO_SOCK[@]}" "${common[@]}" --mode large
    qemu_bench --duration 0 --io-timeout 120 --mode large
done
stop_pid "${PIDS[@]}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"

echo "== idle ($IDLE connections, fresh processes)" >&2
start_qmpd qmpd-idle "$IDLE"
bench qmpd --socket "$WORK/qmpd-idle.sock" --mode idle --idle-clients "$IDLE" --pid "$PID"
stop_pid "$PID"
start_qmpd qmpd-tokio-idle "$IDLE" tokio
bench qmpd-tokio --socket "$WORK/qmpd-tokio-idle.sock" --mode idle --idle-clients "$IDLE" --pid "$PID"
stop_pid "$PID"
if [ "$HAVE_QEMU" = 1 ]; then
    start_qemu qemu-idle "$IDLE"
    bench qemu --socket "$WORK/qemu-idle-{i}.sock" --socket-count "$IDLE" --mode idle \
        --idle-clients "$IDLE" --pid "$PID" --io-timeout 120
    stop_pid "$PID"
fi

echo
echo "== results ($RESULTS)"
"$BIN/qmp-bench" report "$RESULTS" --subject qmpd --base qemu | tee "$OUT/report.txt"
echo
echo "== tokio runtime: qmpd --runtime tokio vs QEMU, issue 20's targets (same run)"
"$BIN/qmp-bench" report "$RESULTS" --subject qmpd-tokio --base qemu --targets tokio |
    tee "$OUT/report-tokio.txt"
echo
echo "== ceiling: floor server (parses nothing, one fixed reply per line) vs QEMU, same client"
"$BIN/qmp-bench" report "$RESULTS" --subject floor --base qemu | sed '/server CPU time/,$d' |
    grep -E '^(mode|sequential|pipelined|factor per round) ' | tee "$OUT/floor-report.txt"
