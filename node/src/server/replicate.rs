//! The one write path, for a standalone server (an ensemble of one) and every ensemble
//! member alike:
//!
//! - A request of an established session is routed by [`Pipeline::dispatch`]: `addauth`
//!   stays on this server, reads are answered here (behind the session's writes in
//!   flight), `sync` and (under `quorumReads`) reads wait for a ZAB sync, and writes,
//!   session creation and close are [`Pipeline::submit`]ted to the leader.
//! - The leader preps each write for the zxid ZAB will assign ([`Zab::next_zxid`]) and
//!   proposes it; a write that fails prep becomes an error txn (as ZooKeeper's
//!   `OpCode.error`), so the server that took the request learns its outcome from the
//!   commit like any other. A learner forwards (with the connection's auth ids, as
//!   ZooKeeper's `QuorumPacket.authinfo`).
//! - Every server applies committed txns in zxid order ([`Pipeline::release`]) and
//!   answers the requests it took. Only the leader expires sessions; learners report
//!   activity with touches.

use bytes::Bytes;

use crate::core::{Event, Outbound, Ready, Role};
use crate::proto::client::{encode_reply, ReplyHeader, Request, Response};
use crate::proto::jute::{Reader, Writer};
use crate::proto::peer::Sid;
use crate::state::acl::digest_auth_ids;
use crate::state::prep::WriteOp;
use crate::state::txn::{Txn, TxnBody};
use crate::types::{opcode, xid, ErrorCode, Id, SessionId, Zxid};

use super::local::LocalRequest;
use super::observe::txn_hash;
use super::request::{self, error_reply, is_quorum_read, is_write};
use super::snap::Held;
use super::{
    ConnId, Fatal, Forwarded, Observation, Origin, Output, Pipeline, Queued, MAX_QUEUED_PER_SESSION,
};

impl Pipeline {
    /// Routes one request of an established session.
    pub(super) fn dispatch(
        &mut self,
        conn: ConnId,
        session: SessionId,
        xid: i32,
        op: i32,
        req: Request,
    ) -> Result<(), Fatal> {
        self.sessions.touch(session);
        self.touched.insert(session);
        if let Request::Auth {
            scheme,
            auth: secret,
            ..
        } = req
        {
            self.add_auth(conn, &scheme, &secret);
            return Ok(());
        }
        if self.read_only {
            if let Some(req) = self.read_only_request(conn, session, xid, op, req) {
                // Nothing of a read-only session is in flight: answered at once, from
                // this server's tree (a quorum read too: the client allowed stale reads).
                self.read(conn, xid, op, req);
            }
            return Ok(());
        }
        let req = if self.local.get(session).is_some() {
            match self.local_request(conn, session, xid, op, req)? {
                LocalRequest::Answered => return Ok(()),
                LocalRequest::Continue(req) => req,
            }
        } else {
            req
        };
        if self.queues.get(&session).map_or(0, |q| q.len()) >= MAX_QUEUED_PER_SESSION {
            tracing::info!("closing connection: session 0x{session:x} has {MAX_QUEUED_PER_SESSION} requests waiting");
            self.close_conn(conn);
            return Ok(());
        }
        if is_write(op) {
            let auth = self
                .conns
                .get(&conn)
                .map(|c| c.auth.clone())
                .unwrap_or_default();
            let fwd = match req {
                Request::CloseSession => Forwarded::CloseSession,
                req => {
                    let mut w = Writer::new();
                    req.write_body(&mut w);
                    Forwarded::Client {
                        opcode: op,
                        auth,
                        body: w.into_bytes().to_vec(),
                    }
                }
            };
            let origin = Origin::Client {
                conn,
                xid,
                opcode: op,
            };
            self.queues
                .entry(session)
                .or_default()
                .push_back(Queued::InFlight { xid });
            return self.submit(fwd, session, xid, Some(origin));
        }
        let quorum_read = self.config.quorum_reads && is_quorum_read(op);
        // Deliberately broken (sim bites test): a sync is answered like a local read,
        // without the leader's SYNC, so a read after it may miss committed writes.
        #[cfg(madsim)]
        let sync =
            op == opcode::SYNC && !crate::broken::active(crate::broken::Bug::SyncWithoutLeader);
        #[cfg(not(madsim))]
        let sync = op == opcode::SYNC;
        if sync || quorum_read {
            let origin = match req {
                Request::Sync { path } => Origin::Sync { conn, xid, path },
                req => Origin::QuorumRead {
                    conn,
                    xid,
                    opcode: op,
                    req,
                },
            };
            let id = self.next_sync;
            self.next_sync += 1;
            self.syncs.insert(id, (session, xid));
            self.queues
                .entry(session)
                .or_default()
                .push_back(Queued::InFlight { xid });
            self.pending.insert((session, xid), origin);
            if self.zab.sync(id).is_err() {
                self.syncs.remove(&id);
                self.fail_pending(session, xid, ErrorCode::ConnectionLoss);
            }
            return Ok(());
        }
        let q = self.queues.entry(session).or_default();
        if q.is_empty() {
            self.read(conn, xid, op, req);
        } else {
            q.push_back(Queued::Read {
                conn,
                xid,
                opcode: op,
                req,
            });
        }
        Ok(())
    }

    /// `addauth`: only the digest scheme is known. ZooKeeper 3.8 (the running server)
    /// answers a failure with one AuthFailed frame and closes; no AuthFailed
    /// notification follows on the wire.
    fn add_auth(&mut self, conn: ConnId, scheme: &str, secret: &[u8]) {
        let ids = if scheme == "digest" {
            digest_auth_ids(secret, self.config.super_digest.as_deref())
        } else {
            Vec::new()
        };
        if ids.is_empty() {
            tracing::info!("authentication failed for scheme {scheme:?}");
            self.stats.auth_failed += 1;
            self.reply(
                conn,
                xid::AUTH,
                error_reply(xid::AUTH, 0, ErrorCode::AuthFailed),
            );
            self.close_conn(conn);
            return;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            for id in ids {
                if !c.auth.contains(&id) {
                    c.auth.push(id);
                }
            }
        }
        self.reply(conn, xid::AUTH, error_reply(xid::AUTH, 0, ErrorCode::Ok));
    }

    /// Hands a write to ZAB: prepped and proposed here if leading, else forwarded.
    /// `origin` is the request to answer when its txn commits (none for the server's
    /// own writes: expiry, reaping, closing an orphaned session).
    pub(super) fn submit(
        &mut self,
        fwd: Forwarded,
        session: SessionId,
        cxid: i32,
        origin: Option<Origin>,
    ) -> Result<(), Fatal> {
        if let Some(origin) = origin {
            self.pending.insert((session, cxid), origin);
        }
        if self.is_leader() {
            let me = self.zab.sid();
            return self.leader_prep_and_propose(fwd, session, cxid, me);
        }
        if let Err(e) = self.zab.forward(session, cxid, fwd.encode()) {
            tracing::debug!("cannot forward a write: {e:?}");
            self.fail_pending(session, cxid, ErrorCode::ConnectionLoss);
        }
        Ok(())
    }

    /// ZooKeeper's PrepRequestProcessor for the txn ZAB will assign next.
    pub(super) fn prep(
        &mut self,
        session: SessionId,
        auth: &[Id],
        op: &WriteOp,
    ) -> Result<TxnBody, ErrorCode> {
        let zxid = self
            .zab
            .next_zxid()
            .unwrap_or(self.zab.last_logged_zxid() + 1);
        // `checkSession`: a write of a session that is closed, expired or closing fails
        // with SessionExpired (session 0 is the server's own: container and TTL
        // reaping). Only the leader preps, and its table is the committed state: a
        // learner that resumed a session from a table that lags cannot make it write.
        // Deliberately broken (sim bites test): the leader takes writes of any session.
        #[cfg(madsim)]
        let checked = !crate::broken::active(crate::broken::Bug::SessionsNotValidated);
        #[cfg(not(madsim))]
        let checked = true;
        let known =
            session == 0 || self.sessions.contains(session) || self.creating.contains(&session);
        let refuse_ephemerals = if !checked || known {
            None
        } else {
            // With local sessions, a session the leader does not know may be a local
            // one: it writes, but owns no ephemeral.
            match self.local_session_at_leader(session) {
                Some(code) => Some(code),
                None => return Err(ErrorCode::SessionExpired),
            }
        };
        // Deliberately broken (sim bites test): the leader lets local sessions own
        // ephemerals.
        #[cfg(madsim)]
        let refuse_ephemerals = refuse_ephemerals
            .filter(|_| !crate::broken::active(crate::broken::Bug::EphemeralWithoutUpgrade));
        self.prepper.refuse_ephemerals(refuse_ephemerals);
        let body = self
            .prepper
            .prepare(&self.tree, session, auth, op, zxid, self.now);
        self.prepper.refuse_ephemerals(None);
        body
    }

    /// Leader: `checkSession`'s owner rule. A global session's client writes are taken
    /// through the server it was last made or resumed through (the first one to write
    /// after a leader change, which forgets owners); through any other, SessionMoved.
    fn check_owner(&mut self, session: SessionId, from: Sid) -> Result<(), ErrorCode> {
        if session == 0 || !self.sessions.contains(session) {
            // the server's own writes; unknown and local sessions are prep's to judge
            return Ok(());
        }
        match self.owners.entry(session) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(from);
                Ok(())
            }
            std::collections::btree_map::Entry::Occupied(o) if *o.get() != from => {
                tracing::info!(
                    "session 0x{session:x} moved to server {}: refusing its write through server {from}",
                    o.get()
                );
                Err(ErrorCode::SessionMoved)
            }
            std::collections::btree_map::Entry::Occupied(_) => Ok(()),
        }
    }

    /// Leader: preps a (local or forwarded) write for the next zxid and proposes it.
    /// `from` is the server that took it (this one, for its own clients).
    fn leader_prep_and_propose(
        &mut self,
        fwd: Forwarded,
        session: SessionId,
        cxid: i32,
        from: Sid,
    ) -> Result<(), Fatal> {
        let body = match fwd {
            Forwarded::CreateSession { timeout_ms } => {
                self.creating.insert(session);
                self.owners.insert(session, from);
                Ok(TxnBody::CreateSession { timeout_ms })
            }
            Forwarded::SetOwner => {
                if self.sessions.contains(session) {
                    self.owners.insert(session, from);
                }
                return Ok(());
            }
            Forwarded::CloseSession => {
                let Some(zxid) = self.zab.next_zxid() else {
                    self.fail_pending(session, cxid, ErrorCode::ConnectionLoss);
                    return Ok(());
                };
                self.sessions.set_closing(session);
                Ok(self.prepper.close_session_txn(&self.tree, session, zxid))
            }
            Forwarded::Client {
                opcode: op,
                auth,
                body,
            } => match Request::read_body(op, &mut Reader::new(&body)) {
                Ok(req) => self.check_owner(session, from).and_then(|()| {
                    request::write_op_for(
                        op,
                        &req,
                        self.config.jute_max_buffer,
                        self.config.extended_types_enabled,
                    )
                    .and_then(|w| self.prep(session, &auth, &w))
                }),
                Err(e) => {
                    tracing::info!("dropping an undecodable forwarded request: {e}");
                    Err(ErrorCode::MarshallingError)
                }
            },
        };
        let body = body.unwrap_or_else(|err| TxnBody::Error { err });
        self.propose_body(session, cxid, body)
    }

    /// Leader: proposes a prepped txn body at the zxid prep assumed.
    pub(super) fn propose_body(
        &mut self,
        session: SessionId,
        cxid: i32,
        body: TxnBody,
    ) -> Result<(), Fatal> {
        let Some(zxid) = self.zab.next_zxid() else {
            self.fail_pending(session, cxid, ErrorCode::ConnectionLoss);
            return Ok(());
        };
        let txn = Txn {
            zxid,
            time: self.now,
            session,
            cxid,
            body,
        };
        match self.zab.propose(Bytes::from(txn.encode())) {
            Ok(z) if z == zxid => Ok(()),
            Ok(z) => Err(Fatal(format!(
                "ZAB assigned zxid 0x{z:x}, prep assumed 0x{zxid:x}"
            ))),
            Err(e) => {
                tracing::debug!("proposal refused: {e:?}");
                self.prepper.reset();
                self.fail_pending(session, cxid, ErrorCode::ConnectionLoss);
                Ok(())
            }
        }
    }

    /// Answers a request taken here that will not complete, and releases its session's
    /// queue.
    fn fail_pending(&mut self, session: SessionId, cxid: i32, err: ErrorCode) {
        let Some(origin) = self.pending.remove(&(session, cxid)) else {
            return;
        };
        match origin {
            Origin::Client { conn, xid, .. }
            | Origin::Sync { conn, xid, .. }
            | Origin::QuorumRead { conn, xid, .. } => {
                let frame = error_reply(xid, self.tree.last_processed_zxid(), err);
                self.reply(conn, xid, frame);
                self.pop_in_flight(session, xid);
            }
            Origin::NewSession { conn, .. } => self.close_conn(conn),
        }
    }

    /// Removes a completed in-flight entry and answers the reads queued behind it.
    fn pop_in_flight(&mut self, session: SessionId, xid: i32) {
        let Some(q) = self.queues.get_mut(&session) else {
            return;
        };
        if let Some(pos) = q
            .iter()
            .position(|e| matches!(e, Queued::InFlight { xid: x } if *x == xid))
        {
            q.remove(pos);
        }
        let mut ready = Vec::new();
        while let Some(Queued::Read { .. }) = q.front() {
            if let Some(Queued::Read {
                conn,
                xid,
                opcode,
                req,
            }) = q.pop_front()
            {
                ready.push((conn, xid, opcode, req));
            }
        }
        if q.is_empty() {
            self.queues.remove(&session);
        }
        for (conn, xid, op, req) in ready {
            self.read(conn, xid, op, req);
        }
    }

    /// The rest of a Ready whose persistence is done: commits applied in zxid order,
    /// then messages, then events.
    pub(super) fn release(&mut self, ready: Ready) -> Result<(), Fatal> {
        for (zxid, payload) in ready.commits {
            self.apply_committed(zxid, &payload)?;
        }
        for out in ready.messages {
            self.release_message(out);
        }
        for ev in ready.events {
            self.on_zab_event(ev)?;
        }
        Ok(())
    }

    /// One of the core's messages: sent (behind a SNAP in flight to that peer), a SNAP
    /// to serialize from the tree as it stands, or a disconnect.
    pub(super) fn release_message(&mut self, out: Outbound) {
        match out {
            Outbound::Disconnect { peer } => {
                // The core gave up on this peer: a fresh connection for what
                // follows, nothing stale queued ahead of it.
                self.snaps.abandon(peer);
                self.drop_snap_parts_from(peer);
                self.out.push_back(Output::Disconnect { peer });
            }
            Outbound::Send { to, msg } => self.send_peer(to, msg),
            Outbound::Durable(ack) => {
                let (to, msg) = ack.into_parts();
                self.send_peer(to, msg);
            }
            Outbound::Snapshot { to, zxid } => {
                if self.snaps.start(to, zxid) {
                    tracing::info!("a new SNAP for server {to} replaces one not sent yet");
                }
                self.out.push_back(Output::SerializeSnap {
                    to,
                    zxid,
                    tree: self.tree.freeze(),
                    sessions: self.sessions.timeouts(),
                });
            }
        }
    }

    /// Sends to a peer, behind the SNAP being serialized for it, if any.
    fn send_peer(&mut self, to: u64, msg: crate::proto::peer::PeerMessage) {
        match self.snaps.send(to, msg) {
            Held::No(msg) => self.out.push_back(Output::Send { to, msg }),
            Held::Yes => {}
            Held::Overflow => {
                tracing::warn!(
                    "server {to} has too many messages waiting behind its SNAP: disconnecting it"
                );
                self.out.push_back(Output::Disconnect { peer: to });
            }
        }
    }

    /// Applies a committed txn and answers the request it came from, if it was taken
    /// here.
    fn apply_committed(&mut self, zxid: Zxid, payload: &[u8]) -> Result<(), Fatal> {
        let txn = Txn::decode(payload)
            .map_err(|e| Fatal(format!("committed txn 0x{zxid:x} is unreadable: {e}")))?;
        if txn.zxid != zxid {
            return Err(Fatal(format!(
                "committed txn 0x{zxid:x} carries zxid 0x{:x}",
                txn.zxid
            )));
        }
        let origin = self.pending.remove(&(txn.session, txn.cxid));
        let in_flight = match &origin {
            Some(Origin::Client { xid, .. }) => Some((txn.session, *xid)),
            _ => None,
        };
        self.apply(origin, txn)?;
        self.observe(|p| Observation::Committed {
            zxid,
            txn_hash: txn_hash(payload),
            digest: p.tree.digest(),
        });
        if let Some((session, xid)) = in_flight {
            self.pop_in_flight(session, xid);
        }
        Ok(())
    }

    /// Applies a committed txn to the tree and the session table, fires its watches and
    /// answers `origin`.
    fn apply(&mut self, origin: Option<Origin>, txn: Txn) -> Result<(), Fatal> {
        let zxid = txn.zxid;
        let outcome = self.tree.apply(&txn);
        self.prepper.applied(zxid);
        self.txns_since_snapshot += 1;
        let closes = matches!(txn.body, TxnBody::CloseSession { .. });
        match &txn.body {
            TxnBody::CreateSession { timeout_ms } => {
                self.sessions.add(txn.session, *timeout_ms);
                self.local_session_upgraded(txn.session);
                let session = txn.session;
                self.observe(|_| Observation::SessionCreated { session, zxid });
            }
            TxnBody::CloseSession { .. } => {
                self.sessions.remove(txn.session);
                self.owners.remove(&txn.session);
                let session = txn.session;
                self.observe(|_| Observation::SessionClosed { session, zxid });
            }
            _ => {}
        }
        self.fire_watches(&outcome);
        match origin {
            Some(Origin::Sync { .. } | Origin::QuorumRead { .. }) => {}
            None => {
                // A session closed elsewhere (an expiry, or its client closed it through
                // another server): its connection here is closed; the client learns of
                // the expiry when it reconnects.
                if closes {
                    if let Some(conn) = self.session_conn.get(&txn.session).copied() {
                        self.close_conn(conn);
                    }
                }
            }
            Some(Origin::NewSession {
                conn,
                timeout_ms,
                passwd,
            }) => self.session_created(conn, txn.session, timeout_ms, passwd)?,
            Some(Origin::Client {
                conn,
                xid,
                opcode: op,
            }) => {
                let header = |err: ErrorCode| ReplyHeader {
                    xid,
                    zxid,
                    err: err.code(),
                };
                if matches!(outcome.result, Err(ErrorCode::SessionMoved)) {
                    // ZooKeeper's FinalRequestProcessor: SessionMoved is a connection
                    // level error; the connection the session left is closed without
                    // an answer (ZOOKEEPER-710).
                    tracing::info!(
                        "session 0x{:x} moved to another server: closing its old connection",
                        txn.session
                    );
                    self.close_conn(conn);
                    return Ok(());
                }
                let (h, resp) = match outcome.result {
                    Err(e) => (header(e), Response::Empty),
                    Ok(r) => (header(ErrorCode::Ok), request::write_response(op, r)),
                };
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.last_zxid = zxid;
                    c.last_op = request::op_name(op);
                }
                self.reply(conn, xid, encode_reply(&h, &resp));
                if closes {
                    self.session_conn.remove(&txn.session);
                    self.close_conn(conn);
                }
            }
        }
        Ok(())
    }

    fn on_zab_event(&mut self, ev: Event) -> Result<(), Fatal> {
        match ev {
            Event::RoleChanged(role) => {
                tracing::info!("role changed: {role:?}");
                #[cfg(madsim)]
                if crate::broken::active(crate::broken::Bug::ObserverNeverRejoins) {
                    let b = &mut self.broken_observed;
                    match role {
                        Role::Observing { .. } => b.0 = true,
                        Role::Looking if b.0 => b.1 = true,
                        _ => {}
                    }
                }
                // Clients reconnect (to this server once it serves again, or another);
                // requests in flight are answered by their sessions' reconnection.
                let conns: Vec<ConnId> = self.conns.keys().copied().collect();
                for conn in conns {
                    self.close_conn(conn);
                }
                self.prepper.reset();
                self.sessions.reopen_closing();
                self.pending.clear();
                self.queues.clear();
                self.syncs.clear();
                // Their connections were closed above: the clients reconnect.
                self.revalidations.clear();
                self.owners.clear();
                self.snaps.clear();
                self.snap_in = None;
                self.leave_read_only(role);
                self.forget_local_sessions();
            }
            Event::Serving { epoch } => {
                self.served = true;
                let role = self.zab.role();
                tracing::info!("serving clients in epoch {epoch} as {role:?}");
                if role == Role::Leading {
                    self.observe(|_| Observation::Leading { epoch });
                }
            }
            Event::Request {
                from,
                session,
                cxid,
                payload,
            } => match Forwarded::decode(&payload) {
                Ok(fwd) => self.leader_prep_and_propose(fwd, session, cxid, from)?,
                Err(e) => {
                    tracing::info!("dropping a malformed request forwarded by server {from}: {e}")
                }
            },
            Event::SyncDone { id } => {
                if let Some(rv) = self.revalidations.remove(&id) {
                    self.finish_revalidation(rv);
                } else if let Some((session, xid)) = self.syncs.remove(&id) {
                    match self.pending.remove(&(session, xid)) {
                        Some(Origin::Sync { conn, xid, path }) => {
                            let zxid = self.tree.last_processed_zxid();
                            let header = ReplyHeader { xid, zxid, err: 0 };
                            self.reply(conn, xid, encode_reply(&header, &Response::Sync { path }));
                        }
                        Some(Origin::QuorumRead {
                            conn,
                            xid,
                            opcode,
                            req,
                        }) => self.read(conn, xid, opcode, req),
                        _ => {}
                    }
                    self.pop_in_flight(session, xid);
                }
            }
            Event::SessionTouches { touches, .. } => {
                for t in touches {
                    self.sessions.touch(t.session);
                }
            }
            Event::LeadershipConfirmed { .. } => {}
        }
        Ok(())
    }
}
