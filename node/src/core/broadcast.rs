//! ZAB phase 3, broadcast. The leader appends a proposal, sends PROPOSAL to
//! every follower, and commits once a quorum of voters (its own durable
//! append included) ACKed; commits go out strictly in zxid order as COMMIT to
//! followers and INFORM (with the txn) to observers. A follower ACKs a
//! proposal only once its append is durable.

use bytes::Bytes;

use super::discovery::PeerPhase;
use super::durability::AfterPersist;
use super::{Event, PersistAction, ProposeError, RoleState, Zab};
use crate::proto::peer::{Epoch, PeerMessage, Sid};
use crate::types::{make_zxid, zxid_counter, zxid_epoch, Zxid};

impl Zab {
    pub(crate) fn leader_propose(&mut self, payload: Bytes) -> Result<Zxid, ProposeError> {
        let limit = self.cfg.zxid_counter_limit;
        let max_out = self.cfg.max_outstanding_proposals;
        if payload.len() > self.cfg.max_txn_bytes {
            return Err(ProposeError::TooLarge);
        }
        let ld = match &mut self.role {
            RoleState::Leading(ld) => ld,
            RoleState::Learning(l) => {
                return Err(ProposeError::NotLeader {
                    leader: Some(l.leader),
                })
            }
            RoleState::Looking => return Err(ProposeError::NotLeader { leader: None }),
        };
        if !ld.is_serving() {
            return Err(ProposeError::NotServing);
        }
        if ld.outstanding.len() >= max_out {
            return Err(ProposeError::TooManyOutstanding);
        }
        let counter = zxid_counter(ld.last_proposed);
        if counter >= limit {
            tracing::info!(
                epoch = ld.epoch,
                "zxid counter rollover: forcing a new epoch"
            );
            self.start_election();
            return Err(ProposeError::EpochExhausted);
        }
        let zxid = make_zxid(ld.epoch, counter + 1);
        // The new epoch is above every epoch in the log, so this holds.
        if self.log.append(zxid, payload.clone()).is_err() {
            return Err(ProposeError::NotServing);
        }
        ld.last_proposed = zxid;
        ld.outstanding.insert(zxid, Default::default());
        let followers: Vec<Sid> = ld
            .peers
            .iter()
            .filter(|(_, p)| !p.observer && p.forwarding())
            .map(|(s, _)| *s)
            .collect();
        self.persist(PersistAction::AppendTxn {
            zxid,
            payload: payload.clone(),
        });
        for s in followers {
            self.send(
                s,
                PeerMessage::Proposal {
                    zxid,
                    payload: payload.clone(),
                },
            );
        }
        self.stats.proposals += 1;
        self.after_persisted(AfterPersist::LeaderTxnAck { zxid });
        Ok(zxid)
    }

    /// Records an ACK of an outstanding proposal and commits what it can.
    pub(crate) fn on_proposal_ack(&mut self, from: Sid, zxid: Zxid) {
        let me = self.cfg.my_sid;
        let committed = self.log.committed();
        let Some(ld) = self.leader_state() else {
            return;
        };
        if from != me {
            match ld.peers.get(&from) {
                Some(p) if !p.observer && p.forwarding() => {}
                _ => {
                    return self.drop_msg(
                        from,
                        &PeerMessage::Ack { zxid },
                        "ACK from a non-follower",
                    )
                }
            }
        }
        if !ld.outstanding.contains_key(&zxid) {
            if zxid <= committed {
                return; // a late ACK
            }
            return self.drop_msg(
                from,
                &PeerMessage::Ack { zxid },
                "ACK of an unknown proposal",
            );
        }
        // ACKs are cumulative: a follower logs proposals in order, without
        // gaps, and ACKs only what is durable, so an ACK of `zxid` vouches
        // for every earlier proposal too (and covers a lost earlier ACK).
        for (_, acks) in ld.outstanding.range_mut(..=zxid) {
            acks.insert(from);
        }
        self.try_commit();
    }

    /// Commits outstanding proposals, in zxid order, while the oldest has a quorum.
    fn try_commit(&mut self) {
        loop {
            let Some(ld) = self.leader_state() else {
                return;
            };
            let Some((&zxid, acks)) = ld.outstanding.first_key_value() else {
                break;
            };
            let acks: Vec<Sid> = acks.iter().copied().collect();
            // Deliberately broken (sim bites test): the leader's own ACK is enough.
            #[cfg(madsim)]
            let quorum = if crate::broken::active(crate::broken::Bug::CommitWithoutQuorum) {
                acks.contains(&self.cfg.my_sid)
            } else {
                self.quorum.contains_quorum(&acks)
            };
            #[cfg(not(madsim))]
            let quorum = self.quorum.contains_quorum(&acks);
            if !quorum {
                break;
            }
            let Some(ld) = self.leader_state() else {
                return;
            };
            ld.outstanding.remove(&zxid);
            let targets: Vec<(Sid, bool)> = ld
                .peers
                .iter()
                .filter(|(_, p)| p.forwarding())
                .map(|(s, p)| (*s, p.observer))
                .collect();
            // Taken before committing: a zero window trims the entry at once.
            let payload = self.log.get(zxid).cloned().unwrap_or_default();
            self.commit_through(zxid);
            for (s, observer) in targets {
                let msg = if observer {
                    PeerMessage::Inform {
                        zxid,
                        payload: payload.clone(),
                    }
                } else {
                    PeerMessage::Commit { zxid }
                };
                self.send(s, msg);
            }
        }
        self.complete_syncs();
    }

    /// Answers `sync`s whose proposals are all committed.
    fn complete_syncs(&mut self) {
        let committed = self.log.committed();
        let Some(ld) = self.leader_state() else {
            return;
        };
        let mut done = Vec::new();
        let confirmed = ld.confirmed_round;
        while ld
            .syncs
            .front()
            .is_some_and(|s| s.2 <= committed && s.3 <= confirmed)
        {
            if let Some(s) = ld.syncs.pop_front() {
                done.push(s);
            }
        }
        for (from, id, _, _) in done {
            match from {
                None => self.ready.events.push(Event::SyncDone { id }),
                Some(s) => self.send(s, PeerMessage::SyncDone { id }),
            }
        }
    }

    /// Queues a leadership confirmation: done once a quorum of voters echoed
    /// a heartbeat round sent after this call.
    pub(crate) fn leader_confirm(&mut self, id: u64) -> Result<(), ProposeError> {
        let max = self.cfg.max_pending_syncs;
        let Some(ld) = self.leader_state() else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        if !ld.is_serving() {
            return Err(ProposeError::NotServing);
        }
        if ld.confirms.len() >= max {
            return Err(ProposeError::TooManyOutstanding);
        }
        let needed = ld.heartbeat_round + 1;
        ld.confirms.push_back((id, needed));
        self.hurry_heartbeat();
        Ok(())
    }

    /// A confirmation, or a sync under quorumReads, waits for a heartbeat round sent
    /// after it. Rather than wait for the next tick's round, one leaves now unless a
    /// round is in flight (its quorum of echoes then sends the next): a quorum read
    /// takes about two round trips at most, not a core tick, and a burst of them shares
    /// one round.
    fn hurry_heartbeat(&mut self) {
        let Some(ld) = self.leader_state() else {
            return;
        };
        // Both queues are pushed in order of the round they need (heartbeat rounds
        // only grow within a term): the newest entry of each needs the most.
        let wanted = ld
            .confirms
            .back()
            .map(|c| c.1)
            .max(ld.syncs.back().map(|s| s.3))
            .unwrap_or(0);
        if wanted > ld.heartbeat_round && ld.confirmed_round >= ld.heartbeat_round {
            self.send_heartbeat_round();
        }
    }

    /// Answers leadership confirmations whose round a quorum echoed.
    pub(crate) fn complete_confirms(&mut self) {
        let quorum_size = self.quorum.quorum_size();
        let Some(ld) = self.leader_state() else {
            return;
        };
        let needed = ld.confirms.front().map(|c| c.1).unwrap_or(0);
        let synced: Vec<(Sid, u64)> = ld
            .peers
            .iter()
            .filter(|(_, p)| matches!(p.phase, PeerPhase::NewLeaderAcked | PeerPhase::Active))
            .map(|(s, p)| (*s, p.echoed_round))
            .collect();
        let own = ld.heartbeat_round.max(needed);
        // The highest round that a quorum of voters (the leader included)
        // has echoed; rounds only grow, so the oldest request is first.
        let mut echoes: Vec<u64> = synced
            .into_iter()
            .filter(|(s, _)| self.quorum.is_voter(*s))
            .map(|(_, r)| r)
            .collect();
        echoes.push(own);
        echoes.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&confirmed) = echoes.get(quorum_size - 1) else {
            return;
        };
        let Some(ld) = self.leader_state() else {
            return;
        };
        ld.confirmed_round = ld.confirmed_round.max(confirmed);
        let mut done = Vec::new();
        while ld.confirms.front().is_some_and(|c| c.1 <= confirmed) {
            if let Some((id, _)) = ld.confirms.pop_front() {
                done.push(id);
            }
        }
        for id in done {
            self.ready.events.push(Event::LeadershipConfirmed { id });
        }
        if self.cfg.quorum_reads {
            self.complete_syncs();
        }
        self.hurry_heartbeat();
    }

    /// Registers a `sync` from a learner (`Some`) or this server's client.
    pub(crate) fn leader_sync(&mut self, from: Option<Sid>, id: u64) -> Result<(), ProposeError> {
        let max = self.cfg.max_pending_syncs;
        let linearizable = self.cfg.quorum_reads;
        let committed = self.log.committed();
        let Some(ld) = self.leader_state() else {
            return Err(ProposeError::NotServing);
        };
        if !ld.is_serving() {
            return Err(ProposeError::NotServing);
        }
        if ld.syncs.len() >= max {
            return Err(ProposeError::TooManyOutstanding);
        }
        // As ZooKeeper's Leader.processSync: with no proposal outstanding the
        // sync is done at once. (Waiting for `last_proposed` instead hung every
        // sync of a new epoch in which nothing was proposed yet: its
        // `last_proposed` is (epoch, 0), which is never committed.)
        let upto = if ld.outstanding.is_empty() {
            committed
        } else {
            ld.last_proposed
        };
        // quorumReads: the sync also waits until a quorum echoed a heartbeat
        // sent after it, so a deposed leader cannot answer it (ZOOKEEPER-1675).
        let round = if linearizable {
            ld.heartbeat_round + 1
        } else {
            0
        };
        ld.syncs.push_back((from, id, upto, round));
        self.complete_syncs();
        if linearizable {
            self.hurry_heartbeat();
        }
        Ok(())
    }

    // ----- learner -----

    /// True if `zxid` directly follows the last logged txn: the next counter
    /// in the same epoch, or the first txn of a later epoch. Anything else
    /// means this learner missed txns (a lost message): it must resync.
    fn follows_gaplessly(&self, zxid: Zxid) -> bool {
        let last = self.log.last_logged();
        if zxid_epoch(zxid) == zxid_epoch(last) {
            zxid == last + 1
        } else {
            zxid_epoch(zxid) > zxid_epoch(last) && zxid_counter(zxid) == 1
        }
    }

    pub(crate) fn on_proposal(&mut self, epoch: Epoch, zxid: Zxid, payload: Bytes) {
        let Some(l) = self.learner_state() else {
            return;
        };
        let (leader, ack) = (l.leader, l.newleader_acked && !l.observer);
        if zxid_epoch(zxid) > epoch || zxid <= self.log.last_logged() {
            return self.drop_msg(
                leader,
                &PeerMessage::Proposal { zxid, payload },
                "proposal out of order",
            );
        }
        if !self.follows_gaplessly(zxid) {
            self.drop_msg(
                leader,
                &PeerMessage::Proposal { zxid, payload },
                "gap before proposal",
            );
            return self.start_election();
        }
        if self.log.append(zxid, payload.clone()).is_err() {
            return;
        }
        self.persist(PersistAction::AppendTxn { zxid, payload });
        if ack {
            self.send_durable(leader, PeerMessage::Ack { zxid });
        }
    }

    pub(crate) fn on_commit(&mut self, zxid: Zxid) {
        if zxid > self.log.last_logged() {
            // A commit of a txn never received: a message was lost; resync.
            let leader = self.leader().unwrap_or_default();
            self.drop_msg(
                leader,
                &PeerMessage::Commit { zxid },
                "commit of an unknown txn",
            );
            return self.start_election();
        }
        self.commit_through(zxid);
    }

    pub(crate) fn on_inform(&mut self, epoch: Epoch, zxid: Zxid, payload: Bytes) {
        let Some(l) = self.learner_state() else {
            return;
        };
        let (leader, observer) = (l.leader, l.observer);
        if !observer || zxid_epoch(zxid) > epoch {
            return self.drop_msg(
                leader,
                &PeerMessage::Inform { zxid, payload },
                "unexpected INFORM",
            );
        }
        if zxid > self.log.last_logged() {
            if !self.follows_gaplessly(zxid) {
                self.drop_msg(
                    leader,
                    &PeerMessage::Inform { zxid, payload },
                    "gap before txn",
                );
                return self.start_election();
            }
            if self.log.append(zxid, payload.clone()).is_err() {
                return;
            }
            self.persist(PersistAction::AppendTxn { zxid, payload });
        }
        self.commit_through(zxid);
    }
}
