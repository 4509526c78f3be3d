#!/usr/bin/env bash
# Run one fuzz target:  bash fuzz/run.sh TARGET SECONDS   (make fuzz T=TARGET S=SECONDS)
#
# Stable toolchain, no sanitizer by default (Rust's own checks: bounds, overflow in debug
# assertions, which cargo-fuzz enables). FUZZ_SANITIZER=address runs with AddressSanitizer
# through RUSTC_BOOTSTRAP=1. New corpus entries go to fuzz/target/corpus/TARGET (not committed;
# see FUZZING.md for how to minimise them into fuzz/corpus/), crashes to fuzz/artifacts/TARGET/.
# Extra arguments after SECONDS are passed to libFuzzer (e.g. -jobs=2, -seed=1).
set -euo pipefail
cd "$(dirname "$0")"

target=${1:?usage: run.sh TARGET SECONDS [libFuzzer args]}
seconds=${2:-60}
shift 2 || shift $#
sanitizer=${FUZZ_SANITIZER:-none}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
    cargo install cargo-fuzz --locked
fi
if [ "$sanitizer" != none ]; then
    export RUSTC_BOOTSTRAP=1
fi

work=target/corpus/$target
mkdir -p "$work" "artifacts/$target" "regressions/$target"
exec cargo fuzz run --sanitizer "$sanitizer" "$target" "$work" "corpus/$target" "regressions/$target" -- \
    -dict=dict/qmp.dict -max_total_time="$seconds" -artifact_prefix="artifacts/$target/" \
    -print_final_stats=1 "$@"
