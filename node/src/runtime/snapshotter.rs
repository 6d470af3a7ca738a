//! Snapshots without stopping writes.
//!
//! The processor freezes the tree in O(1) ([`crate::state::tree::DataTree::freeze`]) at
//! the zxid it has applied, copies the session table, and asks storage for a
//! [`SnapshotWriter`]. The [`Snapshotter`] then serializes and writes the snapshot away
//! from the processor, which keeps applying txns meanwhile: on a thread of its own
//! ("snapshot", as ZooKeeper's "Snapshot Thread") in a real server. Under madsim there are
//! no threads; the job is deferred to the end of the processor's next step, so the
//! simulator too runs writes between a freeze and the snapshot write. Either way the
//! snapshot holds exactly one zxid: the frozen tree never changes.
//!
//! One snapshot at a time: while one is in flight, the next one due waits for it to
//! finish (ZooKeeper's `SyncRequestProcessor` skips it instead: "Too busy to snap,
//! skipping"; waiting keeps the log between snapshots near `snapCount`).

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

enum InFlight {
    #[cfg(not(madsim))]
    Thread {
        zxid: Zxid,
        done: std::sync::mpsc::Receiver<Result<usize, StorageError>>,
        thread: std::thread::JoinHandle<()>,
    },
    #[cfg(madsim)]
    Deferred {
        job: SnapshotJob,
        /// Set at the end of the step that started the job; the job runs at the end of the
        /// next one.
        armed: bool,
    },
}

/// Runs at most one snapshot at a time off the processor. See the module docs.
#[derive(Default)]
pub struct Snapshotter {
    in_flight: Option<InFlight>,
}

impl Snapshotter {
    /// Whether a snapshot is being written.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Starts writing `job`'s snapshot. The caller checks [`Snapshotter::busy`] first.
    pub fn start(&mut self, job: SnapshotJob) -> std::io::Result<()> {
        debug_assert!(!self.busy(), "one snapshot at a time");
        #[cfg(not(madsim))]
        {
            let zxid = job.tree.last_processed_zxid();
            let (tx, done) = std::sync::mpsc::channel();
            let thread = std::thread::Builder::new()
                .name("snapshot".into())
                .spawn(move || {
                    let _ = tx.send(job.run());
                })?;
            self.in_flight = Some(InFlight::Thread { zxid, done, thread });
        }
        #[cfg(madsim)]
        {
            self.in_flight = Some(InFlight::Deferred { job, armed: false });
        }
        Ok(())
    }

    /// The snapshot that finished since the last call, if any; never blocks. Call once
    /// at the end of every processor step.
    pub fn poll(&mut self) -> Option<Finished> {
        match self.in_flight.as_mut()? {
            #[cfg(not(madsim))]
            InFlight::Thread { done, .. } => match done.try_recv() {
                Err(std::sync::mpsc::TryRecvError::Empty) => None,
                Ok(result) => {
                    let zxid = self.finish_thread();
                    Some(Finished { zxid, result })
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => self.wait(),
            },
            #[cfg(madsim)]
            InFlight::Deferred { armed, .. } => {
                if *armed {
                    self.wait()
                } else {
                    *armed = true;
                    None
                }
            }
        }
    }

    /// Joins the finished snapshot thread; returns its snapshot's zxid.
    #[cfg(not(madsim))]
    fn finish_thread(&mut self) -> Zxid {
        match self.in_flight.take() {
            Some(InFlight::Thread { zxid, thread, .. }) => {
                let _ = thread.join();
                zxid
            }
            None => 0,
        }
    }

    /// Waits for the snapshot in flight, if any, to finish. Call before anything that
    /// truncates the log or reads snapshots back.
    pub fn wait(&mut self) -> Option<Finished> {
        match self.in_flight.take()? {
            #[cfg(not(madsim))]
            InFlight::Thread { zxid, done, thread } => {
                let result = done.recv().unwrap_or_else(|_| {
                    Err(StorageError::Failed(
                        "the snapshot thread stopped without a result".into(),
                    ))
                });
                let _ = thread.join();
                Some(Finished { zxid, result })
            }
            #[cfg(madsim)]
            InFlight::Deferred { job, .. } => {
                let zxid = job.tree.last_processed_zxid();
                Some(Finished {
                    zxid,
                    result: job.run(),
                })
            }
        }
    }
}
