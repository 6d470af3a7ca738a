//! ZooKeeper's contract on the client history, judged by the checker's `zk` model as it
//! is (the history is recorded in the checker's event type): deterministically, on one
//! thread, without a wall-clock limit, with a configuration budget that ends in
//! [`Verdict::Unknown`].

use zabkeeper_check as zc;

use super::{violation, Verdict};
use crate::history::Event;

/// Memoized search configurations the checker may use per part before answering `unknown`.
pub const CHECKER_BUDGET: usize = 2_000_000;

/// The `zk` model's verdict on `history`. A violation names the property, the part
/// (group of paths), the checker's message and the operations involved; a history the
/// checker cannot read is a `well-formed` violation (the recorder's bug, never a pass).
pub fn check(history: &[Event]) -> Verdict {
    let opts = zc::CheckOptions {
        max_configs: CHECKER_BUDGET,
        time_limit: None,
        threads: 1,
        minimize: true,
        max_minimize_ops: 500,
        minimize_time: None,
    };
    let report = zc::check_history(history, zc::Model::Zk, &opts);
    match (report.verdict, report.violations.first()) {
        (zc::Verdict::Linearizable, _) => Verdict::Pass,
        (_, Some(v)) => violation(
            &v.property,
            format!(
                "{}{}{}",
                v.part
                    .as_deref()
                    .map(|p| format!("{p}: "))
                    .unwrap_or_default(),
                v.message,
                if v.details.is_empty() {
                    String::new()
                } else {
                    format!("; {}", v.details.join("; "))
                }
            ),
        ),
        (_, None) => match report.error {
            Some(err) => violation("well-formed", err),
            None => Verdict::Unknown {
                reason: format!("checker budget of {CHECKER_BUDGET} configurations exhausted"),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{EventType, ZkStat};
    use serde_json::{json, Value};

    /// One operation of `session` as invoke + completion (`kind`), with the completion's
    /// value, zxid, stat and error.
    struct Op<'a> {
        process: u64,
        session: i64,
        f: &'a str,
        path: &'a str,
        value: Value,
        version: Option<i32>,
        quorum: bool,
        mode: Option<&'a str>,
    }

    impl Op<'_> {
        fn done(&self, kind: EventType, value: Value, zxid: Option<i64>) -> [Event; 2] {
            let inv = Event {
                process: self.process,
                f: self.f.into(),
                path: Some(self.path.into()),
                value: self.value.clone(),
                session: Some(self.session),
                version: self.version,
                quorum: self.quorum,
                mode: self.mode.map(str::to_string),
                ..Event::default()
            };
            let comp = Event {
                kind,
                value,
                zxid,
                ..inv.clone()
            };
            [inv, comp]
        }
    }

    fn op<'a>(process: u64, f: &'a str, path: &'a str, value: Value) -> Op<'a> {
        Op {
            process,
            session: process as i64 + 1,
            f,
            path,
            value,
            version: None,
            quorum: false,
            mode: None,
        }
    }

    fn read(process: u64, path: &str, saw: &str, version: i32, zxid: i64) -> [Event; 2] {
        let mut r = op(process, "getData", path, Value::Null);
        r.quorum = true;
        let [inv, mut comp] = r.done(EventType::Ok, json!(saw), Some(zxid));
        comp.stat = Some(ZkStat {
            version,
            mzxid: zxid,
            czxid: 1,
            ..ZkStat::default()
        });
        [inv, comp]
    }

    fn property(v: &Verdict) -> &str {
        match v {
            Verdict::Violation { check, .. } => check,
            Verdict::Pass => "pass",
            Verdict::Unknown { .. } => "unknown",
        }
    }

    #[test]
    fn linearizable_reads_see_the_last_acknowledged_write() {
        let create =
            op(0, "create", "/r0", json!("init")).done(EventType::Ok, Value::Null, Some(1));
        let set = op(0, "setData", "/r0", json!("c0-1")).done(EventType::Ok, Value::Null, Some(2));
        let good: Vec<Event> = [create.clone(), set.clone(), read(1, "/r0", "c0-1", 1, 2)].concat();
        assert_eq!(check(&good), Verdict::Pass);
        let stale: Vec<Event> = [create, set, read(1, "/r0", "init", 0, 1)].concat();
        assert_eq!(
            property(&check(&stale)),
            "linearizable",
            "{:?}",
            check(&stale)
        );
    }

    #[test]
    fn a_conditional_set_that_ignores_its_version_is_caught() {
        let create =
            op(0, "create", "/r0", json!("init")).done(EventType::Ok, Value::Null, Some(1));
        let first = op(0, "setData", "/r0", json!("a")).done(EventType::Ok, Value::Null, Some(2));
        let mut cas = op(1, "setData", "/r0", json!("b"));
        cas.version = Some(0);
        // Version 0 was gone (the first set made it 1), yet the cas was acknowledged.
        let lost = cas.done(EventType::Ok, Value::Null, Some(3));
        let h: Vec<Event> = [create, first, lost].concat();
        assert_eq!(property(&check(&h)), "linearizable");
    }

    #[test]
    fn two_holders_of_an_ephemeral_lock_are_caught_and_expiry_frees_it() {
        let mut a = op(0, "create", "/lock", json!("c0"));
        a.mode = Some("ephemeral");
        let mut b = op(1, "create", "/lock", json!("c1"));
        b.mode = Some("ephemeral");
        let held = a.done(EventType::Ok, Value::Null, Some(1));
        // A session may expire unseen, freeing its lock (the linearizability check is per
        // path, so a later op of the first session elsewhere proves nothing here); a read
        // after the second create that still shows the first holder's lock does.
        let both: Vec<Event> = [
            held.clone(),
            b.done(EventType::Ok, Value::Null, Some(2)),
            read(2, "/lock", "c0", 0, 1),
        ]
        .concat();
        assert_eq!(property(&check(&both)), "linearizable");
        let unseen: Vec<Event> =
            [held.clone(), b.done(EventType::Ok, Value::Null, Some(2))].concat();
        assert_eq!(
            check(&unseen),
            Verdict::Pass,
            "an unseen expiry explains the second holder"
        );
        // After the first holder's session is told it expired, the lock is free.
        let expired = Event {
            kind: EventType::Event,
            f: "session".into(),
            event: Some("expired".into()),
            session: Some(1),
            ..Event::default()
        };
        let freed: Vec<Event> = [
            held.to_vec(),
            vec![expired],
            b.done(EventType::Ok, Value::Null, Some(2)).to_vec(),
        ]
        .concat();
        assert_eq!(check(&freed), Verdict::Pass);
    }

    #[test]
    fn an_unreadable_history_is_never_a_pass() {
        let [inv, _] = op(0, "getData", "/r0", Value::Null).done(EventType::Ok, Value::Null, None);
        let twice = vec![inv.clone(), inv];
        assert_eq!(property(&check(&twice)), "well-formed");
    }
}
