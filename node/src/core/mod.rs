//! The sans-IO ZAB core: one server's view of fast leader election,
//! discovery, synchronization and broadcast.
//!
//! [`Zab`] takes inputs ([`Zab::tick`], [`Zab::step`], [`Zab::propose`],
//! [`Zab::persisted`], ...) and accumulates outputs that the runtime drains
//! with [`Zab::ready`] and executes **in this order**: every
//! [`PersistAction`] (in order; they may be written asynchronously), then the
//! commits (applied to the tree in zxid order), then the messages (in order;
//! a [`Outbound::Snapshot`] serializes the tree as it stands after those
//! commits), then the events. When persist actions are durable the runtime
//! reports it with [`Zab::persisted`], [`Zab::epoch_persisted`] or
//! [`Zab::all_persisted`]; only then does the core produce the messages that
//! depend on them ([`Outbound::Durable`]).
//!
//! There is no I/O, clock, thread or randomness here: time is [`Zab::tick`].
//! Txn payloads are opaque bytes.
//!
//! A runtime's loop, for a single-server ensemble:
//!
//! ```
//! use bytes::Bytes;
//! use zabkeeper::core::{Outbound, PersistAction, PersistedState, Zab, ZabConfig};
//!
//! let mut zab = Zab::new(ZabConfig::new(1, [1], []), PersistedState::default()).unwrap();
//! let mut applied = Vec::new();
//! // Execute a Ready in order, then report durability.
//! let mut drive = |zab: &mut Zab, applied: &mut Vec<Bytes>| {
//!     while zab.has_ready() {
//!         let ready = zab.ready();
//!         for action in ready.persist {
//!             // write to the log / epoch files; fsync (here: nothing)
//!             let _ = action;
//!         }
//!         for (_zxid, txn) in ready.commits {
//!             applied.push(txn); // apply to the tree
//!         }
//!         for m in ready.messages {
//!             match m {
//!                 Outbound::Send { .. } | Outbound::Durable(_) => { /* send */ }
//!                 Outbound::Snapshot { .. } => { /* serialize the tree, send SNAP */ }
//!                 Outbound::Disconnect { .. } => { /* close that connection */ }
//!             }
//!         }
//!         zab.all_persisted(); // after the fsync
//!     }
//! };
//! drive(&mut zab, &mut applied);
//! zab.tick(); // the election's finalize wait
//! drive(&mut zab, &mut applied);
//! assert!(zab.is_serving());
//! let zxid = zab.propose(Bytes::from_static(b"txn")).unwrap();
//! drive(&mut zab, &mut applied);
//! assert_eq!(zab.last_committed_zxid(), zxid);
//! assert_eq!(applied, vec![Bytes::from_static(b"txn")]);
//! # let _ = PersistAction::Truncate { zxid: 0 };
//! ```
//!
//! What the core assumes of the runtime:
//! - Between two servers, election notifications and ZAB packets travel on
//!   one FIFO channel; when a connection breaks the runtime calls
//!   [`Zab::peer_disconnected`] (messages lost without that are survived,
//!   through gap detection and timeouts, but cost a resync). When the core
//!   gives up on a silent peer it asks for a fresh connection with
//!   [`Outbound::Disconnect`]: the runtime closes the connection, drops what
//!   is queued on it, and reconnects (then [`Zab::peer_connected`]).
//! - Ticks arrive at a steady pace on every server (ZooKeeper's `tickTime`);
//!   `init_limit`, `sync_limit`, `finalize_wait` and the election resend
//!   interval are counted in ticks. The leader and its learners each send a
//!   PING every tick.
//! - Durability reports come in the order the persist actions were handed out.
//!
//! Robustness beyond ZooKeeper: ACKs are cumulative (an ACK of a zxid vouches
//! for the follower's whole log up to it) and a follower re-ACKs its last
//! uncommitted txn with each heartbeat; a learner that sees a gap before a
//! PROPOSAL/INFORM/COMMIT goes back to election to resync; a leader whose
//! epoch a learner already promised to surpass re-elects instead of locking
//! that learner out.

mod broadcast;
mod discovery;
pub mod durability;
mod election;
mod log;
pub mod quorum;
pub mod session;
mod synchronization;

use std::collections::BTreeSet;

use bytes::Bytes;

use self::durability::{AfterPersist, Durability, Issued, Released};
pub use self::durability::{DurableAck, EpochFile};
use self::election::Election;
pub use self::log::Synchronization;
use self::log::TxnLog;
use self::quorum::QuorumVerifier;
pub use crate::proto::peer::{
    Epoch, Notification, PeerMessage, ServerState, SessionTouch, Sid, Vote,
};
use crate::types::{zxid_counter, zxid_epoch, SessionId, Zxid};

/// How many of the newest committed txns a server keeps in memory to offer a learner a
/// DIFF (ZooKeeper's committedLog), unless configured otherwise.
pub const DEFAULT_COMMITTED_LOG_WINDOW: usize = 500;

/// The configuration of one server's ZAB core. Every bound lives here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZabConfig {
    /// This server's id (`myid`).
    pub my_sid: Sid,
    /// Voting members (participants).
    pub voters: BTreeSet<Sid>,
    /// Non-voting members.
    pub observers: BTreeSet<Sid>,
    /// Ticks a leader or learner may spend in discovery and sync (`initLimit`).
    pub init_limit: u32,
    /// Ticks of silence after which a leader without a quorum steps down and
    /// a learner abandons its leader (`syncLimit`).
    pub sync_limit: u32,
    /// Ticks to wait once a quorum agrees before deciding an election or
    /// joining a settled ensemble (`finalizeWait`); at least 1, so that no
    /// election loop runs without time passing.
    pub finalize_wait: u32,
    /// Ticks between repeated election notifications while looking; doubles
    /// up to [`ZabConfig::election_resend_max`].
    pub election_resend: u32,
    /// Upper bound of the notification resend interval (`maxNotificationInterval`).
    pub election_resend_max: u32,
    /// Proposals a leader keeps in flight before refusing new ones.
    pub max_outstanding_proposals: usize,
    /// Committed txns kept in memory to sync learners by DIFF (`committedLog`, 500 in ZooKeeper).
    pub committed_log_window: usize,
    /// Largest txn payload accepted (`jute.maxbuffer`).
    pub max_txn_bytes: usize,
    /// Largest peer frame the codec accepts (a SNAP travels in parts).
    pub max_frame_bytes: usize,
    /// Pending `sync` requests a leader keeps.
    pub max_pending_syncs: usize,
    /// Session touches a learner buffers between PINGs.
    pub max_session_touches: usize,
    /// `quorumReads`: a `sync` is answered only once a quorum of voters
    /// echoed a heartbeat sent after it, so a read after `sync` is
    /// linearizable even across a leader change (off by default, as in
    /// ZooKeeper, where sync alone is not: ZOOKEEPER-1675).
    pub quorum_reads: bool,
    /// Highest zxid counter a leader assigns before forcing a new epoch
    /// (`0xffff_ffff` in ZooKeeper; smaller values exercise the rollover).
    pub zxid_counter_limit: u32,
}

impl ZabConfig {
    /// A configuration with ZooKeeper-like defaults.
    pub fn new(
        my_sid: Sid,
        voters: impl IntoIterator<Item = Sid>,
        observers: impl IntoIterator<Item = Sid>,
    ) -> ZabConfig {
        ZabConfig {
            my_sid,
            voters: voters.into_iter().collect(),
            observers: observers.into_iter().collect(),
            init_limit: 10,
            sync_limit: 5,
            finalize_wait: 1,
            election_resend: 2,
            election_resend_max: 30,
            max_outstanding_proposals: 1000,
            committed_log_window: DEFAULT_COMMITTED_LOG_WINDOW,
            max_txn_bytes: 0xfffff,
            max_frame_bytes: 64 << 20,
            max_pending_syncs: 1000,
            max_session_touches: 100_000,
            zxid_counter_limit: u32::MAX,
            quorum_reads: false,
        }
    }

    /// Checks that the configuration is usable.
    pub fn validate(&self) -> Result<(), String> {
        if self.voters.is_empty() {
            return Err("no voting members".into());
        }
        if !self.voters.contains(&self.my_sid) && !self.observers.contains(&self.my_sid) {
            return Err(format!(
                "my sid {} is neither a voter nor an observer",
                self.my_sid
            ));
        }
        if let Some(s) = self.voters.intersection(&self.observers).next() {
            return Err(format!("sid {s} is both a voter and an observer"));
        }
        let positive = [
            ("init_limit", self.init_limit as usize),
            ("sync_limit", self.sync_limit as usize),
            ("finalize_wait", self.finalize_wait as usize),
            ("election_resend", self.election_resend as usize),
            ("election_resend_max", self.election_resend_max as usize),
            ("max_outstanding_proposals", self.max_outstanding_proposals),
            ("max_txn_bytes", self.max_txn_bytes),
            ("max_frame_bytes", self.max_frame_bytes),
            ("max_pending_syncs", self.max_pending_syncs),
            ("zxid_counter_limit", self.zxid_counter_limit as usize),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.election_resend_max < self.election_resend {
            return Err("election_resend_max is below election_resend".into());
        }
        if self.max_txn_bytes >= self.max_frame_bytes {
            return Err("max_txn_bytes must be below max_frame_bytes".into());
        }
        Ok(())
    }

    fn is_observer(&self) -> bool {
        self.observers.contains(&self.my_sid)
    }

    fn is_member(&self, sid: Sid) -> bool {
        self.voters.contains(&sid) || self.observers.contains(&sid)
    }
}

/// What the server found on disk at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistedState {
    /// `acceptedEpoch`.
    pub accepted_epoch: Epoch,
    /// `currentEpoch`.
    pub current_epoch: Epoch,
    /// The last zxid in the log (or the snapshot's, if the log is empty).
    pub last_logged_zxid: Zxid,
    /// The last txn the tree has applied.
    pub last_committed_zxid: Zxid,
    /// The zxid of the log entry just before `log_tail[0]` (0 if the tail
    /// starts at the beginning of history).
    pub log_tail_base: Zxid,
    /// The newest log entries, in zxid order: every txn above
    /// `last_committed_zxid`, plus as many committed ones as the runtime
    /// wants to offer for DIFF (at most `committed_log_window` are kept).
    pub log_tail: Vec<(Zxid, Bytes)>,
}

/// A persistence step the runtime executes, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PersistAction {
    /// Append a txn to the log.
    AppendTxn { zxid: Zxid, payload: Bytes },
    /// Drop every log entry above `zxid`.
    Truncate { zxid: Zxid },
    /// The tree applied txns that a TRUNC removed: rebuild it from the last
    /// snapshot at or below `zxid` plus the log up to `zxid`. A runtime that
    /// kept no such snapshot must discard its snapshots and log and restart
    /// empty (fail-stop): the leader then sends it a SNAP.
    ReloadTree { zxid: Zxid },
    /// Write `acceptedEpoch`.
    SetAcceptedEpoch(Epoch),
    /// Write `currentEpoch`.
    SetCurrentEpoch(Epoch),
    /// Replace the tree with this snapshot (taken at `zxid`), save it, and
    /// start the log after `zxid`.
    ApplySnapshot { zxid: Zxid, snapshot: Bytes },
}

/// A message for the runtime to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// A message that depends on no durability.
    Send { to: Sid, msg: PeerMessage },
    /// An ACK or ACKEPOCH whose persistence the runtime already reported.
    Durable(DurableAck),
    /// Serialize the tree (now at `zxid`, after this Ready's commits) and
    /// send it as `PeerMessage::Snap { zxid, snapshot }`.
    Snapshot { to: Sid, zxid: Zxid },
    /// Close the connection to `peer` and discard what is queued on it; the
    /// messages after this one to `peer` need a fresh connection (the
    /// runtime reconnects as usual and reports [`Zab::peer_connected`]).
    ///
    /// The core gives up on a peer this way when it stays silent: a learner
    /// whose leader was silent for `syncLimit` (ZooKeeper's learner socket
    /// read timeout), a leader whose learner was (`LearnerHandler`'s
    /// syncLimit check) or did not sync within `initLimit`, and a looking
    /// server whose notification a voter left unanswered for an election
    /// resend interval. What was queued on that connection (during a
    /// partition: everything since it began) is stale, and would otherwise
    /// arrive before the election's answers once the network heals. Losing
    /// it is safe: discovery and sync re-send what ZAB needs.
    Disconnect { peer: Sid },
}

impl Outbound {
    /// The destination server.
    pub fn to(&self) -> Sid {
        match self {
            Outbound::Send { to, .. } | Outbound::Snapshot { to, .. } => *to,
            Outbound::Durable(d) => d.to(),
            Outbound::Disconnect { peer } => *peer,
        }
    }
}

/// This server's role, as ZooKeeper's `ServerState` plus the leader it follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// In leader election.
    Looking,
    /// A voter following `leader` (possibly still syncing with it).
    Following { leader: Sid },
    /// The leader (possibly still establishing its epoch).
    Leading,
    /// An observer following `leader`.
    Observing { leader: Sid },
}

/// Things the runtime should know about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The role changed; stop serving clients until [`Event::Serving`].
    RoleChanged(Role),
    /// Synced with a quorum-backed leader (or leading one) in `epoch`:
    /// serve clients.
    Serving { epoch: Epoch },
    /// Leader only: a learner forwarded a client write to prep and propose.
    Request {
        from: Sid,
        session: SessionId,
        cxid: i32,
        payload: Bytes,
    },
    /// A `sync` issued with [`Zab::sync`] is done: every write proposed
    /// before it has been applied here.
    SyncDone { id: u64 },
    /// Leader only: sessions a learner reported active.
    SessionTouches {
        from: Sid,
        touches: Vec<SessionTouch>,
    },
    /// Leader only: a quorum still followed this leader after
    /// [`Zab::confirm_leadership`] with `id` was called, so a read served
    /// now is linearizable. (If leadership is lost first, no event comes:
    /// the runtime fails pending reads on [`Event::RoleChanged`].)
    LeadershipConfirmed { id: u64 },
}

/// Everything the runtime must do, drained by [`Zab::ready`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    /// First: persistence, in order.
    pub persist: Vec<PersistAction>,
    /// Second: committed txns to apply to the tree, in zxid order.
    pub commits: Vec<(Zxid, Bytes)>,
    /// Third: messages, in order.
    pub messages: Vec<Outbound>,
    /// Last: notifications for the runtime.
    pub events: Vec<Event>,
}

impl Ready {
    /// True if there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty()
            && self.commits.is_empty()
            && self.messages.is_empty()
            && self.events.is_empty()
    }
}

/// Why a write could not be proposed (or forwarded).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<Sid> },
    #[error("not serving: election or sync in progress")]
    NotServing,
    #[error("too many outstanding proposals")]
    TooManyOutstanding,
    #[error("payload larger than max_txn_bytes")]
    TooLarge,
    #[error("zxid counter exhausted: a new epoch is being elected")]
    EpochExhausted,
}

/// Counters for observability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Protocol-invalid or unexpected peer messages dropped.
    pub dropped: u64,
    /// Durability reports that matched no pending persist action.
    pub ignored_reports: u64,
    /// Elections started.
    pub elections: u64,
    /// Proposals made as leader.
    pub proposals: u64,
    /// Txns committed (applied) here.
    pub commits: u64,
}

/// The role-specific state.
#[derive(Debug)]
enum RoleState {
    Looking,
    Leading(discovery::Leader),
    Learning(discovery::Learner),
}

/// One server's ZAB state machine. See the module documentation.
#[derive(Debug)]
pub struct Zab {
    cfg: ZabConfig,
    quorum: QuorumVerifier,
    accepted_epoch: Epoch,
    current_epoch: Epoch,
    log: TxnLog,
    durability: Durability,
    election: Election,
    role: RoleState,
    ready: Ready,
    stats: Stats,
    now: u64,
    /// The last zxid handed out in `Ready::commits` (for the invariants).
    last_applied: Zxid,
}

impl Zab {
    /// Builds the core from a validated configuration and the state found on
    /// disk, and starts looking for a leader (the first notifications are in
    /// the first [`Zab::ready`]).
    pub fn new(cfg: ZabConfig, persisted: PersistedState) -> Result<Zab, String> {
        cfg.validate()?;
        if persisted.current_epoch > persisted.accepted_epoch {
            return Err("currentEpoch is above acceptedEpoch".into());
        }
        let log = TxnLog::new(
            persisted.log_tail_base,
            persisted.log_tail,
            persisted.last_committed_zxid,
            cfg.committed_log_window,
        )?;
        if log.last_logged() != persisted.last_logged_zxid {
            return Err(format!(
                "last logged zxid {:#x} does not end the log tail ({:#x})",
                persisted.last_logged_zxid,
                log.last_logged()
            ));
        }
        let election = Election::new(&cfg);
        let mut zab = Zab {
            quorum: QuorumVerifier::new(cfg.voters.clone()),
            accepted_epoch: persisted.accepted_epoch,
            current_epoch: persisted.current_epoch,
            last_applied: log.committed(),
            log,
            durability: Durability::default(),
            election,
            role: RoleState::Looking,
            ready: Ready::default(),
            stats: Stats::default(),
            now: 0,
            cfg,
        };
        zab.start_election();
        zab.check_invariants();
        Ok(zab)
    }

    // ----- inputs -----

    /// One tick of abstract time passed.
    pub fn tick(&mut self) {
        self.now += 1;
        match self.role {
            RoleState::Looking => self.election_tick(),
            RoleState::Leading(_) => self.leader_tick(),
            RoleState::Learning(_) => self.learner_tick(),
        }
        self.check_invariants();
    }

    /// A message arrived from peer `from`.
    pub fn step(&mut self, from: Sid, msg: PeerMessage) {
        if from == self.cfg.my_sid || !self.cfg.is_member(from) {
            self.drop_msg(from, &msg, "not a peer");
        } else if let PeerMessage::Notification(n) = msg {
            self.heard_from(from);
            self.forget_early_info(from, Some(&n));
            self.on_notification(from, n);
        } else {
            self.heard_from(from);
            match self.role {
                RoleState::Looking => self.looking_step(from, msg),
                RoleState::Leading(_) => self.leader_step(from, msg),
                RoleState::Learning(_) => self.learner_step(from, msg),
            }
        }
        self.check_invariants();
    }

    /// Leader only: proposes a prepped txn; returns its zxid.
    pub fn propose(&mut self, payload: Bytes) -> Result<Zxid, ProposeError> {
        let r = self.leader_propose(payload);
        self.check_invariants();
        r
    }

    /// Leader only: (learners connected, voting followers in broadcast,
    /// observers in broadcast), as ZooKeeper's `zk_followers`,
    /// `zk_synced_followers` and `zk_synced_observers`.
    pub fn learner_counts(&self) -> Option<(usize, usize, usize)> {
        match &self.role {
            RoleState::Leading(ld) => {
                let active = |obs: bool| {
                    ld.peers
                        .values()
                        .filter(|p| p.observer == obs && p.phase == discovery::PeerPhase::Active)
                        .count()
                };
                Some((ld.peers.len(), active(false), active(true)))
            }
            _ => None,
        }
    }

    /// Leader only: the observers in broadcast.
    pub fn synced_observers(&self) -> Vec<Sid> {
        match &self.role {
            RoleState::Leading(ld) => ld
                .peers
                .iter()
                .filter(|(_, p)| p.observer && p.phase == discovery::PeerPhase::Active)
                .map(|(sid, _)| *sid)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Leader only: the zxid the next [`Zab::propose`] will assign, if it would
    /// be accepted now. The runtime preps a txn for exactly this zxid.
    pub fn next_zxid(&self) -> Option<Zxid> {
        match &self.role {
            RoleState::Leading(ld) if ld.is_serving() => {
                let counter = crate::types::zxid_counter(ld.last_proposed);
                if counter >= self.cfg.zxid_counter_limit
                    || ld.outstanding.len() >= self.cfg.max_outstanding_proposals
                {
                    return None;
                }
                Some(crate::types::make_zxid(ld.epoch, counter + 1))
            }
            _ => None,
        }
    }

    /// Learner only: forwards a client write to the leader, which hands it
    /// to its runtime as [`Event::Request`].
    pub fn forward(
        &mut self,
        session: SessionId,
        cxid: i32,
        payload: Bytes,
    ) -> Result<(), ProposeError> {
        if payload.len() > self.cfg.max_txn_bytes {
            return Err(ProposeError::TooLarge);
        }
        match &self.role {
            RoleState::Learning(l) if l.is_serving() => {
                let to = l.leader;
                self.send(
                    to,
                    PeerMessage::Request {
                        session,
                        cxid,
                        payload,
                    },
                );
                Ok(())
            }
            RoleState::Learning(_) => Err(ProposeError::NotServing),
            RoleState::Leading(_) => Err(ProposeError::NotLeader {
                leader: Some(self.cfg.my_sid),
            }),
            RoleState::Looking => Err(ProposeError::NotServing),
        }
    }

    /// A client `sync`: [`Event::SyncDone`] with `id` follows once every
    /// write the leader proposed before it has been applied here. Pending
    /// syncs are abandoned on a role change: fail them on
    /// [`Event::RoleChanged`] (the client retries, as after a disconnect).
    pub fn sync(&mut self, id: u64) -> Result<(), ProposeError> {
        let r = match &self.role {
            RoleState::Leading(_) => self.leader_sync(None, id),
            RoleState::Learning(l) if l.is_serving() => {
                let to = l.leader;
                self.send(to, PeerMessage::Sync { id });
                Ok(())
            }
            _ => Err(ProposeError::NotServing),
        };
        self.check_invariants();
        r
    }

    /// Leader only: asks for [`Event::LeadershipConfirmed`] with `id` once a
    /// quorum of voters answered a heartbeat sent after this call (a
    /// quorum read: ZooKeeper's read-your-quorum option). Takes a round trip or
    /// two: a round leaves at once unless one is in flight, and learners echo it
    /// when it arrives.
    pub fn confirm_leadership(&mut self, id: u64) -> Result<(), ProposeError> {
        let r = self.leader_confirm(id);
        self.check_invariants();
        r
    }

    /// Learner only: notes a session as active; the touch rides on the next
    /// PING to the leader. Ignored when the buffer is full or not learning.
    pub fn touch_session(&mut self, session: SessionId, timeout_ms: i32) {
        let limit = self.cfg.max_session_touches;
        if let RoleState::Learning(l) = &mut self.role {
            if l.touches.len() < limit || l.touches.contains_key(&session) {
                l.touches.insert(session, timeout_ms);
            }
        }
    }

    /// The runtime made durable every persist action handed out so far up to
    /// and including the `AppendTxn` or `ApplySnapshot` of `upto`.
    pub fn persisted(&mut self, upto: Zxid) {
        let r = self
            .durability
            .report(|w| matches!(w, Issued::Txn(z) | Issued::Snapshot(z) if *z == upto));
        self.on_released(r);
    }

    /// The runtime made durable every persist action handed out so far up to
    /// and including the write of `epoch` to `file`.
    pub fn epoch_persisted(&mut self, file: EpochFile, epoch: Epoch) {
        let r = self.durability.report(|w| *w == Issued::Epoch(file, epoch));
        self.on_released(r);
    }

    /// Every persist action handed out so far (drained with [`Zab::ready`]) is
    /// durable; actions issued since are not covered.
    pub fn all_persisted(&mut self) {
        let r = self.durability.report_handed_out();
        self.on_released(Some(r));
    }

    /// A connection to `sid` came up: a looking server tells it its vote.
    pub fn peer_connected(&mut self, sid: Sid) {
        if matches!(self.role, RoleState::Looking)
            && sid != self.cfg.my_sid
            && self.cfg.is_member(sid)
        {
            let n = self.my_notification();
            // A fresh connection: the greeting starts a new wait for an answer.
            self.election.unanswered.insert(sid, self.now);
            self.send(sid, PeerMessage::Notification(n));
        }
    }

    /// The connection to `sid` broke: a learner whose leader it was looks
    /// for a new one; a leader forgets that learner, and steps down at once
    /// if the learners left are no quorum (rather than at its next tick: a
    /// leader that was paused learns this way that the ensemble moved on,
    /// before it answers another `sync`).
    pub fn peer_disconnected(&mut self, sid: Sid) {
        self.forget_early_info(sid, None);
        match &mut self.role {
            RoleState::Learning(l) if l.leader == sid => self.start_election(),
            RoleState::Leading(ld) => {
                ld.peers.remove(&sid);
                if self.leader_lost_quorum() {
                    self.start_election();
                }
            }
            _ => {}
        }
        self.check_invariants();
    }

    // ----- outputs and queries -----

    /// Drains the work accumulated since the last call.
    pub fn ready(&mut self) -> Ready {
        let mut ready = std::mem::take(&mut self.ready);
        self.durability.mark_handed_out();
        // Snapshots are taken after this Ready's commits: they cover every
        // txn committed so far, so txns at or below that point queued for the
        // same learner after the snapshot request are redundant.
        let committed = self.log.committed();
        let mut snapped: BTreeSet<Sid> = BTreeSet::new();
        ready.messages.retain_mut(|m| match m {
            Outbound::Snapshot { to, zxid } => {
                *zxid = committed;
                snapped.insert(*to);
                true
            }
            Outbound::Send { to, msg } if snapped.contains(to) => !matches!(
                msg,
                PeerMessage::Proposal { zxid, .. } | PeerMessage::Commit { zxid } | PeerMessage::Inform { zxid, .. }
                    if *zxid <= committed
            ),
            _ => true,
        });
        ready
    }

    /// True if [`Zab::ready`] has something.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// This server's id.
    pub fn sid(&self) -> Sid {
        self.cfg.my_sid
    }

    /// The current role.
    pub fn role(&self) -> Role {
        match &self.role {
            RoleState::Looking => Role::Looking,
            RoleState::Leading(_) => Role::Leading,
            RoleState::Learning(l) if l.observer => Role::Observing { leader: l.leader },
            RoleState::Learning(l) => Role::Following { leader: l.leader },
        }
    }

    /// The leader this server follows or is, if any.
    pub fn leader(&self) -> Option<Sid> {
        match &self.role {
            RoleState::Looking => None,
            RoleState::Leading(_) => Some(self.cfg.my_sid),
            RoleState::Learning(l) => Some(l.leader),
        }
    }

    /// True once this server may serve clients (leader in broadcast, or
    /// learner after UPTODATE).
    pub fn is_serving(&self) -> bool {
        match &self.role {
            RoleState::Looking => false,
            RoleState::Leading(l) => l.is_serving(),
            RoleState::Learning(l) => l.is_serving(),
        }
    }

    /// `acceptedEpoch` as last handed out for persistence.
    pub fn accepted_epoch(&self) -> Epoch {
        self.accepted_epoch
    }

    /// `currentEpoch` as last handed out for persistence.
    pub fn current_epoch(&self) -> Epoch {
        self.current_epoch
    }

    /// The last zxid handed out for logging.
    pub fn last_logged_zxid(&self) -> Zxid {
        self.log.last_logged()
    }

    /// The last committed zxid handed out in [`Ready::commits`].
    pub fn last_committed_zxid(&self) -> Zxid {
        self.log.committed()
    }

    /// The election's logical clock.
    pub fn election_epoch(&self) -> u64 {
        self.election.logical_clock
    }

    /// The vote this server currently proposes or settled on.
    pub fn current_vote(&self) -> Vote {
        self.election.proposal
    }

    /// Persist actions handed out and not yet reported durable.
    pub fn unsynced_persist_actions(&self) -> usize {
        self.durability.unsynced_len()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Checks the core's invariants (panics on a violation: a bug here, not
    /// bad input); runs in debug and simulation builds, a no-op otherwise.
    pub fn check_invariants(&self) {
        if cfg!(debug_assertions) || cfg!(madsim) {
            if let Err(e) = self.invariants() {
                panic!("zab invariant violated on server {}: {e}", self.cfg.my_sid);
            }
        }
    }

    fn invariants(&self) -> Result<(), String> {
        if self.log.committed() > self.log.last_logged() {
            return Err("last committed is above last logged".into());
        }
        if self.current_epoch > self.accepted_epoch {
            return Err("currentEpoch is above acceptedEpoch".into());
        }
        let mut prev = None;
        for (z, _) in self.log.entries() {
            if prev.is_some_and(|p| p >= *z) {
                return Err(format!("log not in zxid order at {z:#x}"));
            }
            prev = Some(*z);
        }
        if self.last_applied != self.log.committed() {
            return Err("commits handed out do not match the committed point".into());
        }
        if let RoleState::Leading(ld) = &self.role {
            if ld.epoch_decided() {
                if self.accepted_epoch != ld.epoch {
                    return Err("leader's acceptedEpoch is not its epoch".into());
                }
                for z in ld.outstanding.keys() {
                    if zxid_epoch(*z) != ld.epoch {
                        return Err(format!("leader of epoch {} proposed {z:#x}", ld.epoch));
                    }
                    if *z <= self.log.committed() {
                        return Err(format!("outstanding {z:#x} is already committed"));
                    }
                }
                if ld.outstanding.len() > self.cfg.max_outstanding_proposals {
                    return Err("too many outstanding proposals".into());
                }
                if ld.is_serving() && zxid_counter(ld.last_proposed) > self.cfg.zxid_counter_limit {
                    return Err("zxid counter above its limit".into());
                }
            }
        }
        Ok(())
    }

    // ----- helpers shared by the phases -----

    /// Asks the runtime to close the connection to `peer` (and drop its
    /// queue); see [`Outbound::Disconnect`].
    fn disconnect(&mut self, peer: Sid) {
        self.ready.messages.push(Outbound::Disconnect { peer });
    }

    /// Queues a message that depends on no durability.
    fn send(&mut self, to: Sid, msg: PeerMessage) {
        debug_assert!(
            !msg.requires_durability(),
            "{} must go through send_durable",
            msg.name()
        );
        self.ready.messages.push(Outbound::Send { to, msg });
    }

    /// Queues a message for when everything persisted so far is durable.
    fn send_durable(&mut self, to: Sid, msg: PeerMessage) {
        let r = self
            .durability
            .after_persisted(AfterPersist::Send { to, msg });
        if let Some(r) = r {
            self.on_released(Some(vec![r]));
        }
    }

    /// Runs leader work for when everything persisted so far is durable.
    fn after_persisted(&mut self, item: AfterPersist) {
        if let Some(r) = self.durability.after_persisted(item) {
            self.on_released(Some(vec![r]));
        }
    }

    fn on_released(&mut self, released: Option<Vec<Released>>) {
        let Some(released) = released else {
            self.stats.ignored_reports += 1;
            return;
        };
        for r in released {
            match r {
                Released::Message(m) => self.ready.messages.push(Outbound::Durable(m)),
                Released::Leader(item) => self.leader_durable(item),
            }
        }
        self.check_invariants();
    }

    /// Hands a persist action to the runtime and tracks its durability.
    fn persist(&mut self, action: PersistAction) {
        let issued = match &action {
            PersistAction::AppendTxn { zxid, .. } => Issued::Txn(*zxid),
            PersistAction::ApplySnapshot { zxid, .. } => Issued::Snapshot(*zxid),
            PersistAction::SetAcceptedEpoch(e) => Issued::Epoch(EpochFile::Accepted, *e),
            PersistAction::SetCurrentEpoch(e) => Issued::Epoch(EpochFile::Current, *e),
            PersistAction::Truncate { .. } | PersistAction::ReloadTree { .. } => Issued::Other,
        };
        self.durability.issue(issued);
        self.ready.persist.push(action);
    }

    /// Commits through `zxid` and hands the newly committed txns out.
    fn commit_through(&mut self, zxid: Zxid) {
        let newly = self.log.commit_through(zxid);
        for (z, _) in &newly {
            debug_assert!(*z > self.last_applied, "commits out of order");
            self.last_applied = *z;
        }
        self.stats.commits += newly.len() as u64;
        self.ready.commits.extend(newly);
    }

    fn drop_msg(&mut self, from: Sid, msg: &PeerMessage, why: &str) {
        self.stats.dropped += 1;
        tracing::debug!(
            sid = self.cfg.my_sid,
            from,
            msg = msg.name(),
            why,
            "dropped peer message"
        );
    }

    fn set_role(&mut self, role: RoleState) {
        self.durability.drop_held();
        self.role = role;
        let r = self.role();
        self.ready.events.push(Event::RoleChanged(r));
    }
}

#[cfg(test)]
mod tests;
