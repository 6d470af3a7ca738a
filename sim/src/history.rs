//! Recording client operations as invoke/ok/fail/info events in the history format of
//! `docs/spec/history-format.md` (JSON Lines), with ZooKeeper's extra fields.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `type` of a history event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The operation was issued.
    Invoke,
    /// It took effect; the result is known.
    Ok,
    /// It definitely did not take effect.
    Fail,
    /// Unknown: it may take effect at any time after its invoke, or never.
    Info,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// Client thread id; one operation in flight per process.
    pub process: u64,
    /// invoke / ok / fail / info.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Operation name (`read`, `write`, `cas`, `create`, `delete`, `sync`, ...).
    pub f: String,
    /// The key (znode path) where the operation touches one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub key: Option<String>,
    /// Argument on invoke; value read on a read's ok.
    #[serde(default)]
    pub value: Value,
    /// Virtual time in ns since the start of the run.
    pub time: u64,
    /// Outcome where `value` does not carry it (`false` for a cas that did not match).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub result: Option<Value>,
    /// ZooKeeper session id (hex) of the client.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub session: Option<String>,
    /// The server the client was connected to (`s<i>`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<String>,
    /// The zxid the reply carried.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub zxid: Option<i64>,
    /// Error name on fail/info.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

impl HistoryEvent {
    /// A bare event.
    pub fn new(process: u64, kind: EventType, f: &str, key: Option<&str>, value: Value) -> Self {
        HistoryEvent {
            process,
            kind,
            f: f.to_string(),
            key: key.map(str::to_string),
            value,
            time: 0,
            result: None,
            session: None,
            node: None,
            zxid: None,
            error: None,
        }
    }
}

/// A shared, append-only history for the tasks of one simulated run (`Arc<Mutex>` because
/// madsim's node init closures must be `Send + Sync`; the sim itself is single-threaded).
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<HistoryEvent>>>,
}

impl Recorder {
    /// Append an event.
    pub fn record(&self, event: HistoryEvent) {
        self.events.lock().expect("history lock").push(event);
    }

    /// A copy of every event so far.
    pub fn snapshot(&self) -> Vec<HistoryEvent> {
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
pub fn to_jsonl(events: &[HistoryEvent]) -> String {
    let mut out = String::new();
    for e in events {
        out.push_str(&serde_json::to_string(e).expect("history events serialise"));
        out.push('\n');
    }
    out
}

/// Parse JSON Lines back (for replay tooling and tests).
pub fn from_jsonl(text: &str) -> anyhow::Result<Vec<HistoryEvent>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn serialises_in_the_spec_format() {
        let mut e = HistoryEvent::new(2, EventType::Ok, "cas", Some("/r/0"), json!(["a", "b"]));
        e.time = 1500;
        e.result = Some(json!(false));
        e.zxid = Some(0x1_0000_0003);
        let line = serde_json::to_string(&e).unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], "ok");
        assert_eq!(v["process"], 2);
        assert_eq!(v["f"], "cas");
        assert_eq!(v["key"], "/r/0");
        assert_eq!(v["value"], json!(["a", "b"]));
        assert_eq!(v["result"], json!(false));
        assert!(v.get("session").is_none());
        let back = from_jsonl(&to_jsonl(&[e.clone()])).unwrap();
        assert_eq!(back, vec![e]);
    }

    #[test]
    fn recorder_keeps_order() {
        let r = Recorder::default();
        r.record(HistoryEvent::new(
            0,
            EventType::Invoke,
            "read",
            None,
            Value::Null,
        ));
        r.clone()
            .record(HistoryEvent::new(0, EventType::Ok, "read", None, json!(1)));
        let s = r.snapshot();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].kind, EventType::Ok);
    }
}
