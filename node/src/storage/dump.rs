//! Operator tools: print a log file's records (`zabkeeper dump-log FILE`) and a snapshot's
//! header (`zabkeeper dump-snapshot FILE`). They read any file, valid or not, and say where
//! it stops being valid.

use std::io::Write;
use std::path::Path;

use super::format::{self, LogTail};
use super::fs::Fs;
use super::{StorageError, ZxidHex};
use crate::types::{zxid_counter, zxid_epoch};

/// What [`dump_log`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDumpSummary {
    /// Valid records printed.
    pub records: usize,
    /// Whether the file ends cleanly (end of file or zero-filled preallocation).
    pub clean: bool,
}

fn out_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |e| StorageError::io("write output for", path, e)
}

/// Prints every record of the log file at `path`, one line each, with `decode` rendering
/// the txn bytes; then how the file ends (clean, torn tail, or corruption with the offset).
pub fn dump_log<F: Fs>(
    fs: &F,
    path: &Path,
    out: &mut dyn Write,
    decode: &dyn Fn(&[u8]) -> String,
) -> Result<LogDumpSummary, StorageError> {
    let data = fs
        .read(path)
        .map_err(|e| StorageError::io("read", path, e))?;
    let oe = || out_err(path);
    writeln!(out, "log file {} ({} bytes)", path.display(), data.len()).map_err(oe())?;
    let header = match format::check_log_header(&data) {
        Ok(h) => h,
        Err(reason) => {
            writeln!(out, "bad file header at offset 0: {reason}").map_err(oe())?;
            return Ok(LogDumpSummary {
                records: 0,
                clean: false,
            });
        }
    };
    writeln!(
        out,
        "header: magic {} format version {} follows zxid {}{}",
        String::from_utf8_lossy(&format::LOG_MAGIC),
        format::FORMAT_VERSION,
        ZxidHex(header.prev_zxid),
        if header.prev_zxid == 0 {
            " (starts the history)"
        } else {
            ""
        }
    )
    .map_err(oe())?;
    let scan = format::scan_log(&data);
    for r in &scan.records {
        writeln!(
            out,
            "zxid {} (epoch {} counter {}) offset {} len {}: {}",
            ZxidHex(r.zxid),
            zxid_epoch(r.zxid),
            zxid_counter(r.zxid),
            r.offset,
            r.len,
            decode(r.payload(&data))
        )
        .map_err(oe())?;
    }
    let clean = match &scan.tail {
        LogTail::Clean => {
            writeln!(
                out,
                "end of records at offset {} ({} zero bytes of preallocation follow)",
                scan.end,
                data.len() as u64 - scan.end
            )
            .map_err(oe())?;
            true
        }
        LogTail::Garbage {
            offset,
            reason,
            valid_record_after,
        } => {
            match valid_record_after {
                Some(p) => writeln!(
                    out,
                    "CORRUPT at offset {offset}: {reason}; a valid record follows at offset {p}"
                ),
                None => writeln!(
                    out,
                    "invalid tail at offset {offset}: {reason} (a torn write if this is the last log)"
                ),
            }
            .map_err(oe())?;
            false
        }
    };
    writeln!(out, "{} txns", scan.records.len()).map_err(oe())?;
    Ok(LogDumpSummary {
        records: scan.records.len(),
        clean,
    })
}

/// Prints the header of the snapshot file at `path` and whether the whole file is valid
/// (length, CRC, trailer). Returns whether it is valid.
pub fn dump_snapshot_header<F: Fs>(
    fs: &F,
    path: &Path,
    out: &mut dyn Write,
) -> Result<bool, StorageError> {
    let data = fs
        .read(path)
        .map_err(|e| StorageError::io("read", path, e))?;
    let oe = || out_err(path);
    writeln!(
        out,
        "snapshot file {} ({} bytes)",
        path.display(),
        data.len()
    )
    .map_err(oe())?;
    match format::decode_snapshot_header(&data) {
        Ok(h) => writeln!(
            out,
            "header: format version {} zxid {} (epoch {} counter {}) body {} bytes",
            h.version,
            ZxidHex(h.zxid),
            zxid_epoch(h.zxid),
            zxid_counter(h.zxid),
            h.body_len
        )
        .map_err(oe())?,
        Err(reason) => {
            writeln!(out, "bad header at offset 0: {reason}").map_err(oe())?;
            return Ok(false);
        }
    }
    let name_zxid = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| format::parse_name(n, format::SNAP_PREFIX));
    let valid = match format::decode_snapshot(&data) {
        Ok((zxid, _)) if name_zxid.is_some_and(|n| n != zxid) => {
            writeln!(out, "INVALID: header zxid does not match the file name").map_err(oe())?;
            false
        }
        Ok(_) => {
            writeln!(out, "valid (CRC32C and trailer check out)").map_err(oe())?;
            true
        }
        Err(reason) => {
            writeln!(out, "INVALID: {reason}").map_err(oe())?;
            false
        }
    };
    Ok(valid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{FileStorage, FileStorageOptions, SimFs, Storage};
    use crate::types::make_zxid;

    #[test]
    fn dump_log_prints_records_and_flags_corruption() {
        let fs = SimFs::new(0);
        let mut opts = FileStorageOptions::new("/data", "/data");
        opts.preallocate_bytes = 4096;
        let mut st = FileStorage::open(fs.clone(), opts).unwrap();
        for c in 1..=3 {
            st.append(make_zxid(1, c), format!("txn{c}").as_bytes())
                .unwrap();
        }
        st.fsync().unwrap();
        let log = st.log_files()[0].clone();
        let decode = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut out = Vec::new();
        let summary = dump_log(&fs, &log, &mut out, &decode).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            summary,
            LogDumpSummary {
                records: 3,
                clean: true
            }
        );
        assert!(
            text.contains("zxid 0x100000002 (epoch 1 counter 2) offset 36 len 4: txn2"),
            "{text}"
        );

        // Corrupt the second record's payload: the dump stops there and says a record follows.
        assert!(fs.rot_at(&log, 36 + 16 + 1, 0));
        let mut out = Vec::new();
        let summary = dump_log(&fs, &log, &mut out, &decode).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            summary,
            LogDumpSummary {
                records: 1,
                clean: false
            }
        );
        assert!(text.contains("CORRUPT at offset 36"), "{text}");
    }

    #[test]
    fn dump_snapshot_header_reports_validity() {
        let fs = SimFs::new(0);
        let mut st = FileStorage::open(fs.clone(), FileStorageOptions::new("/d", "/d")).unwrap();
        st.set_current_epoch(2).unwrap();
        st.write_snapshot(make_zxid(2, 5), b"tree").unwrap();
        let snap = st.snapshot_files().unwrap()[0].clone();
        let mut out = Vec::new();
        assert!(dump_snapshot_header(&fs, &snap, &mut out).unwrap());
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("zxid 0x200000005 (epoch 2 counter 5) body 4 bytes"),
            "{text}"
        );
        assert!(fs.rot_at(&snap, 25, 3));
        let mut out = Vec::new();
        assert!(!dump_snapshot_header(&fs, &snap, &mut out).unwrap());
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("INVALID: CRC mismatch"));
    }
}
