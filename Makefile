# zabkeeper: the two commands a newcomer needs are `make sim` and `make test`.

CARGO ?= cargo
MADSIM_TARGET ?= target/madsim
MADSIM_ENV = RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=$(MADSIM_TARGET)
PYTHON ?= python3

.PHONY: all build build-madsim sim test test-rust test-madsim test-integration lint fmt \
        bench-storage bench-checker bench-sim clean

all: build

build:
	$(CARGO) build --release --workspace

# The node's own code compiled against madsim instead of tokio.
build-madsim:
	$(MADSIM_ENV) $(CARGO) build --release -p zabkeeper-sim

# The main job: a seeded fault campaign over every scenario, with a summary.
sim: build-madsim
	$(MADSIM_TARGET)/release/zabkeeper-sim run --scenario all --seeds 0..200

# Everything CI checks.
test: test-rust test-madsim test-integration

test-rust:
	$(CARGO) test --workspace

test-madsim:
	$(MADSIM_ENV) $(CARGO) build -p zabkeeper

test-integration: build
	$(PYTHON) -m pytest -q tests/integration

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Storage benchmarks (a couple of minutes on 2 cores): txn log appends/s and fsyncs/s with
# group commit on the real file system, then restart time with 1,000,000 znodes of 100 bytes
# (snapshot + 100,000-txn log). BENCH_DIR puts the files on the disk you care about.
BENCH_DIR ?=
bench-storage:
	$(CARGO) run -q --release -p zabkeeper --example bench_storage -- \
	    --seconds 1 $(if $(BENCH_DIR),--dir $(BENCH_DIR)/log)
	$(CARGO) run -q --release -p zabkeeper --example bench_restart -- \
	    --znodes 1000000 --log-txns 100000 $(if $(BENCH_DIR),--dir $(BENCH_DIR)/restart)

clean:
	$(CARGO) clean
