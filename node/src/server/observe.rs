//! An optional observation hook for test harnesses (the simulator's global checks: at
//! most one established leader per epoch, one txn per zxid, committed zxid never going
//! backwards, the same tree digest at the same zxid, the final convergence of every
//! replica, and that a client is told its session expired only after the session's
//! CloseSession was committed). Production servers install none, and then the only cost
//! is an `Option` check per commit, per closed session, per role change and per tree load.
//!
//! Together, [`Observation::Committed`] and [`Observation::TreeLoaded`] tell the harness
//! every change of a server's tree: after the last of them, the server's tree is at the
//! reported zxid with the reported digest.

use std::sync::Arc;

use crate::types::{SessionId, Zxid};

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
    /// The server applied a committed CloseSession txn (a client's close, or an expiry
    /// decided by the leader): from now on it answers the session's reconnects "expired".
    /// Reported by standalone servers too.
    SessionClosed {
        /// The closed session.
        session: SessionId,
        /// The CloseSession txn's zxid.
        zxid: Zxid,
    },
    /// The server made a local session (`localSessionsEnabled`, or read-only mode): no
    /// other server knows it unless a CreateSession for it commits (an upgrade).
    LocalSessionMade {
        /// The session.
        session: SessionId,
    },
    /// The server applied a committed CreateSession: the session is global from `zxid`
    /// on (a new session, or an upgraded local one).
    SessionCreated {
        /// The session.
        session: SessionId,
        /// The CreateSession txn's zxid.
        zxid: Zxid,
    },
    /// The server replaced its whole tree without applying a committed txn: at start-up
    /// (snapshot + log replay), from the leader's SNAP, or reloaded after a TRUNC.
    TreeLoaded {
        /// Where the tree came from.
        source: TreeSource,
        /// The tree's last processed zxid (the newest txn it holds, which for a tree
        /// recovered at start-up may be a logged txn not yet known to be committed).
        zxid: Zxid,
        /// The tree's digest ([`crate::state::tree::DataTree::digest`]).
        digest: u64,
    },
}

/// Where a server's tree came from in an [`Observation::TreeLoaded`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeSource {
    /// Start-up recovery: the newest valid snapshot plus the log replayed after it.
    Startup,
    /// The leader's snapshot (SNAP sync).
    Snap,
    /// Rebuilt from disk after a TRUNC removed txns the tree had applied.
    Trunc,
}

impl TreeSource {
    /// A short lower-case name (`startup`, `snap`, `trunc`).
    pub fn name(self) -> &'static str {
        match self {
            TreeSource::Startup => "startup",
            TreeSource::Snap => "snap",
            TreeSource::Trunc => "trunc",
        }
    }
}

/// The observer a harness installs with [`crate::runtime::start_observed`].
pub type ObserverFn = Arc<dyn Fn(Observation) + Send + Sync>;

/// The hash that names a txn in [`Observation::Committed`]: FNV-1a of its serialized
/// bytes (equal txns hash equal on every server).
pub fn txn_hash(bytes: &[u8]) -> u64 {
    crate::hash::fnv1a(bytes)
}
