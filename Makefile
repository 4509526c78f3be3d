# qmp-core: every entry point of the project.
#   make run      qmpd listening on ./qmp.sock (QEMU 7.2 dialect)
#   make test     everything CI runs (installs what it needs when missing)
#   make sim      10,000 simulation seeds in release
#   make sim-ci   20,000 seeds in release from a seed derived from the commit (part of make test)
#   make planted-free  the qmpd of make run has no planted-bug code (part of make test)
#   make fuzz T=target S=seconds   one fuzz target;  make fuzz-smoke: all targets briefly
#   make loom     loom models of the io/ shim
#   make bench    qmpd (std and tokio runtimes) side by side with QEMU 7.2
#   make compat   differential suite against real QEMU 7.2
#   make mutants  mutation testing of the request path, about an hour (docs/mutants.md; not in make test)

CARGO ?= cargo
SEEDS ?= 10000
SIM_CI_SEEDS ?= 20000
T ?= json_stream
S ?= 60

.PHONY: all build run test test-rust lint sim sim-ci planted-free sim-smoke fuzz fuzz-smoke loom bench bench-core compat deps mutants

all: build

build:
	$(CARGO) build --workspace --all-targets

run:
	$(CARGO) run --release -p qmp-io --bin qmpd -- --listen unix:./qmp.sock

test: lint test-rust sim-ci planted-free test-clients compat fuzz-smoke loom
	@echo "make test: all stages passed"

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p qmp-driver --all-targets --features planted -- -D warnings
	$(CARGO) clippy -p qmp-io --no-default-features --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps

test-rust:
	$(CARGO) test --workspace
	$(CARGO) test -p qmp-driver --features planted
	QMPD_RUNTIME=tokio $(CARGO) test -p qmp-io --test qmpd --test hmp_compat

# --- areas (each script is owned by its area; see README) ---
deps:
	bash scripts/deps.sh

# The suites that start qmpd run against both of its runtimes (qmpd --runtime std|tokio).
test-clients: deps
	bash tests/clients/run.sh
	QMPD_RUNTIME=tokio bash tests/clients/run.sh

compat: deps
	bash tests/compat/run.sh
	QMPD_RUNTIME=tokio bash tests/compat/run.sh

sim:
	$(CARGO) run --release -p qmp-sim -- run --seed $${SEED:-0} --runs $(SEEDS)

# The first seed is the commit hash's first 16 hex digits (printed with the range, so a failure
# is reproduced with `make sim SEED=N SEEDS=1`); outside a git checkout it is 0.
sim-ci:
	$(CARGO) build --release -p qmp-sim
	$(CARGO) run --release -p qmp-sim -- run --seed $$(git rev-parse HEAD 2>/dev/null || echo 0) --runs $(SIM_CI_SEEDS)

planted-free:
	bash scripts/planted-free.sh

fuzz:
	bash fuzz/run.sh $(T) $(S)

fuzz-smoke:
	bash fuzz/smoke.sh

loom:
	bash loom-tests/run.sh

bench: deps
	bash bench/run.sh

bench-core:
	$(CARGO) bench -p qmp-core

mutants:
	bash scripts/mutants.sh
