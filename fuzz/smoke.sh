#!/usr/bin/env bash
# make fuzz-smoke: every fuzz target briefly, on the stable toolchain (FUZZING.md "Smoke").
#
# One build serves both jobs: each libFuzzer binary first executes every committed corpus file
# and every fixed crash (fuzz/corpus/T, fuzz/regressions/T) and fails on any of them, then
# fuzzes for SMOKE_SECONDS. The binaries are built with `--dev` (debug profile, debug
# assertions on): it compiles about twice as fast as release, which matters more than exec
# speed for a few seconds of fuzzing. cargo-fuzz is installed when missing.
set -euo pipefail
cd "$(dirname "$0")"
per_target=${SMOKE_SECONDS:-5}
targets="json_stream json_roundtrip server_bytes scenario trace_roundtrip"
start=$SECONDS

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install --quiet cargo-fuzz --locked
    echo "fuzz-smoke: cargo-fuzz installed after $((SECONDS - start)) s"
fi
tdir=${CARGO_TARGET_DIR:-target}
cargo fuzz build --dev --sanitizer none --target-dir "$tdir"
echo "fuzz-smoke: targets built after $((SECONDS - start)) s"

triple=$(rustc -vV | sed -n 's/^host: //p')
for t in $targets; do
    scratch="target/smoke-corpus/$t"
    rm -rf "$scratch"
    mkdir -p "$scratch" "artifacts/$t" "regressions/$t"
    log="target/smoke-$t.log"
    # New units go to the scratch dir (first corpus argument), never into the committed corpus.
    if ! "$tdir/$triple/debug/$t" "$scratch" "corpus/$t" "regressions/$t" \
        -dict=dict/qmp.dict -max_total_time="$per_target" -artifact_prefix="artifacts/$t/" \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz-smoke: $t FAILED (log: fuzz/$log; crash files in fuzz/artifacts/$t/)"
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    echo "fuzz-smoke: $t ok ($runs executions, committed corpus replayed)"
done
echo "fuzz-smoke: all targets passed in $((SECONDS - start)) s"
