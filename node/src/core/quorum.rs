//! Quorum membership: a majority of the voting members. Observers (and any
//! other non-voter) never count towards a quorum.

use std::collections::BTreeSet;

use crate::proto::peer::Sid;

/// ZooKeeper's `QuorumMaj`: decides whether a set of servers is a quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumVerifier {
    voters: BTreeSet<Sid>,
}

impl QuorumVerifier {
    /// A majority verifier over `voters`.
    pub fn new(voters: BTreeSet<Sid>) -> QuorumVerifier {
        QuorumVerifier { voters }
    }

    /// The voting members.
    pub fn voters(&self) -> &BTreeSet<Sid> {
        &self.voters
    }

    /// True if `sid` is a voting member.
    pub fn is_voter(&self, sid: Sid) -> bool {
        self.voters.contains(&sid)
    }

    /// The smallest number of voters that forms a quorum.
    pub fn quorum_size(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// True if the voters among `ackers` form a strict majority of all
    /// voters. Non-voters and duplicates are ignored.
    pub fn contains_quorum<'a>(&self, ackers: impl IntoIterator<Item = &'a Sid>) -> bool {
        let counted: BTreeSet<Sid> = ackers
            .into_iter()
            .copied()
            .filter(|s| self.voters.contains(s))
            .collect();
        !self.voters.is_empty() && counted.len() >= self.quorum_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qv(v: &[Sid]) -> QuorumVerifier {
        QuorumVerifier::new(v.iter().copied().collect())
    }

    #[test]
    fn majority_of_voters() {
        let q = qv(&[1, 2, 3]);
        assert_eq!(q.quorum_size(), 2);
        assert!(!q.contains_quorum(&[1]));
        assert!(q.contains_quorum(&[1, 3]));
        assert!(q.contains_quorum(&[1, 2, 3]));
        let q4 = qv(&[1, 2, 3, 4]);
        assert!(
            !q4.contains_quorum(&[1, 2]),
            "half of an even ensemble is not a quorum"
        );
        assert!(q4.contains_quorum(&[1, 2, 4]));
    }

    #[test]
    fn observers_and_duplicates_never_count() {
        let q = qv(&[1, 2, 3]);
        assert!(!q.contains_quorum(&[1, 4, 5, 6]), "4, 5, 6 are not voters");
        assert!(!q.contains_quorum(&[2, 2, 2]));
        assert!(!q.is_voter(4));
    }

    #[test]
    fn single_voter_is_its_own_quorum_and_empty_never_is() {
        assert!(qv(&[7]).contains_quorum(&[7]));
        assert!(!qv(&[]).contains_quorum(&[1]));
    }
}
