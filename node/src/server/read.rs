//! Reads, as ZooKeeper's FinalRequestProcessor answers them: against the tree as applied
//! now, with ACL checks and watch registration; and the watch events of an applied txn.

use crate::proto::client::{
    encode_event, encode_reply, ClientInfo, MultiOp, MultiResult, ReplyHeader, Request, Response,
    WatcherEvent,
};
use crate::state::acl::check_acl;
use crate::state::tree::ApplyOutcome;
use crate::state::watch::SetWatches;
use crate::types::{keeper_state, perms, ErrorCode, Id};

use super::{error_reply, request, ConnId, Pipeline, MAX_REPLY_BYTES};

impl Pipeline {
    /// Queues the watch events of an applied txn. As in ZooKeeper 3.8, a
    /// watcher only hears about a node it may READ.
    pub(super) fn fire_watches(&mut self, outcome: &ApplyOutcome) {
        for (i, (path, ty)) in outcome.triggers.iter().enumerate() {
            let acl = outcome.trigger_acls.get(i);
            for (watcher, ev) in self.watches.trigger(path, *ty) {
                let allowed = match (acl, self.conns.get(&watcher)) {
                    (Some(acl), Some(c)) => check_acl(acl, perms::READ, &c.auth),
                    (None, Some(_)) => true,
                    (_, None) => false,
                };
                if !allowed {
                    continue;
                }
                let frame = encode_event(&WatcherEvent {
                    event_type: ev.event_type.code(),
                    state: keeper_state::SYNC_CONNECTED,
                    path: ev.path.clone(),
                });
                self.send(watcher, frame);
            }
        }
    }

    fn can(&self, conn: ConnId, path: &str, perm: i32) -> Result<(), ErrorCode> {
        let auth = self
            .conns
            .get(&conn)
            .map(|c| c.auth.as_slice())
            .unwrap_or(&[]);
        let (acl, _) = self.tree.get_acl(path)?;
        if check_acl(&acl, perm, auth) {
            Ok(())
        } else {
            Err(ErrorCode::NoAuth)
        }
    }

    /// Answers a read (or a session-local request) against the current tree.
    pub(super) fn read(&mut self, conn: ConnId, xid_: i32, op: i32, req: Request) {
        if !self.conns.contains_key(&conn) {
            return;
        }
        let zxid = self.tree.last_processed_zxid();
        let session = self.conns.get(&conn).map(|c| c.session).unwrap_or(0);
        let result: Result<Response, ErrorCode> = match req {
            Request::Ping => Ok(Response::Empty),
            Request::Exists { path, watch } => match self.tree.stat(&path) {
                Some(stat) => {
                    if watch {
                        self.watches.add_data_watch(&path, conn);
                    }
                    Ok(Response::Stat { stat })
                }
                None => {
                    if watch {
                        self.watches.add_exist_watch(&path, conn);
                    }
                    Err(ErrorCode::NoNode)
                }
            },
            Request::GetData { path, watch } => self
                .can(conn, &path, perms::READ)
                .and_then(|_| self.tree.get_data(&path))
                .map(|(data, stat)| {
                    if watch {
                        self.watches.add_data_watch(&path, conn);
                    }
                    Response::GetData {
                        data: data.map(|d| d.to_vec()),
                        stat,
                    }
                }),
            Request::GetChildren { path, watch } => self
                .can(conn, &path, perms::READ)
                .and_then(|_| self.tree.get_children(&path))
                .map(|(children, _)| {
                    if watch {
                        self.watches.add_child_watch(&path, conn);
                    }
                    Response::GetChildren { children }
                }),
            Request::GetChildren2 { path, watch } => self
                .can(conn, &path, perms::READ)
                .and_then(|_| self.tree.get_children(&path))
                .map(|(children, stat)| {
                    if watch {
                        self.watches.add_child_watch(&path, conn);
                    }
                    Response::GetChildren2 { children, stat }
                }),
            Request::GetAcl { path } => self
                .can(conn, &path, perms::READ | perms::ADMIN)
                .and_then(|_| self.tree.get_acl(&path))
                .map(|(acl, stat)| {
                    // As ZooKeeper 3.8: without ADMIN on the node, digest ids are shown
                    // as `user:x`, not with their password hash.
                    let admin = self.can(conn, &path, perms::ADMIN).is_ok();
                    let acl = if admin {
                        acl
                    } else {
                        acl.into_iter().map(redact_digest).collect()
                    };
                    Response::GetAcl { acl, stat }
                }),
            Request::Sync { path } => Ok(Response::Sync { path }),
            Request::GetAllChildrenNumber { path } => self
                .can(conn, &path, perms::READ)
                .and_then(|_| self.tree.count_all_children(&path))
                .map(|total| Response::GetAllChildrenNumber { total }),
            Request::GetEphemerals { prefix_path } => {
                let mut eph: Vec<String> = self
                    .tree
                    .ephemerals(session)
                    .into_iter()
                    .filter(|p| p.starts_with(&prefix_path))
                    .collect();
                eph.sort();
                Ok(Response::GetEphemerals { ephemerals: eph })
            }
            Request::WhoAmI => {
                let info = self
                    .conns
                    .get(&conn)
                    .map(|c| {
                        // The running ZooKeeper 3.8 lists the `ip` id after the others
                        // (`[digest, ip]`).
                        let (ip, others): (Vec<&Id>, Vec<&Id>) =
                            c.auth.iter().partition(|id| id.scheme == "ip");
                        others
                            .into_iter()
                            .chain(ip)
                            .map(|id| ClientInfo {
                                auth_scheme: id.scheme.clone(),
                                // As ZooKeeper's AuthenticationProvider.getUserName: a
                                // digest id "user:hash" names the user only.
                                user: match id.scheme.as_str() {
                                    "digest" => id.id.split(':').next().unwrap_or("").to_string(),
                                    _ => id.id.clone(),
                                },
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(Response::WhoAmI { client_info: info })
            }
            Request::MultiRead(ops) => {
                // The reply is never built beyond what this connection may still queue
                // (MAX_REPLY_BYTES): a multiRead of many large nodes would otherwise
                // allocate far past the bound before it is checked on send.
                let budget = MAX_REPLY_BYTES;
                let mut size = 0usize;
                let mut results = Vec::with_capacity(ops.len().min(1024));
                for op in ops {
                    if size > budget {
                        break;
                    }
                    results.push(match op {
                        MultiOp::GetData { path, .. } => match self
                            .can(conn, &path, perms::READ)
                            .and_then(|_| self.tree.get_data(&path))
                        {
                            Ok((data, stat)) => MultiResult::GetData {
                                data: data.map(|d| d.to_vec()),
                                stat,
                            },
                            Err(e) => MultiResult::Error { err: e.code() },
                        },
                        MultiOp::GetChildren { path, .. } => match self
                            .can(conn, &path, perms::READ)
                            .and_then(|_| self.tree.get_children(&path))
                        {
                            Ok((children, _)) => MultiResult::GetChildren { children },
                            Err(e) => MultiResult::Error { err: e.code() },
                        },
                        _ => MultiResult::Error {
                            err: ErrorCode::BadArguments.code(),
                        },
                    });
                    size += match results.last() {
                        Some(MultiResult::GetData { data, .. }) => {
                            data.as_ref().map_or(0, Vec::len) + 90
                        }
                        Some(MultiResult::GetChildren { children }) => {
                            children.iter().map(|c| c.len() + 4).sum::<usize>() + 13
                        }
                        _ => 13,
                    };
                }
                if size > budget {
                    if let Some(c) = self.conns.get(&conn) {
                        tracing::info!(remote = %c.remote, "closing connection: the reply to a multiRead would exceed {MAX_REPLY_BYTES} bytes");
                    }
                    self.close_conn(conn);
                    return;
                }
                Ok(Response::MultiRead(results))
            }
            Request::SetWatches {
                relative_zxid,
                data,
                exist,
                child,
            } => {
                let req = SetWatches {
                    relative_zxid,
                    data,
                    exist,
                    child,
                    persistent: vec![],
                    persistent_recursive: vec![],
                };
                self.set_watches(conn, req);
                Ok(Response::Empty)
            }
            Request::SetWatches2 {
                relative_zxid,
                data,
                exist,
                child,
                persistent,
                persistent_recursive,
            } => {
                let req = SetWatches {
                    relative_zxid,
                    data,
                    exist,
                    child,
                    persistent,
                    persistent_recursive,
                };
                self.set_watches(conn, req);
                Ok(Response::Empty)
            }
            Request::AddWatch { path, mode } => match mode {
                // ZooKeeper answers addWatch with an ErrorResponse(0) body, which the
                // Java client reads.
                crate::types::watch_mode::PERSISTENT => {
                    self.watches.add_persistent(&path, conn, false);
                    Ok(Response::ErrorResponse { err: 0 })
                }
                crate::types::watch_mode::PERSISTENT_RECURSIVE => {
                    self.watches.add_persistent(&path, conn, true);
                    Ok(Response::ErrorResponse { err: 0 })
                }
                _ => Err(ErrorCode::BadArguments),
            },
            Request::RemoveWatches { path, watcher_type } => {
                if self.watches.remove_watches(&path, watcher_type, conn) {
                    Ok(Response::Empty)
                } else {
                    Err(ErrorCode::NoWatcher)
                }
            }
            Request::CheckWatches { path, watcher_type } => {
                if self.watches.check_watches(&path, watcher_type, conn) {
                    Ok(Response::Empty)
                } else {
                    Err(ErrorCode::NoWatcher)
                }
            }
            Request::Reconfig { .. } => Err(ErrorCode::ReconfigDisabled),
            Request::Unknown { opcode } => {
                // As ZooKeeper: Unimplemented (zxid -1), then the connection is closed.
                tracing::info!("closing connection: unknown opcode {opcode}");
                let frame = error_reply(xid_, -1, ErrorCode::Unimplemented);
                self.reply(conn, xid_, frame);
                self.close_conn(conn);
                return;
            }
            _ => Err(ErrorCode::Unimplemented),
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.last_op = request::op_name(op);
        }
        let (err, resp) = match result {
            Ok(r) => (0, r),
            Err(e) => (e.code(), Response::Empty),
        };
        let frame = encode_reply(
            &ReplyHeader {
                xid: xid_,
                zxid,
                err,
            },
            &resp,
        );
        self.reply(conn, xid_, frame);
    }

    fn set_watches(&mut self, conn: ConnId, req: SetWatches) {
        let fired = self.watches.set_watches(&self.tree, &req, conn);
        for ev in fired {
            let frame = encode_event(&WatcherEvent {
                event_type: ev.event_type.code(),
                state: keeper_state::SYNC_CONNECTED,
                path: ev.path,
            });
            self.send(conn, frame);
        }
    }
}

/// A digest ACL entry with its hash hidden (`user:x`), as ZooKeeper's getACL shows it
/// to a session without ADMIN on the node.
fn redact_digest(mut a: crate::types::Acl) -> crate::types::Acl {
    if a.id.scheme == crate::state::acl::SCHEME_DIGEST {
        if let Some((user, _)) = a.id.id.split_once(':') {
            a.id.id = format!("{user}:x");
        }
    }
    a
}
