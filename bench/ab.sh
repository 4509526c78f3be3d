#!/usr/bin/env bash
# A/B of qmpd builds in one run: bench/ab.sh QMPD_A QMPD_B [...]
#
# Starts every given qmpd binary, QEMU 7.2 (one QMP monitor, when installed) and the floor
# server, then runs one qmp-bench mode against each of them in turn, ROUNDS times, so that every
# round sees the same machine state for all servers. Prints one line per round and, at the end,
# per server: the median, minimum and maximum rate, the median ratio to QEMU of the same round,
# how many rounds reached 50x, and qmpd's CPU time per request; with several qmpd binaries, also
# the median of each one's per-round ratios to the first (the servers run in a rotated order each
# round). Use it to compare a change with its base on this noisy machine (BENCHMARKS.md reports
# its medians and ratios).
#
# Knobs (environment): ROUNDS (12), DURATION seconds per run (1), MODE (pipelined), RT=0 to run
# without `chrt -f 50` (default on, as `RT=1 make bench`), BENCH qmp-bench binary
# (target/release/qmp-bench, built when missing), QMPD_ARGS extra arguments for every qmpd (e.g.
# `--test-commands` for MODE=oob-latency, whose lock method needs x-oob-test; empty by default, so that builds
# older than the flag start too).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-12}
DURATION=${DURATION:-1}
MODE=${MODE:-pipelined}
BENCH=${BENCH:-${CARGO_TARGET_DIR:-$ROOT/target}/release/qmp-bench}
PREFIX=(chrt -f 50)
if [ "${RT:-1}" = 0 ]; then
    PREFIX=()
fi

if [ $# -lt 1 ]; then
    echo "usage: bench/ab.sh QMPD_BINARY [QMPD_BINARY...]" >&2
    exit 2
fi
if [ ! -x "$BENCH" ]; then
    (cd "$ROOT" && cargo build --release -p qmp-bench --bin qmp-bench)
fi

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# Servers: label, socket, pid (empty for servers whose CPU time is not read).
LABELS=()
SOCKS=()
SPIDS=()
i=0
for bin in "$@"; do
    # shellcheck disable=SC2086 # QMPD_ARGS is a list of words
    "${PREFIX[@]}" "$bin" --listen "unix:$WORK/q$i.sock" --log warn ${QMPD_ARGS:-} >/dev/null 2>&1 &
    PIDS+=("$!")
    LABELS+=("$(basename "$bin")#$i")
    SOCKS+=("$WORK/q$i.sock")
    SPIDS+=("$!")
    i=$((i + 1))
done
if command -v qemu-system-x86_64 >/dev/null; then
    "${PREFIX[@]}" qemu-system-x86_64 -machine none -nodefaults -display none \
        -chardev "socket,id=c0,path=$WORK/qemu.sock,server=on,wait=off" \
        -mon chardev=c0,mode=control >/dev/null 2>&1 &
    PIDS+=("$!")
    LABELS+=(qemu)
    SOCKS+=("$WORK/qemu.sock")
    SPIDS+=("")
fi
"${PREFIX[@]}" "$BENCH" floor-server "$WORK/floor.sock" >/dev/null 2>&1 &
PIDS+=("$!")
LABELS+=(floor)
SOCKS+=("$WORK/floor.sock")
SPIDS+=("")
for s in "${SOCKS[@]}"; do
    wait_socket "$s"
done

RESULTS=$WORK/results.jsonl
for ((r = 1; r <= ROUNDS; r++)); do
    line="round $r:"
    for ((j = 0; j < ${#SOCKS[@]}; j++)); do
        # Rotated each round, so that no server always runs right after the same one.
        k=$(((j + r) % ${#SOCKS[@]}))
        pid_args=()
        [ -n "${SPIDS[$k]}" ] && pid_args=(--pid "${SPIDS[$k]}")
        out=$("${PREFIX[@]}" "$BENCH" --socket "${SOCKS[$k]}" "${pid_args[@]}" --label "${LABELS[$k]}" \
            --duration "$DURATION" --mode "$MODE" --json 2>/dev/null) || out=""
        if [ -n "$out" ]; then
            echo "{\"round\": $r, \"result\": $out}" >>"$RESULTS"
            line="$line ${LABELS[$k]}=$(python3 -c 'import json,sys; print(int(json.loads(sys.argv[1])["value"]))' "$out")"
        else
            line="$line ${LABELS[$k]}=failed"
        fi
    done
    echo "$line"
done

python3 - "$RESULTS" "${LABELS[@]}" <<'EOF'
import json, statistics, sys
rounds = {}
for line in open(sys.argv[1]):
    d = json.loads(line)
    rounds.setdefault(d["round"], {})[d["result"]["label"]] = d["result"]
labels = [label for label in sys.argv[2:] if any(label in r for r in rounds.values())]
print()
print("%-24s %10s %10s %10s %9s %8s %12s" % ("server", "median", "min", "max", "vs qemu", ">=50x", "cpu us/op"))
for label in labels:
    values = [r[label]["value"] for r in rounds.values() if label in r]
    ratios = [r[label]["value"] / r["qemu"]["value"] for r in rounds.values()
              if label in r and "qemu" in r and r["qemu"]["value"] > 0]
    cpu = [r[label]["server_cpu_us_per_op"] for r in rounds.values()
           if label in r and "server_cpu_us_per_op" in r[label]]
    print("%-24s %10.0f %10.0f %10.0f %9s %8s %12s" % (
        label, statistics.median(values), min(values), max(values),
        "%.1fx" % statistics.median(ratios) if ratios and label != "qemu" else "-",
        "%d/%d" % (sum(x >= 50 for x in ratios), len(ratios)) if ratios and label != "qemu" else "-",
        "%.2f" % statistics.median(cpu) if cpu else "-"))
# Paired comparison with the first qmpd binary: the ratio of each round, so that what the
# machine does to a whole round (the rates of all servers move together) cancels out.
base = labels[0]
paired = [label for label in labels[1:] if label not in ("qemu", "floor")]
if paired:
    print()
    print("%-24s %14s %12s" % ("vs " + base, "median ratio", "rounds won"))
    for label in paired:
        ratios = [r[label]["value"] / r[base]["value"] for r in rounds.values()
                  if label in r and base in r and r[base]["value"] > 0]
        print("%-24s %14.3f %12s" % (label, statistics.median(ratios),
                                      "%d/%d" % (sum(x > 1 for x in ratios), len(ratios))))
EOF
