//! Property tests: histories from a real sequential execution with random overlaps are
//! linearizable; the same histories with one read altered to an impossible value are not.
//! Also checks that the verdict does not depend on the number of threads.

use proptest::prelude::*;
use zabkeeper_check::gen::{corrupt_read, generate, GenConfig};
use zabkeeper_check::{check_history, CheckOptions, Model, Verdict};

fn cfg(
    seed: u64,
    ops: usize,
    processes: usize,
    keys: usize,
    model: Model,
    values: u64,
) -> GenConfig {
    GenConfig {
        seed,
        ops,
        processes,
        keys,
        info_rate: 0.05,
        fail_rate: 0.03,
        cas: model != Model::Register,
        append: model == Model::Kv,
        values,
        ..GenConfig::default()
    }
}

fn model_of(i: u8) -> Model {
    match i % 3 {
        0 => Model::Register,
        1 => Model::CasRegister,
        _ => Model::Kv,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn generated_histories_are_linearizable(
        seed in any::<u64>(), ops in 1usize..120, procs in 1usize..8, m in 0u8..3, values in 1u64..6,
    ) {
        let model = model_of(m);
        let keys = if model == Model::Kv { 3 } else { 0 };
        let events = generate(&cfg(seed, ops, procs, keys, model, values));
        let r = check_history(&events, model, &CheckOptions::default());
        prop_assert_eq!(r.verdict, Verdict::Linearizable, "{}", r.to_text("gen"));
    }

    #[test]
    fn one_impossible_read_is_caught(
        seed in any::<u64>(), ops in 2usize..80, procs in 1usize..6, m in 0u8..3, pick in any::<usize>(),
        values in 1u64..6,
    ) {
        let model = model_of(m);
        let keys = if model == Model::Kv { 2 } else { 0 };
        let mut events = generate(&cfg(seed, ops, procs, keys, model, values));
        prop_assume!(corrupt_read(&mut events, pick));
        let r = check_history(&events, model, &CheckOptions::default());
        prop_assert_eq!(r.verdict, Verdict::NotLinearizable, "{}", r.to_text("gen"));
        // The counterexample contains the altered read.
        let bad = events.iter().position(|e| e.value == serde_json::json!("#impossible#")).unwrap();
        let ops_list = zabkeeper_check::pair_ops(&events).unwrap();
        let bad_op = ops_list.iter().find(|o| o.complete == Some(bad)).unwrap().index;
        prop_assert!(r.violations[0].ops.contains(&bad_op), "{}", r.to_text("gen"));
    }

    #[test]
    fn verdicts_do_not_depend_on_threads(seed in any::<u64>(), ops in 1usize..200, procs in 1usize..8) {
        let mut events = generate(&cfg(seed, ops, procs, 5, Model::Kv, 4));
        if seed % 2 == 0 {
            corrupt_read(&mut events, seed as usize);
        }
        let one = check_history(&events, Model::Kv, &CheckOptions::default());
        let four = check_history(&events, Model::Kv, &CheckOptions { threads: 4, ..CheckOptions::default() });
        prop_assert_eq!(one.verdict, four.verdict);
        prop_assert_eq!(
            serde_json::to_string(&one.violations).unwrap(),
            serde_json::to_string(&four.violations).unwrap()
        );
    }
}

/// An independent brute-force linearizability check for tiny cas-register histories.
mod brute {
    use serde_json::Value;
    use zabkeeper_check::{pair_ops, Event, Status};

    struct BOp {
        call: usize,
        ret: Option<usize>,
        f: String,
        arg: Value,
        out: Value,
        mismatch: bool,
    }

    fn apply(s: &Value, o: &BOp) -> Option<Value> {
        match o.f.as_str() {
            "read" => (*s == o.out).then(|| s.clone()),
            "write" => Some(o.arg.clone()),
            "append" => {
                let cur = match s {
                    Value::Null => "",
                    Value::String(x) => x.as_str(),
                    _ => return None,
                };
                Some(Value::String(format!("{cur}{}", o.arg.as_str()?)))
            }
            _ => {
                if o.mismatch {
                    (*s != o.arg[0]).then(|| s.clone())
                } else {
                    (*s == o.arg[0]).then(|| o.arg[1].clone())
                }
            }
        }
    }

    fn search(ops: &[BOp], used: &mut Vec<bool>, s: &Value) -> bool {
        if ops
            .iter()
            .zip(used.iter())
            .all(|(o, &u)| u || o.ret.is_none())
        {
            return true;
        }
        for i in 0..ops.len() {
            if used[i] {
                continue;
            }
            // i may go next if no unused op finished before i was invoked.
            let blocked = ops
                .iter()
                .zip(used.iter())
                .any(|(o, &u)| !u && o.ret.is_some_and(|r| r < ops[i].call));
            if blocked {
                continue;
            }
            if let Some(ns) = apply(s, &ops[i]) {
                used[i] = true;
                if search(ops, used, &ns) {
                    return true;
                }
                used[i] = false;
            }
        }
        false
    }

    pub fn linearizable(events: &[Event]) -> bool {
        let ops: Vec<BOp> = pair_ops(events)
            .unwrap()
            .iter()
            .filter(|o| o.status != Status::Fail)
            .filter(|o| !(o.status == Status::Info && events[o.invoke].f == "read"))
            .map(|o| {
                let c = o.comp(events);
                BOp {
                    call: o.invoke,
                    ret: if o.status == Status::Ok {
                        o.complete
                    } else {
                        None
                    },
                    f: events[o.invoke].f.clone(),
                    arg: events[o.invoke].value.clone(),
                    out: c.map(|c| c.value.clone()).unwrap_or(Value::Null),
                    mismatch: o.status == Status::Ok
                        && c.and_then(|c| c.result.clone()) == Some(Value::Bool(false)),
                }
            })
            .collect();
        let mut used = vec![false; ops.len()];
        search(&ops, &mut used, &Value::Null)
    }
}

fn random_history(seed: u64, n: usize, procs: usize, appends: bool) -> Vec<zabkeeper_check::Event> {
    use rand::{Rng, SeedableRng};
    use serde_json::json;
    use zabkeeper_check::{Event, EventType};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut open: Vec<Option<Event>> = vec![None; procs];
    let mut events = Vec::new();
    let mut started = 0;
    let val = |rng: &mut rand_chacha::ChaCha8Rng| {
        if rng.gen_bool(0.2) {
            serde_json::Value::Null
        } else if appends {
            json!(["x", "a", "xa", "ab", "xab", "ba", "xb"][rng.gen_range(0..7)])
        } else {
            json!(rng.gen_range(0..3))
        }
    };
    while started < n || open.iter().any(Option::is_some) {
        let p = rng.gen_range(0..procs);
        match open[p].take() {
            None if started < n => {
                started += 1;
                let f = ["read", "write", "cas", "append"]
                    [rng.gen_range(0..if appends { 4 } else { 3 })];
                let value = match f {
                    "read" => serde_json::Value::Null,
                    "write" if appends => json!("x"),
                    "write" => json!(rng.gen_range(0..3)),
                    "append" => json!(["a", "b"][rng.gen_range(0..2)]),
                    _ if appends => json!([val(&mut rng), val(&mut rng)]),
                    _ => json!([val(&mut rng), rng.gen_range(0..3)]),
                };
                let e = Event {
                    process: p as u64,
                    kind: EventType::Invoke,
                    f: f.into(),
                    value,
                    ..Default::default()
                };
                events.push(e.clone());
                open[p] = Some(e);
            }
            None => {}
            Some(mut e) => {
                let r: f64 = rng.gen();
                e.kind = if r < 0.15 {
                    EventType::Info
                } else if r < 0.25 {
                    EventType::Fail
                } else {
                    EventType::Ok
                };
                if e.kind == EventType::Ok && e.f == "read" {
                    e.value = val(&mut rng);
                }
                if e.kind == EventType::Ok && e.f == "cas" && rng.gen_bool(0.3) {
                    e.result = Some(json!(false));
                }
                events.push(e);
            }
        }
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// The optimized search agrees with a brute-force enumeration on tiny random histories
    /// (most of them not linearizable), including unknown and failed ops.
    #[test]
    fn search_agrees_with_brute_force(seed in any::<u64>(), n in 1usize..8, procs in 1usize..4) {
        let events = random_history(seed, n, procs, false);
        let expect = brute::linearizable(&events);
        let r = check_history(&events, Model::CasRegister, &CheckOptions::default());
        let want = if expect { Verdict::Linearizable } else { Verdict::NotLinearizable };
        prop_assert_eq!(r.verdict, want, "{}", r.to_text("random"));
    }

    /// The same with appends (state-dependent unknown ops, chains of them) in the kv model.
    #[test]
    fn search_with_appends_agrees_with_brute_force(seed in any::<u64>(), n in 1usize..8, procs in 1usize..4) {
        let events = random_history(seed, n, procs, true);
        let expect = brute::linearizable(&events);
        let r = check_history(&events, Model::Kv, &CheckOptions::default());
        let want = if expect { Verdict::Linearizable } else { Verdict::NotLinearizable };
        prop_assert_eq!(r.verdict, want, "{}", r.to_text("random"));
    }
}

/// The random tiny histories above cover both verdicts (so the agreement tests can fail).
#[test]
fn random_histories_cover_both_verdicts() {
    for appends in [false, true] {
        let lin = (0..600u64)
            .filter(|&s| {
                brute::linearizable(&random_history(
                    s,
                    1 + (s % 7) as usize,
                    1 + (s % 3) as usize,
                    appends,
                ))
            })
            .count();
        assert!(
            lin > 60 && lin < 540,
            "appends={appends}: {lin} of 600 linearizable"
        );
    }
}
