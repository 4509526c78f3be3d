#!/usr/bin/env bash
# Mutation testing of the server core's request path (issue 19, item 8): cargo-mutants mutates
# core/src/server/{intake,dispatch,throttle,events}.rs one mutant at a time and runs the test
# command below; docs/mutants.md records the score and explains every survivor.
#
# Usage: scripts/mutants.sh [extra cargo-mutants args, e.g. --re REGEX or --list]
#   MUTANTS_SEEDS  simulator seeds run per mutant (default below; see docs/mutants.md for why)
#   MUTANTS_JOBS   parallel mutant builds (default 2, one per core; each has its own build dir)
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
MUTANTS_VERSION=26.0.0

if ! "$CARGO" mutants --version 2>/dev/null | grep -q "$MUTANTS_VERSION"; then
    echo "installing cargo-mutants $MUTANTS_VERSION" >&2
    "$CARGO" install --locked "cargo-mutants@$MUTANTS_VERSION"
fi

# The four files of issue 19. Their mutants are rebuilt in the dev profile: measured on the
# shared 2-core machine, one mutant's rebuild of qmp-core, qmp-driver, qmp-sim and the test
# binaries took 14 s in dev and 3 min in release (see docs/mutants.md), so a release build
# would turn one run into hours; the simulator's seeds cost more in dev instead, and only for
# the mutants the core tests miss (cargo stops at the first failing test binary, and the core's
# binaries run first).
FILES=(intake dispatch throttle events)

# The test command: the core's integration tests that drive a `Server` (json_* and the unit
# tests and doctests never reach these files), then tests/mutants.rs of qmp-sim, a range of
# simulator seeds in both worlds (ignored in a plain `cargo test`, hence --include-ignored).
# They are cargo arguments of every phase (--cargo-arg), not --test-package/--cargo-test-arg:
# cargo-mutants 26 builds with `cargo test --no-run` of the mutated package alone and tests
# the baseline with the mutated package alone, so only a cargo argument reaches the build and
# the baseline too. Naming the test targets keeps qmp-sim's slower own checks (planted-bug
# hunts, shrinking) and the core's benches out of every mutant's build and run. One cargo
# invocation for both packages builds qmp-core once, with the features qmp-sim asks for.
CORE_TESTS=(hmp_server hmp_transcripts server_lifetime server_planted server_props server_qapi
    server_scenarios server_transcripts server_mutants)
export QMP_MUTANTS_SEEDS=${MUTANTS_SEEDS:-200}

args=()
for f in "${FILES[@]}"; do args+=(--file "core/src/server/$f.rs"); done
args+=(--cargo-arg=--package=qmp-sim)
for t in "${CORE_TESTS[@]}"; do args+=(--cargo-arg=--test="$t"); done
args+=(--cargo-arg=--test=mutants)
# Without qmp-sim's default `cli` feature cargo does not rebuild the qmp-sim binary (which
# integration tests could run) for every mutant; tests/mutants.rs uses the library only.
args+=(--cargo-arg=--no-default-features)
# No debug info in the mutants' builds: less to generate and link per mutant, and a failing
# test is reproduced outside cargo-mutants anyway (docs/mutants.md).
export CARGO_PROFILE_DEV_DEBUG=0 CARGO_PROFILE_TEST_DEBUG=0
# Timeouts: a mutant that loops forever is cut off after the larger of a minute and five times
# the unmutated run's test time (cargo-mutants' multiplier); cargo-mutants' own floor of 20 s
# is too short for a test run on the loaded machine, which would count as a false timeout.
args+=(--minimum-test-timeout 60 --jobs "${MUTANTS_JOBS:-2}")

exec nice -n 10 "$CARGO" mutants "${args[@]}" "$@" -- -- --include-ignored
