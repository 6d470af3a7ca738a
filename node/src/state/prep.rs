//! The prep stage: ZooKeeper's `PrepRequestProcessor`.
//!
//! The leader turns each client write into a [`TxnBody`] before proposing
//! it, deciding here every check (path, ACL, version, parent, ephemeral
//! parent, sequence number, TTL) so that applying the txn is deterministic.
//! Writes are pipelined: several are prepared before the first is applied,
//! so the [`Prepper`] keeps ZooKeeper's `outstandingChanges`: change
//! records layered over the committed [`DataTree`], each dropped once the
//! txn with its zxid has been applied ([`Prepper::applied`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::acl::{check_acl, fix_acl};
use super::path::{raw_parent, validate_path};
use super::tree::{is_special_path, DataTree};
use super::txn::{ttl_ephemeral_owner, EphemeralType, TxnBody, CONTAINER_EPHEMERAL_OWNER, TTL_MAX};
use crate::types::{perms, Acl, CreateMode, ErrorCode, Id, SessionId, Stat, Zxid};

/// A client write, as decoded from the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOp {
    /// `create`, `create2`, `createContainer` (mode `Container`) or
    /// `createTTL`. `ttl` is the request's TTL for the TTL modes and -1
    /// otherwise: as in ZooKeeper, a TTL mode needs `0 < ttl <= TTL_MAX`
    /// and any other mode needs `ttl < 0`, else `BadArguments`.
    Create {
        path: String,
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        mode: CreateMode,
        ttl: i64,
    },
    /// `delete`; `version` -1 matches any version.
    Delete { path: String, version: i32 },
    /// `setData`; `version` -1 matches any version.
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    /// `setACL`; `version` (the expected aversion) -1 matches any.
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    /// `check` (normally inside a multi).
    Check { path: String, version: i32 },
    /// `deleteContainer` (opcode 20), sent by the server itself for the
    /// paths of [`DataTree::expired_containers_and_ttls`]. No ACL check.
    DeleteContainer { path: String },
    /// `multi`: create, delete, setData and check ops, all or nothing.
    Multi(Vec<WriteOp>),
}

/// A node's state as pending changes leave it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NodeRecord {
    stat: Stat,
    child_count: i32,
    acl: Vec<Acl>,
}

/// One outstanding change (`ZooKeeperServer.ChangeRecord`): the state of
/// `path` once the txn `zxid` applies; `node: None` means deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ChangeRecord {
    seq: u64,
    zxid: Zxid,
    node: Option<NodeRecord>,
}

/// An entry of the outstanding-changes queue, in prepare order.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outstanding {
    seq: u64,
    zxid: Zxid,
    path: String,
    /// The node's `ephemeralOwner` after the change, `None` if deleted.
    owner: Option<i64>,
}

/// ZooKeeper's prep stage with its outstanding changes.
#[derive(Clone, Debug, Default)]
pub struct Prepper {
    queue: VecDeque<Outstanding>,
    by_path: BTreeMap<String, ChangeRecord>,
    next_seq: u64,
    /// `(path, previous record)` for every change added by the current
    /// `prepare` call, to roll back a failed multi.
    undo: Vec<(String, Option<ChangeRecord>)>,
    /// TTL creates are refused with Unimplemented (ZooKeeper without
    /// `extendedTypesEnabled`); see [`Prepper::set_extended_types`].
    no_extended_types: bool,
    /// Ephemeral creates fail with this code (a local session's writes at the leader);
    /// see [`Prepper::refuse_ephemerals`].
    ephemerals_refused: Option<ErrorCode>,
}

impl Prepper {
    /// A prep stage with no outstanding changes.
    pub fn new() -> Prepper {
        Prepper::default()
    }

    /// Whether TTL nodes may be created (ZooKeeper's `extendedTypesEnabled`).
    /// On for a new prep stage; off, a TTL create (alone, or as one op of a
    /// multi) fails with Unimplemented.
    pub fn set_extended_types(&mut self, on: bool) {
        self.no_extended_types = !on;
    }

    /// Until called again, an ephemeral create (alone, or as one op of a multi) fails
    /// with `code`: the writes of a local session, which may own no ephemeral
    /// (`EphemeralOnLocalSession`, or `SessionExpired` for another server's, as
    /// ZooKeeper's leader answers them).
    pub fn refuse_ephemerals(&mut self, code: Option<ErrorCode>) {
        self.ephemerals_refused = code;
    }

    /// The number of outstanding change records.
    pub fn outstanding(&self) -> usize {
        self.queue.len()
    }

    /// Turns a client write into a txn body, as `PrepRequestProcessor`
    /// does, against `tree` plus the outstanding changes, and records the
    /// changes it will make. `zxid` and `time` are the txn's.
    ///
    /// A failing single op returns its error and records nothing. A multi
    /// always returns `Ok`: on success `TxnBody::Multi` of the prepared ops;
    /// when an op fails, `TxnBody::Multi` of `Error` entries
    /// (`Ok` before the failing op, its code, `RuntimeInconsistency` after)
    /// and nothing is recorded. A multi holding ops other than create,
    /// delete, setData and check is `MarshallingError`, as ZooKeeper fails
    /// to decode it.
    pub fn prepare(
        &mut self,
        tree: &DataTree,
        session: SessionId,
        auth: &[Id],
        op: &WriteOp,
        zxid: Zxid,
        time: i64,
    ) -> Result<TxnBody, ErrorCode> {
        self.undo.clear();
        let WriteOp::Multi(ops) = op else {
            return self.prepare_one(tree, session, auth, op, zxid, time);
        };
        if ops.iter().any(|o| {
            matches!(
                o,
                WriteOp::Multi(_) | WriteOp::SetAcl { .. } | WriteOp::DeleteContainer { .. }
            )
        }) {
            return Err(ErrorCode::MarshallingError);
        }
        let queue_len = self.queue.len();
        let mut bodies = Vec::with_capacity(ops.len());
        for (i, sub) in ops.iter().enumerate() {
            match self.prepare_one(tree, session, auth, sub, zxid, time) {
                Ok(body) => bodies.push(body),
                Err(err) => {
                    self.rollback(queue_len);
                    let errors = (0..ops.len())
                        .map(|j| TxnBody::Error {
                            err: match j.cmp(&i) {
                                std::cmp::Ordering::Less => ErrorCode::Ok,
                                std::cmp::Ordering::Equal => err,
                                std::cmp::Ordering::Greater => ErrorCode::RuntimeInconsistency,
                            },
                        })
                        .collect();
                    return Ok(TxnBody::Multi(errors));
                }
            }
        }
        self.undo.clear();
        Ok(TxnBody::Multi(bodies))
    }

    /// The txn body that closes `session` (closeSession or expiry): its
    /// ephemerals in the tree, plus those pending creates add, minus those
    /// pending deletes remove, sorted. Records their deletion so that
    /// later prepares see them gone.
    pub fn close_session_txn(
        &mut self,
        tree: &DataTree,
        session: SessionId,
        zxid: Zxid,
    ) -> TxnBody {
        self.undo.clear();
        let mut es: BTreeSet<String> = tree.ephemerals(session).into_iter().collect();
        for c in &self.queue {
            match c.owner {
                None => {
                    es.remove(&c.path);
                }
                Some(o) if o == session => {
                    es.insert(c.path.clone());
                }
                Some(_) => {}
            }
        }
        for path in &es {
            if let Some(parent_path) = raw_parent(path) {
                if let Ok(mut parent) = self.record(tree, parent_path) {
                    parent.child_count -= 1;
                    parent.stat.pzxid = zxid;
                    self.add_change(parent_path, zxid, Some(parent));
                }
            }
            self.add_change(path, zxid, None);
        }
        self.undo.clear();
        TxnBody::CloseSession {
            ephemerals: es.into_iter().collect(),
        }
    }

    /// The txn with `zxid` has been applied to the tree: drops every
    /// change record up to and including it.
    pub fn applied(&mut self, zxid: Zxid) {
        while self.queue.front().is_some_and(|c| c.zxid <= zxid) {
            let Some(c) = self.queue.pop_front() else {
                break;
            };
            if self.by_path.get(&c.path).is_some_and(|r| r.seq == c.seq) {
                self.by_path.remove(&c.path);
            }
        }
    }

    /// Drops every outstanding change (leader change, or the prepared
    /// txns will never be applied).
    pub fn reset(&mut self) {
        self.queue.clear();
        self.by_path.clear();
        self.undo.clear();
    }

    fn rollback(&mut self, queue_len: usize) {
        self.queue.truncate(queue_len);
        while let Some((path, prev)) = self.undo.pop() {
            match prev {
                Some(r) => self.by_path.insert(path, r),
                None => self.by_path.remove(&path),
            };
        }
    }

    /// `getRecordForPath`: the pending state of `path`, or the tree's.
    fn record(&self, tree: &DataTree, path: &str) -> Result<NodeRecord, ErrorCode> {
        if let Some(c) = self.by_path.get(path) {
            return c.node.clone().ok_or(ErrorCode::NoNode);
        }
        let n = tree.node(path).ok_or(ErrorCode::NoNode)?;
        Ok(NodeRecord {
            stat: n.stat(),
            child_count: n.children().len() as i32,
            acl: n.acl().to_vec(),
        })
    }

    fn add_change(&mut self, path: &str, zxid: Zxid, node: Option<NodeRecord>) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let owner = node.as_ref().map(|n| n.stat.ephemeral_owner);
        self.queue.push_back(Outstanding {
            seq,
            zxid,
            path: path.to_string(),
            owner,
        });
        let prev = self
            .by_path
            .insert(path.to_string(), ChangeRecord { seq, zxid, node });
        self.undo.push((path.to_string(), prev));
    }

    fn prepare_one(
        &mut self,
        tree: &DataTree,
        session: SessionId,
        auth: &[Id],
        op: &WriteOp,
        zxid: Zxid,
        time: i64,
    ) -> Result<TxnBody, ErrorCode> {
        match op {
            WriteOp::Create { mode, .. } if mode.is_ttl() && self.no_extended_types => {
                Err(ErrorCode::Unimplemented)
            }
            WriteOp::Create { mode, .. }
                if mode.is_ephemeral() && self.ephemerals_refused.is_some() =>
            {
                Err(self
                    .ephemerals_refused
                    .unwrap_or(ErrorCode::EphemeralOnLocalSession))
            }
            WriteOp::Create {
                path,
                data,
                acl,
                mode,
                ttl,
            } => self.prepare_create(
                tree,
                session,
                auth,
                (path, data.as_deref(), acl, *mode, *ttl),
                zxid,
                time,
            ),
            WriteOp::Delete { path, version } => {
                let parent_path = parent_for_delete(path)?;
                let mut parent = self.record(tree, parent_path)?;
                if !check_acl(&parent.acl, perms::DELETE, auth) {
                    return Err(ErrorCode::NoAuth);
                }
                let node = self.record(tree, path)?;
                check_and_inc_version(node.stat.version, *version)?;
                if node.child_count > 0 {
                    return Err(ErrorCode::NotEmpty);
                }
                parent.child_count -= 1;
                parent.stat.pzxid = zxid;
                self.add_change(parent_path, zxid, Some(parent));
                self.add_change(path, zxid, None);
                Ok(TxnBody::Delete { path: path.clone() })
            }
            WriteOp::DeleteContainer { path } => {
                let parent_path = parent_for_delete(path)?;
                let node = self.record(tree, path)?;
                if node.child_count > 0 {
                    return Err(ErrorCode::NotEmpty);
                }
                if matches!(
                    EphemeralType::of(node.stat.ephemeral_owner),
                    EphemeralType::Normal(_)
                ) {
                    return Err(ErrorCode::BadVersion);
                }
                let mut parent = self.record(tree, parent_path)?;
                parent.child_count -= 1;
                parent.stat.pzxid = zxid;
                self.add_change(parent_path, zxid, Some(parent));
                self.add_change(path, zxid, None);
                Ok(TxnBody::Delete { path: path.clone() })
            }
            WriteOp::SetData {
                path,
                data,
                version,
            } => {
                validate_path(path)?;
                let mut node = self.record(tree, path)?;
                if !check_acl(&node.acl, perms::WRITE, auth) {
                    return Err(ErrorCode::NoAuth);
                }
                let new_version = check_and_inc_version(node.stat.version, *version)?;
                node.stat.version = new_version;
                node.stat.mtime = time;
                node.stat.mzxid = zxid;
                node.stat.data_length = data.as_ref().map_or(0, Vec::len) as i32;
                self.add_change(path, zxid, Some(node));
                Ok(TxnBody::SetData {
                    path: path.clone(),
                    data: data.clone(),
                    version: new_version,
                })
            }
            WriteOp::SetAcl { path, acl, version } => {
                validate_path(path)?;
                let acl = fix_acl(acl, auth)?;
                let mut node = self.record(tree, path)?;
                if !check_acl(&node.acl, perms::ADMIN, auth) {
                    return Err(ErrorCode::NoAuth);
                }
                let new_version = check_and_inc_version(node.stat.aversion, *version)?;
                node.stat.aversion = new_version;
                node.acl = acl.clone();
                self.add_change(path, zxid, Some(node));
                Ok(TxnBody::SetAcl {
                    path: path.clone(),
                    acl,
                    version: new_version,
                })
            }
            WriteOp::Check { path, version } => {
                validate_path(path)?;
                let node = self.record(tree, path)?;
                if !check_acl(&node.acl, perms::READ, auth) {
                    return Err(ErrorCode::NoAuth);
                }
                let version = check_and_inc_version(node.stat.version, *version)?;
                Ok(TxnBody::Check {
                    path: path.clone(),
                    version,
                })
            }
            WriteOp::Multi(_) => Err(ErrorCode::MarshallingError),
        }
    }

    /// `pRequest2TxnCreate`, check for check in ZooKeeper's order.
    fn prepare_create(
        &mut self,
        tree: &DataTree,
        session: SessionId,
        auth: &[Id],
        (path, data, acl, mode, ttl): (&str, Option<&[u8]>, &[Acl], CreateMode, i64),
        zxid: Zxid,
        time: i64,
    ) -> Result<TxnBody, ErrorCode> {
        let ttl_ok = if mode.is_ttl() {
            ttl > 0 && ttl <= TTL_MAX
        } else {
            ttl < 0
        };
        if !ttl_ok {
            return Err(ErrorCode::BadArguments);
        }
        let parent_path = raw_parent(path).ok_or(ErrorCode::BadArguments)?;
        let acl = fix_acl(acl, auth)?;
        let mut parent = self.record(tree, parent_path)?;
        if !check_acl(&parent.acl, perms::CREATE, auth) {
            return Err(ErrorCode::NoAuth);
        }
        let path = if mode.is_sequential() {
            format!("{path}{:010}", parent.stat.cversion)
        } else {
            path.to_string()
        };
        validate_path(&path)?;
        if self.record(tree, &path).is_ok() {
            return Err(ErrorCode::NodeExists);
        }
        if matches!(
            EphemeralType::of(parent.stat.ephemeral_owner),
            EphemeralType::Normal(_)
        ) {
            return Err(ErrorCode::NoChildrenForEphemerals);
        }
        let new_cversion = parent.stat.cversion.wrapping_add(1);
        let ephemeral_owner = if mode.is_container() {
            CONTAINER_EPHEMERAL_OWNER
        } else if mode.is_ttl() {
            ttl_ephemeral_owner(ttl)
        } else if mode.is_ephemeral() {
            session
        } else {
            0
        };
        parent.child_count += 1;
        parent.stat.cversion = new_cversion;
        parent.stat.pzxid = zxid;
        self.add_change(parent_path, zxid, Some(parent));
        let stat = Stat {
            czxid: zxid,
            mzxid: zxid,
            ctime: time,
            mtime: time,
            pzxid: zxid,
            ephemeral_owner,
            data_length: data.map_or(0, <[u8]>::len) as i32,
            ..Stat::default()
        };
        self.add_change(
            &path,
            zxid,
            Some(NodeRecord {
                stat,
                child_count: 0,
                acl: acl.clone(),
            }),
        );
        Ok(TxnBody::Create {
            path,
            data: data.map(<[u8]>::to_vec),
            acl,
            ephemeral_owner,
            parent_cversion: new_cversion,
        })
    }
}

/// `getParentPathAndValidate`: the parent of a path to delete; ZooKeeper's
/// own nodes and paths without a `/` are `BadArguments`.
fn parent_for_delete(path: &str) -> Result<&str, ErrorCode> {
    if is_special_path(path) {
        return Err(ErrorCode::BadArguments);
    }
    raw_parent(path).ok_or(ErrorCode::BadArguments)
}

/// `checkAndIncVersion`: `expected` -1 matches anything; the next version
/// skips -1 (ZOOKEEPER-4743), wrapping from `i32::MAX` through
/// `i32::MIN` to 0.
fn check_and_inc_version(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    // Deliberately broken (sim bites test): every expected version matches.
    #[cfg(madsim)]
    let expected = if crate::broken::active(crate::broken::Bug::LostCasCheck) {
        -1
    } else {
        expected
    };
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    let next = current.wrapping_add(1);
    Ok(if next == -1 { 0 } else { next })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::acl::digest;
    use crate::state::tree::OpResult;
    use crate::state::txn::Txn;

    const S1: SessionId = 0x0100_0000_0000_0001;
    const S2: SessionId = 0x0100_0000_0000_0002;

    fn create(path: &str, mode: CreateMode) -> WriteOp {
        WriteOp::Create {
            path: path.into(),
            data: Some(b"d".to_vec()),
            acl: Acl::open_unsafe(),
            mode,
            ttl: -1,
        }
    }

    /// A tree and prepper that apply what they prepare.
    struct Harness {
        tree: DataTree,
        prep: Prepper,
        zxid: Zxid,
        pending: Vec<Txn>,
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                tree: DataTree::new(),
                prep: Prepper::new(),
                zxid: 0,
                pending: vec![],
            }
        }
        /// Prepares without applying.
        fn prep(
            &mut self,
            session: SessionId,
            auth: &[Id],
            op: &WriteOp,
        ) -> Result<TxnBody, ErrorCode> {
            let zxid = self.zxid + 1;
            let body = self
                .prep
                .prepare(&self.tree, session, auth, op, zxid, 1000 + zxid)?;
            self.zxid = zxid;
            self.pending.push(Txn {
                zxid,
                time: 1000 + zxid,
                session,
                cxid: 0,
                body: body.clone(),
            });
            Ok(body)
        }
        fn apply_all(&mut self) -> Vec<Result<OpResult, ErrorCode>> {
            let mut out = vec![];
            for t in std::mem::take(&mut self.pending) {
                out.push(self.tree.apply(&t).result);
                self.prep.applied(t.zxid);
            }
            assert_eq!(self.prep.outstanding(), 0);
            out
        }
        fn run(&mut self, op: &WriteOp) -> Result<OpResult, ErrorCode> {
            self.prep(S1, &[], op)?;
            self.apply_all().pop().unwrap()
        }
    }

    #[test]
    fn sequence_names_follow_parent_cversion_across_pipelined_writes() {
        let mut h = Harness::new();
        h.run(&create("/q", CreateMode::Persistent)).unwrap();
        // Three sequential creates prepared before any is applied.
        let mut names = vec![];
        for _ in 0..3 {
            match h
                .prep(S1, &[], &create("/q/n-", CreateMode::PersistentSequential))
                .unwrap()
            {
                TxnBody::Create { path, .. } => names.push(path),
                b => panic!("{b:?}"),
            }
        }
        assert_eq!(
            names,
            vec!["/q/n-0000000000", "/q/n-0000000001", "/q/n-0000000002"]
        );
        h.apply_all();
        // A delete does not bump cversion, so names stay unique but skip nothing.
        h.run(&WriteOp::Delete {
            path: "/q/n-0000000002".into(),
            version: -1,
        })
        .unwrap();
        let r = h
            .run(&create("/q/", CreateMode::PersistentSequential))
            .unwrap();
        assert!(
            matches!(r, OpResult::Create { ref path, .. } if path == "/q/0000000003"),
            "{r:?}"
        );
        assert_eq!(h.tree.node("/q").unwrap().stat().cversion, 4);
    }

    #[test]
    fn create_errors_in_zookeeper_order() {
        let mut h = Harness::new();
        h.run(&create("/e", CreateMode::Ephemeral)).unwrap();
        assert_eq!(
            h.run(&create("/e", CreateMode::Persistent)),
            Err(ErrorCode::NodeExists)
        );
        assert_eq!(
            h.run(&create("/e/c", CreateMode::Persistent)),
            Err(ErrorCode::NoChildrenForEphemerals)
        );
        assert_eq!(
            h.run(&create("/x/c", CreateMode::Persistent)),
            Err(ErrorCode::NoNode)
        );
        assert_eq!(
            h.run(&create("/a/", CreateMode::Persistent)),
            Err(ErrorCode::NoNode)
        );
        assert_eq!(
            h.run(&create("/a//", CreateMode::PersistentSequential)),
            Err(ErrorCode::NoNode)
        );
        assert_eq!(
            h.run(&create("/", CreateMode::Persistent)),
            Err(ErrorCode::NodeExists)
        );
        assert_eq!(
            h.run(&create("/a/.", CreateMode::Persistent)),
            Err(ErrorCode::NoNode)
        );
        assert_eq!(
            h.run(&create("/.", CreateMode::Persistent)),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            h.run(&create("a", CreateMode::Persistent)),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            h.run(&create("/zookeeper", CreateMode::Persistent)),
            Err(ErrorCode::NodeExists)
        );
        let no_acl = WriteOp::Create {
            path: "/n".into(),
            data: Some(vec![]),
            acl: vec![],
            mode: CreateMode::Persistent,
            ttl: -1,
        };
        assert_eq!(h.run(&no_acl), Err(ErrorCode::InvalidAcl));
        // /zookeeper/config is read-only.
        assert_eq!(
            h.run(&create("/zookeeper/config/x", CreateMode::Persistent)),
            Err(ErrorCode::NoAuth)
        );
        assert_eq!(h.prep.outstanding(), 0);
    }

    #[test]
    fn ephemeral_sequential_and_stats() {
        let mut h = Harness::new();
        let r = h
            .run(&create("/lock-", CreateMode::EphemeralSequential))
            .unwrap();
        let OpResult::Create { path, stat, .. } = r else {
            panic!()
        };
        // The root's cversion starts at 0 (ZooKeeper's own nodes do not count).
        assert_eq!(path, "/lock-0000000000");
        assert_eq!(stat.ephemeral_owner, S1);
        assert_eq!(h.tree.ephemerals(S1), vec![path]);
    }

    /// Without extended types (ZooKeeper's default), a TTL create fails with
    /// Unimplemented, alone or inside a multi (per op, Ok before it), and
    /// nothing is recorded; containers and plain creates are unaffected.
    #[test]
    fn ttl_creates_need_extended_types() {
        let mut h = Harness::new();
        h.prep.set_extended_types(false);
        let mk = |path: &str, mode| WriteOp::Create {
            path: path.into(),
            data: Some(vec![]),
            acl: Acl::open_unsafe(),
            mode,
            ttl: if mode == CreateMode::PersistentWithTtl {
                1000
            } else {
                -1
            },
        };
        assert_eq!(
            h.prep(S1, &[], &mk("/t", CreateMode::PersistentWithTtl)),
            Err(ErrorCode::Unimplemented)
        );
        let multi = WriteOp::Multi(vec![
            mk("/a", CreateMode::Persistent),
            mk("/t", CreateMode::PersistentWithTtl),
        ]);
        assert_eq!(
            h.prep(S1, &[], &multi),
            Ok(TxnBody::Multi(vec![
                TxnBody::Error { err: ErrorCode::Ok },
                TxnBody::Error {
                    err: ErrorCode::Unimplemented
                },
            ]))
        );
        assert_eq!(h.prep.outstanding(), 0);
        assert!(h.run(&mk("/c", CreateMode::Container)).is_ok());
        h.prep.set_extended_types(true);
        assert!(h.run(&mk("/t", CreateMode::PersistentWithTtl)).is_ok());
    }

    #[test]
    fn ttl_and_container_rules() {
        let mut h = Harness::new();
        let mk = |mode, ttl| WriteOp::Create {
            path: "/t".into(),
            data: Some(vec![]),
            acl: Acl::open_unsafe(),
            mode,
            ttl,
        };
        assert_eq!(
            h.run(&mk(CreateMode::PersistentWithTtl, 0)),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            h.run(&mk(CreateMode::PersistentWithTtl, -1)),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            h.run(&mk(CreateMode::PersistentWithTtl, TTL_MAX + 1)),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            h.run(&mk(CreateMode::Persistent, 0)),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            h.run(&mk(CreateMode::Container, 5)),
            Err(ErrorCode::BadArguments)
        );
        let OpResult::Create { stat, extended, .. } =
            h.run(&mk(CreateMode::PersistentWithTtl, TTL_MAX)).unwrap()
        else {
            panic!()
        };
        // Clients see ephemeralOwner 0 (DataNode.copyStat); the tree keeps the TTL.
        assert_eq!((stat.ephemeral_owner, extended), (0, true));
        assert_eq!(
            EphemeralType::of(h.tree.node("/t").unwrap().stat().ephemeral_owner),
            EphemeralType::Ttl(TTL_MAX)
        );
        // TTL nodes may have children (they are not ephemeral).
        h.run(&create("/t/c", CreateMode::Persistent)).unwrap();

        h.run(&create("/c", CreateMode::Container)).unwrap();
        assert_eq!(
            h.tree.node("/c").unwrap().stat().ephemeral_owner,
            CONTAINER_EPHEMERAL_OWNER
        );
        assert_eq!(h.tree.stat("/c").unwrap().ephemeral_owner, 0);
        h.run(&create("/c/x", CreateMode::Persistent)).unwrap();
        let dc = WriteOp::DeleteContainer { path: "/c".into() };
        assert_eq!(h.run(&dc), Err(ErrorCode::NotEmpty));
        h.run(&WriteOp::Delete {
            path: "/c/x".into(),
            version: -1,
        })
        .unwrap();
        assert_eq!(h.tree.expired_containers_and_ttls(0), vec!["/c"]);
        assert_eq!(h.run(&dc), Ok(OpResult::Delete));
        assert_eq!(h.run(&dc), Err(ErrorCode::NoNode));
        h.run(&create("/e", CreateMode::Ephemeral)).unwrap();
        assert_eq!(
            h.run(&WriteOp::DeleteContainer { path: "/e".into() }),
            Err(ErrorCode::BadVersion)
        );
        assert_eq!(
            h.run(&WriteOp::DeleteContainer {
                path: "/zookeeper".into()
            }),
            Err(ErrorCode::BadArguments)
        );
    }

    #[test]
    fn delete_and_versions() {
        let mut h = Harness::new();
        h.run(&create("/a", CreateMode::Persistent)).unwrap();
        h.run(&create("/a/b", CreateMode::Persistent)).unwrap();
        assert_eq!(
            h.run(&WriteOp::Delete {
                path: "/a".into(),
                version: -1
            }),
            Err(ErrorCode::NotEmpty)
        );
        assert_eq!(
            h.run(&WriteOp::Delete {
                path: "/a/b".into(),
                version: 3
            }),
            Err(ErrorCode::BadVersion)
        );
        assert_eq!(
            h.run(&WriteOp::Delete {
                path: "/a/x".into(),
                version: -1
            }),
            Err(ErrorCode::NoNode)
        );
        assert_eq!(
            h.run(&WriteOp::Delete {
                path: "/zookeeper".into(),
                version: -1
            }),
            Err(ErrorCode::BadArguments)
        );
        assert_eq!(
            h.run(&WriteOp::Delete {
                path: "/".into(),
                version: -1
            }),
            Err(ErrorCode::BadArguments)
        );
        let set = |v| WriteOp::SetData {
            path: "/a/b".into(),
            data: Some(b"x".to_vec()),
            version: v,
        };
        assert!(matches!(h.run(&set(0)), Ok(OpResult::SetData { stat }) if stat.version == 1));
        assert_eq!(h.run(&set(0)), Err(ErrorCode::BadVersion));
        assert!(matches!(h.run(&set(-1)), Ok(OpResult::SetData { stat }) if stat.version == 2));
        assert_eq!(
            h.run(&WriteOp::Check {
                path: "/a/b".into(),
                version: 1
            }),
            Err(ErrorCode::BadVersion)
        );
        assert_eq!(
            h.run(&WriteOp::Check {
                path: "/a/b".into(),
                version: 2
            }),
            Ok(OpResult::Check)
        );
        assert_eq!(
            h.run(&WriteOp::SetData {
                path: "/a/".into(),
                data: Some(vec![]),
                version: -1
            }),
            Err(ErrorCode::BadArguments)
        );
        h.run(&WriteOp::Delete {
            path: "/a/b".into(),
            version: 2,
        })
        .unwrap();
        // Pipelined: a pending delete makes a later delete of the parent legal.
        h.run(&create("/a/b", CreateMode::Persistent)).unwrap();
        h.prep(
            S1,
            &[],
            &WriteOp::Delete {
                path: "/a/b".into(),
                version: -1,
            },
        )
        .unwrap();
        h.prep(
            S1,
            &[],
            &WriteOp::Delete {
                path: "/a".into(),
                version: -1,
            },
        )
        .unwrap();
        assert_eq!(
            h.prep(
                S1,
                &[],
                &WriteOp::Delete {
                    path: "/a".into(),
                    version: -1
                }
            ),
            Err(ErrorCode::NoNode)
        );
        assert!(h.apply_all().iter().all(Result::is_ok));
        assert!(h.tree.stat("/a").is_none());
    }

    fn any_op() -> impl proptest::strategy::Strategy<Value = WriteOp> {
        use proptest::prelude::*;
        let path = "[/a.\\x00]{0,6}";
        let single = prop_oneof![
            (path, 0i32..7, -2i64..3).prop_map(|(path, f, ttl)| WriteOp::Create {
                path,
                data: Some(vec![]),
                acl: Acl::open_unsafe(),
                mode: CreateMode::from_flag(f).unwrap(),
                ttl,
            }),
            (path, -1i32..2).prop_map(|(path, version)| WriteOp::Delete { path, version }),
            (path, -1i32..2).prop_map(|(path, version)| WriteOp::SetData {
                path,
                data: Some(vec![1]),
                version
            }),
            (path, -1i32..2).prop_map(|(path, version)| WriteOp::Check { path, version }),
            path.prop_map(|path| WriteOp::DeleteContainer { path }),
        ];
        prop_oneof![
            3 => single.clone(),
            1 => proptest::collection::vec(single, 0..4).prop_map(WriteOp::Multi),
        ]
    }

    proptest::proptest! {
        /// Arbitrary (mostly invalid) paths and modes: prep never panics,
        /// whatever it accepts applies without error, and the tree stays
        /// consistent.
        #[test]
        fn hostile_ops_never_panic(ops in proptest::collection::vec(any_op(), 1..30)) {
            let mut h = Harness::new();
            for op in &ops {
                let _ = h.prep(S1, &[], op);
            }
            for r in h.apply_all() {
                match r {
                    Ok(OpResult::Multi(rs)) => {
                        let failed = rs.iter().any(Result::is_err);
                        proptest::prop_assert!(!failed || rs.iter().all(Result::is_err));
                    }
                    other => proptest::prop_assert!(other.is_ok(), "{:?}", other),
                }
            }
            proptest::prop_assert!(h.tree.check_invariants().is_ok());
        }
    }

    #[test]
    fn version_wraps_past_minus_one() {
        assert_eq!(check_and_inc_version(i32::MAX, -1), Ok(i32::MIN));
        assert_eq!(check_and_inc_version(-2, -1), Ok(0));
        assert_eq!(check_and_inc_version(5, 5), Ok(6));
        assert_eq!(check_and_inc_version(5, 4), Err(ErrorCode::BadVersion));
    }

    #[test]
    fn acl_checks_and_set_acl() {
        let mut h = Harness::new();
        let bob = vec![Id::new("digest", &digest("bob:secret"))];
        let only_bob = WriteOp::Create {
            path: "/p".into(),
            data: Some(vec![]),
            acl: vec![Acl {
                perms: perms::ALL,
                id: Id::new("auth", ""),
            }],
            mode: CreateMode::Persistent,
            ttl: -1,
        };
        assert_eq!(h.prep(S1, &[], &only_bob), Err(ErrorCode::InvalidAcl));
        h.prep(S1, &bob, &only_bob).unwrap();
        h.apply_all();
        assert_eq!(
            h.tree.get_acl("/p").unwrap().0,
            vec![Acl {
                perms: perms::ALL,
                id: bob[0].clone()
            }]
        );
        let child = create("/p/c", CreateMode::Persistent);
        assert_eq!(h.prep(S2, &[], &child), Err(ErrorCode::NoAuth));
        let sup = vec![Id::new("super", "")];
        h.prep(S2, &sup, &child).unwrap();
        let set = |v| WriteOp::SetData {
            path: "/p".into(),
            data: Some(vec![]),
            version: v,
        };
        assert_eq!(h.prep(S2, &[], &set(-1)), Err(ErrorCode::NoAuth));
        // A pending setACL is what later prepares check against.
        let open = WriteOp::SetAcl {
            path: "/p".into(),
            acl: Acl::open_unsafe(),
            version: 0,
        };
        assert_eq!(h.prep(S2, &[], &open), Err(ErrorCode::NoAuth));
        h.prep(S1, &bob, &open).unwrap();
        h.prep(S2, &[], &set(-1)).unwrap();
        assert_eq!(h.prep(S1, &bob, &open), Err(ErrorCode::BadVersion));
        let res = h.apply_all();
        assert!(res.iter().all(Result::is_ok), "{res:?}");
        assert_eq!(h.tree.stat("/p").unwrap().aversion, 1);
        let read = WriteOp::Check {
            path: "/zookeeper/config".into(),
            version: -1,
        };
        assert_eq!(h.run(&read), Ok(OpResult::Check));
        let bad = WriteOp::SetAcl {
            path: "/p".into(),
            acl: vec![],
            version: -1,
        };
        assert_eq!(h.run(&bad), Err(ErrorCode::InvalidAcl));
    }

    #[test]
    fn failed_multi_reports_exact_errors_and_leaves_no_trace() {
        let mut h = Harness::new();
        h.run(&create("/a", CreateMode::Persistent)).unwrap();
        let multi = WriteOp::Multi(vec![
            create("/q-", CreateMode::PersistentSequential),
            create("/a/b", CreateMode::Persistent),
            WriteOp::SetData {
                path: "/a".into(),
                data: Some(vec![]),
                version: 7,
            },
            WriteOp::Delete {
                path: "/a".into(),
                version: -1,
            },
        ]);
        let body = h.prep(S1, &[], &multi).unwrap();
        assert_eq!(
            body,
            TxnBody::Multi(vec![
                TxnBody::Error { err: ErrorCode::Ok },
                TxnBody::Error { err: ErrorCode::Ok },
                TxnBody::Error {
                    err: ErrorCode::BadVersion
                },
                TxnBody::Error {
                    err: ErrorCode::RuntimeInconsistency
                },
            ])
        );
        assert_eq!(h.prep.outstanding(), 0);
        // The rolled-back sequential create does not consume a number.
        let TxnBody::Create { path, .. } = h
            .prep(S1, &[], &create("/q-", CreateMode::PersistentSequential))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(path, "/q-0000000001");
        let res = h.apply_all();
        assert_eq!(
            res[0],
            Ok(OpResult::Multi(vec![
                Err(ErrorCode::Ok),
                Err(ErrorCode::Ok),
                Err(ErrorCode::BadVersion),
                Err(ErrorCode::RuntimeInconsistency)
            ]))
        );
        assert!(h.tree.stat("/a/b").is_none());
        assert_eq!(h.tree.stat("/a").unwrap().version, 0);
        assert!(h.tree.stat("/q-0000000001").is_some());
    }

    #[test]
    fn failed_multi_restores_earlier_pending_records() {
        let mut h = Harness::new();
        h.run(&create("/a", CreateMode::Persistent)).unwrap();
        // A pending setData, then a failing multi touching the same node.
        h.prep(
            S1,
            &[],
            &WriteOp::SetData {
                path: "/a".into(),
                data: Some(vec![]),
                version: 0,
            },
        )
        .unwrap();
        let multi = WriteOp::Multi(vec![
            WriteOp::SetData {
                path: "/a".into(),
                data: Some(vec![]),
                version: 1,
            },
            WriteOp::Check {
                path: "/nope".into(),
                version: -1,
            },
        ]);
        let TxnBody::Multi(b) = h.prep(S1, &[], &multi).unwrap() else {
            panic!()
        };
        assert_eq!(
            b[1],
            TxnBody::Error {
                err: ErrorCode::NoNode
            }
        );
        // The earlier pending version 1 is still what prep sees.
        assert!(h
            .prep(
                S1,
                &[],
                &WriteOp::SetData {
                    path: "/a".into(),
                    data: Some(vec![]),
                    version: 1
                }
            )
            .is_ok());
        assert!(h.apply_all().iter().all(Result::is_ok));
        assert_eq!(h.tree.stat("/a").unwrap().version, 2);
    }

    #[test]
    fn successful_multi_sees_its_own_changes() {
        let mut h = Harness::new();
        let multi = WriteOp::Multi(vec![
            create("/m", CreateMode::Persistent),
            create("/m/x", CreateMode::Persistent),
            WriteOp::SetData {
                path: "/m".into(),
                data: Some(b"v".to_vec()),
                version: 0,
            },
            WriteOp::Check {
                path: "/m".into(),
                version: 1,
            },
            WriteOp::Delete {
                path: "/m/x".into(),
                version: 0,
            },
        ]);
        let r = h.run(&multi).unwrap();
        let OpResult::Multi(rs) = r else { panic!() };
        assert!(rs.iter().all(Result::is_ok), "{rs:?}");
        // Clients see cversion 2: one child create and one delete.
        let s = h.tree.stat("/m").unwrap();
        assert_eq!((s.version, s.cversion, s.num_children), (1, 2, 0));
        assert_eq!(h.run(&WriteOp::Multi(vec![])), Ok(OpResult::Multi(vec![])));
        let nested = WriteOp::Multi(vec![WriteOp::Multi(vec![])]);
        assert_eq!(h.run(&nested), Err(ErrorCode::MarshallingError));
    }

    #[test]
    fn close_session_includes_pending_creates_and_skips_pending_deletes() {
        let mut h = Harness::new();
        h.run(&create("/e1", CreateMode::Ephemeral)).unwrap();
        h.run(&create("/e2", CreateMode::Ephemeral)).unwrap();
        h.prep(S1, &[], &create("/e3", CreateMode::Ephemeral))
            .unwrap();
        h.prep(
            S1,
            &[],
            &WriteOp::Delete {
                path: "/e1".into(),
                version: -1,
            },
        )
        .unwrap();
        h.prep(S2, &[], &create("/other", CreateMode::Ephemeral))
            .unwrap();
        let zxid = h.zxid + 1;
        let body = h.prep.close_session_txn(&h.tree, S1, zxid);
        assert_eq!(
            body,
            TxnBody::CloseSession {
                ephemerals: vec!["/e2".into(), "/e3".into()]
            }
        );
        h.zxid = zxid;
        h.pending.push(Txn {
            zxid,
            time: 0,
            session: S1,
            cxid: 0,
            body,
        });
        // After the close is prepared, the ephemerals are gone for prep.
        assert_eq!(
            h.prep(
                S2,
                &[],
                &WriteOp::Delete {
                    path: "/e3".into(),
                    version: -1
                }
            ),
            Err(ErrorCode::NoNode)
        );
        assert!(h.apply_all().iter().all(Result::is_ok));
        assert!(h.tree.ephemerals(S1).is_empty());
        assert_eq!(h.tree.ephemerals(S2), vec!["/other"]);
        assert_eq!(h.tree.stat("/").unwrap().num_children, 2);
        h.tree.check_invariants().unwrap();
    }

    #[test]
    fn reset_and_applied_drop_records() {
        let mut h = Harness::new();
        h.prep(S1, &[], &create("/a", CreateMode::Persistent))
            .unwrap();
        assert_eq!(h.prep.outstanding(), 2);
        assert_eq!(
            h.prep(S1, &[], &create("/a", CreateMode::Persistent)),
            Err(ErrorCode::NodeExists)
        );
        h.prep.reset();
        h.pending.clear();
        assert_eq!(h.prep.outstanding(), 0);
        // Without the pending create, /a can be prepared again.
        h.prep(S1, &[], &create("/a", CreateMode::Persistent))
            .unwrap();
        let z = h.zxid;
        h.prep.applied(z - 1);
        assert_eq!(h.prep.outstanding(), 2);
        h.prep.applied(z);
        assert_eq!(h.prep.outstanding(), 0);
    }
}
