#!/usr/bin/env bash
# make fuzz-smoke: every fuzz target briefly, on the stable toolchain (FUZZING.md "Smoke").
#
# Budget: under 2 minutes from an empty target dir on a 2-core CI machine. Hence:
# - no cargo-fuzz: a plain `cargo build` with the RUSTFLAGS `cargo fuzz build --dev
#   --sanitizer none` passes (same flags, same order, so both share artifacts), which saves
#   installing cargo-fuzz (~60 s);
# - the debug profile (debug assertions on, line tables only, see Cargo.toml): it compiles about
#   twice as fast as cargo-fuzz's release profile (one codegen unit), which matters more than
#   exec speed for a few seconds of fuzzing;
# - libFuzzer's C++ compiled as one translation unit (see build_libfuzzer) instead of
#   libfuzzer-sys's file-by-file build: about 8 s of CPU instead of 25 s;
# - one build for all targets, and the targets run SMOKE_JOBS at a time.
# Each libFuzzer binary first executes every committed corpus file and every fixed crash
# (fuzz/corpus/T, fuzz/regressions/T) and fails on any of them, then fuzzes for SMOKE_SECONDS.
set -euo pipefail
cd "$(dirname "$0")"
per_target=${SMOKE_SECONDS:-5}
# Bound on concurrently running targets: one per core of the 2-core CI machine.
jobs=${SMOKE_JOBS:-2}
targets="json_stream json_roundtrip server_bytes scenario trace_roundtrip hmp_bytes driver_facts"
start=$SECONDS

triple=$(rustc -vV | sed -n 's/^host: //p')
tdir=${CARGO_TARGET_DIR:-target}
# cargo-fuzz 0.13's instrumentation flags for `--sanitizer none --dev` on Linux (project.rs,
# `BuildOptions` defaults). `--target` keeps them away from build scripts and proc macros.
flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
flags+=" -Cllvm-args=-simplifycfg-branch-fold-threshold=0"
flags+=" -Cllvm-args=-sanitizer-coverage-stack-depth -Cdebug-assertions"

# Writes the archive $2 from the libFuzzer sources libfuzzer-sys ships ($1). Most of the compile time
# of libFuzzer's 26 files is parsing the same standard headers again and again, so all but two
# are included into one file: FuzzerFork.cpp (its `WorkerThread` clashes with
# FuzzerDriver.cpp's) and FuzzerInterceptors.cpp (redeclares libc's string functions) are
# compiled on their own. Same flags as libfuzzer-sys's cc build in the debug profile.
build_libfuzzer() {
    local src=$1 out=$2 tmp="$2.tmp" f
    rm -rf "$tmp" && mkdir -p "$tmp"
    for f in "$src"/*.cpp; do
        case $f in
        */FuzzerFork.cpp | */FuzzerInterceptors.cpp) ;;
        *) echo "#include \"$f\"" ;;
        esac
    done >"$tmp/unity.cpp"
    local cxx=(${CXX:-c++} -std=c++17 -O0 -fno-omit-frame-pointer -ffunction-sections
        -fdata-sections -fPIC -w -c)
    "${cxx[@]}" "$src/FuzzerFork.cpp" -o "$tmp/fork.o" &
    local fork=$!
    "${cxx[@]}" "$src/FuzzerInterceptors.cpp" -o "$tmp/interceptors.o"
    "${cxx[@]}" "$tmp/unity.cpp" -o "$tmp/unity.o"
    wait "$fork"
    ${AR:-ar} crs "$tmp/libfuzzer.a" "$tmp/unity.o" "$tmp/fork.o" "$tmp/interceptors.o"
    mv "$tmp/libfuzzer.a" "$out"
    rm -rf "$tmp"
}

# libfuzzer-sys's source dir, from the lock file's version (keys the cached library too).
lfsrc=$(cargo metadata --quiet --format-version 1 --manifest-path Cargo.toml \
    --filter-platform "$triple" |
    grep -o '"manifest_path":"[^"]*/libfuzzer-sys-[^"/]*/Cargo.toml"' | sed 's/.*:"//; s/"$//') ||
    true # not found: the one-unit compile below fails and the fallback build takes over
lfsrc=$(dirname "${lfsrc:-unknown/libfuzzer-sys}")
mkdir -p "$tdir/smoke-libfuzzer"
lfdir=$(cd "$tdir/smoke-libfuzzer" && pwd)/$(basename "$lfsrc")
lflib="$lfdir/libfuzzer.a"
lfpid=
if [ ! -f "$lflib" ]; then
    mkdir -p "$lfdir"
    build_libfuzzer "$lfsrc/libfuzzer" "$lflib" &
    lfpid=$!
fi
cargo_build() {
    RUSTFLAGS="$flags ${RUSTFLAGS:-}" CUSTOM_LIBFUZZER_PATH="$lflib" cargo build --quiet \
        --manifest-path Cargo.toml --target "$triple" --target-dir "$tdir" "$@"
}
# Everything but the binaries while libFuzzer compiles; they link against it afterwards.
cargo_build -p qmp-fuzz
if [ -n "$lfpid" ] && ! wait "$lfpid"; then
    echo "fuzz-smoke: compiling libFuzzer in one unit failed; using libfuzzer-sys's own build"
    rm -f "$lflib"
    lflib=
fi
if [ -n "$lflib" ]; then
    cargo_build --bins
else
    RUSTFLAGS="$flags ${RUSTFLAGS:-}" cargo build --quiet --manifest-path Cargo.toml \
        --target "$triple" --target-dir "$tdir" --bins
fi
echo "fuzz-smoke: targets built after $((SECONDS - start)) s"

bin="$tdir/$triple/debug"
run_one() {
    local t=$1 scratch="target/smoke-corpus/$1" log="target/smoke-$1.log"
    rm -rf "$scratch"
    mkdir -p "$scratch" "artifacts/$t" "regressions/$t"
    # New units go to the scratch dir (first corpus argument), never into the committed corpus.
    if "$bin/$t" "$scratch" "corpus/$t" "regressions/$t" \
        -dict=dict/qmp.dict -max_total_time="$per_target" -artifact_prefix="artifacts/$t/" \
        -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        echo "fuzz-smoke: $t ok ($runs executions, committed corpus replayed)"
    else
        tail -n 40 "$log"
        echo "fuzz-smoke: $t FAILED (log: fuzz/$log; crash files in fuzz/artifacts/$t/)"
        return 1
    fi
}

failed=0
running=0
for t in $targets; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
    run_one "$t" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
if [ "$failed" -ne 0 ]; then
    echo "fuzz-smoke: FAILED after $((SECONDS - start)) s"
    exit 1
fi
echo "fuzz-smoke: all targets passed in $((SECONDS - start)) s"
