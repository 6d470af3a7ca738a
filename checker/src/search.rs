//! The Wing-Gong / Lowe linearizability search (as in Porcupine), with memoization of
//! (set of linearized operations, model state).
//!
//! Refinements, each of which keeps the search exact:
//! - operations that definitely did not take effect are removed before the search, and
//!   operations with an unknown outcome (`info`) have no return bound and need not be
//!   linearized at all;
//! - a read-only operation whose check passes in the current state is linearized at once
//!   without a choice point: moving it to the front of any valid continuation keeps that
//!   continuation valid, so no solution is lost;
//! - operations with an unknown outcome are tried after the ones that must be linearized.
//!
//! The set of linearized operations is kept as a 128-bit Zobrist hash (updated in O(1));
//! the memo stores that hash with the exact model state. Two different sets collide with
//! probability about n²/2¹²⁹ for n memo entries (below 10⁻²² for 10⁸ entries); a collision
//! could only prune an unexplored branch, and every reported violation is re-checked on its
//! minimal counterexample.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::Instant;

/// A sequential specification the search runs against.
pub trait SeqSpec {
    /// Model state; must be cheap to clone for good performance.
    type State: Clone + Eq + Hash;
    /// An operation of the model (input and observed output).
    type Op;
    /// The initial state.
    fn init(&mut self) -> Self::State;
    /// Applies `op` to `state`: the next state if the op's observed output is legal there.
    fn step(&mut self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;
    /// True if the op never changes the state (reads, cas that reported no match).
    fn read_only(&self, op: &Self::Op) -> bool;
    /// The op with its outcome made unknown (it may or may not take effect, with any
    /// output), or `None` if it then constrains nothing (a read). Used to build
    /// counterexamples: relaxing ops only adds linearizations.
    fn relax(&self, op: &Self::Op) -> Option<Self::Op>;
}

/// One operation handed to the search.
#[derive(Debug, Clone)]
pub struct SearchOp<O> {
    /// Caller's id (reported back in outcomes).
    pub id: usize,
    /// Real-time position of the invoke (event index).
    pub call: usize,
    /// Real-time position of the completion; `None` for an unknown outcome.
    pub ret: Option<usize>,
    /// The model operation.
    pub op: O,
}

/// Limits of one search.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Maximum memoized configurations before giving up with `Unknown`.
    pub max_configs: usize,
    /// Optional wall-clock deadline (makes verdicts depend on machine speed).
    pub deadline: Option<Instant>,
}

/// The result of one search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A linearization exists.
    Linearizable,
    /// No linearization exists; `stuck` is the id of the op whose completion could never be
    /// passed at the deepest point the search reached.
    NotLinearizable {
        /// Caller id of the blocking op.
        stuck: usize,
    },
    /// The budget ran out.
    Unknown {
        /// Which limit.
        reason: String,
    },
}

/// Statistics of a search.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    /// Memoized configurations.
    pub configs: usize,
}

const NIL: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Entry {
    op: u32,
    is_call: bool,
}

/// A hasher for keys that are already well mixed (Zobrist hashes).
#[derive(Default)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(b));
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0 ^ i).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
    fn write_u32(&mut self, i: u32) {
        self.write_u64(i as u64)
    }
    fn write_u128(&mut self, i: u128) {
        self.write_u64(i as u64 ^ (i >> 64) as u64)
    }
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64)
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn zobrist(i: usize) -> u128 {
    let a = splitmix(i as u64 * 2 + 1);
    let b = splitmix(a ^ 0xD1B5_4A32_D192_ED03);
    ((a as u128) << 64) | b as u128
}

struct Frame<S> {
    op: u32,
    prev: S,
    pass: u8,
    forced: bool,
}

/// Runs the search. `ops` may be in any order.
pub fn check<M: SeqSpec>(
    spec: &mut M,
    ops: &[SearchOp<M::Op>],
    budget: Budget,
    stats: &mut Stats,
) -> Outcome {
    let n = ops.len();
    if n == 0 {
        return Outcome::Linearizable;
    }
    // Entries sorted by real-time position: calls and returns.
    let mut entries: Vec<(usize, Entry)> = Vec::with_capacity(2 * n);
    for (i, o) in ops.iter().enumerate() {
        entries.push((o.call, Entry { op: i as u32, is_call: true }));
        if let Some(r) = o.ret {
            entries.push((r, Entry { op: i as u32, is_call: false }));
        }
    }
    entries.sort_by_key(|e| (e.0, !e.1.is_call));
    let entries: Vec<Entry> = entries.into_iter().map(|e| e.1).collect();
    let m = entries.len();
    // Doubly linked list over entries; index m is the head sentinel.
    let head = m as u32;
    let mut next = vec![NIL; m + 1];
    let mut prev = vec![NIL; m + 1];
    let mut call_of = vec![0u32; n];
    let mut ret_of = vec![NIL; n];
    let mut last = head;
    for (i, e) in entries.iter().enumerate() {
        next[last as usize] = i as u32;
        prev[i] = last;
        last = i as u32;
        if e.is_call {
            call_of[e.op as usize] = i as u32;
        } else {
            ret_of[e.op as usize] = i as u32;
        }
    }
    let must: Vec<bool> = ops.iter().map(|o| o.ret.is_some()).collect();
    let ro: Vec<bool> = ops.iter().map(|o| spec.read_only(&o.op)).collect();
    let keys: Vec<u128> = ops.iter().map(|o| zobrist(o.id)).collect();
    let mut remaining = must.iter().filter(|&&b| b).count();

    let mut memo: HashSet<(u128, M::State), BuildHasherDefault<MixHasher>> = HashSet::default();
    let mut stack: Vec<Frame<M::State>> = Vec::new();
    let mut state = spec.init();
    let mut lin: u128 = 0;
    let mut best_depth = 0usize;
    let mut stuck = usize::MAX;
    let mut steps: u64 = 0;

    macro_rules! lift {
        ($o:expr) => {{
            let c = call_of[$o] as usize;
            next[prev[c] as usize] = next[c];
            if next[c] != NIL {
                prev[next[c] as usize] = prev[c];
            }
            let r = ret_of[$o];
            if r != NIL {
                let r = r as usize;
                next[prev[r] as usize] = next[r];
                if next[r] != NIL {
                    prev[next[r] as usize] = prev[r];
                }
            }
        }};
    }
    macro_rules! unlift {
        ($o:expr) => {{
            let r = ret_of[$o];
            if r != NIL {
                let r = r as usize;
                next[prev[r] as usize] = r as u32;
                if next[r] != NIL {
                    prev[next[r] as usize] = r as u32;
                }
            }
            let c = call_of[$o] as usize;
            next[prev[c] as usize] = c as u32;
            if next[c] != NIL {
                prev[next[c] as usize] = c as u32;
            }
        }};
    }

    // `cursor` is the next entry to consider in `pass` (1 = must ops, 2 = unknown ops);
    // `arrived` means a new configuration was just entered (run the forced pass first).
    let mut arrived = true;
    let mut pass: u8 = 1;
    let mut cursor: u32 = next[head as usize];
    loop {
        if remaining == 0 {
            stats.configs = memo.len();
            return Outcome::Linearizable;
        }
        steps += 1;
        if steps & 0xFFFF == 0 {
            if let Some(d) = budget.deadline {
                if Instant::now() >= d {
                    stats.configs = memo.len();
                    return Outcome::Unknown { reason: "time limit reached".into() };
                }
            }
        }
        if memo.len() > budget.max_configs {
            stats.configs = memo.len();
            return Outcome::Unknown {
                reason: format!("configuration limit of {} reached", budget.max_configs),
            };
        }
        if arrived {
            arrived = false;
            // Track the deepest point for the counterexample.
            let depth = stack.len();
            if depth >= best_depth || stuck == usize::MAX {
                best_depth = depth;
                let mut e = next[head as usize];
                while e != NIL && entries[e as usize].is_call {
                    e = next[e as usize];
                }
                if e != NIL {
                    stuck = ops[entries[e as usize].op as usize].id;
                }
            }
            // Forced pass: satisfied read-only ops are linearized without a choice point.
            let mut e = next[head as usize];
            let mut forced = None;
            while e != NIL && entries[e as usize].is_call {
                let o = entries[e as usize].op as usize;
                if ro[o] {
                    if let Some(ns) = spec.step(&state, &ops[o].op) {
                        forced = Some((o, ns));
                        break;
                    }
                }
                e = next[e as usize];
            }
            if let Some((o, ns)) = forced {
                let nl = lin ^ keys[o];
                if memo.insert((nl, ns.clone())) {
                    let old = std::mem::replace(&mut state, ns);
                    stack.push(Frame { op: o as u32, prev: old, pass: 1, forced: true });
                    lin = nl;
                    if must[o] {
                        remaining -= 1;
                    }
                    lift!(o);
                    arrived = true;
                    continue;
                }
                // Already explored and failed: this configuration fails too.
                cursor = NIL;
                pass = 2;
            } else {
                cursor = next[head as usize];
                pass = 1;
            }
        }
        // Scan for the next candidate of this pass.
        let mut chosen = None;
        while cursor != NIL && entries[cursor as usize].is_call {
            let o = entries[cursor as usize].op as usize;
            let here = cursor;
            cursor = next[cursor as usize];
            let wanted = if pass == 1 { must[o] && !ro[o] } else { !must[o] };
            if !wanted {
                continue;
            }
            if let Some(ns) = spec.step(&state, &ops[o].op) {
                let nl = lin ^ keys[o];
                if memo.insert((nl, ns.clone())) {
                    chosen = Some((o, ns, nl));
                    let _ = here;
                    break;
                }
            }
        }
        if let Some((o, ns, nl)) = chosen {
            let old = std::mem::replace(&mut state, ns);
            stack.push(Frame { op: o as u32, prev: old, pass, forced: false });
            lin = nl;
            if must[o] {
                remaining -= 1;
            }
            lift!(o);
            arrived = true;
            continue;
        }
        if pass == 1 {
            pass = 2;
            cursor = next[head as usize];
            continue;
        }
        // Dead end: backtrack to the last real choice point.
        loop {
            let Some(f) = stack.pop() else {
                stats.configs = memo.len();
                return Outcome::NotLinearizable { stuck };
            };
            let o = f.op as usize;
            unlift!(o);
            state = f.prev;
            lin ^= keys[o];
            if must[o] {
                remaining += 1;
            }
            if !f.forced {
                pass = f.pass;
                cursor = next[call_of[o] as usize];
                break;
            }
        }
    }
}
