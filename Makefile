# zabkeeper: the two commands a newcomer needs are `make sim` and `make test`.

CARGO ?= cargo
MADSIM_TARGET ?= target/madsim
MADSIM_ENV = RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=$(MADSIM_TARGET)
PYTHON ?= python3

.PHONY: all build build-madsim sim sim-ensemble test test-rust test-madsim test-sim test-integration lint fmt \
        rewrite bench-storage bench-checker bench-sim bench-compare bench-memory bench-failover sim-long clean \
        jepsen fuzz

all: build

build:
	$(CARGO) build --release --workspace

# The node's own code compiled against madsim instead of tokio.
build-madsim:
	$(MADSIM_ENV) $(CARGO) build --release -p zabkeeper-sim

SIM = $(MADSIM_TARGET)/release/zabkeeper-sim

# The main job: a seeded fault campaign over every scenario (and every pinned regression
# seed), with a summary table. Scenarios that ask for an ensemble (3/5/7 servers, observers)
# run a replicated one. A failing seed prints its replay command.
sim: build-madsim
	$(SIM) run --scenario all --seeds 0..200 --regressions

# The long campaign to leave running overnight: every scenario over SIM_LONG_SEEDS
# (default 100,000 seeds each, about 1.1 million runs, some 12 hours on 2 cores), in
# SIM_LONG_SHARDS shards. Each finished shard leaves its summary in target/madsim/sim-long/,
# so an interrupted campaign resumes with the first unfinished shard; the merged summary
# (every failing seed with its replay command) is printed at the end and written to
# target/madsim/sim-long/merged.json. Start over with `rm -r target/madsim/sim-long`.
SIM_LONG_SEEDS ?= 0..100000
SIM_LONG_SHARDS ?= 50
SIM_LONG_DIR = $(MADSIM_TARGET)/sim-long
sim-long: build-madsim
	@mkdir -p $(SIM_LONG_DIR)
	@for i in $$(seq 0 $$(($(SIM_LONG_SHARDS) - 1))); do \
	    f=$(SIM_LONG_DIR)/shard-$$i-of-$(SIM_LONG_SHARDS).json; \
	    if [ -f $$f ]; then echo "shard $$i/$(SIM_LONG_SHARDS): done earlier"; continue; fi; \
	    echo "shard $$i/$(SIM_LONG_SHARDS) of seeds $(SIM_LONG_SEEDS)"; \
	    $(SIM) run --scenario all --seeds $(SIM_LONG_SEEDS) --shard $$i/$(SIM_LONG_SHARDS) \
	        --quiet --json $$f.part > /dev/null; \
	    [ -f $$f.part ] && mv $$f.part $$f || exit 1; \
	done
	$(SIM) merge $(SIM_LONG_DIR)/shard-*-of-$(SIM_LONG_SHARDS).json --json $(SIM_LONG_DIR)/merged.json

# Kept as an alias: ensembles are the default now.
sim-ensemble: sim

# Everything CI checks.
test: test-rust test-madsim test-sim test-integration

test-rust:
	$(CARGO) test --workspace

# Accept new output of the transcript tests (ZAB core and server pipeline): read the diff.
rewrite:
	REWRITE=1 $(CARGO) test -p zabkeeper --test core_transcripts --test server_transcripts

# The node's code compiles against madsim (the simulator's release build proves it).
test-madsim: build-madsim

# 12 scenarios x 200 seeds (2,400 runs) plus every regression seed, the determinism check
# (two processes per seed, same trace hash), and the proof that the testbed bites: each
# deliberately broken behaviour (zabkeeper::broken::Bug, switched on at run time in this
# build only) is caught within 5 seeds of its scenario and shrunk.
test-sim: build-madsim
	$(SIM) run --scenario all --seeds 0..200 --regressions --quiet --json $(MADSIM_TARGET)/sim-summary.json
	$(SIM) check-determinism --scenario mixed --seed 0..3
	$(SIM) check-determinism --scenario crash-restart --seed 0..2
	$(SIM) check-determinism --scenario sync-crash --seed 0..3
	$(MADSIM_ENV) $(CARGO) test --release -p zabkeeper-sim --test bites

# Simulator speed: seeds/s and virtual/wall time ratio on the default scenario.
bench-sim: build-madsim
	$(SIM) bench --scenario mixed --seeds 0..400

# Real-process tests (kazoo, zkCli.sh, the C client, the Java client and Curator recipes,
# node-zookeeper-client, raw wire, Apache ZooKeeper as the reference). Sets up what they
# need first (tests/integration/setup.sh): a virtualenv under target/ with kazoo, pytest
# and prometheus_client, node-zookeeper-client under target/, and Debian's zookeeper,
# zookeeper-bin, JDK and Curator packages when run as root (otherwise it names what is
# missing).
test-integration: build
	TEST_PY=$$(bash tests/integration/setup.sh) && $$TEST_PY -m pytest -q tests/integration

# A Jepsen-style test of the shipped binary (tests/jepsen/jepsen.py; as root: it makes
# network namespaces): NODES (3 or 5) real `zabkeeper server` processes, each in a
# namespace of its own, kazoo clients in another, seeded partitions (halves, leader
# isolation, ring, bridge, one-way), kill -9 and restart, SIGSTOP/SIGCONT for TIME
# seconds per seed; the checker judges the history, lock holders must not overlap, the
# servers must agree at the end. SEED is N, N,M or A..B; JEPSEN_SERVERS=zookeeper,zabkeeper
# runs Apache ZooKeeper 3.8 on the same seeds first, for the write gaps side by side.
# Reports, histories and logs go to target/jepsen/.
SEED ?= 1
NODES ?= 3
TIME ?= 60
JEPSEN_SERVERS ?= zabkeeper
jepsen: build
	TEST_PY=$$(bash tests/integration/setup.sh) && $$TEST_PY tests/jepsen/jepsen.py \
	    --seeds $(SEED) --nodes $(NODES) --time $(TIME) --servers $(JEPSEN_SERVERS)

# Coverage-guided fuzzing on the stable toolchain: cargo-afl (installed from crates.io
# when missing, with the AFL++ runtime it builds) runs each target of zabkeeper::fuzzing
# (client frames and every request record, peer handshakes and messages, the txn log,
# snapshot and epoch files, zoo.cfg, Apache ZooKeeper's files) from the seed corpora in
# fuzz/corpus/ for FUZZ_BUDGET (seconds, or Nx for N executions), resuming earlier runs.
# A crashing or hanging input is copied into the corpus, which `cargo test` replays
# (node/tests/fuzz_corpora.rs), and the target fails. fuzz/make_corpus.py rewrites the seeds.
FUZZ_BUDGET ?= 60
FUZZ_TARGETS ?= client peer storage config import
fuzz:
	@command -v cargo-afl >/dev/null || $(CARGO) install cargo-afl --version ^0.18
	@$(CARGO) afl config --build >/dev/null 2>&1 || true
	cd fuzz && CARGO_TARGET_DIR=../target/fuzz $(CARGO) afl build --release
	fuzz/run.sh $(FUZZ_BUDGET) $(FUZZ_TARGETS)

# Formatting, and clippy with warnings as errors for the normal build and for the madsim
# build (which compiles the simulated-only code).
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(MADSIM_ENV) $(CARGO) clippy --release -p zabkeeper-sim --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Storage benchmarks (a couple of minutes on 2 cores): txn log appends/s and fsyncs/s with
# group commit on the real file system, then restart time with 1,000,000 znodes of 100 bytes
# (snapshot + 100,000-txn log), then write latency from 8 clients while snapshots of that
# 1,000,000-znode tree are taken (they are written off the processor, so writes go on).
# BENCH_DIR puts the files on the disk you care about.
BENCH_DIR ?=
bench-storage:
	$(CARGO) run -q --release -p zabkeeper --example bench_storage -- \
	    --seconds 1 $(if $(BENCH_DIR),--dir $(BENCH_DIR)/log)
	$(CARGO) run -q --release -p zabkeeper --example bench_restart -- \
	    --znodes 1000000 --log-txns 100000 $(if $(BENCH_DIR),--dir $(BENCH_DIR)/restart)
	$(CARGO) run -q --release -p zabkeeper --example bench_snapshot -- \
	    --znodes 1000000 --seconds 20 $(if $(BENCH_DIR),--dir $(BENCH_DIR)/snapshot)

# zabkeeper against Apache ZooKeeper 3.8 (Debian's `zookeeper` package, installed here with
# apt-get when missing and running as root), one at a time in ABBA order, with the same
# zoo.cfg and real fsyncs, under the same load from the same Rust client:
# - standalone on 127.0.0.1, 8 sessions: writes, reads, 90/10 mixed, big-parent (child
#   create/delete under a znode holding 1 MB) (ops/s, p50/p99/p99.9/max), RSS with
#   100,000 znodes of 100 bytes, restart time with them;
# - 3-server ensembles on 127.0.0.1 (each member its own data dir), 8 and 32 sessions
#   spread over the members: create, setData, getData, mixed, with the ratio per row and
#   the CPU share of every member and of the load generator.
# About 15 minutes; shorter: make bench-compare BENCH_COMPARE_ARGS="--seconds 5 --warmup 3
# --ensemble-seconds 5". Numbers also go to target/bench-compare.json.
BENCH_COMPARE_ARGS ?=
# The servers in the order measured, one at a time (ABBA evens out background load).
BENCH_SERVERS ?= zookeeper,zabkeeper,zabkeeper,zookeeper
bench-compare:
	@[ -f /usr/share/java/zookeeper.jar ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq zookeeper default-jre-headless >/dev/null; } || \
	    { echo "bench-compare needs Debian's zookeeper package: sudo apt-get install zookeeper" >&2; exit 1; }
	$(CARGO) build -q --release -p zabkeeper --bin zabkeeper
	$(CARGO) run -q --release -p zabkeeper --example bench_compare -- \
	    --servers $(BENCH_SERVERS) \
	    --json target/bench-compare.json $(if $(BENCH_DIR),--dir $(BENCH_DIR)) $(BENCH_COMPARE_ARGS)

# Memory and restart at scale, side by side (ABBA): each server standalone loads
# BENCH_MEMORY_ZNODES znodes of 100 bytes (1,000,000; 10000000 on a bigger machine) from 32
# sessions with snapCount=100000 (snapshots are taken during the load); prints RSS after
# the load, peak RSS during it (VmHWM), the newest snapshot's size, restart to the first
# read of the last znode, RSS and peak RSS after the restart. About 10 minutes for 1M.
# Numbers also go to target/bench-memory.json.
BENCH_MEMORY_ZNODES ?= 1000000
BENCH_MEMORY_ARGS ?=
bench-memory:
	@[ -f /usr/share/java/zookeeper.jar ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq zookeeper default-jre-headless >/dev/null; } || \
	    { echo "bench-memory needs Debian's zookeeper package: sudo apt-get install zookeeper" >&2; exit 1; }
	$(CARGO) build -q --release -p zabkeeper --bin zabkeeper
	$(CARGO) run -q --release -p zabkeeper --example bench_compare -- \
	    --memory-only --znodes $(BENCH_MEMORY_ZNODES) --sessions 32 \
	    --servers $(BENCH_SERVERS) \
	    --json target/bench-memory.json $(if $(BENCH_DIR),--dir $(BENCH_DIR)) $(BENCH_MEMORY_ARGS)

# Failover, side by side: a 3-server ensemble of each server (ABBA), 4 writer sessions on
# the followers, then the leader is killed (kill -9, tickTime=200) or stopped (SIGSTOP,
# tickTime=500, syncLimit=5); prints how long acknowledged writes stop, 3 runs each. About
# 5 minutes. Numbers also go to target/bench-failover.json.
BENCH_FAILOVER_ARGS ?= --failover-runs 3
bench-failover:
	@[ -f /usr/share/java/zookeeper.jar ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq zookeeper default-jre-headless >/dev/null; } || \
	    { echo "bench-failover needs Debian's zookeeper package: sudo apt-get install zookeeper" >&2; exit 1; }
	$(CARGO) build -q --release -p zabkeeper --bin zabkeeper
	$(CARGO) run -q --release -p zabkeeper --example bench_compare -- \
	    --skip-standalone --ensemble-sessions 0 \
	    --servers zookeeper,zabkeeper,zabkeeper,zookeeper \
	    --json target/bench-failover.json $(if $(BENCH_DIR),--dir $(BENCH_DIR)) $(BENCH_FAILOVER_ARGS)

# Checker speed and memory: generated kv and register histories of 10k, 100k and 1M
# operations, 10 to 100 processes, a few percent info ops; then the time to decide
# Porcupine-style 10- and 50-client kv histories, linearizable and not.
bench-checker:
	$(CARGO) run -q --release -p zabkeeper-check --example bench

clean:
	$(CARGO) clean
