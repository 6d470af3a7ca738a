//! Snapshots without stopping writes.
//!
//! The processor freezes the tree in O(1) ([`crate::state::tree::DataTree::freeze`]) at
//! the zxid it has applied, copies the session table, and asks storage for a
//! [`SnapshotWriter`]. The [`Snapshotter`] then serializes and writes the snapshot away
//! from the processor, which keeps applying txns meanwhile: on a thread of its own
//! ("snapshot", as ZooKeeper's "Snapshot Thread") in a real server; under madsim deferred
//! to the end of the processor's next step (see [`super::background`]), so the simulator
//! too runs writes between a freeze and the snapshot write. Either way the snapshot holds
//! exactly one zxid: the frozen tree never changes.
//!
//! One snapshot at a time: while one is in flight, the next one due waits for it to
//! finish (ZooKeeper's `SyncRequestProcessor` skips it instead: "Too busy to snap,
//! skipping"; waiting keeps the log between snapshots near `snapCount`).

use std::sync::Arc;

use tokio::sync::Notify;

use super::background::{Background, Lost};
use crate::state::tree::FrozenTree;
use crate::storage::{SnapshotWriter, StorageError};
use crate::types::{SessionId, Zxid};

/// Everything a snapshot needs, taken at one zxid.
pub struct SnapshotJob {
    /// The tree at the snapshot's zxid.
    pub tree: FrozenTree,
    /// The live sessions and their timeouts at that zxid.
    pub sessions: Vec<(SessionId, i32)>,
    /// Where it goes.
    pub writer: Box<dyn SnapshotWriter>,
}

impl SnapshotJob {
    /// Serializes and durably writes the snapshot; returns its size in bytes.
    pub fn run(self) -> Result<usize, StorageError> {
        let bytes = super::recovery::encode_frozen(&self.tree, &self.sessions);
        let len = bytes.len();
        self.writer.write(&bytes)?;
        Ok(len)
    }
}

/// How a snapshot ended.
#[derive(Debug)]
pub struct Finished {
    /// The snapshot's zxid.
    pub zxid: Zxid,
    /// Its size in bytes, or why it was not written.
    pub result: Result<usize, StorageError>,
}

/// Runs at most one snapshot at a time off the processor. See the module docs.
#[derive(Default)]
pub struct Snapshotter {
    job: Background<Finished>,
}

impl Snapshotter {
    /// Whether a snapshot is being written.
    pub fn busy(&self) -> bool {
        self.job.busy()
    }

    /// Starts writing `job`'s snapshot. The caller checks [`Snapshotter::busy`] first.
    pub fn start(&mut self, job: SnapshotJob, wake: &Arc<Notify>) -> std::io::Result<()> {
        let zxid = job.tree.last_processed_zxid();
        self.job.start("snapshot", wake, move || Finished {
            zxid,
            result: job.run(),
        })
    }

    /// The snapshot that finished since the last call, if any; never blocks. Call once
    /// at the end of every processor step.
    pub fn poll(&mut self) -> Option<Finished> {
        self.job.poll().map(lost_is_failed)
    }

    /// Waits for the snapshot in flight, if any, to finish. Call before anything that
    /// truncates the log or reads snapshots back.
    pub fn wait(&mut self) -> Option<Finished> {
        self.job.wait().map(lost_is_failed)
    }
}

/// A snapshot thread that ended without a result (a panic) is a failed snapshot; its zxid
/// is unknown then (0).
fn lost_is_failed(r: Result<Finished, Lost>) -> Finished {
    r.unwrap_or_else(|Lost| Finished {
        zxid: 0,
        result: Err(StorageError::Failed(Lost.to_string())),
    })
}
