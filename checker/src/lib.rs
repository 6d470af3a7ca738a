//! zabkeeper-check: linearizability and ZooKeeper-contract checking of client histories.
//!
//! The simulator calls [`check_history`] directly with [`Event`]s it built itself; the
//! `zabkeeper-check` binary reads JSON Lines files with [`parse_jsonl`]. Verdicts are
//! deterministic: they depend only on the history, the model and the configuration budget
//! (unless a wall-clock `time_limit` is set). With `threads <= 1` no thread is spawned, which
//! is what the madsim simulation needs.

pub mod gen;
pub mod history;
pub mod html;
pub mod minimize;
pub mod register;
pub mod report;
pub mod search;
pub mod zk;

pub use history::{
    pair_ops, parse_jsonl, write_jsonl, Event, EventType, Op, ParseError, Status, ZkStat,
};
pub use report::{PartReport, Report, Verdict, Violation};

use search::{Budget, Outcome, SearchOp, SeqSpec, Stats};
use serde::Serialize;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The model a history is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Model {
    /// read, write on one register (split by `key` if keys are present).
    Register,
    /// read, write, cas.
    CasRegister,
    /// read, write, cas, append, split by key.
    Kv,
    /// ZooKeeper znode operations and ZooKeeper's consistency contract.
    Zk,
}

impl FromStr for Model {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "register" => Ok(Model::Register),
            "cas-register" => Ok(Model::CasRegister),
            "kv" => Ok(Model::Kv),
            "zk" => Ok(Model::Zk),
            _ => Err(format!(
                "unknown model {s:?} (register, cas-register, kv, zk)"
            )),
        }
    }
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Model::Register => "register",
            Model::CasRegister => "cas-register",
            Model::Kv => "kv",
            Model::Zk => "zk",
        })
    }
}

/// Limits and knobs of a check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Memoized configurations allowed per part; past it the part is `unknown`.
    /// About 40 bytes each for register-family models.
    pub max_configs: usize,
    /// Optional wall-clock limit for the whole check (verdicts then depend on speed).
    pub time_limit: Option<Duration>,
    /// Worker threads for independent parts; `<= 1` spawns none (required under madsim).
    pub threads: usize,
    /// Compute minimal counterexamples for violations.
    pub minimize: bool,
    /// Largest failing prefix (in ops of one part) that is minimized.
    pub max_minimize_ops: usize,
    /// Wall-clock time allowed for minimizing counterexamples (over all parts); past it,
    /// what is reported is still a valid counterexample but may not be minimal. `None`
    /// bounds minimization by configurations only (deterministic).
    pub minimize_time: Option<Duration>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            max_configs: 20_000_000,
            time_limit: None,
            threads: 1,
            minimize: true,
            max_minimize_ops: 2_000,
            minimize_time: Some(Duration::from_millis(500)),
        }
    }
}

/// Runs `f` over `items` on up to `threads` threads; results are in item order.
pub(crate) fn run_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    weight: impl Fn(&T) -> usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if threads <= 1 || items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    // Largest parts first for balance; results are put back in item order.
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weight(&items[i])));
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = order.get(k) else { break };
                let r = f(&items[i]);
                out.lock().expect("no panics while holding the lock")[i] = Some(r);
            });
        }
    });
    out.into_inner()
        .expect("threads joined")
        .into_iter()
        .map(|r| r.expect("every item ran"))
        .collect()
}

/// Configurations of the first round of [`check_parts`]; each later round allows
/// [`ROUND_GROWTH`] times more, up to [`CheckOptions::max_configs`].
pub const FIRST_ROUND: usize = 20_000;
/// Growth of the configuration budget from one round of [`check_parts`] to the next.
pub const ROUND_GROWTH: usize = 8;
/// The reason given for a part left undecided because another part has a violation.
pub const DECIDED_ELSEWHERE: &str = "not searched to the end: another part is not linearizable";

/// Checks independent parts (keys, groups of znode paths) and finds a minimal
/// counterexample for each violation.
///
/// The parts are searched in rounds of growing configuration budgets ([`FIRST_ROUND`], then
/// [`ROUND_GROWTH`] times more each round, up to `max_configs`): a part decided in a round
/// keeps its outcome, the others go on to the next round. As soon as one part is not
/// linearizable the history is decided, and the parts still open end `unknown` with
/// [`DECIDED_ELSEWHERE`]: a violation in a cheap part is reported without first searching a
/// costly part to the end (as Porcupine stops all partitions at the first failure). Budgets
/// are counted in configurations, so the verdicts are deterministic. The rounds a part
/// repeats cost at most about ROUND_GROWTH/(ROUND_GROWTH - 1) times what its last round
/// needed (when that is just past a round's budget), so a single part gets one round.
pub(crate) fn check_parts<M: SeqSpec + Clone + Sync, P: Sync>(
    parts: &[P],
    spec_of: impl Fn(&P) -> &M + Sync,
    ops_of: impl Fn(&P) -> &[SearchOp<M::Op>] + Sync,
    opts: &CheckOptions,
    deadline: Option<Instant>,
) -> Vec<(Outcome, Stats, Option<Vec<usize>>)>
where
    M::Op: Clone + Sync,
{
    let mut done: Vec<Option<(Outcome, Stats)>> = (0..parts.len()).map(|_| None).collect();
    // One part alone has no other part to find a violation in first: one round.
    let mut round = if parts.len() > 1 {
        FIRST_ROUND.min(opts.max_configs)
    } else {
        opts.max_configs
    };
    loop {
        let open: Vec<usize> = (0..parts.len()).filter(|&i| done[i].is_none()).collect();
        if open.is_empty() {
            break;
        }
        let last = round >= opts.max_configs;
        let results = run_parallel(
            &open,
            opts.threads,
            |&i| ops_of(&parts[i]).len(),
            |&i| {
                let mut s = spec_of(&parts[i]).clone();
                let mut stats = Stats::default();
                let budget = Budget {
                    max_configs: round,
                    deadline,
                };
                let out = search::check(&mut s, ops_of(&parts[i]), budget, &mut stats);
                (out, stats)
            },
        );
        let mut violated = false;
        let mut timed_out = false;
        for (&i, (out, stats)) in open.iter().zip(results) {
            match &out {
                Outcome::Unknown { reason } if !last && reason != search::TIME_LIMIT => continue,
                Outcome::Unknown { .. } => timed_out = true,
                Outcome::NotLinearizable { .. } => violated = true,
                Outcome::Linearizable => {}
            }
            done[i] = Some((out, stats));
        }
        if violated || timed_out {
            let reason = if violated {
                DECIDED_ELSEWHERE.to_string()
            } else {
                search::TIME_LIMIT.to_string()
            };
            for d in done.iter_mut().filter(|d| d.is_none()) {
                *d = Some((
                    Outcome::Unknown {
                        reason: reason.clone(),
                    },
                    Stats::default(),
                ));
            }
            break;
        }
        round = round.saturating_mul(ROUND_GROWTH).min(opts.max_configs);
    }
    // Minimal counterexamples, one violating part after another, within the time allowed
    // for minimization (what is cut short is still a valid counterexample).
    let min_deadline = match (opts.minimize_time.map(|t| Instant::now() + t), deadline) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    parts
        .iter()
        .zip(done)
        .map(|(p, d)| {
            let (out, stats) = d.expect("every part decided");
            let cex = match out {
                Outcome::NotLinearizable { stuck } => {
                    counterexample(spec_of(p), ops_of(p), stuck, stats, opts, min_deadline)
                }
                _ => None,
            };
            (out, stats, cex)
        })
        .collect()
}

/// A counterexample for a part that is not linearizable: the shortest failing prefix
/// (ending where the search was stuck), minimized when asked and small enough, else the
/// ops concurrent with the blocking op.
fn counterexample<M: SeqSpec + Clone>(
    spec: &M,
    ops: &[SearchOp<M::Op>],
    stuck: usize,
    stats: Stats,
    opts: &CheckOptions,
    deadline: Option<Instant>,
) -> Option<Vec<usize>>
where
    M::Op: Clone,
{
    let mut failing: Vec<SearchOp<M::Op>> = ops.to_vec();
    if let Some(cut) = ops.iter().find(|o| o.id == stuck).and_then(|o| o.ret) {
        let p = minimize::prefix(spec, ops, cut);
        let mut s2 = spec.clone();
        let mut st2 = Stats::default();
        // The prefix is searched with about the budget the whole part needed.
        let budget = Budget {
            max_configs: stats.configs.saturating_mul(2).max(FIRST_ROUND),
            deadline,
        };
        if matches!(
            search::check(&mut s2, &p, budget, &mut st2),
            Outcome::NotLinearizable { .. }
        ) {
            failing = p;
        }
    }
    if opts.minimize {
        if let Some(ids) = minimize::minimize(
            spec,
            &failing,
            minimize::MinimizeLimits {
                max_ops: opts.max_minimize_ops,
                trial_configs: 20_000,
                total_configs: 100_000,
                deadline,
            },
        ) {
            return Some(ids);
        }
    }
    // Not minimized: report the blocking op and the ops concurrent with it.
    let b = ops.iter().find(|o| o.id == stuck)?;
    let mut v: Vec<usize> = ops
        .iter()
        .filter(|o| o.call <= b.ret.unwrap_or(usize::MAX) && o.ret.is_none_or(|r| r >= b.call))
        .map(|o| o.id)
        .collect();
    v.sort_unstable();
    Some(v)
}

/// Checks a history against a model. Never panics on bad input: a malformed history gives
/// an `unknown` verdict with the reason in `Report::error`.
pub fn check_history(events: &[Event], model: Model, opts: &CheckOptions) -> Report {
    // The clock is only read when a wall-clock limit is asked for.
    let deadline = opts.time_limit.map(|t| Instant::now() + t);
    let ops = match pair_ops(events) {
        Ok(o) => o,
        Err(e) => return Report::error(model, e.to_string()),
    };
    let mut report = match model {
        Model::Register | Model::CasRegister | Model::Kv => {
            let kind = match model {
                Model::Register => register::RegKind::Register,
                Model::CasRegister => register::RegKind::CasRegister,
                _ => register::RegKind::Kv,
            };
            let parts = match register::build_parts(kind, events, &ops) {
                Ok(p) => p,
                Err((ev, msg)) => {
                    return Report::error(model, format!("event {ev} (line {}): {msg}", ev + 1))
                }
            };
            // A read of a value nobody wrote is a violation on its own (no search needed).
            let impossible = parts
                .iter()
                .find_map(|p| register::impossible_observation(p).map(|id| (p.key.clone(), id)));
            let results = match &impossible {
                Some((key, id)) => parts
                    .iter()
                    .map(|p| {
                        if p.key == *key {
                            (
                                Outcome::NotLinearizable { stuck: *id },
                                Stats::default(),
                                Some(vec![*id]),
                            )
                        } else {
                            (
                                Outcome::Unknown {
                                    reason: DECIDED_ELSEWHERE.into(),
                                },
                                Stats::default(),
                                None,
                            )
                        }
                    })
                    .collect(),
                None => check_parts(&parts, |p| &p.spec, |p| &p.ops, opts, deadline),
            };
            let mut report = Report::new(model);
            for (p, (out, stats, cex)) in parts.iter().zip(results) {
                let name = match &p.key {
                    Some(k) => format!("key {k}"),
                    None => "register".to_string(),
                };
                report.add_part(&name, p.all_ops.len(), stats.configs, out, cex);
            }
            report
        }
        Model::Zk => zk::check(events, &ops, opts, deadline),
    };
    report.finish(events, &ops);
    report
}
