//! On-disk formats: log file header and records, snapshot files, epoch files, file names.
//!
//! All integers are big-endian (as in jute).
//!
//! Log file (`log.<hex zxid of its first txn>`):
//! ```text
//! header:  magic "ZBLG" | version u32 | prev_zxid i64                 (16 bytes)
//!          prev_zxid: the zxid the first record follows (the last zxid the storage held
//!          when the file was created); 0 means the file starts the history
//! record:  len u32 | crc32c u32 | zxid i64 | payload[len]             (16 + len bytes)
//!          crc32c covers len, zxid and payload
//! tail:    zeros (preallocation) up to the end of the file
//! ```
//! Snapshot file (`snapshot.<hex zxid>`):
//! ```text
//! header:  magic "ZBSN" | version u32 | zxid i64 | body_len u64      (24 bytes)
//! body:    body_len bytes
//! trailer: crc32c u32 over header and body | end magic "ZBSE"        (8 bytes)
//! ```

use crate::types::{zxid_epoch, Zxid};

/// Magic at the start of every log file.
pub const LOG_MAGIC: [u8; 4] = *b"ZBLG";
/// Magic at the start of every snapshot file.
pub const SNAP_MAGIC: [u8; 4] = *b"ZBSN";
/// Magic at the end of every snapshot file.
pub const SNAP_END_MAGIC: [u8; 4] = *b"ZBSE";
/// The on-disk format version written and accepted.
pub const FORMAT_VERSION: u32 = 1;
/// Length of a log file header.
pub const LOG_HEADER_LEN: usize = 16;
/// Length of a log record's framing (before the payload).
pub const RECORD_HEADER_LEN: usize = 16;
/// Length of a snapshot header.
pub const SNAP_HEADER_LEN: usize = 24;
/// Length of a snapshot trailer.
pub const SNAP_TRAILER_LEN: usize = 8;
/// The largest txn payload accepted (ZooKeeper's jute.maxbuffer is 1 MiB by default; this
/// leaves ample room while bounding what a corrupt length can make us read).
pub const MAX_TXN_LEN: usize = 64 << 20;

/// Prefix of log file names.
pub const LOG_PREFIX: &str = "log.";
/// Prefix of snapshot file names.
pub const SNAP_PREFIX: &str = "snapshot.";
/// Suffix of files being written before their atomic rename.
pub const TMP_SUFFIX: &str = ".tmp";
/// ZooKeeper's accepted-epoch file.
pub const ACCEPTED_EPOCH_FILE: &str = "acceptedEpoch";
/// ZooKeeper's current-epoch file.
pub const CURRENT_EPOCH_FILE: &str = "currentEpoch";
/// ZooKeeper's marker written before a snapshot whose epoch is ahead of `currentEpoch`
/// (a learner syncing with a new leader); removed once `currentEpoch` is written.
pub const UPDATING_EPOCH_FILE: &str = "updatingEpoch";

/// A log file header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHeader {
    /// The zxid the file's first record follows: the last zxid (txn or snapshot) the
    /// storage held when the file was created. 0: the file starts the history.
    pub prev_zxid: Zxid,
}

/// Encodes a log file header.
pub fn log_header(prev_zxid: Zxid) -> [u8; LOG_HEADER_LEN] {
    let mut h = [0u8; LOG_HEADER_LEN];
    h[..4].copy_from_slice(&LOG_MAGIC);
    h[4..8].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    h[8..16].copy_from_slice(&prev_zxid.to_be_bytes());
    h
}

/// Decodes a log file header; returns why it is bad.
pub fn check_log_header(data: &[u8]) -> Result<LogHeader, String> {
    if data.len() < LOG_HEADER_LEN {
        return Err(format!("file header truncated ({} bytes)", data.len()));
    }
    if data[..4] != LOG_MAGIC {
        return Err(format!("bad magic {:02x?}", &data[..4]));
    }
    let version = u32::from_be_bytes(data[4..8].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    Ok(LogHeader {
        prev_zxid: Zxid::from_be_bytes(data[8..16].try_into().expect("8 bytes")),
    })
}

/// Whether a log file's first bytes are what a crash while writing its header leaves: a
/// prefix of the magic and version, then zeros (preallocation) or the end of the file.
/// A foreign file (another magic, e.g. a ZooKeeper log) is not torn.
pub fn is_torn_log_header(data: &[u8]) -> bool {
    let head = &data[..data.len().min(LOG_HEADER_LEN)];
    let expected = log_header(0);
    let matching = head
        .iter()
        .zip(&expected[..8])
        .take_while(|(a, b)| a == b)
        .count();
    head[matching..].iter().all(|&b| b == 0)
}

fn record_crc(len: u32, zxid: Zxid, payload: &[u8]) -> u32 {
    let mut c = crc32c::crc32c(&len.to_be_bytes());
    c = crc32c::crc32c_append(c, &zxid.to_be_bytes());
    crc32c::crc32c_append(c, payload)
}

/// Appends one framed record to `out`. The caller checks `payload.len() <= MAX_TXN_LEN`.
pub fn encode_record(out: &mut Vec<u8>, zxid: Zxid, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&record_crc(len, zxid, payload).to_be_bytes());
    out.extend_from_slice(&zxid.to_be_bytes());
    out.extend_from_slice(payload);
}

/// A record found in a log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef {
    /// Offset of the record's framing in the file.
    pub offset: u64,
    /// Its zxid.
    pub zxid: Zxid,
    /// Length of its payload.
    pub len: usize,
}

impl RecordRef {
    /// Offset just past the record.
    pub fn end(&self) -> u64 {
        self.offset + (RECORD_HEADER_LEN + self.len) as u64
    }

    /// The payload within the file's bytes.
    pub fn payload<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        let start = self.offset as usize + RECORD_HEADER_LEN;
        &data[start..start + self.len]
    }
}

/// Decodes the record at `offset`, or says why there is none.
pub fn decode_record(data: &[u8], offset: usize) -> Result<RecordRef, String> {
    let Some(head) = data.get(offset..offset + RECORD_HEADER_LEN) else {
        return Err(format!(
            "record header truncated ({} bytes left)",
            data.len().saturating_sub(offset)
        ));
    };
    let len = u32::from_be_bytes(head[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_be_bytes(head[4..8].try_into().expect("4 bytes"));
    let zxid = Zxid::from_be_bytes(head[8..16].try_into().expect("8 bytes"));
    if len as usize > MAX_TXN_LEN {
        return Err(format!("record length {len} exceeds {MAX_TXN_LEN}"));
    }
    let start = offset + RECORD_HEADER_LEN;
    let Some(payload) = data.get(start..start + len as usize) else {
        return Err(format!(
            "record of {len} bytes truncated ({} bytes left)",
            data.len() - start
        ));
    };
    let actual = record_crc(len, zxid, payload);
    if actual != crc {
        return Err(format!(
            "CRC mismatch (stored {crc:08x}, computed {actual:08x})"
        ));
    }
    Ok(RecordRef {
        offset: offset as u64,
        zxid,
        len: len as usize,
    })
}

/// How a log file's records end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTail {
    /// End of file, or only zeros (preallocation) after the last record.
    Clean,
    /// Bytes at `offset` are not a valid record and not zeros.
    Garbage {
        /// Where the bad bytes start.
        offset: u64,
        /// Why they are not a record.
        reason: String,
        /// Offset of a valid record (with a zxid above the last good one) found after the
        /// garbage: then this is corruption, not a torn tail. Left out when the garbage is
        /// space never written back (a zero record header whose zeros reach a sector
        /// boundary or the next valid record).
        valid_record_after: Option<u64>,
    },
}

/// The result of scanning one log file's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogScan {
    /// The valid records, in file order, up to the first invalid one.
    pub records: Vec<RecordRef>,
    /// Offset just past the last valid record (or the header).
    pub end: u64,
    /// What follows.
    pub tail: LogTail,
}

/// Scans a log file's bytes (header already checked): every record up to the first bad
/// one, then whether the rest is a clean (zero) tail or garbage, and if garbage, whether a
/// valid record follows it.
///
/// Records must have increasing zxids; a valid record whose zxid does not increase is
/// reported as garbage with `valid_record_after` pointing at it (it cannot be a torn tail).
pub fn scan_log(data: &[u8]) -> LogScan {
    let mut records = Vec::new();
    let mut offset = LOG_HEADER_LEN;
    let mut last_zxid: Option<Zxid> = None;
    loop {
        if data[offset.min(data.len())..].iter().all(|&b| b == 0) {
            return LogScan {
                records,
                end: offset as u64,
                tail: LogTail::Clean,
            };
        }
        match decode_record(data, offset) {
            Ok(rec) if increases(last_zxid, rec.zxid) => {
                last_zxid = Some(rec.zxid);
                offset = rec.end() as usize;
                records.push(rec);
            }
            Ok(rec) => {
                return LogScan {
                    records,
                    end: offset as u64,
                    tail: LogTail::Garbage {
                        offset: offset as u64,
                        reason: format!(
                            "zxid 0x{:x} does not increase (previous 0x{:x})",
                            rec.zxid,
                            last_zxid.unwrap_or(0)
                        ),
                        valid_record_after: Some(offset as u64),
                    },
                };
            }
            Err(reason) => {
                let head = &data[offset..(offset + RECORD_HEADER_LEN).min(data.len())];
                let next = find_valid_record(data, offset + 1, last_zxid);
                let (reason, valid_record_after) =
                    if head.iter().all(|&b| b == 0) && unwritten_hole(data, offset, next) {
                        // A record header that was never written: the page cache wrote later
                        // pages back before this one, which no fsync can have covered (an fsync
                        // persists every earlier write too). Whatever follows was never synced.
                        (
                            "zero bytes where a record should start, then data: unsynced writes \
                         persisted out of order"
                                .to_string(),
                            None,
                        )
                    } else {
                        (reason, next)
                    };
                return LogScan {
                    records,
                    end: offset as u64,
                    tail: LogTail::Garbage {
                        offset: offset as u64,
                        reason,
                        valid_record_after,
                    },
                };
            }
        }
    }
}

/// The smallest unit a disk writes back: a region the page cache never wrote is made of
/// whole sectors (of at least this size).
const SECTOR_LEN: usize = 512;

/// Whether the zeros at `offset` (a record header reading as zeros) can be space that was
/// never written back, rather than bytes zeroed at rest. Unwritten space is whole sectors,
/// so its zeros reach a sector boundary; or (as `SimFs` models a crash) whole writes, so
/// only zeros lie between it and the next valid record `next`. Sixteen zeros in the middle
/// of a written sector, followed by data, are neither: corruption.
fn unwritten_hole(data: &[u8], offset: usize, next: Option<u64>) -> bool {
    let end = next.map_or(data.len(), |n| n as usize).min(data.len());
    let zeros_end = data[offset..end]
        .iter()
        .position(|&b| b != 0)
        .map_or(end, |p| offset + p);
    let sector_end = (offset / SECTOR_LEN + 1) * SECTOR_LEN;
    zeros_end == end || zeros_end >= sector_end
}

fn increases(last: Option<Zxid>, zxid: Zxid) -> bool {
    match last {
        Some(z) => zxid > z,
        None => true,
    }
}

/// How far above the last good zxid's epoch a record found past garbage may be. Bounds
/// the CRC work of the search (a random header rarely passes) without missing real records:
/// one log never spans that many epochs.
const MAX_EPOCH_JUMP: u32 = 1 << 16;

/// Whether the 16 bytes at `p` could frame a record following `after`: cheap checks on the
/// length and zxid before paying for a CRC over the payload.
fn plausible_header(data: &[u8], p: usize, after: Option<Zxid>) -> bool {
    let Some(head) = data.get(p..p + RECORD_HEADER_LEN) else {
        return false;
    };
    let len = u32::from_be_bytes(head[0..4].try_into().expect("4 bytes")) as usize;
    let zxid = Zxid::from_be_bytes(head[8..16].try_into().expect("8 bytes"));
    let floor = after.unwrap_or(0);
    len <= MAX_TXN_LEN
        && len <= data.len() - p - RECORD_HEADER_LEN
        && zxid > floor
        && zxid_epoch(zxid) <= zxid_epoch(floor).saturating_add(MAX_EPOCH_JUMP)
}

/// The first offset at or after `from` holding a valid record with a zxid above `after`.
pub fn find_valid_record(data: &[u8], from: usize, after: Option<Zxid>) -> Option<u64> {
    let last_nonzero = data.iter().rposition(|&b| b != 0)?;
    (from..=last_nonzero)
        .filter(|&p| plausible_header(data, p, after))
        .find(|&p| {
            // A zero header is never a valid record (its CRC would not be zero).
            matches!(decode_record(data, p), Ok(r) if increases(after, r.zxid))
        })
        .map(|p| p as u64)
}

/// Encodes a whole snapshot file.
pub fn encode_snapshot(zxid: Zxid, body: &[u8]) -> Vec<u8> {
    let (header, trailer) = snapshot_frame(zxid, body);
    let mut out = Vec::with_capacity(SNAP_HEADER_LEN + body.len() + SNAP_TRAILER_LEN);
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out.extend_from_slice(&trailer);
    out
}

/// The header and trailer [`encode_snapshot`] puts around `body`, for writing a large
/// snapshot in place without another copy of it.
pub fn snapshot_frame(zxid: Zxid, body: &[u8]) -> ([u8; SNAP_HEADER_LEN], [u8; SNAP_TRAILER_LEN]) {
    let mut header = [0u8; SNAP_HEADER_LEN];
    header[..4].copy_from_slice(&SNAP_MAGIC);
    header[4..8].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    header[8..16].copy_from_slice(&zxid.to_be_bytes());
    header[16..24].copy_from_slice(&(body.len() as u64).to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header), body);
    let mut trailer = [0u8; SNAP_TRAILER_LEN];
    trailer[..4].copy_from_slice(&crc.to_be_bytes());
    trailer[4..].copy_from_slice(&SNAP_END_MAGIC);
    (header, trailer)
}

/// A snapshot file's header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Format version.
    pub version: u32,
    /// The zxid the snapshot holds the state at.
    pub zxid: Zxid,
    /// Length of the body.
    pub body_len: u64,
}

/// Decodes a snapshot header without checking the body.
pub fn decode_snapshot_header(data: &[u8]) -> Result<SnapshotHeader, String> {
    if data.len() < SNAP_HEADER_LEN {
        return Err(format!("header truncated ({} bytes)", data.len()));
    }
    if data[..4] != SNAP_MAGIC {
        return Err(format!("bad magic {:02x?}", &data[..4]));
    }
    let version = u32::from_be_bytes(data[4..8].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    Ok(SnapshotHeader {
        version,
        zxid: Zxid::from_be_bytes(data[8..16].try_into().expect("8 bytes")),
        body_len: u64::from_be_bytes(data[16..24].try_into().expect("8 bytes")),
    })
}

/// Validates a whole snapshot file: header, length, trailer magic and CRC. Returns the zxid
/// and the body, or why the file is invalid.
pub fn decode_snapshot(data: &[u8]) -> Result<(Zxid, &[u8]), String> {
    let header = decode_snapshot_header(data)?;
    // A header may say any length (found by `make fuzz`: the sum overflowed).
    let expected = ((SNAP_HEADER_LEN + SNAP_TRAILER_LEN) as u64).checked_add(header.body_len);
    if Some(data.len() as u64) != expected {
        let expected = expected.map_or("more than 2^64".to_string(), |e| e.to_string());
        return Err(format!(
            "length {} does not match header (expected {expected})",
            data.len()
        ));
    }
    let trailer = &data[data.len() - SNAP_TRAILER_LEN..];
    if trailer[4..] != SNAP_END_MAGIC {
        return Err(format!("bad end magic {:02x?}", &trailer[4..]));
    }
    let stored = u32::from_be_bytes(trailer[..4].try_into().expect("4 bytes"));
    let covered = &data[..data.len() - SNAP_TRAILER_LEN];
    let actual = crc32c::crc32c(covered);
    if stored != actual {
        return Err(format!(
            "CRC mismatch (stored {stored:08x}, computed {actual:08x})"
        ));
    }
    Ok((header.zxid, &covered[SNAP_HEADER_LEN..]))
}

/// `log.<hex>` for a log whose first txn is `zxid`.
pub fn log_name(zxid: Zxid) -> String {
    format!("{LOG_PREFIX}{:x}", zxid as u64)
}

/// `snapshot.<hex>` for a snapshot at `zxid`.
pub fn snapshot_name(zxid: Zxid) -> String {
    format!("{SNAP_PREFIX}{:x}", zxid as u64)
}

/// The zxid in a file name `<prefix><hex>`, if it is one (temporary files are not).
pub fn parse_name(name: &str, prefix: &str) -> Option<Zxid> {
    let hex = name.strip_prefix(prefix)?;
    if hex.is_empty() || hex.len() > 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(|z| z as Zxid)
}

/// The content of an epoch file (decimal, as ZooKeeper writes it).
pub fn encode_epoch(epoch: u32) -> Vec<u8> {
    format!("{epoch}\n").into_bytes()
}

/// Parses an epoch file's content.
pub fn decode_epoch(data: &[u8]) -> Option<u32> {
    std::str::from_utf8(data).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_snapshot_header_with_any_body_length_is_an_error_not_a_panic() {
        // found by `make fuzz` (storage): the expected length overflowed
        for body_len in [u64::MAX, u64::MAX - 7, 1 << 63] {
            let mut data = encode_snapshot(5, b"body");
            data[16..24].copy_from_slice(&body_len.to_be_bytes());
            let e = decode_snapshot(&data).unwrap_err();
            assert!(e.contains("does not match header"), "{e}");
        }
    }

    fn log_with(records: &[(Zxid, &[u8])], zero_tail: usize) -> Vec<u8> {
        let mut data = log_header(0).to_vec();
        for (z, p) in records {
            encode_record(&mut data, *z, p);
        }
        data.resize(data.len() + zero_tail, 0);
        data
    }

    #[test]
    fn scan_reads_records_and_clean_zero_tail() {
        let data = log_with(&[(1, b"a"), (2, b""), (3, b"ccc")], 100);
        let scan = scan_log(&data);
        assert_eq!(scan.tail, LogTail::Clean);
        let zxids: Vec<_> = scan.records.iter().map(|r| r.zxid).collect();
        assert_eq!(zxids, vec![1, 2, 3]);
        assert_eq!(scan.records[2].payload(&data), b"ccc");
        assert_eq!(scan.end as usize, data.len() - 100);
    }

    #[test]
    fn torn_last_record_is_garbage_without_valid_record_after() {
        let full = log_with(&[(1, b"aaaa"), (2, b"bbbbbbbb")], 0);
        let mut data = full[..full.len() - 3].to_vec();
        data.resize(data.len() + 50, 0);
        let scan = scan_log(&data);
        assert_eq!(scan.records.len(), 1);
        match scan.tail {
            LogTail::Garbage {
                offset,
                valid_record_after,
                ..
            } => {
                assert_eq!(offset, scan.records[0].end());
                assert_eq!(valid_record_after, None);
            }
            LogTail::Clean => panic!("torn record not detected"),
        }
    }

    #[test]
    fn flipped_byte_mid_log_is_followed_by_a_valid_record() {
        let mut data = log_with(&[(1, b"aaaa"), (2, b"bbbb"), (3, b"cccc")], 0);
        let second = LOG_HEADER_LEN + RECORD_HEADER_LEN + 4;
        data[second + RECORD_HEADER_LEN + 1] ^= 0x40;
        let scan = scan_log(&data);
        assert_eq!(scan.records.len(), 1);
        let third = second + RECORD_HEADER_LEN + 4;
        assert!(matches!(
            scan.tail,
            LogTail::Garbage { valid_record_after: Some(p), .. } if p == third as u64
        ));
    }

    #[test]
    fn zero_hole_then_records_is_an_unsynced_tail() {
        // Out-of-order writeback: record 2's header never reached the disk, record 3 did.
        let mut data = log_with(&[(1, b"aaaa"), (2, b"bbbb"), (3, b"cccc")], 10);
        let second = LOG_HEADER_LEN + RECORD_HEADER_LEN + 4;
        data[second..second + RECORD_HEADER_LEN + 4].fill(0);
        let scan = scan_log(&data);
        assert_eq!(scan.records.len(), 1);
        assert!(matches!(
            scan.tail,
            LogTail::Garbage { offset, valid_record_after: None, .. } if offset == second as u64
        ));
    }

    #[test]
    fn zeroed_header_inside_written_data_is_corruption() {
        // Bit rot at rest: record 2's header reads as zeros, its payload and record 3 are
        // intact. No writeback order leaves 16 zeros mid-sector, so record 3 (which may
        // have been acknowledged) must not be dropped as a torn tail.
        let mut data = log_with(&[(1, b"aaaa"), (2, b"bbbbbbbb"), (3, b"cccc")], 10);
        let second = LOG_HEADER_LEN + RECORD_HEADER_LEN + 4;
        let third = second + RECORD_HEADER_LEN + 8;
        data[second..second + RECORD_HEADER_LEN].fill(0);
        let scan = scan_log(&data);
        assert_eq!(scan.records.len(), 1);
        assert!(matches!(
            scan.tail,
            LogTail::Garbage { offset, valid_record_after: Some(after), .. }
                if offset == second as u64 && after == third as u64
        ));
    }

    #[test]
    fn unwritten_sector_then_records_is_an_unsynced_tail() {
        // Page-cache writeback out of order: the sector holding record 2's header was
        // never written (zeros to the sector's end), a later sector holding the rest of
        // record 2 and record 3 was.
        let mut data = log_with(&[(1, b"aaaa"), (2, &[7u8; 600]), (3, b"cccc")], 10);
        let second = LOG_HEADER_LEN + RECORD_HEADER_LEN + 4;
        data[second..SECTOR_LEN].fill(0);
        let scan = scan_log(&data);
        assert_eq!(scan.records.len(), 1);
        assert!(matches!(
            scan.tail,
            LogTail::Garbage { offset, valid_record_after: None, .. } if offset == second as u64
        ));
    }

    #[test]
    fn search_past_garbage_stays_cheap() {
        // 4 MiB of pseudo-random bytes after a bad record: the search must not run a CRC
        // over megabytes at every offset.
        let mut data = log_with(&[(1, b"a")], 0);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        data.extend((0..4 << 20).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        }));
        let scan = scan_log(&data);
        assert_eq!(scan.records.len(), 1);
        assert!(matches!(
            scan.tail,
            LogTail::Garbage {
                valid_record_after: None,
                ..
            }
        ));
    }

    #[test]
    fn non_increasing_zxid_is_not_a_tail() {
        let data = log_with(&[(5, b"a"), (4, b"b")], 0);
        let scan = scan_log(&data);
        assert!(matches!(
            scan.tail,
            LogTail::Garbage {
                valid_record_after: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn snapshot_round_trip_and_corruption() {
        let file = encode_snapshot(0x1_0000_0007, b"tree bytes");
        assert_eq!(
            decode_snapshot(&file).unwrap(),
            (0x1_0000_0007, &b"tree bytes"[..])
        );
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 1;
            assert!(decode_snapshot(&bad).is_err(), "flip at {i} not detected");
        }
        assert!(decode_snapshot(&file[..file.len() - 1]).is_err());
    }

    #[test]
    fn torn_log_headers() {
        let h = log_header(0x1_0000_0003);
        assert!(is_torn_log_header(&[]));
        assert!(is_torn_log_header(&h[..3]));
        assert!(is_torn_log_header(&[&h[..6], &[0u8; 30][..]].concat()));
        assert!(is_torn_log_header(&[0u8; 64]));
        assert!(!is_torn_log_header(b"ZKLG\0\0\0\x02\0\0\0\0\0\0\0\0"));
        assert!(!is_torn_log_header(&[&h[..2], b"x"].concat()));
    }

    #[test]
    fn names() {
        assert_eq!(log_name(0x1_0000_0001), "log.100000001");
        assert_eq!(snapshot_name(0), "snapshot.0");
        assert_eq!(parse_name("log.100000001", LOG_PREFIX), Some(0x1_0000_0001));
        assert_eq!(parse_name("snapshot.a.tmp", SNAP_PREFIX), None);
        assert_eq!(parse_name("log.", LOG_PREFIX), None);
        assert_eq!(decode_epoch(b"12\n"), Some(12));
        assert_eq!(decode_epoch(b"x"), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = check_log_header(&data);
            let _ = is_torn_log_header(&data);
            let scan = scan_log(&[&log_header(0)[..], &data].concat());
            prop_assert!(scan.end as usize <= data.len() + LOG_HEADER_LEN);
            let _ = decode_snapshot(&data);
            let _ = decode_epoch(&data);
        }

        #[test]
        fn any_single_bit_flip_in_records_is_detected(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..6),
            pick in any::<usize>(),
            bit in 0u8..8,
        ) {
            let recs: Vec<(Zxid, &[u8])> = payloads
                .iter()
                .enumerate()
                .map(|(i, p)| (i as Zxid + 1, p.as_slice()))
                .collect();
            let clean = log_with(&recs, 0);
            let i = LOG_HEADER_LEN + pick % (clean.len() - LOG_HEADER_LEN);
            let mut data = clean.clone();
            data[i] ^= 1 << bit;
            let scan = scan_log(&data);
            // The flip never yields a clean log with all records intact.
            prop_assert!(scan.tail != LogTail::Clean || scan.records.len() < recs.len());
            // Every record reported is one that was written.
            for r in &scan.records {
                let idx = (r.zxid - 1) as usize;
                prop_assert_eq!(r.payload(&data), recs[idx].1);
            }
        }
    }
}
