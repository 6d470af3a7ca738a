//! ZAB phase 3, broadcast. The leader appends a proposal, sends PROPOSAL to
//! every follower, and commits once a quorum of voters (its own durable
//! append included) ACKed; commits go out strictly in zxid order as COMMIT to
//! followers and INFORM (with the txn) to observers. A follower ACKs a
//! proposal only once its append is durable.

use bytes::Bytes;

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
        ld.last_proposed = zxid;
        ld.outstanding.insert(zxid, Default::default());
        let followers: Vec<Sid> = ld
            .peers
            .iter()
            .filter(|(_, p)| !p.observer && p.forwarding())
            .map(|(s, _)| *s)
            .collect();
        if self.log.append(zxid, payload.clone()).is_err() {
            // Unreachable while the invariants hold: the leader's zxids grow.
            return Err(ProposeError::NotServing);
        }
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
        match ld.outstanding.get_mut(&zxid) {
            Some(acks) => {
                acks.insert(from);
            }
            None if zxid <= committed => return, // a late ACK
            None => {
                return self.drop_msg(
                    from,
                    &PeerMessage::Ack { zxid },
                    "ACK of an unknown proposal",
                )
            }
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
            if !self.quorum.contains_quorum(&acks) {
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
            self.commit_through(zxid);
            let payload = self.log.get(zxid).cloned().unwrap_or_default();
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
        while ld.syncs.front().is_some_and(|s| s.2 <= committed) {
            if let Some(s) = ld.syncs.pop_front() {
                done.push(s);
            }
        }
        for (from, id, _) in done {
            match from {
                None => self.ready.events.push(Event::SyncDone { id }),
                Some(s) => self.send(s, PeerMessage::SyncDone { id }),
            }
        }
    }

    /// Registers a `sync` from a learner (`Some`) or this server's client.
    pub(crate) fn leader_sync(&mut self, from: Option<Sid>, id: u64) -> Result<(), ProposeError> {
        let max = self.cfg.max_pending_syncs;
        let Some(ld) = self.leader_state() else {
            return Err(ProposeError::NotServing);
        };
        if !ld.is_serving() {
            return Err(ProposeError::NotServing);
        }
        if ld.syncs.len() >= max {
            return Err(ProposeError::TooManyOutstanding);
        }
        let upto = ld.last_proposed;
        ld.syncs.push_back((from, id, upto));
        self.complete_syncs();
        Ok(())
    }

    // ----- learner -----

    pub(crate) fn on_proposal(&mut self, epoch: Epoch, zxid: Zxid, payload: Bytes) {
        let Some(l) = self.learner_state() else {
            return;
        };
        let (leader, ack) = (l.leader, l.newleader_acked && !l.observer);
        if zxid_epoch(zxid) > epoch || self.log.append(zxid, payload.clone()).is_err() {
            return self.drop_msg(
                leader,
                &PeerMessage::Proposal { zxid, payload },
                "proposal out of order",
            );
        }
        self.persist(PersistAction::AppendTxn { zxid, payload });
        if ack {
            self.send_durable(leader, PeerMessage::Ack { zxid });
        }
    }

    pub(crate) fn on_commit(&mut self, zxid: Zxid) {
        if zxid > self.log.last_logged() {
            let leader = self.leader().unwrap_or_default();
            return self.drop_msg(
                leader,
                &PeerMessage::Commit { zxid },
                "commit of an unknown txn",
            );
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
            if self.log.append(zxid, payload.clone()).is_err() {
                return;
            }
            self.persist(PersistAction::AppendTxn { zxid, payload });
        }
        self.commit_through(zxid);
    }
}
