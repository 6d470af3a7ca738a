//! Durability: the transaction log, snapshots and the ZAB epoch files.
//!
//! The [`Storage`] trait is what the runtime drives; [`FileStorage`] implements it over a
//! small file-system trait [`Fs`], which has a real implementation ([`RealFs`]) and an
//! in-memory disk with crash semantics and seeded faults for the simulator ([`SimFs`]).
//!
//! Txns and snapshots are opaque bytes here: a txn is `(zxid, bytes)`, a snapshot is
//! `(zxid, bytes)`. The tree's codec lives in `state`.
//!
//! On-disk layout follows ZooKeeper so operators recognise the files:
//! `<dataLogDir>/version-2/log.<hex zxid>`, `<dataDir>/version-2/snapshot.<hex zxid>`,
//! `<dataDir>/version-2/acceptedEpoch` and `currentEpoch`. The record framing is our own
//! (length + CRC32C + zxid + payload); see [`mod@format`].
//!
//! ```
//! use zabkeeper::storage::{FileStorage, FileStorageOptions, SimFs, Storage};
//! use zabkeeper::types::make_zxid;
//!
//! let disk = SimFs::new(7); // or RealFs on a real server
//! let mut st = FileStorage::open(disk.clone(), FileStorageOptions::small("/data", "/data"))?;
//! let recovered = st.recover()?; // newest valid snapshot + every txn after it
//! assert_eq!(recovered.last_zxid(), 0);
//! st.append(make_zxid(1, 1), b"txn bytes")?;
//! assert_eq!(st.fsync()?, make_zxid(1, 1)); // durable: now the ACK may go out
//! drop(st);
//! disk.crash_lose_all(); // power loss
//! let mut st = FileStorage::open(disk, FileStorageOptions::small("/data", "/data"))?;
//! assert_eq!(st.recover()?.txns, vec![(make_zxid(1, 1), b"txn bytes".to_vec())]);
//! # Ok::<(), zabkeeper::storage::StorageError>(())
//! ```

pub mod dump;
pub mod file;
pub mod format;
pub mod fs;
pub mod zookeeper;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::types::{zxid_counter, zxid_epoch, Zxid};

pub use file::{snapshot_files_in, FileStorage, FileStorageOptions, StorageStats};
pub use fs::{Fs, FsFile, RealFs, SimFs, SimFsFaults, SimFsStats};

/// The two epochs ZAB keeps on disk (ZooKeeper's `acceptedEpoch` and `currentEpoch` files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Epochs {
    /// The last epoch this peer accepted in a NEWEPOCH (discovery phase).
    pub accepted_epoch: u32,
    /// The last epoch this peer acknowledged with a NEWLEADER (synchronisation phase).
    pub current_epoch: u32,
}

/// What a node restarts from: the newest valid snapshot and every txn logged after it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Recovered {
    /// The newest valid snapshot, if any: `(zxid, bytes)`.
    pub snapshot: Option<(Zxid, Vec<u8>)>,
    /// Every logged txn with a zxid greater than the snapshot's, in zxid order.
    pub txns: Vec<(Zxid, Vec<u8>)>,
}

impl Recovered {
    /// The zxid of the last txn, or of the snapshot, or 0 for an empty history.
    pub fn last_zxid(&self) -> Zxid {
        self.txns
            .last()
            .map(|(z, _)| *z)
            .or(self.snapshot.as_ref().map(|(z, _)| *z))
            .unwrap_or(0)
    }
}

/// The durable state of one ZooKeeper server: txn log, snapshots and epochs.
///
/// Synchronous: the runtime decides which thread or task runs it. Every error is final
/// for log and epoch operations (a failed fsync is never retried: see [`StorageError::Failed`]).
pub trait Storage {
    /// Appends a txn. Buffered, not durable until [`Storage::fsync`] returns.
    ///
    /// `zxid` must follow the last logged zxid (or the newest snapshot's): the same epoch
    /// with counter + 1, or a newer epoch with counter 1.
    fn append(&mut self, zxid: Zxid, txn: &[u8]) -> Result<(), StorageError>;
    /// Makes every appended txn durable (fsync, unless `forceSync=no`); returns the zxid
    /// durable up to.
    fn fsync(&mut self) -> Result<Zxid, StorageError>;
    /// The newest zxid this storage holds: the last appended txn, or the newest snapshot
    /// if that is newer, or 0 when empty.
    fn last_logged_zxid(&self) -> Zxid;
    /// Every logged txn with a zxid greater than `zxid`, in order (includes txns appended but
    /// not yet synced). Fails with [`StorageError::LogDoesNotCover`] unless they form a
    /// gapless continuation of `zxid` (the leader's DIFF-or-SNAP decision).
    fn read_txns_after(&mut self, zxid: Zxid) -> Result<Vec<(Zxid, Vec<u8>)>, StorageError>;
    /// ZAB's TRUNC: durably drops every txn (and snapshot) with a zxid greater than `zxid`.
    /// Later appends go to a new log file. If `zxid` itself was known only through a newer
    /// snapshot, the history ends below it: check [`Storage::last_logged_zxid`]. Refused with
    /// [`StorageError::CannotTruncate`] (changing nothing) if no snapshot at or before `zxid`
    /// remains and the log does not start the history.
    fn truncate_after(&mut self, zxid: Zxid) -> Result<(), StorageError>;
    /// Durably writes a snapshot: temporary name, fsync, rename, fsync of the directory.
    ///
    /// A snapshot ahead of the log (a learner taking its leader's snapshot) becomes the
    /// point the next txn follows. A snapshot behind a divergent suffix of the log does not
    /// drop that suffix: TRUNC it with [`Storage::truncate_after`] first. A failure here is
    /// not fatal (the log is untouched).
    fn write_snapshot(&mut self, zxid: Zxid, bytes: &[u8]) -> Result<(), StorageError>;
    /// Starts a snapshot of a state the log already holds (`zxid` at most
    /// [`Storage::last_logged_zxid`]) that is written off this storage's thread: the
    /// returned [`SnapshotWriter`] can move to another thread and write while appends and
    /// syncs go on here. Report its success with [`Storage::snapshot_written`]. Do not
    /// truncate, recover or load snapshots while a writer is outstanding.
    fn begin_snapshot(&mut self, zxid: Zxid) -> Result<Box<dyn SnapshotWriter>, StorageError>;
    /// Records that a writer from [`Storage::begin_snapshot`] wrote its snapshot.
    fn snapshot_written(&mut self, zxid: Zxid);
    /// The newest snapshot whose header, CRC and trailer are valid.
    fn load_newest_snapshot(&mut self) -> Result<Option<(Zxid, Vec<u8>)>, StorageError>;
    /// Deletes old snapshots and the logs only they need, keeping the newest
    /// `max(retain_snapshots, 3)` valid snapshots (`autopurge.snapRetainCount`).
    fn purge(&mut self, retain_snapshots: usize) -> Result<(), StorageError>;
    /// The epochs as last durably written.
    fn epochs(&self) -> Epochs;
    /// Durably sets `acceptedEpoch` (temporary file, fsync, rename, fsync of the directory).
    fn set_accepted_epoch(&mut self, epoch: u32) -> Result<(), StorageError>;
    /// Durably sets `currentEpoch` (temporary file, fsync, rename, fsync of the directory).
    fn set_current_epoch(&mut self, epoch: u32) -> Result<(), StorageError>;
    /// The newest valid snapshot plus every txn after it, after checking that they form one
    /// gapless history; refuses (with an error naming the file) otherwise.
    fn recover(&mut self) -> Result<Recovered, StorageError>;
}

/// A [`Storage`] wrapped around another one, forwarding every call to it: a wrapper that
/// watches or intercepts a few calls (a test's journal or gate, the simulator's
/// deliberately broken builds) implements [`StorageLayer::inner`] and
/// [`StorageLayer::inner_mut`] and overrides only those calls; it is a [`Storage`] through
/// the blanket implementation.
pub trait StorageLayer {
    /// The storage calls are forwarded to.
    type Inner: Storage + ?Sized;
    /// The inner storage.
    fn inner(&self) -> &Self::Inner;
    /// The inner storage, mutably.
    fn inner_mut(&mut self) -> &mut Self::Inner;
    /// Forwards [`Storage::append`].
    fn append(&mut self, zxid: Zxid, txn: &[u8]) -> Result<(), StorageError> {
        self.inner_mut().append(zxid, txn)
    }
    /// Forwards [`Storage::fsync`].
    fn fsync(&mut self) -> Result<Zxid, StorageError> {
        self.inner_mut().fsync()
    }
    /// Forwards [`Storage::last_logged_zxid`].
    fn last_logged_zxid(&self) -> Zxid {
        self.inner().last_logged_zxid()
    }
    /// Forwards [`Storage::read_txns_after`].
    fn read_txns_after(&mut self, zxid: Zxid) -> Result<Vec<(Zxid, Vec<u8>)>, StorageError> {
        self.inner_mut().read_txns_after(zxid)
    }
    /// Forwards [`Storage::truncate_after`].
    fn truncate_after(&mut self, zxid: Zxid) -> Result<(), StorageError> {
        self.inner_mut().truncate_after(zxid)
    }
    /// Forwards [`Storage::write_snapshot`].
    fn write_snapshot(&mut self, zxid: Zxid, bytes: &[u8]) -> Result<(), StorageError> {
        self.inner_mut().write_snapshot(zxid, bytes)
    }
    /// Forwards [`Storage::begin_snapshot`].
    fn begin_snapshot(&mut self, zxid: Zxid) -> Result<Box<dyn SnapshotWriter>, StorageError> {
        self.inner_mut().begin_snapshot(zxid)
    }
    /// Forwards [`Storage::snapshot_written`].
    fn snapshot_written(&mut self, zxid: Zxid) {
        self.inner_mut().snapshot_written(zxid)
    }
    /// Forwards [`Storage::load_newest_snapshot`].
    fn load_newest_snapshot(&mut self) -> Result<Option<(Zxid, Vec<u8>)>, StorageError> {
        self.inner_mut().load_newest_snapshot()
    }
    /// Forwards [`Storage::purge`].
    fn purge(&mut self, retain_snapshots: usize) -> Result<(), StorageError> {
        self.inner_mut().purge(retain_snapshots)
    }
    /// Forwards [`Storage::epochs`].
    fn epochs(&self) -> Epochs {
        self.inner().epochs()
    }
    /// Forwards [`Storage::set_accepted_epoch`].
    fn set_accepted_epoch(&mut self, epoch: u32) -> Result<(), StorageError> {
        self.inner_mut().set_accepted_epoch(epoch)
    }
    /// Forwards [`Storage::set_current_epoch`].
    fn set_current_epoch(&mut self, epoch: u32) -> Result<(), StorageError> {
        self.inner_mut().set_current_epoch(epoch)
    }
    /// Forwards [`Storage::recover`].
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        self.inner_mut().recover()
    }
}

impl<L: StorageLayer> Storage for L {
    fn append(&mut self, zxid: Zxid, txn: &[u8]) -> Result<(), StorageError> {
        StorageLayer::append(self, zxid, txn)
    }
    fn fsync(&mut self) -> Result<Zxid, StorageError> {
        StorageLayer::fsync(self)
    }
    fn last_logged_zxid(&self) -> Zxid {
        StorageLayer::last_logged_zxid(self)
    }
    fn read_txns_after(&mut self, zxid: Zxid) -> Result<Vec<(Zxid, Vec<u8>)>, StorageError> {
        StorageLayer::read_txns_after(self, zxid)
    }
    fn truncate_after(&mut self, zxid: Zxid) -> Result<(), StorageError> {
        StorageLayer::truncate_after(self, zxid)
    }
    fn write_snapshot(&mut self, zxid: Zxid, bytes: &[u8]) -> Result<(), StorageError> {
        StorageLayer::write_snapshot(self, zxid, bytes)
    }
    fn begin_snapshot(&mut self, zxid: Zxid) -> Result<Box<dyn SnapshotWriter>, StorageError> {
        StorageLayer::begin_snapshot(self, zxid)
    }
    fn snapshot_written(&mut self, zxid: Zxid) {
        StorageLayer::snapshot_written(self, zxid)
    }
    fn load_newest_snapshot(&mut self) -> Result<Option<(Zxid, Vec<u8>)>, StorageError> {
        StorageLayer::load_newest_snapshot(self)
    }
    fn purge(&mut self, retain_snapshots: usize) -> Result<(), StorageError> {
        StorageLayer::purge(self, retain_snapshots)
    }
    fn epochs(&self) -> Epochs {
        StorageLayer::epochs(self)
    }
    fn set_accepted_epoch(&mut self, epoch: u32) -> Result<(), StorageError> {
        StorageLayer::set_accepted_epoch(self, epoch)
    }
    fn set_current_epoch(&mut self, epoch: u32) -> Result<(), StorageError> {
        StorageLayer::set_current_epoch(self, epoch)
    }
    fn recover(&mut self) -> Result<Recovered, StorageError> {
        StorageLayer::recover(self)
    }
}

/// Writes one snapshot on any thread; see [`Storage::begin_snapshot`].
pub trait SnapshotWriter: Send {
    /// The zxid the snapshot holds.
    fn zxid(&self) -> Zxid;
    /// Durably writes the snapshot: temporary name, fsync, rename, fsync of the directory.
    /// A failure leaves no snapshot under the final name (the log is untouched).
    fn write(self: Box<Self>, bytes: &[u8]) -> Result<(), StorageError>;
}

/// Why a storage operation failed. Messages name the file and offset involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call failed.
    #[error("I/O error during {op} on {path}: {source}")]
    Io {
        /// The operation, e.g. "fsync".
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file's content is corrupt where it cannot be a torn tail.
    #[error("corrupt {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the bad data.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The zxids do not form a gapless ZAB history.
    #[error("zxid gap in {path} at offset {offset}: {next} does not follow {prev}")]
    ZxidGap {
        /// The file holding `next`.
        path: PathBuf,
        /// Byte offset of the record holding `next`.
        offset: u64,
        /// The previous zxid (last txn or snapshot).
        prev: ZxidHex,
        /// The zxid that should follow it but does not.
        next: ZxidHex,
    },
    /// `append` was given a zxid that does not follow the last one.
    #[error("cannot append txn {next}: it does not follow the last logged zxid {prev}")]
    OutOfSequence {
        /// The last logged zxid (or the newest snapshot's).
        prev: ZxidHex,
        /// The rejected zxid.
        next: ZxidHex,
    },
    /// Logs exist but no valid snapshot, and the logs do not start the history
    /// (ZOOKEEPER-2325: starting from an empty tree would lose data).
    #[error("no valid snapshot in {snap_dir}, but {first_log} starts at {first_zxid} rather than at the beginning of history; refusing to start from an empty tree")]
    MissingSnapshot {
        /// The snapshot directory.
        snap_dir: PathBuf,
        /// The oldest log file.
        first_log: PathBuf,
        /// Its first txn.
        first_zxid: ZxidHex,
    },
    /// The newest snapshot is invalid and the log does not cover the span from an older
    /// valid snapshot (or the empty tree) up to it.
    #[error("snapshot {path} is invalid ({reason}) and the log does not cover {from}..={to} to fall back on an older state")]
    SnapshotNotCovered {
        /// The invalid snapshot.
        path: PathBuf,
        /// Why it is invalid.
        reason: String,
        /// The zxid of the state we could fall back on.
        from: ZxidHex,
        /// The zxid the invalid snapshot held.
        to: ZxidHex,
    },
    /// The snapshot's zxid has an epoch newer than `currentEpoch` (ZOOKEEPER-2354).
    #[error("snapshot {path} has zxid {zxid} of epoch {zxid_epoch}, newer than currentEpoch {current_epoch}")]
    EpochBehindSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// Its zxid.
        zxid: ZxidHex,
        /// The epoch of that zxid.
        zxid_epoch: u32,
        /// The `currentEpoch` on disk.
        current_epoch: u32,
    },
    /// TRUNC to a zxid below every snapshot, when the log does not start the history: the
    /// state at that zxid cannot be rebuilt. Nothing was changed.
    #[error("cannot truncate to {zxid}: no snapshot in {snap_dir} at or before it, and the log does not start the history")]
    CannotTruncate {
        /// The requested truncation point.
        zxid: ZxidHex,
        /// The snapshot directory.
        snap_dir: PathBuf,
    },
    /// `read_txns_after` cannot return every txn after the zxid asked for: older logs were
    /// purged, or the history jumps over txns known here only through a snapshot. A leader
    /// then sends a snapshot instead of a DIFF.
    #[error(
        "the log does not hold every txn after {after}: {next} in {path} does not follow {prev}"
    )]
    LogDoesNotCover {
        /// The zxid asked for.
        after: ZxidHex,
        /// The last zxid that could be returned in sequence (or `after`).
        prev: ZxidHex,
        /// The next txn the log holds (or the snapshot the history continues in).
        next: ZxidHex,
        /// The log file (or snapshot) holding `next`.
        path: PathBuf,
    },
    /// An epoch file does not hold a number.
    #[error("cannot parse epoch file {path}: {content:?}")]
    BadEpochFile {
        /// The file.
        path: PathBuf,
        /// What it holds (truncated).
        content: String,
    },
    /// A txn or snapshot is larger than the format allows.
    #[error("record of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The size given.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// [`Storage::begin_snapshot`] was asked for a state the log does not hold yet.
    #[error("cannot start a background snapshot at {zxid}: the log ends at {last}")]
    SnapshotAhead {
        /// The zxid asked for.
        zxid: ZxidHex,
        /// The last logged zxid.
        last: ZxidHex,
    },
    /// An earlier log or epoch write failed (for example an fsync): the storage refuses
    /// every further operation and the node must stop. A failed fsync is never retried.
    #[error("storage failed earlier and refuses further operations ({0}); the node must stop")]
    Failed(String),
}

impl StorageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// A zxid displayed as ZooKeeper does: `0x<hex>` (epoch in the high 32 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZxidHex(pub Zxid);

impl fmt::Display for ZxidHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:x}", self.0)
    }
}

/// Whether `next` may directly follow `prev` in a ZAB history: the same epoch with the
/// next counter, or a newer epoch starting at counter 1. `prev == 0` is the empty history.
pub fn zxid_follows(prev: Zxid, next: Zxid) -> bool {
    let (pe, pc) = (zxid_epoch(prev), zxid_counter(prev));
    let (ne, nc) = (zxid_epoch(next), zxid_counter(next));
    (ne == pe && pc.checked_add(1) == Some(nc)) || (ne > pe && nc == 1)
}

#[cfg(test)]
mod zxid_tests {
    use super::*;
    use crate::types::make_zxid;

    #[test]
    fn follows_rules() {
        assert!(zxid_follows(0, make_zxid(1, 1)));
        assert!(zxid_follows(0, 1));
        assert!(zxid_follows(make_zxid(1, 5), make_zxid(1, 6)));
        assert!(zxid_follows(make_zxid(1, 5), make_zxid(3, 1)));
        assert!(!zxid_follows(make_zxid(1, 5), make_zxid(1, 7)));
        assert!(!zxid_follows(make_zxid(1, 5), make_zxid(1, 5)));
        assert!(!zxid_follows(make_zxid(1, 5), make_zxid(2, 2)));
        assert!(!zxid_follows(make_zxid(2, 1), make_zxid(1, 2)));
        assert!(!zxid_follows(make_zxid(1, u32::MAX), make_zxid(2, 0)));
    }

    #[test]
    fn zxid_hex_display() {
        assert_eq!(ZxidHex(make_zxid(1, 10)).to_string(), "0x10000000a");
    }
}
