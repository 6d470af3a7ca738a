//! [`FileStorage`]: the txn log, snapshots and epoch files over an [`Fs`], laid out as
//! ZooKeeper lays them out.
//!
//! The history is a chain: every record's exact predecessor is the previous record in its
//! file, or, for a file's first record, the zxid in the file's header (the last zxid the
//! storage held when the file was created; 0 for the start of the history). A snapshot
//! written ahead of the log (a learner taking its leader's snapshot) makes the next txn
//! start a new file, so the jump is recorded. Appends must also follow ZAB's sequence
//! (same epoch and counter + 1, or a newer epoch at counter 1).
//!
//! Recovery rules (checked by [`FileStorage::open`] and [`Storage::recover`]):
//! - a torn or garbage tail of the LAST log (a crash mid-append) is truncated, with a warning;
//!   a zero-filled tail is the preallocated space and is simply the end; a record header
//!   of zeros followed by data is unsynced writes persisted out of order, also a tail, when
//!   its zeros reach a sector boundary or the next valid record (16 zeros mid-sector are
//!   bit rot, refused like any corruption);
//!   with forceSync on, a log is fsynced before the next one is created, so only the last
//!   log can have a tail to repair;
//! - corruption anywhere else (a bad record followed by valid ones, a bad record in a
//!   non-last log, a bad file header in a non-last log) is refused;
//! - no valid snapshot while the oldest log does not start the history is refused
//!   (ZOOKEEPER-2325);
//! - a snapshot whose zxid's epoch is newer than `currentEpoch` is refused unless the
//!   `updatingEpoch` marker says we crashed between the two writes (ZOOKEEPER-2354);
//! - a break in the chain after the snapshot is refused;
//! - an invalid newest snapshot falls back to an older valid one only if the log covers the
//!   span up to the invalid one's zxid.
//!
//! A failed log or epoch write (in particular a failed fsync) is final: every later call
//! returns [`StorageError::Failed`] and the node must stop.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::format::{self, LogTail, RecordRef};
use super::fs::{Fs, FsFile};
use super::{zxid_follows, Epochs, Recovered, SnapshotWriter, Storage, StorageError, ZxidHex};
use crate::types::{zxid_epoch, Zxid};

/// Where and how [`FileStorage`] keeps its files (the zoo.cfg settings that matter here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStorageOptions {
    /// zoo.cfg `dataDir`: snapshots and epoch files go in `<dataDir>/version-2/`.
    pub data_dir: PathBuf,
    /// zoo.cfg `dataLogDir` (defaults to `dataDir`): logs go in `<dataLogDir>/version-2/`.
    pub data_log_dir: PathBuf,
    /// zoo.cfg `forceSync`: when false, log syncs skip the fsync (as ZooKeeper does).
    /// Snapshots and epoch files are always fsynced.
    pub force_sync: bool,
    /// Log files grow in blocks of this many zero bytes (ZooKeeper's
    /// `zookeeper.preAllocSize`, 64 MiB), so that an fsync seldom updates the file size.
    /// Keep it small (e.g. 64 KiB) on [`super::SimFs`], which holds files in memory.
    pub preallocate_bytes: u64,
    /// Start a new log file after this many txns (ZooKeeper rolls at about `snapCount`).
    pub log_roll_txns: u64,
    /// Start a new log file once the current one holds this many bytes.
    pub log_roll_bytes: u64,
    /// Appended records are buffered in memory and handed to the file system once the
    /// buffer holds this many bytes, or at the next sync.
    pub write_buffer_bytes: usize,
    /// Enforce ZAB's gapless zxid sequence (same epoch and counter + 1, or a newer epoch at
    /// counter 1) on append and recovery. When false only increasing zxids are required.
    pub strict_zxid_sequence: bool,
}

impl FileStorageOptions {
    /// ZooKeeper's defaults with both directories given.
    pub fn new(data_dir: impl Into<PathBuf>, data_log_dir: impl Into<PathBuf>) -> Self {
        FileStorageOptions {
            data_dir: data_dir.into(),
            data_log_dir: data_log_dir.into(),
            force_sync: true,
            preallocate_bytes: 64 << 20,
            log_roll_txns: 100_000,
            log_roll_bytes: 64 << 20,
            write_buffer_bytes: 64 << 10,
            strict_zxid_sequence: true,
        }
    }

    /// Small files for tests and the simulator, where [`super::SimFs`] holds every byte in
    /// memory: 64 KiB preallocation, a new log file every 1000 txns or 4 MiB.
    pub fn small(data_dir: impl Into<PathBuf>, data_log_dir: impl Into<PathBuf>) -> Self {
        FileStorageOptions {
            preallocate_bytes: 64 << 10,
            log_roll_txns: 1000,
            log_roll_bytes: 4 << 20,
            ..Self::new(data_dir, data_log_dir)
        }
    }
}

/// A snapshot's zxid and body.
type Snapshot = (Zxid, Vec<u8>);

/// One log file as known in memory.
#[derive(Debug, Clone)]
struct LogFile {
    path: PathBuf,
    /// The zxid its first record follows (from its header); 0 if it starts the history.
    prev_zxid: Zxid,
    /// The zxid in its name: its first txn.
    first_zxid: Zxid,
    /// Its last txn (as appended, possibly not yet written out).
    last_zxid: Zxid,
    /// Offset just past its last record, as far as it has been handed to the file system.
    end: u64,
}

/// The log file being appended to.
struct Writer<H> {
    file: H,
    /// Bytes handed to the file system so far (logical end of the file).
    pos: u64,
    /// Current physical length (preallocated).
    allocated: u64,
    /// Records not yet handed to the file system; they go at `pos`.
    buf: Vec<u8>,
    /// Txns in this file.
    txns: u64,
}

/// The txn log, snapshots and epochs in ZooKeeper's directory layout. See the module docs.
pub struct FileStorage<F: Fs> {
    fs: F,
    opts: FileStorageOptions,
    log_dir: PathBuf,
    snap_dir: PathBuf,
    /// Log files in zxid order.
    logs: Vec<LogFile>,
    /// Appends go to the last of `logs` through this; `None` until the first append after
    /// opening (a restarted server starts a new log file, as ZooKeeper does).
    writer: Option<Writer<F::File>>,
    /// The log directory has a new entry not yet made durable.
    log_dir_dirty: bool,
    /// Txns were appended since the log's last fsync.
    log_unsynced: bool,
    /// A snapshot ahead of the log was written: the next txn starts a new log file, whose
    /// header records that it follows the snapshot (records in one file are consecutive).
    roll_pending: bool,
    /// The last appended txn (0 if none).
    last_log_zxid: Zxid,
    /// The newest snapshot file's zxid (by name), if any.
    newest_snapshot: Option<Zxid>,
    epochs: Epochs,
    /// Set by a failed log or epoch write; every later call fails with it.
    failed: Option<String>,
    stats: StorageStats,
}

/// Counters of what a [`FileStorage`] did since it was opened, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Txns appended.
    pub txns_appended: u64,
    /// Bytes of records appended (framing included).
    pub bytes_appended: u64,
    /// Log fsyncs (group commits).
    pub log_syncs: u64,
    /// Log files started.
    pub log_files_started: u64,
    /// Snapshots written.
    pub snapshots_written: u64,
}

impl<F: Fs> std::fmt::Debug for FileStorage<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStorage")
            .field("log_dir", &self.log_dir)
            .field("snap_dir", &self.snap_dir)
            .field("logs", &self.logs.len())
            .field("last_log_zxid", &ZxidHex(self.last_log_zxid))
            .field("newest_snapshot", &self.newest_snapshot.map(ZxidHex))
            .field("epochs", &self.epochs)
            .field("failed", &self.failed)
            .finish()
    }
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |e| StorageError::io(op, path, e)
}

/// Writes `content` to `dir/name` atomically: temporary file, fsync, rename, fsync dir.
fn write_atomic<F: Fs>(fs: &F, dir: &Path, name: &str, content: &[u8]) -> Result<(), StorageError> {
    write_atomic_parts(fs, dir, name, &[content])
}

/// [`write_atomic`] of the concatenation of `parts`.
fn write_atomic_parts<F: Fs>(
    fs: &F,
    dir: &Path,
    name: &str,
    parts: &[&[u8]],
) -> Result<(), StorageError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{}", format::TMP_SUFFIX));
    let result = (|| {
        let mut f = fs.create(&tmp).map_err(io_err("create", &tmp))?;
        let mut offset = 0u64;
        for part in parts {
            f.write_at(offset, part).map_err(io_err("write", &tmp))?;
            offset += part.len() as u64;
        }
        f.fsync().map_err(io_err("fsync", &tmp))?;
        fs.rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
        fs.sync_dir(dir).map_err(io_err("fsync directory", dir))
    })();
    if result.is_err() && fs.exists(&tmp) {
        // Best effort: a leftover is removed at the next open anyway.
        let _ = fs.remove(&tmp);
    }
    result
}

/// [`FileStorage`]'s [`SnapshotWriter`]: a handle on the file system and the snapshot
/// directory, so it can run on another thread.
struct FileSnapshotWriter<F: Fs> {
    fs: F,
    snap_dir: PathBuf,
    zxid: Zxid,
}

impl<F: Fs> SnapshotWriter for FileSnapshotWriter<F> {
    fn zxid(&self) -> Zxid {
        self.zxid
    }

    fn write(self: Box<Self>, bytes: &[u8]) -> Result<(), StorageError> {
        let name = format::snapshot_name(self.zxid);
        let (header, trailer) = format::snapshot_frame(self.zxid, bytes);
        write_atomic_parts(&self.fs, &self.snap_dir, &name, &[&header, bytes, &trailer])
    }
}

/// The snapshot files under `data_dir` (`<dataDir>/version-2/snapshot.<hex zxid>`, valid
/// or not, temporaries excluded), oldest first, read from the directory alone: safe while a
/// server owns the directory (opening a [`FileStorage`] on it would not be: it repairs
/// torn tails and removes temporaries). For operators' tools, tests and benchmarks.
pub fn snapshot_files_in(data_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = data_dir.join("version-2");
    let mut snaps: Vec<(Zxid, PathBuf)> = std::fs::read_dir(&dir)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let zxid = format::parse_name(&name, format::SNAP_PREFIX)?;
            Some((zxid, e.path()))
        })
        .collect();
    snaps.sort();
    Ok(snaps.into_iter().map(|(_, p)| p).collect())
}

fn round_up(n: u64, block: u64) -> u64 {
    if block == 0 {
        n
    } else {
        n.div_ceil(block) * block
    }
}

impl<F: Fs> FileStorage<F> {
    /// Opens (creating if needed) the storage: reads the epochs, removes leftover temporary
    /// files, and validates every log file, truncating a torn tail of the last one.
    /// Refuses corruption that cannot be a torn tail.
    pub fn open(fs: F, opts: FileStorageOptions) -> Result<Self, StorageError> {
        let log_dir = opts.data_log_dir.join("version-2");
        let snap_dir = opts.data_dir.join("version-2");
        fs.create_dir_all(&log_dir)
            .map_err(io_err("create directory", &log_dir))?;
        fs.create_dir_all(&snap_dir)
            .map_err(io_err("create directory", &snap_dir))?;
        // Make the `version-2` entries themselves durable (a no-op cost after the first run).
        for dir in [&opts.data_log_dir, &opts.data_dir] {
            fs.sync_dir(dir).map_err(io_err("fsync directory", dir))?;
        }
        let mut storage = FileStorage {
            fs,
            opts,
            log_dir,
            snap_dir,
            logs: Vec::new(),
            writer: None,
            log_dir_dirty: false,
            log_unsynced: false,
            roll_pending: false,
            last_log_zxid: 0,
            newest_snapshot: None,
            epochs: Epochs::default(),
            failed: None,
            stats: StorageStats::default(),
        };
        storage.remove_temporaries()?;
        storage.epochs = Epochs {
            accepted_epoch: storage.read_epoch(format::ACCEPTED_EPOCH_FILE)?,
            current_epoch: storage.read_epoch(format::CURRENT_EPOCH_FILE)?,
        };
        storage.load_logs()?;
        storage.newest_snapshot = storage.snapshot_zxids()?.last().copied();
        Ok(storage)
    }

    /// The directory holding the log files (`<dataLogDir>/version-2`).
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// The directory holding snapshots and epoch files (`<dataDir>/version-2`).
    pub fn snap_dir(&self) -> &Path {
        &self.snap_dir
    }

    /// The paths of the log files, oldest first.
    pub fn log_files(&self) -> Vec<PathBuf> {
        self.logs.iter().map(|l| l.path.clone()).collect()
    }

    /// The paths of the snapshot files (valid or not), oldest first.
    pub fn snapshot_files(&self) -> Result<Vec<PathBuf>, StorageError> {
        Ok(self
            .snapshot_zxids()?
            .into_iter()
            .map(|z| self.snapshot_path(z))
            .collect())
    }

    /// Counters since open.
    pub fn stats(&self) -> StorageStats {
        self.stats
    }

    /// The file system this storage runs on.
    pub fn fs(&self) -> &F {
        &self.fs
    }

    fn snapshot_path(&self, zxid: Zxid) -> PathBuf {
        self.snap_dir.join(format::snapshot_name(zxid))
    }

    fn check(&self) -> Result<(), StorageError> {
        match &self.failed {
            Some(why) => Err(StorageError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Records a fatal error: every later call fails.
    fn fail<T>(&mut self, e: StorageError) -> Result<T, StorageError> {
        tracing::error!("storage failed, refusing further operations: {e}");
        self.failed = Some(e.to_string());
        Err(e)
    }

    /// Removes leftover temporary files and makes the snapshot directory's names durable.
    fn remove_temporaries(&mut self) -> Result<(), StorageError> {
        let names = self
            .fs
            .list_dir(&self.snap_dir)
            .map_err(io_err("list directory", &self.snap_dir))?;
        for name in names.iter().filter(|n| n.ends_with(format::TMP_SUFFIX)) {
            let path = self.snap_dir.join(name);
            info!("removing leftover temporary file {}", path.display());
            self.fs.remove(&path).map_err(io_err("remove", &path))?;
        }
        // Also makes durable any name the previous process renamed into place but could not
        // fsync the directory for: this process is about to recover from it.
        self.fs
            .sync_dir(&self.snap_dir)
            .map_err(io_err("fsync directory", &self.snap_dir))
    }

    fn read_epoch(&self, name: &str) -> Result<u32, StorageError> {
        let path = self.snap_dir.join(name);
        if !self.fs.exists(&path) {
            return Ok(0);
        }
        let data = self.fs.read(&path).map_err(io_err("read", &path))?;
        format::decode_epoch(&data).ok_or_else(|| StorageError::BadEpochFile {
            path,
            content: String::from_utf8_lossy(&data[..data.len().min(40)]).into_owned(),
        })
    }

    fn list_zxids(&self, dir: &Path, prefix: &str) -> Result<Vec<Zxid>, StorageError> {
        let names = self
            .fs
            .list_dir(dir)
            .map_err(io_err("list directory", dir))?;
        let mut zxids: Vec<Zxid> = names
            .iter()
            .filter_map(|n| format::parse_name(n, prefix))
            .collect();
        zxids.sort_unstable();
        Ok(zxids)
    }

    fn snapshot_zxids(&self) -> Result<Vec<Zxid>, StorageError> {
        self.list_zxids(&self.snap_dir, format::SNAP_PREFIX)
    }

    /// Scans every log file; see the module docs for what is repaired and what refused.
    /// A writer for a snapshot at `zxid`. If `zxid`'s epoch is newer than `currentEpoch`
    /// (a learner writing its leader's snapshot before NEWLEADER), first durably leaves the
    /// marker that tells recovery why the epochs disagree, should we crash before
    /// `currentEpoch` is written.
    fn snapshot_writer(&mut self, zxid: Zxid) -> Result<Box<FileSnapshotWriter<F>>, StorageError> {
        self.check()?;
        if zxid_epoch(zxid) > self.epochs.current_epoch {
            let marker = self.marker_path();
            if !self.fs.exists(&marker) {
                write_atomic(&self.fs, &self.snap_dir, format::UPDATING_EPOCH_FILE, b"")?;
            }
        }
        Ok(Box::new(FileSnapshotWriter {
            fs: self.fs.clone(),
            snap_dir: self.snap_dir.clone(),
            zxid,
        }))
    }

    fn load_logs(&mut self) -> Result<(), StorageError> {
        let zxids = self.list_zxids(&self.log_dir, format::LOG_PREFIX)?;
        let mut dir_changed = false;
        let count = zxids.len();
        for (i, name_zxid) in zxids.into_iter().enumerate() {
            let is_last = i + 1 == count;
            let path = self.log_dir.join(format::log_name(name_zxid));
            let data = self.fs.read(&path).map_err(io_err("read", &path))?;
            let header = match format::check_log_header(&data) {
                Ok(header) => header,
                Err(reason) => {
                    // A crash right after creating the file can leave a torn header, and then
                    // no record after it can have been synced; nor can any if the header was
                    // never written at all (an fsync would have persisted it first). Anything
                    // else (a foreign file, rot) is refused, never deleted.
                    let unwritten = data.len() >= format::LOG_HEADER_LEN
                        && data[..format::LOG_HEADER_LEN].iter().all(|&b| b == 0);
                    let torn = format::is_torn_log_header(&data)
                        && format::find_valid_record(&data, 0, None).is_none();
                    if is_last && (unwritten || torn) {
                        warn!(
                            "removing {}: {reason} (torn creation of the last log)",
                            path.display()
                        );
                        self.fs.remove(&path).map_err(io_err("remove", &path))?;
                        dir_changed = true;
                        continue;
                    }
                    return Err(StorageError::Corrupt {
                        path,
                        offset: 0,
                        reason,
                    });
                }
            };
            let scan = format::scan_log(&data);
            let mut end = scan.end;
            match scan.tail {
                LogTail::Clean => {}
                LogTail::Garbage {
                    offset,
                    reason,
                    valid_record_after: Some(after),
                } => {
                    return Err(StorageError::Corrupt {
                        path,
                        offset,
                        reason: format!("{reason}; a valid record follows at offset {after}"),
                    });
                }
                LogTail::Garbage { offset, reason, .. } if !is_last => {
                    return Err(StorageError::Corrupt {
                        path,
                        offset,
                        reason: format!("{reason} (not the last log, so not a torn tail)"),
                    });
                }
                // Deliberately broken (sim bites test): a torn tail is refused as corruption.
                #[cfg(madsim)]
                LogTail::Garbage { offset, reason, .. }
                    if crate::broken::active(crate::broken::Bug::TornTailRefused) =>
                {
                    return Err(StorageError::Corrupt {
                        path,
                        offset,
                        reason,
                    });
                }
                LogTail::Garbage { offset, reason, .. } => {
                    warn!(
                        "truncating torn tail of {} at offset {offset} ({} bytes): {reason}",
                        path.display(),
                        data.len() as u64 - offset
                    );
                    let mut file = self.fs.open_write(&path).map_err(io_err("open", &path))?;
                    file.set_len(offset).map_err(io_err("truncate", &path))?;
                    file.fsync().map_err(io_err("fsync", &path))?;
                    end = offset;
                }
            }
            let (Some(first), Some(last)) = (scan.records.first(), scan.records.last()) else {
                warn!("removing {}: it holds no txn", path.display());
                self.fs.remove(&path).map_err(io_err("remove", &path))?;
                dir_changed = true;
                continue;
            };
            if first.zxid != name_zxid {
                return Err(StorageError::Corrupt {
                    path,
                    offset: first.offset,
                    reason: format!(
                        "first txn {} does not match the file name",
                        ZxidHex(first.zxid)
                    ),
                });
            }
            if let Some(prev) = self.logs.last() {
                if first.zxid <= prev.last_zxid {
                    return Err(StorageError::Corrupt {
                        path,
                        offset: first.offset,
                        reason: format!(
                            "first txn {} is not after the last txn {} of {}",
                            ZxidHex(first.zxid),
                            ZxidHex(prev.last_zxid),
                            prev.path.display()
                        ),
                    });
                }
            }
            if header.prev_zxid >= first.zxid {
                return Err(StorageError::Corrupt {
                    path,
                    offset: 8,
                    reason: format!(
                        "header says the first txn follows {}, which is not before it",
                        ZxidHex(header.prev_zxid)
                    ),
                });
            }
            self.last_log_zxid = last.zxid;
            self.logs.push(LogFile {
                path,
                prev_zxid: header.prev_zxid,
                first_zxid: first.zxid,
                last_zxid: last.zxid,
                end,
            });
        }
        // What a restart reads may still be only in the page cache (the previous process
        // stopped without a sync): make it durable before recovering from it, since the
        // recovered history is what this server votes and syncs with. Appends then go to a
        // new log file, so every earlier log must already be whole on disk.
        if self.opts.force_sync {
            for log in &self.logs {
                let mut file = self
                    .fs
                    .open_write(&log.path)
                    .map_err(io_err("open", &log.path))?;
                file.fsync().map_err(io_err("fsync", &log.path))?;
            }
        }
        if dir_changed || self.opts.force_sync {
            self.fs
                .sync_dir(&self.log_dir)
                .map_err(io_err("fsync directory", &self.log_dir))?;
        }
        Ok(())
    }

    /// Hands buffered records to the file system (no fsync), preallocating as needed.
    fn flush_buffer(&mut self) -> Result<(), StorageError> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        if w.buf.is_empty() {
            return Ok(());
        }
        let log = self.logs.last_mut().expect("a writer has a log file");
        let needed = w.pos + w.buf.len() as u64;
        let mut result = Ok(());
        if needed > w.allocated {
            let target = round_up(needed, self.opts.preallocate_bytes);
            result = w
                .file
                .set_len(target)
                .map_err(io_err("preallocate", &log.path));
            if result.is_ok() {
                w.allocated = target;
            }
        }
        let result = result.and_then(|()| {
            w.file
                .write_at(w.pos, &w.buf)
                .map_err(io_err("write", &log.path))
        });
        match result {
            Ok(()) => {
                w.pos = needed;
                w.buf.clear();
                log.end = needed;
                Ok(())
            }
            Err(e) => self.fail(e),
        }
    }

    /// Writes out and (with forceSync) fsyncs the current log and its directory entry.
    fn sync_log(&mut self) -> Result<(), StorageError> {
        self.flush_buffer()?;
        if !self.opts.force_sync {
            return Ok(());
        }
        if let Some(w) = self.writer.as_mut() {
            let path = &self.logs.last().expect("a writer has a log file").path;
            if let Err(e) = w.file.fsync().map_err(io_err("fsync", path)) {
                return self.fail(e);
            }
            self.stats.log_syncs += 1;
        }
        if self.log_dir_dirty {
            if let Err(e) = self
                .fs
                .sync_dir(&self.log_dir)
                .map_err(io_err("fsync directory", &self.log_dir))
            {
                return self.fail(e);
            }
            self.log_dir_dirty = false;
        }
        self.log_unsynced = false;
        Ok(())
    }

    /// Closes the current log: writes it out, trims the preallocated zeros and makes it
    /// durable, so that only the last log can ever have a torn tail.
    fn close_log(&mut self) -> Result<(), StorageError> {
        if self.writer.is_none() {
            return Ok(());
        }
        self.flush_buffer()?;
        let w = self.writer.as_mut().expect("checked above");
        let path = &self.logs.last().expect("a writer has a log file").path;
        if let Err(e) = w.file.set_len(w.pos).map_err(io_err("truncate", path)) {
            return self.fail(e);
        }
        self.sync_log()?;
        self.writer = None;
        Ok(())
    }

    /// Creates the log file for `zxid`, which follows `last_logged_zxid()`.
    fn start_log(&mut self, zxid: Zxid) -> Result<(), StorageError> {
        let prev_zxid = self.last_logged_zxid();
        let path = self.log_dir.join(format::log_name(zxid));
        let file = match self.fs.create(&path) {
            Ok(f) => f,
            Err(e) => return self.fail(StorageError::io("create", &path, e)),
        };
        self.log_dir_dirty = true;
        self.stats.log_files_started += 1;
        self.logs.push(LogFile {
            path,
            prev_zxid,
            first_zxid: zxid,
            last_zxid: zxid,
            end: 0,
        });
        self.writer = Some(Writer {
            file,
            pos: 0,
            allocated: 0,
            buf: format::log_header(prev_zxid).to_vec(),
            txns: 0,
        });
        Ok(())
    }

    /// Reads the valid records of a log (up to its known end).
    fn read_log(&self, log: &LogFile) -> Result<(Vec<u8>, Vec<RecordRef>), StorageError> {
        let data = self
            .fs
            .read_range(&log.path, 0, log.end as usize)
            .map_err(io_err("read", &log.path))?;
        match format::check_log_header(&data) {
            Ok(header) if header.prev_zxid == log.prev_zxid => {}
            Ok(header) => {
                return Err(StorageError::Corrupt {
                    path: log.path.clone(),
                    offset: 8,
                    reason: format!(
                        "header changed since open (follows {})",
                        ZxidHex(header.prev_zxid)
                    ),
                })
            }
            Err(reason) => {
                return Err(StorageError::Corrupt {
                    path: log.path.clone(),
                    offset: 0,
                    reason,
                })
            }
        }
        let scan = format::scan_log(&data);
        if let LogTail::Garbage { offset, reason, .. } = scan.tail {
            return Err(StorageError::Corrupt {
                path: log.path.clone(),
                offset,
                reason,
            });
        }
        Ok((data, scan.records))
    }

    fn set_epoch(&mut self, name: &str, epoch: u32) -> Result<(), StorageError> {
        self.check()?;
        let dir = self.snap_dir.clone();
        match write_atomic(&self.fs, &dir, name, &format::encode_epoch(epoch)) {
            Ok(()) => Ok(()),
            Err(e) => self.fail(e),
        }
    }

    /// Reads and validates one snapshot file; `Err(reason)` if it is invalid.
    fn read_snapshot(&self, zxid: Zxid) -> Result<Result<Vec<u8>, String>, StorageError> {
        let path = self.snapshot_path(zxid);
        let data = self.fs.read(&path).map_err(io_err("read", &path))?;
        Ok(match format::decode_snapshot(&data) {
            Ok((z, _)) if z != zxid => Err(format!(
                "header zxid {} does not match the file name",
                ZxidHex(z)
            )),
            Ok((_, body)) => Ok(body.to_vec()),
            Err(reason) => Err(reason),
        })
    }

    /// Valid snapshots, newest first, at most `limit` of them; warns about invalid ones.
    fn newest_valid_snapshots(&self, limit: usize) -> Result<Vec<Snapshot>, StorageError> {
        let mut valid = Vec::new();
        for zxid in self.snapshot_zxids()?.into_iter().rev() {
            if valid.len() >= limit {
                break;
            }
            match self.read_snapshot(zxid)? {
                Ok(body) => valid.push((zxid, body)),
                Err(reason) => {
                    warn!(
                        "ignoring invalid snapshot {}: {reason}",
                        self.snapshot_path(zxid).display()
                    );
                }
            }
        }
        Ok(valid)
    }

    fn marker_path(&self) -> PathBuf {
        self.snap_dir.join(format::UPDATING_EPOCH_FILE)
    }

    /// Removes the `updatingEpoch` marker if present.
    fn clear_updating_epoch(&mut self) -> Result<(), StorageError> {
        let marker = self.marker_path();
        if self.fs.exists(&marker) {
            self.fs.remove(&marker).map_err(io_err("remove", &marker))?;
            self.fs
                .sync_dir(&self.snap_dir)
                .map_err(io_err("fsync directory", &self.snap_dir))?;
        }
        Ok(())
    }

    /// Checks that the state at `zxid` can be rebuilt after dropping everything newer: from
    /// a snapshot at or before it, or from a log that starts the history.
    fn can_truncate_to(&self, zxid: Zxid) -> Result<(), StorageError> {
        let snaps = self.snapshot_zxids()?;
        let from_log = match self.logs.first() {
            None => snaps.is_empty(),
            Some(first) => first.prev_zxid == 0,
        };
        if zxid == 0 || snaps.iter().any(|&s| s <= zxid) || from_log {
            return Ok(());
        }
        Err(StorageError::CannotTruncate {
            zxid: ZxidHex(zxid),
            snap_dir: self.snap_dir.clone(),
        })
    }

    /// Whether a record at `zxid`, whose exact predecessor is `pred` (the previous record
    /// in its file, or its file's header), continues a history that reached `prev`.
    fn continues(&self, prev: Zxid, pred: Zxid, zxid: Zxid) -> bool {
        if self.opts.strict_zxid_sequence {
            pred == prev
        } else {
            zxid > prev
        }
    }

    fn follows(&self, prev: Zxid, next: Zxid) -> bool {
        if self.opts.strict_zxid_sequence {
            zxid_follows(prev, next)
        } else {
            next > prev
        }
    }
}

impl<F: Fs> Storage for FileStorage<F> {
    fn append(&mut self, zxid: Zxid, txn: &[u8]) -> Result<(), StorageError> {
        self.check()?;
        if txn.len() > format::MAX_TXN_LEN {
            return Err(StorageError::TooLarge {
                len: txn.len(),
                max: format::MAX_TXN_LEN,
            });
        }
        let prev = self.last_logged_zxid();
        if !self.follows(prev, zxid) {
            return Err(StorageError::OutOfSequence {
                prev: ZxidHex(prev),
                next: ZxidHex(zxid),
            });
        }
        if let Some(w) = &self.writer {
            let size = w.pos + w.buf.len() as u64;
            if self.roll_pending
                || w.txns >= self.opts.log_roll_txns
                || size >= self.opts.log_roll_bytes
            {
                self.close_log()?;
            }
        }
        self.roll_pending = false;
        if self.writer.is_none() {
            self.start_log(zxid)?;
        }
        let w = self.writer.as_mut().expect("started above");
        let before = w.buf.len();
        format::encode_record(&mut w.buf, zxid, txn);
        self.log_unsynced = true;
        w.txns += 1;
        self.stats.txns_appended += 1;
        self.stats.bytes_appended += (w.buf.len() - before) as u64;
        let buffered = w.buf.len();
        self.logs
            .last_mut()
            .expect("a writer has a log file")
            .last_zxid = zxid;
        self.last_log_zxid = zxid;
        if buffered >= self.opts.write_buffer_bytes {
            self.flush_buffer()?;
        }
        Ok(())
    }

    fn fsync(&mut self) -> Result<Zxid, StorageError> {
        self.check()?;
        self.sync_log()?;
        Ok(self.last_logged_zxid())
    }

    fn last_logged_zxid(&self) -> Zxid {
        self.last_log_zxid.max(self.newest_snapshot.unwrap_or(0))
    }

    fn read_txns_after(&mut self, zxid: Zxid) -> Result<Vec<(Zxid, Vec<u8>)>, StorageError> {
        self.check()?;
        self.flush_buffer()?;
        let mut txns = Vec::new();
        let mut prev = zxid;
        for (i, log) in self.logs.iter().enumerate() {
            if !may_hold_after(&self.logs, i, zxid) {
                continue;
            }
            let (data, records) = self.read_log(log)?;
            for (j, r) in records.iter().enumerate().filter(|(_, r)| r.zxid > zxid) {
                let pred = if j == 0 {
                    log.prev_zxid
                } else {
                    records[j - 1].zxid
                };
                if !self.continues(prev, pred, r.zxid) {
                    // Purged, or known here only through a snapshot: a leader must send a
                    // snapshot rather than a DIFF with a hole in it.
                    return Err(StorageError::LogDoesNotCover {
                        after: ZxidHex(zxid),
                        prev: ZxidHex(prev),
                        next: ZxidHex(r.zxid),
                        path: log.path.clone(),
                    });
                }
                prev = r.zxid;
                txns.push((r.zxid, r.payload(&data).to_vec()));
            }
        }
        let newest = self.last_logged_zxid();
        if prev < newest {
            // The history goes on past the log, in a snapshot.
            return Err(StorageError::LogDoesNotCover {
                after: ZxidHex(zxid),
                prev: ZxidHex(prev),
                next: ZxidHex(newest),
                path: self.snapshot_path(newest),
            });
        }
        Ok(txns)
    }

    fn truncate_after(&mut self, zxid: Zxid) -> Result<(), StorageError> {
        self.check()?;
        self.can_truncate_to(zxid)?;
        // Make what is kept durable; appends after a TRUNC go to a new log file.
        self.close_log()?;
        // Each step is durable before the next, so that a crash part-way leaves a state
        // that recovers to a prefix of the old history which still reaches `zxid`:
        // 1. snapshots above `zxid` go first (else one could outlive the log it is ahead of);
        // 2. then whole log files above `zxid`, newest first;
        // 3. then the tail of the log file holding `zxid`.
        let result = (|| {
            for snap in self.snapshot_zxids()?.into_iter().filter(|&s| s > zxid) {
                let path = self.snapshot_path(snap);
                warn!("TRUNC to {}: removing {}", ZxidHex(zxid), path.display());
                self.fs.remove(&path).map_err(io_err("remove", &path))?;
            }
            self.fs
                .sync_dir(&self.snap_dir)
                .map_err(io_err("fsync directory", &self.snap_dir))?;
            while let Some(log) = self.logs.last() {
                if log.first_zxid <= zxid {
                    break;
                }
                warn!(
                    "TRUNC to {}: removing {}",
                    ZxidHex(zxid),
                    log.path.display()
                );
                self.fs
                    .remove(&log.path)
                    .map_err(io_err("remove", &log.path))?;
                self.logs.pop();
            }
            self.fs
                .sync_dir(&self.log_dir)
                .map_err(io_err("fsync directory", &self.log_dir))?;
            if let Some(log) = self.logs.last().cloned() {
                if log.last_zxid > zxid {
                    let (_, records) = self.read_log(&log)?;
                    let last = records
                        .iter()
                        .rfind(|r| r.zxid <= zxid)
                        .expect("the first record is <= zxid");
                    let mut f = self
                        .fs
                        .open_write(&log.path)
                        .map_err(io_err("open", &log.path))?;
                    f.set_len(last.end())
                        .map_err(io_err("truncate", &log.path))?;
                    f.fsync().map_err(io_err("fsync", &log.path))?;
                    let entry = self.logs.last_mut().expect("cloned above");
                    entry.last_zxid = last.zxid;
                    entry.end = last.end();
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            return self.fail(e);
        }
        self.log_dir_dirty = false;
        self.last_log_zxid = self.logs.last().map_or(0, |l| l.last_zxid);
        self.newest_snapshot = self.snapshot_zxids()?.last().copied();
        Ok(())
    }

    fn write_snapshot(&mut self, zxid: Zxid, bytes: &[u8]) -> Result<(), StorageError> {
        self.snapshot_writer(zxid)?.write(bytes)?;
        self.snapshot_written(zxid);
        Ok(())
    }

    fn begin_snapshot(&mut self, zxid: Zxid) -> Result<Box<dyn SnapshotWriter>, StorageError> {
        self.check()?;
        let last = self.last_logged_zxid();
        if zxid > last {
            return Err(StorageError::SnapshotAhead {
                zxid: ZxidHex(zxid),
                last: ZxidHex(last),
            });
        }
        Ok(self.snapshot_writer(zxid)?)
    }

    fn snapshot_written(&mut self, zxid: Zxid) {
        self.stats.snapshots_written += 1;
        if zxid > self.last_log_zxid {
            self.roll_pending = true;
        }
        self.newest_snapshot = Some(self.newest_snapshot.map_or(zxid, |s| s.max(zxid)));
    }

    fn load_newest_snapshot(&mut self) -> Result<Option<(Zxid, Vec<u8>)>, StorageError> {
        self.check()?;
        let mut valid = self.newest_valid_snapshots(1)?;
        Ok(valid.pop())
    }

    fn purge(&mut self, retain_snapshots: usize) -> Result<(), StorageError> {
        self.check()?;
        let retain = retain_snapshots.max(3);
        let valid = self.newest_valid_snapshots(retain)?;
        if valid.len() < retain {
            return Ok(());
        }
        let oldest_kept = valid.last().expect("retain >= 3").0;
        for snap in self
            .snapshot_zxids()?
            .into_iter()
            .filter(|&s| s < oldest_kept)
        {
            let path = self.snapshot_path(snap);
            info!("purging {}", path.display());
            self.fs.remove(&path).map_err(io_err("remove", &path))?;
        }
        // A log is needed unless the next log starts at or before the oldest kept snapshot
        // (then every txn in it is older). The last log is always kept.
        let removable = self
            .logs
            .windows(2)
            .take_while(|w| w[1].first_zxid <= oldest_kept)
            .count();
        for log in self.logs.drain(..removable) {
            info!("purging {}", log.path.display());
            self.fs
                .remove(&log.path)
                .map_err(io_err("remove", &log.path))?;
        }
        self.fs
            .sync_dir(&self.snap_dir)
            .map_err(io_err("fsync directory", &self.snap_dir))?;
        self.fs
            .sync_dir(&self.log_dir)
            .map_err(io_err("fsync directory", &self.log_dir))?;
        Ok(())
    }

    fn epochs(&self) -> Epochs {
        self.epochs
    }

    fn set_accepted_epoch(&mut self, epoch: u32) -> Result<(), StorageError> {
        self.set_epoch(format::ACCEPTED_EPOCH_FILE, epoch)?;
        self.epochs.accepted_epoch = epoch;
        Ok(())
    }

    fn set_current_epoch(&mut self, epoch: u32) -> Result<(), StorageError> {
        // The log first: a learner takes NEWLEADER in the step that appends the leader's
        // DIFF, and a currentEpoch that is durable before those txns would let it win an
        // election in the new epoch without them after a crash (ZOOKEEPER-4643).
        if self.log_unsynced {
            self.check()?;
            self.sync_log()?;
        }
        self.set_epoch(format::CURRENT_EPOCH_FILE, epoch)?;
        self.epochs.current_epoch = epoch;
        if let Err(e) = self.clear_updating_epoch() {
            return self.fail(e);
        }
        Ok(())
    }

    fn recover(&mut self) -> Result<Recovered, StorageError> {
        self.check()?;
        self.flush_buffer()?;
        // The newest valid snapshot, and the newest invalid one above it (if any).
        let zxids = self.snapshot_zxids()?;
        let mut snapshot = None;
        let mut newest_invalid: Option<(Zxid, String)> = None;
        for &zxid in zxids.iter().rev() {
            match self.read_snapshot(zxid)? {
                Ok(body) => {
                    snapshot = Some((zxid, body));
                    break;
                }
                Err(reason) => {
                    warn!(
                        "snapshot {} is invalid: {reason}",
                        self.snapshot_path(zxid).display()
                    );
                    newest_invalid.get_or_insert((zxid, reason));
                }
            }
        }
        let base = snapshot.as_ref().map_or(0, |(z, _)| *z);

        // ZOOKEEPER-2354: the snapshot must not be from an epoch we never made current,
        // unless the marker says we crashed between writing it and writing currentEpoch.
        let marker = self.fs.exists(&self.marker_path());
        let mut epoch_fix = None;
        if let Some((zxid, _)) = &snapshot {
            let epoch = zxid_epoch(*zxid);
            if epoch > self.epochs.current_epoch {
                if !marker {
                    return Err(StorageError::EpochBehindSnapshot {
                        path: self.snapshot_path(*zxid),
                        zxid: ZxidHex(*zxid),
                        zxid_epoch: epoch,
                        current_epoch: self.epochs.current_epoch,
                    });
                }
                epoch_fix = Some((*zxid, epoch));
            }
        }

        // ZOOKEEPER-2325: without a snapshot, the log must start the history.
        if snapshot.is_none() {
            if let Some(first) = self.logs.first().filter(|l| l.prev_zxid != 0) {
                return Err(match newest_invalid {
                    Some((bad, reason)) => StorageError::SnapshotNotCovered {
                        path: self.snapshot_path(bad),
                        reason,
                        from: ZxidHex(0),
                        to: ZxidHex(bad),
                    },
                    None => StorageError::MissingSnapshot {
                        snap_dir: self.snap_dir.clone(),
                        first_log: first.path.clone(),
                        first_zxid: ZxidHex(first.first_zxid),
                    },
                });
            }
        }

        // Every txn after the snapshot, checking the sequence.
        let mut txns: Vec<(Zxid, Vec<u8>)> = Vec::new();
        let mut prev = base;
        for (i, log) in self.logs.iter().enumerate() {
            if !may_hold_after(&self.logs, i, base) {
                continue;
            }
            let (data, records) = self.read_log(log)?;
            for (j, r) in records.iter().enumerate().filter(|(_, r)| r.zxid > base) {
                let pred = if j == 0 {
                    log.prev_zxid
                } else {
                    records[j - 1].zxid
                };
                if !self.continues(prev, pred, r.zxid) {
                    return Err(match (&newest_invalid, &snapshot) {
                        (Some((bad, reason)), _) => StorageError::SnapshotNotCovered {
                            path: self.snapshot_path(*bad),
                            reason: reason.clone(),
                            from: ZxidHex(base),
                            to: ZxidHex(*bad),
                        },
                        (None, None) if txns.is_empty() => StorageError::MissingSnapshot {
                            snap_dir: self.snap_dir.clone(),
                            first_log: log.path.clone(),
                            first_zxid: ZxidHex(r.zxid),
                        },
                        _ => StorageError::ZxidGap {
                            path: log.path.clone(),
                            offset: r.offset,
                            prev: ZxidHex(prev),
                            next: ZxidHex(r.zxid),
                        },
                    });
                }
                prev = r.zxid;
                txns.push((r.zxid, r.payload(&data).to_vec()));
            }
        }
        if let Some((bad, reason)) = newest_invalid {
            if prev < bad {
                return Err(StorageError::SnapshotNotCovered {
                    path: self.snapshot_path(bad),
                    reason,
                    from: ZxidHex(base),
                    to: ZxidHex(bad),
                });
            }
        }
        // Only now that the history is known to be whole, repair the epoch files.
        if let Some((zxid, epoch)) = epoch_fix {
            warn!(
                "{} found: crashed after taking snapshot {} but before updating currentEpoch; setting currentEpoch to {epoch}",
                format::UPDATING_EPOCH_FILE,
                ZxidHex(zxid)
            );
            self.set_current_epoch(epoch)?;
        } else if marker {
            // Crashed after writing currentEpoch but before removing the marker.
            if let Err(e) = self.clear_updating_epoch() {
                return self.fail(e);
            }
        }
        Ok(Recovered { snapshot, txns })
    }
}

/// Whether `logs[i]` may hold txns above `zxid`: it is the last log, or the next one starts
/// after `zxid`.
fn may_hold_after(logs: &[LogFile], i: usize, zxid: Zxid) -> bool {
    match logs.get(i + 1) {
        None => true,
        Some(next) => next.first_zxid > zxid,
    }
}
