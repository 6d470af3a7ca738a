//! Verdicts and their text / JSON rendering.

use crate::history::{Event, Op, Status};
use crate::search::Outcome;
use crate::Model;
use serde::Serialize;
use std::fmt::Write as _;

/// A verdict for a file or a part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// Every checked property holds.
    #[serde(rename = "linearizable")]
    Linearizable,
    /// A property is violated.
    #[serde(rename = "not linearizable")]
    NotLinearizable,
    /// A budget ran out or the input could not be judged; never a guess.
    #[serde(rename = "unknown")]
    Unknown,
}

impl Verdict {
    /// The process exit status for this verdict: 0, 1, 2.
    pub fn exit_code(self) -> i32 {
        match self {
            Verdict::Linearizable => 0,
            Verdict::NotLinearizable => 1,
            Verdict::Unknown => 2,
        }
    }
    /// Combines verdicts: any violation wins, then unknown.
    pub fn and(self, other: Verdict) -> Verdict {
        use Verdict::*;
        match (self, other) {
            (NotLinearizable, _) | (_, NotLinearizable) => NotLinearizable,
            (Unknown, _) | (_, Unknown) => Unknown,
            _ => Linearizable,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "not linearizable",
            Verdict::Unknown => "unknown",
        })
    }
}

/// The verdict of one independent part (a key, a group of znode paths, a contract check).
#[derive(Debug, Clone, Serialize)]
pub struct PartReport {
    /// Part name, e.g. `key x` or `paths /a`.
    pub name: String,
    /// Operations in the part.
    pub ops: usize,
    /// Verdict.
    pub verdict: Verdict,
    /// Memoized configurations the search used.
    pub configs: usize,
    /// Why `unknown`, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A violated property with the operations involved.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    /// Property name (`linearizable`, `session-fifo`, `session-zxid-monotonic`, ...).
    pub property: String,
    /// The part it was found in, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    /// Op indices (invoke order) of the operations involved; for `linearizable`, a minimal
    /// counterexample.
    pub ops: Vec<usize>,
    /// Event indices (0-based line numbers) of notifications involved, if any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<usize>,
    /// Human explanation.
    pub message: String,
    /// One line per op involved (filled in by the checker).
    pub details: Vec<String>,
}

impl Violation {
    /// A violation of `property` involving `ops`.
    pub fn new(property: &str, ops: Vec<usize>, message: String) -> Self {
        Violation {
            property: property.into(),
            part: None,
            ops,
            events: Vec::new(),
            message,
            details: Vec::new(),
        }
    }
}

/// The result of checking one history.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Model checked.
    pub model: Model,
    /// Overall verdict.
    pub verdict: Verdict,
    /// Operations in the history.
    pub ops: usize,
    /// Per-part verdicts.
    pub parts: Vec<PartReport>,
    /// Violations found.
    pub violations: Vec<Violation>,
    /// Why the history could not be judged, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    /// An empty report.
    pub fn new(model: Model) -> Self {
        Report {
            model,
            verdict: Verdict::Linearizable,
            ops: 0,
            parts: Vec::new(),
            violations: Vec::new(),
            error: None,
        }
    }

    /// A report for input that could not be judged.
    pub fn error(model: Model, msg: String) -> Self {
        let mut r = Report::new(model);
        r.verdict = Verdict::Unknown;
        r.error = Some(msg);
        r
    }

    /// Adds a part from a search outcome and its counterexample.
    pub fn add_part(
        &mut self,
        name: &str,
        ops: usize,
        configs: usize,
        out: Outcome,
        cex: Option<Vec<usize>>,
    ) {
        let (verdict, reason) = match out {
            Outcome::Linearizable => (Verdict::Linearizable, None),
            Outcome::NotLinearizable { .. } => (Verdict::NotLinearizable, None),
            Outcome::Unknown { reason } => (Verdict::Unknown, Some(reason)),
        };
        if verdict == Verdict::NotLinearizable {
            let ops_v = cex.unwrap_or_default();
            let mut v = Violation::new(
                "linearizable",
                ops_v.clone(),
                format!(
                    "no linearization exists; these {} operations cannot be linearized \
                     (every other operation of the part relaxed to an unknown outcome)",
                    ops_v.len()
                ),
            );
            v.part = Some(name.to_string());
            self.violations.push(v);
        }
        self.parts.push(PartReport {
            name: name.to_string(),
            ops,
            verdict,
            configs,
            reason,
        });
    }

    /// Computes the overall verdict and fills in op descriptions.
    pub fn finish(&mut self, events: &[Event], ops: &[Op]) {
        self.ops = ops.len();
        let mut v = if self.error.is_some() {
            Verdict::Unknown
        } else {
            Verdict::Linearizable
        };
        for p in &self.parts {
            v = v.and(p.verdict);
        }
        if !self.violations.is_empty() {
            v = Verdict::NotLinearizable;
        }
        self.verdict = v;
        for viol in &mut self.violations {
            viol.details = viol
                .ops
                .iter()
                .filter_map(|&i| ops.get(i))
                .map(|o| describe(events, o))
                .collect();
            for &e in &viol.events {
                if let Some(ev) = events.get(e) {
                    viol.details.push(format!(
                        "line {}: p{} event {} {} {}",
                        e + 1,
                        ev.process,
                        ev.f,
                        ev.event.as_deref().unwrap_or(""),
                        ev.path.as_deref().unwrap_or("")
                    ));
                }
            }
        }
    }

    /// Human-readable text.
    pub fn to_text(&self, file: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{file}: {} ({} model, {} ops)",
            self.verdict, self.model, self.ops
        );
        if let Some(e) = &self.error {
            let _ = writeln!(s, "  error: {e}");
        }
        let shown: Vec<&PartReport> = if self.parts.len() > 20 {
            self.parts
                .iter()
                .filter(|p| p.verdict != Verdict::Linearizable)
                .collect()
        } else {
            self.parts.iter().collect()
        };
        if shown.len() < self.parts.len() {
            let _ = writeln!(
                s,
                "  {} parts ({} linearizable, not listed)",
                self.parts.len(),
                self.parts.len() - shown.len()
            );
        }
        for p in shown {
            let _ = write!(
                s,
                "  {}: {} ({} ops, {} configs)",
                p.name, p.verdict, p.ops, p.configs
            );
            if let Some(r) = &p.reason {
                let _ = write!(s, " - {r}");
            }
            s.push('\n');
        }
        for v in &self.violations {
            let _ = writeln!(
                s,
                "  VIOLATION {}{}: {}",
                v.property,
                v.part
                    .as_ref()
                    .map(|p| format!(" [{p}]"))
                    .unwrap_or_default(),
                v.message
            );
            for d in &v.details {
                let _ = writeln!(s, "    {d}");
            }
        }
        s
    }
}

/// One line describing an op: index, process, call, outcome and the lines it came from.
pub fn describe(events: &[Event], o: &Op) -> String {
    let inv = &events[o.invoke];
    let mut s = format!("op {} p{} {}", o.index, o.process, inv.f);
    if let Some(k) = &inv.key {
        let _ = write!(s, " {k}");
    }
    if let Some(p) = &inv.path {
        let _ = write!(s, " {p}");
    }
    if !inv.value.is_null() {
        let _ = write!(s, " {}", inv.value);
    }
    match (o.status, o.comp(events)) {
        (Status::Ok, Some(c)) => {
            s.push_str(" -> ok");
            if !c.value.is_null() {
                let _ = write!(s, " {}", c.value);
            }
            if let Some(r) = &c.result {
                let _ = write!(s, " result={r}");
            }
            if let Some(e) = &c.error {
                let _ = write!(s, " error={e}");
            }
            if let Some(z) = c.zxid {
                let _ = write!(s, " zxid={z:#x}");
            }
        }
        (Status::Fail, _) => s.push_str(" -> fail"),
        _ => s.push_str(" -> unknown"),
    }
    if let Some(sess) = inv.session {
        let _ = write!(s, " session={sess:#x}");
    }
    match o.complete {
        Some(c) => {
            let _ = write!(s, " (lines {}-{})", o.invoke + 1, c + 1);
        }
        None => {
            let _ = write!(s, " (line {}, never completed)", o.invoke + 1);
        }
    }
    s
}
