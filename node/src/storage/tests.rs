//! The storage conformance suite, run against `FileStorage<RealFs>` (in a temporary
//! directory) and `FileStorage<SimFs>`, plus simulator-only crash and fault tests.

use std::path::{Path, PathBuf};

use proptest::{prop_assert, prop_assert_eq};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::format::{self, LogTail};
use super::*;
use crate::types::{make_zxid, zxid_counter, zxid_epoch, Zxid};

/// A place to open storages: a fresh disk per test, reopened to simulate restarts.
trait Harness {
    type F: Fs;
    fn fs(&self) -> Self::F;
    fn opts(&self) -> FileStorageOptions;

    fn try_open_with(
        &self,
        opts: FileStorageOptions,
    ) -> Result<FileStorage<Self::F>, StorageError> {
        FileStorage::open(self.fs(), opts)
    }
    fn try_open(&self) -> Result<FileStorage<Self::F>, StorageError> {
        self.try_open_with(self.opts())
    }
    fn open(&self) -> FileStorage<Self::F> {
        self.try_open().expect("open storage")
    }
    fn open_with(&self, f: impl FnOnce(&mut FileStorageOptions)) -> FileStorage<Self::F> {
        let mut opts = self.opts();
        f(&mut opts);
        self.try_open_with(opts).expect("open storage")
    }
}

fn test_opts(root: &Path) -> FileStorageOptions {
    let mut opts = FileStorageOptions::new(root.join("data"), root.join("log"));
    opts.preallocate_bytes = 64 << 10;
    opts
}

/// `FileStorage<RealFs>` in a directory under the system temp dir, removed on drop.
struct RealHarness {
    root: PathBuf,
}

impl RealHarness {
    fn new(test: &str) -> Self {
        let root =
            std::env::temp_dir().join(format!("zabkeeper-storage-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create temp dir");
        RealHarness { root }
    }
}

impl Drop for RealHarness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Harness for RealHarness {
    type F = RealFs;
    fn fs(&self) -> RealFs {
        RealFs
    }
    fn opts(&self) -> FileStorageOptions {
        test_opts(&self.root)
    }
}

/// `FileStorage<SimFs>` on a fresh simulated disk.
struct SimHarness {
    fs: SimFs,
}

impl SimHarness {
    fn new(seed: u64) -> Self {
        SimHarness {
            fs: SimFs::new(seed),
        }
    }
}

impl Harness for SimHarness {
    type F = SimFs;
    fn fs(&self) -> SimFs {
        self.fs.clone()
    }
    fn opts(&self) -> FileStorageOptions {
        test_opts(Path::new("/zk"))
    }
}

fn z(counter: u32) -> Zxid {
    make_zxid(1, counter)
}

fn txn(zxid: Zxid) -> Vec<u8> {
    format!("txn {zxid:x}").into_bytes()
}

fn append_range<F: Fs>(
    st: &mut FileStorage<F>,
    epoch: u32,
    counters: std::ops::RangeInclusive<u32>,
) {
    for c in counters {
        let zxid = make_zxid(epoch, c);
        st.append(zxid, &txn(zxid)).expect("append");
    }
}

fn expected(epoch: u32, counters: std::ops::RangeInclusive<u32>) -> Vec<(Zxid, Vec<u8>)> {
    counters
        .map(|c| {
            let zxid = make_zxid(epoch, c);
            (zxid, txn(zxid))
        })
        .collect()
}

fn zxids(txns: &[(Zxid, Vec<u8>)]) -> Vec<Zxid> {
    txns.iter().map(|(z, _)| *z).collect()
}

/// Flips one bit of a file durably, through the file-system interface.
fn flip<F: Fs>(fs: &F, path: &Path, offset: u64) {
    let byte = fs.read_range(path, offset, 1).expect("read byte");
    assert_eq!(
        byte.len(),
        1,
        "offset {offset} past the end of {}",
        path.display()
    );
    let mut f = fs.open_write(path).expect("open");
    f.write_at(offset, &[byte[0] ^ 0x10]).expect("write");
    f.fsync().expect("sync");
}

/// The records of a log file, as the scanner sees them.
fn records<F: Fs>(fs: &F, path: &Path) -> Vec<format::RecordRef> {
    format::scan_log(&fs.read(path).expect("read log")).records
}

fn remove_durably<F: Fs>(fs: &F, path: &Path) {
    fs.remove(path).expect("remove");
    fs.sync_dir(path.parent().expect("parent"))
        .expect("sync dir");
}

// ---------------------------------------------------------------------------------------
// The conformance suite: generic over the harness.

fn append_sync_read_recover<H: Harness>(h: &H) {
    let mut st = h.open();
    assert_eq!(st.last_logged_zxid(), 0);
    append_range(&mut st, 1, 1..=10);
    assert_eq!(st.last_logged_zxid(), z(10));
    // Unsynced txns are readable.
    assert_eq!(st.read_txns_after(z(7)).unwrap(), expected(1, 8..=10));
    assert_eq!(st.fsync().unwrap(), z(10));
    assert_eq!(st.read_txns_after(0).unwrap(), expected(1, 1..=10));
    assert_eq!(st.read_txns_after(z(10)).unwrap(), vec![]);
    drop(st);

    let mut st = h.open();
    assert_eq!(st.last_logged_zxid(), z(10));
    let rec = st.recover().unwrap();
    assert_eq!(rec.snapshot, None);
    assert_eq!(rec.txns, expected(1, 1..=10));
    assert_eq!(rec.last_zxid(), z(10));
    // A restarted server appends to a new log file, as ZooKeeper does.
    append_range(&mut st, 1, 11..=12);
    st.fsync().unwrap();
    assert_eq!(st.log_files().len(), 2);
    assert!(st.log_files()[1].ends_with("version-2/log.10000000b"));
    drop(st);
    assert_eq!(h.open().recover().unwrap().txns, expected(1, 1..=12));
}

fn stats_count_group_commits<H: Harness>(h: &H) {
    let mut st = h.open_with(|o| o.log_roll_txns = 4);
    for batch in 0..3u32 {
        append_range(&mut st, 1, batch * 2 + 1..=batch * 2 + 2);
        st.fsync().unwrap();
    }
    st.set_current_epoch(1).unwrap();
    st.write_snapshot(z(6), b"s").unwrap();
    let stats = st.stats();
    assert_eq!(stats.txns_appended, 6);
    assert_eq!(stats.log_files_started, 2);
    // Three group commits, plus the fsync that closes the first log at the roll.
    assert_eq!(stats.log_syncs, 4);
    assert_eq!(stats.snapshots_written, 1);
    let record = (format::RECORD_HEADER_LEN + txn(z(1)).len()) as u64;
    assert_eq!(stats.bytes_appended, 6 * record);
}

fn append_enforces_zab_sequence<H: Harness>(h: &H) {
    let mut st = h.open();
    for bad in [z(2), make_zxid(1, 0), make_zxid(2, 2)] {
        assert!(
            matches!(
                st.append(bad, b"x"),
                Err(StorageError::OutOfSequence { .. })
            ),
            "{bad:x} accepted as first txn"
        );
    }
    append_range(&mut st, 1, 1..=3);
    assert!(matches!(
        st.append(z(3), b"x"),
        Err(StorageError::OutOfSequence { .. })
    ));
    assert!(matches!(
        st.append(z(5), b"x"),
        Err(StorageError::OutOfSequence { .. })
    ));
    // A new epoch starts at counter 1.
    append_range(&mut st, 3, 1..=2);
    // After a snapshot received from a leader, the log continues from the snapshot.
    st.set_current_epoch(4).unwrap();
    st.write_snapshot(make_zxid(4, 7), b"leader state").unwrap();
    assert_eq!(st.last_logged_zxid(), make_zxid(4, 7));
    st.append(make_zxid(4, 8), b"next").unwrap();
    st.fsync().unwrap();
    // The log jumps over (3, 2)..(4, 7): no DIFF across it, but one after the snapshot.
    assert!(matches!(
        st.read_txns_after(make_zxid(3, 1)),
        Err(StorageError::LogDoesNotCover { .. })
    ));
    assert_eq!(
        st.read_txns_after(make_zxid(4, 7)).unwrap(),
        vec![(make_zxid(4, 8), b"next".to_vec())]
    );
    drop(st);
    let rec = h.open().recover().unwrap();
    assert_eq!(
        rec.snapshot,
        Some((make_zxid(4, 7), b"leader state".to_vec()))
    );
    assert_eq!(rec.txns, vec![(make_zxid(4, 8), b"next".to_vec())]);
}

fn snapshot_ahead_of_the_log_starts_a_new_log_file<H: Harness>(h: &H) {
    // A learner logs (1, 1..3), then takes the leader's snapshot at (1, 5), then logs the
    // new epoch: (2, 1) follows (1, 5), not (1, 3), though both look like "new epoch".
    let mut st = h.open();
    st.set_current_epoch(2).unwrap();
    append_range(&mut st, 1, 1..=3);
    st.write_snapshot(z(5), b"leader state").unwrap();
    append_range(&mut st, 2, 1..=2);
    st.fsync().unwrap();
    assert_eq!(st.log_files().len(), 2);
    assert!(matches!(
        st.read_txns_after(z(3)),
        Err(StorageError::LogDoesNotCover { .. })
    ));
    assert_eq!(st.read_txns_after(z(5)).unwrap(), expected(2, 1..=2));
    let snap = st.snapshot_files().unwrap().pop().unwrap();
    drop(st);
    assert_eq!(h.open().recover().unwrap().txns, expected(2, 1..=2));
    // Without that snapshot, the history cannot be rebuilt.
    remove_durably(&h.fs(), &snap);
    assert!(matches!(
        h.open().recover(),
        Err(StorageError::ZxidGap { .. })
    ));
}

fn logs_roll_by_txn_count_and_size<H: Harness>(h: &H) {
    let mut st = h.open_with(|o| o.log_roll_txns = 3);
    append_range(&mut st, 1, 1..=10);
    st.fsync().unwrap();
    let names: Vec<String> = st
        .log_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec![
            "log.100000001",
            "log.100000004",
            "log.100000007",
            "log.10000000a"
        ]
    );
    // Closed logs are trimmed to their records; only the last one is preallocated.
    let fs = h.fs();
    let first = &st.log_files()[0];
    let recs = records(&fs, first);
    assert_eq!(fs.len(first).unwrap(), recs.last().unwrap().end());
    assert_eq!(fs.len(&st.log_files()[3]).unwrap(), 64 << 10);
    assert_eq!(st.read_txns_after(z(5)).unwrap(), expected(1, 6..=10));
    drop(st);
    assert_eq!(h.open().recover().unwrap().txns, expected(1, 1..=10));

    let mut st = h.open_with(|o| o.log_roll_bytes = 100);
    let before = st.log_files().len();
    append_range(&mut st, 1, 11..=20);
    st.fsync().unwrap();
    assert!(st.log_files().len() >= before + 3, "{:?}", st.log_files());
    drop(st);
    assert_eq!(h.open().recover().unwrap().txns, expected(1, 1..=20));
}

fn truncate_drops_later_txns_durably<H: Harness>(h: &H) {
    let mut st = h.open_with(|o| o.log_roll_txns = 4);
    st.set_current_epoch(1).unwrap();
    append_range(&mut st, 1, 1..=10);
    st.fsync().unwrap();
    st.write_snapshot(z(3), b"s3").unwrap();
    st.write_snapshot(z(9), b"s9").unwrap();
    st.truncate_after(z(6)).unwrap();
    assert_eq!(st.last_logged_zxid(), z(6));
    assert_eq!(st.read_txns_after(0).unwrap(), expected(1, 1..=6));
    assert_eq!(st.log_files().len(), 2, "log.100000009 must be gone");
    assert_eq!(
        st.snapshot_files().unwrap().len(),
        1,
        "snapshot 9 must be gone"
    );
    // The new leader's epoch continues the history.
    append_range(&mut st, 2, 1..=2);
    st.fsync().unwrap();
    drop(st);
    let rec = h.open().recover().unwrap();
    assert_eq!(rec.snapshot, Some((z(3), b"s3".to_vec())));
    let mut want = expected(1, 4..=6);
    want.extend(expected(2, 1..=2));
    assert_eq!(rec.txns, want);
}

fn truncate_unsynced_tail_and_everything<H: Harness>(h: &H) {
    let mut st = h.open();
    append_range(&mut st, 1, 1..=5);
    st.truncate_after(z(2)).unwrap();
    assert_eq!(st.read_txns_after(0).unwrap(), expected(1, 1..=2));
    st.truncate_after(0).unwrap();
    assert_eq!(st.last_logged_zxid(), 0);
    assert!(st.log_files().is_empty());
    append_range(&mut st, 2, 1..=1);
    st.fsync().unwrap();
    drop(st);
    assert_eq!(h.open().recover().unwrap().txns, expected(2, 1..=1));
}

fn epochs_persist<H: Harness>(h: &H) {
    let mut st = h.open();
    assert_eq!(st.epochs(), Epochs::default());
    st.set_accepted_epoch(3).unwrap();
    st.set_current_epoch(2).unwrap();
    assert_eq!(
        st.epochs(),
        Epochs {
            accepted_epoch: 3,
            current_epoch: 2
        }
    );
    drop(st);
    let st = h.open();
    assert_eq!(st.epochs().accepted_epoch, 3);
    assert_eq!(st.epochs().current_epoch, 2);
    // ZooKeeper's file names and decimal content.
    let fs = h.fs();
    let path = st.snap_dir().join("currentEpoch");
    assert_eq!(format::decode_epoch(&fs.read(&path).unwrap()), Some(2));
    assert!(!fs.exists(&st.snap_dir().join("currentEpoch.tmp")));
}

fn bad_epoch_file_refuses<H: Harness>(h: &H) {
    let mut st = h.open();
    st.set_accepted_epoch(3).unwrap();
    let path = st.snap_dir().join("acceptedEpoch");
    drop(st);
    let fs = h.fs();
    let mut f = fs.create(&path).unwrap();
    f.write_at(0, b"3x\n").unwrap();
    f.fsync().unwrap();
    assert!(matches!(
        h.try_open(),
        Err(StorageError::BadEpochFile { .. })
    ));
}

fn snapshots_newest_valid_and_purge<H: Harness>(h: &H) {
    let mut st = h.open_with(|o| o.log_roll_txns = 2);
    st.set_current_epoch(1).unwrap();
    for s in 1..=4u32 {
        append_range(&mut st, 1, (s - 1) * 4 + 1..=s * 4);
        st.fsync().unwrap();
        st.write_snapshot(z(s * 4), format!("state {}", s * 4).as_bytes())
            .unwrap();
    }
    append_range(&mut st, 1, 17..=18);
    st.fsync().unwrap();
    assert_eq!(
        st.load_newest_snapshot().unwrap(),
        Some((z(16), b"state 16".to_vec()))
    );
    assert_eq!(st.log_files().len(), 9);

    // Fewer valid snapshots than retained: nothing goes.
    st.purge(5).unwrap();
    assert_eq!(st.snapshot_files().unwrap().len(), 4);
    // retain 1 means the minimum, 3: snapshot 4 and the logs before snapshot 8 go.
    st.purge(1).unwrap();
    let snaps = st.snapshot_files().unwrap();
    assert_eq!(snaps.len(), 3);
    assert!(snaps[0].ends_with("snapshot.100000008"));
    let first_log = &st.log_files()[0];
    assert!(first_log.ends_with("log.100000007"), "{first_log:?}");
    assert_eq!(st.read_txns_after(z(8)).unwrap(), expected(1, 9..=18));
    // Purged: a DIFF from zxid 3 is impossible.
    assert!(matches!(
        st.read_txns_after(z(3)),
        Err(StorageError::LogDoesNotCover { .. })
    ));
    drop(st);

    let rec = h.open().recover().unwrap();
    assert_eq!(rec.snapshot, Some((z(16), b"state 16".to_vec())));
    assert_eq!(rec.txns, expected(1, 17..=18));

    // The newest snapshot rots: recovery falls back to snapshot 12, which the log covers.
    let st = h.open();
    let newest = st.snapshot_files().unwrap().pop().unwrap();
    drop(st);
    flip(&h.fs(), &newest, 30);
    let mut st = h.open();
    assert_eq!(
        st.load_newest_snapshot().unwrap(),
        Some((z(12), b"state 12".to_vec()))
    );
    let rec = st.recover().unwrap();
    assert_eq!(rec.snapshot, Some((z(12), b"state 12".to_vec())));
    assert_eq!(rec.txns, expected(1, 13..=18));
}

fn truncated_snapshot_falls_back_when_log_covers<H: Harness>(h: &H) {
    let mut st = h.open();
    st.set_current_epoch(1).unwrap();
    append_range(&mut st, 1, 1..=3);
    st.fsync().unwrap();
    st.write_snapshot(z(3), b"s3").unwrap();
    append_range(&mut st, 1, 4..=8);
    st.fsync().unwrap();
    st.write_snapshot(z(6), b"s6").unwrap();
    let newest = st.snapshot_files().unwrap().pop().unwrap();
    drop(st);
    let fs = h.fs();
    let len = fs.len(&newest).unwrap();
    let mut f = fs.open_write(&newest).unwrap();
    f.set_len(len - 5).unwrap();
    f.fsync().unwrap();
    let rec = h.open().recover().unwrap();
    assert_eq!(rec.snapshot, Some((z(3), b"s3".to_vec())));
    assert_eq!(rec.txns, expected(1, 4..=8));
}

fn truncated_snapshot_refuses_when_log_does_not_cover<H: Harness>(h: &H) {
    let mut st = h.open();
    st.set_current_epoch(1).unwrap();
    append_range(&mut st, 1, 1..=3);
    st.fsync().unwrap();
    st.write_snapshot(z(3), b"s3").unwrap();
    // A learner receives the leader's snapshot at 6 (txns 4..6 never in its log).
    st.write_snapshot(z(6), b"s6").unwrap();
    append_range(&mut st, 1, 7..=8);
    st.fsync().unwrap();
    let newest = st.snapshot_files().unwrap().pop().unwrap();
    drop(st);
    let fs = h.fs();
    let mut f = fs.open_write(&newest).unwrap();
    f.set_len(20).unwrap();
    f.fsync().unwrap();
    match h.open().recover() {
        Err(e @ StorageError::SnapshotNotCovered { .. }) => {
            assert!(e.to_string().contains("snapshot.100000006"), "{e}");
        }
        other => panic!("expected SnapshotNotCovered, got {other:?}"),
    }
}

fn deleted_snapshots_refuse<H: Harness>(h: &H) {
    let mut st = h.open_with(|o| o.log_roll_txns = 2);
    st.set_current_epoch(1).unwrap();
    for s in 1..=4u32 {
        append_range(&mut st, 1, (s - 1) * 3 + 1..=s * 3);
        st.fsync().unwrap();
        st.write_snapshot(z(s * 3), b"state").unwrap();
    }
    st.purge(3).unwrap();
    let snaps = st.snapshot_files().unwrap();
    drop(st);
    let fs = h.fs();
    for s in &snaps {
        remove_durably(&fs, s);
    }
    match h.open().recover() {
        Err(e @ StorageError::MissingSnapshot { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("log.100000005"), "{msg}");
        }
        other => panic!("expected MissingSnapshot, got {other:?}"),
    }
}

fn log_starting_a_new_epoch_is_not_the_start_of_history<H: Harness>(h: &H) {
    // After purge, the oldest log starts at (2, 1): counter 1, yet not the first txn ever.
    let mut st = h.open_with(|o| o.log_roll_txns = 2);
    st.set_current_epoch(2).unwrap();
    append_range(&mut st, 1, 1..=2);
    append_range(&mut st, 2, 1..=6);
    st.fsync().unwrap();
    for c in [2, 4, 6] {
        st.write_snapshot(make_zxid(2, c), b"state").unwrap();
    }
    st.purge(3).unwrap();
    let first = st.log_files()[0].clone();
    assert!(first.ends_with("log.200000001"), "{first:?}");
    // TRUNC below every snapshot cannot be served from this log.
    assert!(matches!(
        st.truncate_after(make_zxid(2, 1)),
        Err(StorageError::CannotTruncate { .. })
    ));
    let snaps = st.snapshot_files().unwrap();
    drop(st);
    for s in &snaps {
        remove_durably(&h.fs(), s);
    }
    assert!(matches!(
        h.open().recover(),
        Err(StorageError::MissingSnapshot { .. })
    ));
}

fn foreign_or_rotted_log_header_is_refused_not_deleted<H: Harness>(h: &H) {
    let mut st = h.open();
    append_range(&mut st, 1, 1..=3);
    st.fsync().unwrap();
    let log = st.log_files()[0].clone();
    drop(st);
    let fs = h.fs();
    flip(&fs, &log, 1); // the magic
    assert!(matches!(
        h.try_open(),
        Err(StorageError::Corrupt { offset: 0, .. })
    ));
    assert!(
        fs.exists(&log),
        "a log that is not ours must never be deleted"
    );
}

fn torn_log_creation_is_removed<H: Harness>(h: &H) {
    let mut st = h.open();
    append_range(&mut st, 1, 1..=3);
    st.fsync().unwrap();
    let log_dir = st.log_dir().to_path_buf();
    drop(st);
    // A crash while writing the header of the next log: 5 bytes of it, then zeros.
    let fs = h.fs();
    let torn = log_dir.join("log.100000004");
    let mut f = fs.create(&torn).unwrap();
    f.write_at(0, &format::log_header(z(3))[..5]).unwrap();
    f.set_len(4096).unwrap();
    f.fsync().unwrap();
    fs.sync_dir(&log_dir).unwrap();
    let mut st = h.open();
    assert!(!fs.exists(&torn));
    assert_eq!(st.recover().unwrap().txns, expected(1, 1..=3));
}

fn no_snapshot_with_complete_log_recovers<H: Harness>(h: &H) {
    // ZOOKEEPER-2325's legitimate case: the log starts the history, so an empty tree is right.
    let mut st = h.open();
    append_range(&mut st, 1, 1..=4);
    st.fsync().unwrap();
    drop(st);
    let rec = h.open().recover().unwrap();
    assert_eq!(rec.snapshot, None);
    assert_eq!(rec.txns, expected(1, 1..=4));
}

fn flipped_byte_mid_log_refuses<H: Harness>(h: &H) {
    let mut st = h.open();
    append_range(&mut st, 1, 1..=10);
    st.fsync().unwrap();
    let log = st.log_files()[0].clone();
    drop(st);
    let fs = h.fs();
    let third = records(&fs, &log)[2];
    flip(&fs, &log, third.offset + 18);
    match h.try_open() {
        Err(StorageError::Corrupt {
            path,
            offset,
            reason,
        }) => {
            assert_eq!(path, log);
            assert_eq!(offset, third.offset);
            assert!(reason.contains("CRC"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

fn flipped_length_mid_log_refuses<H: Harness>(h: &H) {
    let mut st = h.open();
    append_range(&mut st, 1, 1..=10);
    st.fsync().unwrap();
    let log = st.log_files()[0].clone();
    drop(st);
    let fs = h.fs();
    let fifth = records(&fs, &log)[4];
    flip(&fs, &log, fifth.offset + 3);
    assert!(
        matches!(h.try_open(), Err(StorageError::Corrupt { offset, .. }) if offset == fifth.offset)
    );
}

fn corrupt_tail_of_non_last_log_refuses<H: Harness>(h: &H) {
    let mut st = h.open_with(|o| o.log_roll_txns = 3);
    append_range(&mut st, 1, 1..=7);
    st.fsync().unwrap();
    let first = st.log_files()[0].clone();
    drop(st);
    let fs = h.fs();
    let last = *records(&fs, &first).last().unwrap();
    flip(&fs, &first, last.offset + 20);
    match h.try_open() {
        Err(e @ StorageError::Corrupt { .. }) => {
            assert!(e.to_string().contains("not the last log"), "{e}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

fn flipped_bytes_in_tail_are_repaired<H: Harness>(h: &H) {
    let mut st = h.open();
    append_range(&mut st, 1, 1..=10);
    st.fsync().unwrap();
    let log = st.log_files()[0].clone();
    drop(st);
    let fs = h.fs();
    let last = *records(&fs, &log).last().unwrap();
    // Rot in the last record: indistinguishable from a torn write, so it is cut off.
    flip(&fs, &log, last.offset + 17);
    let mut st = h.open();
    assert_eq!(fs.len(&log).unwrap(), last.offset, "tail must be truncated");
    assert_eq!(st.recover().unwrap().txns, expected(1, 1..=9));
    append_range(&mut st, 1, 10..=11);
    st.fsync().unwrap();
    drop(st);
    assert_eq!(h.open().recover().unwrap().txns, expected(1, 1..=11));

    // Garbage in the preallocated zeros after the last record: also a tail.
    let st = h.open();
    let log = st.log_files().pop().unwrap();
    drop(st);
    let end = records(&fs, &log).last().unwrap().end();
    flip(&fs, &log, end + 100);
    let mut st = h.open();
    assert_eq!(st.recover().unwrap().txns, expected(1, 1..=11));
    assert_eq!(fs.len(&log).unwrap(), end);
}

fn torn_record_at_end_is_repaired<H: Harness>(h: &H) {
    let mut st = h.open();
    append_range(&mut st, 1, 1..=5);
    st.fsync().unwrap();
    let log = st.log_files()[0].clone();
    drop(st);
    let fs = h.fs();
    let last = *records(&fs, &log).last().unwrap();
    // The last record only half written: its tail bytes are still the preallocated zeros.
    let mut f = fs.open_write(&log).unwrap();
    f.write_at(last.offset + 10, &[0u8; 20]).unwrap();
    f.fsync().unwrap();
    assert_eq!(h.open().recover().unwrap().txns, expected(1, 1..=4));
}

fn snapshot_epoch_newer_than_current_epoch<H: Harness>(h: &H) {
    // A learner takes the leader's snapshot of epoch 2 while its currentEpoch is 1.
    let mut st = h.open();
    st.set_current_epoch(1).unwrap();
    st.write_snapshot(make_zxid(2, 5), b"leader").unwrap();
    let marker = st.snap_dir().join("updatingEpoch");
    let fs = h.fs();
    assert!(fs.exists(&marker));
    drop(st);
    // Crash before currentEpoch was written: the marker explains it (ZOOKEEPER-2354 fix).
    let mut st = h.open();
    let rec = st.recover().unwrap();
    assert_eq!(rec.snapshot, Some((make_zxid(2, 5), b"leader".to_vec())));
    assert_eq!(st.epochs().current_epoch, 2);
    assert!(!fs.exists(&marker));
    drop(st);

    // Without the marker, the disagreement is refused.
    let mut st = h.open();
    st.write_snapshot(make_zxid(3, 1), b"later").unwrap();
    drop(st);
    remove_durably(&fs, &marker);
    match h.open().recover() {
        Err(StorageError::EpochBehindSnapshot {
            zxid_epoch,
            current_epoch,
            ..
        }) => assert_eq!((zxid_epoch, current_epoch), (3, 2)),
        other => panic!("expected EpochBehindSnapshot, got {other:?}"),
    }

    // The normal path: currentEpoch is written, and the marker goes with it.
    let mut st = h.open();
    st.set_current_epoch(3).unwrap();
    assert!(st.recover().is_ok());
}

fn bit_rot_in_snapshot_body_is_caught<H: Harness>(h: &H) {
    let mut st = h.open();
    st.set_current_epoch(1).unwrap();
    st.write_snapshot(z(2), b"old").unwrap();
    st.write_snapshot(z(3), b"some state bytes").unwrap();
    let newest = st.snapshot_files().unwrap().pop().unwrap();
    drop(st);
    flip(&h.fs(), &newest, (format::SNAP_HEADER_LEN + 4) as u64);
    let mut st = h.open();
    assert_eq!(
        st.load_newest_snapshot().unwrap(),
        Some((z(2), b"old".to_vec()))
    );
    // The log does not reach zxid 3, so recovery must not silently go back to 2.
    assert!(matches!(
        st.recover(),
        Err(StorageError::SnapshotNotCovered { .. })
    ));
}

fn leftover_temporaries_are_removed<H: Harness>(h: &H) {
    let st = h.open();
    let fs = h.fs();
    let tmp = st.snap_dir().join("snapshot.100000005.tmp");
    drop(st);
    let mut f = fs.create(&tmp).unwrap();
    f.write_at(0, b"half a snapshot").unwrap();
    f.fsync().unwrap();
    fs.sync_dir(tmp.parent().unwrap()).unwrap();
    let mut st = h.open();
    assert!(!fs.exists(&tmp));
    assert_eq!(st.load_newest_snapshot().unwrap(), None);
}

fn oversized_txn_is_rejected<H: Harness>(h: &H) {
    let mut st = h.open();
    let big = vec![0u8; format::MAX_TXN_LEN + 1];
    assert!(matches!(
        st.append(z(1), &big),
        Err(StorageError::TooLarge { .. })
    ));
    // Not fatal: the storage still works.
    append_range(&mut st, 1, 1..=1);
    st.fsync().unwrap();
}

/// A background snapshot: the writer moves to another thread and writes while the owner
/// keeps appending and syncing (and rolling log files); recovery then starts from it. A
/// snapshot of a state the log does not hold yet is refused.
fn background_snapshot_while_appending<H: Harness>(h: &H) {
    let mut st = h.open_with(|o| o.log_roll_txns = 3);
    st.set_current_epoch(1).unwrap();
    append_range(&mut st, 1, 1..=10);
    st.fsync().unwrap();
    assert!(matches!(
        st.begin_snapshot(z(11)),
        Err(StorageError::SnapshotAhead { .. })
    ));
    let writer = st.begin_snapshot(z(10)).unwrap();
    assert_eq!(writer.zxid(), z(10));
    let job = std::thread::spawn(move || writer.write(b"state 10"));
    append_range(&mut st, 1, 11..=20);
    st.fsync().unwrap();
    job.join().unwrap().unwrap();
    st.snapshot_written(z(10));
    assert_eq!(st.stats().snapshots_written, 1);
    append_range(&mut st, 1, 21..=22);
    st.fsync().unwrap();
    assert_eq!(
        st.load_newest_snapshot().unwrap(),
        Some((z(10), b"state 10".to_vec()))
    );
    drop(st);
    let rec = h.open().recover().unwrap();
    assert_eq!(rec.snapshot, Some((z(10), b"state 10".to_vec())));
    assert_eq!(rec.txns, expected(1, 11..=22));
}

/// A learner's SNAP at `S` while its log holds txns above `S` the leader does not have (a
/// divergent suffix from an epoch the leader never saw, plus txns of its own history the
/// leader had not committed yet): the runtime writes the snapshot, then truncates after
/// `S`, so the leader's txns after `S` append in sequence and recovery never replays the
/// divergent suffix.
fn snap_behind_a_divergent_suffix_then_truncate<H: Harness>(h: &H) {
    let mut st = h.open();
    st.set_accepted_epoch(3).unwrap();
    st.set_current_epoch(3).unwrap();
    append_range(&mut st, 1, 1..=10);
    append_range(&mut st, 3, 1..=2);
    st.fsync().unwrap();
    st.write_snapshot(z(8), b"leader state 8").unwrap();
    st.truncate_after(z(8)).unwrap();
    assert_eq!(st.last_logged_zxid(), z(8));
    for c in 9..=11 {
        st.append(z(c), b"from the leader").unwrap();
    }
    st.fsync().unwrap();
    drop(st);
    let rec = h.open().recover().unwrap();
    assert_eq!(rec.snapshot, Some((z(8), b"leader state 8".to_vec())));
    assert_eq!(
        rec.txns,
        (9..=11)
            .map(|c| (z(c), b"from the leader".to_vec()))
            .collect::<Vec<_>>()
    );
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod real_fs {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::RealHarness::new(stringify!($name)));
                }
            )*
        }
        mod sim_fs {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::SimHarness::new(42));
                }
            )*
        }
    };
}

conformance!(
    append_sync_read_recover,
    append_enforces_zab_sequence,
    stats_count_group_commits,
    logs_roll_by_txn_count_and_size,
    snapshot_ahead_of_the_log_starts_a_new_log_file,
    truncate_drops_later_txns_durably,
    truncate_unsynced_tail_and_everything,
    epochs_persist,
    bad_epoch_file_refuses,
    snapshots_newest_valid_and_purge,
    background_snapshot_while_appending,
    snap_behind_a_divergent_suffix_then_truncate,
    truncated_snapshot_falls_back_when_log_covers,
    truncated_snapshot_refuses_when_log_does_not_cover,
    deleted_snapshots_refuse,
    no_snapshot_with_complete_log_recovers,
    foreign_or_rotted_log_header_is_refused_not_deleted,
    torn_log_creation_is_removed,
    log_starting_a_new_epoch_is_not_the_start_of_history,
    flipped_byte_mid_log_refuses,
    flipped_length_mid_log_refuses,
    corrupt_tail_of_non_last_log_refuses,
    flipped_bytes_in_tail_are_repaired,
    torn_record_at_end_is_repaired,
    snapshot_epoch_newer_than_current_epoch,
    bit_rot_in_snapshot_body_is_caught,
    leftover_temporaries_are_removed,
    oversized_txn_is_rejected,
);

// ---------------------------------------------------------------------------------------
// Simulator-only: crash semantics and injected faults.

fn sim_opts() -> FileStorageOptions {
    let mut opts = test_opts(Path::new("/zk"));
    opts.preallocate_bytes = 512;
    opts.log_roll_txns = 5;
    opts.write_buffer_bytes = 64;
    opts
}

/// The snapshot body used by the crash tests: names the zxid it holds the state at.
fn snapshot_body(zxid: Zxid) -> Vec<u8> {
    format!("state at {zxid:x}").into_bytes()
}

/// Random appends, syncs, snapshots and crashes; after each restart the recovered history
/// must contain every synced txn, and be a prefix of what was appended, byte for byte.
#[test]
fn sim_crashes_never_lose_synced_txns_nor_invent_any() {
    for seed in 0..60u64 {
        let fs = SimFs::new(seed);
        fs.set_faults(SimFsFaults {
            torn_write_probability: 0.7,
            reorder_probability: 0.3,
            ..SimFsFaults::default()
        });
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // appended[i] is the txn with counter i + 1.
        let mut appended: Vec<Vec<u8>> = Vec::new();
        let mut durable = 0usize;
        for round in 0..6 {
            let mut st = FileStorage::open(fs.clone(), sim_opts())
                .unwrap_or_else(|e| panic!("seed {seed} round {round}: open: {e}"));
            let rec = st
                .recover()
                .unwrap_or_else(|e| panic!("seed {seed} round {round}: recover: {e}"));
            let last = rec.last_zxid();
            let have = if last == 0 {
                0
            } else {
                crate::types::zxid_counter(last) as usize
            };
            assert!(
                have >= durable,
                "seed {seed} round {round}: lost synced txns: {have} < {durable}"
            );
            assert!(have <= appended.len(), "seed {seed}: invented txns");
            if let Some((s, body)) = &rec.snapshot {
                assert_eq!(body, &snapshot_body(*s), "seed {seed}: wrong snapshot");
            }
            let base = rec
                .snapshot
                .as_ref()
                .map_or(0, |(s, _)| crate::types::zxid_counter(*s));
            for (i, (zxid, bytes)) in rec.txns.iter().enumerate() {
                let counter = base as usize + i + 1;
                assert_eq!(*zxid, z(counter as u32), "seed {seed}: sequence");
                assert_eq!(
                    bytes,
                    &appended[counter - 1],
                    "seed {seed}: content of {zxid:x}"
                );
            }
            appended.truncate(have);
            durable = have;
            if round == 0 {
                st.set_current_epoch(1).unwrap();
            }
            for _ in 0..rng.gen_range(1..6) {
                for _ in 0..rng.gen_range(1..5) {
                    let c = appended.len() as u32 + 1;
                    let payload: Vec<u8> = (0..rng.gen_range(0..40)).map(|_| rng.gen()).collect();
                    st.append(z(c), &payload).unwrap();
                    appended.push(payload);
                }
                if rng.gen_bool(0.5) {
                    assert_eq!(st.fsync().unwrap(), z(appended.len() as u32));
                    durable = appended.len();
                }
                if rng.gen_bool(0.15) {
                    // Snapshots are of synced (committed) state.
                    st.fsync().unwrap();
                    durable = appended.len();
                    let s = z(appended.len() as u32);
                    st.write_snapshot(s, &snapshot_body(s)).unwrap();
                }
            }
            drop(st);
            fs.crash(&mut rng);
        }
    }
}

#[test]
fn sim_torn_tails_are_seen_and_repaired() {
    // Across seeds, some crashes must leave a torn record that recovery cuts off.
    let mut repaired = 0;
    for seed in 0..40u64 {
        let fs = SimFs::new(seed);
        fs.set_faults(SimFsFaults {
            torn_write_probability: 1.0,
            ..SimFsFaults::default()
        });
        let mut st = FileStorage::open(fs.clone(), sim_opts()).unwrap();
        append_range(&mut st, 1, 1..=2);
        st.fsync().unwrap();
        let log = st.log_files()[0].clone();
        for c in 3..=4 {
            st.append(z(c), &[7u8; 30]).unwrap();
        }
        // Hand the records to the "OS" without fsync.
        st.read_txns_after(0).unwrap();
        drop(st);
        fs.crash(&mut ChaCha8Rng::seed_from_u64(seed));
        let data = fs.read(&log).unwrap();
        let torn = matches!(format::scan_log(&data).tail, LogTail::Garbage { .. });
        let mut st = FileStorage::open(fs.clone(), sim_opts()).unwrap();
        let txns = st.recover().unwrap().txns;
        assert!(
            txns.len() >= 2 && txns.len() <= 4,
            "seed {seed}: {}",
            txns.len()
        );
        assert_eq!(&txns[..2], &expected(1, 1..=2)[..]);
        if torn {
            repaired += 1;
            let after = fs.read(&log).unwrap();
            assert_eq!(format::scan_log(&after).tail, LogTail::Clean);
        }
    }
    assert!(repaired > 5, "torn tails seen only {repaired} times");
}

#[test]
fn sim_unsynced_txns_vanish_on_crash() {
    let h = SimHarness::new(1);
    let mut st = h.open();
    append_range(&mut st, 1, 1..=3);
    st.fsync().unwrap();
    append_range(&mut st, 1, 4..=6);
    st.read_txns_after(0).unwrap(); // written to the page cache, not synced
    drop(st);
    h.fs.crash_lose_all();
    let mut st = h.open();
    assert_eq!(st.recover().unwrap().txns, expected(1, 1..=3));
    assert_eq!(st.last_logged_zxid(), z(3));
}

#[test]
fn sim_current_epoch_is_never_durable_before_the_log() {
    // A learner appends the leader's DIFF and takes NEWLEADER in one step: whatever
    // crashes after the currentEpoch write must find those txns durable too, or the
    // server comes back in the new epoch without them (ZOOKEEPER-4643).
    let h = SimHarness::new(1);
    let mut st = h.open();
    append_range(&mut st, 1, 1..=3);
    st.fsync().unwrap();
    append_range(&mut st, 1, 4..=6);
    st.set_accepted_epoch(2).unwrap();
    st.set_current_epoch(2).unwrap();
    drop(st);
    h.fs.crash_lose_all();
    let mut st = h.open();
    assert_eq!(st.epochs().current_epoch, 2);
    assert_eq!(st.recover().unwrap().txns, expected(1, 1..=6));
}

#[test]
fn sim_new_log_file_needs_a_directory_sync() {
    let h = SimHarness::new(1);
    let mut st = h.open();
    append_range(&mut st, 1, 1..=2);
    st.fsync().unwrap();
    assert!(h.fs.stats().dir_syncs >= 1);
    drop(st);
    h.fs.crash_lose_all();
    assert_eq!(h.open().recover().unwrap().txns, expected(1, 1..=2));
}

#[test]
fn sim_force_sync_off_skips_fsync() {
    let h = SimHarness::new(1);
    let mut st = h.open_with(|o| o.force_sync = false);
    append_range(&mut st, 1, 1..=3);
    let syncs = h.fs.stats().syncs;
    assert_eq!(st.fsync().unwrap(), z(3));
    assert_eq!(
        h.fs.stats().syncs,
        syncs,
        "forceSync=no must not fsync the log"
    );
    drop(st);
    h.fs.crash_lose_all();
    assert_eq!(h.open().recover().unwrap().txns, vec![]);
}

#[test]
fn sim_failed_fsync_is_final() {
    let h = SimHarness::new(1);
    let mut st = h.open();
    append_range(&mut st, 1, 1..=2);
    st.fsync().unwrap();
    append_range(&mut st, 1, 3..=4);
    h.fs.set_faults(SimFsFaults {
        fail_next_syncs: 1,
        ..SimFsFaults::default()
    });
    let err = st.fsync().unwrap_err();
    assert!(matches!(err, StorageError::Io { op: "fsync", .. }), "{err}");
    assert!(err.to_string().contains("log.100000001"), "{err}");
    // Never retried: everything fails from now on, even though the disk would work again.
    assert!(matches!(st.fsync(), Err(StorageError::Failed(_))));
    assert!(matches!(
        st.append(z(5), b"x"),
        Err(StorageError::Failed(_))
    ));
    assert!(matches!(
        st.set_current_epoch(1),
        Err(StorageError::Failed(_))
    ));
    assert!(matches!(st.recover(), Err(StorageError::Failed(_))));
    drop(st);
    // The txns whose fsync failed were never reported durable, and are gone after a crash.
    h.fs.crash_lose_all();
    assert_eq!(h.open().recover().unwrap().txns, expected(1, 1..=2));
}

#[test]
fn sim_write_eio_and_disk_full_are_errors() {
    let h = SimHarness::new(1);
    let mut st = h.open();
    h.fs.set_faults(SimFsFaults {
        fail_next_writes: 1,
        ..SimFsFaults::default()
    });
    append_range(&mut st, 1, 1..=1);
    let err = st.fsync().unwrap_err();
    assert!(err.to_string().contains("simulated EIO"), "{err}");
    assert!(matches!(st.fsync(), Err(StorageError::Failed(_))));
    drop(st);

    let h = SimHarness::new(2);
    h.fs.set_faults(SimFsFaults {
        capacity_bytes: Some(4 << 10),
        ..SimFsFaults::default()
    });
    let mut st = h.open_with(|o| o.preallocate_bytes = 1024);
    let mut failed = None;
    for c in 1..=200 {
        if let Err(e) = st
            .append(z(c), &[1u8; 64])
            .and_then(|()| st.fsync().map(drop))
        {
            failed = Some((c, e));
            break;
        }
    }
    let (c, e) = failed.expect("the disk must fill up");
    assert!(e.to_string().contains("ENOSPC"), "{e}");
    drop(st);
    h.fs.crash_lose_all();
    h.fs.set_faults(SimFsFaults::default());
    // Everything synced before the disk filled up is there.
    let txns = h.open().recover().unwrap().txns;
    assert_eq!(zxids(&txns), (1..c).map(z).collect::<Vec<_>>());
}

#[test]
fn sim_failed_snapshot_write_is_not_fatal() {
    let h = SimHarness::new(1);
    let mut st = h.open();
    st.set_current_epoch(1).unwrap();
    append_range(&mut st, 1, 1..=2);
    st.fsync().unwrap();
    h.fs.set_faults(SimFsFaults {
        fail_next_syncs: 1,
        ..SimFsFaults::default()
    });
    assert!(st.write_snapshot(z(2), b"s").is_err());
    assert!(st.snapshot_files().unwrap().is_empty());
    assert!(!h.fs.exists(&st.snap_dir().join("snapshot.100000002.tmp")));
    // The log still works, and a later snapshot succeeds.
    append_range(&mut st, 1, 3..=3);
    st.fsync().unwrap();
    st.write_snapshot(z(3), b"s3").unwrap();
    drop(st);
    h.fs.crash_lose_all();
    let rec = h.open().recover().unwrap();
    assert_eq!(rec.snapshot, Some((z(3), b"s3".to_vec())));
}

#[test]
fn sim_snapshot_and_epoch_writes_are_atomic_under_crashes() {
    for seed in 0..40u64 {
        let h = SimHarness::new(seed);
        let mut st = h.open();
        st.set_current_epoch(1).unwrap();
        st.write_snapshot(z(1), b"first").unwrap();
        // Random EIOs on the next epoch and snapshot writes, then a crash with torn writes.
        h.fs.set_faults(SimFsFaults {
            sync_error_probability: 0.3,
            write_error_probability: 0.1,
            torn_write_probability: 1.0,
            ..SimFsFaults::default()
        });
        let _ = st.set_accepted_epoch(5);
        let _ = st.write_snapshot(z(2), b"second");
        drop(st);
        h.fs.crash(&mut ChaCha8Rng::seed_from_u64(seed));
        h.fs.set_faults(SimFsFaults::default());
        let mut st = h.open();
        assert!(matches!(st.epochs().accepted_epoch, 0 | 5), "seed {seed}");
        let snap = st.load_newest_snapshot().unwrap().unwrap();
        assert!(
            snap == (z(1), b"first".to_vec()) || snap == (z(2), b"second".to_vec()),
            "seed {seed}: {snap:?}"
        );
        // No snapshot file is ever half-written under its final name.
        for path in st.snapshot_files().unwrap() {
            let data = h.fs.read(&path).unwrap();
            assert!(
                format::decode_snapshot(&data).is_ok(),
                "seed {seed}: {path:?}"
            );
        }
    }
}

#[test]
fn sim_bit_rot_never_yields_wrong_data() {
    // Rot one random bit of the data at rest: recovery either refuses, or returns a history
    // that is a prefix of what was written (a rotted last record reads as a torn tail).
    let mut refused = 0;
    for seed in 0..80u64 {
        let h = SimHarness::new(seed);
        let mut st = h.open_with(|o| o.log_roll_txns = 4);
        st.set_current_epoch(1).unwrap();
        append_range(&mut st, 1, 1..=6);
        st.fsync().unwrap();
        st.write_snapshot(z(6), &snapshot_body(z(6))).unwrap();
        append_range(&mut st, 1, 7..=10);
        st.fsync().unwrap();
        drop(st);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (path, offset) = h.fs.rot(&mut rng).expect("something to rot");
        let result = h.try_open().and_then(|mut st| st.recover());
        match result {
            Err(_) => refused += 1,
            Ok(rec) => {
                let base = match &rec.snapshot {
                    Some((s, body)) => {
                        assert_eq!(body, &snapshot_body(*s), "seed {seed}: {path:?}@{offset}");
                        crate::types::zxid_counter(*s)
                    }
                    None => 0,
                };
                let want = expected(1, base + 1..=base + rec.txns.len() as u32);
                assert_eq!(rec.txns, want, "seed {seed}: rot at {path:?}@{offset}");
            }
        }
    }
    assert!(refused > 0, "some rot must be refused");
}

#[test]
fn sim_same_seed_same_disk() {
    let run = |seed: u64| {
        let fs = SimFs::new(seed);
        fs.set_faults(SimFsFaults {
            torn_write_probability: 0.5,
            write_error_probability: 0.05,
            ..SimFsFaults::default()
        });
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut st = FileStorage::open(fs.clone(), sim_opts()).unwrap();
        for c in 1..=30 {
            if st.append(z(c), &txn(z(c))).is_err() {
                break;
            }
            if c % 4 == 0 && st.fsync().is_err() {
                break;
            }
        }
        drop(st);
        fs.crash(&mut rng);
        let mut files = Vec::new();
        for dir in ["/zk/log/version-2", "/zk/data/version-2"] {
            for name in fs.list_dir(Path::new(dir)).unwrap() {
                let p = Path::new(dir).join(&name);
                files.push((name, fs.read(&p).unwrap()));
            }
        }
        (files, fs.stats())
    };
    assert_eq!(run(9), run(9));
}

#[test]
fn sim_out_of_order_writeback_is_an_unsynced_tail() {
    // Unsynced writes may reach the disk in any order, leaving zero holes before later
    // records. Those records were never synced, so recovery cuts the log at the hole.
    let mut holes = 0;
    for seed in 0..40u64 {
        let fs = SimFs::new(seed);
        let mut st = FileStorage::open(fs.clone(), sim_opts()).unwrap();
        append_range(&mut st, 1, 1..=2);
        st.fsync().unwrap();
        let log = st.log_files()[0].clone();
        for c in 3..=5 {
            st.append(z(c), &txn(z(c))).unwrap();
            st.read_txns_after(0).unwrap(); // one write per record, none synced
        }
        drop(st);
        fs.set_faults(SimFsFaults {
            reorder_probability: 1.0,
            ..SimFsFaults::default()
        });
        fs.crash(&mut ChaCha8Rng::seed_from_u64(seed));
        let scan = format::scan_log(&fs.read(&log).unwrap());
        if matches!(scan.tail, LogTail::Garbage { .. }) {
            holes += 1;
        }
        let txns = FileStorage::open(fs.clone(), sim_opts())
            .and_then(|mut st| st.recover())
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"))
            .txns;
        assert!(txns.len() >= 2, "seed {seed}: synced txns lost");
        assert_eq!(txns, expected(1, 1..=txns.len() as u32), "seed {seed}");
    }
    assert!(
        holes > 5,
        "out-of-order writeback produced only {holes} holes"
    );
}

#[test]
fn storage_is_object_safe_and_send() {
    fn assert_send<T: Send>() {}
    assert_send::<FileStorage<RealFs>>();
    assert_send::<FileStorage<SimFs>>();
    let h = SimHarness::new(0);
    let mut boxed: Box<dyn Storage + Send> = Box::new(h.open());
    boxed.append(z(1), b"x").unwrap();
    assert_eq!(boxed.fsync().unwrap(), z(1));
    assert_eq!(
        boxed.read_txns_after(0).unwrap(),
        vec![(z(1), b"x".to_vec())]
    );
}

#[test]
fn sim_crash_during_truncate_recovers_a_prefix_reaching_the_truncation_point() {
    // Fail the k-th fsync inside truncate_after, then lose power: whatever state results
    // must recover, to the old history or a prefix of it that still reaches zxid 2, and
    // never to a snapshot ahead of its log.
    let mut outcomes = std::collections::BTreeSet::new();
    for k in 0..6u32 {
        let h = SimHarness::new(u64::from(k));
        let mut st = h.open_with(|o| o.log_roll_txns = 4);
        st.set_current_epoch(1).unwrap();
        append_range(&mut st, 1, 1..=8);
        st.fsync().unwrap();
        st.write_snapshot(z(7), &snapshot_body(z(7))).unwrap();
        h.fs.set_faults(SimFsFaults {
            sync_failure_countdown: Some(k),
            ..SimFsFaults::default()
        });
        let truncated = st.truncate_after(z(2)).is_ok();
        drop(st);
        h.fs.crash_lose_all();
        h.fs.set_faults(SimFsFaults::default());
        let rec = h.open().recover().unwrap_or_else(|e| panic!("k={k}: {e}"));
        let last = rec.last_zxid();
        match &rec.snapshot {
            Some((s, body)) => {
                assert_eq!((*s, body), (z(7), &snapshot_body(z(7))), "k={k}");
                assert_eq!(rec.txns, expected(1, 8..=8), "k={k}");
            }
            None => assert_eq!(rec.txns, expected(1, 1..=zxid_counter(last)), "k={k}"),
        }
        assert!([z(2), z(4), z(8)].contains(&last), "k={k}: {last:x}");
        if truncated {
            assert_eq!(last, z(2), "k={k}: a completed TRUNC must be durable");
        }
        outcomes.insert(last);
    }
    assert!(outcomes.len() >= 2, "{outcomes:?}");
}

#[test]
fn sim_truncate_below_every_snapshot_is_refused_without_change() {
    let h = SimHarness::new(0);
    let mut st = h.open_with(|o| o.log_roll_txns = 2);
    st.set_current_epoch(1).unwrap();
    for s in 1..=4u32 {
        append_range(&mut st, 1, (s - 1) * 2 + 1..=s * 2);
        st.fsync().unwrap();
        st.write_snapshot(z(s * 2), b"state").unwrap();
    }
    st.purge(3).unwrap(); // snapshots 4, 6, 8; logs from 3
    assert!(matches!(
        st.truncate_after(z(3)),
        Err(StorageError::CannotTruncate { .. })
    ));
    assert_eq!(st.read_txns_after(z(4)).unwrap(), expected(1, 5..=8));
    assert_eq!(st.snapshot_files().unwrap().len(), 3);
    // Not fatal: TRUNC to a zxid a snapshot covers works.
    st.truncate_after(z(5)).unwrap();
    assert_eq!(st.last_logged_zxid(), z(5));
}

/// One step of the model-based test.
#[derive(Debug, Clone)]
enum Op {
    /// Append this many txns of this size.
    Append(u8, u8),
    Sync,
    /// Sync, then snapshot the state at the last zxid.
    Snapshot,
    /// Become leader of a new epoch: acceptedEpoch and currentEpoch, then txns at counter 1.
    NewEpoch,
    /// A learner takes a leader's snapshot this many txns ahead, in the same or the next
    /// epoch (then ahead of currentEpoch, until `NewLeaderAck`).
    LeaderSnapshot(u8, bool),
    /// The learner acknowledges NEWLEADER: currentEpoch catches up with its history.
    NewLeaderAck,
    /// TRUNC this many txns back.
    Truncate(u8),
    Purge(usize),
    /// The process stops and starts again (the page cache survives).
    Restart,
    /// Power loss.
    Crash(u64),
    /// The next fsync fails with EIO.
    FailSync,
    /// Read the txns after the entry this many back (a leader preparing a DIFF).
    ReadAfter(u8),
}

fn op_strategy() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        8 => (1u8..5, 0u8..60).prop_map(|(n, len)| Op::Append(n, len)),
        3 => Just(Op::Sync),
        1 => Just(Op::Snapshot),
        1 => Just(Op::NewEpoch),
        1 => (1u8..6, any::<bool>()).prop_map(|(k, next)| Op::LeaderSnapshot(k, next)),
        1 => Just(Op::NewLeaderAck),
        1 => (0u8..8).prop_map(Op::Truncate),
        1 => (0usize..5).prop_map(Op::Purge),
        1 => Just(Op::Restart),
        2 => any::<u64>().prop_map(Op::Crash),
        1 => Just(Op::FailSync),
        1 => (0u8..10).prop_map(Op::ReadAfter),
    ]
}

/// The history the storage should hold: each zxid with its txn bytes, or `None` for a
/// state known only through a snapshot received from a leader.
#[derive(Debug, Default)]
struct Model {
    history: Vec<(Zxid, Option<Vec<u8>>)>,
    /// How many entries are durable.
    durable: usize,
    /// The next append starts this epoch at counter 1.
    pending_epoch: Option<u32>,
}

impl Model {
    fn last(&self) -> Zxid {
        self.history.last().map_or(0, |(z, _)| *z)
    }

    fn next_zxid(&mut self) -> Zxid {
        match self.pending_epoch.take() {
            Some(e) => make_zxid(e, 1),
            None => self.last() + 1,
        }
    }

    /// Checks a recovery; returns how many entries the recovered state holds.
    fn check(&self, rec: &Recovered) -> Result<usize, String> {
        let start = match &rec.snapshot {
            None => 0,
            Some((s, body)) => {
                if *body != snapshot_body(*s) {
                    return Err(format!("wrong snapshot body at {s:x}"));
                }
                1 + self
                    .history
                    .iter()
                    .position(|(z, _)| z == s)
                    .ok_or_else(|| format!("snapshot {s:x} is not in the history"))?
            }
        };
        for (i, (zxid, bytes)) in rec.txns.iter().enumerate() {
            match self.history.get(start + i) {
                Some((z, Some(b))) if z == zxid && b == bytes => {}
                other => return Err(format!("txn {zxid:x} recovered where {other:?} was")),
            }
        }
        let have = start + rec.txns.len();
        if have < self.durable || have > self.history.len() {
            return Err(format!(
                "recovered {have} entries, {} durable, {} appended",
                self.durable,
                self.history.len()
            ));
        }
        Ok(have)
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]


    /// Random appends, syncs, snapshots, epoch changes, leader snapshots, TRUNCs, purges,
    /// restarts, crashes and fsync failures against a model: a recovered history always
    /// holds every durable txn, and only txns that were appended, in order.
    #[test]
    fn model_based_storage(ops in proptest::collection::vec(op_strategy(), 1..80), seed in 0u64..1000) {
        let fs = SimFs::new(seed);
        fs.set_faults(SimFsFaults {
            torn_write_probability: 0.5,
            reorder_probability: 0.2,
            ..SimFsFaults::default()
        });
        let mut opts = sim_opts();
        opts.log_roll_txns = 3;
        let mut st = FileStorage::open(fs.clone(), opts.clone()).unwrap();
        st.set_accepted_epoch(1).unwrap();
        st.set_current_epoch(1).unwrap();
        let mut m = Model {
            pending_epoch: Some(1),
            ..Model::default()
        };
        // Set by a failed operation: the storage refuses everything until the node restarts,
        // and since the failed writes may still show in the page cache (though not on disk,
        // as on Linux), that restart must be a power loss.
        let mut failed = false;
        for op in ops {
            let result: Result<(), StorageError> = match op {
                _ if failed && !matches!(op, Op::Restart | Op::Crash(_)) => continue,
                Op::Append(n, len) => (0..n).try_for_each(|_| {
                    let zxid = m.next_zxid();
                    if zxid_epoch(zxid) > st.epochs().current_epoch {
                        // A learner logs the new epoch's txns only after NEWLEADER.
                        st.set_current_epoch(zxid_epoch(zxid))?;
                    }
                    let payload = vec![zxid as u8; len as usize];
                    st.append(zxid, &payload)?;
                    m.history.push((zxid, Some(payload)));
                    Ok(())
                }),
                Op::Sync => st.fsync().map(|_| m.durable = m.history.len()),
                Op::Snapshot => st.fsync().and_then(|_| {
                    m.durable = m.history.len();
                    match m.last() {
                        0 => Ok(()),
                        s => st.write_snapshot(s, &snapshot_body(s)),
                    }
                }),
                Op::NewEpoch => {
                    let e = zxid_epoch(m.last()).max(st.epochs().current_epoch) + 1;
                    st.set_accepted_epoch(e)
                        .and_then(|()| st.set_current_epoch(e))
                        .map(|()| m.pending_epoch = Some(e))
                }
                Op::LeaderSnapshot(k, next_epoch) => {
                    let e = zxid_epoch(m.last()).max(st.epochs().current_epoch)
                        + u32::from(next_epoch);
                    let s = if e == zxid_epoch(m.last()) && m.pending_epoch.is_none() {
                        m.last() + i64::from(k)
                    } else {
                        make_zxid(e.max(1), u32::from(k))
                    };
                    st.write_snapshot(s, &snapshot_body(s)).map(|()| {
                        m.pending_epoch = None;
                        m.history.push((s, None));
                        m.durable = m.history.len();
                    })
                }
                Op::NewLeaderAck => {
                    let e = zxid_epoch(m.last());
                    if e > st.epochs().current_epoch {
                        st.set_current_epoch(e)
                    } else {
                        Ok(())
                    }
                }
                Op::Truncate(back) => {
                    let keep = m.history.len().saturating_sub(usize::from(back));
                    let zxid = if keep == 0 { 0 } else { m.history[keep - 1].0 };
                    match st.truncate_after(zxid) {
                        Ok(()) => {
                            // The history ends at `zxid`, or below it if `zxid` was known only
                            // through a newer snapshot (which TRUNC removes).
                            let last = st.last_logged_zxid();
                            prop_assert!(last <= zxid, "{last:x} > {zxid:x}");
                            let kept = m.history[..keep].iter().rposition(|(z, _)| *z == last);
                            let kept = match (last, kept) {
                                (0, _) => 0,
                                (_, Some(i)) => i + 1,
                                (_, None) => panic!("TRUNC left {last:x}, not in the history"),
                            };
                            m.history.truncate(kept);
                            m.durable = kept;
                            Ok(())
                        }
                        Err(StorageError::CannotTruncate { .. }) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                Op::Purge(retain) => st.purge(retain),
                Op::ReadAfter(back) => {
                    let idx = m.history.len().saturating_sub(usize::from(back) + 1);
                    let (from, zxid) = match m.history.len() {
                        0 => (0, 0),
                        _ if usize::from(back) >= m.history.len() => (0, 0),
                        _ => (idx + 1, m.history[idx].0),
                    };
                    match st.read_txns_after(zxid) {
                        Ok(txns) => {
                            let want: Vec<(Zxid, Vec<u8>)> = m.history[from..]
                                .iter()
                                .map(|(z, b)| (*z, b.clone().expect("a DIFF over a snapshot-only txn")))
                                .collect();
                            prop_assert_eq!(txns, want);
                            Ok(())
                        }
                        Err(StorageError::LogDoesNotCover { .. }) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                Op::FailSync => {
                    let mut faults = fs.faults();
                    faults.fail_next_syncs = 1;
                    fs.set_faults(faults);
                    Ok(())
                }
                Op::Restart | Op::Crash(_) => {
                    drop(st);
                    let mut faults = fs.faults();
                    faults.fail_next_syncs = 0;
                    fs.set_faults(faults);
                    if let Op::Crash(s) = op {
                        fs.crash(&mut ChaCha8Rng::seed_from_u64(s));
                    } else if failed {
                        fs.crash_lose_all();
                    }
                    failed = false;
                    st = FileStorage::open(fs.clone(), opts.clone())
                        .unwrap_or_else(|e| panic!("reopen after {op:?}: {e}"));
                    let rec = st
                        .recover()
                        .unwrap_or_else(|e| panic!("recover after {op:?}: {e}"));
                    let have = m.check(&rec).unwrap_or_else(|e| panic!("after {op:?}: {e}"));
                    m.history.truncate(have);
                    m.durable = have;
                    // A restarted server only appends once it has rejoined: keep the model's
                    // epoch state, which the storage also kept.
                    if st.epochs().current_epoch < zxid_epoch(m.last()) {
                        panic!("currentEpoch {} behind recovered {:x}", st.epochs().current_epoch, m.last());
                    }
                    Ok(())
                }
            };
            match result {
                Ok(()) => {}
                Err(StorageError::Io { .. } | StorageError::Failed(_)) => {
                    failed = true;
                    continue;
                }
                Err(e) => panic!("{op:?}: {e}"),
            }
            prop_assert_eq!(st.last_logged_zxid(), m.last());
        }
    }
}

#[test]
fn sim_restart_makes_what_it_recovers_from_durable() {
    // The directory fsync after a snapshot's rename fails; the process stops and restarts
    // (no power loss) and recovers from that snapshot. A later power loss must not take
    // the snapshot away, or the log that continues from it would have a gap.
    let h = SimHarness::new(0);
    let mut st = h.open();
    st.set_current_epoch(1).unwrap();
    append_range(&mut st, 1, 1..=2);
    st.fsync().unwrap();
    h.fs.set_faults(SimFsFaults {
        // tmp file fsync succeeds, the directory fsync after the rename fails
        sync_failure_countdown: Some(1),
        ..SimFsFaults::default()
    });
    assert!(st.write_snapshot(z(6), b"from the leader").is_err());
    drop(st);
    let mut st = h.open();
    let rec = st.recover().unwrap();
    assert_eq!(rec.snapshot, Some((z(6), b"from the leader".to_vec())));
    append_range(&mut st, 1, 7..=7);
    st.fsync().unwrap();
    drop(st);
    h.fs.crash_lose_all();
    let rec = h.open().recover().unwrap();
    assert_eq!(rec.snapshot, Some((z(6), b"from the leader".to_vec())));
    assert_eq!(rec.txns, expected(1, 7..=7));
}

/// The read-only listing tools use while a server owns the directory: snapshots in zxid
/// order (not name order), temporaries and other files left out, nothing changed.
#[test]
fn snapshot_files_in_lists_without_touching() {
    let h = RealHarness::new("snapshot_files_in");
    let mut st = h.open();
    st.set_current_epoch(1).unwrap();
    append_range(&mut st, 1, 1..=16);
    st.fsync().unwrap();
    for c in [2u32, 16, 9] {
        st.write_snapshot(z(c), b"state").unwrap();
    }
    let dir = st.snap_dir().to_path_buf();
    std::fs::write(dir.join("snapshot.100000011.tmp"), b"half").unwrap();
    let data_dir = dir.parent().unwrap().to_path_buf();
    let names: Vec<String> = crate::storage::snapshot_files_in(&data_dir)
        .unwrap()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec![
            "snapshot.100000002",
            "snapshot.100000009",
            "snapshot.100000010"
        ]
    );
    assert!(dir.join("snapshot.100000011.tmp").exists());
}
