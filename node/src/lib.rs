//! zabkeeper: a ZooKeeper-compatible coordination service with ZAB replication.
//!
//! Layers (see ARCHITECTURE.md):
//! - [`types`]: ZooKeeper's vocabulary (Stat, ACL, error codes, opcodes).
//! - [`state`]: the znode tree, txns, watches, ACLs. Pure.
//! - [`proto`]: wire codecs (client protocol, peer messages). Pure.
//! - [`core`]: sans-IO ZAB and sessions. Pure; time arrives as ticks.
//! - [`server`]: the ZooKeeper server pipeline around the core (sessions, requests,
//!   reads, watches, replies). Pure; time arrives with each input.
//! - [`config`]: `zoo.cfg`, parsed and checked.
//! - [`storage`]: the `Storage` trait, its file implementation and the simulated disk.
//! - [`runtime`]: the only place that uses tokio.
//! - [`client`]: async client library over `proto`.

// The `broken-*` features build a deliberately broken server, only for the simulator's
// proof that it bites (zabkeeper-sim's tests/bites.rs); outside madsim they are refused.
#[cfg(all(
    not(madsim),
    any(
        feature = "broken-commit-without-quorum",
        feature = "broken-skip-trunc",
        feature = "broken-observer-never-rejoins",
        feature = "broken-learner-trusts-own-sessions",
        feature = "broken-sessions-not-validated"
    )
))]
compile_error!(
    "the broken-* features build a deliberately broken server for the simulator's bite \
     tests; they compile only with RUSTFLAGS=\"--cfg madsim\" (see make test-sim)"
);

pub mod client;
pub mod config;
pub mod core;
pub mod hash;
pub mod proto;
pub mod runtime;
pub mod server;
pub mod state;
pub mod storage;
pub mod types;
