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
        }
    }
}

#[derive(Clone)]
struct Pending {
    f: &'static str,
    key: Option<String>,
    arg: Value,
    outcome: u8, // 0 ok, 1 info-applied, 2 info-not-applied, 3 fail
    out: Value,
    result: Option<Value>,
}

/// Generates a history that is linearizable by construction.
pub fn generate(cfg: &GenConfig) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut state: BTreeMap<Option<String>, Value> = BTreeMap::new();
    // (time, phase, process): phase 0 invoke, 1 effect, 2 complete.
    let mut heap: BinaryHeap<Reverse<(u64, u8, usize)>> = BinaryHeap::new();
    let mut pending: Vec<Option<Pending>> = vec![None; cfg.processes];
    let mut events = Vec::with_capacity(cfg.ops * 2);
    let mut started = 0usize;
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
                let v = val(n);
                let (f, arg) = if r < 0.5 {
                    ("read", Value::Null)
                } else if cfg.cas && r < 0.7 {
                    let exp = if rng.gen_bool(0.5) {
                        state.get(&key).cloned().unwrap_or(Value::Null)
                    } else {
                        val(rng.gen_range(0..cfg.values.max(1)))
                    };
                    ("cas", json!([exp, v]))
                } else if cfg.append && r < 0.8 {
                    (
                        "append",
                        json!(format!("{}", (b'a' + (n % 26) as u8) as char)),
                    )
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
                pending[p] = Some(Pending {
                    f,
                    key,
                    arg,
                    outcome,
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
                    match pd.f {
                        "read" => pd.out = cur.clone(),
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
    events
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
