//! A self-contained HTML timeline of one run: one lane per client process, operations as
//! bars (green ok, red fail, grey info), fault-plan events as bands across all lanes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::fault::Fault;
use crate::history::{Event, EventType};
use crate::plan::FaultPlan;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Render the timeline. `end_ms` is the run's total virtual length; `title` goes in the
/// page heading.
pub fn render(title: &str, history: &[Event], plan: &FaultPlan, end_ms: u64) -> String {
    let end_ns = (end_ms.max(1) * 1_000_000) as f64;
    let px_per_ns = 2_000.0 / end_ns;
    // Pair invokes with completions per process.
    let mut open: BTreeMap<u64, &Event> = BTreeMap::new();
    let mut bars: BTreeMap<u64, Vec<(u64, u64, EventType, &Event)>> = BTreeMap::new();
    for e in history {
        if e.kind == EventType::Event {
            // Notifications are not operations.
            continue;
        }
        if e.kind == EventType::Invoke {
            open.insert(e.process, e);
        } else if let Some(inv) = open.remove(&e.process) {
            bars.entry(e.process).or_default().push((
                inv.time.unwrap_or(0),
                e.time.unwrap_or(0),
                e.kind,
                e,
            ));
        }
    }
    for (p, inv) in open {
        bars.entry(p).or_default().push((
            inv.time.unwrap_or(0),
            end_ms * 1_000_000,
            EventType::Info,
            inv,
        ));
    }
    let lane_h = 22;
    let top = 30;
    let height = top + lane_h * bars.len().max(1) + 10;
    let mut svg = String::new();
    // Fault bands: a start event opens a band closed by the next matching repair.
    let x = |t_ms: u64| t_ms as f64 * 1_000_000.0 * px_per_ns + 40.0;
    for (i, e) in plan.events.iter().enumerate() {
        let label = serde_json::to_string(&e.fault).unwrap_or_default();
        let is_repair = matches!(
            e.fault,
            Fault::Heal
                | Fault::Restart { .. }
                | Fault::Resume { .. }
                | Fault::ClockReset { .. }
                | Fault::TimerReset { .. }
                | Fault::LeaderTimerReset
                | Fault::NetNormal
                | Fault::DiskHeal { .. }
                | Fault::ClientResume { .. }
                | Fault::RestartIsolated
        );
        if is_repair {
            continue;
        }
        let end = plan.events[i + 1..]
            .iter()
            .find(|r| repairs(&e.fault, &r.fault))
            .map_or(end_ms, |r| r.at_ms);
        let (x0, x1) = (x(e.at_ms), x(end.max(e.at_ms + 1)));
        let _ = write!(
            svg,
            r#"<rect class="fault" x="{x0:.1}" y="0" width="{:.1}" height="{height}"><title>{}ms..{}ms {}</title></rect>"#,
            (x1 - x0).max(1.0),
            e.at_ms,
            end,
            esc(&label)
        );
    }
    for (lane, (p, ops)) in bars.iter().enumerate() {
        let y = top + lane * lane_h;
        let _ = write!(
            svg,
            r#"<text x="2" y="{}" class="lane">p{p}</text>"#,
            y + 14
        );
        for (t0, t1, kind, e) in ops {
            let class = match kind {
                EventType::Ok => "ok",
                EventType::Fail => "fail",
                _ => "info",
            };
            let x0 = *t0 as f64 * px_per_ns + 40.0;
            let w = ((*t1 - t0) as f64 * px_per_ns).max(1.5);
            let tip = format!(
                "{} {} {} -> {} {}",
                e.f,
                e.path.clone().unwrap_or_default(),
                e.value,
                class,
                e.zxid.map(|z| format!("zxid {z:#x}")).unwrap_or_default()
            );
            let _ = write!(
                svg,
                r#"<rect class="{class}" x="{x0:.1}" y="{y}" width="{w:.1}" height="{}"><title>{}</title></rect>"#,
                lane_h - 6,
                esc(&tip)
            );
        }
    }
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{t}</title>
<style>
body{{font-family:sans-serif;margin:1em}} svg{{border:1px solid #ccc}}
.ok{{fill:#3a3}} .fail{{fill:#c33}} .info{{fill:#999}} .fault{{fill:#f90;opacity:.18}}
.lane{{font-size:11px}}
</style></head><body>
<h1>{t}</h1>
<p>One lane per client process; bars are operations (green ok, red fail, grey info/unknown);
orange bands are faults from the plan. Hover for details. {n} events, {f} fault events,
{end_ms} ms.</p>
<svg width="2100" height="{height}" xmlns="http://www.w3.org/2000/svg">{svg}</svg>
</body></html>
"#,
        t = esc(title),
        n = history.len(),
        f = plan.events.len(),
    )
}

/// Does `repair` end the fault `start`?
fn repairs(start: &Fault, repair: &Fault) -> bool {
    match (start, repair) {
        (Fault::Partition { .. } | Fault::IsolateLeader { .. }, Fault::Heal) => true,
        (Fault::Crash { server: a, .. }, Fault::Restart { server: b })
        | (Fault::Pause { server: a }, Fault::Resume { server: b })
        | (Fault::ClockSkew { server: a, .. }, Fault::ClockReset { server: b })
        | (Fault::ClockJump { server: a, .. }, Fault::ClockReset { server: b })
        | (Fault::TimerRate { server: a, .. }, Fault::TimerReset { server: b })
        | (Fault::Disk { server: a, .. }, Fault::DiskHeal { server: b }) => a == b,
        (Fault::ClientPause { client: a }, Fault::ClientResume { client: b }) => a == b,
        (Fault::NetDelay { .. } | Fault::NetLoss { .. }, Fault::NetNormal) => true,
        (Fault::CrashIsolated, Fault::RestartIsolated) => true,
        (Fault::LeaderTimerRate { .. }, Fault::LeaderTimerReset) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::TimedEvent;
    use serde_json::json;

    #[test]
    fn renders_lanes_bars_and_bands() {
        let at = |process, kind, f: &str, time| Event {
            process,
            kind,
            f: f.into(),
            path: Some("/r<0>".into()),
            value: json!(1),
            time: Some(time),
            ..Event::default()
        };
        let a = at(0, EventType::Invoke, "setData", 1_000_000);
        let b = at(0, EventType::Ok, "setData", 5_000_000);
        let c = at(1, EventType::Invoke, "getData", 2_000_000);
        let note = Event {
            kind: EventType::Event,
            f: "watch".into(),
            ..at(1, EventType::Event, "watch", 3_000_000)
        };
        let plan = FaultPlan {
            events: vec![
                TimedEvent {
                    at_ms: 2,
                    fault: Fault::Crash {
                        server: 0,
                        torn_tail: false,
                    },
                },
                TimedEvent {
                    at_ms: 8,
                    fault: Fault::Restart { server: 0 },
                },
            ],
        };
        let html = render("t", &[a, b, note, c], &plan, 10);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert_eq!(html.matches(r#"class="fault""#).count(), 1);
        assert_eq!(html.matches(r#"class="ok""#).count(), 1);
        assert_eq!(
            html.matches(r#"class="info""#).count(),
            1,
            "pending read is info"
        );
        assert!(html.contains("/r&lt;0&gt;"), "escaped");
        assert!(html.contains("2ms..8ms"));
    }
}
