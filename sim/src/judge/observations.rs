//! Node observations (what the node's observation hook reports to the harness) and the
//! global invariants over them: one leader per epoch, one txn per zxid, one tree digest
//! per zxid, and a server's committed zxid never going back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{violation, Verdict};

/// An observation a node reports to the harness (the sim's global checks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Virtual ms since the start.
    pub at_ms: u64,
    /// Server index.
    pub server: usize,
    /// What was observed.
    #[serde(flatten)]
    pub what: Observed,
}

/// Node observations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "obs", rename_all = "kebab-case")]
pub enum Observed {
    /// The server established itself as leader of `epoch`.
    Leading {
        /// The epoch.
        epoch: u32,
    },
    /// The server committed (applied) the txn with this zxid and payload hash.
    Committed {
        /// The zxid.
        zxid: i64,
        /// Hash of the txn payload.
        txn_hash: u64,
    },
    /// The server (re)started; its committed zxid after recovery.
    Recovered {
        /// Last committed zxid after recovery.
        zxid: i64,
    },
    /// The server's tree digest right after it applied the committed txn `zxid`.
    Digest {
        /// The zxid.
        zxid: i64,
        /// Digest of the tree.
        digest: u64,
    },
    /// The server refused to start: its storage would not open or its start-up recovery
    /// failed (fail-stop on data it cannot trust).
    RefusedStart {
        /// Why, as the node said it.
        reason: String,
    },
    /// The server applied a committed CloseSession txn (a client's close or an expiry).
    SessionClosed {
        /// The session id (the history's `session`).
        session: i64,
        /// The CloseSession txn's zxid.
        zxid: i64,
    },
    /// The server made a local session (known to no other server unless upgraded).
    LocalSessionMade {
        /// The session id.
        session: i64,
    },
    /// The server applied a committed CreateSession (a new or upgraded session).
    SessionCreated {
        /// The session id.
        session: i64,
        /// The CreateSession txn's zxid.
        zxid: i64,
    },
    /// The server replaced its whole tree (start-up recovery, the leader's SNAP, or a
    /// reload after TRUNC); the tree is now at `zxid` with `digest`.
    TreeLoaded {
        /// `startup`, `snap` or `trunc`.
        source: String,
        /// The tree's last processed zxid.
        zxid: i64,
        /// Digest of the tree.
        digest: u64,
    },
}

/// The shared log of node observations of one run (what the node's observation hook
/// reported, in order).
#[derive(Debug, Clone, Default)]
pub struct ObservationLog {
    events: std::sync::Arc<std::sync::Mutex<Vec<Observation>>>,
}

impl ObservationLog {
    /// Record an observation.
    pub fn observe(&self, at_ms: u64, server: usize, what: Observed) {
        self.events
            .lock()
            .expect("observation log lock")
            .push(Observation {
                at_ms,
                server,
                what,
            });
    }

    /// Every observation so far.
    pub fn snapshot(&self) -> Vec<Observation> {
        self.events.lock().expect("observation log lock").clone()
    }

    /// Each of `servers` servers' latest tree (see [`super::convergence::latest_trees`]).
    pub fn latest_trees(&self, servers: usize) -> Vec<Option<(i64, u64)>> {
        super::convergence::latest_trees(
            &self.events.lock().expect("observation log lock"),
            servers,
        )
    }

    /// Whether `server`'s last start at or after `since_ms` was refused
    /// ([`Observed::RefusedStart`], with no tree loaded after it).
    pub fn refused_start_since(&self, server: usize, since_ms: u64) -> bool {
        self.events
            .lock()
            .expect("observation log lock")
            .iter()
            .rev()
            .filter(|o| o.server == server && o.at_ms >= since_ms)
            .find_map(|o| match o.what {
                Observed::RefusedStart { .. } => Some(true),
                Observed::TreeLoaded { .. } => Some(false),
                _ => None,
            })
            .unwrap_or(false)
    }

    /// The server that most recently announced leadership, if any.
    pub fn current_leader(&self) -> Option<usize> {
        self.events
            .lock()
            .expect("observation log lock")
            .iter()
            .rev()
            .find_map(|o| matches!(o.what, Observed::Leading { .. }).then_some(o.server))
    }
}

/// Global invariants over node observations.
pub fn check(obs: &[Observation]) -> Verdict {
    let mut leaders: BTreeMap<u32, usize> = BTreeMap::new();
    let mut txns: BTreeMap<i64, (u64, usize)> = BTreeMap::new();
    let mut last: BTreeMap<usize, i64> = BTreeMap::new();
    let mut digests: BTreeMap<i64, (u64, usize)> = BTreeMap::new();
    for o in obs {
        match &o.what {
            Observed::Leading { epoch } => {
                if let Some(&other) = leaders.get(epoch) {
                    if other != o.server {
                        return violation(
                            "one-leader-per-epoch",
                            format!("s{other} and s{} both lead epoch {epoch}", o.server),
                        );
                    }
                }
                leaders.insert(*epoch, o.server);
            }
            Observed::Committed { zxid, txn_hash } => {
                if let Some(&(h, other)) = txns.get(zxid) {
                    if h != *txn_hash {
                        return violation(
                            "same-txn-per-zxid",
                            format!(
                                "s{other} and s{} committed different txns at zxid {zxid:#x}",
                                o.server
                            ),
                        );
                    }
                }
                txns.insert(*zxid, (*txn_hash, o.server));
                if let Some(&prev) = last.get(&o.server) {
                    if *zxid <= prev {
                        return violation(
                            "committed-zxid-monotonic",
                            format!(
                                "s{} committed {zxid:#x} after {prev:#x} at {}ms",
                                o.server, o.at_ms
                            ),
                        );
                    }
                }
                last.insert(o.server, *zxid);
            }
            Observed::Recovered { zxid } => {
                if let Some(&prev) = last.get(&o.server) {
                    if *zxid < prev {
                        return violation(
                            "committed-zxid-monotonic",
                            format!(
                                "s{} recovered to {zxid:#x} after committing {prev:#x} at {}ms",
                                o.server, o.at_ms
                            ),
                        );
                    }
                }
                last.insert(o.server, *zxid);
            }
            // A tree loaded whole is judged like one advanced by a commit: by ZAB's prefix
            // property every server holding txn `zxid` holds the same txns up to it, so
            // their trees at `zxid` must be equal however they got there (a tree
            // recovered at start-up holds exactly its log's txns up to its zxid).
            Observed::Digest { zxid, digest } | Observed::TreeLoaded { zxid, digest, .. } => {
                if let Some(&(d, other)) = digests.get(zxid) {
                    if d != *digest {
                        return violation(
                            "same-digest-per-zxid",
                            format!("s{other} and s{} differ at zxid {zxid:#x}", o.server),
                        );
                    }
                }
                digests.insert(*zxid, (*digest, o.server));
            }
            Observed::RefusedStart { .. }
            | Observed::SessionClosed { .. }
            | Observed::LocalSessionMade { .. }
            | Observed::SessionCreated { .. } => {}
        }
    }
    Verdict::Pass
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An observation of `server` at `at_ms` (shared with the other judge tests).
    pub(in crate::judge) fn obs(at_ms: u64, server: usize, what: Observed) -> Observation {
        Observation {
            at_ms,
            server,
            what,
        }
    }

    #[test]
    fn observation_checks() {
        let ok = vec![
            obs(1, 0, Observed::Leading { epoch: 1 }),
            obs(
                2,
                0,
                Observed::Committed {
                    zxid: 1,
                    txn_hash: 9,
                },
            ),
            obs(
                3,
                1,
                Observed::Committed {
                    zxid: 1,
                    txn_hash: 9,
                },
            ),
            obs(4, 1, Observed::Recovered { zxid: 1 }),
            obs(5, 1, Observed::Leading { epoch: 2 }),
        ];
        assert_eq!(check(&ok), Verdict::Pass);
        let two_leaders = vec![
            obs(1, 0, Observed::Leading { epoch: 1 }),
            obs(2, 1, Observed::Leading { epoch: 1 }),
        ];
        assert!(matches!(check(&two_leaders),
            Verdict::Violation { check, .. } if check == "one-leader-per-epoch"));
        let diverged = vec![
            obs(
                2,
                0,
                Observed::Committed {
                    zxid: 1,
                    txn_hash: 9,
                },
            ),
            obs(
                3,
                1,
                Observed::Committed {
                    zxid: 1,
                    txn_hash: 8,
                },
            ),
        ];
        assert!(matches!(check(&diverged),
            Verdict::Violation { check, .. } if check == "same-txn-per-zxid"));
        let backwards = vec![
            obs(
                2,
                0,
                Observed::Committed {
                    zxid: 5,
                    txn_hash: 9,
                },
            ),
            obs(3, 0, Observed::Recovered { zxid: 4 }),
        ];
        assert!(matches!(check(&backwards),
            Verdict::Violation { check, .. } if check == "committed-zxid-monotonic"));
    }

    /// A tree load of `source` at `zxid` with `digest`.
    pub(in crate::judge) fn loaded(source: &str, zxid: i64, digest: u64) -> Observed {
        Observed::TreeLoaded {
            source: source.into(),
            zxid,
            digest,
        }
    }

    #[test]
    fn a_loaded_tree_takes_part_in_the_digest_check() {
        let agree = vec![
            obs(1, 0, Observed::Digest { zxid: 7, digest: 1 }),
            obs(2, 1, loaded("snap", 7, 1)),
            obs(3, 2, loaded("startup", 9, 2)),
            obs(4, 0, Observed::Digest { zxid: 9, digest: 2 }),
        ];
        assert_eq!(check(&agree), Verdict::Pass);
        for source in ["startup", "snap", "trunc"] {
            let differ = vec![
                obs(1, 0, Observed::Digest { zxid: 7, digest: 1 }),
                obs(2, 1, loaded(source, 7, 3)),
            ];
            assert!(matches!(check(&differ),
                Verdict::Violation { check, .. } if check == "same-digest-per-zxid"));
        }
    }

    #[test]
    fn only_a_refusal_after_the_heal_and_not_followed_by_a_start_counts() {
        let o = ObservationLog::default();
        let refused = || Observed::RefusedStart {
            reason: "bad epoch".into(),
        };
        o.observe(5, 0, refused());
        assert!(
            !o.refused_start_since(0, 10),
            "refused before the heal only"
        );
        o.observe(12, 0, refused());
        assert!(o.refused_start_since(0, 10));
        assert!(!o.refused_start_since(1, 10), "another server");
        o.observe(15, 0, loaded("startup", 3, 1));
        assert!(!o.refused_start_since(0, 10), "started after all");
    }
}
