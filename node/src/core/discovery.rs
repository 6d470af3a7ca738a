//! ZAB phase 1, discovery: learners send FOLLOWERINFO/OBSERVERINFO with
//! their accepted epoch; once a quorum of voters did, the leader picks an
//! epoch above all of them and sends LEADERINFO; a learner answers ACKEPOCH
//! (with its current epoch and last zxid) once that epoch is durable as its
//! accepted epoch. The leader moves on to sync after a quorum of ACKEPOCHs,
//! stepping down if a learner turns out to be more up to date than itself.
//!
//! This module also holds the leader's and learner's state, their message
//! dispatch and their timeouts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::durability::AfterPersist;
use super::{Event, PersistAction, RoleState, Zab};
use crate::proto::peer::{Epoch, PeerMessage, SessionTouch, Sid};
use crate::types::{make_zxid, zxid_epoch, SessionId, Zxid};

/// Where a leader is in establishing its epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LeaderPhase {
    /// Collecting FOLLOWERINFO from a quorum.
    Discovery,
    /// Epoch chosen; collecting ACKEPOCH from a quorum.
    EpochProposed,
    /// Syncing learners; collecting NEWLEADER ACKs from a quorum.
    Sync,
    /// Established: proposing and committing.
    Broadcast,
}

/// Where one learner is, as seen by the leader (`LearnerHandler`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PeerPhase {
    /// Sent FOLLOWERINFO/OBSERVERINFO.
    Info,
    /// Sent ACKEPOCH; waiting to be synced.
    EpochAcked,
    /// Sync data and NEWLEADER sent.
    Syncing,
    /// Acked NEWLEADER; waiting for UPTODATE.
    NewLeaderAcked,
    /// Sent UPTODATE: in broadcast.
    Active,
}

/// The leader's record of one learner.
#[derive(Clone, Debug)]
pub(crate) struct PeerHandler {
    pub(crate) observer: bool,
    pub(crate) phase: PeerPhase,
    pub(crate) last_zxid: Zxid,
    pub(crate) last_heard: u64,
    /// Tick of its FOLLOWERINFO/OBSERVERINFO: it must be synced within initLimit.
    pub(crate) joined: u64,
    /// The highest leader heartbeat round this learner echoed back.
    pub(crate) echoed_round: u64,
}

impl PeerHandler {
    /// True once the learner gets the broadcast stream (PROPOSAL/COMMIT/INFORM).
    pub(crate) fn forwarding(&self) -> bool {
        matches!(
            self.phase,
            PeerPhase::Syncing | PeerPhase::NewLeaderAcked | PeerPhase::Active
        )
    }
}

/// Leader state.
#[derive(Debug)]
pub(crate) struct Leader {
    pub(crate) epoch: Epoch,
    pub(crate) phase: LeaderPhase,
    /// Accepted epochs reported in discovery (every learner's counts for the
    /// maximum; only voters count for the quorum).
    pub(crate) info: BTreeMap<Sid, Epoch>,
    pub(crate) epoch_acks: BTreeSet<Sid>,
    pub(crate) newleader_acks: BTreeSet<Sid>,
    pub(crate) peers: BTreeMap<Sid, PeerHandler>,
    /// Uncommitted proposals of this epoch and who acked them.
    pub(crate) outstanding: BTreeMap<Zxid, BTreeSet<Sid>>,
    pub(crate) last_proposed: Zxid,
    pub(crate) ticks_leading: u32,
    /// Pending `sync`s: (learner or local, id, proposal they wait for).
    /// Pending `sync`s: (learner or this server, id, last proposal before it,
    /// heartbeat round a quorum must echo first; 0 unless syncs are linearizable).
    pub(crate) syncs: VecDeque<(Option<Sid>, u64, Zxid, u64)>,
    /// The highest heartbeat round a quorum of voters has echoed.
    pub(crate) confirmed_round: u64,
    /// The heartbeat round of the last PINGs sent.
    pub(crate) heartbeat_round: u64,
    /// Pending leadership confirmations: (id, heartbeat round a quorum must echo).
    pub(crate) confirms: VecDeque<(u64, u64)>,
}

impl Leader {
    pub(crate) fn is_serving(&self) -> bool {
        self.phase == LeaderPhase::Broadcast
    }

    pub(crate) fn epoch_decided(&self) -> bool {
        self.phase != LeaderPhase::Discovery
    }
}

/// Where a learner is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LearnerPhase {
    /// Sent FOLLOWERINFO/OBSERVERINFO; waiting for LEADERINFO.
    Discovery,
    /// Accepted `epoch`; receiving sync data.
    Sync { epoch: Epoch },
    /// Got UPTODATE.
    Broadcast { epoch: Epoch },
}

/// Learner (follower or observer) state.
#[derive(Debug)]
pub(crate) struct Learner {
    pub(crate) leader: Sid,
    pub(crate) observer: bool,
    pub(crate) phase: LearnerPhase,
    pub(crate) newleader_acked: bool,
    pub(crate) silent_ticks: u32,
    /// True once a ZAB packet came from the leader (it was leading by then).
    pub(crate) heard_from_leader: bool,
    /// The last heartbeat round heard from the leader (echoed in our PINGs).
    pub(crate) leader_round: u64,
    /// Ticks since following this leader: discovery and sync must finish
    /// within initLimit.
    pub(crate) ticks: u32,
    pub(crate) touches: BTreeMap<SessionId, i32>,
    /// The peer epoch of the vote the election settled on (the leader's current epoch
    /// then): LEADERINFO may propose an epoch at most [`MAX_EPOCH_JUMP`] above it (or
    /// above this server's accepted epoch).
    pub(crate) elected_epoch: Epoch,
}

/// How far above both the elected vote's epoch and this server's accepted epoch a
/// leader's proposed epoch may be. A real leader proposes one more than the largest
/// accepted epoch of a quorum, which exceeds its own current epoch only by the
/// discoveries that failed since; an epoch far beyond that was agreed by no quorum (a
/// forged LEADERINFO of 0xFFFFFFFF would otherwise exhaust the epoch space for good).
pub(crate) const MAX_EPOCH_JUMP: Epoch = 1 << 16;

impl Learner {
    pub(crate) fn is_serving(&self) -> bool {
        matches!(self.phase, LearnerPhase::Broadcast { .. })
    }
}

impl Zab {
    pub(crate) fn leader_state(&mut self) -> Option<&mut Leader> {
        match &mut self.role {
            RoleState::Leading(l) => Some(l),
            _ => None,
        }
    }

    pub(crate) fn learner_state(&mut self) -> Option<&mut Learner> {
        match &mut self.role {
            RoleState::Learning(l) => Some(l),
            _ => None,
        }
    }

    // ----- leader -----

    pub(crate) fn become_leader(&mut self) {
        let mut info = BTreeMap::new();
        info.insert(self.cfg.my_sid, self.accepted_epoch);
        self.set_role(RoleState::Leading(Leader {
            epoch: 0,
            phase: LeaderPhase::Discovery,
            info,
            epoch_acks: BTreeSet::new(),
            newleader_acks: BTreeSet::new(),
            peers: BTreeMap::new(),
            outstanding: BTreeMap::new(),
            last_proposed: 0,
            ticks_leading: 0,
            syncs: VecDeque::new(),
            confirmed_round: 0,
            heartbeat_round: 0,
            confirms: VecDeque::new(),
        }));
        self.try_decide_epoch();
    }

    /// With a quorum of FOLLOWERINFO, picks the epoch above every accepted one.
    fn try_decide_epoch(&mut self) {
        let Some(ld) = self.leader_state() else {
            return;
        };
        if ld.phase != LeaderPhase::Discovery {
            return;
        }
        let voters_in: Vec<Sid> = ld.info.keys().copied().collect();
        if !self.quorum.contains_quorum(&voters_in) {
            return;
        }
        let Some(ld) = self.leader_state() else {
            return;
        };
        let max = ld.info.values().copied().max().unwrap_or(0);
        let Some(epoch) = max.checked_add(1) else {
            tracing::error!("epoch space exhausted");
            return;
        };
        ld.epoch = epoch;
        ld.phase = LeaderPhase::EpochProposed;
        let waiting: Vec<Sid> = ld
            .peers
            .iter()
            .filter(|(_, p)| p.phase == PeerPhase::Info)
            .map(|(s, _)| *s)
            .collect();
        self.accepted_epoch = epoch;
        self.persist(PersistAction::SetAcceptedEpoch(epoch));
        for s in waiting {
            self.send(s, PeerMessage::LeaderInfo { new_epoch: epoch });
        }
        self.after_persisted(AfterPersist::LeaderEpochAck { epoch });
    }

    pub(crate) fn leader_step(&mut self, from: Sid, msg: PeerMessage) {
        let now = self.now;
        let is_voter = self.quorum.is_voter(from);
        let Some(ld) = self.leader_state() else {
            return;
        };
        let known = match ld.peers.get_mut(&from) {
            Some(p) => {
                p.last_heard = now;
                true
            }
            None => false,
        };
        match msg {
            PeerMessage::FollowerInfo {
                accepted_epoch,
                last_zxid,
            } if is_voter => self.on_learner_info(from, false, accepted_epoch, last_zxid),
            PeerMessage::ObserverInfo {
                accepted_epoch,
                last_zxid,
            } if !is_voter => self.on_learner_info(from, true, accepted_epoch, last_zxid),
            _ if !known => self.drop_msg(from, &msg, "no FOLLOWERINFO yet"),
            PeerMessage::AckEpoch {
                current_epoch,
                last_zxid,
            } => self.on_ack_epoch(from, current_epoch, last_zxid),
            PeerMessage::Ack { zxid } => self.on_learner_ack(from, zxid),
            PeerMessage::Ping { round, touches } => {
                if let Some(p) = self.leader_state().and_then(|ld| ld.peers.get_mut(&from)) {
                    p.echoed_round = p.echoed_round.max(round);
                }
                if !touches.is_empty() {
                    self.ready
                        .events
                        .push(Event::SessionTouches { from, touches });
                }
                self.complete_confirms();
            }
            PeerMessage::Request {
                session,
                cxid,
                payload,
            } => {
                if self.is_serving() && payload.len() <= self.cfg.max_txn_bytes {
                    self.ready.events.push(Event::Request {
                        from,
                        session,
                        cxid,
                        payload,
                    });
                } else {
                    self.drop_msg(
                        from,
                        &PeerMessage::Request {
                            session,
                            cxid,
                            payload,
                        },
                        "not serving",
                    );
                }
            }
            PeerMessage::Sync { id } => {
                if self.leader_sync(Some(from), id).is_err() {
                    self.drop_msg(from, &msg, "sync refused");
                }
            }
            other => self.drop_msg(from, &other, "unexpected at leader"),
        }
    }

    fn on_learner_info(
        &mut self,
        from: Sid,
        observer: bool,
        accepted_epoch: Epoch,
        last_zxid: Zxid,
    ) {
        let now = self.now;
        let Some(ld) = self.leader_state() else {
            return;
        };
        // Learners repeat FOLLOWERINFO until they hear from the leader (a lost one
        // must not stall discovery); a repeat from a learner already past that
        // step changes nothing. (A restarted learner was removed on disconnect.)
        if ld
            .peers
            .get(&from)
            .is_some_and(|p| p.phase != PeerPhase::Info)
        {
            return;
        }
        ld.peers.insert(
            from,
            PeerHandler {
                observer,
                phase: PeerPhase::Info,
                last_zxid,
                last_heard: now,
                joined: now,
                echoed_round: 0,
            },
        );
        if ld.phase == LeaderPhase::Discovery {
            ld.info.insert(from, accepted_epoch);
            self.try_decide_epoch();
        } else if accepted_epoch > ld.epoch {
            // That learner promised a newer epoch (to a leader that failed to
            // establish it) and would refuse ours forever; it cannot break
            // its promise, so re-elect to pick an epoch above it. (ZooKeeper
            // leaves such a learner locked out until the leader changes.)
            tracing::info!(
                sid = self.cfg.my_sid,
                from,
                accepted_epoch,
                "learner accepted a newer epoch"
            );
            self.start_election();
        } else {
            let epoch = ld.epoch;
            self.send(from, PeerMessage::LeaderInfo { new_epoch: epoch });
        }
    }

    fn on_ack_epoch(&mut self, from: Sid, current_epoch: Epoch, last_zxid: Zxid) {
        let mine = (self.current_epoch, self.log.last_logged());
        let is_voter = self.quorum.is_voter(from);
        let Some(ld) = self.leader_state() else {
            return;
        };
        let phase = ld.phase;
        let Some(p) = ld.peers.get_mut(&from) else {
            return;
        };
        if p.phase != PeerPhase::Info || phase == LeaderPhase::Discovery {
            return self.drop_msg(
                from,
                &PeerMessage::AckEpoch {
                    current_epoch,
                    last_zxid,
                },
                "unexpected ACKEPOCH",
            );
        }
        p.phase = PeerPhase::EpochAcked;
        p.last_zxid = last_zxid;
        match phase {
            LeaderPhase::EpochProposed => {
                if is_voter && (current_epoch, last_zxid) > mine {
                    tracing::info!(
                        sid = self.cfg.my_sid,
                        from,
                        "a follower is ahead of the leader; re-electing"
                    );
                    return self.start_election();
                }
                if is_voter {
                    ld.epoch_acks.insert(from);
                }
                self.try_start_sync();
            }
            LeaderPhase::Sync | LeaderPhase::Broadcast => self.sync_learner(from),
            LeaderPhase::Discovery => {}
        }
    }

    /// Work the leader could only do once its own persistence was durable.
    pub(crate) fn leader_durable(&mut self, item: AfterPersist) {
        let me = self.cfg.my_sid;
        let Some(ld) = self.leader_state() else {
            return;
        };
        match item {
            AfterPersist::LeaderEpochAck { epoch } if epoch == ld.epoch => {
                ld.epoch_acks.insert(me);
                self.try_start_sync();
            }
            AfterPersist::LeaderNewLeaderAck { epoch } if epoch == ld.epoch => {
                ld.newleader_acks.insert(me);
                self.try_start_broadcast();
            }
            AfterPersist::LeaderTxnAck { zxid } => self.on_proposal_ack(me, zxid),
            _ => {}
        }
    }

    /// With a quorum of ACKEPOCH, makes the epoch current and syncs learners.
    fn try_start_sync(&mut self) {
        let Some(ld) = self.leader_state() else {
            return;
        };
        if ld.phase != LeaderPhase::EpochProposed {
            return;
        }
        let acks: Vec<Sid> = ld.epoch_acks.iter().copied().collect();
        if !self.quorum.contains_quorum(&acks) {
            return;
        }
        let Some(ld) = self.leader_state() else {
            return;
        };
        let epoch = ld.epoch;
        ld.phase = LeaderPhase::Sync;
        ld.last_proposed = make_zxid(epoch, 0);
        let to_sync: Vec<Sid> = ld
            .peers
            .iter()
            .filter(|(_, p)| p.phase == PeerPhase::EpochAcked)
            .map(|(s, _)| *s)
            .collect();
        self.current_epoch = epoch;
        self.persist(PersistAction::SetCurrentEpoch(epoch));
        self.after_persisted(AfterPersist::LeaderNewLeaderAck { epoch });
        for s in to_sync {
            self.sync_learner(s);
        }
    }

    pub(crate) fn leader_tick(&mut self) {
        let now = self.now;
        let (init_limit, sync_limit) = (self.cfg.init_limit, self.cfg.sync_limit);
        let counter_limit = self.cfg.zxid_counter_limit;
        let me = self.cfg.my_sid;
        let Some(ld) = self.leader_state() else {
            return;
        };
        ld.ticks_leading = ld.ticks_leading.saturating_add(1);
        if !ld.is_serving() && ld.ticks_leading > init_limit {
            tracing::info!(sid = me, phase = ?ld.phase, "leader could not establish its epoch in time");
            return self.start_election();
        }
        // The epoch's zxid counter is spent ([`Zab::next_zxid`] gives no more): once what
        // was proposed is committed, a new election starts a new epoch (ZooKeeper's
        // leader shuts down when the counter's 32 bits roll over).
        if ld.is_serving()
            && crate::types::zxid_counter(ld.last_proposed) >= counter_limit
            && ld.outstanding.is_empty()
        {
            tracing::info!(
                sid = me,
                epoch = ld.epoch,
                "zxid counter rollover: forcing a new epoch"
            );
            return self.start_election();
        }
        // Learners not synced within initLimit of joining, and learners in
        // broadcast silent for more than syncLimit, are dropped with their
        // connections (ZooKeeper's LearnerHandler shuts down); they rejoin
        // through election, discovery and sync on a fresh connection.
        let abandoned: Vec<Sid> = ld
            .peers
            .iter()
            .filter(|(_, p)| {
                if p.phase == PeerPhase::Active {
                    now - p.last_heard > sync_limit as u64
                } else {
                    now - p.joined > init_limit as u64
                }
            })
            .map(|(s, _)| *s)
            .collect();
        for s in &abandoned {
            ld.peers.remove(s);
        }
        for s in abandoned {
            tracing::info!(
                sid = me,
                learner = s,
                "learner silent or not synced; dropped"
            );
            self.disconnect(s);
        }
        if self.leader_lost_quorum() {
            return self.start_election();
        }
        self.send_heartbeat_round();
    }

    /// Sends the next heartbeat round (a PING carrying it) to every learner in
    /// broadcast; a single-voter ensemble confirms it on its own.
    pub(crate) fn send_heartbeat_round(&mut self) {
        let Some(ld) = self.leader_state() else {
            return;
        };
        let pinged: Vec<Sid> = ld
            .peers
            .iter()
            .filter(|(_, p)| p.forwarding())
            .map(|(s, _)| *s)
            .collect();
        ld.heartbeat_round += 1;
        let round = ld.heartbeat_round;
        for s in pinged {
            self.send(
                s,
                PeerMessage::Ping {
                    round,
                    touches: Vec::new(),
                },
            );
        }
        self.complete_confirms();
    }

    /// A serving leader whose voters in broadcast, heard from within
    /// syncLimit, and itself are no longer a quorum (logged; the caller steps
    /// down).
    pub(crate) fn leader_lost_quorum(&self) -> bool {
        let RoleState::Leading(ld) = &self.role else {
            return false;
        };
        if !ld.is_serving() {
            return false;
        }
        let (now, sync_limit) = (self.now, u64::from(self.cfg.sync_limit));
        let mut alive: Vec<Sid> = ld
            .peers
            .iter()
            .filter(|(_, p)| {
                matches!(p.phase, PeerPhase::NewLeaderAcked | PeerPhase::Active)
                    && now - p.last_heard <= sync_limit
            })
            .map(|(s, _)| *s)
            .collect();
        alive.push(self.cfg.my_sid);
        let lost = !self.quorum.contains_quorum(&alive);
        if lost {
            tracing::info!(
                sid = self.cfg.my_sid,
                "leader lost its quorum; stepping down"
            );
        }
        lost
    }

    // ----- learner -----

    pub(crate) fn become_learner(&mut self, leader: Sid, observer: bool, elected_epoch: Epoch) {
        self.set_role(RoleState::Learning(Learner {
            leader,
            observer,
            phase: LearnerPhase::Discovery,
            newleader_acked: false,
            silent_ticks: 0,
            heard_from_leader: false,
            leader_round: 0,
            ticks: 0,
            touches: BTreeMap::new(),
            elected_epoch,
        }));
        self.send_learner_info(leader, observer);
    }

    /// Sends FOLLOWERINFO (or OBSERVERINFO) with our accepted epoch and last
    /// logged zxid to `leader`.
    fn send_learner_info(&mut self, leader: Sid, observer: bool) {
        let (accepted_epoch, last_zxid) = (self.accepted_epoch, self.log.last_logged());
        let msg = if observer {
            PeerMessage::ObserverInfo {
                accepted_epoch,
                last_zxid,
            }
        } else {
            PeerMessage::FollowerInfo {
                accepted_epoch,
                last_zxid,
            }
        };
        self.send(leader, msg);
    }

    pub(crate) fn learner_step(&mut self, from: Sid, msg: PeerMessage) {
        let Some(l) = self.learner_state() else {
            return;
        };
        if from != l.leader {
            return self.drop_msg(from, &msg, "not my leader");
        }
        l.silent_ticks = 0;
        l.heard_from_leader = true;
        let phase = l.phase;
        match (msg, phase) {
            (PeerMessage::LeaderInfo { new_epoch }, LearnerPhase::Discovery) => {
                self.on_leader_info(new_epoch)
            }
            (PeerMessage::Diff { .. }, LearnerPhase::Sync { .. }) => {}
            (PeerMessage::Trunc { zxid }, LearnerPhase::Sync { .. }) => self.on_trunc(zxid),
            (PeerMessage::Snap { zxid, snapshot }, LearnerPhase::Sync { .. }) => {
                self.on_snap(zxid, snapshot)
            }
            (PeerMessage::NewLeader { zxid }, LearnerPhase::Sync { epoch }) => {
                self.on_new_leader(epoch, zxid)
            }
            (PeerMessage::UpToDate, LearnerPhase::Sync { epoch }) => self.on_up_to_date(epoch),
            (
                PeerMessage::Proposal { zxid, payload },
                LearnerPhase::Sync { epoch } | LearnerPhase::Broadcast { epoch },
            ) => self.on_proposal(epoch, zxid, payload),
            (
                PeerMessage::Commit { zxid },
                LearnerPhase::Sync { .. } | LearnerPhase::Broadcast { .. },
            ) => self.on_commit(zxid),
            (
                PeerMessage::Inform { zxid, payload },
                LearnerPhase::Sync { epoch } | LearnerPhase::Broadcast { epoch },
            ) => self.on_inform(epoch, zxid, payload),
            // The leader's heartbeat: its round is echoed at once (a quorum read
            // waits for a quorum of echoes of a round sent after it), and again with
            // this learner's own heartbeat. The leader never answers a PING, so no
            // two servers bounce PINGs.
            (PeerMessage::Ping { round, .. }, phase) => {
                if let Some(l) = self.learner_state() {
                    if round > l.leader_round {
                        l.leader_round = round;
                        if phase != LearnerPhase::Discovery && !l.observer {
                            self.send(
                                from,
                                PeerMessage::Ping {
                                    round,
                                    touches: Vec::new(),
                                },
                            );
                        }
                    }
                }
            }
            (PeerMessage::SyncDone { id }, LearnerPhase::Broadcast { .. }) => {
                self.ready.events.push(Event::SyncDone { id })
            }
            (other, _) => self.drop_msg(from, &other, "unexpected at learner"),
        }
    }

    /// A follower with logged but uncommitted txns re-ACKs the last one with
    /// each heartbeat (once durable): ACKs are cumulative, so this repairs a lost
    /// ACK instead of leaving the leader waiting forever.
    fn refresh_ack(&mut self) {
        let Some(l) = self.learner_state() else {
            return;
        };
        if l.observer || !l.is_serving() {
            return;
        }
        let leader = l.leader;
        let (last, committed) = (self.log.last_logged(), self.log.committed());
        if last > committed && zxid_epoch(last) == self.current_epoch {
            self.send_durable(leader, PeerMessage::Ack { zxid: last });
        }
    }

    fn on_leader_info(&mut self, new_epoch: Epoch) {
        let elected = self.learner_state().map_or(0, |l| l.elected_epoch);
        let bound = self
            .accepted_epoch
            .max(elected)
            .saturating_add(MAX_EPOCH_JUMP);
        if new_epoch > bound || new_epoch == Epoch::MAX {
            tracing::warn!(
                sid = self.cfg.my_sid,
                new_epoch,
                accepted_epoch = self.accepted_epoch,
                elected_epoch = elected,
                "leader proposes an epoch no quorum can have agreed to: ignored, looking again"
            );
            return self.start_election();
        }
        if new_epoch < self.accepted_epoch {
            tracing::info!(
                sid = self.cfg.my_sid,
                new_epoch,
                "leader's epoch is below my accepted epoch"
            );
            return self.start_election();
        }
        if new_epoch > self.accepted_epoch {
            self.accepted_epoch = new_epoch;
            self.persist(PersistAction::SetAcceptedEpoch(new_epoch));
        }
        let Some(l) = self.learner_state() else {
            return;
        };
        l.phase = LearnerPhase::Sync { epoch: new_epoch };
        let leader = l.leader;
        let msg = PeerMessage::AckEpoch {
            current_epoch: self.current_epoch,
            last_zxid: self.log.last_logged(),
        };
        self.send_durable(leader, msg);
    }

    /// A learner gives up on `leader`: drops the connection, then looks.
    fn abandon_leader(&mut self, leader: Sid) {
        self.disconnect(leader);
        self.start_election();
    }

    pub(crate) fn learner_tick(&mut self) {
        let (init_limit, sync_limit) = (self.cfg.init_limit, self.cfg.sync_limit);
        let Some(l) = self.learner_state() else {
            return;
        };
        l.silent_ticks = l.silent_ticks.saturating_add(1);
        l.ticks = l.ticks.saturating_add(1);
        let limit = if l.is_serving() {
            sync_limit
        } else {
            init_limit
        };
        // Giving up on the leader closes its connection, as ZooKeeper's
        // learner closes its socket on a read timeout: what it queued is
        // stale, and the election's answers must not wait behind it.
        if l.silent_ticks > limit {
            let leader = l.leader;
            tracing::info!(leader, "leader silent; looking for a new one");
            return self.abandon_leader(leader);
        }
        if !l.is_serving() && l.ticks > init_limit {
            let leader = l.leader;
            tracing::info!(leader, "sync did not finish within initLimit");
            return self.abandon_leader(leader);
        }
        // Until LEADERINFO arrives, repeat FOLLOWERINFO/OBSERVERINFO each
        // tick: the chosen leader may still have been looking (finishing its
        // finalize wait) when the first one arrived and dropped it. This is
        // ZooKeeper's `Learner.connectToLeader` retrying until the leader's
        // LearnerCnxAcceptor is up; without it leader and learners time out
        // in turn and re-elect the same leader forever.
        if l.phase == LearnerPhase::Discovery {
            let (leader, observer) = (l.leader, l.observer);
            return self.send_learner_info(leader, observer);
        }
        // Our own heartbeat, on our own clock (never a reply, so that no two
        // servers can bounce PINGs forever), carrying session touches.
        if l.heard_from_leader {
            let leader = l.leader;
            let touches = std::mem::take(&mut l.touches)
                .into_iter()
                .map(|(session, timeout_ms)| SessionTouch {
                    session,
                    timeout_ms,
                })
                .collect();
            let round = l.leader_round;
            self.send(leader, PeerMessage::Ping { round, touches });
            self.refresh_ack();
        }
    }
}
