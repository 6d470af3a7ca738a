//! Applying txns to the tree: ZooKeeper's `DataTree.processTxn`, rule for
//! rule, with the watch triggers each change fires.

use super::*;
use crate::state::path::{basename, validate_path};

/// Collects watch triggers while a txn applies.
#[derive(Default)]
struct Sink {
    triggers: Vec<(String, EventType)>,
    acls: Vec<AclList>,
}

impl Sink {
    fn push(&mut self, path: &str, event: EventType, acl: &AclList) {
        self.triggers.push((path.to_string(), event));
        self.acls.push(acl.clone());
    }
}

impl DataTree {
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
                    data.as_deref().map(Bytes::copy_from_slice),
                    acl,
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
                    n.set_data(data.as_deref());
                    n.stat.mtime = txn.time;
                    n.stat.mzxid = txn.zxid;
                    n.stat.version = *version;
                })?;
                if let Some(acl) = self.nodes.get(path).map(|n| n.acl.clone()) {
                    sink.push(path, EventType::NodeDataChanged, &acl);
                }
                Ok(OpResult::SetData {
                    stat: client_stat(stat),
                })
            }
            TxnBody::SetAcl { path, acl, version } => {
                let acl = self.acls.intern(acl);
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
    pub(super) fn update(
        &mut self,
        path: &str,
        f: impl FnOnce(&mut DataNode),
    ) -> Result<Stat, ErrorCode> {
        let n = std::sync::Arc::make_mut(self.nodes.get_mut(path).ok_or(ErrorCode::NoNode)?);
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
        data: Option<Bytes>,
        acl: &[Acl],
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
        let child_name = basename(path).to_string();
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
        let node = DataNode::new(data, self.acls.intern(acl), stat);
        self.digest = self.digest.wrapping_add(node_digest(path, &node));
        self.data_size += path.len() as i64 + node.data.len() as i64;
        let stat = node.stat;
        sink.push(path, EventType::NodeCreated, &node.acl);
        self.nodes
            .insert(path.to_string(), std::sync::Arc::new(node));
        self.register_owner(path, ephemeral_owner);
        self.push_children_changed(parent_path, sink);
        Ok(stat)
    }

    /// Fires `NodeChildrenChanged` on `parent_path` with the parent's ACL.
    fn push_children_changed(&self, parent_path: &str, sink: &mut Sink) {
        if let Some(acl) = self.nodes.get(parent_path).map(|n| &n.acl) {
            sink.push(parent_path, EventType::NodeChildrenChanged, acl);
        }
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
        let child_name = basename(path);
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
        self.push_children_changed(parent_path, sink);
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

    pub(super) fn register_owner(&mut self, path: &str, owner: i64) {
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
}
