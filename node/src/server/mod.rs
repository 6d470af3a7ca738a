//! The ZooKeeper server pipeline, sans-IO: sessions, requests, txns, reads, watches and
//! replies around the ZAB core, with no sockets, clocks, threads or files.
//!
//! It plays the part of ZooKeeper's request processors (Prep -> Proposal/Sync ->
//! Commit -> Final) for every server alike: a standalone server is an ensemble of one
//! voter, so there is one write path (prep, propose, persist, commit, apply, answer) and
//! one apply path. The runtime (`runtime/driver.rs`) only moves bytes, timers and fsyncs.
//!
//! # Inputs
//!
//! Every input carries the wall-clock time (ms since the epoch) the runtime read for it:
//! [`Pipeline::connect`], [`Pipeline::request`], [`Pipeline::undecodable`],
//! [`Pipeline::closed`] for client connections; [`Pipeline::peer_connected`],
//! [`Pipeline::peer_disconnected`], [`Pipeline::peer_message`] from the quorum transport;
//! [`Pipeline::tick`] every tickTime; [`Pipeline::snap_serialized`] when a learner's SNAP
//! was serialized off the pipeline; [`Pipeline::four_letter_word`].
//!
//! # Outputs, in this order
//!
//! 1. Storage: [`Pipeline::take_persist`] hands out the core's persist actions (appends,
//!    TRUNC, epochs, SNAP). The runtime executes them in order (for a SNAP or a TRUNC
//!    reload it hands the new tree back with [`Pipeline::replace_tree`]) and calls
//!    [`Pipeline::written`]: the core's messages that depend on no persistence (a
//!    leader's PROPOSE and COMMIT) are released, so they leave while the log is being
//!    fsynced. The runtime then fsyncs once if anything was appended and calls
//!    [`Pipeline::durable`]: only then are the commits applied and answered, and does
//!    the core release what depends on the persistence (a learner's ACK, the leader's
//!    own ACK, hence the commit of a standalone server's or a leader's txn). It repeats
//!    while `take_persist` has work.
//! 2. Everything else, from [`Pipeline::poll_output`], in the order it was produced:
//!    client frames and closes, peer messages and disconnects, SNAPs to serialize,
//!    observations. All of it may leave at once: a reply to a write enters the queue
//!    only after its txn was reported durable, and an ACK only after its persistence.
//!
//! Within one connection, frames are queued in the order the client must see them:
//! each session's requests are answered in FIFO order (a read waits behind that
//! session's writes in flight, [`Queued`]), and a watch event is queued when its txn is
//! applied, before any later reply that shows the change.

pub mod admin;
mod conn;
pub mod forward;
pub mod fourlw;
mod local;
pub mod observe;
mod read;
mod read_only;
mod replicate;
mod request;
mod session;
mod snap;
pub mod stats;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;

use bytes::Bytes;

use crate::config::ServerConfig;
use crate::core::session::SessionTracker;
use crate::core::{Outbound, PersistAction, Ready, Role, Zab};
use crate::proto::client::{ConnectRequest, Request};
use crate::proto::peer::{PeerMessage, Sid, SNAP_PART_BYTES};
use crate::state::prep::Prepper;
use crate::state::tree::{DataTree, FrozenTree};
use crate::state::watch::WatchManager;
use crate::types::{SessionId, Zxid};

pub use conn::Conn;
pub use forward::Forwarded;
pub use observe::{Observation, TreeSource};
pub use request::{error_reply, is_quorum_read, is_write};
pub use session::session_password;

use conn::{EARLY_REQUESTS, HELD_REQUESTS};
use snap::SnapQueues;
use stats::ServerStats;

/// A connection's id, unique for the server's lifetime.
pub type ConnId = u64;

/// Bytes a reply may take: a multiRead reply is never built beyond it (the connection is
/// closed instead), so one request cannot make the server allocate more. It equals the
/// runtime's outbound bound per connection: no larger reply could ever be queued.
pub const MAX_REPLY_BYTES: usize = 64 << 20;

/// Bytes of frames a connection may have sent and not yet delivered before its further
/// requests are held ([`Conn::credit`]; [`Pipeline::delivered`] gives credit back).
pub const OUTBOUND_CREDIT: usize = 2 << 20;

/// Requests one session may have waiting behind its writes in flight; beyond it the
/// connection is closed (a client pipelining without bound).
pub const MAX_QUEUED_PER_SESSION: usize = 65_536;

/// Something the runtime must do, from [`Pipeline::poll_output`].
#[derive(Debug)]
pub enum Output {
    /// Queue a frame (a reply, a watch event, a ConnectResponse) on a client connection.
    Frame { conn: ConnId, frame: Bytes },
    /// Close a client connection after the frames queued on it so far.
    Close { conn: ConnId },
    /// Send a message to a peer.
    Send { to: Sid, msg: PeerMessage },
    /// Close the connection to a peer and drop what is queued on it (the core gave up
    /// on it); a SNAP being serialized for it is abandoned.
    Disconnect { peer: Sid },
    /// Serialize this frozen tree and session table (both at `zxid`) off the pipeline
    /// and hand the bytes back with [`Pipeline::snap_serialized`]: the SNAP for `to`.
    SerializeSnap {
        to: Sid,
        zxid: Zxid,
        tree: FrozenTree,
        sessions: Vec<(SessionId, i32)>,
    },
    /// A report for the test harness (only when built with `observed`).
    Observe(Observation),
}

/// A fatal condition: the node must stop.
#[derive(Debug, thiserror::Error)]
#[error("fatal: {0}")]
pub struct Fatal(pub String);

/// Facts about the host that only the runtime can read, for four-letter words.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostFacts {
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub datadir_size: u64,
    pub logdir_size: u64,
    /// The last snapshot this server wrote or, before it wrote one, loaded at start:
    /// its zxid and when it was written (seconds since the epoch).
    pub last_snapshot: Option<(Zxid, i64)>,
    /// What the runtime measured of its fsyncs and snapshots.
    pub storage: stats::StorageStats,
}

/// A snapshot to write: the tree frozen at `zxid` and the session table with it.
pub struct SnapshotDue {
    pub zxid: Zxid,
    pub tree: FrozenTree,
    pub sessions: Vec<(SessionId, i32)>,
}

/// Where a txn's request came from on this server, and how to answer it.
#[derive(Clone, Debug)]
enum Origin {
    /// A client write.
    Client { conn: ConnId, xid: i32, opcode: i32 },
    /// A client's `sync`, answered when ZAB reports it done.
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
}

/// One request of a session, waiting for its turn.
enum Queued {
    /// A write (or sync) handed to ZAB, answered when it commits.
    InFlight { xid: i32 },
    /// A read that must wait for the writes before it.
    Read {
        conn: ConnId,
        xid: i32,
        opcode: i32,
        req: Request,
    },
}

/// A reconnect for a session this server may not know (or knows as closing), waiting
/// for a ZAB sync before it is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Revalidation {
    conn: ConnId,
    session: SessionId,
    /// Syncs made for it so far.
    syncs: u8,
}

/// The pipeline's state.
pub struct Pipeline {
    config: ServerConfig,
    /// The time of the input being handled (ms since the epoch).
    now: i64,
    started_ms: i64,
    tree: DataTree,
    prepper: Prepper,
    watches: WatchManager,
    sessions: SessionTracker,
    conns: BTreeMap<ConnId, Conn>,
    session_conn: BTreeMap<SessionId, ConnId>,
    /// Connections that may take their [`Conn::held`] requests now (the session was
    /// just established, or credit came back).
    held_ready: BTreeSet<ConnId>,
    next_session: SessionId,
    zab: Zab,
    /// The rest of the Ready whose persist actions the runtime is executing, until
    /// they are durable.
    unpersisted: Option<Ready>,
    /// Requests taken here waiting for their commit (or sync): (session, cxid) -> origin.
    pending: BTreeMap<(SessionId, i32), Origin>,
    /// Per-session FIFO of requests not answered yet.
    queues: BTreeMap<SessionId, VecDeque<Queued>>,
    /// Client syncs and quorum reads waiting for SyncDone: sync id -> (session, xid).
    syncs: BTreeMap<u64, (SessionId, i32)>,
    next_sync: u64,
    /// Sessions with client activity since the last tick (a learner reports them).
    touched: BTreeSet<SessionId>,
    /// Reconnects waiting for their revalidation sync: sync id -> the reconnect.
    revalidations: BTreeMap<u64, Revalidation>,
    /// Leader only (soft state, forgotten with the role): the server each global
    /// session was last made or resumed through (ZooKeeper's `SessionImpl.owner`). A
    /// client write that arrives through another server fails with SessionMoved.
    owners: BTreeMap<SessionId, Sid>,
    /// Messages for learners waiting behind the SNAP being serialized for them.
    snaps: SnapQueues,
    /// A learner: the parts of a SNAP from its leader joined so far (leader, zxid, bytes).
    snap_in: Option<(Sid, Zxid, Vec<u8>)>,
    out: VecDeque<Output>,
    /// Core ticks so far (ZAB's timers).
    core_ticks: u64,
    /// ZooKeeper's trace mask: read by `gtmk`, set by the AdminServer's `set_trace_mask`
    /// (zabkeeper's logging is tracing's, so it changes only what those two report).
    trace_mask: i64,
    /// Whole tickTimes so far (sessions, containers, touches).
    ticks: u64,
    stats: ServerStats,
    txns_since_snapshot: u64,
    snapshot_threshold: u64,
    snapshots_started: u64,
    observed: bool,
    /// When this ensemble member began looking for a quorum (`None` while it has a
    /// role): read-only mode starts a delay after it (`read_only.rs`).
    looking_since: Option<i64>,
    /// Whether it serves read-only clients now.
    read_only: bool,
    /// Whether it has served in broadcast since it started: only then does its tree
    /// hold nothing but committed txns (`read_only.rs`).
    served: bool,
    /// Local sessions: held by this server only, never proposed (made in read-only mode,
    /// or with `localSessionsEnabled`); forgotten when the server's role changes.
    local: SessionTracker,
    /// Local sessions whose CreateSession (their upgrade to global) was submitted.
    upgrading: BTreeSet<SessionId>,
    /// Leader: sessions whose CreateSession it proposed and has not applied yet.
    creating: BTreeSet<SessionId>,
    /// Deliberately broken (sim bites test): this server has been an observer in
    /// broadcast, and lost its leader since (then it never rejoins).
    #[cfg(madsim)]
    broken_observed: (bool, bool),
}

impl Pipeline {
    /// Builds the pipeline from the recovered tree and session table and the ZAB core
    /// (built from the same recovered state); `observed` turns on [`Output::Observe`].
    /// The tree counts as loaded at start-up ([`Pipeline::replace_tree`]'s rules).
    pub fn new(
        config: ServerConfig,
        zab: Zab,
        tree: DataTree,
        sessions: Vec<(SessionId, i32)>,
        now_ms: i64,
        observed: bool,
    ) -> Pipeline {
        let next_session = first_session_id(config.my_id, now_ms, &sessions);
        let looking_since = (zab.role() == Role::Looking).then_some(now_ms);
        let mut p = Pipeline {
            now: now_ms,
            started_ms: now_ms,
            tree: DataTree::new(),
            prepper: {
                let mut p = Prepper::new();
                p.set_extended_types(config.extended_types_enabled);
                p
            },
            watches: WatchManager::new(),
            sessions: SessionTracker::new(config.tick_time_ms),
            conns: BTreeMap::new(),
            session_conn: BTreeMap::new(),
            held_ready: BTreeSet::new(),
            next_session,
            zab,
            unpersisted: None,
            pending: BTreeMap::new(),
            queues: BTreeMap::new(),
            syncs: BTreeMap::new(),
            next_sync: 1,
            touched: BTreeSet::new(),
            revalidations: BTreeMap::new(),
            owners: BTreeMap::new(),
            snaps: SnapQueues::default(),
            snap_in: None,
            out: VecDeque::new(),
            core_ticks: 0,
            ticks: 0,
            trace_mask: fourlw::DEFAULT_TRACE_MASK as i64,
            stats: ServerStats::default(),
            txns_since_snapshot: 0,
            snapshot_threshold: snapshot_threshold(
                config.snap_count,
                now_ms as u64,
                config.my_id,
                0,
            ),
            snapshots_started: 0,
            observed,
            looking_since,
            read_only: false,
            served: false,
            local: SessionTracker::new(config.tick_time_ms),
            upgrading: BTreeSet::new(),
            creating: BTreeSet::new(),
            #[cfg(madsim)]
            broken_observed: (false, false),
            config,
        };
        p.replace_tree(tree, sessions, TreeSource::Startup);
        p
    }

    // ----- inputs -----

    /// A client's handshake arrived on a new connection.
    pub fn connect(
        &mut self,
        conn: ConnId,
        request: ConnectRequest,
        remote: SocketAddr,
        now_ms: i64,
    ) -> Result<(), Fatal> {
        self.connect_as(conn, request, remote, None, now_ms)
    }

    /// [`Pipeline::connect`] on a TLS connection whose client certificate has this
    /// subject: the connection is authenticated as `x509:<subject>` from the start
    /// (ZooKeeper's `X509AuthenticationProvider`).
    pub fn connect_x509(
        &mut self,
        conn: ConnId,
        request: ConnectRequest,
        remote: SocketAddr,
        subject: String,
        now_ms: i64,
    ) -> Result<(), Fatal> {
        self.connect_as(conn, request, remote, Some(subject), now_ms)
    }

    fn connect_as(
        &mut self,
        conn: ConnId,
        request: ConnectRequest,
        remote: SocketAddr,
        x509: Option<String>,
        now_ms: i64,
    ) -> Result<(), Fatal> {
        self.now = now_ms;
        let mut c = Conn::new(remote, request.read_only_present, now_ms);
        if let Some(subject) = x509 {
            c.auth.push(crate::types::Id::new("x509", &subject));
        }
        self.conns.insert(conn, c);
        self.stats.received += 1;
        self.on_connect(conn, request)?;
        self.settle()
    }

    /// A decoded request on a connection.
    pub fn request(
        &mut self,
        conn: ConnId,
        xid: i32,
        opcode: i32,
        req: Request,
        now_ms: i64,
    ) -> Result<(), Fatal> {
        self.now = now_ms;
        self.stats.received += 1;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        c.took(xid, now_ms as u64);
        let session = c.session;
        if session == 0 || c.credit <= 0 || !c.held.is_empty() {
            if session == 0 && c.held.len() >= EARLY_REQUESTS {
                tracing::info!(remote = %c.remote, "closing connection: too many requests before its session was established");
                self.close_conn(conn);
            } else if c.held.len() >= HELD_REQUESTS {
                tracing::info!(remote = %c.remote, "closing connection: too many requests while its replies are not read");
                self.close_conn(conn);
            } else {
                c.held.push_back((xid, opcode, req));
            }
            return Ok(());
        }
        self.dispatch(conn, session, xid, opcode, req)?;
        self.settle()
    }

    /// The runtime wrote `bytes` more of this connection's frames to its socket: that
    /// much credit comes back, and held requests go on while it lasts.
    pub fn delivered(&mut self, conn: ConnId, bytes: usize, now_ms: i64) -> Result<(), Fatal> {
        self.now = now_ms;
        let Some(c) = self.conns.get_mut(&conn) else {
            return Ok(());
        };
        c.credit += bytes as i64;
        if c.credit > 0 && !c.held.is_empty() {
            self.held_ready.insert(conn);
        }
        self.settle()
    }

    /// A request whose header was read but whose body could not be decoded: ZooKeeper
    /// answers MarshallingError and keeps the connection.
    pub fn undecodable(&mut self, conn: ConnId, xid: i32, now_ms: i64) {
        self.now = now_ms;
        self.stats.received += 1;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.took(xid, now_ms as u64);
        let frame = error_reply(
            xid,
            self.tree.last_processed_zxid(),
            crate::types::ErrorCode::MarshallingError,
        );
        self.reply(conn, xid, frame);
    }

    /// The connection has ended: its watches go; its session lives on until it expires
    /// or the client reconnects.
    pub fn closed(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            self.watches.remove_watcher(conn);
            if self.session_conn.get(&c.session) == Some(&conn) {
                self.session_conn.remove(&c.session);
            }
        }
    }

    /// One core tick passed (`ServerConfig::core_ticks_per_tick` of them make a
    /// tickTime): ZAB's timers. Once per tickTime, the leader expires sessions and reaps
    /// containers and TTL nodes, and a learner reports its sessions' activity.
    pub fn tick(&mut self, now_ms: i64) -> Result<(), Fatal> {
        self.now = now_ms;
        self.core_ticks += 1;
        self.zab.tick();
        self.check_read_only();
        if !self
            .core_ticks
            .is_multiple_of(u64::from(self.config.core_ticks_per_tick()))
        {
            return self.settle();
        }
        self.ticks += 1;
        // Revalidations of connections that went away are forgotten (their syncs may
        // never complete if the leader refused them).
        let conns = &self.conns;
        self.revalidations
            .retain(|_, rv| conns.contains_key(&rv.conn));
        self.local_tick();
        if self.zab.is_serving() && self.is_leader() {
            self.touched.clear();
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
            for session in std::mem::take(&mut self.touched) {
                if let Some(s) = self.sessions.get(session) {
                    let timeout = s.timeout_ms;
                    self.zab.touch_session(session, timeout);
                }
            }
        }
        self.settle()
    }

    /// The peer transport connected to `sid`.
    pub fn peer_connected(&mut self, sid: Sid) -> Result<(), Fatal> {
        if self.deaf() {
            return Ok(());
        }
        self.zab.peer_connected(sid);
        self.settle()
    }

    /// The connection to `sid` broke: what was meant for it goes with it.
    pub fn peer_disconnected(&mut self, sid: Sid) -> Result<(), Fatal> {
        if self.deaf() {
            return Ok(());
        }
        self.snaps.abandon(sid);
        self.drop_snap_parts_from(sid);
        self.zab.peer_disconnected(sid);
        self.settle()
    }

    /// A message from `sid`.
    pub fn peer_message(&mut self, sid: Sid, msg: PeerMessage) -> Result<(), Fatal> {
        if self.deaf() {
            return Ok(());
        }
        let msg = match msg {
            PeerMessage::SnapPart { zxid, last, part } => {
                match self.join_snap(sid, zxid, last, part) {
                    Some(snap) => snap,
                    None => return self.settle(),
                }
            }
            msg => msg,
        };
        self.zab.step(sid, msg);
        self.settle()
    }

    /// A part of a SNAP: kept while more are to come; the whole SNAP once `last`. Only
    /// the leader this server follows may send one (anyone else is disconnected: no
    /// peer but the leader can make this server hold a tree's worth of bytes).
    fn join_snap(&mut self, from: Sid, zxid: Zxid, last: bool, part: Bytes) -> Option<PeerMessage> {
        // (a leader's `leader()` is itself, never a peer)
        if self.zab.leader() != Some(from) {
            tracing::info!(
                "a SNAP part from server {from}, which is not my leader: disconnecting it"
            );
            self.snap_in = None;
            self.out.push_back(Output::Disconnect { peer: from });
            return None;
        }
        let joined = match self.snap_in.take() {
            Some((f, z, mut bytes)) if f == from && z == zxid => {
                bytes.extend_from_slice(&part);
                bytes
            }
            _ => part.to_vec(),
        };
        if !last {
            self.snap_in = Some((from, zxid, joined));
            return None;
        }
        Some(PeerMessage::Snap {
            zxid,
            snapshot: Bytes::from(joined),
        })
    }

    /// The connection to `peer` is gone: the SNAP parts it sent so far go with it (a
    /// new SNAP starts over).
    fn drop_snap_parts_from(&mut self, peer: Sid) {
        if self
            .snap_in
            .as_ref()
            .is_some_and(|(from, ..)| *from == peer)
        {
            self.snap_in = None;
        }
    }

    /// Answers a four-letter word from a [`fourlw::Status`] snapshot; `srst` and `crst`
    /// reset the counters they name.
    pub fn four_letter_word(
        &mut self,
        cmd: &str,
        remote: SocketAddr,
        host: HostFacts,
        now_ms: i64,
    ) -> String {
        self.now = now_ms;
        let allowed = self.config.four_letter_word_allowed(cmd);
        let status = self.status(fourlw::needs(cmd), Some(remote), host);
        let text = fourlw::answer(&self.config, &status, cmd);
        if allowed {
            self.reset_counters(cmd);
        }
        text
    }

    /// Answers an AdminServer command (`/commands/<name>`) as JSON; `stat_reset` and
    /// `connection_stat_reset` reset what `srst` and `crst` do.
    pub fn admin_command(
        &mut self,
        name: &str,
        args: &[(String, String)],
        host: HostFacts,
        now_ms: i64,
    ) -> serde_json::Value {
        self.now = now_ms;
        let status = self.status(admin::needs(name), None, host);
        let answer = admin::answer(&self.config, &status, name, args);
        if answer["error"].is_null() {
            if let Some(c) = admin::command(name) {
                self.reset_counters(c.word);
                if c.name == "set_trace_mask" {
                    if let Some(mask) = answer["tracemask"].as_i64() {
                        self.trace_mask = mask;
                    }
                }
            }
        }
        answer
    }

    /// The Prometheus gauges, read now.
    pub fn metrics(&mut self, host: HostFacts, now_ms: i64) -> Vec<(&'static str, f64)> {
        self.now = now_ms;
        admin::metrics(&self.status(fourlw::needs("mntr"), None, host))
    }

    /// `srst` and `crst` zero the counters they name; other words change nothing.
    fn reset_counters(&mut self, word: &str) {
        match word {
            "srst" => self.stats.reset(),
            "crst" => {
                for c in self.conns.values_mut() {
                    c.reset_counters();
                }
            }
            _ => {}
        }
    }

    // ----- storage -----

    /// The core's next persist actions, if it has anything to do (the list may be
    /// empty: then there is nothing to persist, but [`Pipeline::written`] and
    /// [`Pipeline::durable`] must still be called to release the rest).
    pub fn take_persist(&mut self) -> Option<Vec<PersistAction>> {
        debug_assert!(self.unpersisted.is_none(), "durable() was not called");
        if !self.zab.has_ready() {
            return None;
        }
        let mut ready = self.zab.ready();
        let persist = std::mem::take(&mut ready.persist);
        self.unpersisted = Some(ready);
        Some(persist)
    }

    /// The actions from the last [`Pipeline::take_persist`] are executed (written, not
    /// necessarily durable): the core's messages up to its first SNAP or disconnect
    /// (a leader's PROPOSE and COMMIT, ACKs released by earlier fsyncs) are released
    /// now, so they leave while the log is being fsynced. None of them depends on this
    /// step's persistence: what does is a [`crate::core::Outbound::Durable`] message,
    /// which the core builds only after [`Pipeline::durable`].
    pub fn written(&mut self) {
        let Some(ready) = self.unpersisted.as_mut() else {
            return;
        };
        let early = ready
            .messages
            .iter()
            .position(|m| matches!(m, Outbound::Snapshot { .. } | Outbound::Disconnect { .. }))
            .unwrap_or(ready.messages.len());
        let early: Vec<Outbound> = ready.messages.drain(..early).collect();
        for out in early {
            self.release_message(out);
        }
    }

    /// Every action handed out by [`Pipeline::take_persist`] so far is durable: the
    /// core releases the ACKs that waited for it (and a leader counts its own); the
    /// commits that came with the actions are applied and answered, then the rest of
    /// the messages and the events. A server thus applies only txns it holds durably.
    pub fn durable(&mut self, now_ms: i64) -> Result<(), Fatal> {
        self.now = now_ms;
        let ready = self.unpersisted.take();
        self.zab.all_persisted();
        if let Some(ready) = ready {
            self.release(ready)?;
        }
        self.settle()
    }

    /// The tree was replaced rather than advanced by a commit (start-up recovery, SNAP,
    /// TRUNC reload): the session table with it, `/zookeeper/config` written anew (as
    /// ZooKeeper's `initConfigInZKDatabase`; not part of the digest), and reported.
    pub fn replace_tree(
        &mut self,
        tree: DataTree,
        sessions: Vec<(SessionId, i32)>,
        source: TreeSource,
    ) {
        self.tree = tree;
        self.prepper.reset();
        let mut tracker = SessionTracker::new(self.config.tick_time_ms);
        for (id, timeout) in sessions {
            tracker.add(id, timeout);
        }
        self.sessions = tracker;
        if let Some(data) = self.config.config_node_data() {
            self.tree
                .set_config_data(data.as_bytes(), self.config.config_version as i64, self.now);
        }
        self.observe(|p| Observation::TreeLoaded {
            source,
            zxid: p.tree.last_processed_zxid(),
            digest: p.tree.digest(),
        });
    }

    /// A SNAP asked for with [`Output::SerializeSnap`] was serialized (or failed): it is
    /// sent, then what waited behind it.
    pub fn snap_serialized(&mut self, to: Sid, result: Result<Vec<u8>, String>) {
        let Some((zxid, held)) = self.snaps.finish(to) else {
            return;
        };
        match result {
            Ok(bytes) => {
                // In parts, so that no peer frame holds a whole tree (ZooKeeper streams
                // the snapshot); the learner joins them.
                let bytes = Bytes::from(bytes);
                let mut start = 0;
                loop {
                    let end = (start + SNAP_PART_BYTES).min(bytes.len());
                    let last = end == bytes.len();
                    let part = bytes.slice(start..end);
                    self.out.push_back(Output::Send {
                        to,
                        msg: PeerMessage::SnapPart { zxid, last, part },
                    });
                    if last {
                        break;
                    }
                    start = end;
                }
                for msg in held {
                    self.out.push_back(Output::Send { to, msg });
                }
            }
            Err(e) => {
                // The learner's sync cannot go on: it starts over on a new connection.
                tracing::error!("serializing the SNAP for server {to} failed: {e}");
                self.out.push_back(Output::Disconnect { peer: to });
            }
        }
    }

    /// Whether enough txns were applied since the last snapshot (`snapCount`, randomised
    /// per server as ZooKeeper does, so an ensemble's servers do not all snapshot at
    /// once).
    pub fn snapshot_due(&self) -> bool {
        self.txns_since_snapshot >= self.snapshot_threshold
    }

    /// Freezes the tree (O(1)) for a snapshot at the zxid applied now, and draws the
    /// next threshold.
    pub fn take_snapshot(&mut self) -> SnapshotDue {
        self.txns_since_snapshot = 0;
        self.snapshots_started += 1;
        self.snapshot_threshold = snapshot_threshold(
            self.config.snap_count,
            self.now as u64,
            self.config.my_id,
            self.snapshots_started,
        );
        SnapshotDue {
            zxid: self.tree.last_processed_zxid(),
            tree: self.tree.freeze(),
            sessions: self.sessions.timeouts(),
        }
    }

    // ----- outputs and queries -----

    /// The next thing to do, in the order produced.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The server's role as the four-letter words report it.
    pub fn mode_name(&self) -> &'static str {
        if self.config.servers.is_empty() {
            return "standalone";
        }
        if self.read_only {
            return "read-only";
        }
        match self.zab.role() {
            Role::Leading => "leader",
            Role::Following { .. } => "follower",
            Role::Observing { .. } => "observer",
            Role::Looking => "looking",
        }
    }

    /// The ZAB core (read-only).
    pub fn zab(&self) -> &Zab {
        &self.zab
    }

    /// The tree (read-only).
    pub fn tree(&self) -> &DataTree {
        &self.tree
    }

    /// The session table (read-only).
    pub fn sessions(&self) -> &SessionTracker {
        &self.sessions
    }

    /// The connections the pipeline knows, by id.
    pub fn conns(&self) -> &BTreeMap<ConnId, Conn> {
        &self.conns
    }

    // ----- internals -----

    fn is_leader(&self) -> bool {
        matches!(self.zab.role(), Role::Leading)
    }

    /// Deliberately broken (sim bites test): an observer that lost its leader stops
    /// hearing its peers, so it stays looking forever, serving nobody and applying
    /// nothing. Only the liveness phase's convergence check can see it.
    fn deaf(&self) -> bool {
        #[cfg(madsim)]
        if self.broken_observed.1 {
            return true;
        }
        false
    }

    fn observe(&mut self, f: impl FnOnce(&Self) -> Observation) {
        if self.observed {
            let o = f(self);
            self.out.push_back(Output::Observe(o));
        }
    }

    /// The end of every input: held requests whose connection may go on (its session is
    /// established and it has credit) are taken, in arrival order, while that lasts.
    fn settle(&mut self) -> Result<(), Fatal> {
        while let Some(conn) = self.held_ready.pop_first() {
            while let Some(c) = self.conns.get_mut(&conn) {
                let session = c.session;
                if session == 0 || c.credit <= 0 {
                    break;
                }
                let Some((xid, opcode, req)) = c.held.pop_front() else {
                    break;
                };
                self.dispatch(conn, session, xid, opcode, req)?;
            }
        }
        Ok(())
    }

    /// Containers and TTL nodes to delete now: checked every
    /// `znode.container.checkIntervalMs` (empty on other ticks).
    fn due_reaps(&self) -> Vec<String> {
        let every = (self.config.container_check_interval_ms / self.config.tick_time_ms).max(1);
        if self.ticks.is_multiple_of(every) {
            self.tree.expired_containers_and_ttls(self.now)
        } else {
            Vec::new()
        }
    }

    /// Queues a frame for a connection.
    fn send(&mut self, conn: ConnId, frame: Bytes) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.sent += 1;
        c.credit -= frame.len() as i64;
        self.stats.sent += 1;
        self.out.push_back(Output::Frame { conn, frame });
    }

    /// Queues the reply to request `xid` and records the request's latency.
    fn reply(&mut self, conn: ConnId, xid: i32, frame: Bytes) {
        let now = self.now as u64;
        self.stats.response_size.record(frame.len());
        if let Some(c) = self.conns.get_mut(&conn) {
            if let Some(ms) = c.answered(xid, now, self.started_ms) {
                self.stats.latency.record(ms);
            }
        }
        self.send(conn, frame);
    }

    /// Asks the runtime to close a connection (its reader will report it closed).
    fn close_conn(&mut self, conn: ConnId) {
        if self.conns.contains_key(&conn) {
            self.out.push_back(Output::Close { conn });
        }
    }
}

/// The first session id a server hands out: ZooKeeper's (the time in the middle bits,
/// the server id in the top byte, so no two servers of an ensemble ever make the same
/// id), and above every known session this server made (a restart within the same
/// millisecond, or a clock that went back). Sessions other servers made do not count: a
/// learner that recovered the leader's sessions and continued after the leader's
/// highest id would make ids the leader makes too.
fn first_session_id(my_id: u64, now_ms: i64, known: &[(SessionId, i32)]) -> SessionId {
    let top = my_id & 0xff;
    let base = ((now_ms << 24) as u64 >> 8) as i64 | ((top as i64) << 56);
    let mine = known
        .iter()
        .map(|s| s.0)
        .filter(|id| (*id as u64 >> 56) == top)
        .max();
    match mine {
        Some(m) if m >= base => m + 1,
        _ => base,
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

#[cfg(test)]
mod tests {
    use super::{first_session_id, snapshot_threshold};

    /// Mixed seed 170 of the campaign: a follower restarted with the leader's sessions in
    /// its table and continued after the leader's highest id, so both servers created
    /// session ...0001; the follower's CreateSession revived the id after the leader's
    /// session of that id had closed, and an ephemeral outlived its session.
    #[test]
    fn session_ids_never_collide_with_another_servers() {
        let now = 0x008c_c251_f402_i64;
        let leader = first_session_id(7, now, &[]);
        assert_eq!(leader as u64 >> 56, 7);
        // The follower knows the leader's sessions leader, leader+1, and one of its own.
        let known = [(leader, 4000), (leader + 1, 4000)];
        let follower = first_session_id(4, now, &known);
        assert_eq!(follower as u64 >> 56, 4);
        assert!(follower != leader + 2);
        // Its own sessions made in the same millisecond before a restart are skipped.
        let again = first_session_id(4, now, &[(follower, 4000), (follower + 5, 4000)]);
        assert_eq!(again, follower + 6);
        // A clock far ahead of old sessions starts at the new base.
        assert_eq!(
            first_session_id(4, now + 1000, &[(follower, 1)]) >> 24 << 24,
            first_session_id(4, now + 1000, &[]) >> 24 << 24
        );
    }

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
