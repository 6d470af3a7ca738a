//! ZAB phase 2, synchronization. The leader brings each learner that acked
//! its epoch up to date from its committed-log window: DIFF (the txns the
//! learner lacks), TRUNC then DIFF (the learner has txns the leader does
//! not), or SNAP (the learner is older than the window, or diverged across
//! epochs); then NEWLEADER. A learner ACKs NEWLEADER only once the sync data
//! and its new current epoch are durable. With a quorum of NEWLEADER ACKs the
//! leader commits its whole log, sends UPTODATE, and starts serving.

use bytes::Bytes;

use super::discovery::{LeaderPhase, LearnerPhase, PeerPhase};
use super::log::Synchronization;
use super::{Event, Outbound, PersistAction, Zab};
use crate::proto::peer::{Epoch, PeerMessage, Sid};
use crate::types::{make_zxid, zxid_epoch, Zxid};

impl Zab {
    /// Sends one learner its sync data and NEWLEADER.
    pub(crate) fn sync_learner(&mut self, sid: Sid) {
        let Some(ld) = self.leader_state() else {
            return;
        };
        let (epoch, serving) = (ld.epoch, ld.is_serving());
        let Some(p) = ld.peers.get_mut(&sid) else {
            return;
        };
        p.phase = PeerPhase::Syncing;
        let peer_last = p.last_zxid;
        let committed = self.log.committed();
        let mode = self.log.synchronization_for(peer_last);
        tracing::debug!(
            sid = self.cfg.my_sid,
            learner = sid,
            ?mode,
            "syncing learner"
        );
        let from = match mode {
            Synchronization::Diff { from } => {
                self.send(
                    sid,
                    PeerMessage::Diff {
                        last_zxid: self.log.last_logged(),
                    },
                );
                from
            }
            Synchronization::Trunc { to } => {
                self.send(sid, PeerMessage::Trunc { zxid: to });
                to
            }
            Synchronization::Snap => {
                self.ready.messages.push(Outbound::Snapshot {
                    to: sid,
                    zxid: committed,
                });
                committed
            }
        };
        let entries: Vec<(Zxid, Bytes)> = self.log.after(from).cloned().collect();
        let (older, newer): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.0 <= committed);
        for (zxid, payload) in older {
            self.send(sid, PeerMessage::Proposal { zxid, payload });
        }
        // The learner may hold txns it never saw committed (even with
        // nothing to DIFF): tell it how far the leader has committed. Only an
        // established leader knows: before that, what its tree applied may
        // include its own uncommitted log tail (a restarted server applies
        // its whole log), which is committed only by a NEWLEADER quorum.
        if committed > 0 && serving {
            self.send(sid, PeerMessage::Commit { zxid: committed });
        }
        for (zxid, payload) in newer {
            self.send(sid, PeerMessage::Proposal { zxid, payload });
        }
        self.send(
            sid,
            PeerMessage::NewLeader {
                zxid: make_zxid(epoch, 0),
            },
        );
    }

    /// A learner acked NEWLEADER (a zxid with counter 0) or a proposal.
    pub(crate) fn on_learner_ack(&mut self, from: Sid, zxid: Zxid) {
        let is_voter = self.quorum.is_voter(from);
        let Some(ld) = self.leader_state() else {
            return;
        };
        if zxid != make_zxid(ld.epoch, 0) {
            return self.on_proposal_ack(from, zxid);
        }
        let phase = ld.phase;
        let Some(p) = ld.peers.get_mut(&from) else {
            return;
        };
        if p.phase != PeerPhase::Syncing {
            return self.drop_msg(
                from,
                &PeerMessage::Ack { zxid },
                "NEWLEADER ack out of turn",
            );
        }
        p.phase = PeerPhase::NewLeaderAcked;
        match phase {
            LeaderPhase::Sync => {
                if is_voter {
                    ld.newleader_acks.insert(from);
                }
                self.try_start_broadcast();
            }
            LeaderPhase::Broadcast => {
                p.phase = PeerPhase::Active;
                self.send(from, PeerMessage::UpToDate);
            }
            _ => {}
        }
    }

    /// With a quorum of NEWLEADER ACKs: commit the log, UPTODATE, serve.
    pub(crate) fn try_start_broadcast(&mut self) {
        let Some(ld) = self.leader_state() else {
            return;
        };
        if ld.phase != LeaderPhase::Sync {
            return;
        }
        let acks: Vec<Sid> = ld.newleader_acks.iter().copied().collect();
        if !self.quorum.contains_quorum(&acks) {
            return;
        }
        let Some(ld) = self.leader_state() else {
            return;
        };
        ld.phase = LeaderPhase::Broadcast;
        let epoch = ld.epoch;
        let forwarding: Vec<(Sid, PeerPhase)> = ld
            .peers
            .iter()
            .filter(|(_, p)| p.forwarding())
            .map(|(s, p)| (*s, p.phase))
            .collect();
        for p in ld.peers.values_mut() {
            if p.phase == PeerPhase::NewLeaderAcked {
                p.phase = PeerPhase::Active;
            }
        }
        // Txns of earlier epochs this leader logged are now on a quorum.
        // Everything this leader logged, from any epoch, is now on a quorum:
        // commit it here and tell every learner synced so far.
        self.commit_through(self.log.last_logged());
        let committed = self.log.committed();
        for (s, phase) in forwarding {
            if committed > 0 {
                self.send(s, PeerMessage::Commit { zxid: committed });
            }
            if phase == PeerPhase::NewLeaderAcked {
                self.send(s, PeerMessage::UpToDate);
            }
        }
        self.ready.events.push(Event::Serving { epoch });
        tracing::info!(sid = self.cfg.my_sid, epoch, "leading");
    }

    // ----- learner -----

    pub(crate) fn on_trunc(&mut self, zxid: Zxid) {
        // Deliberately broken (sim bites test): a learner keeps the txns above `zxid`,
        // which the leader does not have (a TRUNC never goes above the last logged).
        #[cfg(madsim)]
        if crate::broken::active(crate::broken::Bug::SkipTrunc) && zxid <= self.log.last_logged() {
            return;
        }
        let reload = self.log.truncate(zxid);
        self.persist(PersistAction::Truncate { zxid });
        // Deliberately broken (sim bites test): keep the applied tree.
        #[cfg(madsim)]
        let reload = reload && !crate::broken::active(crate::broken::Bug::TruncWithoutReload);
        if reload {
            self.last_applied = self.log.committed();
            self.persist(PersistAction::ReloadTree { zxid });
        }
    }

    pub(crate) fn on_snap(&mut self, zxid: Zxid, snapshot: Bytes) {
        self.log.reset(zxid);
        self.last_applied = zxid;
        self.persist(PersistAction::ApplySnapshot { zxid, snapshot });
    }

    pub(crate) fn on_new_leader(&mut self, epoch: Epoch, zxid: Zxid) {
        let Some(l) = self.learner_state() else {
            return;
        };
        if zxid != make_zxid(epoch, 0) || l.newleader_acked {
            let leader = l.leader;
            return self.drop_msg(
                leader,
                &PeerMessage::NewLeader { zxid },
                "unexpected NEWLEADER",
            );
        }
        l.newleader_acked = true;
        let (leader, observer) = (l.leader, l.observer);
        if epoch > self.current_epoch {
            self.current_epoch = epoch;
            self.persist(PersistAction::SetCurrentEpoch(epoch));
        }
        self.send_durable(leader, PeerMessage::Ack { zxid });
        if !observer {
            // Proposals of this epoch that arrived with the sync data.
            let pending: Vec<Zxid> = self
                .log
                .after(self.log.committed())
                .map(|e| e.0)
                .filter(|z| zxid_epoch(*z) == epoch)
                .collect();
            for z in pending {
                self.send_durable(leader, PeerMessage::Ack { zxid: z });
            }
        }
    }

    pub(crate) fn on_up_to_date(&mut self, epoch: Epoch) {
        let Some(l) = self.learner_state() else {
            return;
        };
        if !l.newleader_acked {
            let leader = l.leader;
            return self.drop_msg(leader, &PeerMessage::UpToDate, "UPTODATE before NEWLEADER");
        }
        l.phase = LearnerPhase::Broadcast { epoch };
        self.ready.events.push(Event::Serving { epoch });
    }
}
