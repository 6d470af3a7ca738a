//! An optional observation hook for test harnesses (the simulator's global checks: at
//! most one established leader per epoch, one txn per zxid, committed zxid never going
//! backwards, the same tree digest at the same zxid). Production servers install none,
//! and then the only cost is an `Option` check per commit and per role change.

use std::sync::Arc;

use crate::types::Zxid;

/// What a server reports to an installed observer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// The server established itself as the leader of `epoch` (it serves clients).
    Leading {
        /// The established epoch.
        epoch: u32,
    },
    /// The server applied the committed txn `zxid` to its tree.
    Committed {
        /// The txn's zxid.
        zxid: Zxid,
        /// FNV-1a of the txn's serialized bytes (equal txns hash equal on every server).
        txn_hash: u64,
        /// The tree's digest after applying it ([`crate::state::tree::DataTree::digest`]).
        digest: u64,
    },
}

/// The observer a harness installs with [`crate::runtime::server::start_observed`].
pub type ObserverFn = Arc<dyn Fn(Observation) + Send + Sync>;

/// 64-bit FNV-1a of `bytes`: deterministic on every platform.
pub fn txn_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_known_vectors() {
        assert_eq!(txn_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(txn_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(txn_hash(b"ab"), txn_hash(b"ba"));
    }
}
