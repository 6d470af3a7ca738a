//! Fast leader election (ZooKeeper's `FastLeaderElection.lookForLeader`).
//!
//! A looking server proposes a vote (leader sid, its last zxid, its current
//! epoch), adopts any better vote it hears (higher peer epoch, then zxid,
//! then sid), and decides once a quorum of voters in its round (logical
//! clock) agrees and `finalize_wait` ticks bring nothing better. Servers that
//! already follow or lead answer a looking server with their settled vote,
//! which is how a server joining an established ensemble learns the leader.

use std::collections::BTreeMap;

use super::{RoleState, Zab, ZabConfig};
use crate::proto::peer::{Notification, PeerMessage, ServerState, Sid, Vote};

/// Election state that outlives one round (the logical clock and the last
/// vote, which a settled server reports to looking ones).
#[derive(Debug)]
pub(crate) struct Election {
    /// `logicalclock`: the election round.
    pub(crate) logical_clock: u64,
    /// The current proposal, or the decided vote once settled.
    pub(crate) proposal: Vote,
    /// Votes of looking voters in this round, and settled voters in it.
    recv: BTreeMap<Sid, (Vote, u64, ServerState)>,
    /// Votes of voters that already follow or lead (any round).
    out_of_election: BTreeMap<Sid, (Vote, u64, ServerState)>,
    /// Ticks left before deciding on the current quorum.
    finalize_in: Option<u32>,
    /// A settled ensemble to join, and the ticks left before joining it.
    joining: Option<(u32, Notification)>,
    resend_in: u32,
    resend_interval: u32,
    /// Voters sent a notification and not heard from since: the tick of the
    /// first such notification. A voter still silent an election resend
    /// interval later loses its connection before the resend (see
    /// [`super::Outbound::Disconnect`]).
    pub(crate) unanswered: BTreeMap<Sid, u64>,
    /// FOLLOWERINFO or OBSERVERINFO that arrived in this round, the last one
    /// from each sender and only while nothing else came from it after: a
    /// learner that decided for us before our own finalize wait ended. The
    /// leader we may become takes them as if they arrived just then, instead
    /// of waiting a tick for the learner to repeat them.
    pub(crate) early_info: BTreeMap<Sid, PeerMessage>,
}

/// True if `new` beats `cur` (`totalOrderPredicate`): higher peer epoch,
/// then higher zxid, then higher sid. A vote for a non-voter never wins.
pub(crate) fn total_order(new: &Vote, cur: &Vote, is_voter: impl Fn(Sid) -> bool) -> bool {
    if !is_voter(new.leader) {
        return false;
    }
    (new.peer_epoch, new.zxid, new.leader) > (cur.peer_epoch, cur.zxid, cur.leader)
}

impl Election {
    pub(crate) fn new(cfg: &ZabConfig) -> Election {
        Election {
            logical_clock: 0,
            proposal: Vote {
                leader: cfg.my_sid,
                zxid: i64::MIN,
                peer_epoch: 0,
            },
            recv: BTreeMap::new(),
            out_of_election: BTreeMap::new(),
            finalize_in: None,
            joining: None,
            resend_in: cfg.election_resend,
            resend_interval: cfg.election_resend,
            unanswered: BTreeMap::new(),
            early_info: BTreeMap::new(),
        }
    }
}

impl Zab {
    /// This server's own initial vote; an observer votes for nobody it
    /// could win with (the lowest possible vote).
    fn initial_vote(&self) -> Vote {
        if self.cfg.is_observer() {
            Vote {
                leader: self.cfg.my_sid,
                zxid: i64::MIN,
                peer_epoch: 0,
            }
        } else {
            Vote {
                leader: self.cfg.my_sid,
                zxid: self.log.last_logged(),
                peer_epoch: self.current_epoch,
            }
        }
    }

    fn my_state(&self) -> ServerState {
        match &self.role {
            RoleState::Looking => ServerState::Looking,
            RoleState::Leading(_) => ServerState::Leading,
            RoleState::Learning(l) if l.observer => ServerState::Observing,
            RoleState::Learning(_) => ServerState::Following,
        }
    }

    pub(crate) fn my_notification(&self) -> Notification {
        Notification {
            vote: self.election.proposal,
            election_epoch: self.election.logical_clock,
            state: self.my_state(),
        }
    }

    /// Enters LOOKING with a new round.
    pub(crate) fn start_election(&mut self) {
        self.stats.elections += 1;
        self.set_role(RoleState::Looking);
        let e = &mut self.election;
        e.logical_clock += 1;
        e.recv.clear();
        e.out_of_election.clear();
        e.finalize_in = None;
        e.joining = None;
        e.resend_interval = self.cfg.election_resend;
        e.resend_in = self.cfg.election_resend;
        e.unanswered.clear();
        e.early_info.clear();
        self.election.proposal = self.initial_vote();
        self.broadcast_notification(false);
        // A single-voter ensemble decides alone.
        self.check_election_quorum();
    }

    /// Sends the current notification to every other voter. On a periodic
    /// `resend`, a voter that answered nothing for an election resend
    /// interval is disconnected first, so that the resend travels on a fresh
    /// connection rather than behind a backlog on one the network stalled
    /// (a partition that clogs TCP connections without breaking them).
    fn broadcast_notification(&mut self, resend: bool) {
        let n = self.my_notification();
        let now = self.now;
        let patience = u64::from(self.cfg.election_resend);
        let voters: Vec<Sid> = self.quorum.voters().iter().copied().collect();
        for v in voters {
            if v == self.cfg.my_sid {
                continue;
            }
            let silent_since = self.election.unanswered.get(&v).copied();
            if resend && silent_since.is_some_and(|t| now - t >= patience) {
                tracing::info!(
                    sid = self.cfg.my_sid,
                    peer = v,
                    "voter silent; reconnecting"
                );
                self.election.unanswered.remove(&v);
                self.disconnect(v);
            }
            self.election.unanswered.entry(v).or_insert(now);
            self.send(v, PeerMessage::Notification(n));
        }
    }

    /// A ZAB message while looking: a learner's FOLLOWERINFO or OBSERVERINFO
    /// is kept for the leader this server may become (see
    /// `Election::early_info`); anything else is dropped, with any kept info
    /// of its sender (which it follows, so the info is stale).
    pub(crate) fn looking_step(&mut self, from: Sid, msg: PeerMessage) {
        match msg {
            PeerMessage::FollowerInfo { .. } | PeerMessage::ObserverInfo { .. } => {
                self.election.early_info.insert(from, msg);
            }
            _ => {
                self.election.early_info.remove(&from);
                self.drop_msg(from, &msg, "looking");
            }
        }
    }

    /// A notification from `sid` or a broken connection: a kept learner info
    /// of `sid` stays valid only behind a notification that says `sid`
    /// settled on this server.
    pub(crate) fn forget_early_info(&mut self, sid: Sid, n: Option<&Notification>) {
        let still_ours =
            n.is_some_and(|n| n.state != ServerState::Looking && n.vote.leader == self.cfg.my_sid);
        if !still_ours {
            self.election.early_info.remove(&sid);
        }
    }

    /// Something arrived from `sid`: it is not silent.
    pub(crate) fn heard_from(&mut self, sid: Sid) {
        self.election.unanswered.remove(&sid);
    }

    fn update_proposal(&mut self, vote: Vote) {
        self.election.proposal = vote;
        self.election.finalize_in = None;
        self.broadcast_notification(false);
    }

    pub(crate) fn election_tick(&mut self) {
        let e = &mut self.election;
        e.resend_in = e.resend_in.saturating_sub(1);
        if e.resend_in == 0 {
            e.resend_interval = (e.resend_interval * 2).min(self.cfg.election_resend_max);
            e.resend_in = e.resend_interval;
            self.broadcast_notification(true);
        }
        if let Some(left) = self.election.finalize_in {
            if left <= 1 {
                self.election.finalize_in = None;
                if self.proposal_has_quorum() {
                    let v = self.election.proposal;
                    return self.decide(v);
                }
            } else {
                self.election.finalize_in = Some(left - 1);
            }
        }
        if let Some((left, n)) = self.election.joining {
            if left <= 1 {
                self.election.joining = None;
                if self.joinable(&n) {
                    self.election.logical_clock = self.election.logical_clock.max(n.election_epoch);
                    self.decide(n.vote);
                }
            } else {
                self.election.joining = Some((left - 1, n));
            }
        }
    }

    pub(crate) fn on_notification(&mut self, from: Sid, n: Notification) {
        let from_voter = self.quorum.is_voter(from);
        // Peers send notifications and ZAB packets over one FIFO channel, so
        // a LOOKING notification after ZAB traffic means the sender left
        // (earlier ones were merely still in flight when we settled).
        if n.state == ServerState::Looking {
            match &mut self.role {
                // Our leader is looking: it no longer leads (as a closed
                // leader connection tells a ZooKeeper follower).
                RoleState::Learning(l) if l.leader == from && l.heard_from_leader => {
                    tracing::info!(sid = self.cfg.my_sid, leader = from, "leader is looking");
                    self.start_election();
                }
                // A learner that looks after its FOLLOWERINFO left us; if
                // that costs the quorum, step down now, not at the next tick.
                RoleState::Leading(ld) => {
                    ld.peers.remove(&from);
                    if self.leader_lost_quorum() {
                        self.start_election();
                    }
                }
                _ => {}
            }
        }
        if !matches!(self.role, RoleState::Looking) {
            // Settled: tell a looking server what we settled on (an
            // observer's word never counts for a voter, so it keeps quiet).
            if n.state == ServerState::Looking && !(self.cfg.is_observer() && from_voter) {
                let mine = self.my_notification();
                self.send(from, PeerMessage::Notification(mine));
            }
            return;
        }
        if !from_voter {
            // A looking observer learns from our reply; its vote never counts.
            if self.cfg.is_observer() {
                return self.drop_msg(from, &PeerMessage::Notification(n), "observer to observer");
            }
            if n.state == ServerState::Looking {
                let mine = self.my_notification();
                self.send(from, PeerMessage::Notification(mine));
            }
            return;
        }
        if !self.quorum.is_voter(n.vote.leader) {
            return self.drop_msg(from, &PeerMessage::Notification(n), "vote for a non-voter");
        }
        let is_voter = |s: Sid| self.quorum.is_voter(s);
        match n.state {
            ServerState::Looking => {
                if n.election_epoch > self.election.logical_clock {
                    self.election.logical_clock = n.election_epoch;
                    self.election.recv.clear();
                    let init = self.initial_vote();
                    let v = if total_order(&n.vote, &init, is_voter) {
                        n.vote
                    } else {
                        init
                    };
                    self.update_proposal(v);
                } else if n.election_epoch < self.election.logical_clock {
                    // Bring a voter in an older round up to date. An observer
                    // does not: its voter answers every observer message, so
                    // answering back would ping-pong forever.
                    if !self.cfg.is_observer() {
                        let mine = self.my_notification();
                        self.send(from, PeerMessage::Notification(mine));
                    }
                    return;
                } else if total_order(&n.vote, &self.election.proposal, is_voter) {
                    self.update_proposal(n.vote);
                } else if n.vote != self.election.proposal
                    && !self.cfg.is_observer()
                    && self.election.out_of_election.contains_key(&from)
                {
                    // The sender votes worse in our round, and it answered
                    // our vote of this round while it was still settled: it
                    // never recorded ours. Tell it now rather than at our
                    // next resend. (Every such answer carries a strictly
                    // better vote than the one it answers, so answers end.)
                    let mine = self.my_notification();
                    self.send(from, PeerMessage::Notification(mine));
                }
                self.election
                    .recv
                    .insert(from, (n.vote, n.election_epoch, n.state));
                self.check_election_quorum();
            }
            ServerState::Following | ServerState::Leading | ServerState::Observing => {
                let entry = (n.vote, n.election_epoch, n.state);
                if n.election_epoch == self.election.logical_clock {
                    self.election.recv.insert(from, entry);
                }
                self.election.out_of_election.insert(from, entry);
                // Joining waits finalize_wait ticks too, so that no
                // election loop ever runs without time passing.
                if self.election.joining.is_none() && self.joinable(&n) {
                    self.election.joining = Some((self.cfg.finalize_wait, n));
                }
            }
        }
    }

    /// True if a quorum of settled voters (in this round, or in any round
    /// once out of election) agrees on `n`'s vote and its leader leads.
    fn joinable(&self, n: &Notification) -> bool {
        let in_round = n.election_epoch == self.election.logical_clock
            && self.vote_has_quorum(&self.election.recv, &n.vote, true)
            && self.leader_checks_out(&self.election.recv, n);
        in_round
            || (self.vote_has_quorum(&self.election.out_of_election, &n.vote, false)
                && self.leader_checks_out(&self.election.out_of_election, n))
    }

    /// `checkLeader`: another server may only be followed once it says it
    /// leads; this server may only lead from a vote of its own round.
    fn leader_checks_out(
        &self,
        votes: &BTreeMap<Sid, (Vote, u64, ServerState)>,
        n: &Notification,
    ) -> bool {
        if n.vote.leader != self.cfg.my_sid {
            votes
                .get(&n.vote.leader)
                .is_some_and(|(_, _, s)| *s == ServerState::Leading)
        } else {
            self.election.logical_clock == n.election_epoch
        }
    }

    /// True if voters voting `vote` (in `votes`, plus this server when
    /// `include_me` and it votes the same) form a quorum.
    /// True if voters agreeing with the settled vote `vote` (in `votes`,
    /// plus this server when `include_me` and its proposal matches exactly)
    /// form a quorum. As ZooKeeper's `Vote.equals`: a looking server's vote
    /// must match exactly, a settled one only needs the same leader (its
    /// zxid and epoch were those of whichever round it settled in).
    fn vote_has_quorum(
        &self,
        votes: &BTreeMap<Sid, (Vote, u64, ServerState)>,
        vote: &Vote,
        include_me: bool,
    ) -> bool {
        let mut agree: Vec<Sid> = votes
            .iter()
            .filter(|(_, (v, _, state))| match state {
                ServerState::Looking => v == vote,
                _ => v.leader == vote.leader,
            })
            .map(|(s, _)| *s)
            .collect();
        if include_me && self.election.proposal == *vote {
            agree.push(self.cfg.my_sid);
        }
        self.quorum.contains_quorum(&agree)
    }

    fn proposal_has_quorum(&self) -> bool {
        let clock = self.election.logical_clock;
        let p = self.election.proposal;
        let mut agree: Vec<Sid> = self
            .election
            .recv
            .iter()
            .filter(|(_, (v, ee, _))| *v == p && *ee == clock)
            .map(|(s, _)| *s)
            .collect();
        agree.push(self.cfg.my_sid);
        self.quorum.contains_quorum(&agree)
    }

    /// Decides now, or starts the finalize wait, if the proposal has a quorum.
    fn check_election_quorum(&mut self) {
        if !matches!(self.role, RoleState::Looking) || !self.proposal_has_quorum() {
            return;
        }
        if !self.quorum.is_voter(self.election.proposal.leader) {
            return;
        }
        // An ensemble of one (a standalone server) has nobody to wait for.
        if self.quorum.voters().len() == 1 && self.cfg.observers.is_empty() {
            let v = self.election.proposal;
            return self.decide(v);
        }
        if self.election.finalize_in.is_none() {
            self.election.finalize_in = Some(self.cfg.finalize_wait);
        }
    }

    /// Settles on `vote`: lead, follow or observe.
    fn decide(&mut self, vote: Vote) {
        self.election.proposal = vote;
        self.election.finalize_in = None;
        self.election.joining = None;
        self.election.recv.clear();
        self.election.out_of_election.clear();
        let early = std::mem::take(&mut self.election.early_info);
        if vote.leader == self.cfg.my_sid && !self.cfg.is_observer() {
            self.become_leader();
            for (sid, info) in early {
                self.leader_step(sid, info);
            }
        } else if vote.leader != self.cfg.my_sid {
            let observer = self.cfg.is_observer();
            self.become_learner(vote.leader, observer, vote.peer_epoch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(leader: Sid, zxid: i64, peer_epoch: u32) -> Vote {
        Vote {
            leader,
            zxid,
            peer_epoch,
        }
    }

    #[test]
    fn vote_order_is_epoch_then_zxid_then_sid() {
        let all = |_s: Sid| true;
        assert!(
            total_order(&v(1, 0, 2), &v(3, 100, 1), all),
            "peer epoch first"
        );
        assert!(total_order(&v(1, 5, 1), &v(3, 4, 1), all), "then zxid");
        assert!(total_order(&v(3, 5, 1), &v(2, 5, 1), all), "then sid");
        assert!(
            !total_order(&v(2, 5, 1), &v(2, 5, 1), all),
            "equal votes do not win"
        );
        assert!(!total_order(&v(2, 5, 1), &v(3, 5, 1), all));
    }

    #[test]
    fn a_vote_for_a_non_voter_never_wins() {
        let only_1_2_3 = |s: Sid| (1..=3).contains(&s);
        assert!(!total_order(&v(9, 1000, 9), &v(1, 0, 0), only_1_2_3));
    }
}
