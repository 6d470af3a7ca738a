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
