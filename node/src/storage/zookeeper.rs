//! Apache ZooKeeper 3.x's on-disk formats, read for `zabkeeper import`: snapshots
//! (`snapshot.<zxid>`: a `FileHeader` "ZKSN", the session table, the ACL cache, every
//! node with its persisted stat, then an Adler32 of all of it) and transaction logs
//! (`log.<zxid>`: a `FileHeader` "ZKLG", then records of Adler32, length, txn bytes and
//! an end-of-record 'B', zero-filled after the last). Pure functions over bytes.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::proto::jute::{JuteError, Reader};
use crate::state::txn::Txn;
use crate::types::{Acl, SessionId, Stat, Zxid};

const SNAP_MAGIC: i32 = 0x5a4b_534e; // "ZKSN"
const LOG_MAGIC: i32 = 0x5a4b_4c47; // "ZKLG"
const END_OF_RECORD: u8 = b'B';

/// A persisted node: path, data (`None`: null), ACL, stat as ZooKeeper stores it.
pub type PersistedNode = (String, Option<Bytes>, Vec<Acl>, Stat);

/// What a ZooKeeper snapshot holds.
#[derive(Debug)]
pub struct ZkSnapshot {
    pub sessions: Vec<(SessionId, i32)>,
    pub nodes: Vec<PersistedNode>,
}

fn invalid(m: impl Into<String>) -> JuteError {
    JuteError::Invalid(m.into())
}

/// Parses a ZooKeeper snapshot file and checks its Adler32.
pub fn parse_snapshot(bytes: &[u8]) -> Result<ZkSnapshot, JuteError> {
    let mut r = Reader::new(bytes);
    if r.read_int()? != SNAP_MAGIC {
        return Err(invalid("not a ZooKeeper snapshot (no ZKSN magic)"));
    }
    let version = r.read_int()?;
    if version != 2 {
        return Err(invalid(format!("snapshot format version {version}")));
    }
    let _dbid = r.read_long()?;
    // Each entry takes at least 12 bytes: refuse counts the input cannot hold.
    let count = bounded_count(&mut r, 12)?;
    let mut sessions = Vec::with_capacity(count);
    for _ in 0..count {
        sessions.push((r.read_long()?, r.read_int()?));
    }
    let acl_count = bounded_count(&mut r, 12)?;
    let mut acls: BTreeMap<i64, Vec<Acl>> = BTreeMap::new();
    for _ in 0..acl_count {
        let index = r.read_long()?;
        acls.insert(index, r.read_acl_vec()?);
    }
    let mut nodes = Vec::new();
    loop {
        let path = r.read_string()?;
        if path == "/" {
            break;
        }
        let data = r.read_buffer_opt()?.map(Bytes::copy_from_slice);
        let acl_index = r.read_long()?;
        let stat = r.read_stat_persisted()?;
        // -1 is ZooKeeper's "open ACL unsafe" shortcut in its ACL cache.
        let acl = match acl_index {
            -1 => Acl::open_unsafe(),
            i => acls
                .get(&i)
                .cloned()
                .ok_or_else(|| invalid(format!("{path:?} names ACL {i}, not in the cache")))?,
        };
        // The root is stored under "".
        let path = if path.is_empty() {
            "/".to_string()
        } else {
            path
        };
        nodes.push((path, data, acl, stat));
    }
    // The checksum covers everything before it; "/" follows it.
    let covered = bytes.len() - r.remaining();
    let checksum = r.read_long()?;
    let mut adler = adler2::Adler32::new();
    adler.write_slice(&bytes[..covered]);
    if i64::from(adler.checksum()) != checksum {
        return Err(invalid("snapshot checksum (Adler32) mismatch"));
    }
    if r.read_string()? != "/" {
        return Err(invalid("snapshot does not end with its checksum and \"/\""));
    }
    Ok(ZkSnapshot { sessions, nodes })
}

/// A snapshot in ZooKeeper's format (`FileSnap.serialize`, without the optional digest
/// sections, which ZooKeeper 3.8 reads as absent): the sessions, an ACL cache holding
/// each distinct ACL once, every node in path order (a parent before its children; the
/// root as ""), the Adler32 of all of it, then "/".
pub fn write_snapshot<'a>(
    sessions: &[(SessionId, i32)],
    nodes: impl Iterator<Item = (&'a str, Option<&'a [u8]>, &'a [Acl], Stat)> + Clone,
) -> Vec<u8> {
    use crate::proto::jute::Writer;
    let mut cache: BTreeMap<AclKey, (i64, &[Acl])> = BTreeMap::new();
    for (_, _, acl, _) in nodes.clone() {
        let key = acl_key(acl);
        let next = cache.len() as i64 + 1;
        cache.entry(key).or_insert((next, acl));
    }
    let mut w = Writer::with_capacity(4096);
    w.write_int(SNAP_MAGIC);
    w.write_int(2);
    w.write_long(-1);
    w.write_int(sessions.len() as i32);
    for (id, timeout) in sessions {
        w.write_long(*id);
        w.write_int(*timeout);
    }
    let mut by_index: Vec<&(i64, &[Acl])> = cache.values().collect();
    by_index.sort_by_key(|(i, _)| *i);
    w.write_int(by_index.len() as i32);
    for (index, acl) in by_index {
        w.write_long(*index);
        w.write_acl_vec(acl);
    }
    for (path, data, acl, s) in nodes {
        w.write_string(if path == "/" { "" } else { path });
        w.write_buffer_opt(data);
        w.write_long(cache[&acl_key(acl)].0);
        w.write_stat_persisted(&s);
    }
    w.write_string("/");
    let mut adler = adler2::Adler32::new();
    adler.write_slice(w.as_slice());
    w.write_long(i64::from(adler.checksum()));
    w.write_string("/");
    w.into_inner().to_vec()
}

/// An ACL list as a map key: (perms, scheme, id) per entry.
type AclKey = Vec<(i32, String, String)>;

fn acl_key(acl: &[Acl]) -> AclKey {
    acl.iter()
        .map(|a| (a.perms, a.id.scheme.clone(), a.id.id.clone()))
        .collect()
}

fn bounded_count(r: &mut Reader<'_>, min_entry: usize) -> Result<usize, JuteError> {
    let n = r.read_int()?;
    if n < 0 || n as usize > r.remaining() / min_entry {
        return Err(invalid(format!("bad count {n}")));
    }
    Ok(n as usize)
}

/// Parses a ZooKeeper transaction log: its txns in file order, each checked against its
/// Adler32. The zero-filled (preallocated) rest of the file ends it; a torn last record
/// (the file ends inside it, as after a crash) ends it too; a bad checksum elsewhere or
/// a missing end-of-record mark is an error.
pub fn parse_log(bytes: &[u8]) -> Result<Vec<Txn>, JuteError> {
    let mut r = Reader::new(bytes);
    if r.read_int()? != LOG_MAGIC {
        return Err(invalid("not a ZooKeeper transaction log (no ZKLG magic)"));
    }
    let version = r.read_int()?;
    if version != 2 {
        return Err(invalid(format!("log format version {version}")));
    }
    let _dbid = r.read_long()?;
    let mut txns = Vec::new();
    while r.remaining() >= 12 {
        let at = bytes.len() - r.remaining();
        let crc = r.read_long()?;
        let len = r.read_int()?;
        if len == 0 && crc == 0 {
            break; // preallocated zeros
        }
        if len < 0 || len as usize + 1 > r.remaining() {
            // The file ends inside this record: a torn tail.
            break;
        }
        let start = bytes.len() - r.remaining();
        let record = &bytes[start..start + len as usize];
        let mut adler = adler2::Adler32::new();
        adler.write_slice(record);
        if i64::from(adler.checksum()) != crc {
            return Err(invalid(format!(
                "log record at byte {at}: checksum mismatch"
            )));
        }
        let txn = Txn::decode_zookeeper(record)
            .map_err(|e| invalid(format!("log record at byte {at}: {e}")))?;
        let mut skip = Reader::new(&bytes[start + len as usize..]);
        if skip.read_byte()? != END_OF_RECORD {
            return Err(invalid(format!(
                "log record at byte {at}: no end-of-record mark"
            )));
        }
        r = Reader::new(&bytes[start + len as usize + 1..]);
        txns.push(txn);
    }
    Ok(txns)
}

/// The zxid in a ZooKeeper file name (`log.1a` or `snapshot.1a`, hex).
pub fn zxid_of_file(name: &str, prefix: &str) -> Option<Zxid> {
    let hex = name.strip_prefix(prefix)?.strip_prefix('.')?;
    i64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::jute::Writer;
    use crate::state::txn::TxnBody;

    fn adler(b: &[u8]) -> i64 {
        let mut a = adler2::Adler32::new();
        a.write_slice(b);
        i64::from(a.checksum())
    }

    /// A snapshot laid out as ZooKeeper's `FileSnap.serialize` writes it.
    fn snapshot() -> Vec<u8> {
        let mut w = Writer::with_capacity(256);
        w.write_int(SNAP_MAGIC);
        w.write_int(2);
        w.write_long(-1);
        w.write_int(1);
        w.write_long(0x100);
        w.write_int(30_000);
        w.write_int(1);
        w.write_long(1);
        w.write_acl_vec(&Acl::open_unsafe());
        for (path, data, acl) in [("", None, 1i64), ("/a", Some(&b"x"[..]), -1)] {
            w.write_string(path);
            w.write_buffer_opt(data);
            w.write_long(acl);
            for v in [1i64, 2, 3, 4] {
                w.write_long(v);
            }
            for v in [0i32, 5, 0] {
                w.write_int(v);
            }
            w.write_long(0);
            w.write_long(6);
        }
        w.write_string("/");
        let body = w.as_slice().to_vec();
        w.write_long(adler(&body));
        w.write_string("/");
        w.into_inner().to_vec()
    }

    #[test]
    fn reads_sessions_nodes_and_acls_and_checks_the_checksum() {
        let bytes = snapshot();
        let s = parse_snapshot(&bytes).unwrap();
        assert_eq!(s.sessions, vec![(0x100, 30_000)]);
        assert_eq!(s.nodes.len(), 2);
        assert_eq!(s.nodes[0].0, "/");
        assert_eq!(s.nodes[0].1, None);
        assert_eq!(s.nodes[1].1.as_deref(), Some(&b"x"[..]));
        assert_eq!(s.nodes[1].3.cversion, 5);
        let mut bad = bytes.clone();
        bad[30] ^= 1;
        assert!(parse_snapshot(&bad).is_err());
        for n in 0..bytes.len() {
            assert!(parse_snapshot(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn a_written_snapshot_reads_back() {
        let stat = Stat {
            czxid: 3,
            cversion: 2,
            ..Stat::default()
        };
        let open = Acl::open_unsafe();
        let nodes = vec![
            ("/", None, &open[..], stat),
            ("/a", Some(&b"x"[..]), &open[..], stat),
        ];
        let bytes = write_snapshot(&[(7, 4000)], nodes.into_iter());
        let s = parse_snapshot(&bytes).unwrap();
        assert_eq!(s.sessions, vec![(7, 4000)]);
        assert_eq!(s.nodes[0].0, "/");
        assert_eq!(s.nodes[1].1.as_deref(), Some(&b"x"[..]));
        assert_eq!(s.nodes[1].3, stat);
    }

    #[test]
    fn reads_log_records_until_the_zeros_and_refuses_bad_ones() {
        let txn = Txn {
            zxid: 7,
            time: 8,
            session: 9,
            cxid: 1,
            body: TxnBody::SetData {
                path: "/a".into(),
                data: Some(b"v".to_vec()),
                version: 2,
            },
        };
        let mut record = txn.encode();
        record.extend_from_slice(&[0; 12]); // ZooKeeper's TxnDigest
        let mut w = Writer::with_capacity(256);
        w.write_int(LOG_MAGIC);
        w.write_int(2);
        w.write_long(0);
        for _ in 0..2 {
            w.write_long(adler(&record));
            w.write_int(record.len() as i32);
            w.write_raw(&record);
            w.write_raw(b"B");
        }
        w.write_raw(&[0; 64]);
        let bytes = w.into_inner().to_vec();
        assert_eq!(parse_log(&bytes).unwrap(), vec![txn.clone(), txn]);
        let mut bad = bytes.clone();
        bad[30] ^= 1;
        assert!(parse_log(&bad).is_err());
        // Torn inside the second record: the first is kept.
        let torn = &bytes[..16 + 12 + record.len() + 1 + 20];
        assert_eq!(parse_log(torn).unwrap().len(), 1);
        assert_eq!(zxid_of_file("log.1a", "log"), Some(0x1a));
        assert_eq!(zxid_of_file("snapshot.zz", "snapshot"), None);
    }
}
