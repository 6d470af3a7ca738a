//! The request processor: ZooKeeper's Prep -> Sync -> Final pipeline in one task.
//!
//! Every write takes the single txn path: request -> `Prepper` (checks and
//! turns it into a txn with a zxid and the leader's time) -> appended to the
//! log -> one fsync for the whole batch (group commit) -> applied to the
//! tree -> watches fired -> reply. Reads are answered at their place in the
//! batch, after the writes that arrived before them were applied, so each
//! session's requests are answered in FIFO order and a watch event always
//! precedes any reply that shows its change. Standalone is an ensemble of one:
//! the replicated ensemble reuses `prepare_write` and `apply_committed`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use crate::core::session::SessionTracker;
use crate::proto::client::{
    encode_event, encode_reply, ClientInfo, ConnectRequest, ConnectResponse, CreateRequest,
    MultiOp, MultiResult, ReplyHeader, Request, Response, WatcherEvent,
};
use crate::state::acl::{check_acl, digest_auth_ids};
use crate::state::prep::{Prepper, WriteOp};
use crate::state::tree::{ApplyOutcome, DataTree, OpResult};
use crate::state::txn::{Txn, TxnBody};
use crate::state::watch::{SetWatches, WatchManager};
use crate::storage::Storage;
use crate::types::{keeper_state, opcode, perms, xid, CreateMode, ErrorCode, Id, SessionId, Zxid};

use super::clock::SharedClock;
use super::config::ServerConfig;
use super::connection::OUTBOUND_BYTES;
use super::fourlw;
use super::peer::PeerEvent;
use super::stats::ServerStats;

#[path = "replica.rs"]
pub mod replica;

use replica::Replica;

/// A connection's id, unique for the server's lifetime.
pub type ConnId = u64;

/// Messages from connections to the processor.
pub enum Inbound {
    /// A handshake arrived.
    Connect {
        conn: ConnId,
        request: ConnectRequest,
        remote: SocketAddr,
        out: mpsc::Sender<Outgoing>,
        /// Bytes queued on `out` and not yet written.
        queued: Arc<AtomicUsize>,
        closed: watch::Sender<bool>,
    },
    /// A decoded request on an established connection.
    Request {
        conn: ConnId,
        xid: i32,
        opcode: i32,
        req: Request,
    },
    /// A request whose header was read but whose body could not be decoded.
    Undecodable { conn: ConnId, xid: i32 },
    /// The connection has ended.
    Closed { conn: ConnId },
    /// A four-letter word from `remote`; the answer goes back on `reply`.
    FourLetter {
        cmd: String,
        remote: SocketAddr,
        reply: oneshot::Sender<String>,
    },
}

/// Messages from the processor to a connection's writer.
pub enum Outgoing {
    Frame(Bytes),
    Close,
}

/// What the processor knows about one connection.
pub(crate) struct Conn {
    pub out: mpsc::Sender<Outgoing>,
    pub queued: Arc<AtomicUsize>,
    pub closed: watch::Sender<bool>,
    pub remote: SocketAddr,
    /// 0 until the session is established.
    pub session: SessionId,
    pub timeout_ms: i32,
    pub auth: Vec<Id>,
    pub received: u64,
    pub sent: u64,
    pub last_zxid: Zxid,
    pub last_op: &'static str,
    /// Whether the client sent the readOnly byte (and so expects it back).
    pub read_only_present: bool,
    /// Requests not answered yet: xid and the time the processor took them (ms), for the
    /// latency statistics. Replies come in request order.
    pub pending: VecDeque<(i32, u64)>,
    /// Requests that arrived behind the ConnectRequest before the session was
    /// established (a client may pipeline them, as ZooKeeper allows): taken in
    /// order once it is (at most [`EARLY_REQUESTS`]; more closes the connection).
    pub early: VecDeque<(i32, i32, Request)>,
    /// When the connection was established (ms since the epoch), for `cons`.
    pub established_ms: i64,
    /// The xid of the last request answered, and when (ms since the processor started).
    pub last_cxid: i32,
    pub last_response_ms: i64,
    /// This connection's request latencies (`cons`: llat, minlat/avglat/maxlat).
    pub last_latency_ms: u64,
    pub latency: super::stats::Latency,
}

/// Requests a connection may send before its session is established.
const EARLY_REQUESTS: usize = 1024;

impl Conn {
    /// Counts a request taken from this connection at `now_ms` and keeps its xid for the
    /// latency statistics (the oldest is dropped past [`LATENCY_TRACKED`]).
    fn took(&mut self, xid: i32, now_ms: u64) {
        self.received += 1;
        if self.pending.len() == LATENCY_TRACKED {
            self.pending.pop_front();
        }
        self.pending.push_back((xid, now_ms));
    }
}

/// A reply frame that carries only an error code (no response record).
pub(crate) fn error_reply(xid: i32, zxid: Zxid, err: ErrorCode) -> Bytes {
    let header = ReplyHeader {
        xid,
        zxid,
        err: err.code(),
    };
    encode_reply(&header, &Response::Empty)
}

/// Requests per connection whose arrival time is kept for the latency statistics; beyond
/// this, the oldest are no longer measured.
const LATENCY_TRACKED: usize = 1024;

/// Where a write came from and how to answer it.
#[derive(Clone, Debug)]
enum Origin {
    /// A client request on a connection.
    Client { conn: ConnId, xid: i32, opcode: i32 },
    /// A client's `sync`, answered when ZAB reports it done (replicated mode).
    Sync {
        conn: ConnId,
        xid: i32,
        path: String,
    },
    /// A read under `quorumReads`: answered after a linearizable sync.
    QuorumRead {
        conn: ConnId,
        xid: i32,
        opcode: i32,
        req: Request,
    },
    /// A new session's handshake.
    NewSession {
        conn: ConnId,
        timeout_ms: i32,
        passwd: Vec<u8>,
    },
    /// The server itself (session expiry, container/TTL reaping).
    Internal,
}

/// One step of a batch, executed in order once the batch's txns are durable.
enum Work {
    Apply {
        origin: Origin,
        txn: Txn,
    },
    Reply {
        conn: ConnId,
        /// The request's xid; `None` for a frame that answers no request (an event).
        xid: Option<i32>,
        frame: Bytes,
        then_close: bool,
    },
    Read {
        conn: ConnId,
        xid: i32,
        opcode: i32,
        req: Request,
    },
    Reconnect {
        conn: ConnId,
        request: ConnectRequest,
    },
    Closed {
        conn: ConnId,
    },
    FourLetter {
        cmd: String,
        remote: SocketAddr,
        reply: oneshot::Sender<String>,
    },
}

/// Derives a session's password from its id, as ZooKeeper does, so any
/// server of the ensemble can check it.
pub fn session_password(session: SessionId) -> Vec<u8> {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(b"zabkeeper-session-secret");
    h.update(session.to_be_bytes());
    h.finalize()[..16].to_vec()
}

/// The processor's state: the tree, pending changes, sessions, watches, connections.
pub struct Processor {
    pub(crate) config: ServerConfig,
    clock: SharedClock,
    pub(crate) tree: DataTree,
    prepper: Prepper,
    pub(crate) watches: WatchManager,
    pub(crate) sessions: SessionTracker,
    pub(crate) conns: BTreeMap<ConnId, Conn>,
    /// Connections whose session was just established with requests waiting in
    /// [`Conn::early`].
    early_ready: BTreeSet<ConnId>,
    session_conn: BTreeMap<SessionId, ConnId>,
    storage: Box<dyn Storage + Send>,
    /// The zxid of the last txn handed to storage.
    last_logged: Zxid,
    next_session: SessionId,
    txns_since_snapshot: u64,
    snapshot_threshold: u64,
    /// Snapshots started so far, for [`snapshot_threshold`].
    snapshots_started: u64,
    /// Writes snapshots off this task.
    snapshotter: super::snapshotter::Snapshotter,
    /// Notified by background jobs (snapshots, SNAP serialization) when their result is
    /// ready, so the loop collects it at once.
    pub(crate) wake: Arc<tokio::sync::Notify>,
    ticks: u64,
    pub(crate) stats: ServerStats,
    /// When this processor started (ms since the epoch), for `zk_uptime`.
    started_ms: i64,
    /// ZAB and its peers; `None` for a standalone server.
    replica: Option<Replica>,
    /// The harness's observation hook, if one is installed (never in production).
    pub(crate) observer: Option<super::observe::ObserverFn>,
}

/// A fatal condition: the node must stop (a failed fsync is never retried).
#[derive(Debug, thiserror::Error)]
#[error("fatal: {0}")]
pub struct Fatal(pub String);

impl Processor {
    /// Builds the processor from recovered state.
    pub fn new(
        config: ServerConfig,
        clock: SharedClock,
        tree: DataTree,
        sessions: Vec<(SessionId, i32)>,
        storage: Box<dyn Storage + Send>,
        replica: Option<Replica>,
    ) -> Processor {
        let mut tracker = SessionTracker::new(config.tick_time_ms);
        for (id, timeout) in &sessions {
            tracker.add(*id, *timeout);
        }
        // ZooKeeper's initial session id: the time in the middle bits, the server id on top.
        let now = clock.now_ms();
        let base = ((now << 24) as u64 >> 8) as i64 | ((config.my_id as i64 & 0xff) << 56);
        let max_known = sessions.iter().map(|s| s.0).max().unwrap_or(0);
        let last_logged = tree.last_processed_zxid();
        Processor {
            clock,
            tree,
            prepper: Prepper::new(),
            watches: WatchManager::new(),
            sessions: tracker,
            conns: BTreeMap::new(),
            early_ready: BTreeSet::new(),
            session_conn: BTreeMap::new(),
            storage,
            last_logged,
            next_session: base.max(max_known + 1),
            txns_since_snapshot: 0,
            snapshot_threshold: snapshot_threshold(config.snap_count, now as u64, config.my_id, 0),
            snapshots_started: 0,
            snapshotter: Default::default(),
            wake: Arc::new(tokio::sync::Notify::new()),
            ticks: 0,
            started_ms: now,
            stats: ServerStats::default(),
            replica,
            observer: None,
            config,
        }
    }

    /// Installs an observation hook (see [`super::observe`]).
    pub fn set_observer(&mut self, observer: Option<super::observe::ObserverFn>) {
        self.observer = observer;
    }

    /// Called whenever the tree was replaced rather than advanced by a commit (start-up
    /// recovery, SNAP, TRUNC reload): writes this server's ensemble configuration into
    /// `/zookeeper/config` (as ZooKeeper's `initConfigInZKDatabase`; not part of the
    /// digest) and reports the tree's state (zxid, digest) to the observer, if one is
    /// installed.
    pub(crate) fn tree_loaded(&mut self, source: super::observe::TreeSource) {
        if let Some(data) = self.config.config_node_data() {
            self.tree
                .set_config_data(data.as_bytes(), 0, self.clock.now_ms());
        }
        if let Some(observe) = &self.observer {
            observe(super::observe::Observation::TreeLoaded {
                source,
                zxid: self.tree.last_processed_zxid(),
                digest: self.tree.digest(),
            });
        }
    }

    /// Answers a four-letter word from a [`fourlw::Status`] snapshot; `srst` and `crst`
    /// reset the counters they name.
    fn four_letter_word(&mut self, cmd: &str, remote: SocketAddr) -> String {
        let allowed = self.config.four_letter_word_allowed(cmd);
        let status = self.status(fourlw::needs(cmd), remote);
        let text = fourlw::answer(&self.config, &status, cmd);
        if allowed && cmd == "srst" {
            self.stats.reset();
        }
        if allowed && cmd == "crst" {
            for c in self.conns.values_mut() {
                c.received = 0;
                c.sent = 0;
                c.last_zxid = 0;
                c.last_op = "NA";
                c.last_cxid = 0;
                c.last_response_ms = 0;
                c.last_latency_ms = 0;
                c.latency = Default::default();
            }
        }
        text
    }

    /// What the four-letter words report, taken now; `remote` is the asking connection,
    /// which ZooKeeper counts and lists among the connections.
    fn status(&self, needs: fourlw::Needs, remote: SocketAddr) -> fourlw::Status {
        let session_of = |conn: &ConnId| self.conns.get(conn).map(|c| c.session).unwrap_or(0);
        let mut conns: Vec<fourlw::ConnStatus> = self
            .conns
            .values()
            .map(|c| fourlw::ConnStatus {
                remote: Some(c.remote),
                queued: c.pending.len(),
                received: c.received,
                sent: c.sent,
                session: c.session,
                last_op: c.last_op,
                established_ms: c.established_ms,
                timeout_ms: c.timeout_ms,
                last_cxid: c.last_cxid,
                last_zxid: c.last_zxid,
                last_response_ms: c.last_response_ms,
                last_latency_ms: c.last_latency_ms,
                latency: c.latency,
            })
            .collect();
        conns.push(fourlw::ConnStatus {
            remote: Some(remote),
            received: 1,
            ..Default::default()
        });
        let (open_fds, max_fds) = if needs.fds {
            fourlw::file_descriptors()
        } else {
            (None, None)
        };
        let zab = self.zab();
        let mut status = fourlw::Status {
            mode: self.mode_name(),
            serving: zab.is_none_or(|z| z.is_serving()),
            zxid: self.tree.last_processed_zxid(),
            node_count: self.tree.node_count(),
            watch_count: self.watches.count(),
            watch_bytes: self.watches.watched_path_bytes(),
            ephemerals_count: self.tree.ephemerals_count(),
            approximate_data_size: self.tree.approximate_data_size(),
            global_sessions: self.sessions.len(),
            stats: self.stats.clone(),
            conns,
            uptime_ms: self.clock.now_ms() - self.started_ms,
            open_fds,
            max_fds,
            learners: zab.and_then(|z| z.learner_counts()).map(
                |(learners, synced_followers, synced_observers)| fourlw::LearnerStatus {
                    learners,
                    synced_followers,
                    synced_observers,
                },
            ),
            quorum_size: self.config.servers.iter().filter(|s| !s.observer).count(),
            epochs: zab.map(|z| (z.current_epoch(), z.accepted_epoch())),
            ..Default::default()
        };
        if needs.watches {
            for (conn, paths) in self.watches.by_session() {
                status.watches_by_session.insert(session_of(&conn), paths);
            }
            for (path, watchers) in self.watches.by_path() {
                status
                    .watches_by_path
                    .insert(path, watchers.iter().map(session_of).collect());
            }
        }
        if needs.dump {
            status.sessions = self
                .sessions
                .sessions()
                .map(|s| (s.id, s.timeout_ms))
                .collect();
            status.ephemerals = self.tree.all_ephemerals();
        }
        if needs.dirs {
            status.datadir_size = fourlw::dir_size(&self.config.data_dir.join("version-2"));
            status.logdir_size = fourlw::dir_size(&self.config.data_log_dir.join("version-2"));
        }
        status
    }

    /// The server's role as the 4lw report it.
    pub fn mode_name(&self) -> &'static str {
        use crate::core::Role;
        match &self.replica {
            None => "standalone",
            Some(r) => match r.zab.role() {
                Role::Leading => "leader",
                Role::Following { .. } => "follower",
                Role::Observing { .. } => "observer",
                Role::Looking => "looking",
            },
        }
    }

    /// The replicated mode's ZAB state, if any (for 4lw).
    pub fn zab(&self) -> Option<&crate::core::Zab> {
        self.replica.as_ref().map(|r| &r.zab)
    }

    /// Runs until every connection sender is gone or `shutdown` fires.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Inbound>,
        mut peer_rx: Option<mpsc::Receiver<PeerEvent>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), Fatal> {
        let tick = std::time::Duration::from_millis(self.config.tick_time_ms);
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let max_batch = self.config.global_outstanding_limit.max(1);
        let wake = self.wake.clone();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                // A background job finished: collected by end_step below.
                _ = wake.notified() => {}
                _ = ticker.tick() => {
                    if self.replica.is_some() {
                        self.replica_tick()?;
                    } else {
                        self.on_tick()?;
                    }
                }
                ev = recv_opt(&mut peer_rx) => match ev {
                    Some(ev) => self.on_peer_event(ev)?,
                    None => return Err(Fatal("the peer transport stopped".into())),
                },
                m = rx.recv() => match m {
                    None => break,
                    Some(m) => {
                        let mut batch = vec![m];
                        while batch.len() < max_batch {
                            match rx.try_recv() {
                                Ok(m) => batch.push(m),
                                Err(_) => break,
                            }
                        }
                        self.process_batch(batch)?;
                    }
                },
            }
            self.end_step()?;
        }
        self.finish_snapshot(true);
        for (_, c) in std::mem::take(&mut self.conns) {
            let _ = c.out.try_send(Outgoing::Close);
            let _ = c.closed.send(true);
        }
        Ok(())
    }

    /// One tick: expire sessions and reap containers/TTL nodes.
    fn on_tick(&mut self) -> Result<(), Fatal> {
        self.ticks += 1;
        self.maybe_purge();
        let mut work = Vec::new();
        for session in self.sessions.tick() {
            tracing::info!("expiring session 0x{session:x}");
            let body = self
                .prepper
                .close_session_txn(&self.tree, session, self.last_logged + 1);
            self.log_write(Origin::Internal, session, 0, Ok(body), &mut work)?;
        }
        for path in self.due_reaps() {
            let res = self.prep(0, &[], &WriteOp::DeleteContainer { path });
            if res.is_ok() {
                self.log_write(Origin::Internal, 0, 0, res, &mut work)?;
            }
        }
        self.finish(work)
    }

    /// Containers and TTL nodes to delete now: checked every
    /// `znode.container.checkIntervalMs` (empty on other ticks).
    fn due_reaps(&self) -> Vec<String> {
        let every = (self.config.container_check_interval_ms / self.config.tick_time_ms).max(1);
        if self.ticks.is_multiple_of(every) {
            self.tree.expired_containers_and_ttls(self.clock.now_ms())
        } else {
            Vec::new()
        }
    }

    fn prep(
        &mut self,
        session: SessionId,
        auth: &[Id],
        op: &WriteOp,
    ) -> Result<TxnBody, ErrorCode> {
        // The zxid this txn will carry: standalone assigns the next one itself; an
        // ensemble's leader gets ZAB's (a new epoch starts at counter 1).
        let zxid = match &self.replica {
            Some(r) => r.zab.next_zxid().unwrap_or(self.last_logged + 1),
            None => self.last_logged + 1,
        };
        // ZooKeeper's PrepRequestProcessor `checkSession`: a write of a session that is
        // closed, expired or closing fails with SessionExpired (session 0 is the
        // server's own: container and TTL reaping). Only the leader (or a standalone
        // server) preps, and its table is the committed state: a learner that resumed a
        // session from a table that lags cannot make it write.
        // Deliberately broken (sim bites test): the leader takes writes of any session.
        #[cfg(not(feature = "broken-sessions-not-validated"))]
        if session != 0 && !self.sessions.contains(session) {
            return Err(ErrorCode::SessionExpired);
        }
        let time = self.clock.now_ms();
        self.prepper
            .prepare(&self.tree, session, auth, op, zxid, time)
    }

    /// Logs a prepared write (or queues its error reply).
    fn log_write(
        &mut self,
        origin: Origin,
        session: SessionId,
        cxid: i32,
        body: Result<TxnBody, ErrorCode>,
        work: &mut Vec<Work>,
    ) -> Result<(), Fatal> {
        match body {
            Err(err) => {
                if let Origin::Client { conn, xid, .. } = origin {
                    work.push(Work::Reply {
                        conn,
                        xid: Some(xid),
                        frame: error_reply(xid, self.tree.last_processed_zxid(), err),
                        then_close: false,
                    });
                }
                Ok(())
            }
            Ok(body) => {
                let zxid = self.last_logged + 1;
                let txn = Txn {
                    zxid,
                    time: self.clock.now_ms(),
                    session,
                    cxid,
                    body,
                };
                self.storage
                    .append(zxid, &txn.encode())
                    .map_err(|e| Fatal(format!("cannot append txn 0x{zxid:x} to the log: {e}")))?;
                self.last_logged = zxid;
                if let TxnBody::CloseSession { .. } = txn.body {
                    self.sessions.set_closing(session);
                }
                work.push(Work::Apply { origin, txn });
                Ok(())
            }
        }
    }

    /// Phase 1 for a batch: prepare and log writes, queue everything else.
    fn process_batch(&mut self, batch: Vec<Inbound>) -> Result<(), Fatal> {
        let mut work = Vec::with_capacity(batch.len());
        for msg in batch {
            match msg {
                Inbound::Connect {
                    conn,
                    request,
                    remote,
                    out,
                    queued,
                    closed,
                } => {
                    self.conns.insert(
                        conn,
                        Conn {
                            out,
                            queued,
                            closed,
                            remote,
                            session: 0,
                            timeout_ms: 0,
                            auth: vec![Id::new("ip", &remote.ip().to_string())],
                            received: 1,
                            sent: 0,
                            last_zxid: 0,
                            last_op: "NA",
                            read_only_present: request.read_only_present,
                            pending: VecDeque::new(),
                            early: VecDeque::new(),
                            established_ms: self.clock.now_ms(),
                            last_cxid: 0,
                            last_response_ms: 0,
                            last_latency_ms: 0,
                            latency: Default::default(),
                        },
                    );
                    self.stats.received += 1;
                    self.on_connect(conn, request, &mut work)?;
                }
                Inbound::Request {
                    conn,
                    xid,
                    opcode,
                    req,
                } => {
                    self.stats.received += 1;
                    let now = self.clock.now_ms() as u64;
                    let Some(c) = self.conns.get_mut(&conn) else {
                        continue;
                    };
                    c.took(xid, now);
                    let session = c.session;
                    if session == 0 || !c.early.is_empty() {
                        if c.early.len() == EARLY_REQUESTS {
                            tracing::info!(remote = %c.remote, "closing connection: too many requests before its session was established");
                            self.close_conn(conn);
                        } else {
                            c.early.push_back((xid, opcode, req));
                        }
                        continue;
                    }
                    self.dispatch(conn, session, xid, opcode, req, &mut work)?;
                }
                Inbound::Undecodable { conn, xid } => {
                    // ZooKeeper answers MarshallingError and keeps the connection.
                    self.stats.received += 1;
                    let now = self.clock.now_ms() as u64;
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.took(xid, now);
                    }
                    let zxid = self.tree.last_processed_zxid();
                    work.push(Work::Reply {
                        conn,
                        xid: Some(xid),
                        frame: error_reply(xid, zxid, ErrorCode::MarshallingError),
                        then_close: false,
                    });
                }
                Inbound::Closed { conn } => work.push(Work::Closed { conn }),
                Inbound::FourLetter { cmd, remote, reply } => {
                    work.push(Work::FourLetter { cmd, remote, reply })
                }
            }
            // Replicated mode answers as it goes: replies queued here must not
            // overtake what the next message answers directly.
            if self.replica.is_some() {
                self.finish(std::mem::take(&mut work))?;
            }
        }
        self.finish(work)
    }

    /// Routes one request of an established session: the leader's pipeline in an
    /// ensemble (auth stays local), the local write path standalone.
    fn dispatch(
        &mut self,
        conn: ConnId,
        session: SessionId,
        xid: i32,
        opcode: i32,
        req: Request,
        work: &mut Vec<Work>,
    ) -> Result<(), Fatal> {
        self.sessions.touch(session);
        if self.replica.is_some() && !matches!(req, Request::Auth { .. }) {
            self.replica_request(conn, session, xid, opcode, req)
        } else {
            self.on_request(conn, session, xid, opcode, req, work)
        }
    }

    /// Takes the requests that arrived before their connection's session was
    /// established, in arrival order, once it is.
    fn take_early_requests(&mut self) -> Result<(), Fatal> {
        for conn in std::mem::take(&mut self.early_ready) {
            let mut work = Vec::new();
            while let Some(c) = self.conns.get_mut(&conn) {
                let session = c.session;
                let Some((xid, opcode, req)) = c.early.pop_front() else {
                    break;
                };
                self.dispatch(conn, session, xid, opcode, req, &mut work)?;
                if self.replica.is_some() {
                    self.finish(std::mem::take(&mut work))?;
                }
            }
            self.finish(work)?;
        }
        Ok(())
    }

    /// Phases 2 and 3: one fsync for everything logged, then apply and answer in order.
    fn finish(&mut self, work: Vec<Work>) -> Result<(), Fatal> {
        if work.iter().any(|w| matches!(w, Work::Apply { .. })) {
            let storage = &mut self.storage;
            let synced = sync_blocking(|| storage.sync())
                .map_err(|e| Fatal(format!("fsync of the transaction log failed: {e}")))?;
            if synced < self.last_logged {
                return Err(Fatal(format!(
                    "storage reports durable up to 0x{synced:x}, expected 0x{:x}",
                    self.last_logged
                )));
            }
        }
        for w in work {
            match w {
                Work::Apply { origin, txn } => self.apply(origin, txn)?,
                Work::Reply {
                    conn,
                    xid,
                    frame,
                    then_close,
                } => {
                    match xid {
                        Some(xid) => self.reply(conn, xid, frame),
                        None => self.send(conn, frame),
                    }
                    if then_close {
                        self.close_conn(conn);
                    }
                }
                Work::Read {
                    conn,
                    xid,
                    opcode,
                    req,
                } => self.read(conn, xid, opcode, req),
                Work::Reconnect { conn, request } => self.reconnect(conn, request)?,
                Work::Closed { conn } => self.drop_conn(conn),
                Work::FourLetter { cmd, remote, reply } => {
                    let _ = reply.send(self.four_letter_word(&cmd, remote));
                }
            }
        }
        Ok(())
    }

    fn on_connect(
        &mut self,
        conn: ConnId,
        request: ConnectRequest,
        work: &mut Vec<Work>,
    ) -> Result<(), Fatal> {
        let last = self.tree.last_processed_zxid().max(self.last_logged);
        if request.last_zxid_seen > last {
            tracing::info!(
                "refusing session request: client has seen zxid 0x{:x}, our last zxid is 0x{:x}; \
                 the client must try another server",
                request.last_zxid_seen,
                last
            );
            self.close_conn(conn);
            return Ok(());
        }
        if self.replica.as_ref().is_some_and(|r| !r.serving()) {
            tracing::debug!("refusing a client connection: not serving (no quorum yet)");
            self.close_conn(conn);
            return Ok(());
        }
        if request.session_id == 0 {
            let timeout_ms = self.config.negotiate_session_timeout(request.timeout);
            let session = self.next_session;
            self.next_session += 1;
            let passwd = session_password(session);
            if self.replica.is_some() {
                return self.replica_new_session(conn, session, timeout_ms, passwd);
            }
            let body = Ok(TxnBody::CreateSession { timeout_ms });
            self.log_write(
                Origin::NewSession {
                    conn,
                    timeout_ms,
                    passwd,
                },
                session,
                0,
                body,
                work,
            )
        } else {
            work.push(Work::Reconnect { conn, request });
            Ok(())
        }
    }

    /// A client resumes a session on a new connection (ZooKeeper's `reopenSession`).
    ///
    /// A wrong password is refused at once ("expired", as ZooKeeper answers it), and a
    /// session in this server's table (not closing) is taken over at once. Otherwise a
    /// standalone server's table is the committed state, so the session has expired; a
    /// replica's table may lag behind the ensemble and must not be trusted with a "no"
    /// (see [`Processor::revalidate`]).
    fn reconnect(&mut self, conn: ConnId, request: ConnectRequest) -> Result<(), Fatal> {
        let session = request.session_id;
        if request.passwd != session_password(session) {
            tracing::info!("invalid session 0x{session:x} for client: wrong password");
            self.refuse_session(conn);
            return Ok(());
        }
        // A learner's table may lag behind the leader's: it revalidates every reconnect
        // (ZooKeeper's learner asks the leader for every global session); the leader and
        // a standalone server answer from their own table.
        let learner = self.replica.as_ref().is_some_and(|r| !r.is_leader());
        // Deliberately broken (sim bites test): a learner resumes a session its own table
        // holds without asking.
        #[cfg(feature = "broken-sessions-not-validated")]
        let learner = learner && !self.sessions.contains(session);
        if self.sessions.contains(session) && !learner {
            self.resume_session(conn, session);
            return Ok(());
        }
        // Deliberately broken (sim bites test): a learner answers from its own table,
        // which may not hold a brand-new session yet.
        #[cfg(feature = "broken-learner-trusts-own-sessions")]
        if self.replica.is_some() && !self.sessions.contains(session) {
            tracing::info!("invalid session 0x{session:x} for client: not in my table");
            self.refuse_session(conn);
            return Ok(());
        }
        if self.replica.is_some() {
            return self.revalidate(conn, session);
        }
        tracing::info!("invalid session 0x{session:x} for client: expired");
        self.refuse_session(conn);
        Ok(())
    }

    /// Answers a reconnect "session expired" (timeout 0, session 0) and closes.
    pub(crate) fn refuse_session(&mut self, conn: ConnId) {
        self.send_connect_response(conn, 0, 0, vec![0; 16]);
        self.close_conn(conn);
    }

    /// Moves a live session to connection `conn` and answers its reconnect.
    pub(crate) fn resume_session(&mut self, conn: ConnId, session: SessionId) {
        // The session moves to this connection: drop the old one.
        if let Some(old) = self.session_conn.insert(session, conn) {
            if old != conn {
                tracing::info!("session 0x{session:x} moved to a new connection");
                self.close_conn(old);
                self.drop_conn(old);
                self.session_conn.insert(session, conn);
            }
        }
        self.sessions.touch(session);
        if let Some(r) = self.replica.as_mut() {
            // The leader hears of the reconnect with the next touches (as ZooKeeper's
            // leader touches a revalidated session).
            r.touched.insert(session);
        }
        let timeout = self
            .sessions
            .get(session)
            .map(|s| s.timeout_ms)
            .unwrap_or(0);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = session;
            c.timeout_ms = timeout;
            if !c.early.is_empty() {
                self.early_ready.insert(conn);
            }
        }
        self.send_connect_response(conn, timeout, session, session_password(session));
    }

    /// The tree's write operation for a client write request, with
    /// ZooKeeper's argument checks (create modes, TTLs, jute.maxbuffer).
    pub(crate) fn write_op_for(&self, op: i32, req: &Request) -> Result<WriteOp, ErrorCode> {
        let create = |c: &CreateRequest, mode: Option<CreateMode>, ttl: i64| match mode {
            Some(mode) => Ok(WriteOp::Create {
                path: c.path.clone(),
                data: c.data.clone(),
                acl: c.acl.clone(),
                mode,
                ttl,
            }),
            None => Err(ErrorCode::BadArguments),
        };
        let plain_mode = |flags: i32| CreateMode::from_flag(flags).filter(|m| !m.is_ttl());
        let write = match req {
            Request::Create(c) | Request::Create2(c) => create(c, plain_mode(c.flags), -1),
            Request::CreateContainer(c) => create(c, Some(CreateMode::Container), -1),
            Request::CreateTtl(t) => {
                let c = CreateRequest {
                    path: t.path.clone(),
                    data: t.data.clone(),
                    acl: t.acl.clone(),
                    flags: t.flags,
                };
                create(&c, CreateMode::from_flag(t.flags), t.ttl)
            }
            Request::Delete { path, version } => Ok(WriteOp::Delete {
                path: path.clone(),
                version: *version,
            }),
            Request::SetData {
                path,
                data,
                version,
            } => Ok(WriteOp::SetData {
                path: path.clone(),
                data: data.clone(),
                version: *version,
            }),
            Request::SetAcl { path, acl, version } => Ok(WriteOp::SetAcl {
                path: path.clone(),
                acl: acl.clone(),
                version: *version,
            }),
            Request::Check { path, version } => Ok(WriteOp::Check {
                path: path.clone(),
                version: *version,
            }),
            Request::Multi(ops) => multi_to_write_ops(ops),
            _ => {
                tracing::debug!("opcode {op} is not a write");
                Err(ErrorCode::BadArguments)
            }
        }?;
        if let WriteOp::Create { data, .. } | WriteOp::SetData { data, .. } = &write {
            if data.len() > self.config.jute_max_buffer {
                return Err(ErrorCode::BadArguments);
            }
        }
        Ok(write)
    }

    fn on_request(
        &mut self,
        conn: ConnId,
        session: SessionId,
        xid: i32,
        op: i32,
        req: Request,
        work: &mut Vec<Work>,
    ) -> Result<(), Fatal> {
        let origin = Origin::Client {
            conn,
            xid,
            opcode: op,
        };
        let auth = self
            .conns
            .get(&conn)
            .map(|c| c.auth.clone())
            .unwrap_or_default();
        if replica::is_write(op) && op != opcode::CLOSE_SESSION {
            let body = self
                .write_op_for(op, &req)
                .and_then(|w| self.prep(session, &auth, &w));
            return self.log_write(origin, session, xid, body, work);
        }
        match req {
            Request::CloseSession => {
                let body =
                    self.prepper
                        .close_session_txn(&self.tree, session, self.last_logged + 1);
                self.log_write(origin, session, xid, Ok(body), work)
            }
            Request::Auth {
                scheme,
                auth: secret,
                ..
            } => {
                let ids = if scheme == "digest" {
                    digest_auth_ids(&secret, None)
                } else {
                    Vec::new()
                };
                let reply = |err: ErrorCode| error_reply(xid::AUTH, 0, err);
                if ids.is_empty() {
                    // ZooKeeper 3.8 (the running server) answers AuthFailed in one frame
                    // and closes; no AuthFailed notification follows on the wire.
                    tracing::info!("authentication failed for scheme {scheme:?}");
                    self.stats.auth_failed += 1;
                    work.push(Work::Reply {
                        conn,
                        xid: Some(xid::AUTH),
                        frame: reply(ErrorCode::AuthFailed),
                        then_close: true,
                    });
                    return Ok(());
                }
                if let Some(c) = self.conns.get_mut(&conn) {
                    for id in ids {
                        if !c.auth.contains(&id) {
                            c.auth.push(id);
                        }
                    }
                }
                let frame = reply(ErrorCode::Ok);
                work.push(Work::Reply {
                    conn,
                    xid: Some(xid::AUTH),
                    frame,
                    then_close: false,
                });
                Ok(())
            }
            req => {
                work.push(Work::Read {
                    conn,
                    xid,
                    opcode: op,
                    req,
                });
                Ok(())
            }
        }
    }

    /// Applies a durable txn and answers its origin.
    fn apply(&mut self, origin: Origin, txn: Txn) -> Result<(), Fatal> {
        let zxid = txn.zxid;
        let outcome = self.tree.apply(&txn);
        self.prepper.applied(zxid);
        self.txns_since_snapshot += 1;
        match &txn.body {
            TxnBody::CreateSession { timeout_ms } => self.sessions.add(txn.session, *timeout_ms),
            TxnBody::CloseSession { .. } => {
                self.sessions.remove(txn.session);
                if let Some(observe) = &self.observer {
                    observe(super::observe::Observation::SessionClosed {
                        session: txn.session,
                        zxid,
                    });
                }
            }
            _ => {}
        }
        self.fire_watches(&outcome);
        match origin {
            Origin::Sync { .. } | Origin::QuorumRead { .. } => {}
            Origin::Internal => {
                if let TxnBody::CloseSession { .. } = txn.body {
                    // An expired session's connection is closed; the client learns of the
                    // expiry when it reconnects.
                    if let Some(conn) = self.session_conn.get(&txn.session).copied() {
                        self.close_conn(conn);
                    }
                }
            }
            Origin::NewSession {
                conn,
                timeout_ms,
                passwd,
            } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.session = txn.session;
                    c.timeout_ms = timeout_ms;
                    if !c.early.is_empty() {
                        self.early_ready.insert(conn);
                    }
                    self.session_conn.insert(txn.session, conn);
                    self.send_connect_response(conn, timeout_ms, txn.session, passwd);
                } else if self.replica.is_some() {
                    self.replica_orphan_session(txn.session)?;
                } else {
                    // The client went away before its session was made: close it again.
                    self.sessions.set_closing(txn.session);
                    let body = self.prepper.close_session_txn(
                        &self.tree,
                        txn.session,
                        self.last_logged + 1,
                    );
                    let mut work = Vec::new();
                    self.log_write(Origin::Internal, txn.session, 0, Ok(body), &mut work)?;
                    self.finish(work)?;
                }
            }
            Origin::Client {
                conn,
                xid,
                opcode: op,
            } => {
                let header = |err: ErrorCode| ReplyHeader {
                    xid,
                    zxid,
                    err: err.code(),
                };
                let (h, resp) = match outcome.result {
                    Err(e) => (header(e), Response::Empty),
                    Ok(r) => (header(ErrorCode::Ok), write_response(op, r)),
                };
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.last_zxid = zxid;
                    c.last_op = op_name(op);
                }
                self.reply(conn, xid, encode_reply(&h, &resp));
                if matches!(txn.body, TxnBody::CloseSession { .. }) {
                    self.session_conn.remove(&txn.session);
                    self.close_conn(conn);
                }
            }
        }
        Ok(())
    }

    /// Queues the watch events of an applied txn. As in ZooKeeper 3.8, a
    /// watcher only hears about a node it may READ.
    fn fire_watches(&mut self, outcome: &ApplyOutcome) {
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
    fn read(&mut self, conn: ConnId, xid_: i32, op: i32, req: Request) {
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
                        data: data.to_vec(),
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
                .map(|(acl, stat)| Response::GetAcl { acl, stat }),
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
                // (OUTBOUND_BYTES): a multiRead of many large nodes would otherwise
                // allocate far past the bound before it is checked on send.
                let budget = self
                    .conns
                    .get(&conn)
                    .map(|c| OUTBOUND_BYTES.saturating_sub(c.queued.load(Ordering::Relaxed)))
                    .unwrap_or(0);
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
                                data: data.to_vec(),
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
                        Some(MultiResult::GetData { data, .. }) => data.len() + 90,
                        Some(MultiResult::GetChildren { children }) => {
                            children.iter().map(|c| c.len() + 4).sum::<usize>() + 13
                        }
                        _ => 13,
                    };
                }
                if size > budget {
                    if let Some(c) = self.conns.get(&conn) {
                        tracing::info!(remote = %c.remote, "closing connection: the reply to a multiRead would exceed {OUTBOUND_BYTES} bytes of outbound buffer");
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
            c.last_op = op_name(op);
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

    fn send_connect_response(
        &mut self,
        conn: ConnId,
        timeout: i32,
        session: SessionId,
        passwd: Vec<u8>,
    ) {
        let read_only_present = self.conns.get(&conn).is_some_and(|c| c.read_only_present);
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout,
            session_id: session,
            passwd,
            read_only: false,
            read_only_present,
        };
        self.send(conn, resp.encode());
    }

    /// Queues the reply to request `xid` and records the request's latency.
    pub(crate) fn reply(&mut self, conn: ConnId, xid: i32, frame: Bytes) {
        let now = self.clock.now_ms() as u64;
        self.stats.response_size.record(frame.len());
        if let Some(c) = self.conns.get_mut(&conn) {
            // Requests ahead of this one that were never answered are not measured.
            while let Some((pending, since)) = c.pending.pop_front() {
                if pending == xid {
                    let ms = now.saturating_sub(since);
                    self.stats.latency.record(ms);
                    c.latency.record(ms);
                    c.last_latency_ms = ms;
                    break;
                }
            }
            if xid > 0 {
                c.last_cxid = xid;
            }
            // As ZooKeeper's lresp: a monotonic reading (here ms since start), not wall time.
            c.last_response_ms = (now as i64 - self.started_ms).max(1);
        }
        self.send(conn, frame);
    }

    /// Queues a frame for a connection; a client whose queue is full is not
    /// reading and gets disconnected.
    fn send(&mut self, conn: ConnId, frame: Bytes) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let len = frame.len();
        if c.queued.load(Ordering::Relaxed) + len > OUTBOUND_BYTES {
            tracing::info!(remote = %c.remote, "closing connection: client is not reading its replies");
            self.close_conn(conn);
            return;
        }
        c.queued.fetch_add(len, Ordering::Relaxed);
        match c.out.try_send(Outgoing::Frame(frame)) {
            Ok(()) => {
                c.sent += 1;
                self.stats.sent += 1;
            }
            Err(_) => {
                c.queued.fetch_sub(len, Ordering::Relaxed);
                tracing::info!(remote = %c.remote, "closing connection: outbound queue full");
                self.close_conn(conn);
            }
        }
    }

    /// Asks a connection to close (its reader will report `Closed`).
    fn close_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get(&conn) {
            let _ = c.out.try_send(Outgoing::Close);
            let _ = c.closed.send(true);
        }
    }

    /// Forgets a connection: its watches go; its session lives on until it
    /// expires or the client reconnects.
    fn drop_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            self.watches.remove_watcher(conn);
            if self.session_conn.get(&c.session) == Some(&conn) {
                self.session_conn.remove(&c.session);
            }
        }
    }

    /// `autopurge`: as ZooKeeper's DatadirCleanupManager, once at start-up (the
    /// first tick) and then every `autopurge.purgeInterval` hours, keep the
    /// newest `autopurge.snapRetainCount` snapshots and the logs they need.
    pub(crate) fn maybe_purge(&mut self) {
        let hours = self.config.purge_interval_hours;
        if hours == 0 {
            return;
        }
        let every = (hours * 3_600_000 / self.config.tick_time_ms).max(1);
        if self.ticks == 1 || self.ticks.is_multiple_of(every) {
            match self.storage.purge(self.config.snap_retain_count) {
                Ok(()) => tracing::info!(
                    "autopurge: kept the newest {} snapshots",
                    self.config.snap_retain_count
                ),
                Err(e) => tracing::warn!("autopurge of old snapshots and logs failed: {e}"),
            }
        }
    }

    /// The end of every step of the processor's loop: collects a finished snapshot (and,
    /// in an ensemble, SNAPs serialized for learners) and starts the next snapshot when it
    /// is due.
    fn end_step(&mut self) -> Result<(), Fatal> {
        if !self.early_ready.is_empty() {
            self.take_early_requests()?;
        }
        self.finish_snapshot(false);
        if self.replica.is_some() {
            self.poll_snaps();
        }
        self.maybe_snapshot()
    }

    /// Starts a snapshot when enough txns have been applied since the last one (`snapCount`,
    /// randomised per server as ZooKeeper does so that an ensemble's servers do not all
    /// snapshot at once) and none is in flight. The tree is frozen at the zxid applied now; serializing and
    /// writing happen off this task while writes go on (see [`super::snapshotter`]).
    fn maybe_snapshot(&mut self) -> Result<(), Fatal> {
        // While one is still being written the next waits (it starts at the end of the
        // first step after that one finished), so the log between two snapshots stays
        // near snapCount txns.
        if self.txns_since_snapshot < self.snapshot_threshold || self.snapshotter.busy() {
            return Ok(());
        }
        self.txns_since_snapshot = 0;
        self.snapshots_started += 1;
        self.snapshot_threshold = snapshot_threshold(
            self.config.snap_count,
            self.clock.now_ms() as u64,
            self.config.my_id,
            self.snapshots_started,
        );
        let zxid = self.tree.last_processed_zxid();
        let writer = self
            .storage
            .begin_snapshot(zxid)
            .map_err(|e| Fatal(format!("cannot start snapshot 0x{zxid:x}: {e}")))?;
        let job = super::snapshotter::SnapshotJob {
            tree: self.tree.freeze(),
            sessions: super::recovery::session_list(&self.sessions),
            writer,
        };
        self.snapshotter
            .start(job, &self.wake)
            .map_err(|e| Fatal(format!("cannot start the snapshot thread: {e}")))?;
        tracing::info!("snapshot of zxid 0x{zxid:x} started");
        Ok(())
    }

    /// Collects the snapshot in flight: if `wait`, waits for it (before the log is
    /// truncated or snapshots are read back, and at shutdown); else only if it is done.
    /// A failed snapshot is logged, not fatal: the log still holds every txn, and the
    /// next snapshot tries again (as ZooKeeper).
    pub(crate) fn finish_snapshot(&mut self, wait: bool) {
        let finished = if wait {
            let snapshotter = &mut self.snapshotter;
            sync_blocking(|| snapshotter.wait())
        } else {
            self.snapshotter.poll()
        };
        let Some(done) = finished else {
            return;
        };
        let zxid = done.zxid;
        match done.result {
            Ok(len) => {
                self.storage.snapshot_written(zxid);
                tracing::info!("snapshot taken at zxid 0x{zxid:x} ({len} bytes)");
            }
            Err(e) => tracing::error!("snapshot 0x{zxid:x} failed, continuing without it: {e}"),
        }
    }
}

/// Txns until the next snapshot: as ZooKeeper's `SyncRequestProcessor`, a random point in
/// `snapCount/2 .. snapCount`, drawn anew for each snapshot, so that the servers of an
/// ensemble do not all snapshot at once. The draw mixes the time, the server id and the
/// snapshot number (no unseeded randomness: the simulator replays it exactly).
fn snapshot_threshold(snap_count: u64, now_ms: u64, my_id: u64, n: u64) -> u64 {
    let half = (snap_count / 2).max(1);
    // splitmix64 finaliser.
    let mut x = now_ms ^ my_id.rotate_left(32) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    half + x % half
}

/// Receives from an optional channel; never completes when there is none.
async fn recv_opt<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs blocking storage work without stalling the other tasks of a
/// multi-threaded runtime (the simulator's disk is in memory and never blocks).
fn sync_blocking<T>(f: impl FnOnce() -> T) -> T {
    #[cfg(not(madsim))]
    {
        if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            return tokio::task::block_in_place(f);
        }
    }
    f()
}

fn multi_to_write_ops(ops: &[MultiOp]) -> Result<WriteOp, ErrorCode> {
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let create = |c: &CreateRequest, mode: Option<CreateMode>, ttl: i64| {
            Ok::<_, ErrorCode>(WriteOp::Create {
                path: c.path.clone(),
                data: c.data.clone(),
                acl: c.acl.clone(),
                mode: mode.ok_or(ErrorCode::BadArguments)?,
                ttl,
            })
        };
        out.push(match op {
            MultiOp::Create(c) | MultiOp::Create2(c) => create(
                c,
                CreateMode::from_flag(c.flags).filter(|m| !m.is_ttl()),
                -1,
            )?,
            MultiOp::CreateContainer(c) => create(c, Some(CreateMode::Container), -1)?,
            MultiOp::CreateTtl(t) => WriteOp::Create {
                path: t.path.clone(),
                data: t.data.clone(),
                acl: t.acl.clone(),
                mode: CreateMode::from_flag(t.flags).ok_or(ErrorCode::BadArguments)?,
                ttl: t.ttl,
            },
            MultiOp::Delete { path, version } => WriteOp::Delete {
                path: path.clone(),
                version: *version,
            },
            MultiOp::SetData {
                path,
                data,
                version,
            } => WriteOp::SetData {
                path: path.clone(),
                data: data.clone(),
                version: *version,
            },
            MultiOp::Check { path, version } => WriteOp::Check {
                path: path.clone(),
                version: *version,
            },
            // Reads belong in multiRead (22).
            MultiOp::GetData { .. } | MultiOp::GetChildren { .. } => {
                return Err(ErrorCode::BadArguments)
            }
        });
    }
    Ok(WriteOp::Multi(out))
}

/// The reply record for an applied write.
fn write_response(op: i32, result: OpResult) -> Response {
    match result {
        OpResult::Create { path, stat, .. } => {
            if op == opcode::CREATE {
                Response::Create { path }
            } else {
                Response::Create2 { path, stat }
            }
        }
        OpResult::SetData { stat } | OpResult::SetAcl { stat } => Response::Stat { stat },
        OpResult::Multi(results) => Response::Multi(
            results
                .into_iter()
                .map(|r| match r {
                    // ZooKeeper 3.8 (the running server) answers create and create2
                    // inside a multi as a plain create (path only), and
                    // createContainer and createTTL as create2 (path and Stat).
                    Ok(OpResult::Create {
                        path,
                        stat,
                        extended: true,
                    }) => MultiResult::Create2 { path, stat },
                    Ok(OpResult::Create { path, .. }) => MultiResult::Create { path },
                    Ok(OpResult::Delete) => MultiResult::Delete,
                    Ok(OpResult::SetData { stat }) => MultiResult::SetData { stat },
                    Ok(OpResult::Check) => MultiResult::Check,
                    Ok(_) => MultiResult::Error {
                        err: ErrorCode::RuntimeInconsistency.code(),
                    },
                    Err(e) => MultiResult::Error { err: e.code() },
                })
                .collect(),
        ),
        _ => Response::Empty,
    }
}

/// ZooKeeper's short names for the `cons` listing.
fn op_name(op: i32) -> &'static str {
    match op {
        opcode::CREATE | opcode::CREATE2 | opcode::CREATE_CONTAINER | opcode::CREATE_TTL => "CREA",
        opcode::DELETE => "DELE",
        opcode::EXISTS => "EXIS",
        opcode::GET_DATA => "GETD",
        opcode::SET_DATA => "SETD",
        opcode::GET_ACL => "GETA",
        opcode::SET_ACL => "SETA",
        opcode::GET_CHILDREN => "GETC",
        opcode::GET_CHILDREN2 => "GETC",
        opcode::SYNC => "SYNC",
        opcode::PING => "PING",
        opcode::MULTI => "MULT",
        opcode::MULTI_READ => "MLTR",
        opcode::SET_WATCHES | opcode::SET_WATCHES2 => "SETW",
        opcode::ADD_WATCH => "ADDW",
        opcode::CLOSE_SESSION => "CLOS",
        _ => "NA",
    }
}

#[cfg(test)]
mod tests {
    use super::snapshot_threshold;

    #[test]
    fn snapshot_thresholds_stay_in_range_and_differ_between_servers() {
        for snap_count in [2, 3, 20, 100_000] {
            for n in 0..50 {
                let t = snapshot_threshold(snap_count, 1_700_000_000_000, 1, n);
                assert!(
                    (snap_count / 2..snap_count.max(2)).contains(&t),
                    "{snap_count} {t}"
                );
            }
        }
        // Five servers started at the same millisecond do not snapshot in step.
        let first: std::collections::BTreeSet<u64> = (1..=5)
            .map(|id| snapshot_threshold(100_000, 1_700_000_000_000, id, 0))
            .collect();
        assert_eq!(first.len(), 5);
        // Each snapshot draws anew.
        let one: std::collections::BTreeSet<u64> = (0..5)
            .map(|n| snapshot_threshold(100_000, 1_700_000_000_000, 1, n))
            .collect();
        assert_eq!(one.len(), 5);
    }
}
