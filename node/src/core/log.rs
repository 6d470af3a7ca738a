//! The in-memory view of the txn log kept by the core: every txn not yet
//! committed plus a window of the most recent committed ones (ZooKeeper's
//! `committedLog`, used to sync learners by DIFF).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::types::{zxid_epoch, Zxid};

/// How the leader brings one learner up to date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Synchronization {
    /// The learner's log is a prefix of the leader's: send the txns after `from`.
    Diff { from: Zxid },
    /// The learner has txns the leader does not: truncate to `to`, then DIFF.
    Trunc { to: Zxid },
    /// The learner is too far behind, or diverged across epochs: send a snapshot.
    Snap,
}

/// Txns the core keeps in memory, in zxid order.
#[derive(Clone, Debug)]
pub(crate) struct TxnLog {
    /// The zxid of the log entry just before `entries[0]` (0: the beginning).
    base: Zxid,
    entries: VecDeque<(Zxid, Bytes)>,
    committed: Zxid,
    window: usize,
}

/// A log operation the core refused because it would break zxid order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OutOfOrder;

impl TxnLog {
    /// A log holding `tail` after `base`, committed through `committed`.
    pub(crate) fn new(
        base: Zxid,
        tail: Vec<(Zxid, Bytes)>,
        committed: Zxid,
        window: usize,
    ) -> Result<TxnLog, String> {
        let mut prev = base;
        for (z, _) in &tail {
            if *z <= prev {
                return Err(format!("log tail is not in zxid order at {z:#x}"));
            }
            prev = *z;
        }
        if committed > prev {
            return Err(format!(
                "last committed {committed:#x} is above last logged {prev:#x}"
            ));
        }
        if committed < base {
            return Err(format!(
                "log tail starts after {base:#x} but must hold every txn after the last committed {committed:#x}"
            ));
        }
        let mut log = TxnLog {
            base,
            entries: tail.into(),
            committed,
            window,
        };
        log.trim();
        Ok(log)
    }

    pub(crate) fn last_logged(&self) -> Zxid {
        self.entries.back().map(|e| e.0).unwrap_or(self.base)
    }

    pub(crate) fn committed(&self) -> Zxid {
        self.committed
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &(Zxid, Bytes)> {
        self.entries.iter()
    }

    /// The entries after `zxid`, in order.
    pub(crate) fn after(&self, zxid: Zxid) -> impl Iterator<Item = &(Zxid, Bytes)> {
        let start = self.entries.partition_point(|e| e.0 <= zxid);
        self.entries.range(start..)
    }

    pub(crate) fn get(&self, zxid: Zxid) -> Option<&Bytes> {
        let i = self.entries.binary_search_by_key(&zxid, |e| e.0).ok()?;
        Some(&self.entries[i].1)
    }

    /// Appends a txn above the last logged one.
    pub(crate) fn append(&mut self, zxid: Zxid, payload: Bytes) -> Result<(), OutOfOrder> {
        if zxid <= self.last_logged() {
            return Err(OutOfOrder);
        }
        self.entries.push_back((zxid, payload));
        Ok(())
    }

    /// Marks every txn through `zxid` (capped at the last logged) committed
    /// and returns the newly committed ones in order. The committed point
    /// only moves to zxids of txns in the log.
    pub(crate) fn commit_through(&mut self, zxid: Zxid) -> Vec<(Zxid, Bytes)> {
        let upto = zxid.min(self.last_logged());
        if upto <= self.committed {
            return Vec::new();
        }
        let newly: Vec<(Zxid, Bytes)> = self
            .after(self.committed)
            .take_while(|e| e.0 <= upto)
            .cloned()
            .collect();
        // The committed point only ever lands on a txn this log holds.
        if let Some((last, _)) = newly.last() {
            self.committed = *last;
            self.trim();
        }
        newly
    }

    /// Drops entries above `zxid`. Returns true if committed txns were
    /// dropped (the tree must then be reloaded).
    pub(crate) fn truncate(&mut self, zxid: Zxid) -> bool {
        while self.entries.back().is_some_and(|e| e.0 > zxid) {
            self.entries.pop_back();
        }
        if zxid < self.base {
            self.base = zxid;
        }
        let reload = zxid < self.committed;
        self.committed = self.committed.min(zxid);
        reload
    }

    /// Replaces everything with a snapshot at `zxid`.
    pub(crate) fn reset(&mut self, zxid: Zxid) {
        self.entries.clear();
        self.base = zxid;
        self.committed = zxid;
    }

    /// Keeps at most `window` committed entries.
    fn trim(&mut self) {
        let committed_count = self.entries.partition_point(|e| e.0 <= self.committed);
        let excess = committed_count.saturating_sub(self.window);
        for _ in 0..excess {
            if let Some((z, _)) = self.entries.pop_front() {
                self.base = z;
            }
        }
    }

    /// Picks how to sync a learner whose last logged zxid is `peer_last`
    /// (ZooKeeper's `LearnerHandler.syncFollower`). A learner's log shares
    /// every entry up to the last zxid it has in common with the leader, and
    /// within one epoch a log has no gaps; when that cannot establish a common
    /// point, the answer is a snapshot.
    pub(crate) fn synchronization_for(&self, peer_last: Zxid) -> Synchronization {
        let last = self.last_logged();
        if peer_last == last || peer_last == self.base {
            return Synchronization::Diff { from: peer_last };
        }
        if peer_last < self.base {
            return Synchronization::Snap;
        }
        if peer_last < last && self.get(peer_last).is_some() {
            return Synchronization::Diff { from: peer_last };
        }
        // The learner has txns the leader lacks: find the leader's last zxid below them.
        let idx = self.entries.partition_point(|e| e.0 < peer_last);
        let prev = if idx == 0 {
            self.base
        } else {
            self.entries[idx - 1].0
        };
        if prev == 0 || zxid_epoch(prev) == zxid_epoch(peer_last) {
            Synchronization::Trunc { to: prev }
        } else {
            Synchronization::Snap
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::make_zxid;

    fn z(e: u32, c: u32) -> Zxid {
        make_zxid(e, c)
    }

    fn log_of(base: Zxid, zs: &[Zxid], committed: Zxid, window: usize) -> TxnLog {
        let tail = zs
            .iter()
            .map(|z| (*z, Bytes::from(format!("{z:x}"))))
            .collect();
        TxnLog::new(base, tail, committed, window).unwrap()
    }

    #[test]
    fn window_keeps_uncommitted_and_last_committed() {
        let mut l = log_of(0, &[z(1, 1), z(1, 2), z(1, 3), z(1, 4)], 0, 2);
        assert_eq!(l.commit_through(z(1, 3)).len(), 3);
        let kept: Vec<Zxid> = l.entries().map(|e| e.0).collect();
        assert_eq!(kept, vec![z(1, 2), z(1, 3), z(1, 4)]);
        assert_eq!(l.base, z(1, 1));
        assert_eq!(
            l.commit_through(z(9, 9)).len(),
            1,
            "commit is capped at the last logged"
        );
        assert_eq!(l.committed(), z(1, 4));
    }

    #[test]
    fn append_refuses_out_of_order() {
        let mut l = log_of(0, &[z(1, 2)], 0, 10);
        assert_eq!(l.append(z(1, 2), Bytes::new()), Err(OutOfOrder));
        assert_eq!(l.append(z(1, 3), Bytes::new()), Ok(()));
    }

    #[test]
    fn truncate_below_committed_asks_for_reload() {
        let mut l = log_of(0, &[z(1, 1), z(1, 2), z(1, 3)], z(1, 3), 10);
        assert!(l.truncate(z(1, 2)));
        assert_eq!(l.last_logged(), z(1, 2));
        assert_eq!(l.committed(), z(1, 2));
        assert!(!l.truncate(z(1, 2)));
    }

    #[test]
    fn synchronizations() {
        // Leader: base 1.1, then 1.2 1.3 2.1 2.2; all committed.
        let l = log_of(z(1, 1), &[z(1, 2), z(1, 3), z(2, 1), z(2, 2)], z(2, 2), 10);
        assert_eq!(
            l.synchronization_for(z(2, 2)),
            Synchronization::Diff { from: z(2, 2) }
        );
        assert_eq!(
            l.synchronization_for(z(1, 3)),
            Synchronization::Diff { from: z(1, 3) }
        );
        assert_eq!(
            l.synchronization_for(z(1, 1)),
            Synchronization::Diff { from: z(1, 1) },
            "base is known"
        );
        assert_eq!(
            l.synchronization_for(0),
            Synchronization::Snap,
            "older than the window"
        );
        assert_eq!(
            l.synchronization_for(z(1, 5)),
            Synchronization::Trunc { to: z(1, 3) }
        );
        assert_eq!(
            l.synchronization_for(z(2, 7)),
            Synchronization::Trunc { to: z(2, 2) }
        );
        // A learner whose last txn is from an epoch the leader never saw.
        assert_eq!(l.synchronization_for(z(3, 1)), Synchronization::Snap);
        // From the very beginning, truncating to zero is always sound.
        let fresh = log_of(0, &[], 0, 10);
        assert_eq!(
            fresh.synchronization_for(z(4, 4)),
            Synchronization::Trunc { to: 0 }
        );
        assert_eq!(
            fresh.synchronization_for(0),
            Synchronization::Diff { from: 0 }
        );
    }

    #[test]
    fn new_rejects_inconsistent_state() {
        assert!(TxnLog::new(
            0,
            vec![(z(1, 2), Bytes::new()), (z(1, 1), Bytes::new())],
            0,
            5
        )
        .is_err());
        assert!(TxnLog::new(0, vec![(z(1, 1), Bytes::new())], z(1, 2), 5).is_err());
        assert!(TxnLog::new(z(1, 1), vec![], 0, 5).is_err());
    }
}
