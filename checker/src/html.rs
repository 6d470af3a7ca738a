//! Self-contained HTML timeline reports: one lane per process, operations as bars over
//! time, the operations of violations highlighted. No scripts or external resources.

use crate::history::{pair_ops, Event, EventType, Status};
use crate::report::{describe, Report};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Most operations drawn per file.
const MAX_DRAWN: usize = 3000;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML section for one checked file.
pub fn section(file: &str, events: &[Event], report: &Report) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<section><h2>{}: <span class=\"v{}\">{}</span></h2>",
        esc(file),
        report.verdict.exit_code(),
        report.verdict
    );
    if let Some(e) = &report.error {
        let _ = write!(s, "<p>error: {}</p>", esc(e));
    }
    for v in &report.violations {
        let _ = write!(s, "<p class=\"viol\"><b>{}</b>", esc(&v.property));
        if let Some(p) = &v.part {
            let _ = write!(s, " [{}]", esc(p));
        }
        let _ = write!(s, ": {}</p><ul>", esc(&v.message));
        for d in &v.details {
            let _ = write!(s, "<li>{}</li>", esc(d));
        }
        s.push_str("</ul>");
    }
    let Ok(ops) = pair_ops(events) else {
        s.push_str("</section>");
        return s;
    };
    if ops.is_empty() {
        s.push_str("</section>");
        return s;
    }
    let bad: BTreeSet<usize> = report
        .violations
        .iter()
        .flat_map(|v| v.ops.iter().copied())
        .collect();
    let bad_events: BTreeSet<usize> = report
        .violations
        .iter()
        .flat_map(|v| v.events.iter().copied())
        .collect();
    // Position of an event on the time axis: its `time` if every event has one, else its index.
    let use_time = events.iter().all(|e| e.time.is_some());
    let pos = |i: usize| -> f64 {
        if use_time {
            events[i].time.unwrap_or(0) as f64
        } else {
            i as f64
        }
    };
    let last = events.len() - 1;
    // Window: around the violating ops, else the start of the history.
    let (lo_ev, hi_ev) = if bad.is_empty() {
        (0, last)
    } else {
        let lo = bad.iter().map(|&i| ops[i].invoke).min().unwrap_or(0);
        let hi = bad
            .iter()
            .map(|&i| ops[i].complete.unwrap_or(ops[i].invoke))
            .max()
            .unwrap_or(last);
        (lo, hi)
    };
    let mut drawn: Vec<usize> = ops
        .iter()
        .filter(|o| o.invoke <= hi_ev && o.complete.is_none_or(|c| c >= lo_ev))
        .map(|o| o.index)
        .collect();
    if drawn.len() > MAX_DRAWN {
        // Keep the violating ops and their nearest neighbours in invoke order.
        let keep: BTreeSet<usize> = drawn
            .iter()
            .copied()
            .filter(|i| bad.contains(i))
            .chain(drawn.iter().copied().take(MAX_DRAWN))
            .collect();
        drawn = keep.into_iter().collect();
        let _ = write!(
            s,
            "<p>showing {} of {} operations</p>",
            drawn.len(),
            ops.len()
        );
    }
    let t0 = drawn
        .iter()
        .map(|&i| pos(ops[i].invoke))
        .fold(f64::INFINITY, f64::min);
    let t1 = drawn
        .iter()
        .map(|&i| pos(ops[i].complete.unwrap_or(hi_ev.max(ops[i].invoke))))
        .fold(f64::NEG_INFINITY, f64::max)
        .max(t0 + 1.0);
    let lanes: BTreeMap<u64, usize> = {
        let procs: BTreeSet<u64> = drawn.iter().map(|&i| ops[i].process).collect();
        procs.into_iter().enumerate().map(|(k, p)| (p, k)).collect()
    };
    let width = 1400.0;
    let x = |t: f64| 120.0 + (t - t0) / (t1 - t0) * width;
    let _ = write!(
        s,
        "<div class=\"tl\" style=\"height:{}px;width:{}px\">",
        lanes.len() * 28 + 20,
        width + 160.0
    );
    for (p, k) in &lanes {
        let _ = write!(
            s,
            "<div class=\"lane\" style=\"top:{}px\">process {p}</div>",
            k * 28
        );
    }
    for &i in &drawn {
        let o = &ops[i];
        let a = x(pos(o.invoke));
        let b = match o.complete {
            Some(c) if o.status != Status::Info => x(pos(c)),
            _ => 120.0 + width + 20.0,
        };
        let class = match (bad.contains(&i), o.status) {
            (true, _) => "op bad",
            (_, Status::Ok) => "op ok",
            (_, Status::Fail) => "op fail",
            (_, Status::Info) => "op info",
        };
        let d = describe(events, o);
        let inv = &events[o.invoke];
        let label = format!(
            "{} {}",
            inv.f,
            inv.key.as_deref().or(inv.path.as_deref()).unwrap_or("")
        );
        let _ = write!(
            s,
            "<div class=\"{class}\" style=\"left:{a:.1}px;width:{:.1}px;top:{}px\" title=\"{}\">{}</div>",
            (b - a).max(3.0),
            lanes[&o.process] * 28 + 3,
            esc(&d),
            esc(&label)
        );
    }
    for (i, e) in events.iter().enumerate() {
        if e.kind == EventType::Event && i >= lo_ev && i <= hi_ev {
            if let Some(k) = lanes.get(&e.process) {
                let class = if bad_events.contains(&i) {
                    "ev bad"
                } else {
                    "ev"
                };
                let _ = write!(
                    s,
                    "<div class=\"{class}\" style=\"left:{:.1}px;top:{}px\" title=\"{}\"></div>",
                    x(pos(i)),
                    k * 28 + 3,
                    esc(&format!(
                        "line {}: {} {} {}",
                        i + 1,
                        e.f,
                        e.event.as_deref().unwrap_or(""),
                        e.path.as_deref().unwrap_or("")
                    ))
                );
            }
        }
    }
    s.push_str("</div></section>");
    s
}

/// A whole HTML page from sections.
pub fn page(sections: &[String]) -> String {
    let mut s = String::from(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>zabkeeper-check report</title><style>\
body{font-family:sans-serif;margin:20px}.v0{color:#080}.v1{color:#c00}.v2{color:#a60}\
.viol{color:#c00}.tl{position:relative;overflow-x:auto;border:1px solid #ccc;margin:10px 0}\
.lane{position:absolute;left:4px;font-size:12px;line-height:24px;color:#555}\
.op{position:absolute;height:20px;font-size:11px;line-height:20px;overflow:hidden;white-space:nowrap;\
border-radius:3px;padding-left:2px;box-sizing:border-box}\
.ok{background:#cde7ff;border:1px solid #69c}.fail{background:#eee;border:1px dashed #999}\
.info{background:repeating-linear-gradient(45deg,#fff3c4,#fff3c4 5px,#ffe38a 5px,#ffe38a 10px);border:1px solid #cb4}\
.bad{background:#ff8a8a;border:2px solid #c00;font-weight:bold}\
.ev{position:absolute;width:6px;height:20px;background:#6a6}.ev.bad{background:#c00}\
</style></head><body><h1>zabkeeper-check report</h1>\
<p>Bars: operations from invoke to completion (blue ok, grey failed, striped unknown outcome); \
red: operations of a violation. Hover a bar for details. Green ticks: notifications.</p>",
    );
    for sec in sections {
        s.push_str(sec);
    }
    s.push_str("</body></html>\n");
    s
}
