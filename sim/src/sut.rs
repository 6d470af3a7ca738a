//! The system under test, as seen by the harness.

/// Whether the node replicates yet. While false, scenarios that need replication derive a
/// single standalone server (and say so in their printed options).
pub const REPLICATION_AVAILABLE: bool = false;
