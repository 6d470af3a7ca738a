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
/// linearizable), or `None` if `ops` is too large to minimize.
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
    if n > limits.max_ops {
        return None;
    }
    let fails = |keep: &[bool]| {
        let trial = relaxed_except(spec, ops, keep);
        let mut s = spec.clone();
        let mut st = Stats::default();
        matches!(
            check(
                &mut s,
                &trial,
                Budget {
                    max_configs: limits.trial_configs,
                    deadline: None
                },
                &mut st
            ),
            Outcome::NotLinearizable { .. }
        )
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
