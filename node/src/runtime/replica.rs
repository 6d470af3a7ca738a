//! The processor's replicated mode: the same prep and apply steps as the
//! standalone path, with ZAB (the sans-IO `core::Zab`) between them.
//!
//! - The leader preps each write for the zxid ZAB will assign and proposes
//!   it; a write that fails prep becomes an error txn (as ZooKeeper's
//!   `OpCode.error`), so the server that took the request learns its outcome
//!   from the commit like any other.
//! - A learner forwards writes, session creation and close to the leader
//!   (with the connection's auth ids, as ZooKeeper's QuorumPacket.authinfo)
//!   and answers them when their txn commits.
//! - Every server applies committed txns in zxid order. Each session's
//!   requests are answered in FIFO order: a read waits behind that session's
//!   writes in flight.
//! - Only the leader expires sessions; learners report activity with touches.
//! - A reconnect for a session this server does not know (or is closing) is answered
//!   only after a ZAB sync (see [`Processor::revalidate`]): a lagging table never
//!   answers "expired" for a live session.
//! - Durability before messages: persist actions are executed and fsynced
//!   before `all_persisted` is reported, and only the core turns that into
//!   ACKs.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use crate::core::{Event, Outbound, PersistAction, Role, Zab};
use crate::proto::client::{encode_reply, ReplyHeader, Request, Response};
use crate::proto::jute::{JuteError, Reader, Writer};
use crate::proto::peer::{PeerMessage, Sid};
use crate::state::txn::{Txn, TxnBody};
use crate::types::{opcode, ErrorCode, Id, SessionId, Zxid};

use super::{ConnId, Fatal, Origin, Processor};
use crate::runtime::peer::{PeerEvent, PeerHandle};

/// A write forwarded from a learner to the leader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Forwarded {
    CreateSession {
        timeout_ms: i32,
    },
    CloseSession,
    /// A client request body (without its header) and the sender's auth ids.
    Client {
        opcode: i32,
        auth: Vec<Id>,
        body: Vec<u8>,
    },
}

impl Forwarded {
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::new();
        match self {
            Forwarded::CreateSession { timeout_ms } => {
                w.write_int(1);
                w.write_int(*timeout_ms);
            }
            Forwarded::CloseSession => w.write_int(2),
            Forwarded::Client { opcode, auth, body } => {
                w.write_int(3);
                w.write_int(*opcode);
                w.write_vec(auth, |w, id| w.write_id(id));
                w.write_buffer(body);
            }
        }
        w.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Forwarded, JuteError> {
        let mut r = Reader::new(bytes);
        let f = match r.read_int()? {
            1 => Forwarded::CreateSession {
                timeout_ms: r.read_int()?,
            },
            2 => Forwarded::CloseSession,
            3 => Forwarded::Client {
                opcode: r.read_int()?,
                auth: r.read_vec(8, |r| r.read_id())?,
                body: r.read_buffer()?.to_vec(),
            },
            k => return Err(JuteError::Invalid(format!("unknown forwarded kind {k}"))),
        };
        if !r.is_empty() {
            return Err(JuteError::Invalid(
                "trailing bytes after a forwarded request".into(),
            ));
        }
        Ok(f)
    }
}

/// One request of a session, waiting for its turn.
pub(super) enum Queued {
    /// A write (or sync) submitted to ZAB, answered when it commits.
    InFlight { xid: i32 },
    /// A read that must wait for the writes before it.
    Read {
        conn: ConnId,
        xid: i32,
        opcode: i32,
        req: Request,
    },
}

/// A reconnect for a session this server's table does not hold (or holds as closing),
/// waiting for a ZAB sync before it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Revalidation {
    /// The client's new connection.
    pub conn: ConnId,
    /// The session it resumes (its password was checked).
    pub session: SessionId,
    /// Syncs made for it so far.
    pub syncs: u8,
}

/// Syncs a revalidation makes while the leader's CloseSession of the session is still
/// outstanding before it gives up (the connection is closed, the client retries).
const REVALIDATION_SYNCS: u8 = 3;

/// The replicated mode's state.
pub struct Replica {
    pub(super) zab: Zab,
    pub(super) peers: PeerHandle,
    /// Local requests waiting for their commit: (session, cxid) -> origin.
    pub(super) pending: BTreeMap<(SessionId, i32), Origin>,
    /// Per-session FIFO of requests not yet answered.
    pub(super) queues: BTreeMap<SessionId, VecDeque<Queued>>,
    /// Sync requests waiting for SyncDone: id -> (session, xid).
    pub(super) syncs: BTreeMap<u64, (SessionId, i32)>,
    pub(super) next_sync: u64,
    /// Sessions with client activity since the last tick (learners report them).
    pub(super) touched: BTreeSet<SessionId>,
    /// Reconnects waiting for their revalidation sync: sync id -> the reconnect.
    pub(super) revalidations: BTreeMap<u64, Revalidation>,
    /// A leader's SNAPs being serialized off the processor, per learner.
    pub(super) snaps: BTreeMap<Sid, SnapInFlight>,
    /// Deliberately broken (sim bites test): this server has been an observer in
    /// broadcast, and lost its leader since (then it never rejoins).
    #[cfg(feature = "broken-observer-never-rejoins")]
    pub(super) broken_observed: (bool, bool),
}

/// A SNAP for one learner, serialized in the background from the tree frozen when the
/// core asked for it; the messages the core sends that learner meanwhile wait behind it,
/// so the learner gets them in the core's order.
pub(super) struct SnapInFlight {
    zxid: Zxid,
    job: super::super::background::Background<Vec<u8>>,
    held: VecDeque<PeerMessage>,
}

impl Replica {
    pub fn new(zab: Zab, peers: PeerHandle) -> Replica {
        Replica {
            zab,
            peers,
            pending: BTreeMap::new(),
            queues: BTreeMap::new(),
            syncs: BTreeMap::new(),
            next_sync: 1,
            touched: BTreeSet::new(),
            revalidations: BTreeMap::new(),
            snaps: BTreeMap::new(),
            #[cfg(feature = "broken-observer-never-rejoins")]
            broken_observed: (false, false),
        }
    }

    pub fn serving(&self) -> bool {
        self.zab.is_serving()
    }

    pub fn is_leader(&self) -> bool {
        matches!(self.zab.role(), Role::Leading)
    }
}

impl Processor {
    fn replica(&mut self) -> &mut Replica {
        self.replica.as_mut().expect("replicated mode")
    }

    /// Reacts to the peer transport.
    pub(super) fn on_peer_event(&mut self, ev: PeerEvent) -> Result<(), Fatal> {
        let r = self.replica();
        // Deliberately broken (sim bites test): an observer that lost its leader stops
        // hearing its peers, so it stays looking forever, serving nobody and applying
        // nothing. Only the liveness phase's convergence check can see it.
        #[cfg(feature = "broken-observer-never-rejoins")]
        if r.broken_observed.1 {
            return Ok(());
        }
        match ev {
            PeerEvent::Connected(sid) => r.zab.peer_connected(sid),
            PeerEvent::Disconnected(sid) => {
                // What was meant for the lost connection goes with it.
                r.snaps.remove(&sid);
                r.zab.peer_disconnected(sid)
            }
            PeerEvent::Message(sid, msg) => r.zab.step(sid, msg),
        }
        self.drive()
    }

    /// One tick in replicated mode.
    pub(super) fn replica_tick(&mut self) -> Result<(), Fatal> {
        self.ticks += 1;
        self.maybe_purge();
        // Revalidations of connections that went away are forgotten (their syncs may
        // never complete if the leader refused them).
        let conns = &self.conns;
        if let Some(r) = self.replica.as_mut() {
            r.revalidations.retain(|_, rv| conns.contains_key(&rv.conn));
        }
        let leader_serving = {
            let r = self.replica();
            r.zab.tick();
            r.serving() && r.is_leader()
        };
        if leader_serving {
            for session in self.sessions.tick() {
                tracing::info!("expiring session 0x{session:x}");
                self.submit(Forwarded::CloseSession, session, 0, None)?;
            }
            for path in self.due_reaps() {
                let op = crate::state::prep::WriteOp::DeleteContainer { path };
                if let Ok(body) = self.prep(0, &[], &op) {
                    self.propose_body(0, 0, body)?;
                }
            }
        } else {
            // A learner tells the leader which of its sessions are alive.
            let touched = std::mem::take(&mut self.replica().touched);
            for session in touched {
                if let Some(s) = self.sessions.get(session) {
                    let timeout = s.timeout_ms;
                    self.replica().zab.touch_session(session, timeout);
                }
            }
        }
        self.drive()
    }

    /// Handles a client request in replicated mode.
    pub(super) fn replica_request(
        &mut self,
        conn: ConnId,
        session: SessionId,
        xid: i32,
        op: i32,
        req: Request,
    ) -> Result<(), Fatal> {
        self.replica().touched.insert(session);
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
            self.replica()
                .queues
                .entry(session)
                .or_default()
                .push_back(Queued::InFlight { xid });
            return self.submit(fwd, session, xid, Some(origin));
        }
        let quorum_read = self.config.quorum_reads && is_quorum_read(op);
        if op == opcode::SYNC || quorum_read {
            let origin = match req {
                Request::Sync { path } => Origin::Sync { conn, xid, path },
                req => Origin::QuorumRead {
                    conn,
                    xid,
                    opcode: op,
                    req,
                },
            };
            let r = self.replica();
            let id = r.next_sync;
            r.next_sync += 1;
            r.syncs.insert(id, (session, xid));
            r.queues
                .entry(session)
                .or_default()
                .push_back(Queued::InFlight { xid });
            r.pending.insert((session, xid), origin);
            if r.zab.sync(id).is_err() {
                r.syncs.remove(&id);
                self.fail_pending(session, xid, ErrorCode::ConnectionLoss);
            }
            return self.drive();
        }
        let r = self.replica();
        let q = r.queues.entry(session).or_default();
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

    /// Revalidates a reconnecting session this server's table does not hold, or holds as
    /// closing (its password was checked): the answer waits for a ZAB sync.
    ///
    /// A learner's table lags behind the leader's: a brand-new session's CreateSession
    /// may be committed, and the client answered by another server, before this server
    /// applies it. Answering "expired" from such a table ends a live session (its
    /// ephemerals vanish, locks and elections built on them break). ZooKeeper asks the
    /// leader (`Learner.validateSession`, a REVALIDATE packet answered from the leader's
    /// session tracker). Here the learner starts a `sync` instead, the one the client's
    /// `sync` uses: its `SyncDone` comes after every txn the leader proposed before the
    /// sync reached it has been committed and applied here, so the session's
    /// CreateSession (committed before the client ever got its id) or CloseSession is in
    /// this server's table by then, and the table answers. No new peer message and no
    /// session state in the core are needed, and the leader takes the same path (its
    /// sync completes at once, or once a CloseSession it is proposing commits).
    ///
    /// If the sync cannot start, or the role changes before it completes, the connection
    /// is closed without an answer: the client tries again (perhaps elsewhere), and is
    /// never told "expired" by a server that does not know. A deposed leader that has not
    /// noticed yet answers syncs from its own history, as ZooKeeper's leader answers
    /// REVALIDATE; with `quorumReads` on the sync also waits for a quorum's heartbeat
    /// round, which a deposed leader does not get.
    pub(super) fn revalidate(&mut self, conn: ConnId, session: SessionId) -> Result<(), Fatal> {
        self.start_revalidation(Revalidation {
            conn,
            session,
            syncs: 0,
        });
        self.drive()
    }

    /// Starts (another) sync for a revalidation, or closes its connection if it cannot.
    fn start_revalidation(&mut self, mut rv: Revalidation) {
        let r = self.replica();
        let id = r.next_sync;
        r.next_sync += 1;
        rv.syncs += 1;
        match r.zab.sync(id) {
            Ok(()) => {
                tracing::debug!(
                    "revalidating session 0x{:x} (sync {id}, attempt {})",
                    rv.session,
                    rv.syncs
                );
                r.revalidations.insert(id, rv);
            }
            Err(e) => {
                tracing::info!(
                    "cannot revalidate session 0x{:x} now ({e:?}): closing the connection",
                    rv.session
                );
                self.close_conn(rv.conn);
            }
        }
    }

    /// Answers a revalidated reconnect from the session table, now that every txn
    /// committed before its sync has been applied.
    fn finish_revalidation(&mut self, rv: Revalidation) {
        if !self.conns.contains_key(&rv.conn) {
            return;
        }
        let session = rv.session;
        if self.sessions.contains(session) {
            self.resume_session(rv.conn, session);
        } else if self.sessions.get(session).is_none() {
            tracing::info!("invalid session 0x{session:x} for client: expired");
            self.refuse_session(rv.conn);
        } else if rv.syncs < REVALIDATION_SYNCS {
            // Closing: the leader is proposing its CloseSession; answer once it is
            // committed (or the session reopened, if the proposal is lost).
            self.start_revalidation(rv);
        } else {
            tracing::info!("session 0x{session:x} is still closing: closing the connection");
            self.close_conn(rv.conn);
        }
    }

    /// Starts a new session in replicated mode: its CreateSession txn goes
    /// through the leader.
    pub(super) fn replica_new_session(
        &mut self,
        conn: ConnId,
        session: SessionId,
        timeout_ms: i32,
        passwd: Vec<u8>,
    ) -> Result<(), Fatal> {
        let origin = Origin::NewSession {
            conn,
            timeout_ms,
            passwd,
        };
        self.submit(
            Forwarded::CreateSession { timeout_ms },
            session,
            0,
            Some(origin),
        )
    }

    /// Sends a write to ZAB: proposed here if leading, else forwarded.
    pub(super) fn submit(
        &mut self,
        fwd: Forwarded,
        session: SessionId,
        cxid: i32,
        origin: Option<Origin>,
    ) -> Result<(), Fatal> {
        if let Some(origin) = origin {
            self.replica().pending.insert((session, cxid), origin);
        }
        if self.replica().is_leader() {
            self.leader_prep_and_propose(fwd, session, cxid)?;
        } else {
            let payload = fwd.encode();
            if let Err(e) = self.replica().zab.forward(session, cxid, payload) {
                tracing::debug!("cannot forward a write: {e:?}");
                self.fail_pending(session, cxid, ErrorCode::ConnectionLoss);
            }
        }
        self.drive()
    }

    /// Leader: preps a (local or forwarded) write for the next zxid and proposes it.
    fn leader_prep_and_propose(
        &mut self,
        fwd: Forwarded,
        session: SessionId,
        cxid: i32,
    ) -> Result<(), Fatal> {
        let body = match fwd {
            Forwarded::CreateSession { timeout_ms } => Ok(TxnBody::CreateSession { timeout_ms }),
            Forwarded::CloseSession => {
                let Some(zxid) = self.replica().zab.next_zxid() else {
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
                Ok(req) => self
                    .write_op_for(op, &req)
                    .and_then(|w| self.prep(session, &auth, &w)),
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
        let Some(zxid) = self.replica().zab.next_zxid() else {
            self.fail_pending(session, cxid, ErrorCode::ConnectionLoss);
            return Ok(());
        };
        let txn = Txn {
            zxid,
            time: self.clock.now_ms(),
            session,
            cxid,
            body,
        };
        match self.replica().zab.propose(Bytes::from(txn.encode())) {
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

    /// Answers a local request that will not complete, and releases its session queue.
    fn fail_pending(&mut self, session: SessionId, cxid: i32, err: ErrorCode) {
        let Some(origin) = self.replica().pending.remove(&(session, cxid)) else {
            return;
        };
        match origin {
            Origin::Client { conn, xid, .. }
            | Origin::Sync { conn, xid, .. }
            | Origin::QuorumRead { conn, xid, .. } => {
                let frame = super::error_reply(xid, self.tree.last_processed_zxid(), err);
                self.reply(conn, xid, frame);
                self.pop_in_flight(session, xid);
            }
            Origin::NewSession { conn, .. } => self.close_conn(conn),
            Origin::Internal => {}
        }
    }

    /// Removes a completed in-flight entry and answers the reads queued behind it.
    fn pop_in_flight(&mut self, session: SessionId, xid: i32) {
        let mut ready = Vec::new();
        {
            let r = self.replica();
            let Some(q) = r.queues.get_mut(&session) else {
                return;
            };
            if let Some(pos) = q
                .iter()
                .position(|e| matches!(e, Queued::InFlight { xid: x } if *x == xid))
            {
                q.remove(pos);
            }
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
                r.queues.remove(&session);
            }
        }
        for (conn, xid, op, req) in ready {
            self.read(conn, xid, op, req);
        }
    }

    /// Executes everything ZAB asks for, until it has nothing more.
    pub(super) fn drive(&mut self) -> Result<(), Fatal> {
        while self.replica().zab.has_ready() {
            let ready = self.replica().zab.ready();
            let mut appended = false;
            for action in ready.persist {
                appended |= self.persist(action)?;
            }
            if appended {
                let storage = &mut self.storage;
                super::sync_blocking(|| storage.sync())
                    .map_err(|e| Fatal(format!("fsync of the transaction log failed: {e}")))?;
            }
            self.replica().zab.all_persisted();
            for (zxid, payload) in ready.commits {
                self.apply_committed(zxid, &payload)?;
            }
            for out in ready.messages {
                let (to, msg) = match out {
                    // The core gave up on this peer: a fresh connection for
                    // what follows, nothing stale queued ahead of it.
                    Outbound::Disconnect { peer } => {
                        self.replica().snaps.remove(&peer);
                        self.replica().peers.disconnect(peer);
                        continue;
                    }
                    Outbound::Send { to, msg } => (to, msg),
                    Outbound::Durable(ack) => ack.into_parts(),
                    Outbound::Snapshot { to, zxid } => {
                        self.start_snap(to, zxid);
                        continue;
                    }
                };
                self.send_peer(to, msg);
            }
            for ev in ready.events {
                self.on_zab_event(ev)?;
            }
        }
        Ok(())
    }

    /// Sends to a peer, behind the SNAP being serialized for it, if any.
    fn send_peer(&mut self, to: Sid, msg: PeerMessage) {
        let r = self.replica();
        match r.snaps.get_mut(&to) {
            Some(snap) => snap.held.push_back(msg),
            None => {
                r.peers.send(to, msg);
            }
        }
    }

    /// Starts serializing a SNAP for `to` from the tree as it is now (O(1) to freeze), so
    /// the leader's writes go on meanwhile; [`Processor::poll_snaps`] sends it.
    fn start_snap(&mut self, to: Sid, zxid: Zxid) {
        let tree = self.tree.freeze();
        let sessions = super::super::recovery::session_list(&self.sessions);
        let mut job = super::super::background::Background::default();
        let encode = move || super::super::recovery::encode_frozen(&tree, &sessions);
        let wake = self.wake.clone();
        if let Err(e) = job.start("snap", &wake, encode) {
            tracing::warn!(
                "cannot start a thread for the SNAP to server {to} ({e}): sending it inline"
            );
            let snapshot = super::super::recovery::encode_snapshot(&self.tree, &self.sessions);
            let msg = PeerMessage::Snap {
                zxid,
                snapshot: Bytes::from(snapshot),
            };
            self.send_peer(to, msg);
            return;
        }
        let snap = SnapInFlight {
            zxid,
            job,
            held: VecDeque::new(),
        };
        if self.replica().snaps.insert(to, snap).is_some() {
            tracing::info!("a new SNAP for server {to} replaces one not sent yet");
        }
    }

    /// Sends every SNAP whose serialization finished, then what waited behind it.
    pub(super) fn poll_snaps(&mut self) {
        let r = self.replica();
        let mut done = Vec::new();
        for (&to, snap) in r.snaps.iter_mut() {
            if let Some(result) = snap.job.poll() {
                done.push((to, result));
            }
        }
        for (to, result) in done {
            let Some(snap) = r.snaps.remove(&to) else {
                continue;
            };
            match result {
                Ok(bytes) => {
                    let msg = PeerMessage::Snap {
                        zxid: snap.zxid,
                        snapshot: Bytes::from(bytes),
                    };
                    r.peers.send(to, msg);
                    for msg in snap.held {
                        r.peers.send(to, msg);
                    }
                }
                Err(e) => {
                    // The learner's sync cannot go on: it starts over on a new connection.
                    tracing::error!("serializing the SNAP for server {to} failed: {e}");
                    r.peers.disconnect(to);
                }
            }
        }
    }

    /// Executes one persist action; returns whether it appended to the log.
    fn persist(&mut self, action: PersistAction) -> Result<bool, Fatal> {
        let fatal = |what: &str, e: crate::storage::StorageError| Fatal(format!("{what}: {e}"));
        match action {
            PersistAction::AppendTxn { zxid, payload } => {
                self.storage
                    .append(zxid, &payload)
                    .map_err(|e| fatal("cannot append to the log", e))?;
                self.last_logged = zxid;
                return Ok(true);
            }
            PersistAction::Truncate { zxid } => {
                self.finish_snapshot(true);
                tracing::info!("TRUNC: dropping log entries after 0x{zxid:x}");
                self.storage
                    .truncate_after(zxid)
                    .map_err(|e| fatal("TRUNC failed", e))?;
                self.last_logged = self.storage.last_logged_zxid();
            }
            PersistAction::ReloadTree { zxid } => {
                self.finish_snapshot(true);
                tracing::info!("reloading the tree at 0x{zxid:x} after TRUNC");
                let rec = super::super::recovery::recover_keeping(
                    self.storage.as_mut(),
                    self.config.commit_log_count,
                )
                .map_err(|e| Fatal(format!("cannot reload the tree: {e}")))?;
                self.reset_state(rec.tree, rec.sessions);
                self.last_logged = rec.last_logged;
                self.tree_loaded(crate::runtime::observe::TreeSource::Trunc);
            }
            PersistAction::SetAcceptedEpoch(e) => self
                .storage
                .set_accepted_epoch(e)
                .map_err(|e| fatal("cannot write acceptedEpoch", e))?,
            PersistAction::SetCurrentEpoch(e) => self
                .storage
                .set_current_epoch(e)
                .map_err(|e| fatal("cannot write currentEpoch", e))?,
            PersistAction::ApplySnapshot { zxid, snapshot } => {
                self.finish_snapshot(true);
                tracing::info!("SNAP: replacing the tree with the leader's snapshot at 0x{zxid:x}");
                let (tree, sessions) = super::super::recovery::decode_snapshot(&snapshot)
                    .map_err(|e| Fatal(format!("the leader's snapshot is unreadable: {e}")))?;
                self.storage
                    .write_snapshot(zxid, &snapshot)
                    .map_err(|e| fatal("cannot save the snapshot", e))?;
                // Whatever the log holds above the snapshot is not the leader's history as
                // of it (a divergent suffix, or txns the leader re-sends after the SNAP):
                // drop it, or the leader's next txns could not follow and a restart would
                // replay the divergent ones over the snapshot. A crash in between leaves
                // the snapshot and that suffix: the restarted learner is not serving until
                // its leader syncs it again.
                if self.storage.last_logged_zxid() > zxid {
                    tracing::info!(
                        "SNAP: dropping the log above 0x{zxid:x} (it ends at 0x{:x})",
                        self.storage.last_logged_zxid()
                    );
                    self.storage
                        .truncate_after(zxid)
                        .map_err(|e| fatal("cannot drop the log above the leader's snapshot", e))?;
                }
                self.reset_state(tree, sessions);
                self.last_logged = zxid;
                self.tree_loaded(crate::runtime::observe::TreeSource::Snap);
            }
        }
        Ok(false)
    }

    /// Replaces the tree and the session table (TRUNC reload or SNAP).
    fn reset_state(&mut self, tree: crate::state::tree::DataTree, sessions: Vec<(SessionId, i32)>) {
        self.tree = tree;
        self.prepper.reset();
        let mut tracker = crate::core::session::SessionTracker::new(self.config.tick_time_ms);
        for (id, timeout) in sessions {
            tracker.add(id, timeout);
        }
        self.sessions = tracker;
    }

    /// Applies a committed txn and answers the local request it came from.
    fn apply_committed(&mut self, zxid: Zxid, payload: &[u8]) -> Result<(), Fatal> {
        let txn = Txn::decode(payload)
            .map_err(|e| Fatal(format!("committed txn 0x{zxid:x} is unreadable: {e}")))?;
        if txn.zxid != zxid {
            return Err(Fatal(format!(
                "committed txn 0x{zxid:x} carries zxid 0x{:x}",
                txn.zxid
            )));
        }
        let key = (txn.session, txn.cxid);
        let origin = self
            .replica()
            .pending
            .remove(&key)
            .unwrap_or(Origin::Internal);
        let (session, xid) = match &origin {
            Origin::Client { xid, .. } => (txn.session, Some(*xid)),
            _ => (txn.session, None),
        };
        self.apply(origin, txn)?;
        if let Some(observe) = &self.observer {
            observe(crate::runtime::observe::Observation::Committed {
                zxid,
                txn_hash: crate::runtime::observe::txn_hash(payload),
                digest: self.tree.digest(),
            });
        }
        if let Some(xid) = xid {
            self.pop_in_flight(session, xid);
        }
        Ok(())
    }

    fn on_zab_event(&mut self, ev: Event) -> Result<(), Fatal> {
        match ev {
            Event::RoleChanged(role) => {
                tracing::info!("role changed: {role:?}");
                #[cfg(feature = "broken-observer-never-rejoins")]
                {
                    let b = &mut self.replica().broken_observed;
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
                let r = self.replica();
                r.pending.clear();
                r.queues.clear();
                r.syncs.clear();
                // Their connections were closed above: the clients reconnect.
                r.revalidations.clear();
                r.snaps.clear();
            }
            Event::Serving { epoch } => {
                let role = self.replica().zab.role();
                tracing::info!("serving clients in epoch {epoch} as {role:?}");
                if let (Some(observe), Role::Leading) = (&self.observer, role) {
                    observe(crate::runtime::observe::Observation::Leading { epoch });
                }
            }
            Event::Request {
                from,
                session,
                cxid,
                payload,
            } => match Forwarded::decode(&payload) {
                Ok(fwd) => self.leader_prep_and_propose(fwd, session, cxid)?,
                Err(e) => {
                    tracing::info!("dropping a malformed request forwarded by server {from}: {e}")
                }
            },
            Event::SyncDone { id } => {
                if let Some(rv) = self.replica().revalidations.remove(&id) {
                    self.finish_revalidation(rv);
                } else if let Some((session, xid)) = self.replica().syncs.remove(&id) {
                    match self.replica().pending.remove(&(session, xid)) {
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

    /// Closes a connection whose session creation can no longer complete,
    /// or proposes closing a session whose client left before it was made.
    pub(super) fn replica_orphan_session(&mut self, session: SessionId) -> Result<(), Fatal> {
        self.submit(Forwarded::CloseSession, session, 0, None)
    }
}

/// Reads that `quorumReads` makes linearizable (each one waits for a sync
/// that a quorum confirmed).
pub fn is_quorum_read(op: i32) -> bool {
    matches!(
        op,
        opcode::EXISTS
            | opcode::GET_DATA
            | opcode::GET_CHILDREN
            | opcode::GET_CHILDREN2
            | opcode::GET_ACL
            | opcode::MULTI_READ
            | opcode::GET_ALL_CHILDREN_NUMBER
    )
}

/// Whether a client opcode is a write that goes through ZAB.
pub fn is_write(op: i32) -> bool {
    matches!(
        op,
        opcode::CREATE
            | opcode::CREATE2
            | opcode::CREATE_CONTAINER
            | opcode::CREATE_TTL
            | opcode::DELETE
            | opcode::SET_DATA
            | opcode::SET_ACL
            | opcode::CHECK
            | opcode::MULTI
            | opcode::CLOSE_SESSION
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_round_trip_and_hostile_bytes() {
        let cases = vec![
            Forwarded::CreateSession { timeout_ms: 4000 },
            Forwarded::CloseSession,
            Forwarded::Client {
                opcode: 1,
                auth: vec![Id::new("digest", "bob:x")],
                body: vec![1, 2, 3],
            },
        ];
        for f in cases {
            assert_eq!(Forwarded::decode(&f.encode()).unwrap(), f);
        }
        assert!(Forwarded::decode(&[0, 0, 0, 9]).is_err());
        assert!(Forwarded::decode(&[0, 0, 0, 3, 0]).is_err());
        let mut long = Forwarded::CloseSession.encode().to_vec();
        long.push(0);
        assert!(Forwarded::decode(&long).is_err());
    }
}
