//! Rule 1 of the design, made type-level: messages whose correctness depends
//! on durability (a follower's ACK of a proposal or of NEWLEADER, ACKEPOCH)
//! exist only as [`DurableAck`], which only this module can build, and only
//! once the runtime reported every persist action issued before it durable.

use std::collections::VecDeque;

use crate::proto::peer::{Epoch, PeerMessage, Sid};
use crate::types::Zxid;

/// Which epoch file a [`crate::core::PersistAction`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EpochFile {
    /// `acceptedEpoch`.
    Accepted,
    /// `currentEpoch`.
    Current,
}

/// A message that may only leave after the persistence it depends on: the
/// core builds it when the runtime reported that persistence, never before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurableAck {
    to: Sid,
    msg: PeerMessage,
}

impl DurableAck {
    /// The destination.
    pub fn to(&self) -> Sid {
        self.to
    }

    /// The message (an ACK or ACKEPOCH).
    pub fn message(&self) -> &PeerMessage {
        &self.msg
    }

    /// Consumes it into its destination and message.
    pub fn into_parts(self) -> (Sid, PeerMessage) {
        (self.to, self.msg)
    }
}

/// What becomes possible once persistence reaches a point.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AfterPersist {
    /// Send a durability-dependent message.
    Send { to: Sid, msg: PeerMessage },
    /// The leader's own ACKEPOCH: its accepted epoch is durable.
    LeaderEpochAck { epoch: Epoch },
    /// The leader's own NEWLEADER ACK: its current epoch and log are durable.
    LeaderNewLeaderAck { epoch: Epoch },
    /// The leader's own ACK of its proposal.
    LeaderTxnAck { zxid: Zxid },
}

/// Released work: either a message to send or a leader self-ack.
#[derive(Debug)]
pub(crate) enum Released {
    Message(DurableAck),
    Leader(AfterPersist),
}

/// One persist action issued and not yet reported durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Issued {
    Txn(Zxid),
    Snapshot(Zxid),
    Epoch(EpochFile, Epoch),
    Other,
}

/// Tracks issued persist actions and the work waiting on them.
#[derive(Debug, Default)]
pub(crate) struct Durability {
    next_seq: u64,
    /// The last action handed to the runtime (drained with a `Ready`): what
    /// [`Durability::report_handed_out`] reports.
    handed_out: u64,
    unsynced: VecDeque<(u64, Issued)>,
    held: VecDeque<(u64, AfterPersist)>,
}

impl Durability {
    /// Records a persist action handed to the runtime.
    pub(crate) fn issue(&mut self, what: Issued) {
        self.next_seq += 1;
        self.unsynced.push_back((self.next_seq, what));
    }

    /// Number of persist actions not yet reported durable.
    pub(crate) fn unsynced_len(&self) -> usize {
        self.unsynced.len()
    }

    /// Schedules `item` for when every action issued so far is durable.
    /// Returns it released at once if nothing is pending.
    pub(crate) fn after_persisted(&mut self, item: AfterPersist) -> Option<Released> {
        if self.unsynced.is_empty() {
            return Some(release(item));
        }
        self.held.push_back((self.next_seq, item));
        None
    }

    /// The runtime made everything durable up to and including the first
    /// pending action matching `found`. Returns the released work, or `None`
    /// if no pending action matches (a stale or bogus report).
    pub(crate) fn report(&mut self, found: impl Fn(&Issued) -> bool) -> Option<Vec<Released>> {
        let pos = self.unsynced.iter().position(|(_, w)| found(w))?;
        let seq = self.unsynced[pos].0;
        self.unsynced.drain(..=pos);
        Some(self.release_through(seq))
    }

    /// Every action issued so far has been handed to the runtime.
    pub(crate) fn mark_handed_out(&mut self) {
        self.handed_out = self.next_seq;
    }

    /// Everything handed to the runtime so far is durable (not what was issued
    /// since: the runtime has not seen it yet).
    pub(crate) fn report_handed_out(&mut self) -> Vec<Released> {
        let upto = self.handed_out;
        while self.unsynced.front().is_some_and(|(s, _)| *s <= upto) {
            self.unsynced.pop_front();
        }
        self.release_through(upto)
    }

    /// Forgets all held work (on a role change nothing held is still meaningful).
    pub(crate) fn drop_held(&mut self) {
        self.held.clear();
    }

    fn release_through(&mut self, seq: u64) -> Vec<Released> {
        let mut out = Vec::new();
        while self.held.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, item)) = self.held.pop_front() {
                out.push(release(item));
            }
        }
        out
    }
}

fn release(item: AfterPersist) -> Released {
    match item {
        AfterPersist::Send { to, msg } => Released::Message(DurableAck { to, msg }),
        other => Released::Leader(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(z: Zxid) -> AfterPersist {
        AfterPersist::Send {
            to: 1,
            msg: PeerMessage::Ack { zxid: z },
        }
    }

    #[test]
    fn held_until_the_action_before_it_is_reported() {
        let mut d = Durability::default();
        d.issue(Issued::Txn(5));
        assert!(d.after_persisted(ack(5)).is_none());
        d.issue(Issued::Txn(6));
        assert!(d.after_persisted(ack(6)).is_none());
        let r = d.report(|w| *w == Issued::Txn(5)).unwrap();
        assert_eq!(r.len(), 1);
        assert!(
            matches!(&r[0], Released::Message(m) if *m.message() == PeerMessage::Ack { zxid: 5 })
        );
        assert!(
            d.report(|w| *w == Issued::Txn(5)).is_none(),
            "a stale report matches nothing"
        );
        d.mark_handed_out();
        assert_eq!(d.report_handed_out().len(), 1);
        assert!(
            d.after_persisted(ack(7)).is_some(),
            "nothing pending: released at once"
        );
    }

    #[test]
    fn only_what_was_handed_out_is_reported() {
        let mut d = Durability::default();
        d.issue(Issued::Txn(5));
        assert!(d.after_persisted(ack(5)).is_none());
        d.mark_handed_out();
        // Issued after the runtime took its Ready: not covered by the report.
        d.issue(Issued::Txn(6));
        assert!(d.after_persisted(ack(6)).is_none());
        let r = d.report_handed_out();
        assert!(
            matches!(&r[..], [Released::Message(m)] if *m.message() == PeerMessage::Ack { zxid: 5 })
        );
        assert_eq!(d.unsynced_len(), 1);
        d.mark_handed_out();
        assert_eq!(d.report_handed_out().len(), 1);
        assert_eq!(d.unsynced_len(), 0);
    }

    #[test]
    fn reports_are_positional_not_by_value() {
        // A snapshot at a lower zxid issued after a txn: reporting the txn
        // must not release what waits on the snapshot.
        let mut d = Durability::default();
        d.issue(Issued::Txn(9));
        d.issue(Issued::Snapshot(4));
        assert!(d.after_persisted(ack(4)).is_none());
        assert!(d.report(|w| *w == Issued::Txn(9)).unwrap().is_empty());
        assert_eq!(d.unsynced_len(), 1);
        assert_eq!(d.report(|w| *w == Issued::Snapshot(4)).unwrap().len(), 1);
    }
}
