//! Hand-made register / cas-register / kv histories, good and bad.

use zabkeeper_check::{check_history, parse_jsonl, CheckOptions, Model, Verdict};

fn verdict(model: Model, jsonl: &str) -> zabkeeper_check::Report {
    let events = parse_jsonl(jsonl.as_bytes()).expect("parses");
    check_history(&events, model, &CheckOptions::default())
}

fn inv(p: u64, f: &str, v: &str) -> String {
    format!(r#"{{"process":{p},"type":"invoke","f":"{f}","value":{v}}}"#)
}
fn done(p: u64, t: &str, f: &str, v: &str) -> String {
    format!(r#"{{"process":{p},"type":"{t}","f":"{f}","value":{v}}}"#)
}
fn h(lines: &[String]) -> String {
    lines.join("\n")
}

#[test]
fn sequential_write_read_is_linearizable() {
    let r = verdict(
        Model::Register,
        &h(&[
            inv(0, "write", "1"),
            done(0, "ok", "write", "1"),
            inv(1, "read", "null"),
            done(1, "ok", "read", "1"),
        ]),
    );
    assert_eq!(r.verdict, Verdict::Linearizable, "{}", r.to_text("t"));
}

#[test]
fn read_of_initial_null() {
    let ok = verdict(
        Model::Register,
        &h(&[inv(0, "read", "null"), done(0, "ok", "read", "null")]),
    );
    assert_eq!(ok.verdict, Verdict::Linearizable);
    let bad = verdict(
        Model::Register,
        &h(&[inv(0, "read", "null"), done(0, "ok", "read", "5")]),
    );
    assert_eq!(bad.verdict, Verdict::NotLinearizable);
    assert_eq!(bad.violations[0].ops, vec![0]);
}

#[test]
fn stale_read_is_not_linearizable_with_minimal_counterexample() {
    // w1 ; w2 ; r->1, plus unrelated reads that must not be in the counterexample.
    let r = verdict(
        Model::Register,
        &h(&[
            inv(0, "write", "1"),
            done(0, "ok", "write", "1"),
            inv(3, "read", "null"),
            done(3, "ok", "read", "1"),
            inv(0, "write", "2"),
            done(0, "ok", "write", "2"),
            inv(2, "read", "null"),
            done(2, "ok", "read", "2"),
            inv(1, "read", "null"),
            done(1, "ok", "read", "1"),
        ]),
    );
    assert_eq!(r.verdict, Verdict::NotLinearizable);
    assert_eq!(r.violations.len(), 1);
    assert_eq!(r.violations[0].property, "linearizable");
    // Two 1-minimal counterexamples exist: {w1, w2, last read} and {read 1, read 2, last
    // read} (with the writes relaxed, 1 can only be written once); both end at the stale read.
    let cex = &r.violations[0].ops;
    assert!(
        *cex == vec![0, 2, 4] || *cex == vec![1, 3, 4],
        "{}",
        r.to_text("t")
    );
}

#[test]
fn concurrent_read_may_see_either_value() {
    let r = verdict(
        Model::Register,
        &h(&[
            inv(0, "write", "1"),
            done(0, "ok", "write", "1"),
            inv(0, "write", "2"),
            inv(1, "read", "null"),
            done(1, "ok", "read", "1"),
            done(0, "ok", "write", "2"),
        ]),
    );
    assert_eq!(r.verdict, Verdict::Linearizable);
}

#[test]
fn concurrent_writes_of_equal_values() {
    // Two concurrent writes of 7, a write of 8 in between; a later read of 7 is fine
    // because the second write of 7 may be linearized after the 8.
    let ok = verdict(
        Model::Register,
        &h(&[
            inv(0, "write", "7"),
            inv(1, "write", "7"),
            inv(2, "write", "8"),
            done(0, "ok", "write", "7"),
            done(2, "ok", "write", "8"),
            done(1, "ok", "write", "7"),
            inv(3, "read", "null"),
            done(3, "ok", "read", "7"),
        ]),
    );
    assert_eq!(ok.verdict, Verdict::Linearizable);
    // Reading 7, then 8, then 7 again needs three writes; with both 7s finished before the
    // first read only one order is possible: 7 7 8, so the second read of 7 is impossible.
    let bad = verdict(
        Model::Register,
        &h(&[
            inv(0, "write", "7"),
            inv(1, "write", "7"),
            done(0, "ok", "write", "7"),
            done(1, "ok", "write", "7"),
            inv(2, "write", "8"),
            done(2, "ok", "write", "8"),
            inv(3, "read", "null"),
            done(3, "ok", "read", "7"),
        ]),
    );
    assert_eq!(bad.verdict, Verdict::NotLinearizable);
}

#[test]
fn info_write_may_take_effect_late_or_never() {
    // The info write of 2 may take effect after the read of 1 and before the read of 2.
    let late = verdict(
        Model::Register,
        &h(&[
            inv(0, "write", "1"),
            done(0, "ok", "write", "1"),
            inv(1, "write", "2"),
            done(1, "info", "write", "2"),
            inv(2, "read", "null"),
            done(2, "ok", "read", "1"),
            inv(2, "read", "null"),
            done(2, "ok", "read", "2"),
        ]),
    );
    assert_eq!(late.verdict, Verdict::Linearizable);
    let never = verdict(
        Model::Register,
        &h(&[
            inv(1, "write", "2"),
            done(1, "info", "write", "2"),
            inv(2, "read", "null"),
            done(2, "ok", "read", "null"),
        ]),
    );
    assert_eq!(never.verdict, Verdict::Linearizable);
    // An unfinished invoke counts as info.
    let open = verdict(
        Model::Register,
        &h(&[
            inv(1, "write", "2"),
            inv(2, "read", "null"),
            done(2, "ok", "read", "2"),
        ]),
    );
    assert_eq!(open.verdict, Verdict::Linearizable);
    // But an info write cannot take effect before its invoke.
    let early = verdict(
        Model::Register,
        &h(&[
            inv(2, "read", "null"),
            done(2, "ok", "read", "2"),
            inv(1, "write", "2"),
            done(1, "info", "write", "2"),
        ]),
    );
    assert_eq!(early.verdict, Verdict::NotLinearizable);
}

#[test]
fn failed_write_never_took_effect() {
    let r = verdict(
        Model::Register,
        &h(&[
            inv(1, "write", "2"),
            done(1, "fail", "write", "2"),
            inv(2, "read", "null"),
            done(2, "ok", "read", "2"),
        ]),
    );
    assert_eq!(r.verdict, Verdict::NotLinearizable);
}

#[test]
fn cas_register_semantics() {
    let ok = verdict(
        Model::CasRegister,
        &h(&[
            inv(0, "write", "1"),
            done(0, "ok", "write", "1"),
            inv(0, "cas", "[1,2]"),
            done(0, "ok", "cas", "[1,2]"),
            inv(1, "read", "null"),
            done(1, "ok", "read", "2"),
        ]),
    );
    assert_eq!(ok.verdict, Verdict::Linearizable);
    // A cas that succeeded from a value the register never had.
    let bad = verdict(
        Model::CasRegister,
        &h(&[
            inv(0, "write", "1"),
            done(0, "ok", "write", "1"),
            inv(0, "cas", "[3,2]"),
            done(0, "ok", "cas", "[3,2]"),
        ]),
    );
    assert_eq!(bad.verdict, Verdict::NotLinearizable);
    // result:false means it ran and did not match: a constraint on the state.
    let mismatch_bad = verdict(
        Model::CasRegister,
        &h(&[
            inv(0, "write", "1"),
            done(0, "ok", "write", "1"),
            inv(0, "cas", "[1,2]"),
            r#"{"process":0,"type":"ok","f":"cas","value":[1,2],"result":false}"#.into(),
        ]),
    );
    assert_eq!(mismatch_bad.verdict, Verdict::NotLinearizable);
    let mismatch_ok = verdict(
        Model::CasRegister,
        &h(&[
            inv(0, "write", "1"),
            done(0, "ok", "write", "1"),
            inv(0, "cas", "[5,2]"),
            r#"{"process":0,"type":"ok","f":"cas","value":[5,2],"result":false}"#.into(),
            inv(0, "read", "null"),
            done(0, "ok", "read", "1"),
        ]),
    );
    assert_eq!(mismatch_ok.verdict, Verdict::Linearizable);
    // cas is not an operation of the plain register model.
    let wrong = verdict(
        Model::Register,
        &h(&[inv(0, "cas", "[1,2]"), done(0, "ok", "cas", "[1,2]")]),
    );
    assert_eq!(wrong.verdict, Verdict::Unknown);
    assert!(wrong.error.is_some());
}

#[test]
fn kv_splits_by_key_and_appends() {
    let lines = [
        r#"{"process":0,"type":"invoke","f":"append","key":"x","value":"a"}"#,
        r#"{"process":0,"type":"ok","f":"append","key":"x","value":"a"}"#,
        r#"{"process":1,"type":"invoke","f":"append","key":"x","value":"b"}"#,
        r#"{"process":2,"type":"invoke","f":"write","key":"y","value":1}"#,
        r#"{"process":1,"type":"ok","f":"append","key":"x","value":"b"}"#,
        r#"{"process":2,"type":"ok","f":"write","key":"y","value":1}"#,
        r#"{"process":0,"type":"invoke","f":"read","key":"x","value":null}"#,
        r#"{"process":0,"type":"ok","f":"read","key":"x","value":"ab"}"#,
        r#"{"process":0,"type":"invoke","f":"read","key":"y","value":null}"#,
        r#"{"process":0,"type":"ok","f":"read","key":"y","value":1}"#,
    ];
    let r = verdict(Model::Kv, &lines.join("\n"));
    assert_eq!(r.verdict, Verdict::Linearizable, "{}", r.to_text("t"));
    assert_eq!(r.parts.len(), 2);
    let bad = lines
        .join("\n")
        .replace(r#""value":"ab"}"#, r#""value":"ba"}"#);
    let r = verdict(Model::Kv, &bad);
    assert_eq!(r.verdict, Verdict::NotLinearizable);
    assert_eq!(r.violations[0].part.as_deref(), Some("key x"));
    let y = r.parts.iter().find(|p| p.name == "key y").unwrap();
    assert_eq!(y.verdict, Verdict::Linearizable);
}

#[test]
fn budget_exhaustion_is_unknown() {
    let g = zabkeeper_check::gen::GenConfig {
        ops: 400,
        processes: 20,
        seed: 3,
        values: 1000,
        ..Default::default()
    };
    let events = zabkeeper_check::gen::generate(&g);
    let opts = CheckOptions {
        max_configs: 10,
        ..CheckOptions::default()
    };
    let r = check_history(&events, Model::CasRegister, &opts);
    assert_eq!(r.verdict, Verdict::Unknown);
    assert!(r.parts[0].reason.as_deref().unwrap().contains("limit"));
}

#[test]
fn malformed_histories_are_unknown_not_panics() {
    let r = verdict(Model::Register, &h(&[done(0, "ok", "read", "1")]));
    assert_eq!(r.verdict, Verdict::Unknown);
    let r = verdict(
        Model::Register,
        &h(&[inv(0, "read", "null"), inv(0, "read", "null")]),
    );
    assert_eq!(r.verdict, Verdict::Unknown);
    assert!(parse_jsonl("{not json".as_bytes()).is_err());
}

#[test]
fn impossible_read_deep_in_a_long_history_is_found_at_once() {
    use zabkeeper_check::gen::{corrupt_read, generate, GenConfig};
    let g = GenConfig {
        ops: 20_000,
        processes: 10,
        seed: 11,
        values: 1000,
        ..Default::default()
    };
    let mut events = generate(&g);
    let reads = events
        .iter()
        .filter(|e| e.kind == zabkeeper_check::EventType::Ok && e.f == "read")
        .count();
    assert!(corrupt_read(&mut events, reads / 2));
    let r = check_history(&events, Model::CasRegister, &CheckOptions::default());
    assert_eq!(r.verdict, Verdict::NotLinearizable, "{}", r.to_text("t"));
    let bad = events
        .iter()
        .position(|e| e.value == serde_json::json!("#impossible#"))
        .unwrap();
    let ops = zabkeeper_check::pair_ops(&events).unwrap();
    let bad_op = ops.iter().find(|o| o.complete == Some(bad)).unwrap().index;
    assert!(r.violations[0].ops.contains(&bad_op));
    assert_eq!(r.violations[0].ops, vec![bad_op], "{}", r.to_text("t"));
}

/// Porcupine-style key-value histories with 50 clients (10 keys, half reads, appends of
/// unique values, a few puts): a history with stale reads is decided not linearizable
/// within a configuration budget that the search without growth pruning and without the
/// early stop ran past (it explored tens of millions of configurations on such a history),
/// and the same histories without stale reads are linearizable.
#[test]
fn fifty_client_append_histories_are_decided_both_ways() {
    use zabkeeper_check::gen::{generate_counted, GenConfig};
    let opts = CheckOptions {
        max_configs: 1_000_000,
        minimize: false,
        ..CheckOptions::default()
    };
    let mut bad_seen = 0;
    for seed in 0..6 {
        let (ok, stale) = generate_counted(&GenConfig::porcupine_kv(seed, 50, 2_000, 0.0));
        assert_eq!(stale, 0);
        let r = check_history(&ok, Model::Kv, &opts);
        assert_eq!(
            r.verdict,
            Verdict::Linearizable,
            "seed {seed}: {}",
            r.to_text("ok")
        );
        let (bad, stale) = generate_counted(&GenConfig::porcupine_kv(seed, 50, 2_000, 0.01));
        let r = check_history(&bad, Model::Kv, &opts);
        let want = if stale > 0 {
            bad_seen += 1;
            Verdict::NotLinearizable
        } else {
            Verdict::Linearizable
        };
        assert_eq!(
            r.verdict,
            want,
            "seed {seed} ({stale} stale reads): {}",
            r.to_text("bad")
        );
        if stale > 0 {
            // Parts left open once a violation was found say so; none ran out of budget.
            for p in r.parts.iter().filter(|p| p.verdict == Verdict::Unknown) {
                assert_eq!(
                    p.reason.as_deref(),
                    Some(zabkeeper_check::DECIDED_ELSEWHERE),
                    "seed {seed}: {}",
                    p.name
                );
            }
        }
    }
    assert!(
        bad_seen >= 4,
        "only {bad_seen} of 6 histories had a stale read"
    );
}

/// A violation in one key is reported with a minimal counterexample while a key whose
/// search would be long is left open, saying why; the verdict is decided.
#[test]
fn a_violation_in_one_part_decides_the_history() {
    use zabkeeper_check::gen::{generate, GenConfig};
    // A costly linearizable key (many concurrent cas/writes) beside a stale read on key z.
    let g = GenConfig {
        ops: 3_000,
        processes: 60,
        seed: 5,
        keys: 1,
        values: 1000,
        ..Default::default()
    };
    let mut events = generate(&g);
    let z = |p: u64, t: &str, f: &str, v: serde_json::Value| zabkeeper_check::Event {
        process: 1000 + p,
        kind: serde_json::from_value(serde_json::json!(t)).unwrap(),
        f: f.into(),
        key: Some("z".into()),
        value: v,
        ..Default::default()
    };
    use serde_json::json;
    events.extend([
        z(0, "invoke", "write", json!(1)),
        z(0, "ok", "write", json!(1)),
        z(0, "invoke", "write", json!(2)),
        z(0, "ok", "write", json!(2)),
        z(1, "invoke", "read", json!(null)),
        z(1, "ok", "read", json!(1)),
    ]);
    let opts = CheckOptions {
        max_configs: 100_000_000,
        ..CheckOptions::default()
    };
    let r = check_history(&events, Model::Kv, &opts);
    assert_eq!(r.verdict, Verdict::NotLinearizable, "{}", r.to_text("t"));
    assert_eq!(r.violations.len(), 1);
    assert_eq!(r.violations[0].part.as_deref(), Some("key z"));
    assert_eq!(r.violations[0].ops.len(), 3, "{}", r.to_text("t"));
}
