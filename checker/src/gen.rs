//! Generators of linearizable register-family histories (for property tests and
//! benchmarks): a real sequential execution whose operations take effect at a random point
//! inside their randomly overlapping call intervals.

use crate::history::{Event, EventType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Shape of a generated history.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// PRNG seed.
    pub seed: u64,
    /// Number of operations.
    pub ops: usize,
    /// Client processes (concurrency).
    pub processes: usize,
    /// Keys (`0` = the single unkeyed register).
    pub keys: usize,
    /// Fraction of ops whose completion is `info` (half of them took effect).
    pub info_rate: f64,
    /// Fraction of ops that `fail` (did not take effect).
    pub fail_rate: f64,
    /// Use cas ops.
    pub cas: bool,
    /// Use append ops.
    pub append: bool,
    /// Written values are drawn from `0..values` (small = many equal writes).
    pub values: u64,
    /// Share of ops that are writes; the rest of the non-read ops are cas (if `cas`) and
    /// appends (if `append`). `None`: 20% (30% without appends, 50% with neither).
    pub write_rate: Option<f64>,
    /// Written and appended values unique per process and op (`"x P N y"`, as in
    /// Porcupine's and Jepsen's key-value tests) instead of drawn from `0..values` and
    /// single letters: every state of a key then occurs in one stretch of time only.
    pub unique_values: bool,
    /// Fraction of ok reads that return a value superseded before the read was invoked
    /// (a stale-read bug): with any such read the history is not linearizable.
    pub stale_rate: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 0,
            ops: 1000,
            processes: 5,
            keys: 0,
            info_rate: 0.02,
            fail_rate: 0.01,
            cas: true,
            append: false,
            values: 5,
            write_rate: None,
            unique_values: false,
            stale_rate: 0.0,
        }
    }
}

impl GenConfig {
    /// A key-value history as in Porcupine's `kv` tests: `processes` clients over 10 keys,
    /// half reads, 45% appends of unique values and 5% writes (puts), no unknown outcomes;
    /// with `stale_rate > 0` some reads are stale and (values being unique) the history is
    /// not linearizable as soon as one is.
    pub fn porcupine_kv(seed: u64, processes: usize, ops: usize, stale_rate: f64) -> Self {
        GenConfig {
            seed,
            ops,
            processes,
            keys: 10,
            info_rate: 0.0,
            fail_rate: 0.0,
            cas: false,
            append: true,
            values: 1000,
            write_rate: Some(0.05),
            unique_values: true,
            stale_rate,
        }
    }
}

#[derive(Clone)]
struct Pending {
    f: &'static str,
    key: Option<String>,
    arg: Value,
    outcome: u8, // 0 ok, 1 info-applied, 2 info-not-applied, 3 fail
    invoked: u64,
    stale: bool,
    out: Value,
    result: Option<Value>,
}

/// Generates a history that is linearizable by construction (unless `stale_rate` is set).
pub fn generate(cfg: &GenConfig) -> Vec<Event> {
    generate_counted(cfg).0
}

/// [`generate`], also returning how many ok reads are stale (see [`GenConfig::stale_rate`]).
pub fn generate_counted(cfg: &GenConfig) -> (Vec<Event>, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut state: BTreeMap<Option<String>, Value> = BTreeMap::new();
    // (time, phase, process): phase 0 invoke, 1 effect, 2 complete.
    let mut heap: BinaryHeap<Reverse<(u64, u8, usize)>> = BinaryHeap::new();
    let mut pending: Vec<Option<Pending>> = vec![None; cfg.processes];
    let mut events = Vec::with_capacity(cfg.ops * 2);
    let mut started = 0usize;
    // Per key, the values replaced so far with the time they were replaced.
    let mut superseded: BTreeMap<Option<String>, Vec<(u64, Value)>> = BTreeMap::new();
    let mut appended = vec![0u64; cfg.processes];
    let mut stale_reads = 0usize;
    for p in 0..cfg.processes {
        heap.push(Reverse((rng.gen_range(0..1000), 0, p)));
    }
    while let Some(Reverse((t, phase, p))) = heap.pop() {
        match phase {
            0 => {
                if started >= cfg.ops {
                    continue;
                }
                started += 1;
                let key = (cfg.keys > 0).then(|| format!("k{}", rng.gen_range(0..cfg.keys)));
                let r: f64 = rng.gen();
                let n = rng.gen_range(0..cfg.values.max(1));
                // With appends in the mix, values are strings so that appends always apply.
                let val = |n: u64| {
                    if cfg.append {
                        json!(format!("v{n}"))
                    } else {
                        json!(n)
                    }
                };
                let unique = |appended: &mut Vec<u64>| {
                    appended[p] += 1;
                    json!(format!("x {p} {} y", appended[p] - 1))
                };
                let v = if cfg.unique_values {
                    unique(&mut appended)
                } else {
                    val(n)
                };
                let write_rate = cfg.write_rate.unwrap_or(match (cfg.cas, cfg.append) {
                    (_, true) => 0.2,
                    (true, false) => 0.3,
                    (false, false) => 0.5,
                });
                let (f, arg) = if r < 0.5 {
                    ("read", Value::Null)
                } else if r < 0.5 + write_rate {
                    ("write", v)
                } else if cfg.cas && (!cfg.append || r < 0.5 + write_rate + 0.2) {
                    let exp = if rng.gen_bool(0.5) {
                        state.get(&key).cloned().unwrap_or(Value::Null)
                    } else {
                        val(rng.gen_range(0..cfg.values.max(1)))
                    };
                    ("cas", json!([exp, v]))
                } else if cfg.append {
                    let add = if cfg.unique_values {
                        v
                    } else {
                        json!(format!("{}", (b'a' + (n % 26) as u8) as char))
                    };
                    ("append", add)
                } else {
                    ("write", v)
                };
                let u: f64 = rng.gen();
                let outcome = if u < cfg.info_rate / 2.0 {
                    1
                } else if u < cfg.info_rate {
                    2
                } else if f != "read" && u < cfg.info_rate + cfg.fail_rate {
                    3
                } else {
                    0
                };
                events.push(Event {
                    process: p as u64,
                    kind: EventType::Invoke,
                    f: f.into(),
                    key: key.clone(),
                    value: arg.clone(),
                    time: Some(t),
                    ..Default::default()
                });
                let stale = f == "read" && outcome == 0 && rng.gen_bool(cfg.stale_rate);
                pending[p] = Some(Pending {
                    f,
                    key,
                    arg,
                    outcome,
                    invoked: t,
                    stale,
                    out: Value::Null,
                    result: None,
                });
                let d1 = rng.gen_range(1..2000);
                heap.push(Reverse((t + d1, 1, p)));
            }
            1 => {
                let pd = pending[p].as_mut().expect("pending op");
                if pd.outcome <= 1 {
                    let cur = state.entry(pd.key.clone()).or_insert(Value::Null);
                    let old = cur.clone();
                    match pd.f {
                        "read" => {
                            pd.out = cur.clone();
                            // A stale read: a value replaced before the read was invoked
                            // (and not the current one again).
                            if pd.stale {
                                let old_values = superseded.get(&pd.key).map(Vec::as_slice);
                                let gone: Vec<&Value> = old_values
                                    .unwrap_or_default()
                                    .iter()
                                    .filter(|(at, v)| *at < pd.invoked && v != cur)
                                    .map(|(_, v)| v)
                                    .collect();
                                if !gone.is_empty() {
                                    pd.out = gone[rng.gen_range(0..gone.len())].clone();
                                    stale_reads += 1;
                                }
                            }
                        }
                        "write" => *cur = pd.arg.clone(),
                        "cas" => {
                            if *cur == pd.arg[0] {
                                *cur = pd.arg[1].clone();
                            } else {
                                pd.result = Some(Value::Bool(false));
                            }
                        }
                        _ => {
                            let s = cur.as_str().unwrap_or("").to_string();
                            *cur = json!(format!("{s}{}", pd.arg.as_str().unwrap_or("")));
                        }
                    }
                    if cfg.stale_rate > 0.0 && *cur != old {
                        superseded.entry(pd.key.clone()).or_default().push((t, old));
                    }
                }
                let d2 = rng.gen_range(1..2000);
                heap.push(Reverse((t + d2, 2, p)));
            }
            _ => {
                let pd = pending[p].take().expect("pending op");
                let kind = match pd.outcome {
                    0 => EventType::Ok,
                    3 => EventType::Fail,
                    _ => EventType::Info,
                };
                let value = if pd.f == "read" { pd.out } else { pd.arg };
                events.push(Event {
                    process: p as u64,
                    kind,
                    f: pd.f.into(),
                    key: pd.key,
                    value: if kind == EventType::Ok || pd.f != "read" {
                        value
                    } else {
                        Value::Null
                    },
                    time: Some(t),
                    result: if kind == EventType::Ok {
                        pd.result
                    } else {
                        None
                    },
                    ..Default::default()
                });
                heap.push(Reverse((t + rng.gen_range(1..500), 0, p)));
            }
        }
    }
    (events, stale_reads)
}

/// Changes the value of the ok read chosen by `pick` (an index into the ok reads) to a
/// value no operation ever writes; returns false if the history has no ok read.
pub fn corrupt_read(events: &mut [Event], pick: usize) -> bool {
    let reads: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind == EventType::Ok && e.f == "read")
        .map(|(i, _)| i)
        .collect();
    if reads.is_empty() {
        return false;
    }
    events[reads[pick % reads.len()]].value = json!("#impossible#");
    true
}
