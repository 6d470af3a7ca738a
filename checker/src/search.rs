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
//! - operations with an unknown outcome are kept apart and tried after the ones that must
//!   be linearized; an unknown-outcome op is only tried when a candidate that must be
//!   linearized can directly follow it (or a short run of such ops) and depends on it. Any
//!   linearization can be put in that form: an unknown-outcome op has no return bound, so it
//!   can be moved later past read-only ops that pass without it, and dropped when a blind
//!   write (next state independent of the current one) follows it or nothing does. Of
//!   several unknown blind writes with the same result only one is tried (they are
//!   interchangeable), and no op that leaves the state unchanged;
//! - configurations entered by a forced move are not memoized (the next choice point is);
//! - growth pruning: a read that must still be linearized can only be satisfied if the
//!   value it read grows (by appends) from the current state or from the value of an
//!   unlinearized write or cas that may come before it (invoked before the read returned).
//!   A configuration where no such start exists is a dead end. This is what decides append
//!   histories with many concurrent clients: the order of concurrent appends is fixed by
//!   the next read instead of being enumerated.
//!
//! The set of linearized operations is kept as a 128-bit Zobrist hash (updated in O(1));
//! the memo stores that hash with the exact model state. Two different sets collide with
//! probability about n²/2¹²⁹ for n memo entries (below 10⁻²² for 10⁸ entries); a collision
//! could only prune an unexplored branch, and every reported violation is re-checked on its
//! minimal counterexample.

use std::collections::{BTreeSet, HashMap, HashSet};
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
    /// If the op is a blind write (its next state does not depend on the current state),
    /// that next state. Lets the search delay such ops when their outcome is unknown.
    fn blind(&self, _op: &Self::Op) -> Option<Self::State> {
        None
    }
    /// If the op applies in exactly one state, that state (a read of a value, a cas's
    /// expected value). Lets the search find the unknown writes that can enable it.
    fn wanted(&self, _op: &Self::Op) -> Option<Self::State> {
        None
    }
    /// Whether the op may replace the state by one that does not grow from it (a blind
    /// write, a cas), and with what. The default, [`Reset::Any`] for every op that is not
    /// read-only, turns growth pruning off.
    fn resets(&self, op: &Self::Op) -> Reset<Self::State> {
        if self.read_only(op) {
            Reset::No
        } else {
            Reset::Any
        }
    }
    /// Whether ops that do not reset (see [`SeqSpec::resets`]) can take the state from
    /// `from` to `to`: for appends, `from` must be a prefix of `to`. `true` when unsure.
    fn grows_to(&self, _from: &Self::State, _to: &Self::State) -> bool {
        true
    }
}

/// How an op may change the state, for growth pruning (see [`SeqSpec::resets`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reset<S> {
    /// It keeps the state or grows it (a read, an append).
    No,
    /// It may set the state to this value (a blind write, a cas's new value).
    To(S),
    /// It may set the state to anything.
    Any,
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

/// The reason of an [`Outcome::Unknown`] that ran out of wall-clock time.
pub const TIME_LIMIT: &str = "time limit reached";

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
        self.0 = (self.0 ^ i)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
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

/// Whether a run of unknown-outcome ops (`chain`, started from state `s`, now in state `v`)
/// can be directly followed by a must candidate that depends on it: a read-only op that
/// passes now (and, for a run of one, failed before it), or a state-dependent op that
/// applies. Runs are extended through other state-dependent unknown ops up to `depth` more
/// steps, past which the answer is a conservative yes. See the module docs for why only such
/// runs need to be explored.
#[allow(clippy::too_many_arguments)]
fn useful<M: SeqSpec>(
    spec: &mut M,
    ops: &[SearchOp<M::Op>],
    ro: &[bool],
    blind: &[Option<M::State>],
    s: &M::State,
    v: &M::State,
    window: &[usize],
    cands: &[usize],
    chain: &mut Vec<usize>,
    depth: u32,
) -> bool {
    for &y in window {
        if ro[y] {
            if spec.step(v, &ops[y].op).is_some()
                && (chain.len() > 1 || spec.step(s, &ops[y].op).is_none())
            {
                return true;
            }
        } else if blind[y].is_none() && spec.step(v, &ops[y].op).is_some() {
            return true;
        }
    }
    for &x in cands {
        if ro[x] || blind[x].is_some() || chain.contains(&x) {
            continue;
        }
        let Some(v2) = spec.step(v, &ops[x].op) else {
            continue;
        };
        if depth == 0 {
            return true;
        }
        chain.push(x);
        let u = useful(
            spec,
            ops,
            ro,
            blind,
            s,
            &v2,
            window,
            cands,
            chain,
            depth - 1,
        );
        chain.pop();
        if u {
            return true;
        }
    }
    false
}

/// True if `o` is the first invoked, unlinearized unknown blind write with result `v`
/// (equal ones are interchangeable, so only the first is tried).
fn blind_first<S: Eq + Hash, O>(
    index: &HashMap<S, Vec<usize>>,
    lifted: &[bool],
    ops: &[SearchOp<O>],
    v: &S,
    limit: usize,
    o: usize,
) -> bool {
    index.get(v).and_then(|l| {
        l.iter()
            .take_while(|&&x| ops[x].call < limit)
            .find(|&&x| !lifted[x])
            .copied()
    }) == Some(o)
}

/// How many entries past the head growth pruning looks at for reads to satisfy.
const GROWTH_SCAN: usize = 64;

/// Growth pruning: the first unlinearized read (within [`GROWTH_SCAN`] entries of the head)
/// whose value grows neither from the current state nor from the value of any unlinearized
/// resetting op invoked before the read returned. Such a configuration has no valid
/// continuation: only those ops can come before the read, and between resets the state
/// only grows.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn ungrowable<M: SeqSpec>(
    spec: &M,
    ops: &[SearchOp<M::Op>],
    entries: &[Entry],
    next: &[u32],
    head: u32,
    wants: &[Option<M::State>],
    must: &[bool],
    resets: &[Reset<M::State>],
    resetters: &BTreeSet<(usize, usize)>,
    state: &M::State,
) -> Option<usize> {
    let mut e = next[head as usize];
    let mut seen = 0;
    while e != NIL && seen < GROWTH_SCAN {
        seen += 1;
        let entry = entries[e as usize];
        let o = entry.op as usize;
        e = next[e as usize];
        if !entry.is_call || !must[o] {
            continue;
        }
        let (Some(w), Some(ret)) = (&wants[o], ops[o].ret) else {
            continue;
        };
        if spec.grows_to(state, w) {
            continue;
        }
        let rescued = resetters.range(..(ret, 0)).any(|&(_, x)| match &resets[x] {
            Reset::No => false,
            Reset::To(v) => spec.grows_to(v, w),
            Reset::Any => true,
        });
        if !rescued {
            return Some(o);
        }
    }
    None
}

enum FrameKind {
    Forced,
    Must(Vec<u32>),
    Info(Vec<u32>),
}

struct Frame<S> {
    op: u32,
    prev: S,
    kind: FrameKind,
}

enum Mode {
    Arrive,
    Pass1(Vec<u32>),
    Pass2(Vec<u32>),
}

/// Runs the search. `ops` may be in any order.
pub fn check<M: SeqSpec>(
    spec: &mut M,
    ops: &[SearchOp<M::Op>],
    budget: Budget,
    stats: &mut Stats,
) -> Outcome {
    let n = ops.len();
    let must: Vec<bool> = ops.iter().map(|o| o.ret.is_some()).collect();
    let mut remaining = must.iter().filter(|&&b| b).count();
    if remaining == 0 {
        return Outcome::Linearizable;
    }
    // Main list: calls and returns of ops with a known outcome, in real-time order.
    let mut entries: Vec<(usize, Entry)> = Vec::with_capacity(2 * n);
    // Info list: ops with an unknown outcome, by call position.
    let mut infos: Vec<u32> = Vec::new();
    for (i, o) in ops.iter().enumerate() {
        if let Some(r) = o.ret {
            entries.push((
                o.call,
                Entry {
                    op: i as u32,
                    is_call: true,
                },
            ));
            entries.push((
                r,
                Entry {
                    op: i as u32,
                    is_call: false,
                },
            ));
        } else {
            infos.push(i as u32);
        }
    }
    entries.sort_by_key(|e| (e.0, !e.1.is_call));
    infos.sort_by_key(|&i| ops[i as usize].call);
    let pos: Vec<usize> = entries.iter().map(|e| e.0).collect();
    let entries: Vec<Entry> = entries.into_iter().map(|e| e.1).collect();
    let m = entries.len();
    let head = m as u32;
    let mut next = vec![NIL; m + 1];
    let mut prev = vec![NIL; m + 1];
    let mut call_of = vec![NIL; n];
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
    let ro: Vec<bool> = ops.iter().map(|o| spec.read_only(&o.op)).collect();
    let blind: Vec<Option<M::State>> = ops.iter().map(|o| spec.blind(&o.op)).collect();
    // Two info lists linked by op index: `ih` (index n) heads the state-dependent ops,
    // `bh` (index n + 1) the blind writes, which are mostly found through an index.
    let ih = n as u32;
    let bh = n as u32 + 1;
    let mut inext = vec![NIL; n + 2];
    let mut iprev = vec![NIL; n + 2];
    let (mut il, mut bl) = (ih, bh);
    for &o in &infos {
        let tail = if blind[o as usize].is_some() {
            &mut bl
        } else {
            &mut il
        };
        inext[*tail as usize] = o;
        iprev[o as usize] = *tail;
        *tail = o;
    }
    let keys: Vec<u128> = ops.iter().map(|o| zobrist(o.id)).collect();
    // Unknown blind writes by resulting state, in call order (lookups only).
    let mut blind_by_state: HashMap<M::State, Vec<usize>> = HashMap::new();
    for &o in &infos {
        if let Some(v) = &blind[o as usize] {
            blind_by_state
                .entry(v.clone())
                .or_default()
                .push(o as usize);
        }
    }
    let mut lifted = vec![false; n];
    // Growth pruning (see the module docs): what each read needs, and the call positions of
    // the unlinearized ops that may reset the state.
    let resets: Vec<Reset<M::State>> = ops.iter().map(|o| spec.resets(&o.op)).collect();
    let wants: Vec<Option<M::State>> = ops
        .iter()
        .zip(&ro)
        .map(|(o, &r)| if r { spec.wanted(&o.op) } else { None })
        .collect();
    // Only parts with ops that grow the state (appends) are pruned this way: elsewhere
    // the scan would cost more than it saves.
    let growth = (0..n).any(|o| !ro[o] && resets[o] == Reset::No);
    let mut resetters: BTreeSet<(usize, usize)> = (0..n)
        .filter(|&o| growth && resets[o] != Reset::No)
        .map(|o| (ops[o].call, o))
        .collect();

    let mut memo: HashSet<(u128, M::State), BuildHasherDefault<MixHasher>> = HashSet::default();
    let mut stack: Vec<Frame<M::State>> = Vec::new();
    let mut state = spec.init();
    let mut lin: u128 = 0;
    let mut best_depth = 0usize;
    let mut stuck = usize::MAX;
    let mut steps: u64 = 0;

    let lift =
        |o: usize, next: &mut [u32], prev: &mut [u32], inext: &mut [u32], iprev: &mut [u32]| {
            let c = call_of[o];
            if c == NIL {
                let (p, q) = (iprev[o], inext[o]);
                inext[p as usize] = q;
                if q != NIL {
                    iprev[q as usize] = p;
                }
                return;
            }
            for e in [c, ret_of[o]] {
                let e = e as usize;
                next[prev[e] as usize] = next[e];
                if next[e] != NIL {
                    prev[next[e] as usize] = prev[e];
                }
            }
        };
    let unlift =
        |o: usize, next: &mut [u32], prev: &mut [u32], inext: &mut [u32], iprev: &mut [u32]| {
            let c = call_of[o];
            if c == NIL {
                let (p, q) = (iprev[o], inext[o]);
                inext[p as usize] = o as u32;
                if q != NIL {
                    iprev[q as usize] = o as u32;
                }
                return;
            }
            for e in [ret_of[o], c] {
                let e = e as usize;
                next[prev[e] as usize] = e as u32;
                if next[e] != NIL {
                    prev[next[e] as usize] = e as u32;
                }
            }
        };

    let mut mode = Mode::Arrive;
    loop {
        if remaining == 0 {
            stats.configs = memo.len();
            return Outcome::Linearizable;
        }
        steps += 1;
        if steps & 0x3FF == 0 {
            if let Some(d) = budget.deadline {
                if Instant::now() >= d {
                    stats.configs = memo.len();
                    return Outcome::Unknown {
                        reason: TIME_LIMIT.into(),
                    };
                }
            }
        }
        if memo.len() > budget.max_configs {
            stats.configs = memo.len();
            return Outcome::Unknown {
                reason: format!("configuration limit of {} reached", budget.max_configs),
            };
        }
        let mut chosen: Option<(usize, M::State, FrameKind)> = None;
        match std::mem::replace(&mut mode, Mode::Arrive) {
            Mode::Arrive => {
                let depth = stack.len();
                if let Some(r) = growth
                    .then(|| {
                        ungrowable(
                            spec, ops, &entries, &next, head, &wants, &must, &resets, &resetters,
                            &state,
                        )
                    })
                    .flatten()
                {
                    if depth >= best_depth || stuck == usize::MAX {
                        best_depth = depth;
                        stuck = ops[r].id;
                    }
                    mode = Mode::Pass2(Vec::new()); // a dead end: backtrack
                    continue;
                }
                let mut e = next[head as usize];
                let mut forced = None;
                while e != NIL && entries[e as usize].is_call {
                    let o = entries[e as usize].op as usize;
                    if ro[o] && forced.is_none() {
                        if let Some(ns) = spec.step(&state, &ops[o].op) {
                            forced = Some((o, ns));
                        }
                    }
                    e = next[e as usize];
                }
                if depth >= best_depth || stuck == usize::MAX {
                    best_depth = depth;
                    if e != NIL {
                        stuck = ops[entries[e as usize].op as usize].id;
                    }
                }
                if let Some((o, ns)) = forced {
                    chosen = Some((o, ns, FrameKind::Forced));
                } else {
                    // Candidates that must be linearized, in a good order: those whose
                    // result a waiting read needs, then by earliest completion.
                    let mut window = Vec::new();
                    let mut e = next[head as usize];
                    while e != NIL && entries[e as usize].is_call {
                        window.push(entries[e as usize].op as usize);
                        e = next[e as usize];
                    }
                    let mut list: Vec<(bool, usize, u32)> = Vec::new();
                    for &o in &window {
                        if ro[o] {
                            continue;
                        }
                        let needed = match &blind[o] {
                            Some(v) => window
                                .iter()
                                .any(|&x| ro[x] && spec.step(v, &ops[x].op).is_some()),
                            None => false,
                        };
                        list.push((!needed, ops[o].ret.unwrap_or(usize::MAX), o as u32));
                    }
                    list.sort_unstable_by(|a, b| b.cmp(a)); // popped from the back
                    mode = Mode::Pass1(list.into_iter().map(|t| t.2).collect());
                    continue;
                }
            }
            Mode::Pass1(mut list) => {
                while let Some(o) = list.pop() {
                    let o = o as usize;
                    if let Some(ns) = spec.step(&state, &ops[o].op) {
                        if memo.insert((lin ^ keys[o], ns.clone())) {
                            chosen = Some((o, ns, FrameKind::Must(list)));
                            break;
                        }
                    }
                }
                if chosen.is_none() {
                    // Build the list of unknown-outcome candidates worth trying here.
                    let mut window = Vec::new();
                    let mut e = next[head as usize];
                    while e != NIL && entries[e as usize].is_call {
                        window.push(entries[e as usize].op as usize);
                        e = next[e as usize];
                    }
                    let limit = if e == NIL {
                        usize::MAX
                    } else {
                        pos[e as usize]
                    };
                    let walk = |head: u32| {
                        let mut v: Vec<usize> = Vec::new();
                        let mut i = inext[head as usize];
                        while i != NIL && ops[i as usize].call < limit {
                            v.push(i as usize);
                            i = inext[i as usize];
                        }
                        v
                    };
                    let cands = walk(ih);
                    // Unknown blind writes matter only if their value is the state some
                    // dependent op needs: a waiting read-only op, a state-dependent op of
                    // the window, or a state-dependent unknown op that may follow them.
                    let mut targets: Vec<M::State> = Vec::new();
                    let mut any_target = false;
                    for &y in window.iter().chain(cands.iter()) {
                        if blind[y].is_some() || (!must[y] && ro[y]) {
                            continue;
                        }
                        match spec.wanted(&ops[y].op) {
                            Some(w) => targets.push(w),
                            None => any_target = true,
                        }
                    }
                    let mut list = Vec::new();
                    let mut chain = Vec::new();
                    // Blind writes are found through the index below, unless some dependent
                    // op accepts more than one state.
                    let blinds = if any_target { walk(bh) } else { Vec::new() };
                    for &o in cands.iter().chain(blinds.iter()) {
                        let Some(v) = spec.step(&state, &ops[o].op) else {
                            continue;
                        };
                        if v == state {
                            continue;
                        }
                        // Handled through the index, or an equal earlier write is tried.
                        if blind[o].is_some()
                            && (targets.contains(&v)
                                || !blind_first(&blind_by_state, &lifted, ops, &v, limit, o))
                        {
                            continue;
                        }
                        chain.clear();
                        chain.push(o);
                        if useful(
                            spec, ops, &ro, &blind, &state, &v, &window, &cands, &mut chain, 2,
                        ) {
                            list.push(o as u32);
                        }
                    }
                    targets.sort_unstable_by_key(|t| {
                        blind_by_state
                            .get(t)
                            .and_then(|v| v.first().copied())
                            .unwrap_or(usize::MAX)
                    });
                    targets.dedup();
                    for w in &targets {
                        if *w == state {
                            continue;
                        }
                        if let Some(list_w) = blind_by_state.get(w) {
                            if let Some(&o) = list_w
                                .iter()
                                .take_while(|&&o| ops[o].call < limit)
                                .find(|&&o| !lifted[o])
                            {
                                list.push(o as u32);
                            }
                        }
                    }
                    list.reverse(); // popped from the back: earliest first
                    mode = Mode::Pass2(list);
                    continue;
                }
            }
            Mode::Pass2(mut list) => {
                while let Some(o) = list.pop() {
                    let o = o as usize;
                    if let Some(ns) = spec.step(&state, &ops[o].op) {
                        if memo.insert((lin ^ keys[o], ns.clone())) {
                            chosen = Some((o, ns, FrameKind::Info(list)));
                            break;
                        }
                    }
                }
                if chosen.is_none() {
                    // Dead end: backtrack to the last choice point with options left.
                    loop {
                        let Some(f) = stack.pop() else {
                            stats.configs = memo.len();
                            return Outcome::NotLinearizable { stuck };
                        };
                        let o = f.op as usize;
                        unlift(o, &mut next, &mut prev, &mut inext, &mut iprev);
                        lifted[o] = false;
                        if growth && resets[o] != Reset::No {
                            resetters.insert((ops[o].call, o));
                        }
                        state = f.prev;
                        lin ^= keys[o];
                        if must[o] {
                            remaining += 1;
                        }
                        match f.kind {
                            FrameKind::Forced => continue,
                            FrameKind::Must(rest) => mode = Mode::Pass1(rest),
                            FrameKind::Info(rest) => mode = Mode::Pass2(rest),
                        }
                        break;
                    }
                    continue;
                }
            }
        }
        let (o, ns, kind) = chosen.expect("a move was chosen");
        let old = std::mem::replace(&mut state, ns);
        stack.push(Frame {
            op: o as u32,
            prev: old,
            kind,
        });
        lin ^= keys[o];
        if must[o] {
            remaining -= 1;
        }
        lift(o, &mut next, &mut prev, &mut inext, &mut iprev);
        lifted[o] = true;
        if growth && resets[o] != Reset::No {
            resetters.remove(&(ops[o].call, o));
        }
        mode = Mode::Arrive;
    }
}
