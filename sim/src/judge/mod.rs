//! Judging a run. One judge of ZooKeeper's contract: the client history is recorded in
//! the checker's own event type and judged by the `zabkeeper-check` library's `zk` model
//! ([`contract`]: linearizable writes and linearizable reads, session FIFO and zxid
//! order, reads consistent with their zxid, watches, ephemerals after expiry). Beside it,
//! the checks only the simulator can make, one small module each:
//!
//! - [`observations`]: global invariants over what the servers report (one leader per
//!   epoch, one txn and one tree digest per zxid, committed zxids never going back);
//! - [`expiry`]: a session is told it expired only after a server applied its close;
//! - [`convergence`]: the liveness phase's check that every replica reaches one tree.
//!
//! [`judge`] is the entry point the runner calls after a run.

pub mod contract;
pub mod convergence;
pub mod expiry;
pub mod observations;

use serde::{Deserialize, Serialize};

pub use convergence::{convergence, latest_trees, ReplicaTree};
pub use observations::{Observation, ObservationLog, Observed};

use crate::history::Event;

/// The outcome of judging one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// A safety property was violated.
    Violation {
        /// Which check (e.g. `linearizable`, `one-leader-per-epoch`).
        check: String,
        /// What went wrong, naming the operations or servers involved.
        detail: String,
    },
    /// The check ran out of budget; never a guess.
    Unknown {
        /// Why.
        reason: String,
    },
}

/// Judge a run's history and observations, in order: the global observation invariants,
/// session expiry against the observed closes, then ZooKeeper's contract on the history.
pub fn judge(history: &[Event], observations: &[Observation]) -> Verdict {
    let v = observations::check(observations);
    if v != Verdict::Pass {
        return v;
    }
    let v = expiry::check(history, observations);
    if v != Verdict::Pass {
        return v;
    }
    contract::check(history)
}

fn violation(check: &str, detail: String) -> Verdict {
    Verdict::Violation {
        check: check.to_string(),
        detail,
    }
}
