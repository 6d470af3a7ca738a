//! The client history of a run, in the checker's own event type: the simulator records
//! `zabkeeper_check::Event`s (the JSON Lines format of `docs/spec/history-format.md` with
//! the `zk` fields of `checker/README.md`), and the checker's `zk` model judges them as
//! they are. A run's `history.jsonl` is also what `zabkeeper-check --model zk` reads.

use std::sync::{Arc, Mutex};

pub use zabkeeper_check::{Event, EventType, ZkStat};

/// A shared, append-only history for the tasks of one simulated run (`Arc<Mutex>` because
/// madsim's node init closures must be `Send + Sync`; the sim itself is single-threaded).
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    /// Append an event.
    pub fn record(&self, event: Event) {
        self.events.lock().expect("history lock").push(event);
    }

    /// A copy of every event so far.
    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().expect("history lock").clone()
    }

    /// Number of events so far.
    pub fn len(&self) -> usize {
        self.events.lock().expect("history lock").len()
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.events.lock().expect("history lock").is_empty()
    }
}

/// Render a history as JSON Lines.
pub fn to_jsonl(events: &[Event]) -> String {
    let mut out = Vec::new();
    zabkeeper_check::write_jsonl(events, &mut out).expect("history events serialise");
    String::from_utf8(out).expect("JSON is UTF-8")
}

/// Parse JSON Lines back (for replay tooling and tests).
pub fn from_jsonl(text: &str) -> anyhow::Result<Vec<Event>> {
    Ok(zabkeeper_check::parse_jsonl(text.as_bytes())?)
}

/// A session id as the checker's `session` field holds it, from the `{:#x}` text the
/// node's logs and the harness's notes use.
pub fn session_id(hex: &str) -> Option<i64> {
    u64::from_str_radix(hex.trim_start_matches("0x"), 16)
        .ok()
        .map(|v| v as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn serialises_in_the_checker_format() {
        let e = Event {
            process: 2,
            kind: EventType::Ok,
            f: "setData".into(),
            path: Some("/r0".into()),
            value: json!("c0-1"),
            time: Some(1500),
            session: Some(0x1_0000_0003),
            zxid: Some(0x1_0000_0003),
            error: Some("BadVersion".into()),
            ..Event::default()
        };
        let line = to_jsonl(std::slice::from_ref(&e));
        let v: Value = serde_json::from_str(line.trim()).unwrap();
        assert_eq!(v["type"], "ok");
        assert_eq!(v["f"], "setData");
        assert_eq!(v["path"], "/r0");
        assert_eq!(v["error"], "BadVersion");
        assert!(v.get("stat").is_none());
        assert_eq!(from_jsonl(&line).unwrap(), vec![e]);
    }

    #[test]
    fn recorder_keeps_order_and_session_ids_parse() {
        let r = Recorder::default();
        r.record(Event {
            f: "getData".into(),
            ..Event::default()
        });
        r.clone().record(Event {
            kind: EventType::Ok,
            f: "getData".into(),
            ..Event::default()
        });
        let s = r.snapshot();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].kind, EventType::Ok);
        assert_eq!(session_id("0x10000a"), Some(0x10000a));
        assert_eq!(session_id("0xffffffffffffffff"), Some(-1));
        assert_eq!(session_id("zz"), None);
    }
}
