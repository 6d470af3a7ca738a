//! Delta debugging (Zeller's ddmin) over a failing run's fault plan, then its run length
//! and client count, keeping the same failure (class and check).
//!
//! The search is generic over a `fails` predicate so it can be tested on synthetic
//! failures; the CLI's predicate re-runs the candidate options in a fresh process.

use crate::options::RunOptions;

/// ddmin: a 1-minimal subset of `0..n` for which `fails` still holds, assuming it holds
/// for the full set. Returns sorted indices. `fails` is called at most `budget` times.
pub fn ddmin(n: usize, budget: usize, mut fails: impl FnMut(&[usize]) -> bool) -> Vec<usize> {
    let mut current: Vec<usize> = (0..n).collect();
    let mut granularity = 2usize;
    let mut calls = 0usize;
    let mut test = |c: &[usize], calls: &mut usize| -> bool {
        if *calls >= budget {
            return false;
        }
        *calls += 1;
        fails(c)
    };
    if current.is_empty() {
        return current;
    }
    // The empty plan first: many failures need no fault at all.
    if test(&[], &mut calls) {
        return Vec::new();
    }
    while current.len() >= 2 {
        let chunks = split(&current, granularity);
        let mut reduced = false;
        // Try each chunk alone.
        for chunk in &chunks {
            if test(chunk, &mut calls) {
                current = chunk.clone();
                granularity = 2;
                reduced = true;
                break;
            }
        }
        if !reduced {
            // Try each complement.
            for i in 0..chunks.len() {
                let complement: Vec<usize> = chunks
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .flat_map(|(_, c)| c.iter().copied())
                    .collect();
                if test(&complement, &mut calls) {
                    current = complement;
                    granularity = (granularity - 1).max(2);
                    reduced = true;
                    break;
                }
            }
        }
        if !reduced {
            if granularity >= current.len() {
                break;
            }
            granularity = (granularity * 2).min(current.len());
        }
        if calls >= budget {
            break;
        }
    }
    current
}

fn split(xs: &[usize], parts: usize) -> Vec<Vec<usize>> {
    let parts = parts.min(xs.len()).max(1);
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for i in 0..parts {
        let len = (xs.len() - start) / (parts - i);
        out.push(xs[start..start + len].to_vec());
        start += len;
    }
    out
}

/// Shrink a failing run: the fault plan (ddmin), then the safety phase length (halving
/// while it fails), then the client count (decrementing while it fails).
/// `fails(candidate)` must re-run the candidate and report whether it fails the same way.
pub fn shrink_run(
    original: &RunOptions,
    budget: usize,
    mut fails: impl FnMut(&RunOptions) -> bool,
) -> RunOptions {
    let mut best = original.clone();
    let plan = original.plan.clone();
    let keep = ddmin(plan.events.len(), budget, |subset| {
        let mut cand = best.clone();
        cand.plan = plan.subset(subset);
        fails(&cand)
    });
    best.plan = plan.subset(&keep);

    // Run length: cut the safety phase while it still fails (never below the last event).
    let last_event = best.plan.events.last().map_or(0, |e| e.at_ms);
    loop {
        let shorter = (best.safety_ms / 2).max(last_event + 1);
        if shorter >= best.safety_ms || shorter < 500 {
            break;
        }
        let mut cand = best.clone();
        cand.safety_ms = shorter;
        if fails(&cand) {
            best = cand;
        } else {
            break;
        }
    }
    // Client count.
    while best.clients > 1 {
        let mut cand = best.clone();
        cand.clients -= 1;
        cand.plan = best.plan.restrict_clients(cand.clients);
        if fails(&cand) {
            best = cand;
        } else {
            break;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Fault;
    use crate::plan::{FaultPlan, TimedEvent};

    #[test]
    fn ddmin_finds_the_culprit_pair() {
        let mut calls = 0;
        let got = ddmin(40, 10_000, |s| {
            calls += 1;
            s.contains(&7) && s.contains(&31)
        });
        assert_eq!(got, vec![7, 31]);
        assert!(calls < 200, "{calls} calls");
    }

    #[test]
    fn ddmin_empty_and_single() {
        assert_eq!(ddmin(10, 100, |_| true), Vec::<usize>::new());
        assert_eq!(ddmin(10, 100, |s| s.contains(&3)), vec![3]);
        assert_eq!(ddmin(0, 100, |_| true), Vec::<usize>::new());
    }

    #[test]
    fn ddmin_respects_budget() {
        let mut calls = 0;
        let got = ddmin(64, 5, |s| {
            calls += 1;
            s.len() > 1 && s.contains(&0)
        });
        assert!(calls <= 5);
        assert!(got.contains(&0));
    }

    #[test]
    fn split_covers_everything() {
        let xs: Vec<usize> = (0..7).collect();
        let parts = split(&xs, 3);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), xs);
    }

    #[test]
    fn shrink_run_reduces_plan_length_and_clients() {
        let scenario = crate::scenario::Scenario::parse(
            "name = \"x\"\n[cluster]\nservers=[1]\nclients=[4]\n",
            "x.toml",
        )
        .unwrap();
        let mut o = RunOptions::derive(&scenario, 1, false);
        o.safety_ms = 20_000;
        o.plan = FaultPlan {
            events: (0..20)
                .map(|i| TimedEvent {
                    at_ms: i * 100,
                    fault: if i == 5 {
                        Fault::Crash {
                            server: 0,
                            torn_tail: false,
                        }
                    } else {
                        Fault::ClientPause {
                            client: (i % 4) as usize,
                        }
                    },
                })
                .collect(),
        };
        // Synthetic failure: needs the crash and at least 1 client.
        let shrunk = shrink_run(&o, 1_000, |c| {
            c.clients >= 1
                && c.plan
                    .events
                    .iter()
                    .any(|e| matches!(e.fault, Fault::Crash { .. }))
        });
        assert_eq!(shrunk.plan.events.len(), 1);
        assert_eq!(shrunk.clients, 1);
        assert!(shrunk.safety_ms < 20_000 && shrunk.safety_ms > 500);
    }
}
