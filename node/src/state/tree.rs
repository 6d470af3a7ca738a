//! The znode tree: ZooKeeper's `DataTree`.
//!
//! Transactions are applied with [`DataTree::apply`], which follows
//! `DataTree.processTxn` rule for rule (stat updates, multi handling,
//! session close) and reports which watches the change triggers. Reads
//! return copies of the data and [`Stat`]s.
//!
//! The tree keeps an incremental digest of its whole content (paths, data,
//! ACLs and stats) so that replicas can be compared cheaply at a zxid.
//!
//! Nodes live in persistent ordered maps (`imbl`): [`DataTree::freeze`] takes
//! an O(1) copy of the tree at its current zxid that shares structure with
//! the live tree, so a snapshot can be serialized and written elsewhere while
//! txns keep applying (copy-on-write: a change after the freeze copies only
//! the few map chunks on its path).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::path::{raw_parent, validate_path};
use super::txn::{EphemeralType, Txn, TxnBody};
use crate::proto::jute::{JuteError, Reader, Writer};
use crate::types::{perms, Acl, ErrorCode, EventType, Id, SessionId, Stat, Zxid};

/// `/zookeeper`, ZooKeeper's own subtree.
pub const PROC_ZOOKEEPER: &str = "/zookeeper";
/// `/zookeeper/quota`.
pub const QUOTA_ZOOKEEPER: &str = "/zookeeper/quota";
/// `/zookeeper/config`, the dynamic configuration node (read-only to clients).
pub const CONFIG_ZOOKEEPER: &str = "/zookeeper/config";

const SNAPSHOT_MAGIC: &[u8; 4] = b"ZKTS";
const SNAPSHOT_VERSION: i32 = 1;

/// Whether `path` is one of the nodes ZooKeeper owns and never lets a
/// client delete (`DataTree.isSpecialPath`).
pub fn is_special_path(path: &str) -> bool {
    matches!(
        path,
        "/" | PROC_ZOOKEEPER | QUOTA_ZOOKEEPER | CONFIG_ZOOKEEPER
    )
}

/// One znode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataNode {
    data: Bytes,
    acl: Vec<Acl>,
    stat: Stat,
    children: ChildSet,
}

/// The path -> node map; cloning it is O(1) (structure is shared until written).
type NodeMap = imbl::OrdMap<String, DataNode>;
/// A node's child names, sorted; cloning it is O(1).
pub type ChildSet = imbl::OrdSet<String>;

impl DataNode {
    fn new(data: Bytes, acl: Vec<Acl>, stat: Stat) -> DataNode {
        let mut n = DataNode {
            data,
            acl,
            stat,
            children: ChildSet::new(),
        };
        n.fix_derived_stat();
        n
    }

    /// The node's data.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The node's ACL.
    pub fn acl(&self) -> &[Acl] {
        &self.acl
    }

    /// The node's stat as stored (`dataLength` and `numChildren` included):
    /// `cversion` counts child creates (it numbers sequential children) and
    /// `ephemeralOwner` encodes containers and TTLs. Clients see
    /// [`DataNode::client_stat`].
    pub fn stat(&self) -> Stat {
        self.stat
    }

    /// The stat a client sees (`DataNode.copyStat`): `cversion` counts every
    /// child change (`2 x creates - numChildren`, i.e. creates plus deletes)
    /// and `ephemeralOwner` is 0 for containers and TTL nodes.
    pub fn client_stat(&self) -> Stat {
        client_stat(self.stat)
    }

    /// The names of the node's children, sorted.
    pub fn children(&self) -> &ChildSet {
        &self.children
    }

    fn fix_derived_stat(&mut self) {
        self.stat.data_length = self.data.len() as i32;
        self.stat.num_children = self.children.len() as i32;
    }
}

/// ZooKeeper's `DataNode.copyStat`: a stored stat as clients see it.
pub fn client_stat(mut stat: Stat) -> Stat {
    stat.cversion = stat
        .cversion
        .wrapping_mul(2)
        .wrapping_sub(stat.num_children);
    if !matches!(
        EphemeralType::of(stat.ephemeral_owner),
        EphemeralType::Normal(_)
    ) {
        stat.ephemeral_owner = 0;
    }
    stat
}

/// A successful operation's result, as the client's response needs it
/// (stats as clients see them: [`client_stat`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// A node was created at `path` (the final, sequence-suffixed name).
    Create {
        path: String,
        stat: Stat,
        /// A container or TTL node (inside a multi ZooKeeper answers these
        /// with their Stat, as create2).
        extended: bool,
    },
    Delete,
    SetData {
        stat: Stat,
    },
    SetAcl {
        stat: Stat,
    },
    Check,
    /// Per-op results of a multi. In a failed multi every entry is an
    /// error: `Err(ErrorCode::Ok)` for ops before the failing one (ZooKeeper
    /// reports `ErrorResult(0)`), the failing op's code, then
    /// `Err(RuntimeInconsistency)`.
    Multi(Vec<Result<OpResult, ErrorCode>>),
    /// A session was created (the tree does not change).
    CreateSession,
    /// A session was closed and its ephemerals deleted.
    CloseSession,
}

/// What applying one txn did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// The operation's result.
    pub result: Result<OpResult, ErrorCode>,
    /// Watch triggers in ZooKeeper's order: `(path, NodeCreated)` then
    /// `(parent, NodeChildrenChanged)` for a create; `(path, NodeDeleted)`
    /// then `(parent, NodeChildrenChanged)` for a delete;
    /// `(path, NodeDataChanged)` for a setData. Feed each to
    /// [`WatchManager::trigger`](super::watch::WatchManager::trigger).
    pub triggers: Vec<(String, EventType)>,
    /// For each entry of `triggers`, the ACL of the node it is about as it
    /// was when the change applied (the deleted node's own ACL for
    /// `NodeDeleted`). ZooKeeper 3.8 delivers a watch event only to
    /// sessions holding READ on that ACL.
    pub trigger_acls: Vec<Vec<Acl>>,
}

/// Collects watch triggers while a txn applies.
#[derive(Default)]
struct Sink {
    triggers: Vec<(String, EventType)>,
    acls: Vec<Vec<Acl>>,
}

impl Sink {
    fn push(&mut self, path: &str, event: EventType, acl: &[Acl]) {
        self.triggers.push((path.to_string(), event));
        self.acls.push(acl.to_vec());
    }
}

/// The znode tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataTree {
    nodes: NodeMap,
    ephemerals: BTreeMap<SessionId, BTreeSet<String>>,
    containers: BTreeSet<String>,
    ttls: BTreeSet<String>,
    last_processed_zxid: Zxid,
    data_size: i64,
    digest: u64,
}

impl Default for DataTree {
    fn default() -> Self {
        DataTree::new()
    }
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
        let mut w = Writer::with_capacity(64 + self.data_size.max(0) as usize * 2);
        w.write_raw(SNAPSHOT_MAGIC);
        w.write_int(SNAPSHOT_VERSION);
        w.write_long(self.last_processed_zxid);
        w.write_int(self.nodes.len() as i32);
        for (p, n) in &self.nodes {
            w.write_string(p);
            w.write_buffer(&n.data);
            w.write_acl_vec(&n.acl);
            let s = &n.stat;
            w.write_long(s.czxid);
            w.write_long(s.mzxid);
            w.write_long(s.ctime);
            w.write_long(s.mtime);
            w.write_int(s.version);
            w.write_int(s.cversion);
            w.write_int(s.aversion);
            w.write_long(s.ephemeral_owner);
            w.write_long(s.pzxid);
        }
        let crc = crc32c::crc32c(w.as_slice());
        w.write_int(crc as i32);
        Vec::from(w.into_inner())
    }
}

fn empty_stat() -> Stat {
    Stat::default()
}

impl DataTree {
    /// A tree holding only `/`, `/zookeeper`, `/zookeeper/quota` and
    /// `/zookeeper/config` (the latter readable by anyone, writable by
    /// no one but super), all with zeroed stats, as ZooKeeper starts.
    pub fn new() -> DataTree {
        let mut nodes = BTreeMap::new();
        let open = Acl::open_unsafe();
        let read_only = vec![Acl {
            perms: perms::READ,
            id: Id::anyone(),
        }];
        // As ZooKeeper's DataTree.addConfigNode: the config node's aversion is -1.
        let config_stat = Stat {
            aversion: -1,
            ..empty_stat()
        };
        for (path, acl, stat) in [
            ("/", open.clone(), empty_stat()),
            (PROC_ZOOKEEPER, open.clone(), empty_stat()),
            (QUOTA_ZOOKEEPER, open, empty_stat()),
            (CONFIG_ZOOKEEPER, read_only, config_stat),
        ] {
            nodes.insert(path.to_string(), DataNode::new(Bytes::new(), acl, stat));
        }
        DataTree::from_nodes(nodes, 0)
    }

    /// Builds a tree from its nodes (child sets are rebuilt from the paths;
    /// stats' derived fields, owner indexes, data size and digest are
    /// recomputed). Every node's parent must be present.
    fn from_nodes(mut nodes: BTreeMap<String, DataNode>, last_processed_zxid: Zxid) -> DataTree {
        let links: Vec<(String, String)> = nodes
            .keys()
            .filter(|p| p.as_str() != "/")
            .filter_map(|p| {
                let parent = raw_parent(p)?;
                let name = &p[p.rfind('/').map_or(0, |i| i + 1)..];
                Some((parent.to_string(), name.to_string()))
            })
            .collect();
        for n in nodes.values_mut() {
            n.children = ChildSet::new();
        }
        for (parent, name) in links {
            if let Some(n) = nodes.get_mut(&parent) {
                n.children.insert(name);
            }
        }
        for n in nodes.values_mut() {
            n.fix_derived_stat();
        }
        let mut t = DataTree {
            nodes: nodes.into_iter().collect(),
            ephemerals: BTreeMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            last_processed_zxid,
            data_size: 0,
            digest: 0,
        };
        let owners: Vec<(String, i64)> = t
            .nodes
            .iter()
            .map(|(p, n)| (p.clone(), n.stat.ephemeral_owner))
            .collect();
        for (p, o) in owners {
            t.register_owner(&p, o);
        }
        t.data_size = t
            .nodes
            .iter()
            .map(|(p, n)| p.len() as i64 + n.data.len() as i64)
            .sum();
        t.digest = t.recompute_digest();
        t
    }

    /// The zxid of the last txn applied (or loaded from a snapshot).
    pub fn last_processed_zxid(&self) -> Zxid {
        self.last_processed_zxid
    }

    /// Sets the last processed zxid, e.g. after replaying a log whose
    /// last txn was already in the snapshot.
    pub fn set_last_processed_zxid(&mut self, zxid: Zxid) {
        self.last_processed_zxid = zxid;
    }

    /// Writes the ensemble's dynamic configuration into `/zookeeper/config`
    /// as ZooKeeper's `ZKDatabase.initConfigInZKDatabase` does on each
    /// server (a local write, not a txn): data, `mzxid` = the config's
    /// version, `mtime` = `time`, version -1. Not part of [`DataTree::digest`],
    /// and fires no watches.
    pub fn set_config_data(&mut self, data: &[u8], config_version: Zxid, time: i64) {
        let _ = self.update(CONFIG_ZOOKEEPER, |n| {
            n.data = Bytes::copy_from_slice(data);
            n.stat.mzxid = config_version;
            n.stat.mtime = time;
            n.stat.version = -1;
        });
    }

    // ---------------------------------------------------------------- reads

    /// The node at `path`.
    pub fn node(&self, path: &str) -> Option<&DataNode> {
        self.nodes.get(path)
    }

    /// The data and stat of a node (`getData`).
    pub fn get_data(&self, path: &str) -> Result<(Bytes, Stat), ErrorCode> {
        let n = self.nodes.get(path).ok_or(ErrorCode::NoNode)?;
        Ok((n.data.clone(), n.client_stat()))
    }

    /// The stat of a node as clients see it, if it exists (`exists`).
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.nodes.get(path).map(|n| n.client_stat())
    }

    /// A node's children, sorted, and its stat (`getChildren2`).
    pub fn get_children(&self, path: &str) -> Result<(Vec<String>, Stat), ErrorCode> {
        let n = self.nodes.get(path).ok_or(ErrorCode::NoNode)?;
        Ok((n.children.iter().cloned().collect(), n.client_stat()))
    }

    /// A node's ACL and stat (`getACL`).
    pub fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), ErrorCode> {
        let n = self.nodes.get(path).ok_or(ErrorCode::NoNode)?;
        Ok((n.acl.clone(), n.client_stat()))
    }

    /// The ephemeral nodes a session owns, sorted.
    pub fn ephemerals(&self, session: SessionId) -> Vec<String> {
        self.ephemerals
            .get(&session)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// A session's ephemeral nodes under `prefix` (`getEphemerals`): all of
    /// them for an empty or `/` prefix, else those whose path starts with
    /// `prefix`, as ZooKeeper's plain string prefix match.
    pub fn ephemerals_under(&self, session: SessionId, prefix: &str) -> Vec<String> {
        let prefix = prefix.trim();
        self.ephemerals(session)
            .into_iter()
            .filter(|p| prefix.is_empty() || prefix == "/" || p.starts_with(prefix))
            .collect()
    }

    /// Every session's ephemeral nodes (sessions without any are absent).
    pub fn all_ephemerals(&self) -> BTreeMap<SessionId, Vec<String>> {
        self.ephemerals
            .iter()
            .filter(|(_, s)| !s.is_empty())
            .map(|(k, s)| (*k, s.iter().cloned().collect()))
            .collect()
    }

    /// The number of ephemeral nodes in the tree.
    pub fn ephemerals_count(&self) -> usize {
        self.ephemerals.values().map(BTreeSet::len).sum()
    }

    /// All container node paths, sorted.
    pub fn containers(&self) -> &BTreeSet<String> {
        &self.containers
    }

    /// All TTL node paths, sorted.
    pub fn ttls(&self) -> &BTreeSet<String> {
        &self.ttls
    }

    /// The number of descendants of `path` (`getAllChildrenNumber`).
    /// For `/` this counts every node but the root, `/zookeeper` included.
    pub fn count_all_children(&self, path: &str) -> Result<i32, ErrorCode> {
        if !self.nodes.contains_key(path) {
            return Err(ErrorCode::NoNode);
        }
        if path == "/" {
            return Ok(self.nodes.len() as i32 - 1);
        }
        let prefix = format!("{path}/");
        let n = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .count();
        Ok(n as i32)
    }

    /// The number of znodes, the root included. (ZooKeeper's `zk_znode_count`
    /// is one more: its node map holds the root twice, as `""` and `/`.)
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Sum over all nodes of path length plus data length, as ZooKeeper's
    /// `approximateDataSize` (path length in bytes rather than UTF-16 units).
    pub fn approximate_data_size(&self) -> i64 {
        self.data_size
    }

    /// A deterministic 64-bit digest of the whole tree: every node's path,
    /// data, ACL and stat. Equal trees have equal digests on every replica
    /// and platform; the order changes were applied in does not matter,
    /// only the resulting content. Maintained incrementally, O(1).
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Recomputes the digest from scratch (for checks and tests).
    pub fn recompute_digest(&self) -> u64 {
        self.nodes
            .iter()
            .fold(0u64, |acc, (p, n)| acc.wrapping_add(node_digest(p, n)))
    }

    /// Containers and TTL nodes due for deletion at `now_ms`, sorted:
    /// containers with no children whose cversion is above 0 (they once had
    /// a child), and TTL nodes with no children not modified for longer
    /// than their TTL (ZooKeeper's `ContainerManager.getCandidates`).
    pub fn expired_containers_and_ttls(&self, now_ms: i64) -> Vec<String> {
        let mut out = BTreeSet::new();
        for p in &self.containers {
            if let Some(n) = self.nodes.get(p) {
                if n.children.is_empty() && n.stat.cversion > 0 {
                    out.insert(p.clone());
                }
            }
        }
        for p in &self.ttls {
            if let Some(n) = self.nodes.get(p) {
                if let EphemeralType::Ttl(ttl) = EphemeralType::of(n.stat.ephemeral_owner) {
                    if n.children.is_empty()
                        && ttl != 0
                        && now_ms.saturating_sub(n.stat.mtime) > ttl
                    {
                        out.insert(p.clone());
                    }
                }
            }
        }
        out.into_iter().collect()
    }

    // ---------------------------------------------------------------- apply

    /// Applies one txn (ZooKeeper's `DataTree.processTxn`). Errors are
    /// results, never panics; the txn's zxid becomes the last processed
    /// zxid if it is higher.
    pub fn apply(&mut self, txn: &Txn) -> ApplyOutcome {
        let mut sink = Sink::default();
        let result = self.apply_body(&txn.body, txn, &mut sink);
        if txn.zxid > self.last_processed_zxid {
            self.last_processed_zxid = txn.zxid;
        }
        ApplyOutcome {
            result,
            triggers: sink.triggers,
            trigger_acls: sink.acls,
        }
    }

    fn apply_body(
        &mut self,
        body: &TxnBody,
        txn: &Txn,
        sink: &mut Sink,
    ) -> Result<OpResult, ErrorCode> {
        match body {
            TxnBody::CreateSession { .. } => Ok(OpResult::CreateSession),
            TxnBody::CloseSession { ephemerals } => {
                self.kill_session(txn.session, txn.zxid, ephemerals, sink);
                Ok(OpResult::CloseSession)
            }
            TxnBody::Create {
                path,
                data,
                acl,
                ephemeral_owner,
                parent_cversion,
            } => {
                let stat = self.create_node(
                    path,
                    Bytes::copy_from_slice(data),
                    acl.clone(),
                    *ephemeral_owner,
                    *parent_cversion,
                    txn,
                    sink,
                )?;
                Ok(OpResult::Create {
                    path: path.clone(),
                    stat: client_stat(stat),
                    extended: matches!(
                        EphemeralType::of(*ephemeral_owner),
                        EphemeralType::Container | EphemeralType::Ttl(_)
                    ),
                })
            }
            TxnBody::Delete { path } => {
                self.delete_node(path, txn.zxid, sink)?;
                Ok(OpResult::Delete)
            }
            TxnBody::SetData {
                path,
                data,
                version,
            } => {
                let stat = self.update(path, |n| {
                    n.data = Bytes::copy_from_slice(data);
                    n.stat.mtime = txn.time;
                    n.stat.mzxid = txn.zxid;
                    n.stat.version = *version;
                })?;
                let acl = self
                    .nodes
                    .get(path)
                    .map(|n| n.acl.clone())
                    .unwrap_or_default();
                sink.push(path, EventType::NodeDataChanged, &acl);
                Ok(OpResult::SetData {
                    stat: client_stat(stat),
                })
            }
            TxnBody::SetAcl { path, acl, version } => {
                let stat = self.update(path, |n| {
                    n.acl = acl.clone();
                    n.stat.aversion = *version;
                })?;
                Ok(OpResult::SetAcl {
                    stat: client_stat(stat),
                })
            }
            TxnBody::Check { .. } => Ok(OpResult::Check),
            TxnBody::Error { err } => Err(*err),
            TxnBody::Multi(ops) => {
                let failed = ops.iter().any(|o| matches!(o, TxnBody::Error { .. }));
                let mut post_failed = false;
                let mut results = Vec::with_capacity(ops.len());
                for op in ops {
                    if let TxnBody::Error { err } = op {
                        post_failed = true;
                        results.push(Err(*err));
                    } else if failed {
                        results.push(Err(if post_failed {
                            ErrorCode::RuntimeInconsistency
                        } else {
                            ErrorCode::Ok
                        }));
                    } else {
                        results.push(self.apply_body(op, txn, sink));
                    }
                }
                Ok(OpResult::Multi(results))
            }
        }
    }

    /// Runs `f` on the node at `path`, keeping the digest, the data size and
    /// the derived stat fields up to date. Returns the node's new stat.
    fn update(&mut self, path: &str, f: impl FnOnce(&mut DataNode)) -> Result<Stat, ErrorCode> {
        let n = self.nodes.get_mut(path).ok_or(ErrorCode::NoNode)?;
        let before = node_digest(path, n);
        let before_len = n.data.len() as i64;
        f(n);
        n.fix_derived_stat();
        self.digest = self
            .digest
            .wrapping_sub(before)
            .wrapping_add(node_digest(path, n));
        self.data_size += n.data.len() as i64 - before_len;
        Ok(n.stat)
    }

    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &mut self,
        path: &str,
        data: Bytes,
        acl: Vec<Acl>,
        ephemeral_owner: i64,
        parent_cversion: i32,
        txn: &Txn,
        sink: &mut Sink,
    ) -> Result<Stat, ErrorCode> {
        // ZooKeeper trusts the leader here; we also refuse names that could
        // not be loaded back from a snapshot.
        validate_path(path)?;
        let parent_path = raw_parent(path).ok_or(ErrorCode::BadArguments)?;
        if !self.nodes.contains_key(parent_path) {
            return Err(ErrorCode::NoNode);
        }
        if self.nodes.contains_key(path) {
            return Err(ErrorCode::NodeExists);
        }
        let child_name = path[path.rfind('/').map_or(0, |i| i + 1)..].to_string();
        let zxid = txn.zxid;
        self.update(parent_path, |p| {
            let cv = if parent_cversion == -1 {
                p.stat.cversion.wrapping_add(1)
            } else {
                parent_cversion
            };
            if cv > p.stat.cversion {
                p.stat.cversion = cv;
                p.stat.pzxid = zxid;
            }
            p.children.insert(child_name);
        })?;
        let stat = Stat {
            czxid: zxid,
            mzxid: zxid,
            ctime: txn.time,
            mtime: txn.time,
            pzxid: zxid,
            ephemeral_owner,
            ..Stat::default()
        };
        let node = DataNode::new(data, acl, stat);
        self.digest = self.digest.wrapping_add(node_digest(path, &node));
        self.data_size += path.len() as i64 + node.data.len() as i64;
        let stat = node.stat;
        sink.push(path, EventType::NodeCreated, &node.acl);
        self.nodes.insert(path.to_string(), node);
        self.register_owner(path, ephemeral_owner);
        let parent_acl = self
            .nodes
            .get(parent_path)
            .map(|n| n.acl.as_slice())
            .unwrap_or_default();
        sink.push(parent_path, EventType::NodeChildrenChanged, parent_acl);
        Ok(stat)
    }

    fn delete_node(&mut self, path: &str, zxid: Zxid, sink: &mut Sink) -> Result<(), ErrorCode> {
        if path == "/" {
            return Err(ErrorCode::BadArguments);
        }
        let parent_path = raw_parent(path).ok_or(ErrorCode::NoNode)?;
        if !self.nodes.contains_key(parent_path) {
            return Err(ErrorCode::NoNode);
        }
        // ZooKeeper does not check this at apply time (prep does); we refuse
        // rather than leave orphaned children.
        if self.nodes.get(path).is_some_and(|n| !n.children.is_empty()) {
            return Err(ErrorCode::NotEmpty);
        }
        let child_name = &path[path.rfind('/').map_or(0, |i| i + 1)..];
        // As ZooKeeper: the parent's pzxid moves even when the child is gone.
        self.update(parent_path, |p| {
            p.children.remove(child_name);
            if zxid > p.stat.pzxid {
                p.stat.pzxid = zxid;
            }
        })?;
        let node = self.nodes.remove(path).ok_or(ErrorCode::NoNode)?;
        self.digest = self.digest.wrapping_sub(node_digest(path, &node));
        self.data_size -= path.len() as i64 + node.data.len() as i64;
        self.unregister_owner(path, node.stat.ephemeral_owner);
        sink.push(path, EventType::NodeDeleted, &node.acl);
        let parent_acl = self
            .nodes
            .get(parent_path)
            .map(|n| n.acl.as_slice())
            .unwrap_or_default();
        sink.push(parent_path, EventType::NodeChildrenChanged, parent_acl);
        Ok(())
    }

    /// `DataTree.killSession`: deletes the listed paths, then whatever
    /// ephemerals the session still owns here. Missing nodes are skipped.
    fn kill_session(&mut self, session: SessionId, zxid: Zxid, listed: &[String], sink: &mut Sink) {
        for p in listed {
            let _ = self.delete_node(p, zxid, sink);
        }
        if let Some(rest) = self.ephemerals.remove(&session) {
            for p in rest {
                let _ = self.delete_node(&p, zxid, sink);
            }
        }
    }

    fn register_owner(&mut self, path: &str, owner: i64) {
        match EphemeralType::of(owner) {
            EphemeralType::Void => {}
            EphemeralType::Container => {
                self.containers.insert(path.to_string());
            }
            EphemeralType::Ttl(_) => {
                self.ttls.insert(path.to_string());
            }
            EphemeralType::Normal(s) => {
                self.ephemerals
                    .entry(s)
                    .or_default()
                    .insert(path.to_string());
            }
        }
    }

    fn unregister_owner(&mut self, path: &str, owner: i64) {
        match EphemeralType::of(owner) {
            EphemeralType::Void => {}
            EphemeralType::Container => {
                self.containers.remove(path);
            }
            EphemeralType::Ttl(_) => {
                self.ttls.remove(path);
            }
            EphemeralType::Normal(s) => {
                if let Some(set) = self.ephemerals.get_mut(&s) {
                    set.remove(path);
                    if set.is_empty() {
                        self.ephemerals.remove(&s);
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------- snapshot

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
        let invalid = |m: &str| JuteError::Invalid(format!("snapshot: {m}"));
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
        let mut nodes = BTreeMap::new();
        for _ in 0..count {
            let path = r.read_string()?;
            let data = Bytes::copy_from_slice(r.read_buffer()?);
            let acl = r.read_acl_vec()?;
            let stat = Stat {
                czxid: r.read_long()?,
                mzxid: r.read_long()?,
                ctime: r.read_long()?,
                mtime: r.read_long()?,
                version: r.read_int()?,
                cversion: r.read_int()?,
                aversion: r.read_int()?,
                ephemeral_owner: r.read_long()?,
                pzxid: r.read_long()?,
                data_length: 0,
                num_children: 0,
            };
            if validate_path(&path).is_err() {
                return Err(invalid(&format!("invalid path {path:?}")));
            }
            if nodes
                .insert(path.clone(), DataNode::new(data, acl, stat))
                .is_some()
            {
                return Err(invalid(&format!("duplicate path {path:?}")));
            }
        }
        if !r.is_empty() {
            return Err(invalid("trailing bytes"));
        }
        for p in ["/", PROC_ZOOKEEPER, QUOTA_ZOOKEEPER, CONFIG_ZOOKEEPER] {
            if !nodes.contains_key(p) {
                return Err(invalid(&format!("missing {p}")));
            }
        }
        for p in nodes.keys() {
            if let Some(parent) = super::path::parent(p) {
                if !nodes.contains_key(parent) {
                    return Err(invalid(&format!("{p:?} has no parent")));
                }
            }
        }
        Ok(DataTree::from_nodes(nodes, last_zxid))
    }

    /// Every path in the tree, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Checks the tree's internal consistency: child sets match the paths,
    /// derived stats, owner indexes, data size and digest are up to date.
    /// Returns a description of the first problem found.
    pub fn check_invariants(&self) -> Result<(), String> {
        let rebuilt = DataTree::from_nodes(
            self.nodes
                .iter()
                .map(|(p, n)| (p.clone(), n.clone()))
                .collect(),
            self.last_processed_zxid,
        );
        for (p, n) in &self.nodes {
            let r = &rebuilt.nodes[p];
            if n.children != r.children {
                return Err(format!(
                    "children of {p} are {:?}, expected {:?}",
                    n.children, r.children
                ));
            }
            if n.stat != r.stat {
                return Err(format!(
                    "stat of {p} is {:?}, expected {:?}",
                    n.stat, r.stat
                ));
            }
            let parent_ok = match super::path::parent(p) {
                None => p == "/",
                Some(q) => self.nodes.contains_key(q),
            };
            if !parent_ok {
                return Err(format!("{p} has no parent"));
            }
        }
        if self.ephemerals != rebuilt.ephemerals {
            return Err("ephemerals index out of date".into());
        }
        if self.containers != rebuilt.containers || self.ttls != rebuilt.ttls {
            return Err("container/ttl index out of date".into());
        }
        if self.data_size != rebuilt.data_size {
            return Err(format!(
                "data size {} != {}",
                self.data_size, rebuilt.data_size
            ));
        }
        if self.digest != rebuilt.digest {
            return Err("digest out of date".into());
        }
        Ok(())
    }
}

/// FNV-1a over a canonical encoding of one node, finished with a
/// SplitMix64 mix so that the wrapping sum over nodes spreads well.
/// `/zookeeper/config` counts as 0: each server writes it locally (as
/// ZooKeeper's digest also leaves it out).
fn node_digest(path: &str, n: &DataNode) -> u64 {
    if path == CONFIG_ZOOKEEPER {
        return 0;
    }
    let mut h = crate::hash::Fnv64::new();
    h.bytes(path.as_bytes());
    h.bytes(&n.data);
    h.u64(n.acl.len() as u64);
    for a in &n.acl {
        h.u64(a.perms as u32 as u64);
        h.bytes(a.id.scheme.as_bytes());
        h.bytes(a.id.id.as_bytes());
    }
    let s = &n.stat;
    for v in [
        s.czxid,
        s.mzxid,
        s.ctime,
        s.mtime,
        s.ephemeral_owner,
        s.pzxid,
    ] {
        h.u64(v as u64);
    }
    for v in [
        s.version,
        s.cversion,
        s.aversion,
        s.data_length,
        s.num_children,
    ] {
        h.u64(v as u32 as u64);
    }
    splitmix64(h.finish())
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::txn::{ttl_ephemeral_owner, CONTAINER_EPHEMERAL_OWNER};

    const T0: i64 = 1_700_000_000_000;

    fn txn(zxid: Zxid, body: TxnBody) -> Txn {
        Txn {
            zxid,
            time: T0 + zxid,
            session: 0x11,
            cxid: zxid as i32,
            body,
        }
    }

    fn create(path: &str, owner: i64, parent_cversion: i32) -> TxnBody {
        TxnBody::Create {
            path: path.into(),
            data: path.as_bytes().to_vec(),
            acl: Acl::open_unsafe(),
            ephemeral_owner: owner,
            parent_cversion,
        }
    }

    fn apply_ok(t: &mut DataTree, zxid: Zxid, body: TxnBody) -> ApplyOutcome {
        let out = t.apply(&txn(zxid, body));
        assert!(out.result.is_ok(), "{out:?}");
        t.check_invariants().unwrap();
        out
    }

    #[test]
    fn starts_like_zookeeper() {
        let t = DataTree::new();
        assert_eq!(
            t.paths().collect::<Vec<_>>(),
            vec!["/", "/zookeeper", "/zookeeper/config", "/zookeeper/quota"]
        );
        assert_eq!(t.get_children("/").unwrap().0, vec!["zookeeper"]);
        assert_eq!(
            t.get_children("/zookeeper").unwrap().0,
            vec!["config", "quota"]
        );
        // As the running ZooKeeper shows it: no creates yet and one child, so
        // cversion 2 x 0 - 1.
        let root = t.stat("/").unwrap();
        assert_eq!(
            root,
            Stat {
                num_children: 1,
                cversion: -1,
                ..Stat::default()
            }
        );
        assert_eq!(
            t.get_acl("/zookeeper/config").unwrap().0[0].perms,
            perms::READ
        );
        assert_eq!(t.count_all_children("/").unwrap(), 3);
        assert_eq!(t.count_all_children("/zookeeper").unwrap(), 2);
        assert_eq!(t.count_all_children("/nope"), Err(ErrorCode::NoNode));
        assert_eq!(t.node_count(), 4);
        t.check_invariants().unwrap();
    }

    #[test]
    fn create_sets_stats_and_bumps_parent() {
        let mut t = DataTree::new();
        let out = apply_ok(&mut t, 5, create("/a", 0, 1));
        let s = t.stat("/a").unwrap();
        assert_eq!((s.czxid, s.mzxid, s.pzxid), (5, 5, 5));
        assert_eq!((s.ctime, s.mtime), (T0 + 5, T0 + 5));
        assert_eq!(
            (s.version, s.cversion, s.aversion, s.ephemeral_owner),
            (0, 0, 0, 0)
        );
        assert_eq!((s.data_length, s.num_children), (2, 0));
        assert_eq!(
            out.result,
            Ok(OpResult::Create {
                path: "/a".into(),
                stat: s,
                extended: false,
            })
        );
        let root = t.node("/").unwrap().stat();
        assert_eq!((root.cversion, root.pzxid, root.num_children), (1, 5, 2));
        assert_eq!(root.mzxid, 0);
        assert_eq!(
            out.triggers,
            vec![
                ("/a".to_string(), EventType::NodeCreated),
                ("/".to_string(), EventType::NodeChildrenChanged)
            ]
        );
        assert_eq!(
            out.trigger_acls,
            vec![Acl::open_unsafe(), Acl::open_unsafe()]
        );
        assert_eq!(t.last_processed_zxid(), 5);
        // Existing node and missing parent.
        assert_eq!(
            t.apply(&txn(6, create("/a", 0, 2))).result,
            Err(ErrorCode::NodeExists)
        );
        assert_eq!(
            t.apply(&txn(7, create("/x/y", 0, 1))).result,
            Err(ErrorCode::NoNode)
        );
        assert_eq!(t.last_processed_zxid(), 7);
        // parent_cversion -1 means "one more than now"; a lower one leaves cversion and pzxid.
        apply_ok(&mut t, 8, create("/b", 0, -1));
        assert_eq!(
            (
                t.node("/").unwrap().stat().cversion,
                t.stat("/").unwrap().pzxid
            ),
            (2, 8)
        );
        apply_ok(&mut t, 9, create("/c", 0, 1));
        assert_eq!(
            (
                t.node("/").unwrap().stat().cversion,
                t.stat("/").unwrap().pzxid
            ),
            (2, 8)
        );
    }

    #[test]
    fn clients_see_cversion_as_creates_plus_deletes() {
        // ZooKeeper 3.8 (zkCli against the running server): 4 child creates and
        // 2 deletes show cversion 6; the next sequential child is numbered 4.
        let mut t = DataTree::new();
        apply_ok(&mut t, 1, create("/p", 0, -1));
        for (i, c) in ["/p/a", "/p/b", "/p/c", "/p/d"].iter().enumerate() {
            apply_ok(&mut t, 2 + i as i64, create(c, 0, -1));
        }
        for (i, c) in ["/p/a", "/p/b"].iter().enumerate() {
            apply_ok(
                &mut t,
                6 + i as i64,
                TxnBody::Delete {
                    path: c.to_string(),
                },
            );
        }
        let s = t.stat("/p").unwrap();
        assert_eq!((s.cversion, s.num_children), (6, 2));
        assert_eq!(t.node("/p").unwrap().stat().cversion, 4);
        // /zookeeper: no creates, two children: -2, as ZooKeeper shows it.
        assert_eq!(t.stat("/zookeeper").unwrap().cversion, -2);
        assert_eq!(t.stat("/zookeeper/config").unwrap().aversion, -1);
    }

    #[test]
    fn containers_and_ttl_nodes_show_no_owner() {
        let mut t = DataTree::new();
        apply_ok(&mut t, 1, create("/c", CONTAINER_EPHEMERAL_OWNER, -1));
        apply_ok(&mut t, 2, create("/t", ttl_ephemeral_owner(1000), -1));
        apply_ok(&mut t, 3, create("/e", 0x1234, -1));
        assert_eq!(t.stat("/c").unwrap().ephemeral_owner, 0);
        assert_eq!(t.stat("/t").unwrap().ephemeral_owner, 0);
        assert_eq!(t.stat("/e").unwrap().ephemeral_owner, 0x1234);
        assert_eq!(
            t.node("/c").unwrap().stat().ephemeral_owner,
            CONTAINER_EPHEMERAL_OWNER
        );
    }

    #[test]
    fn delete_moves_pzxid_not_cversion() {
        let mut t = DataTree::new();
        apply_ok(&mut t, 1, create("/a", 0, 1));
        apply_ok(&mut t, 2, create("/a/b", 0, 1));
        assert_eq!(
            t.apply(&txn(3, TxnBody::Delete { path: "/a".into() }))
                .result,
            Err(ErrorCode::NotEmpty)
        );
        let out = apply_ok(
            &mut t,
            4,
            TxnBody::Delete {
                path: "/a/b".into(),
            },
        );
        assert_eq!(
            out.triggers,
            vec![
                ("/a/b".to_string(), EventType::NodeDeleted),
                ("/a".to_string(), EventType::NodeChildrenChanged)
            ]
        );
        let a = t.node("/a").unwrap().stat();
        assert_eq!((a.cversion, a.pzxid, a.num_children, a.mzxid), (1, 4, 0, 1));
        // Clients see the create and the delete.
        assert_eq!(t.stat("/a").unwrap().cversion, 2);
        assert_eq!(
            t.apply(&txn(
                5,
                TxnBody::Delete {
                    path: "/a/b".into()
                }
            ))
            .result,
            Err(ErrorCode::NoNode)
        );
        assert_eq!(
            t.apply(&txn(6, TxnBody::Delete { path: "/".into() }))
                .result,
            Err(ErrorCode::BadArguments)
        );
        t.check_invariants().unwrap();
    }

    #[test]
    fn set_data_and_set_acl() {
        let mut t = DataTree::new();
        apply_ok(&mut t, 1, create("/a", 0, 1));
        let out = apply_ok(
            &mut t,
            2,
            TxnBody::SetData {
                path: "/a".into(),
                data: b"xyz".to_vec(),
                version: 1,
            },
        );
        let s = t.stat("/a").unwrap();
        assert_eq!(out.result, Ok(OpResult::SetData { stat: s }));
        assert_eq!(
            (s.version, s.mzxid, s.mtime, s.pzxid, s.czxid, s.data_length),
            (1, 2, T0 + 2, 1, 1, 3)
        );
        assert_eq!(
            out.triggers,
            vec![("/a".to_string(), EventType::NodeDataChanged)]
        );
        assert_eq!(t.get_data("/a").unwrap().0, Bytes::from_static(b"xyz"));
        let acl = vec![Acl {
            perms: perms::READ,
            id: Id::anyone(),
        }];
        let out = apply_ok(
            &mut t,
            3,
            TxnBody::SetAcl {
                path: "/a".into(),
                acl: acl.clone(),
                version: 1,
            },
        );
        assert!(out.triggers.is_empty());
        let s = t.stat("/a").unwrap();
        assert_eq!((s.aversion, s.version, s.mzxid), (1, 1, 2));
        assert_eq!(t.get_acl("/a").unwrap().0, acl);
        let missing = TxnBody::SetData {
            path: "/q".into(),
            data: vec![],
            version: 1,
        };
        assert_eq!(t.apply(&txn(4, missing)).result, Err(ErrorCode::NoNode));
    }

    #[test]
    fn multi_applies_all_or_reports_errors() {
        let mut t = DataTree::new();
        let ok = TxnBody::Multi(vec![
            create("/a", 0, 1),
            create("/a/b", 0, 1),
            TxnBody::Check {
                path: "/a".into(),
                version: 1,
            },
            TxnBody::SetData {
                path: "/a".into(),
                data: vec![],
                version: 1,
            },
        ]);
        let out = apply_ok(&mut t, 1, ok);
        let OpResult::Multi(rs) = out.result.unwrap() else {
            panic!()
        };
        assert_eq!(rs.len(), 4);
        assert!(rs.iter().all(Result::is_ok));
        assert_eq!(out.triggers.len(), 5);
        let before = t.clone();
        let failed = TxnBody::Multi(vec![
            create("/c", 0, 2),
            TxnBody::Error {
                err: ErrorCode::BadVersion,
            },
            TxnBody::Delete {
                path: "/a/b".into(),
            },
        ]);
        let out = t.apply(&txn(2, failed));
        assert_eq!(
            out.result,
            Ok(OpResult::Multi(vec![
                Err(ErrorCode::Ok),
                Err(ErrorCode::BadVersion),
                Err(ErrorCode::RuntimeInconsistency)
            ]))
        );
        assert!(out.triggers.is_empty());
        let mut expect = before;
        expect.set_last_processed_zxid(2);
        assert_eq!(t, expect);
    }

    #[test]
    fn ephemerals_and_close_session() {
        let mut t = DataTree::new();
        apply_ok(&mut t, 1, create("/e1", 0x11, 1));
        apply_ok(&mut t, 2, create("/e2", 0x11, 2));
        apply_ok(&mut t, 3, create("/f", 0x22, 3));
        assert_eq!(t.ephemerals(0x11), vec!["/e1", "/e2"]);
        assert_eq!(t.ephemerals_count(), 3);
        assert_eq!(t.all_ephemerals().len(), 2);
        let close = Txn {
            zxid: 4,
            time: T0,
            session: 0x11,
            cxid: 0,
            body: TxnBody::CloseSession {
                ephemerals: vec!["/e2".into()],
            },
        };
        let out = t.apply(&close);
        assert_eq!(out.result, Ok(OpResult::CloseSession));
        // The listed one first, then the leftover one.
        assert_eq!(out.triggers[0], ("/e2".to_string(), EventType::NodeDeleted));
        assert_eq!(out.triggers[2], ("/e1".to_string(), EventType::NodeDeleted));
        assert!(t.ephemerals(0x11).is_empty());
        assert_eq!(t.ephemerals(0x22), vec!["/f"]);
        t.check_invariants().unwrap();
    }

    #[test]
    fn containers_and_ttls_expire() {
        let mut t = DataTree::new();
        apply_ok(&mut t, 1, create("/c", CONTAINER_EPHEMERAL_OWNER, 1));
        apply_ok(&mut t, 2, create("/t", ttl_ephemeral_owner(100), 2));
        let mtime = t.stat("/t").unwrap().mtime;
        // A fresh container (cversion 0) is not a candidate; a young TTL node is not either.
        assert!(t.expired_containers_and_ttls(mtime + 100).is_empty());
        assert_eq!(t.expired_containers_and_ttls(mtime + 101), vec!["/t"]);
        apply_ok(&mut t, 3, create("/c/x", 0, 1));
        apply_ok(&mut t, 4, create("/t/x", 0, 1));
        assert!(t.expired_containers_and_ttls(mtime + 1000).is_empty());
        apply_ok(
            &mut t,
            5,
            TxnBody::Delete {
                path: "/c/x".into(),
            },
        );
        apply_ok(
            &mut t,
            6,
            TxnBody::Delete {
                path: "/t/x".into(),
            },
        );
        assert_eq!(
            t.expired_containers_and_ttls(mtime + 1000),
            vec!["/c", "/t"]
        );
        // Modifying a TTL node restarts its clock.
        apply_ok(
            &mut t,
            7,
            TxnBody::SetData {
                path: "/t".into(),
                data: vec![],
                version: 1,
            },
        );
        let m2 = t.stat("/t").unwrap().mtime;
        assert_eq!(t.expired_containers_and_ttls(m2 + 50), vec!["/c"]);
        assert_eq!(t.containers().len(), 1);
        assert_eq!(t.ttls().len(), 1);
    }

    #[test]
    fn snapshot_round_trip_and_corruption() {
        let mut t = DataTree::new();
        apply_ok(&mut t, 1, create("/a", 0, 1));
        apply_ok(&mut t, 2, create("/a/e", 0x33, 1));
        apply_ok(&mut t, 3, create("/c", CONTAINER_EPHEMERAL_OWNER, 2));
        apply_ok(&mut t, 4, create("/t", ttl_ephemeral_owner(5), 3));
        let snap = t.serialize_snapshot();
        let back = DataTree::deserialize_snapshot(&snap).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.digest(), t.digest());
        assert_eq!(back.last_processed_zxid(), 4);
        assert_eq!(back.ephemerals(0x33), vec!["/a/e"]);
        // Any flipped bit or truncation is detected.
        for i in (0..snap.len()).step_by(7) {
            let mut bad = snap.clone();
            bad[i] ^= 0x10;
            assert!(DataTree::deserialize_snapshot(&bad).is_err(), "flip at {i}");
        }
        for n in 0..snap.len() {
            assert!(DataTree::deserialize_snapshot(&snap[..n]).is_err());
        }
    }

    /// A frozen tree is the tree at one zxid: creates, data changes, deletes
    /// (of leaves and of whole subtrees) and multis applied afterwards do not
    /// leak into it, and its snapshot is byte for byte the one the tree gave
    /// at the freeze. The live tree stays consistent while sharing structure.
    #[test]
    fn frozen_tree_is_exactly_one_zxid() {
        let mut t = DataTree::new();
        let mut z = 0;
        for i in 0..300 {
            z += 1;
            apply_ok(&mut t, z, create(&format!("/n{i:03}"), 0, -1));
            z += 1;
            apply_ok(&mut t, z, create(&format!("/n{i:03}/c"), 0, -1));
        }
        let at_freeze = t.serialize_snapshot();
        let digest_at_freeze = t.digest();
        let frozen = t.freeze();
        assert_eq!(frozen.last_processed_zxid(), z);
        assert_eq!(frozen.node_count(), t.node_count());
        for i in 0..300 {
            z += 1;
            let body = match i % 3 {
                0 => TxnBody::SetData {
                    path: format!("/n{i:03}"),
                    data: b"changed".to_vec(),
                    version: 1,
                },
                1 => TxnBody::Multi(vec![
                    TxnBody::Delete {
                        path: format!("/n{i:03}/c"),
                    },
                    TxnBody::Delete {
                        path: format!("/n{i:03}"),
                    },
                ]),
                _ => create(&format!("/n{i:03}/new"), 0, -1),
            };
            apply_ok(&mut t, z, body);
        }
        assert_ne!(t.digest(), digest_at_freeze);
        let from_frozen = frozen.serialize_snapshot();
        assert_eq!(from_frozen, at_freeze);
        let back = DataTree::deserialize_snapshot(&from_frozen).unwrap();
        assert_eq!(back.digest(), digest_at_freeze);
        assert_eq!(back.last_processed_zxid(), frozen.last_processed_zxid());
        t.check_invariants().unwrap();
    }

    proptest::proptest! {
        /// Corrupt bytes behind a valid checksum: decoding never panics, and
        /// whatever decodes is a consistent tree.
        #[test]
        fn snapshot_decode_survives_hostile_bytes(pos in 0usize..2000, byte in 0u8..=255, cut in 0usize..2000) {
            let mut t = DataTree::new();
            t.apply(&txn(1, create("/a", 0x33, 1)));
            t.apply(&txn(2, create("/a/b", 0, 1)));
            t.apply(&txn(3, create("/c", CONTAINER_EPHEMERAL_OWNER, 2)));
            let snap = t.serialize_snapshot();
            let mut body = snap[..snap.len() - 4].to_vec();
            let p = pos % body.len();
            body[p] = byte;
            body.truncate(body.len() - cut % 9);
            let crc = crc32c::crc32c(&body);
            body.extend_from_slice(&crc.to_be_bytes());
            if let Ok(back) = DataTree::deserialize_snapshot(&body) {
                proptest::prop_assert!(back.check_invariants().is_ok());
            }
        }
    }

    #[test]
    fn trigger_acls_name_the_node_each_event_is_about() {
        let mut t = DataTree::new();
        let secret = vec![Acl {
            perms: perms::ALL,
            id: Id::new("digest", "bob:x"),
        }];
        apply_ok(&mut t, 1, create("/a", 0, 1));
        let mk = TxnBody::Create {
            path: "/a/s".into(),
            data: vec![],
            acl: secret.clone(),
            ephemeral_owner: 0,
            parent_cversion: 1,
        };
        let out = apply_ok(&mut t, 2, mk);
        assert_eq!(out.trigger_acls, vec![secret.clone(), Acl::open_unsafe()]);
        let out = apply_ok(
            &mut t,
            3,
            TxnBody::SetData {
                path: "/a/s".into(),
                data: vec![],
                version: 1,
            },
        );
        assert_eq!(out.trigger_acls, vec![secret.clone()]);
        let out = apply_ok(
            &mut t,
            4,
            TxnBody::Delete {
                path: "/a/s".into(),
            },
        );
        assert_eq!(out.trigger_acls, vec![secret, Acl::open_unsafe()]);
        assert_eq!(out.trigger_acls.len(), out.triggers.len());
    }

    #[test]
    fn config_node_is_local_and_outside_the_digest() {
        let mut t = DataTree::new();
        let d = t.digest();
        t.set_config_data(b"server.1=a:2888:3888;2181", 0x1_0000_0000, 42);
        assert_eq!(t.digest(), d);
        let (data, stat) = t.get_data(CONFIG_ZOOKEEPER).unwrap();
        assert_eq!(&data[..], b"server.1=a:2888:3888;2181");
        assert_eq!(
            (stat.mzxid, stat.mtime, stat.version),
            (0x1_0000_0000, 42, -1)
        );
        t.check_invariants().unwrap();
    }

    #[test]
    fn ephemerals_under_prefix() {
        let mut t = DataTree::new();
        apply_ok(&mut t, 1, create("/a", 0, 1));
        apply_ok(&mut t, 2, create("/a/e", 0x11, 1));
        apply_ok(&mut t, 3, create("/ab", 0x11, 2));
        apply_ok(&mut t, 4, create("/b", 0x11, 3));
        assert_eq!(t.ephemerals_under(0x11, "/"), vec!["/a/e", "/ab", "/b"]);
        assert_eq!(t.ephemerals_under(0x11, ""), vec!["/a/e", "/ab", "/b"]);
        assert_eq!(t.ephemerals_under(0x11, "/a"), vec!["/a/e", "/ab"]);
        assert!(t.ephemerals_under(0x22, "/").is_empty());
    }

    #[test]
    fn digest_tracks_content_not_history() {
        let mut a = DataTree::new();
        let mut b = DataTree::new();
        assert_eq!(a.digest(), b.digest());
        apply_ok(&mut a, 1, create("/x", 0, 1));
        assert_ne!(a.digest(), b.digest());
        apply_ok(&mut b, 1, create("/x", 0, 1));
        assert_eq!(a.digest(), b.digest());
        apply_ok(
            &mut a,
            2,
            TxnBody::SetData {
                path: "/x".into(),
                data: vec![1],
                version: 1,
            },
        );
        apply_ok(
            &mut b,
            2,
            TxnBody::SetData {
                path: "/x".into(),
                data: vec![2],
                version: 1,
            },
        );
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), a.recompute_digest());
    }

    #[test]
    fn invalid_names_are_refused_at_apply() {
        let mut t = DataTree::new();
        assert_eq!(
            t.apply(&txn(1, create("/a/", 0, 1))).result,
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            t.apply(&txn(2, create("nope", 0, 1))).result,
            Err(ErrorCode::BadArguments)
        );
        t.check_invariants().unwrap();
    }
}
