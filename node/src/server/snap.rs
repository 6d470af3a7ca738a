//! SNAP ordering: a leader serializes a learner's SNAP off the pipeline (from the tree
//! frozen when the core asked for it), and what the core sends that learner meanwhile
//! waits behind it, so the learner sees the core's order.

use std::collections::{BTreeMap, VecDeque};

use crate::proto::peer::{PeerMessage, Sid};
use crate::types::Zxid;

/// Messages one learner's queue may hold behind its SNAP; beyond it the learner is
/// disconnected (it syncs again on a fresh connection) rather than held without bound.
pub const MAX_HELD_BEHIND_SNAP: usize = 100_000;

/// A SNAP being serialized for one learner and the messages waiting behind it.
struct InFlight {
    zxid: Zxid,
    held: VecDeque<PeerMessage>,
}

/// The SNAPs in flight, per learner.
#[derive(Default)]
pub(super) struct SnapQueues {
    in_flight: BTreeMap<Sid, InFlight>,
}

/// What [`SnapQueues::send`] did with a message.
pub(super) enum Held {
    /// No SNAP in flight for that learner: send it now.
    No(PeerMessage),
    /// Queued behind the SNAP.
    Yes,
    /// The queue is full: the SNAP was abandoned; disconnect the learner.
    Overflow,
}

impl SnapQueues {
    /// A SNAP at `zxid` for `to` starts; returns whether one not sent yet was replaced.
    pub(super) fn start(&mut self, to: Sid, zxid: Zxid) -> bool {
        let snap = InFlight {
            zxid,
            held: VecDeque::new(),
        };
        self.in_flight.insert(to, snap).is_some()
    }

    /// Routes a message for `to`: behind its SNAP if one is in flight.
    pub(super) fn send(&mut self, to: Sid, msg: PeerMessage) -> Held {
        let Some(snap) = self.in_flight.get_mut(&to) else {
            return Held::No(msg);
        };
        if snap.held.len() >= MAX_HELD_BEHIND_SNAP {
            self.in_flight.remove(&to);
            return Held::Overflow;
        }
        snap.held.push_back(msg);
        Held::Yes
    }

    /// The SNAP for `to` was serialized: its zxid and what waited behind it.
    pub(super) fn finish(&mut self, to: Sid) -> Option<(Zxid, VecDeque<PeerMessage>)> {
        self.in_flight.remove(&to).map(|s| (s.zxid, s.held))
    }

    /// The connection to `to` is gone: so is what was meant for it.
    pub(super) fn abandon(&mut self, to: Sid) {
        self.in_flight.remove(&to);
    }

    /// A role change: every SNAP in flight is abandoned.
    pub(super) fn clear(&mut self) {
        self.in_flight.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_wait_behind_a_snap_and_overflow_abandons_it() {
        let mut q = SnapQueues::default();
        assert!(matches!(q.send(2, PeerMessage::UpToDate), Held::No(_)));
        assert!(!q.start(2, 7));
        assert!(matches!(q.send(2, PeerMessage::UpToDate), Held::Yes));
        assert!(matches!(q.send(3, PeerMessage::UpToDate), Held::No(_)));
        let (zxid, held) = q.finish(2).unwrap();
        assert_eq!((zxid, held.len()), (7, 1));
        assert!(q.finish(2).is_none());
        q.start(2, 8);
        for _ in 0..MAX_HELD_BEHIND_SNAP {
            assert!(matches!(q.send(2, PeerMessage::UpToDate), Held::Yes));
        }
        assert!(matches!(q.send(2, PeerMessage::UpToDate), Held::Overflow));
        assert!(q.finish(2).is_none(), "abandoned");
    }
}
