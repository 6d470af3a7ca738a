//! Minimal counterexamples.
//!
//! A counterexample is a set S of operations such that the history in which every operation
//! outside S is *relaxed* (its outcome made unknown: reads dropped, writes allowed to take
//! effect at any time after their invoke, or never) is still not linearizable. Relaxing only
//! adds linearizations, so such an S proves the original history is not linearizable, and S
//! alone is what a person must look at. We first cut the history to the shortest failing
//! prefix, then remove chunks of operations (halving the chunk size down to one), keeping a
//! removal whenever the rest still fails. The result is 1-minimal: relaxing any single
//! further operation makes it linearizable.

use crate::search::{check, Budget, Outcome, SearchOp, SeqSpec, Stats};

/// Limits for minimization.
#[derive(Debug, Clone, Copy)]
pub struct MinimizeLimits {
    /// Skip chunk removal for failing prefixes with more operations than this.
    pub max_ops: usize,
    /// Configurations allowed per trial search (an exhausted trial keeps the chunk).
    pub trial_configs: usize,
    /// Configurations allowed over all trials; past it the current (valid, possibly not
    /// minimal) counterexample is returned.
    pub total_configs: usize,
    /// Wall-clock deadline of the whole check, if any.
    pub deadline: Option<std::time::Instant>,
}

/// Cuts `ops` to the prefix of real time ending at position `cut`: later ops are dropped and
/// ops still pending at `cut` get an unknown outcome.
pub fn prefix<M: SeqSpec>(spec: &M, ops: &[SearchOp<M::Op>], cut: usize) -> Vec<SearchOp<M::Op>>
where
    M::Op: Clone,
{
    ops.iter()
        .filter(|o| o.call <= cut)
        .filter_map(|o| match o.ret {
            Some(r) if r <= cut => Some(o.clone()),
            _ if o.ret.is_none() => Some(o.clone()),
            _ => spec.relax(&o.op).map(|op| SearchOp {
                id: o.id,
                call: o.call,
                ret: None,
                op,
            }),
        })
        .collect()
}

fn relaxed_except<M: SeqSpec>(
    spec: &M,
    ops: &[SearchOp<M::Op>],
    keep: &[bool],
) -> Vec<SearchOp<M::Op>>
where
    M::Op: Clone,
{
    ops.iter()
        .zip(keep)
        .filter_map(|(o, &k)| {
            if k || o.ret.is_none() {
                Some(o.clone())
            } else {
                spec.relax(&o.op).map(|op| SearchOp {
                    id: o.id,
                    call: o.call,
                    ret: None,
                    op,
                })
            }
        })
        .collect()
}

/// Returns the op ids of a 1-minimal counterexample within `ops` (which must not be
/// linearizable), or `None` if `ops` is too large to minimize or the deadline has passed.
/// A deadline that passes during minimization leaves a valid, possibly not minimal, set.
pub fn minimize<M: SeqSpec + Clone>(
    spec: &M,
    ops: &[SearchOp<M::Op>],
    limits: MinimizeLimits,
) -> Option<Vec<usize>>
where
    M::Op: Clone,
{
    // Only ops with a known outcome can be relaxed; unknown ones stay as they are.
    let n = ops.len();
    let late = limits
        .deadline
        .is_some_and(|d| std::time::Instant::now() >= d);
    if n > limits.max_ops || late {
        return None;
    }
    // Configurations spent over all trials: past `total_configs` (or the deadline) no
    // further trial runs, and every chunk not yet removed stays.
    let mut spent = 0usize;
    let mut fails = |keep: &[bool]| {
        let left = limits.total_configs.saturating_sub(spent);
        if left == 0
            || limits
                .deadline
                .is_some_and(|d| std::time::Instant::now() >= d)
        {
            return false;
        }
        let trial = relaxed_except(spec, ops, keep);
        let mut s = spec.clone();
        let mut st = Stats::default();
        let out = check(
            &mut s,
            &trial,
            Budget {
                max_configs: limits.trial_configs.min(left),
                deadline: limits.deadline,
            },
            &mut st,
        );
        spent += st.configs.max(1);
        matches!(out, Outcome::NotLinearizable { .. })
    };
    let mut keep: Vec<bool> = ops.iter().map(|o| o.ret.is_some()).collect();
    let candidates: Vec<usize> = (0..n).filter(|&i| keep[i]).collect();
    let mut chunk = candidates.len().div_ceil(2).max(1);
    loop {
        let live: Vec<usize> = candidates.iter().copied().filter(|&i| keep[i]).collect();
        for c in live.chunks(chunk) {
            for &i in c {
                keep[i] = false;
            }
            if !fails(&keep) {
                for &i in c {
                    keep[i] = true;
                }
            }
        }
        if chunk == 1 {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    let mut ids: Vec<usize> = (0..n).filter(|&i| keep[i]).map(|i| ops[i].id).collect();
    ids.sort_unstable();
    Some(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::{Interner, RegOp, RegisterSpec};

    fn op(id: usize, call: usize, ret: usize, op: RegOp) -> SearchOp<RegOp> {
        SearchOp {
            id,
            call,
            ret: Some(ret),
            op,
        }
    }

    /// w1; w2; r->1 (stale), behind `noise` sequential reads of the initial value.
    fn stale_read_behind(noise: usize) -> (RegisterSpec, Vec<SearchOp<RegOp>>) {
        let mut interner = Interner::new();
        let (one, two) = (
            interner.intern(&serde_json::json!(1)),
            interner.intern(&serde_json::json!(2)),
        );
        let mut ops: Vec<SearchOp<RegOp>> = (0..noise)
            .map(|i| op(i, 2 * i, 2 * i + 1, RegOp::Read(0)))
            .collect();
        let t = 2 * noise;
        ops.push(op(noise, t, t + 1, RegOp::Write(one)));
        ops.push(op(noise + 1, t + 2, t + 3, RegOp::Write(two)));
        ops.push(op(noise + 2, t + 4, t + 5, RegOp::Read(one)));
        (RegisterSpec { interner }, ops)
    }

    fn limits(total_configs: usize) -> MinimizeLimits {
        MinimizeLimits {
            max_ops: 1_000,
            trial_configs: 20_000,
            total_configs,
            deadline: None,
        }
    }

    #[test]
    fn minimizes_to_the_ops_that_cannot_be_linearized() {
        let (spec, ops) = stale_read_behind(20);
        let ids = minimize(&spec, &ops, limits(1_000_000)).expect("small enough");
        assert_eq!(ids, vec![20, 21, 22], "w1, w2 and the stale read");
    }

    /// The total budget bounds the work: once spent, no chunk is removed any more, and
    /// what is returned is still a valid (if not minimal) counterexample.
    #[test]
    fn the_total_budget_stops_minimization_early() {
        let (spec, ops) = stale_read_behind(20);
        let all: Vec<usize> = (0..ops.len()).collect();
        assert_eq!(minimize(&spec, &ops, limits(0)), Some(all.clone()));
        // One configuration: the first trial runs out of it and keeps its chunk; no
        // further trial runs.
        assert_eq!(minimize(&spec, &ops, limits(1)), Some(all));
        // The same history with budget to spare is minimized.
        assert_eq!(
            minimize(&spec, &ops, limits(1_000_000)).map(|v| v.len()),
            Some(3)
        );
    }
}
