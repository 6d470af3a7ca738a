//! Hand-made zk histories for every property, good and bad.

use serde_json::{json, Value};
use zabkeeper_check::{check_history, CheckOptions, Event, Model, Report, Verdict};

fn ev(v: Value) -> Event {
    serde_json::from_value(v).expect("valid event")
}

fn run(lines: Vec<Value>) -> Report {
    let events: Vec<Event> = lines.into_iter().map(ev).collect();
    check_history(&events, Model::Zk, &CheckOptions::default())
}

fn props(r: &Report) -> Vec<&str> {
    r.violations.iter().map(|v| v.property.as_str()).collect()
}

/// An op as two lines: invoke and ok completion with extra completion fields.
fn op(p: u64, s: i64, f: &str, inv: Value, comp: Value) -> Vec<Value> {
    let mut i = json!({"process": p, "type": "invoke", "f": f, "session": s});
    let mut c = json!({"process": p, "type": "ok", "f": f, "session": s});
    for (k, v) in inv.as_object().unwrap() {
        i[k] = v.clone();
        c[k] = v.clone();
    }
    for (k, v) in comp.as_object().unwrap() {
        c[k] = v.clone();
    }
    vec![i, c]
}

fn create(p: u64, s: i64, path: &str, data: &str, zxid: i64) -> Vec<Value> {
    op(
        p,
        s,
        "create",
        json!({"path": path, "value": data}),
        json!({"zxid": zxid, "result": path}),
    )
}
fn set(p: u64, s: i64, path: &str, data: &str, zxid: i64) -> Vec<Value> {
    op(
        p,
        s,
        "setData",
        json!({"path": path, "value": data}),
        json!({"zxid": zxid}),
    )
}
fn get(p: u64, s: i64, path: &str, data: &str, zxid: i64, mzxid: i64, version: i32) -> Vec<Value> {
    op(
        p,
        s,
        "getData",
        json!({"path": path}),
        json!({"zxid": zxid, "value": data, "stat": {"mzxid": mzxid, "czxid": 1, "version": version}}),
    )
}

fn cat(parts: Vec<Vec<Value>>) -> Vec<Value> {
    parts.into_iter().flatten().collect()
}

#[test]
fn good_history_passes_every_check() {
    let r = run(cat(vec![
        create(0, 1, "/a", "x", 1),
        set(0, 1, "/a", "y", 2),
        get(1, 2, "/a", "y", 2, 2, 1),
        // A stale read is allowed for another session that has not seen zxid 2.
        get(2, 3, "/a", "x", 1, 1, 0),
    ]));
    assert_eq!(r.verdict, Verdict::Linearizable, "{}", r.to_text("t"));
}

#[test]
fn writes_must_be_linearizable() {
    // Two creates of the same path both succeeding.
    let r = run(cat(vec![
        create(0, 1, "/a", "x", 1),
        create(1, 2, "/a", "y", 2),
    ]));
    assert_eq!(r.verdict, Verdict::NotLinearizable);
    assert_eq!(props(&r), vec!["linearizable"]);
    // NodeExists on the second is fine.
    let r = run(cat(vec![
        create(0, 1, "/a", "x", 1),
        op(
            1,
            2,
            "create",
            json!({"path": "/a", "value": "y"}),
            json!({"error": "NodeExists", "zxid": 2}),
        ),
    ]));
    assert_eq!(r.verdict, Verdict::Linearizable, "{}", r.to_text("t"));
}

#[test]
fn setdata_versions_and_delete() {
    let good = run(cat(vec![
        create(0, 1, "/a", "x", 1),
        op(
            0,
            1,
            "setData",
            json!({"path": "/a", "value": "y", "version": 0}),
            json!({"zxid": 2, "stat": {"version": 1}}),
        ),
        op(
            0,
            1,
            "delete",
            json!({"path": "/a", "version": 1}),
            json!({"zxid": 3}),
        ),
    ]));
    assert_eq!(good.verdict, Verdict::Linearizable, "{}", good.to_text("t"));
    let bad = run(cat(vec![
        create(0, 1, "/a", "x", 1),
        op(
            0,
            1,
            "setData",
            json!({"path": "/a", "value": "y", "version": 0}),
            json!({"zxid": 2}),
        ),
        // version 0 is stale now: must be BadVersion
        op(
            0,
            1,
            "delete",
            json!({"path": "/a", "version": 0}),
            json!({"zxid": 3}),
        ),
    ]));
    assert_eq!(bad.verdict, Verdict::NotLinearizable);
}

#[test]
fn sequential_names_follow_parent_cversion() {
    let seq = |p, s, z, name: &str| {
        op(
            p,
            s,
            "create",
            json!({"path": "/q/n-", "value": "", "mode": "ephemeral_sequential"}),
            json!({"zxid": z, "result": name}),
        )
    };
    let good = run(cat(vec![
        create(0, 1, "/q", "", 1),
        seq(0, 1, 2, "/q/n-0000000000"),
        seq(1, 2, 3, "/q/n-0000000001"),
    ]));
    assert_eq!(good.verdict, Verdict::Linearizable, "{}", good.to_text("t"));
    let bad = run(cat(vec![
        create(0, 1, "/q", "", 1),
        seq(0, 1, 2, "/q/n-0000000000"),
        seq(1, 2, 3, "/q/n-0000000000"),
    ]));
    assert_eq!(bad.verdict, Verdict::NotLinearizable);
}

#[test]
fn sequential_names_count_creates_not_deletes() {
    // ZooKeeper numbers sequential children by its stored cversion, which counts
    // child creates only: after a create and a delete the next suffix is 1.
    let seq = |z, name: &str| {
        op(
            0,
            1,
            "create",
            json!({"path": "/q/n-", "value": "", "mode": "persistent_sequential"}),
            json!({"zxid": z, "result": name}),
        )
    };
    let del = op(
        0,
        1,
        "delete",
        json!({"path": "/q/n-0000000000"}),
        json!({"zxid": 3}),
    );
    let good = run(cat(vec![
        create(0, 1, "/q", "", 1),
        seq(2, "/q/n-0000000000"),
        del.clone(),
        seq(4, "/q/n-0000000001"),
    ]));
    assert_eq!(good.verdict, Verdict::Linearizable, "{}", good.to_text("t"));
    let bad = run(cat(vec![
        create(0, 1, "/q", "", 1),
        seq(2, "/q/n-0000000000"),
        del,
        seq(4, "/q/n-0000000002"),
    ]));
    assert_eq!(bad.verdict, Verdict::NotLinearizable);
}

#[test]
fn writes_follow_zxid_order() {
    // Sequential writes whose zxids go backwards.
    let r = run(cat(vec![
        create(0, 1, "/a", "x", 5),
        set(0, 1, "/a", "y", 4),
    ]));
    assert!(props(&r).contains(&"linearizable"), "{}", r.to_text("t"));
}

#[test]
fn multi_is_all_or_nothing() {
    let m = json!([{"op": "create", "path": "/a", "value": "1"}, {"op": "create", "path": "/b", "value": "2"}]);
    let good = run(cat(vec![
        op(0, 1, "multi", json!({"value": m}), json!({"zxid": 1})),
        op(
            1,
            2,
            "getData",
            json!({"path": "/b", "quorum": true}),
            json!({"zxid": 1, "value": "2", "stat": {"mzxid": 1, "version": 0}}),
        ),
    ]));
    assert_eq!(good.verdict, Verdict::Linearizable, "{}", good.to_text("t"));
    // A multi that failed (NodeExists on /a) must not have created /b.
    let bad = run(cat(vec![
        create(0, 1, "/a", "0", 1),
        op(
            0,
            1,
            "multi",
            json!({"value": m}),
            json!({"error": "NodeExists", "zxid": 2}),
        ),
        op(
            1,
            2,
            "exists",
            json!({"path": "/b", "quorum": true}),
            json!({"zxid": 2, "stat": {"mzxid": 2, "version": 0}}),
        ),
    ]));
    assert_eq!(
        bad.verdict,
        Verdict::NotLinearizable,
        "{}",
        bad.to_text("t")
    );
}

#[test]
fn quorum_reads_are_linearizable_plain_reads_may_be_stale() {
    let stale = |quorum: bool| {
        run(cat(vec![
            create(0, 1, "/a", "x", 1),
            set(0, 1, "/a", "y", 2),
            op(
                1,
                2,
                "getData",
                json!({"path": "/a", "quorum": quorum}),
                json!({"zxid": 1, "value": "x", "stat": {"mzxid": 1, "version": 0}}),
            ),
        ]))
    };
    assert_eq!(stale(false).verdict, Verdict::Linearizable);
    assert_eq!(props(&stale(true)), vec!["linearizable"]);
}

#[test]
fn info_writes_may_or_may_not_apply() {
    let r = run(cat(vec![
        create(0, 1, "/a", "x", 1),
        vec![
            json!({"process": 0, "type": "invoke", "f": "setData", "path": "/a", "value": "y", "session": 1}),
            json!({"process": 0, "type": "info", "f": "setData", "path": "/a", "value": "y", "session": 1}),
        ],
        op(
            1,
            2,
            "getData",
            json!({"path": "/a", "quorum": true}),
            json!({"zxid": 2, "value": "y", "stat": {"mzxid": 2, "version": 1}}),
        ),
        op(
            1,
            2,
            "getData",
            json!({"path": "/a", "quorum": true}),
            json!({"zxid": 2, "value": "y", "stat": {"mzxid": 2, "version": 1}}),
        ),
    ]));
    assert_eq!(r.verdict, Verdict::Linearizable, "{}", r.to_text("t"));
    // A failed write never applies.
    let r = run(cat(vec![
        create(0, 1, "/a", "x", 1),
        vec![
            json!({"process": 0, "type": "invoke", "f": "setData", "path": "/a", "value": "y", "session": 1}),
            json!({"process": 0, "type": "fail", "f": "setData", "path": "/a", "value": "y", "session": 1}),
        ],
        op(
            1,
            2,
            "getData",
            json!({"path": "/a", "quorum": true}),
            json!({"zxid": 2, "value": "y", "stat": {"mzxid": 2, "version": 1}}),
        ),
    ]));
    assert_eq!(r.verdict, Verdict::NotLinearizable);
}

#[test]
fn session_zxid_never_goes_back_across_servers() {
    let mut a = get(0, 7, "/a", "y", 2, 2, 1);
    a[1]["node"] = json!("s1");
    let mut b = get(0, 7, "/a", "x", 1, 1, 0);
    b[1]["node"] = json!("s2");
    let r = run(cat(vec![
        create(1, 1, "/a", "x", 1),
        set(1, 1, "/a", "y", 2),
        a,
        b,
    ]));
    assert_eq!(
        props(&r),
        vec!["session-zxid-monotonic"],
        "{}",
        r.to_text("t")
    );
}

#[test]
fn read_your_writes() {
    let r = run(cat(vec![
        create(0, 1, "/a", "x", 1),
        set(0, 1, "/a", "y", 2),
        get(1, 1, "/a", "x", 1, 1, 0),
    ]));
    let p = props(&r);
    assert!(p.contains(&"read-your-writes"), "{}", r.to_text("t"));
}

#[test]
fn read_consistent_with_its_zxid() {
    // Served at zxid 2 but missing the acknowledged write at 2.
    let r = run(cat(vec![
        create(0, 1, "/a", "x", 1),
        set(0, 1, "/a", "y", 2),
        get(1, 2, "/a", "x", 2, 1, 0),
    ]));
    assert_eq!(props(&r), vec!["acked-write-lost"], "{}", r.to_text("t"));
    // Shows a change newer than the zxid it was served at.
    let r = run(cat(vec![
        create(0, 1, "/a", "x", 1),
        set(0, 1, "/a", "y", 2),
        get(1, 2, "/a", "y", 1, 2, 1),
    ]));
    assert_eq!(props(&r), vec!["read-from-future"], "{}", r.to_text("t"));
    // Wrong data for the write at its mzxid.
    let r = run(cat(vec![
        create(0, 1, "/a", "x", 1),
        set(0, 1, "/a", "y", 2),
        get(1, 2, "/a", "z", 2, 2, 1),
    ]));
    assert_eq!(
        props(&r),
        vec!["read-consistent-with-zxid"],
        "{}",
        r.to_text("t")
    );
}

#[test]
fn sync_then_read() {
    let sync = |p, s, z| op(p, s, "sync", json!({"path": "/a"}), json!({"zxid": z}));
    let good = run(cat(vec![
        create(0, 1, "/a", "x", 1),
        set(0, 1, "/a", "y", 2),
        sync(1, 2, 2),
        get(1, 2, "/a", "y", 2, 2, 1),
    ]));
    assert_eq!(good.verdict, Verdict::Linearizable, "{}", good.to_text("t"));
    let bad = run(cat(vec![
        create(0, 1, "/a", "x", 1),
        set(0, 1, "/a", "y", 2),
        sync(1, 2, 2),
        get(1, 3, "/a", "x", 1, 1, 0),
    ]));
    // (session 3 never synced: fine)
    assert_eq!(bad.verdict, Verdict::Linearizable, "{}", bad.to_text("t"));
    // session 2 syncs but its next read (a reconnect to a lagging server) is at zxid 1.
    let mut lines = cat(vec![
        create(0, 1, "/a", "x", 1),
        set(0, 1, "/a", "y", 2),
        sync(1, 2, 2),
    ]);
    lines.extend(get(1, 2, "/a", "x", 1, 1, 0));
    let r = run(lines);
    assert!(props(&r).contains(&"sync-then-read"), "{}", r.to_text("t"));
}

#[test]
fn session_fifo() {
    let r = run(vec![
        json!({"process": 0, "type": "invoke", "f": "getData", "path": "/a", "session": 1}),
        json!({"process": 1, "type": "invoke", "f": "getData", "path": "/b", "session": 1}),
        json!({"process": 1, "type": "ok", "f": "getData", "path": "/b", "session": 1, "error": "NoNode", "zxid": 0}),
        json!({"process": 0, "type": "ok", "f": "getData", "path": "/a", "session": 1, "error": "NoNode", "zxid": 0}),
    ]);
    assert_eq!(props(&r), vec!["session-fifo"], "{}", r.to_text("t"));
}

#[test]
fn watches_fire_once_and_before_the_change_is_seen() {
    let watch_get = |z, m, v: &str, ver| {
        op(
            0,
            5,
            "getData",
            json!({"path": "/a", "watch": true}),
            json!({"zxid": z, "value": v, "stat": {"mzxid": m, "version": ver, "czxid": 1}}),
        )
    };
    let notify = json!({"process": 0, "type": "event", "f": "watch", "path": "/a", "event": "NodeDataChanged", "session": 5});
    let good = run(cat(vec![
        create(1, 1, "/a", "x", 1),
        watch_get(1, 1, "x", 0),
        set(1, 1, "/a", "y", 2),
        vec![notify.clone()],
        get(0, 5, "/a", "y", 2, 2, 1),
    ]));
    assert_eq!(good.verdict, Verdict::Linearizable, "{}", good.to_text("t"));
    let twice = run(cat(vec![
        create(1, 1, "/a", "x", 1),
        watch_get(1, 1, "x", 0),
        set(1, 1, "/a", "y", 2),
        vec![notify.clone()],
        set(1, 1, "/a", "z", 3),
        vec![notify.clone()],
    ]));
    assert_eq!(
        props(&twice),
        vec!["watch-at-most-once"],
        "{}",
        twice.to_text("t")
    );
    // The client handed over the event before it completed the read that set the watch
    // (the read saw the old data): the event fires that read's watch, once.
    let mut early_read = watch_get(1, 1, "x", 0);
    let early_done = early_read.pop().unwrap();
    let early = run(cat(vec![
        create(1, 1, "/a", "x", 1),
        early_read.clone(),
        set(1, 1, "/a", "y", 2),
        vec![notify.clone(), early_done.clone()],
        get(0, 5, "/a", "y", 2, 2, 1),
    ]));
    assert_eq!(
        early.verdict,
        Verdict::Linearizable,
        "{}",
        early.to_text("t")
    );
    let early_twice = run(cat(vec![
        create(1, 1, "/a", "x", 1),
        early_read,
        set(1, 1, "/a", "y", 2),
        vec![notify.clone(), early_done, notify.clone()],
    ]));
    assert_eq!(
        props(&early_twice),
        vec!["watch-at-most-once"],
        "{}",
        early_twice.to_text("t")
    );
    let late = run(cat(vec![
        create(1, 1, "/a", "x", 1),
        watch_get(1, 1, "x", 0),
        set(1, 1, "/a", "y", 2),
        get(0, 5, "/a", "y", 2, 2, 1),
        vec![notify],
    ]));
    assert_eq!(
        props(&late),
        vec!["watch-before-change"],
        "{}",
        late.to_text("t")
    );
}

#[test]
fn ephemerals_vanish_after_expiry() {
    let eph = op(
        0,
        9,
        "create",
        json!({"path": "/e", "value": "", "mode": "ephemeral"}),
        json!({"zxid": 1, "result": "/e"}),
    );
    let expired =
        json!({"process": 0, "type": "event", "f": "session", "event": "expired", "session": 9});
    let qread = |exists: bool| {
        let stat = if exists {
            json!({"mzxid": 1, "czxid": 1, "ephemeralOwner": 9})
        } else {
            Value::Null
        };
        let mut c = json!({"zxid": 2});
        if exists {
            c["stat"] = stat;
        }
        op(1, 2, "exists", json!({"path": "/e", "quorum": true}), c)
    };
    let good = run(cat(vec![eph.clone(), vec![expired.clone()], qread(false)]));
    assert_eq!(good.verdict, Verdict::Linearizable, "{}", good.to_text("t"));
    // Before the expiry is observed the ephemeral may still be there or gone.
    let early = run(cat(vec![eph.clone(), qread(false), vec![expired.clone()]]));
    assert_eq!(
        early.verdict,
        Verdict::Linearizable,
        "{}",
        early.to_text("t")
    );
    let bad = run(cat(vec![eph, vec![expired], qread(true)]));
    let p = props(&bad);
    assert!(
        p.contains(&"ephemeral-after-expiry") && p.contains(&"linearizable"),
        "{}",
        bad.to_text("t")
    );
}

#[test]
fn independent_paths_are_separate_parts() {
    let r = run(cat(vec![
        create(0, 1, "/a", "x", 1),
        create(1, 2, "/b", "y", 2),
        create(0, 1, "/a/c", "z", 3),
    ]));
    assert_eq!(r.verdict, Verdict::Linearizable);
    assert_eq!(r.parts.len(), 2, "{:?}", r.parts);
}

/// A real sequential execution of znode ops on a tiny tree, with random overlaps: each op
/// takes effect (gets the next zxid) at a random point inside its interval.
fn gen_zk(seed: u64, n: usize, procs: usize) -> Vec<Event> {
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let paths = ["/a", "/b", "/a/c"];
    let mut tree: BTreeMap<String, (String, i32, i64)> = BTreeMap::new(); // data, version, mzxid
    let mut zxid = 0i64;
    // (time, phase, process); phase 0 invoke, 1 effect, 2 complete
    let mut heap = std::collections::BinaryHeap::new();
    let mut pending: Vec<Option<(Value, Value)>> = vec![None; procs];
    let mut out = Vec::new();
    let mut started = 0;
    for p in 0..procs {
        heap.push(std::cmp::Reverse((rng.gen_range(0..100u64), 0u8, p)));
    }
    while let Some(std::cmp::Reverse((t, phase, p))) = heap.pop() {
        let s = p as i64 + 1;
        match phase {
            0 if started < n => {
                started += 1;
                let path = paths[rng.gen_range(0..paths.len())];
                let inv = match rng.gen_range(0..5) {
                    0 => json!({"f": "create", "path": path, "value": format!("d{t}")}),
                    1 => json!({"f": "delete", "path": path}),
                    2 => json!({"f": "setData", "path": path, "value": format!("d{t}")}),
                    _ => json!({"f": "getData", "path": path, "quorum": rng.gen_bool(0.5)}),
                };
                let mut e = inv.clone();
                e["process"] = json!(p);
                e["type"] = json!("invoke");
                e["session"] = json!(s);
                out.push(e);
                pending[p] = Some((inv, json!({})));
                heap.push(std::cmp::Reverse((t + rng.gen_range(1..50), 1, p)));
            }
            0 => {}
            1 => {
                let (inv, res) = pending[p].as_mut().unwrap();
                let path = inv["path"].as_str().unwrap().to_string();
                let parent_ok = path != "/a/c" || tree.contains_key("/a");
                match inv["f"].as_str().unwrap() {
                    "create" if !parent_ok => *res = json!({"error": "NoNode", "zxid": zxid}),
                    "create" if tree.contains_key(&path) => {
                        *res = json!({"error": "NodeExists", "zxid": zxid})
                    }
                    "create" => {
                        zxid += 1;
                        tree.insert(path.clone(), (inv["value"].to_string(), 0, zxid));
                        *res = json!({"zxid": zxid, "result": path});
                    }
                    "delete" if !tree.contains_key(&path) => {
                        *res = json!({"error": "NoNode", "zxid": zxid})
                    }
                    "delete" if path == "/a" && tree.contains_key("/a/c") => {
                        *res = json!({"error": "NotEmpty", "zxid": zxid})
                    }
                    "delete" => {
                        zxid += 1;
                        tree.remove(&path);
                        *res = json!({"zxid": zxid});
                    }
                    "setData" => match tree.get_mut(&path) {
                        None => *res = json!({"error": "NoNode", "zxid": zxid}),
                        Some(n) => {
                            zxid += 1;
                            n.0 = inv["value"].to_string();
                            n.1 += 1;
                            n.2 = zxid;
                            *res = json!({"zxid": zxid, "stat": {"version": n.1, "mzxid": zxid}});
                        }
                    },
                    _ => match tree.get(&path) {
                        None => *res = json!({"error": "NoNode", "zxid": zxid}),
                        Some(n) => {
                            let data: Value = serde_json::from_str(&n.0).unwrap();
                            *res = json!({"zxid": zxid, "value": data, "stat": {"version": n.1, "mzxid": n.2, "czxid": 0}})
                        }
                    },
                }
                heap.push(std::cmp::Reverse((t + rng.gen_range(1..50), 2, p)));
            }
            _ => {
                let (inv, res) = pending[p].take().unwrap();
                let mut e = inv.clone();
                for (k, v) in res.as_object().unwrap() {
                    e[k] = v.clone();
                }
                e["process"] = json!(p);
                e["type"] = json!("ok");
                e["session"] = json!(s);
                out.push(e);
                heap.push(std::cmp::Reverse((t + rng.gen_range(1..30), 0, p)));
            }
        }
    }
    out.into_iter().map(ev).collect()
}

#[test]
fn generated_zk_histories_pass_and_a_corrupted_quorum_read_fails() {
    let mut caught = 0;
    for seed in 0..20u64 {
        let events = gen_zk(seed, 40, 3);
        let r = check_history(&events, Model::Zk, &CheckOptions::default());
        assert_eq!(
            r.verdict,
            Verdict::Linearizable,
            "seed {seed}: {}",
            r.to_text("gen")
        );
        // Alter one successful quorum read's data.
        let mut bad = events.clone();
        if let Some(i) = bad.iter().position(|e| {
            e.kind == zabkeeper_check::EventType::Ok
                && e.quorum
                && e.f == "getData"
                && e.error.is_none()
        }) {
            bad[i].value = json!("never written");
            let r = check_history(&bad, Model::Zk, &CheckOptions::default());
            assert_eq!(
                r.verdict,
                Verdict::NotLinearizable,
                "seed {seed}: {}",
                r.to_text("bad")
            );
            assert!(props(&r).contains(&"linearizable"));
            caught += 1;
        }
    }
    assert!(caught > 8, "{caught}");
}
