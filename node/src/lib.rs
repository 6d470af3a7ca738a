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

pub mod broken;
pub mod client;
pub mod config;
pub mod core;
#[cfg(not(madsim))]
pub mod fuzzing;
pub mod hash;
pub mod proto;
pub mod runtime;
pub mod server;
pub mod state;
pub mod storage;
pub mod types;
