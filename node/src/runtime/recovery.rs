//! Start-up recovery: newest valid snapshot + replay of the log after it.
//!
//! A snapshot file holds the session table (id, timeout) and the tree, both
//! at exactly one zxid. Any txn that cannot be decoded, or a gap in the zxid
//! sequence, refuses the start: a node never serves corrupt data.

use crate::core::session::SessionTracker;
use crate::proto::jute::{Reader, Writer};
use crate::state::tree::{DataTree, FrozenTree};
use crate::state::txn::{Txn, TxnBody};
use crate::storage::Storage;
use crate::types::{SessionId, Zxid};

/// Magic of zabkeeper's snapshot body ("ZKSS").
const SNAPSHOT_MAGIC: i32 = 0x5a4b_5353;
const SNAPSHOT_VERSION: i32 = 1;

/// What a node starts from.
pub struct Recovered {
    pub tree: DataTree,
    /// Live sessions and their timeouts.
    pub sessions: Vec<(SessionId, i32)>,
    /// The last zxid in the log (>= the tree's).
    pub last_logged: Zxid,
    /// The newest txns replayed (at most the `log_tail` asked for), in zxid order, for
    /// ZAB's DIFF.
    pub log_tail: Vec<(Zxid, bytes::Bytes)>,
    /// The zxid just before `log_tail[0]` (the last logged zxid if the tail is empty).
    pub log_tail_base: Zxid,
    /// The zxid of the snapshot the tree was loaded from, if any.
    pub snapshot_zxid: Option<Zxid>,
}

/// Serializes the session table and the tree (both at the tree's zxid).
pub fn encode_snapshot(tree: &DataTree, sessions: &SessionTracker) -> Vec<u8> {
    encode_frozen(&tree.freeze(), &sessions.timeouts())
}

/// Serializes a frozen tree and the session table taken at the same zxid.
///
/// The tree is serialized once, straight into the snapshot's buffer (its jute length is
/// patched in after it): a snapshot costs one serialized copy of the tree, not two.
pub fn encode_frozen(tree: &FrozenTree, sessions: &[(SessionId, i32)]) -> Vec<u8> {
    let mut w = Writer::with_capacity(tree.serialized_capacity() + 64 + sessions.len() * 12);
    w.write_int(SNAPSHOT_MAGIC);
    w.write_int(SNAPSHOT_VERSION);
    w.write_vec(sessions, |w, (id, to)| {
        w.write_long(*id);
        w.write_int(*to);
    });
    let len_at = w.len();
    w.write_int(0);
    tree.serialize_into(&mut w);
    let len = w.len() - len_at - 4;
    w.patch_int(len_at, len as i32);
    Vec::from(w.into_inner())
}

/// Parses a snapshot written by [`encode_snapshot`].
pub fn decode_snapshot(bytes: &[u8]) -> Result<(DataTree, Vec<(SessionId, i32)>), String> {
    let mut r = Reader::new(bytes);
    let magic = r.read_int().map_err(|e| e.to_string())?;
    if magic != SNAPSHOT_MAGIC {
        return Err(format!("bad snapshot magic 0x{magic:x}"));
    }
    let version = r.read_int().map_err(|e| e.to_string())?;
    if version != SNAPSHOT_VERSION {
        return Err(format!("unsupported snapshot version {version}"));
    }
    let sessions = r
        .read_vec(12, |r| Ok((r.read_long()?, r.read_int()?)))
        .map_err(|e| e.to_string())?;
    let tree_bytes = r.read_buffer().map_err(|e| e.to_string())?;
    let tree = DataTree::deserialize_snapshot(tree_bytes).map_err(|e| e.to_string())?;
    Ok((tree, sessions))
}

/// Replays one logged txn: into the session table (a session is created or closed) and
/// into the tree. A txn that fails (a NodeExists a fuzzy ZooKeeper snapshot already
/// holds) leaves the tree as it was, as ZooKeeper's own replay does.
pub fn replay(
    tree: &mut DataTree,
    sessions: &mut std::collections::BTreeMap<SessionId, i32>,
    txn: &Txn,
) {
    match &txn.body {
        TxnBody::CreateSession { timeout_ms } => {
            sessions.insert(txn.session, *timeout_ms);
        }
        TxnBody::CloseSession { .. } => {
            sessions.remove(&txn.session);
        }
        _ => {}
    }
    tree.apply(txn);
}

/// Rebuilds the tree and sessions from storage.
pub fn recover(storage: &mut dyn Storage) -> Result<Recovered, String> {
    recover_keeping(storage, crate::core::DEFAULT_COMMITTED_LOG_WINDOW)
}

/// [`recover`], keeping the newest `log_tail` txns for ZAB's committed-log window
/// (`commitLogCount`).
pub fn recover_keeping(storage: &mut dyn Storage, log_tail: usize) -> Result<Recovered, String> {
    let rec = storage.recover().map_err(|e| e.to_string())?;
    let snapshot_zxid = rec.snapshot.as_ref().map(|(zxid, _)| *zxid);
    let (mut tree, sessions) = match rec.snapshot {
        Some((zxid, bytes)) => {
            let (tree, sessions) = decode_snapshot(&bytes)
                .map_err(|e| format!("snapshot 0x{zxid:x} is unreadable: {e}"))?;
            if tree.last_processed_zxid() != zxid {
                return Err(format!(
                    "snapshot named 0x{zxid:x} holds the tree at 0x{:x}",
                    tree.last_processed_zxid()
                ));
            }
            (tree, sessions)
        }
        None => (DataTree::new(), Vec::new()),
    };
    let mut table: std::collections::BTreeMap<SessionId, i32> = sessions.into_iter().collect();
    let mut last = tree.last_processed_zxid();
    let mut tail: std::collections::VecDeque<(Zxid, bytes::Bytes)> = Default::default();
    let mut base = last;
    for (zxid, bytes) in rec.txns {
        if zxid <= tree.last_processed_zxid() {
            continue;
        }
        let txn = Txn::decode(&bytes)
            .map_err(|e| format!("txn 0x{zxid:x} in the log is unreadable: {e}"))?;
        if txn.zxid != zxid {
            return Err(format!("log record 0x{zxid:x} holds txn 0x{:x}", txn.zxid));
        }
        replay(&mut tree, &mut table, &txn);
        last = zxid;
        tail.push_back((zxid, bytes::Bytes::from(bytes)));
        if tail.len() > log_tail {
            if let Some((z, _)) = tail.pop_front() {
                base = z;
            }
        }
    }
    tracing::info!(
        "recovered zxid 0x{last:x}: {} znodes, {} sessions",
        tree.node_count(),
        table.len()
    );
    Ok(Recovered {
        tree,
        sessions: table.into_iter().collect(),
        last_logged: last,
        log_tail_base: if tail.is_empty() { last } else { base },
        log_tail: tail.into(),
        snapshot_zxid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::txn::TxnBody;
    use crate::types::Acl;

    #[test]
    fn a_snapshot_frames_the_tree_as_one_jute_buffer() {
        let mut tree = DataTree::new();
        for (i, path) in ["/a", "/a/b", "/c"].into_iter().enumerate() {
            tree.apply(&Txn {
                zxid: 1 + i as i64,
                session: 0,
                cxid: 0,
                time: 0,
                body: TxnBody::Create {
                    path: path.into(),
                    data: Some(vec![b'x'; 10 * i]),
                    acl: Acl::open_unsafe(),
                    ephemeral_owner: 0,
                    parent_cversion: -1,
                },
            });
        }
        let sessions = [(0x1_0000_0000_0001, 4000), (0x1_0000_0000_0002, 6000)];
        let bytes = encode_frozen(&tree.freeze(), &sessions);
        // The frame as it was built before the tree went straight into it.
        let mut w = Writer::new();
        w.write_int(SNAPSHOT_MAGIC);
        w.write_int(SNAPSHOT_VERSION);
        w.write_vec(&sessions, |w, (id, to)| {
            w.write_long(*id);
            w.write_int(*to);
        });
        w.write_buffer(&tree.serialize_snapshot());
        assert_eq!(bytes, w.as_slice());
        let (back, back_sessions) = decode_snapshot(&bytes).unwrap();
        assert_eq!(back, tree);
        assert_eq!(back_sessions, sessions);
    }
}
