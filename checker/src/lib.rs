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
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            max_configs: 20_000_000,
            time_limit: None,
            threads: 1,
            minimize: true,
            max_minimize_ops: 2_000,
        }
    }
}

impl CheckOptions {
    fn budget(&self, deadline: Option<Instant>) -> Budget {
        Budget {
            max_configs: self.max_configs,
            deadline,
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

/// Checks one part with the search; on a violation, finds a minimal counterexample.
pub(crate) fn check_part<M: SeqSpec + Clone>(
    spec: &M,
    ops: &[SearchOp<M::Op>],
    opts: &CheckOptions,
    deadline: Option<Instant>,
) -> (Outcome, Stats, Option<Vec<usize>>)
where
    M::Op: Clone,
{
    let mut s = spec.clone();
    let mut stats = Stats::default();
    let out = search::check(&mut s, ops, opts.budget(deadline), &mut stats);
    let mut cex = None;
    if let Outcome::NotLinearizable { stuck } = out {
        let mut failing: Vec<SearchOp<M::Op>> = ops.to_vec();
        if let Some(cut) = ops.iter().find(|o| o.id == stuck).and_then(|o| o.ret) {
            let p = minimize::prefix(spec, ops, cut);
            let mut s2 = spec.clone();
            let mut st2 = Stats::default();
            if matches!(
                search::check(&mut s2, &p, opts.budget(deadline), &mut st2),
                Outcome::NotLinearizable { .. }
            ) {
                failing = p;
            }
        }
        cex = if opts.minimize {
            minimize::minimize(
                spec,
                &failing,
                minimize::MinimizeLimits {
                    max_ops: opts.max_minimize_ops,
                    trial_configs: 20_000,
                    total_configs: 100_000,
                    deadline,
                },
            )
        } else {
            None
        }
        .or_else(|| {
            // Not minimized: report the blocking op and the ops concurrent with it.
            let b = ops.iter().find(|o| o.id == stuck)?;
            let mut v: Vec<usize> = ops
                .iter()
                .filter(|o| {
                    o.call <= b.ret.unwrap_or(usize::MAX) && o.ret.is_none_or(|r| r >= b.call)
                })
                .map(|o| o.id)
                .collect();
            v.sort_unstable();
            Some(v)
        });
    }
    (out, stats, cex)
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
            let results = run_parallel(
                &parts,
                opts.threads,
                |p| p.ops.len(),
                |p| match register::impossible_observation(p) {
                    Some(id) => (
                        Outcome::NotLinearizable { stuck: id },
                        Stats::default(),
                        Some(vec![id]),
                    ),
                    None => check_part(&p.spec, &p.ops, opts, deadline),
                },
            );
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
