//! History events (the JSON Lines format of `docs/spec/history-format.md`, extended with
//! the ZooKeeper fields documented in `checker/README.md`) and their pairing into operations.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::BufRead;

/// What an event line says about its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The client sent the operation.
    #[default]
    Invoke,
    /// The operation took effect and its result is known.
    Ok,
    /// The operation definitely did not take effect.
    Fail,
    /// Unknown outcome: it may take effect at any time after its invoke, or never.
    Info,
    /// A notification pushed by the server without an invoke (zk model: a watch event or a
    /// session state change such as `expired`).
    Event,
}

/// The `stat` of a znode as returned by getData / exists / setData (zk model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ZkStat {
    /// Zxid of the txn that created the znode.
    pub czxid: i64,
    /// Zxid of the txn that last modified the znode's data.
    pub mzxid: i64,
    /// Data version.
    pub version: i32,
    /// Child version.
    pub cversion: i32,
    /// Session id of the owner if ephemeral, else 0.
    #[serde(rename = "ephemeralOwner")]
    pub ephemeral_owner: i64,
    /// Number of children.
    #[serde(rename = "numChildren")]
    pub num_children: i32,
}

/// One line of a history. The sim builds these directly; `parse_jsonl` reads them from JSON.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// Client thread id; one operation in flight per process.
    pub process: u64,
    /// invoke / ok / fail / info / event.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// Operation name.
    pub f: String,
    /// Register-family key (absent: the single register).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Argument on invoke; value read on the ok of a read.
    pub value: Value,
    /// Monotonic nanoseconds, for reports only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
    /// Outcome where `value` does not carry it (cas: `false` = did not match).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// zk: session id of the client.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<i64>,
    /// zk: zxid of the reply header (completions, notifications).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zxid: Option<i64>,
    /// zk: server the client was connected to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// zk: znode path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// zk: create mode (`persistent`, `ephemeral`, `persistent_sequential`, `ephemeral_sequential`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// zk: expected version of delete / setData (-1 = any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    /// zk: ZooKeeper error code name on an `ok` completion whose reply was an error (e.g. `NoNode`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// zk: the returned stat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stat: Option<ZkStat>,
    /// zk: the read set a one-shot watch.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub watch: bool,
    /// zk: the read is linearizable by ZooKeeper's contract (a quorum read, a read from a
    /// standalone server, or a sync and the read as one operation): checked as such.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub quorum: bool,
    /// zk notifications: the event type (`NodeCreated`, `NodeDeleted`, `NodeDataChanged`,
    /// `NodeChildrenChanged`) or, for `f:"session"`, the state (`expired`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// I/O error while reading.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not valid JSON for an event.
    #[error("line {line}: {msg}")]
    Json {
        /// 1-based line number.
        line: usize,
        /// serde_json's message.
        msg: String,
    },
    /// The events do not form a well-formed history.
    #[error("event {event} (line {line}): {msg}", line = event + 1)]
    Malformed {
        /// 0-based event index.
        event: usize,
        /// What is wrong.
        msg: String,
    },
}

/// Reads a JSON Lines history. Blank lines are skipped (but count for line numbers).
pub fn parse_jsonl<R: BufRead>(reader: R) -> Result<Vec<Event>, ParseError> {
    let mut events = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let ev: Event = serde_json::from_str(&line).map_err(|e| ParseError::Json {
            line: i + 1,
            msg: e.to_string(),
        })?;
        events.push(ev);
    }
    Ok(events)
}

/// Writes events as JSON Lines.
pub fn write_jsonl<W: std::io::Write>(events: &[Event], mut w: W) -> std::io::Result<()> {
    for e in events {
        serde_json::to_writer(&mut w, e)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Took effect, result known.
    Ok,
    /// Did not take effect.
    Fail,
    /// Unknown (an `info` completion, or no completion at all).
    Info,
}

/// An invoke paired with its completion. Operations are numbered in invoke order; these
/// numbers are the "op indices" of reports.
#[derive(Debug, Clone)]
pub struct Op {
    /// Index of this op in invoke order.
    pub index: usize,
    /// Client process.
    pub process: u64,
    /// Event index of the invoke.
    pub invoke: usize,
    /// Event index of the completion, if any.
    pub complete: Option<usize>,
    /// Outcome.
    pub status: Status,
}

impl Op {
    /// The invoke event.
    pub fn inv<'a>(&self, events: &'a [Event]) -> &'a Event {
        &events[self.invoke]
    }
    /// The completion event, if any.
    pub fn comp<'a>(&self, events: &'a [Event]) -> Option<&'a Event> {
        self.complete.map(|c| &events[c])
    }
}

/// Pairs invokes with completions. `event`-type lines are not operations and are skipped.
pub fn pair_ops(events: &[Event]) -> Result<Vec<Op>, ParseError> {
    let mut ops: Vec<Op> = Vec::new();
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        match e.kind {
            EventType::Event => {}
            EventType::Invoke => {
                if let Some(&o) = open.get(&e.process) {
                    return Err(ParseError::Malformed {
                        event: i,
                        msg: format!(
                            "process {} invokes while op at event {} is in flight",
                            e.process, ops[o].invoke
                        ),
                    });
                }
                open.insert(e.process, ops.len());
                ops.push(Op {
                    index: ops.len(),
                    process: e.process,
                    invoke: i,
                    complete: None,
                    status: Status::Info,
                });
            }
            EventType::Ok | EventType::Fail | EventType::Info => {
                let Some(o) = open.remove(&e.process) else {
                    return Err(ParseError::Malformed {
                        event: i,
                        msg: format!("completion for process {} without an invoke", e.process),
                    });
                };
                let inv = &events[ops[o].invoke];
                if inv.f != e.f {
                    return Err(ParseError::Malformed {
                        event: i,
                        msg: format!("completion f {:?} does not match invoke f {:?}", e.f, inv.f),
                    });
                }
                ops[o].complete = Some(i);
                ops[o].status = match e.kind {
                    EventType::Ok => Status::Ok,
                    EventType::Fail => Status::Fail,
                    _ => Status::Info,
                };
            }
        }
    }
    Ok(ops)
}
