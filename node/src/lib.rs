//! zabkeeper: a ZooKeeper-compatible coordination service with ZAB replication.
//!
//! Layers (see ARCHITECTURE.md):
//! - [`types`]: ZooKeeper's vocabulary (Stat, ACL, error codes, opcodes).
//! - [`state`]: the znode tree, txns, watches, ACLs. Pure.
//! - [`proto`]: wire codecs (client protocol, peer messages). Pure.
//! - [`core`]: sans-IO ZAB and sessions. Pure; time arrives as ticks.
//! - [`storage`]: the `Storage` trait, its file implementation and the simulated disk.
//! - [`runtime`]: the only place that uses tokio.
//! - [`client`]: async client library over `proto`.

pub mod client;
pub mod core;
pub mod proto;
pub mod runtime;
pub mod state;
pub mod storage;
pub mod types;
