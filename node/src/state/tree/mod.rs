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
//!
//! This module holds the nodes, their indexes and the reads; `apply` holds
//! `processTxn`, `snapshot` the on-disk format and [`FrozenTree`], `digest`
//! the per-node hash.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::path::{basename, raw_parent};
use super::txn::{EphemeralType, Txn, TxnBody};
use crate::types::{perms, Acl, ErrorCode, EventType, Id, SessionId, Stat, Zxid};

mod apply;
mod digest;
mod snapshot;
#[cfg(test)]
mod tests;

use digest::node_digest;
pub use snapshot::FrozenTree;

/// `/zookeeper`, ZooKeeper's own subtree.
pub const PROC_ZOOKEEPER: &str = "/zookeeper";
/// `/zookeeper/quota`.
pub const QUOTA_ZOOKEEPER: &str = "/zookeeper/quota";
/// `/zookeeper/config`, the dynamic configuration node (read-only to clients).
pub const CONFIG_ZOOKEEPER: &str = "/zookeeper/config";

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
    /// Empty when the data is null.
    data: Bytes,
    /// The client gave a null buffer (it reads back as null, as ZooKeeper's `null`).
    null: bool,
    /// FNV-1a of `data`, kept with it: the node's digest never rehashes the data, so a
    /// change to a node (a child created under it) costs the same whatever its data size.
    data_hash: u64,
    acl: AclList,
    stat: Stat,
    children: ChildSet,
}

/// A node's ACL. Nodes with the same list share one allocation ([`AclCache`]): most
/// trees hold a handful of distinct lists over millions of nodes.
pub type AclList = std::sync::Arc<[Acl]>;

/// The distinct ACL lists of a tree, each held once (ZooKeeper's `ReferenceCountedACLCache`
/// by other means): a list no node uses any more is dropped when the cache has doubled
/// since its last purge. A cache, not part of the tree's value: two trees are equal
/// whatever their caches hold.
#[derive(Clone, Debug, Default)]
pub struct AclCache {
    lists: BTreeSet<AclList>,
    live_after_purge: usize,
}

impl PartialEq for AclCache {
    fn eq(&self, _: &AclCache) -> bool {
        true
    }
}

impl Eq for AclCache {}

impl AclCache {
    /// The shared copy of `acl`.
    pub fn intern(&mut self, acl: &[Acl]) -> AclList {
        if let Some(list) = self.lists.get(acl) {
            return list.clone();
        }
        let list: AclList = acl.into();
        self.lists.insert(list.clone());
        if self.lists.len() > 2 * self.live_after_purge.max(32) {
            // Only the cache holds a list whose count is 1 (frozen trees keep theirs).
            self.lists
                .retain(|l| std::sync::Arc::strong_count(l) > 1 || l == &list);
            self.live_after_purge = self.lists.len();
        }
        list
    }
}

/// The path -> node map; cloning it is O(1) (structure is shared until written). Nodes
/// sit behind an `Arc`: a map leaf holds 16 slim entries (the B-tree's chunks are
/// allocated whole, so a fat entry would cost its size even in a half-empty leaf), and
/// the first change to a leaf shared with a frozen tree copies 16 pointers, not 16 nodes.
type NodeMap = imbl::OrdMap<String, std::sync::Arc<DataNode>>;
/// A node's child names, sorted; cloning it is O(1).
pub type ChildSet = imbl::OrdSet<String>;

impl DataNode {
    fn new(data: Option<Bytes>, acl: AclList, stat: Stat) -> DataNode {
        let null = data.is_none();
        let data = data.unwrap_or_default();
        let mut n = DataNode {
            data_hash: crate::hash::fnv1a(&data),
            data,
            null,
            acl,
            stat,
            children: ChildSet::new(),
        };
        n.fix_derived_stat();
        n
    }

    /// The node's data (empty when null).
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The node's data as a client reads it: `None` when it was set null.
    pub fn data_opt(&self) -> Option<&Bytes> {
        (!self.null).then_some(&self.data)
    }

    /// Replaces the node's data (and its hash); `None` is null data.
    fn set_data(&mut self, data: Option<&[u8]>) {
        self.null = data.is_none();
        let data = data.unwrap_or_default();
        self.data = Bytes::copy_from_slice(data);
        self.data_hash = crate::hash::fnv1a(data);
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
    pub trigger_acls: Vec<AclList>,
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
    acls: AclCache,
}

impl Default for DataTree {
    fn default() -> Self {
        DataTree::new()
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
        let mut acls = AclCache::default();
        for (path, acl, stat) in [
            ("/", open.clone(), empty_stat()),
            (PROC_ZOOKEEPER, open.clone(), empty_stat()),
            (QUOTA_ZOOKEEPER, open, empty_stat()),
            (CONFIG_ZOOKEEPER, read_only, config_stat),
        ] {
            nodes.insert(
                path.to_string(),
                DataNode::new(Some(Bytes::new()), acls.intern(&acl), stat),
            );
        }
        DataTree::from_nodes(nodes, 0, acls)
    }

    /// Builds a tree from its nodes (child sets are rebuilt from the paths;
    /// stats' derived fields, owner indexes, data size and digest are
    /// recomputed). Every node's parent must be present.
    fn from_nodes(
        nodes: BTreeMap<String, DataNode>,
        last_processed_zxid: Zxid,
        acls: AclCache,
    ) -> DataTree {
        let sorted: Vec<(String, DataNode)> = nodes.into_iter().collect();
        DataTree::from_sorted(sorted, last_processed_zxid, acls)
            .expect("every node's parent is present")
    }

    /// [`DataTree::from_nodes`] for nodes sorted by path with no path twice (as a
    /// snapshot holds them), in one pass: each node's parent is found by binary search
    /// among the nodes before it (a parent sorts before its children), the children of
    /// a parent arrive in name order, and the data size, digest and owner indexes are
    /// summed on the way. `Err` names a node whose parent is missing.
    fn from_sorted(
        mut nodes: Vec<(String, DataNode)>,
        last_processed_zxid: Zxid,
        acls: AclCache,
    ) -> Result<DataTree, String> {
        let mut t = DataTree {
            nodes: NodeMap::new(),
            ephemerals: BTreeMap::new(),
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            last_processed_zxid,
            data_size: 0,
            digest: 0,
            acls,
        };
        // Child names per node, in order (children sort as their full paths do).
        let mut children: Vec<Vec<String>> = vec![Vec::new(); nodes.len()];
        // Siblings mostly come one after another: try the last parent found first.
        let mut last_parent = 0;
        for i in 0..nodes.len() {
            let path = nodes[i].0.as_str();
            if path == "/" {
                continue;
            }
            let parent = raw_parent(path).ok_or_else(|| format!("{path:?} has no parent"))?;
            let at = if last_parent < i && nodes[last_parent].0 == parent {
                last_parent
            } else {
                nodes[..i]
                    .binary_search_by(|(p, _)| p.as_str().cmp(parent))
                    .map_err(|_| format!("{path:?} has no parent"))?
            };
            last_parent = at;
            children[at].push(basename(path).to_string());
        }
        for ((path, node), names) in nodes.iter_mut().zip(children) {
            node.children = names.into_iter().collect();
            node.fix_derived_stat();
            t.data_size += path.len() as i64 + node.data.len() as i64;
            t.digest = t.digest.wrapping_add(node_digest(path, node));
            if node.stat.ephemeral_owner != 0 {
                t.register_owner(path, node.stat.ephemeral_owner);
            }
        }
        t.nodes = nodes
            .into_iter()
            .map(|(p, n)| (p, std::sync::Arc::new(n)))
            .collect();
        Ok(t)
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
            n.set_data(Some(data));
            n.stat.mzxid = config_version;
            n.stat.mtime = time;
            n.stat.version = -1;
        });
    }

    // ---------------------------------------------------------------- reads

    /// Every node, in path order (a parent before its children).
    pub fn nodes(&self) -> impl Iterator<Item = (&String, &DataNode)> {
        self.nodes.iter().map(|(p, n)| (p, &**n))
    }

    /// The node at `path`.
    pub fn node(&self, path: &str) -> Option<&DataNode> {
        self.nodes.get(path).map(|n| &**n)
    }

    /// The data and stat of a node (`getData`).
    pub fn get_data(&self, path: &str) -> Result<(Option<Bytes>, Stat), ErrorCode> {
        let n = self.nodes.get(path).ok_or(ErrorCode::NoNode)?;
        Ok((n.data_opt().cloned(), n.client_stat()))
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
        Ok((n.acl.to_vec(), n.client_stat()))
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
                .map(|(p, n)| (p.clone(), DataNode::clone(n)))
                .collect(),
            self.last_processed_zxid,
            self.acls.clone(),
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
