//! A small file-system interface, with a real implementation over `std::fs` and an
//! in-memory disk with crash semantics and seeded faults for the simulator.
//!
//! Files are written at explicit offsets (`write_at`) because logs are preallocated: the
//! end of the file is not where the next record goes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// An open file, written at explicit offsets.
pub trait FsFile: Send {
    /// Writes all of `data` at `offset`, extending the file with zeros if needed.
    /// Not durable until [`FsFile::sync`].
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Truncates or extends (with zeros) the file to `len` bytes. Not durable until synced.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Makes the file's data and length durable (fsync / fdatasync).
    fn fsync(&mut self) -> io::Result<()>;
    /// The current length of the file.
    fn size(&self) -> io::Result<u64>;
}

/// A file system: paths, directories, whole-file reads and durable directory updates.
///
/// A new, renamed or removed name is durable only after [`Fs::sync_dir`] on its directory.
pub trait Fs: Clone + Send + Sync + 'static {
    /// The open-file type.
    type File: FsFile;
    /// Creates `dir` and its parents (durably, in [`SimFs`]).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates `path` empty (truncating any existing file) and opens it for writing.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens an existing file for writing.
    fn open_write(&self, path: &Path) -> io::Result<Self::File>;
    /// Reads the whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// The length of the file.
    fn len(&self, path: &Path) -> io::Result<u64>;
    /// Whether `path` names an existing file.
    fn exists(&self, path: &Path) -> bool;
    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// The names of the files directly in `dir`, sorted.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

// ---------------------------------------------------------------------------------------
// RealFs

/// [`Fs`] over `std::fs` with real fsyncs (`File::sync_data`) and directory fsyncs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

/// An open [`RealFs`] file.
#[derive(Debug)]
pub struct RealFile {
    file: File,
}

impl FsFile for RealFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.write_all(data)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn fsync(&mut self) -> io::Result<()> {
        // fdatasync also flushes the metadata needed to read the data back (the length).
        self.file.sync_data()
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

impl Fs for RealFs {
    type File = RealFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn create(&self, path: &Path) -> io::Result<RealFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(RealFile { file })
    }

    fn open_write(&self, path: &Path) -> io::Result<RealFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(RealFile { file })
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len);
        file.take(len as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn exists(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    #[cfg(unix)]
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    #[cfg(not(unix))]
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// SimFs

/// Seeded disk faults for [`SimFs`]. All zero by default (a perfect disk).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimFsFaults {
    /// Probability that a `write_at` or `set_len` fails with EIO (and changes nothing).
    pub write_error_probability: f64,
    /// Probability that an fsync fails with EIO. As on Linux, the pending writes it was to
    /// persist are then dropped from the disk's future (they stay visible to reads until a
    /// crash), which is why a failed fsync must never be retried.
    pub sync_error_probability: f64,
    /// Fail this many upcoming fsyncs (file or directory) deterministically.
    pub fail_next_syncs: u32,
    /// Let this many fsyncs (file or directory) succeed, then fail the next one; the
    /// countdown then clears itself. For crashing at a chosen point of an operation.
    pub sync_failure_countdown: Option<u32>,
    /// Fail this many upcoming writes deterministically.
    pub fail_next_writes: u32,
    /// Probability, at a crash, that the first lost write of a file leaves a torn prefix.
    pub torn_write_probability: f64,
    /// Probability, at a crash, that a file's pending writes reach the disk out of order
    /// (each one independently, as page-cache writeback may do) instead of as a prefix.
    pub reorder_probability: f64,
    /// Disk capacity in bytes (sum of file lengths); writes past it fail with ENOSPC.
    pub capacity_bytes: Option<u64>,
    /// Latency of one fsync the runtime may sleep on (the disk model itself has no clock).
    pub sync_latency: Duration,
}

#[derive(Debug, Clone)]
enum PendingOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct Inode {
    /// What survives a crash.
    durable: Vec<u8>,
    /// What reads see (durable plus every write since, including ones a failed fsync lost).
    current: Vec<u8>,
    /// Writes since the last fsync that may still reach the disk, in order.
    pending: Vec<PendingOp>,
}

fn apply_op(data: &mut Vec<u8>, op: &PendingOp) {
    match op {
        PendingOp::Write {
            offset,
            data: bytes,
        } => write_into(data, *offset, bytes),
        PendingOp::SetLen(len) => data.resize(*len as usize, 0),
    }
}

fn write_into(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let start = offset as usize;
    let end = start + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[start..end].copy_from_slice(bytes);
}

#[derive(Debug)]
struct SimDisk {
    dirs: BTreeSet<PathBuf>,
    /// Names as the running system sees them.
    names: BTreeMap<PathBuf, u64>,
    /// Names as they survive a crash (updated by `sync_dir`).
    durable_names: BTreeMap<PathBuf, u64>,
    inodes: BTreeMap<u64, Inode>,
    next_ino: u64,
    /// Incremented by every crash: handles opened before it are dead.
    generation: u64,
    faults: SimFsFaults,
    rng: ChaCha8Rng,
    stats: SimFsStats,
}

/// Counters of what a [`SimFs`] did, for tests and sim reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimFsStats {
    /// Successful `write_at` calls.
    pub writes: u64,
    /// Successful file fsyncs.
    pub syncs: u64,
    /// Successful directory fsyncs.
    pub dir_syncs: u64,
    /// Injected write errors (EIO or ENOSPC).
    pub write_errors: u64,
    /// Injected fsync errors.
    pub sync_errors: u64,
    /// Crashes.
    pub crashes: u64,
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated EIO: {what}"))
}

impl SimDisk {
    fn lookup(&self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such file", path.display()),
            )
        })
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(p) if p.as_os_str().is_empty() || self.dirs.contains(p) => Ok(()),
            None => Ok(()),
            Some(p) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such directory", p.display()),
            )),
        }
    }

    fn used_bytes(&self) -> u64 {
        self.inodes.values().map(|i| i.current.len() as u64).sum()
    }

    /// Injected write faults: EIO, then ENOSPC if the file would grow past capacity.
    fn write_fault(&mut self, ino: u64, new_len: u64) -> io::Result<()> {
        if self.faults.fail_next_writes > 0 {
            self.faults.fail_next_writes -= 1;
            self.stats.write_errors += 1;
            return Err(eio("write"));
        }
        let p = self.faults.write_error_probability;
        if p > 0.0 && self.rng.gen_bool(p.min(1.0)) {
            self.stats.write_errors += 1;
            return Err(eio("write"));
        }
        if let Some(cap) = self.faults.capacity_bytes {
            let old_len = self.inodes.get(&ino).map_or(0, |i| i.current.len() as u64);
            if new_len > old_len && self.used_bytes() + (new_len - old_len) > cap {
                self.stats.write_errors += 1;
                return Err(io::Error::other(
                    "simulated ENOSPC: no space left on device",
                ));
            }
        }
        Ok(())
    }

    fn sync_fault(&mut self) -> io::Result<()> {
        match self.faults.sync_failure_countdown {
            Some(0) => {
                self.faults.sync_failure_countdown = None;
                self.stats.sync_errors += 1;
                return Err(eio("fsync"));
            }
            Some(n) => self.faults.sync_failure_countdown = Some(n - 1),
            None => {}
        }
        if self.faults.fail_next_syncs > 0 {
            self.faults.fail_next_syncs -= 1;
            self.stats.sync_errors += 1;
            return Err(eio("fsync"));
        }
        let p = self.faults.sync_error_probability;
        if p > 0.0 && self.rng.gen_bool(p.min(1.0)) {
            self.stats.sync_errors += 1;
            return Err(eio("fsync"));
        }
        Ok(())
    }

    fn push_op(&mut self, ino: u64, op: PendingOp) {
        let inode = self.inodes.entry(ino).or_default();
        apply_op(&mut inode.current, &op);
        inode.pending.push(op);
    }

    fn new_inode(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Inode::default());
        ino
    }

    /// Drops inodes no name refers to any more.
    fn collect_garbage(&mut self) {
        let live: BTreeSet<u64> = self
            .names
            .values()
            .chain(self.durable_names.values())
            .copied()
            .collect();
        self.inodes.retain(|ino, _| live.contains(ino));
    }
}

/// An in-memory disk for the simulator that keeps durable and pending bytes apart.
///
/// Cheap to clone (shared state), so it survives node restarts within a run. Deterministic:
/// its randomness comes from a seeded ChaCha8 generator and the `rng` passed to
/// [`SimFs::crash`] and [`SimFs::rot`]; nothing iterates a hash map.
///
/// Directories are created durably. A file's data is durable after [`FsFile::sync`]; a
/// name (create, rename, remove) after [`Fs::sync_dir`] on its directory.
#[derive(Debug, Clone)]
pub struct SimFs {
    disk: Arc<Mutex<SimDisk>>,
}

/// An open [`SimFs`] file. Dead after a crash (operations fail with an error).
#[derive(Debug)]
pub struct SimFile {
    fs: SimFs,
    ino: u64,
    generation: u64,
}

impl SimFs {
    /// A new empty disk whose fault decisions are drawn from a generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SimFs {
            disk: Arc::new(Mutex::new(SimDisk {
                dirs: BTreeSet::new(),
                names: BTreeMap::new(),
                durable_names: BTreeMap::new(),
                inodes: BTreeMap::new(),
                next_ino: 1,
                generation: 0,
                faults: SimFsFaults::default(),
                rng: ChaCha8Rng::seed_from_u64(seed),
                stats: SimFsStats::default(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SimDisk> {
        // A panic while holding the lock cannot leave the disk half-updated in a way that
        // matters to a test that is already failing; keep going.
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the fault configuration.
    pub fn set_faults(&self, faults: SimFsFaults) {
        self.lock().faults = faults;
    }

    /// The current fault configuration (deterministic counters included).
    pub fn faults(&self) -> SimFsFaults {
        self.lock().faults.clone()
    }

    /// The configured fsync latency, for the runtime to sleep on.
    pub fn sync_latency(&self) -> Duration {
        self.lock().faults.sync_latency
    }

    /// Counters of what happened so far.
    pub fn stats(&self) -> SimFsStats {
        self.lock().stats
    }

    /// A power loss: every open handle dies and only durable state survives, except that
    /// for each file a random prefix of its pending writes may have reached the disk, in
    /// order, and the first write that did not may leave a torn prefix
    /// (`torn_write_probability`); or, with `reorder_probability`, a random subset of them.
    /// Unsynced names are lost.
    pub fn crash(&self, rng: &mut ChaCha8Rng) {
        let mut disk = self.lock();
        let torn_p = disk.faults.torn_write_probability.clamp(0.0, 1.0);
        let reorder_p = disk.faults.reorder_probability.clamp(0.0, 1.0);
        for inode in disk.inodes.values_mut() {
            let pending = std::mem::take(&mut inode.pending);
            if !pending.is_empty() && reorder_p > 0.0 && rng.gen_bool(reorder_p) {
                for op in &pending {
                    if rng.gen_bool(0.5) {
                        apply_op(&mut inode.durable, op);
                    }
                }
            } else if !pending.is_empty() {
                let kept = rng.gen_range(0..=pending.len());
                for op in &pending[..kept] {
                    apply_op(&mut inode.durable, op);
                }
                if let Some(PendingOp::Write { offset, data }) = pending.get(kept) {
                    if data.len() > 1 && torn_p > 0.0 && rng.gen_bool(torn_p) {
                        let cut = rng.gen_range(1..data.len());
                        write_into(&mut inode.durable, *offset, &data[..cut]);
                    }
                }
            }
            inode.current = inode.durable.clone();
        }
        Self::reset_after_crash(&mut disk);
    }

    /// A power loss that drops every pending write and unsynced name, with no torn writes.
    pub fn crash_lose_all(&self) {
        let mut disk = self.lock();
        for inode in disk.inodes.values_mut() {
            inode.pending.clear();
            inode.current = inode.durable.clone();
        }
        Self::reset_after_crash(&mut disk);
    }

    fn reset_after_crash(disk: &mut SimDisk) {
        disk.names = disk.durable_names.clone();
        disk.collect_garbage();
        disk.generation += 1;
        disk.stats.crashes += 1;
    }

    /// Bit rot at rest: flips one random bit in the durable bytes of one random file.
    /// Returns the file and offset, or `None` if no file has durable bytes.
    pub fn rot(&self, rng: &mut ChaCha8Rng) -> Option<(PathBuf, u64)> {
        let candidates: Vec<(PathBuf, u64)> = {
            let disk = self.lock();
            disk.durable_names
                .iter()
                .filter_map(|(p, ino)| {
                    let len = disk.inodes.get(ino)?.durable.len() as u64;
                    (len > 0).then(|| (p.clone(), len))
                })
                .collect()
        };
        if candidates.is_empty() {
            return None;
        }
        let (path, len) = candidates[rng.gen_range(0..candidates.len())].clone();
        let offset = rng.gen_range(0..len);
        let bit = rng.gen_range(0..8u8);
        self.rot_at(&path, offset, bit).then_some((path, offset))
    }

    /// Flips bit `bit` (0..8) of the durable byte at `offset` of `path` (and of what reads
    /// see). Returns false if there is no such durable byte.
    pub fn rot_at(&self, path: &Path, offset: u64, bit: u8) -> bool {
        let mut disk = self.lock();
        let Some(ino) = disk.durable_names.get(path).copied() else {
            return false;
        };
        let Some(inode) = disk.inodes.get_mut(&ino) else {
            return false;
        };
        let i = offset as usize;
        if i >= inode.durable.len() {
            return false;
        }
        let mask = 1u8 << (bit % 8);
        inode.durable[i] ^= mask;
        if let Some(b) = inode.current.get_mut(i) {
            *b ^= mask;
        }
        true
    }

    /// The bytes of `path` that would survive a crash now (`None` if its name would not).
    pub fn durable_contents(&self, path: &Path) -> Option<Vec<u8>> {
        let disk = self.lock();
        let ino = disk.durable_names.get(path)?;
        disk.inodes.get(ino).map(|i| i.durable.clone())
    }
}

impl SimFile {
    fn check(&self, disk: &SimDisk) -> io::Result<()> {
        if disk.generation != self.generation || !disk.inodes.contains_key(&self.ino) {
            return Err(io::Error::other(
                "stale file handle: the simulated disk crashed since it was opened",
            ));
        }
        Ok(())
    }
}

impl FsFile for SimFile {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut disk = self.fs.lock();
        self.check(&disk)?;
        let cur = disk.inodes[&self.ino].current.len() as u64;
        disk.write_fault(self.ino, cur.max(offset + data.len() as u64))?;
        disk.push_op(
            self.ino,
            PendingOp::Write {
                offset,
                data: data.to_vec(),
            },
        );
        disk.stats.writes += 1;
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let mut disk = self.fs.lock();
        self.check(&disk)?;
        disk.write_fault(self.ino, len)?;
        disk.push_op(self.ino, PendingOp::SetLen(len));
        Ok(())
    }

    fn fsync(&mut self) -> io::Result<()> {
        let mut disk = self.fs.lock();
        self.check(&disk)?;
        let failed = disk.sync_fault();
        let inode = disk.inodes.get_mut(&self.ino).expect("checked above");
        let pending = std::mem::take(&mut inode.pending);
        if failed.is_ok() {
            for op in &pending {
                apply_op(&mut inode.durable, op);
            }
            disk.stats.syncs += 1;
        }
        // On failure the pending writes are dropped from the disk's future (Linux marks the
        // pages clean after reporting EIO); reads still see them until a crash.
        failed
    }

    fn size(&self) -> io::Result<u64> {
        let disk = self.fs.lock();
        self.check(&disk)?;
        Ok(disk.inodes[&self.ino].current.len() as u64)
    }
}

impl Fs for SimFs {
    type File = SimFile;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        for d in dir.ancestors() {
            if !d.as_os_str().is_empty() {
                disk.dirs.insert(d.to_path_buf());
            }
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<SimFile> {
        let mut disk = self.lock();
        disk.check_parent(path)?;
        let ino = match disk.names.get(path).copied() {
            Some(ino) => {
                disk.write_fault(ino, 0)?;
                disk.push_op(ino, PendingOp::SetLen(0));
                ino
            }
            None => {
                let ino = disk.new_inode();
                disk.names.insert(path.to_path_buf(), ino);
                ino
            }
        };
        Ok(SimFile {
            fs: self.clone(),
            ino,
            generation: disk.generation,
        })
    }

    fn open_write(&self, path: &Path) -> io::Result<SimFile> {
        let disk = self.lock();
        let ino = disk.lookup(path)?;
        Ok(SimFile {
            fs: self.clone(),
            ino,
            generation: disk.generation,
        })
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let disk = self.lock();
        let ino = disk.lookup(path)?;
        Ok(disk.inodes[&ino].current.clone())
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let disk = self.lock();
        let ino = disk.lookup(path)?;
        let data = &disk.inodes[&ino].current;
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(len).min(data.len());
        Ok(data[start..end].to_vec())
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        let disk = self.lock();
        let ino = disk.lookup(path)?;
        Ok(disk.inodes[&ino].current.len() as u64)
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().names.contains_key(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        let ino = disk.lookup(from)?;
        disk.check_parent(to)?;
        disk.names.remove(from);
        disk.names.insert(to.to_path_buf(), ino);
        disk.collect_garbage();
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        disk.lookup(path)?;
        disk.names.remove(path);
        disk.collect_garbage();
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let disk = self.lock();
        if !disk.dirs.contains(dir) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such directory", dir.display()),
            ));
        }
        // BTreeMap order is path order, so the names come out sorted.
        Ok(disk
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        disk.sync_fault()?;
        let disk = &mut *disk;
        disk.durable_names.retain(|p, _| p.parent() != Some(dir));
        for (p, ino) in &disk.names {
            if p.parent() == Some(dir) {
                disk.durable_names.insert(p.clone(), *ino);
            }
        }
        disk.collect_garbage();
        disk.stats.dir_syncs += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (SimFs, PathBuf) {
        let fs = SimFs::new(1);
        let dir = PathBuf::from("/d");
        fs.create_dir_all(&dir).unwrap();
        (fs, dir)
    }

    #[test]
    fn synced_data_and_names_survive_a_crash() {
        let (fs, dir) = setup();
        let p = dir.join("a");
        let mut f = fs.create(&p).unwrap();
        f.write_at(0, b"hello").unwrap();
        f.fsync().unwrap();
        fs.sync_dir(&dir).unwrap();
        f.write_at(5, b" world").unwrap();
        assert_eq!(fs.read(&p).unwrap(), b"hello world");
        fs.crash_lose_all();
        assert_eq!(fs.read(&p).unwrap(), b"hello");
        assert!(
            f.write_at(0, b"x").is_err(),
            "handle must be dead after a crash"
        );
    }

    #[test]
    fn unsynced_name_is_lost_even_if_data_was_synced() {
        let (fs, dir) = setup();
        let p = dir.join("a");
        let mut f = fs.create(&p).unwrap();
        f.write_at(0, b"x").unwrap();
        f.fsync().unwrap();
        fs.crash_lose_all();
        assert!(!fs.exists(&p));
        assert!(fs.list_dir(&dir).unwrap().is_empty());
    }

    #[test]
    fn rename_is_durable_only_after_dir_sync() {
        let (fs, dir) = setup();
        let (tmp, fin) = (dir.join("t"), dir.join("f"));
        let mut f = fs.create(&tmp).unwrap();
        f.write_at(0, b"v1").unwrap();
        f.fsync().unwrap();
        fs.sync_dir(&dir).unwrap();
        fs.rename(&tmp, &fin).unwrap();
        assert_eq!(fs.list_dir(&dir).unwrap(), vec!["f".to_string()]);
        fs.crash_lose_all();
        assert_eq!(fs.list_dir(&dir).unwrap(), vec!["t".to_string()]);
        fs.rename(&tmp, &fin).unwrap();
        fs.sync_dir(&dir).unwrap();
        fs.crash_lose_all();
        assert_eq!(fs.read(&fin).unwrap(), b"v1");
    }

    #[test]
    fn crash_keeps_an_ordered_prefix_of_pending_writes() {
        let (fs, dir) = setup();
        let p = dir.join("a");
        let mut f = fs.create(&p).unwrap();
        f.fsync().unwrap();
        fs.sync_dir(&dir).unwrap();
        fs.set_faults(SimFsFaults {
            torn_write_probability: 1.0,
            ..SimFsFaults::default()
        });
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut seen = BTreeSet::new();
        for _ in 0..40 {
            let mut f = fs.open_write(&p).unwrap();
            f.set_len(0).unwrap();
            f.fsync().unwrap();
            for (i, chunk) in [b"aaaa", b"bbbb", b"cccc"].iter().enumerate() {
                f.write_at(i as u64 * 4, *chunk).unwrap();
            }
            fs.crash(&mut rng);
            let got = fs.read(&p).unwrap();
            // Whatever survived is a prefix of "aaaabbbbcccc".
            assert!(b"aaaabbbbcccc".starts_with(&got), "{got:?}");
            seen.insert(got.len());
        }
        assert!(seen.len() > 3, "crash outcomes should vary: {seen:?}");
    }

    #[test]
    fn failed_fsync_loses_pending_writes_for_good() {
        let (fs, dir) = setup();
        let p = dir.join("a");
        let mut f = fs.create(&p).unwrap();
        f.fsync().unwrap();
        fs.sync_dir(&dir).unwrap();
        f.write_at(0, b"lost").unwrap();
        fs.set_faults(SimFsFaults {
            fail_next_syncs: 1,
            ..SimFsFaults::default()
        });
        assert!(f.fsync().is_err());
        assert_eq!(
            fs.read(&p).unwrap(),
            b"lost",
            "the page cache still shows it"
        );
        f.fsync().unwrap(); // a retry "succeeds" ...
        fs.crash_lose_all();
        assert_eq!(
            fs.read(&p).unwrap(),
            b"",
            "... but the data never reached the disk"
        );
        assert_eq!(fs.stats().sync_errors, 1);
    }

    #[test]
    fn capacity_and_write_errors() {
        let (fs, dir) = setup();
        fs.set_faults(SimFsFaults {
            capacity_bytes: Some(10),
            fail_next_writes: 1,
            ..SimFsFaults::default()
        });
        let mut f = fs.create(&dir.join("a")).unwrap();
        assert!(f.write_at(0, b"x").is_err());
        f.write_at(0, b"0123456789").unwrap();
        let err = f.write_at(10, b"!").unwrap_err();
        assert!(err.to_string().contains("ENOSPC"), "{err}");
        f.write_at(0, b"abc").unwrap(); // overwriting does not grow
        assert_eq!(fs.stats().write_errors, 2);
    }

    #[test]
    fn rot_flips_one_durable_bit() {
        let (fs, dir) = setup();
        let p = dir.join("a");
        let mut f = fs.create(&p).unwrap();
        f.write_at(0, &[0u8; 16]).unwrap();
        f.fsync().unwrap();
        fs.sync_dir(&dir).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (path, offset) = fs.rot(&mut rng).unwrap();
        assert_eq!(path, p);
        let data = fs.durable_contents(&p).unwrap();
        assert_eq!(data.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
        assert_ne!(data[offset as usize], 0);
        assert_eq!(fs.read(&p).unwrap(), data);
    }

    #[test]
    fn same_seed_same_crash() {
        let run = |seed| {
            let (fs, dir) = setup();
            let p = dir.join("a");
            let mut f = fs.create(&p).unwrap();
            f.fsync().unwrap();
            fs.sync_dir(&dir).unwrap();
            fs.set_faults(SimFsFaults {
                torn_write_probability: 0.5,
                ..SimFsFaults::default()
            });
            for i in 0..20u64 {
                f.write_at(i * 8, &i.to_be_bytes()).unwrap();
            }
            fs.crash(&mut ChaCha8Rng::seed_from_u64(seed));
            fs.read(&p).unwrap()
        };
        assert_eq!(run(11), run(11));
    }
}
