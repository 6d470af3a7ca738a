//! The tree's snapshot format: magic `ZKTS`, version, last processed zxid,
//! every node in path order, CRC32C; and the frozen copy it is written from.

use super::*;
use crate::proto::jute::{JuteError, Reader, Writer};
use crate::state::path::validate_path;

const SNAPSHOT_MAGIC: &[u8; 4] = b"ZKTS";
const SNAPSHOT_VERSION: i32 = 1;

/// A snapshot that cannot be loaded, and why.
fn invalid(why: &str) -> JuteError {
    JuteError::Invalid(format!("snapshot: {why}"))
}

/// The tree frozen at one zxid ([`DataTree::freeze`]): it shares structure
/// with the live tree, is cheap to take and to send to another thread, and
/// never changes. A snapshot serialized from it holds exactly one zxid.
#[derive(Clone, Debug)]
pub struct FrozenTree {
    nodes: NodeMap,
    last_processed_zxid: Zxid,
    data_size: i64,
}

impl FrozenTree {
    /// The zxid of the last txn the frozen tree holds.
    pub fn last_processed_zxid(&self) -> Zxid {
        self.last_processed_zxid
    }

    /// The number of znodes, the root included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Serializes the frozen tree exactly as [`DataTree::serialize_snapshot`]
    /// did when it was frozen.
    pub fn serialize_snapshot(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.serialized_capacity());
        self.serialize_into(&mut w);
        Vec::from(w.into_inner())
    }

    /// About how many bytes [`FrozenTree::serialize_snapshot`] makes (room to reserve).
    pub fn serialized_capacity(&self) -> usize {
        64 + self.data_size.max(0) as usize * 2
    }

    /// Appends what [`FrozenTree::serialize_snapshot`] returns to `w` (its checksum
    /// covers only what this appends), so that a caller framing the tree writes it
    /// once, not into a buffer of its own and then again into the frame.
    pub fn serialize_into(&self, w: &mut Writer) {
        let start = w.len();
        w.write_raw(SNAPSHOT_MAGIC);
        w.write_int(SNAPSHOT_VERSION);
        w.write_long(self.last_processed_zxid);
        w.write_int(self.nodes.len() as i32);
        for (p, n) in &self.nodes {
            w.write_string(p);
            w.write_buffer_opt(n.data_opt().map(|d| d.as_ref()));
            w.write_acl_vec(&n.acl);
            w.write_stat_persisted(&n.stat);
        }
        let crc = crc32c::crc32c(&w.as_slice()[start..]);
        w.write_int(crc as i32);
    }
}

impl DataTree {
    /// Serializes the whole tree: magic `ZKTS`, version, last processed
    /// zxid, every node (path, data, ACL, persisted stat) in path order, and
    /// a CRC32C of everything before it. Children, ephemerals, containers
    /// and TTL sets are rebuilt from the nodes on load.
    pub fn serialize_snapshot(&self) -> Vec<u8> {
        self.freeze().serialize_snapshot()
    }

    /// The tree as it is now, in O(1): later changes to this tree do not
    /// show in the copy (see the module docs). What a snapshot is taken from.
    pub fn freeze(&self) -> FrozenTree {
        FrozenTree {
            nodes: self.nodes.clone(),
            last_processed_zxid: self.last_processed_zxid,
            data_size: self.data_size,
        }
    }

    /// Loads what [`DataTree::serialize_snapshot`] wrote. Checks the magic,
    /// version and checksum, that every path is valid and unique, that every
    /// parent exists, and that ZooKeeper's own nodes are present.
    pub fn deserialize_snapshot(bytes: &[u8]) -> Result<DataTree, JuteError> {
        if bytes.len() < 8 || &bytes[..4] != SNAPSHOT_MAGIC {
            return Err(invalid("bad magic"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let crc = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c::crc32c(body) != crc {
            return Err(invalid("checksum mismatch"));
        }
        let mut r = Reader::new(&body[4..]);
        let version = r.read_int()?;
        if version != SNAPSHOT_VERSION {
            return Err(invalid(&format!("unsupported version {version}")));
        }
        let last_zxid = r.read_long()?;
        let count = r.read_int()?;
        // A node takes at least 72 bytes (three lengths, six longs, three
        // ints): reject counts the input cannot hold before allocating.
        if count < 0 || count as usize > r.remaining() / 72 {
            return Err(invalid("bad node count"));
        }
        // Nodes are built as they are read (no intermediate list of records), each ACL
        // list once: a million nodes hold a handful of ACLs.
        let mut nodes = Vec::with_capacity(count as usize);
        let mut acls = AclCache::default();
        for _ in 0..count {
            let path = r.read_string()?;
            let data = r.read_buffer_opt()?.map(Bytes::copy_from_slice);
            let acl = acls.intern(&r.read_acl_vec()?);
            let stat = r.read_stat_persisted()?;
            nodes.push((path, DataNode::new(data, acl, stat)));
        }
        if !r.is_empty() {
            return Err(invalid("trailing bytes"));
        }
        DataTree::from_node_list(last_zxid, nodes, acls)
    }

    /// A tree from persisted nodes (path, data, ACL, stat as stored: `cversion` the
    /// count of child creates, `ephemeralOwner` encoding containers and TTLs; the
    /// derived `dataLength` and `numChildren` are recomputed), read from a snapshot of
    /// ours or of Apache ZooKeeper: every path valid and unique, every parent present,
    /// ZooKeeper's own nodes present.
    pub fn from_persisted<A: AsRef<[Acl]>>(
        last_zxid: Zxid,
        persisted: Vec<(String, Option<Bytes>, A, Stat)>,
    ) -> Result<DataTree, JuteError> {
        let mut acls = AclCache::default();
        let mut nodes: Vec<(String, DataNode)> = Vec::with_capacity(persisted.len());
        for (path, data, acl, stat) in persisted {
            let node = DataNode::new(data, acls.intern(acl.as_ref()), stat);
            nodes.push((path, node));
        }
        DataTree::from_node_list(last_zxid, nodes, acls)
    }

    /// The checks both loaders share, then the tree: valid and unique paths (sorted
    /// first if they are not: an imported ZooKeeper snapshot may not be in path order),
    /// ZooKeeper's own nodes present, every parent present.
    fn from_node_list(
        last_zxid: Zxid,
        mut nodes: Vec<(String, DataNode)>,
        acls: AclCache,
    ) -> Result<DataTree, JuteError> {
        if let Some((path, _)) = nodes.iter().find(|(p, _)| validate_path(p).is_err()) {
            return Err(invalid(&format!("invalid path {path:?}")));
        }
        if !nodes.windows(2).all(|w| w[0].0 < w[1].0) {
            nodes.sort_by(|a, b| a.0.cmp(&b.0));
            if let Some(w) = nodes.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(invalid(&format!("duplicate path {:?}", w[0].0)));
            }
        }
        for p in ["/", PROC_ZOOKEEPER, QUOTA_ZOOKEEPER, CONFIG_ZOOKEEPER] {
            if nodes.binary_search_by(|(q, _)| q.as_str().cmp(p)).is_err() {
                return Err(invalid(&format!("missing {p}")));
            }
        }
        DataTree::from_sorted(nodes, last_zxid, acls).map_err(|e| invalid(&e))
    }
}
