#!/usr/bin/env bash
# Every fuzz target briefly (make fuzz-smoke; part of make test). Budget: under 2 minutes in
# all on 2 cores, cargo-fuzz install included (see FUZZING.md for the measured split).
#
# 1. The target bodies are built as a plain crate and `cargo test` replays every committed
#    corpus entry and fixed crash through them (fuzz/lib/tests/replay.rs).
# 2. The cargo-fuzz binaries are built once (stable, no sanitizer) and each target fuzzes for
#    SMOKE_SECONDS, starting from the committed corpus, so libFuzzer's own loop is exercised.
set -euo pipefail
cd "$(dirname "$0")"
per_target=${SMOKE_SECONDS:-6}
targets="json_stream json_roundtrip server_bytes scenario trace_roundtrip"
start=$SECONDS

cargo test --quiet -p qmp-fuzz
echo "fuzz-smoke: corpus replay done after $((SECONDS - start)) s"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz (cargo install cargo-fuzz --locked)"
    cargo install --quiet cargo-fuzz --locked
    echo "fuzz-smoke: cargo-fuzz installed after $((SECONDS - start)) s"
fi
cargo fuzz build --sanitizer none
echo "fuzz-smoke: targets built after $((SECONDS - start)) s"

for t in $targets; do
    mkdir -p "target/corpus/$t" "artifacts/$t" "regressions/$t"
    # The run's progress lines are noise in make test: they go to a log, shown on failure.
    if ! cargo fuzz run --sanitizer none "$t" "target/corpus/$t" "corpus/$t" "regressions/$t" -- \
        -dict=dict/qmp.dict -max_total_time="$per_target" -artifact_prefix="artifacts/$t/" \
        >"target/smoke-$t.log" 2>&1; then
        tail -n 40 "target/smoke-$t.log"
        echo "fuzz-smoke: $t FAILED (log: fuzz/target/smoke-$t.log)"
        exit 1
    fi
    echo "fuzz-smoke: $t ok: $(grep -E '^#[0-9]+.*(DONE|INITED)' "target/smoke-$t.log" | tail -n 1)"
done
echo "fuzz-smoke: all targets passed in $((SECONDS - start)) s"
