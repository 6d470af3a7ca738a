//! Crash points: faults tied to the node's protocol steps rather than to a time.
//!
//! The executor arms a point ([`CrashPoints::arm`]); every simulated server's storage is
//! wrapped in a [`CrashPointStorage`] that asks, at each storage step of the ZAB protocol
//! ([`Step`]), whether an armed point fires there. One that fires is disarmed and makes
//! the step fail at its [`Moment`]: the node takes a failed persist action as fatal and
//! stops before anything that depends on it leaves (no ACK, no reply), and the executor,
//! told at once on a channel, kills the server at the same virtual instant and applies the
//! power loss to its disk. Points fire only once the server has recovered its storage, so
//! a start-up never fails on one.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use zabkeeper::storage::{Storage, StorageError, StorageLayer};
use zabkeeper::types::Zxid;

use crate::fault::{Moment, Step};

/// An armed crash point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Armed {
    /// The server it applies to, or any server.
    pub server: Option<usize>,
    /// The step it fires at.
    pub step: Step,
    /// Where in the step.
    pub moment: Moment,
    /// How long the crashed server stays down.
    pub restart_after_ms: u64,
}

/// A crash point that fired on `server`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// The server that reached the step.
    pub server: usize,
    /// The point.
    pub point: Armed,
}

/// The armed crash points of one run, shared by the executor and every server's storage.
#[derive(Clone)]
pub struct CrashPoints {
    armed: Arc<Mutex<Vec<Armed>>>,
    fired: UnboundedSender<Fired>,
}

impl CrashPoints {
    /// No point armed; the receiver gets every point that fires, in order.
    pub fn new() -> (CrashPoints, UnboundedReceiver<Fired>) {
        let (fired, rx) = unbounded_channel();
        let points = CrashPoints {
            armed: Arc::default(),
            fired,
        };
        (points, rx)
    }

    /// Arms a point (after those already armed: the oldest matching point fires first).
    pub fn arm(&self, point: Armed) {
        self.armed.lock().expect("crash points").push(point);
    }

    /// Disarms every point.
    pub fn disarm_all(&self) {
        self.armed.lock().expect("crash points").clear();
    }

    /// Whether a point fires as `server` reaches `step`: the oldest matching one is
    /// disarmed, reported, and its moment returned.
    fn fire(&self, server: usize, step: Step) -> Option<Moment> {
        let mut armed = self.armed.lock().expect("crash points");
        let i = armed
            .iter()
            .position(|a| a.step == step && a.server.is_none_or(|s| s == server))?;
        let point = armed.remove(i);
        let _ = self.fired.send(Fired { server, point });
        Some(point.moment)
    }
}

/// A server's storage with its crash points.
pub struct CrashPointStorage<S> {
    inner: S,
    server: usize,
    points: CrashPoints,
    recovered: bool,
}

impl<S: Storage> CrashPointStorage<S> {
    /// Wraps server `server`'s storage.
    pub fn new(inner: S, server: usize, points: CrashPoints) -> Self {
        CrashPointStorage {
            inner,
            server,
            points,
            recovered: false,
        }
    }

    /// Runs `step` through `op` unless a point fires: before (the step is not done),
    /// after (done), or inside it (the step's writes, and the log's buffered records,
    /// reach the file, and no fsync follows; for the fsync step itself, it never runs).
    fn step<T>(
        &mut self,
        step: Step,
        op: impl FnOnce(&mut S) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        let moment = if self.recovered {
            self.points.fire(self.server, step)
        } else {
            None
        };
        let crashed = |m: Moment| StorageError::Io {
            op: "crash point",
            path: format!("{m:?} {step:?}").into(),
            source: std::io::Error::other("the simulated power fails"),
        };
        match moment {
            None => op(&mut self.inner),
            Some(Moment::Before) => Err(crashed(Moment::Before)),
            Some(Moment::After) => {
                op(&mut self.inner)?;
                Err(crashed(Moment::After))
            }
            Some(Moment::Torn) => {
                // The step's writes go to the file but no fsync covers them: an fsync that
                // fails drops its writes from the disk's future (as Linux does), which would
                // be a clean loss, not a torn one. Reading the log hands buffered records to
                // the file system.
                if step != Step::Fsync {
                    op(&mut self.inner)?;
                }
                let last = self.inner.last_logged_zxid();
                let _ = self.inner.read_txns_after(last);
                Err(crashed(Moment::Torn))
            }
        }
    }
}

impl<S: Storage> StorageLayer for CrashPointStorage<S> {
    type Inner = S;
    fn inner(&self) -> &S {
        &self.inner
    }
    fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }
    fn append(&mut self, zxid: Zxid, txn: &[u8]) -> Result<(), StorageError> {
        self.step(Step::Append, |s| s.append(zxid, txn))
    }
    fn fsync(&mut self) -> Result<Zxid, StorageError> {
        self.step(Step::Fsync, |s| s.fsync())
    }
    fn truncate_after(&mut self, zxid: Zxid) -> Result<(), StorageError> {
        self.step(Step::Truncate, |s| s.truncate_after(zxid))
    }
    fn write_snapshot(&mut self, zxid: Zxid, bytes: &[u8]) -> Result<(), StorageError> {
        self.step(Step::Snap, |s| s.write_snapshot(zxid, bytes))
    }
    fn set_accepted_epoch(&mut self, epoch: u32) -> Result<(), StorageError> {
        self.step(Step::AcceptedEpoch, |s| s.set_accepted_epoch(epoch))
    }
    fn set_current_epoch(&mut self, epoch: u32) -> Result<(), StorageError> {
        self.step(Step::CurrentEpoch, |s| s.set_current_epoch(epoch))
    }
    fn recover(&mut self) -> Result<zabkeeper::storage::Recovered, StorageError> {
        let r = self.inner.recover();
        self.recovered = true;
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(server: Option<usize>, step: Step) -> Armed {
        Armed {
            server,
            step,
            moment: Moment::After,
            restart_after_ms: 100,
        }
    }

    #[test]
    fn the_oldest_matching_point_fires_once() {
        let (points, mut fired) = CrashPoints::new();
        points.arm(point(Some(1), Step::CurrentEpoch));
        points.arm(point(None, Step::CurrentEpoch));
        points.arm(point(None, Step::Truncate));
        // Server 0 does not match the first point; the second (any server) fires.
        assert_eq!(points.fire(0, Step::CurrentEpoch), Some(Moment::After));
        assert_eq!(fired.try_recv().unwrap().server, 0);
        // Server 1 matches the first; then nothing is left for currentEpoch.
        assert_eq!(points.fire(1, Step::CurrentEpoch), Some(Moment::After));
        assert_eq!(points.fire(1, Step::CurrentEpoch), None);
        assert_eq!(points.fire(2, Step::Fsync), None);
        points.disarm_all();
        assert_eq!(points.fire(2, Step::Truncate), None);
        assert_eq!(fired.try_recv().unwrap().point.server, Some(1));
        assert!(fired.try_recv().is_err());
    }
}
