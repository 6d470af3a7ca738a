//! The liveness phase's convergence check: every replica ends at one tree (same zxid, same
//! digest) at or after a final write.

use super::observations::{Observation, Observed};

/// A server's tree at the end of a run, as the convergence check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaTree {
    /// Running, with its tree at `zxid` with `digest` (its latest [`Observed::Digest`] or
    /// [`Observed::TreeLoaded`]).
    At {
        /// The tree's last applied zxid.
        zxid: i64,
        /// The tree's digest.
        digest: u64,
    },
    /// Running, but it never reported its tree.
    Unknown,
    /// Not running (it stopped by itself after the heal).
    Down,
    /// Not running because it refused to start on a disk the fault plan rotted at rest:
    /// fail-stop, as ZooKeeper does on a corrupt epoch file or log, and beyond what ZAB
    /// claims to survive (an operator must restore that server). Excused from the check.
    RefusedOnRottedDisk,
}

impl std::fmt::Display for ReplicaTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplicaTree::At { zxid, digest } => write!(f, "({zxid:#x}, {digest:016x})"),
            ReplicaTree::Unknown => f.write_str("(no tree reported)"),
            ReplicaTree::Down => f.write_str("(down)"),
            ReplicaTree::RefusedOnRottedDisk => {
                f.write_str("(refused to start on its rotted disk: excused)")
            }
        }
    }
}

/// Each of `servers` servers' latest tree (zxid, digest) in `obs`: the last
/// [`Observed::Digest`] (after a commit) or [`Observed::TreeLoaded`] it reported, in
/// observation order; `None` for a server that reported neither.
pub fn latest_trees(obs: &[Observation], servers: usize) -> Vec<Option<(i64, u64)>> {
    let mut out = vec![None; servers];
    for o in obs {
        if let (
            Observed::Digest { zxid, digest } | Observed::TreeLoaded { zxid, digest, .. },
            Some(slot),
        ) = (&o.what, out.get_mut(o.server))
        {
            *slot = Some((*zxid, *digest));
        }
    }
    out
}

/// The liveness phase's convergence check: every replica (participants and observers) is
/// running with its tree at the same zxid, with the same digest, and that zxid is at least
/// `floor` (the zxid of a write committed after the heal, so that every replica proves it
/// follows the current leader). Only [`ReplicaTree::RefusedOnRottedDisk`] is excused.
/// Returns that (zxid, digest), or a message listing every server's (zxid, digest).
pub fn convergence(trees: &[ReplicaTree], floor: i64) -> Result<(i64, u64), String> {
    let mut judged = trees
        .iter()
        .filter(|t| **t != ReplicaTree::RefusedOnRottedDisk);
    let agreed = match judged.next() {
        Some(&ReplicaTree::At { zxid, digest })
            if zxid >= floor && judged.all(|t| *t == ReplicaTree::At { zxid, digest }) =>
        {
            Some((zxid, digest))
        }
        _ => None,
    };
    agreed.ok_or_else(|| {
        let each: Vec<String> = trees
            .iter()
            .enumerate()
            .map(|(i, t)| format!("s{i} {t}"))
            .collect();
        format!(
            "replicas did not converge to one (zxid, digest) at or after zxid {floor:#x}: {}",
            each.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::judge::observations::tests::{loaded, obs};

    #[test]
    fn latest_trees_follow_commits_and_loads() {
        let o = vec![
            obs(1, 0, loaded("startup", 0, 5)),
            obs(
                2,
                0,
                Observed::Committed {
                    zxid: 1,
                    txn_hash: 1,
                },
            ),
            obs(2, 0, Observed::Digest { zxid: 1, digest: 6 }),
            obs(3, 1, Observed::Digest { zxid: 1, digest: 6 }),
            // A TRUNC reload may move a tree back: the latest report wins.
            obs(4, 1, loaded("trunc", 0, 5)),
            obs(5, 9, loaded("startup", 0, 5)),
        ];
        assert_eq!(latest_trees(&o, 3), vec![Some((1, 6)), Some((0, 5)), None]);
    }

    #[test]
    fn convergence_needs_every_replica_at_one_tree_at_or_after_the_floor() {
        let at = |zxid, digest| ReplicaTree::At { zxid, digest };
        assert_eq!(
            convergence(&[at(9, 1), at(9, 1), at(9, 1)], 8),
            Result::Ok((9, 1))
        );
        assert_eq!(convergence(&[at(9, 1), at(9, 1)], 9), Result::Ok((9, 1)));
        // One replica behind (it never applied the final write).
        let behind = convergence(&[at(9, 1), at(8, 4), at(9, 1)], 9).unwrap_err();
        assert!(behind.contains("s1 (0x8, 0000000000000004)"), "{behind}");
        assert!(behind.contains("s0 (0x9, 0000000000000001)"), "{behind}");
        // Same zxid, different trees.
        assert!(convergence(&[at(9, 1), at(9, 2)], 9).is_err());
        // Agreement, but on a tree from before the final write.
        let stale = convergence(&[at(7, 1), at(7, 1)], 9).unwrap_err();
        assert!(stale.contains("at or after zxid 0x9"), "{stale}");
        // A replica that is down or never reported cannot have converged.
        let down = convergence(&[at(9, 1), ReplicaTree::Down], 9).unwrap_err();
        assert!(down.contains("s1 (down)"), "{down}");
        assert!(convergence(&[ReplicaTree::Unknown, at(9, 1)], 9).is_err());
        // Only a server that refused to start on a rotted disk is excused, not all of them.
        let rotted = ReplicaTree::RefusedOnRottedDisk;
        assert_eq!(
            convergence(&[rotted, at(9, 1), at(9, 1)], 9),
            Result::Ok((9, 1))
        );
        let msg = convergence(&[rotted, at(9, 1), at(8, 1)], 9).unwrap_err();
        assert!(msg.contains("s0 (refused to start"), "{msg}");
        assert!(convergence(&[rotted, rotted], 0).is_err());
    }
}
