//! The fault plan: an explicit, printable, editable list of timed events, generated from a
//! scenario's fault generators by a seeded `rand_chacha` RNG.
//!
//! Node names in a plan are `s<i>` for server `i` and `c<j>` for client `j`. Every fault
//! that starts also has a paired end event (heal, restart, resume, ...); the liveness phase
//! heals whatever is still broken, so a shrunk plan may drop either half.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::fault::{DiskFault, Fault, FaultGen, FaultKind, Moment, Step};

/// One timed event of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimedEvent {
    /// Virtual ms since the start of the safety phase.
    pub at_ms: u64,
    /// What happens.
    #[serde(flatten)]
    pub fault: Fault,
}

/// A fault plan, sorted by time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultPlan {
    /// Events in time order.
    pub events: Vec<TimedEvent>,
}

/// The shape a plan is generated for.
#[derive(Debug, Clone, Copy)]
pub struct PlanShape {
    /// Voting servers plus observers.
    pub servers: usize,
    /// Simulated clients.
    pub clients: usize,
    /// Safety phase length in ms.
    pub safety_ms: u64,
    /// Session timeout in ms (client pauses exceed it).
    pub session_timeout_ms: u64,
    /// At most this many start events.
    pub max_faults: usize,
}

fn s(i: usize) -> String {
    format!("s{i}")
}
fn c(i: usize) -> String {
    format!("c{i}")
}

/// Both directions between every member of `a` and every member of `b`.
fn cut_between(a: &[String], b: &[String]) -> Vec<[String; 2]> {
    let mut cut = Vec::new();
    for x in a {
        for y in b {
            cut.push([x.clone(), y.clone()]);
            cut.push([y.clone(), x.clone()]);
        }
    }
    cut
}

fn shuffled(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.gen_range(0..=i);
        v.swap(i, j);
    }
    v
}

impl FaultPlan {
    /// Generate a plan from fault generators. Deterministic in `rng`'s state.
    pub fn generate(gens: &[FaultGen], shape: PlanShape, rng: &mut ChaCha8Rng) -> FaultPlan {
        let mut events: Vec<(u64, usize, Fault)> = Vec::new();
        let mut seq = 0usize;
        let mut push = |events: &mut Vec<(u64, usize, Fault)>, at: u64, f: Fault| {
            events.push((at, seq, f));
            seq += 1;
        };
        let mut starts = 0usize;
        let minutes = shape.safety_ms as f64 / 60_000.0;
        for g in gens {
            let mean = g.rate_per_min * minutes;
            let mut count = mean.floor() as usize;
            if rng.gen_bool((mean - mean.floor()).clamp(0.0, 1.0)) {
                count += 1;
            }
            for _ in 0..count {
                if starts >= shape.max_faults {
                    break;
                }
                let at = rng.gen_range(0..shape.safety_ms.max(1));
                let dur = rng.gen_range(g.duration_ms[0]..=g.duration_ms[1]);
                let end = (at + dur).min(shape.safety_ms);
                for (t, f) in Self::instantiate(g.kind, at, end, dur, shape, rng) {
                    push(&mut events, t, f);
                }
                starts += 1;
            }
        }
        events.sort_by_key(|(t, seq, _)| (*t, *seq));
        FaultPlan {
            events: events
                .into_iter()
                .map(|(at_ms, _, fault)| TimedEvent { at_ms, fault })
                .collect(),
        }
    }

    /// The concrete events of one generated fault starting at `at` and ending at `end`.
    fn instantiate(
        kind: FaultKind,
        at: u64,
        end: u64,
        dur: u64,
        shape: PlanShape,
        rng: &mut ChaCha8Rng,
    ) -> Vec<(u64, Fault)> {
        let n = shape.servers;
        let server = rng.gen_range(0..n);
        // Shapes that need more servers degrade to random halves.
        let kind = match kind {
            FaultKind::Bridge if n < 3 => FaultKind::RandomHalves,
            FaultKind::MajorityRing if n < 4 => FaultKind::RandomHalves,
            k => k,
        };
        let heal = (end, Fault::Heal);
        let partition = |cut: Vec<[String; 2]>| Fault::Partition { label: kind, cut };
        match kind {
            FaultKind::RandomHalves | FaultKind::Bridge | FaultKind::MajorityRing if n == 1 => {
                // Standalone: partition the server from a random nonempty subset of clients.
                let k = rng.gen_range(1..=shape.clients.max(1));
                let clients: Vec<String> = shuffled(shape.clients, rng)
                    .into_iter()
                    .take(k)
                    .map(c)
                    .collect();
                vec![(at, partition(cut_between(&[s(0)], &clients))), heal]
            }
            FaultKind::RandomHalves => {
                let order = shuffled(n, rng);
                let k = rng.gen_range(1..n);
                let a: Vec<String> = order[..k].iter().copied().map(s).collect();
                let b: Vec<String> = order[k..].iter().copied().map(s).collect();
                vec![(at, partition(cut_between(&a, &b))), heal]
            }
            FaultKind::Bridge => {
                // order[0] is the bridge: it keeps its links to both halves.
                let order = shuffled(n, rng);
                let rest = &order[1..];
                let k = rest.len() / 2;
                let a: Vec<String> = rest[..k].iter().copied().map(s).collect();
                let b: Vec<String> = rest[k..].iter().copied().map(s).collect();
                vec![(at, partition(cut_between(&a, &b))), heal]
            }
            FaultKind::MajorityRing => {
                // Server i keeps links only to i-1 and i+1 (mod n) in a shuffled ring.
                let order = shuffled(n, rng);
                let mut cut = Vec::new();
                for i in 0..n {
                    for j in 0..n {
                        let d = (j + n - i) % n;
                        if i != j && d != 1 && d != n - 1 {
                            cut.push([s(order[i]), s(order[j])]);
                        }
                    }
                }
                vec![(at, partition(cut)), heal]
            }
            FaultKind::OneWay => {
                let cut = if n == 1 {
                    let cl = rng.gen_range(0..shape.clients.max(1));
                    if rng.gen_bool(0.5) {
                        vec![[s(0), c(cl)]]
                    } else {
                        vec![[c(cl), s(0)]]
                    }
                } else {
                    let a = rng.gen_range(0..n);
                    let b = (a + rng.gen_range(1..n)) % n;
                    vec![[s(a), s(b)]]
                };
                vec![(at, partition(cut)), heal]
            }
            FaultKind::IsolateLeader => {
                vec![(at, Fault::IsolateLeader { minority: 0 }), heal]
            }
            FaultKind::SplitBrain => {
                let minority = n.saturating_sub(1) / 2;
                vec![(at, Fault::IsolateLeader { minority }), heal]
            }
            FaultKind::Crash | FaultKind::CrashTornTail => vec![
                (
                    at,
                    Fault::Crash {
                        server,
                        torn_tail: kind == FaultKind::CrashTornTail,
                    },
                ),
                (end, Fault::Restart { server }),
            ],
            FaultKind::RollingRestart => {
                let slot = (dur / n as u64).max(1);
                let mut out = Vec::new();
                for i in 0..n {
                    let t0 = (at + i as u64 * slot).min(shape.safety_ms);
                    let t1 = (t0 + slot / 2).min(shape.safety_ms);
                    out.push((
                        t0,
                        Fault::Crash {
                            server: i,
                            torn_tail: false,
                        },
                    ));
                    out.push((t1, Fault::Restart { server: i }));
                }
                out
            }
            FaultKind::Pause => vec![
                (at, Fault::Pause { server }),
                (end, Fault::Resume { server }),
            ],
            FaultKind::ClockSkew => vec![
                (
                    at,
                    Fault::ClockSkew {
                        server,
                        offset_ms: rng.gen_range(-30_000..=30_000),
                        drift_ppm: rng.gen_range(-50_000..=50_000),
                    },
                ),
                (end, Fault::ClockReset { server }),
            ],
            // Slow, stalled or fast timers: a leader whose ticks lag keeps its role
            // (and answers syncs) past syncLimit, a follower whose ticks race gives up
            // on a live leader.
            FaultKind::TimerDrift => {
                let permille = [0, 250, 500, 1500, 2500, 4000][rng.gen_range(0..6)];
                if rng.gen_bool(0.5) {
                    vec![
                        (at, Fault::LeaderTimerRate { permille }),
                        (end, Fault::LeaderTimerReset),
                    ]
                } else {
                    vec![
                        (at, Fault::TimerRate { server, permille }),
                        (end, Fault::TimerReset { server }),
                    ]
                }
            }
            FaultKind::ClockJump => vec![
                (
                    at,
                    Fault::ClockJump {
                        server,
                        delta_ms: rng.gen_range(-60_000..=60_000),
                    },
                ),
                (end, Fault::ClockReset { server }),
            ],
            FaultKind::Delay => {
                let min_ms = rng.gen_range(1..50);
                let max_ms = min_ms + rng.gen_range(1..500);
                vec![
                    (at, Fault::NetDelay { min_ms, max_ms }),
                    (end, Fault::NetNormal),
                ]
            }
            FaultKind::Loss => vec![
                (
                    at,
                    Fault::NetLoss {
                        rate: rng.gen_range(1..=30) as f64 / 100.0,
                    },
                ),
                (end, Fault::NetNormal),
            ],
            FaultKind::DiskEio => vec![
                (
                    at,
                    Fault::Disk {
                        server,
                        fault: DiskFault::Eio {
                            probability: rng.gen_range(1..=20) as f64 / 100.0,
                        },
                    },
                ),
                (end, Fault::DiskHeal { server }),
            ],
            FaultKind::FsyncFail => vec![
                (
                    at,
                    Fault::Disk {
                        server,
                        fault: DiskFault::FsyncFail,
                    },
                ),
                (end, Fault::DiskHeal { server }),
            ],
            FaultKind::DiskFull => vec![
                (
                    at,
                    Fault::Disk {
                        server,
                        fault: DiskFault::Full {
                            bytes_left: rng.gen_range(0..4096),
                        },
                    },
                ),
                (end, Fault::DiskHeal { server }),
            ],
            FaultKind::BitRot => vec![(at, Fault::BitRot { server })],
            FaultKind::ClientPause => {
                let client = rng.gen_range(0..shape.clients.max(1));
                let long = (shape.session_timeout_ms + 1 + dur).min(shape.safety_ms - at);
                vec![
                    (at, Fault::ClientPause { client }),
                    (at + long, Fault::ClientResume { client }),
                ]
            }
            FaultKind::CrashPoint => {
                // Weighted toward the synchronization phase's steps: they happen only at
                // a leader change, so a point armed for them waits for the next one.
                const STEPS: [(Step, u32); 6] = [
                    (Step::CurrentEpoch, 4),
                    (Step::AcceptedEpoch, 2),
                    (Step::Truncate, 3),
                    (Step::Snap, 3),
                    (Step::Fsync, 3),
                    (Step::Append, 1),
                ];
                let total: u32 = STEPS.iter().map(|(_, w)| w).sum();
                let mut pick = rng.gen_range(0..total);
                let mut step = Step::Fsync;
                for &(s, w) in &STEPS {
                    if pick < w {
                        step = s;
                        break;
                    }
                    pick -= w;
                }
                let moment = match rng.gen_range(0..3) {
                    0 => Moment::Before,
                    1 => Moment::After,
                    _ => Moment::Torn,
                };
                let server = rng.gen_bool(0.5).then_some(server);
                vec![(
                    at,
                    Fault::CrashPoint {
                        server,
                        step,
                        moment,
                        restart_after_ms: dur,
                    },
                )]
            }
            FaultKind::IsolateCrashLeader => {
                let crash_at = at + (end - at) / 2;
                vec![
                    (at, Fault::IsolateLeader { minority: 0 }),
                    (crash_at, Fault::CrashIsolated),
                    heal,
                    (end, Fault::RestartIsolated),
                ]
            }
        }
    }

    /// One line per event, for printing.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            out.push_str(&format!(
                "  {:>7}ms {}\n",
                e.at_ms,
                serde_json::to_string(&e.fault).unwrap_or_default()
            ));
        }
        out
    }

    /// Keep only the events whose indices are in `keep` (sorted), for shrinking.
    pub fn subset(&self, keep: &[usize]) -> FaultPlan {
        FaultPlan {
            events: keep.iter().map(|&i| self.events[i].clone()).collect(),
        }
    }

    /// Drop events at or after `ms` (shrinking the run length).
    pub fn truncate_at(&self, ms: u64) -> FaultPlan {
        FaultPlan {
            events: self
                .events
                .iter()
                .filter(|e| e.at_ms < ms)
                .cloned()
                .collect(),
        }
    }

    /// Drop events naming a client `>= clients` (shrinking the client count).
    pub fn restrict_clients(&self, clients: usize) -> FaultPlan {
        let keep_name = |name: &str| match name.strip_prefix('c') {
            Some(i) => i.parse::<usize>().map(|i| i < clients).unwrap_or(true),
            None => true,
        };
        let mut events = Vec::new();
        for e in &self.events {
            let fault = match &e.fault {
                Fault::ClientPause { client } | Fault::ClientResume { client }
                    if *client >= clients =>
                {
                    continue
                }
                Fault::Partition { label, cut } => {
                    let cut: Vec<[String; 2]> = cut
                        .iter()
                        .filter(|[a, b]| keep_name(a) && keep_name(b))
                        .cloned()
                        .collect();
                    if cut.is_empty() {
                        continue;
                    }
                    Fault::Partition { label: *label, cut }
                }
                f => f.clone(),
            };
            events.push(TimedEvent {
                at_ms: e.at_ms,
                fault,
            });
        }
        FaultPlan { events }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn gens() -> Vec<FaultGen> {
        [
            FaultKind::RandomHalves,
            FaultKind::MajorityRing,
            FaultKind::Bridge,
            FaultKind::OneWay,
            FaultKind::IsolateLeader,
            FaultKind::Crash,
            FaultKind::Pause,
            FaultKind::ClockSkew,
            FaultKind::DiskEio,
            FaultKind::ClientPause,
            FaultKind::RollingRestart,
        ]
        .into_iter()
        .map(|kind| FaultGen {
            kind,
            rate_per_min: 3.0,
            duration_ms: [100, 3_000],
        })
        .collect()
    }

    fn shape(servers: usize) -> PlanShape {
        PlanShape {
            servers,
            clients: 3,
            safety_ms: 20_000,
            session_timeout_ms: 4_000,
            max_faults: 1_000,
        }
    }

    #[test]
    fn crash_points_and_isolated_leader_crashes_are_generated() {
        let gens: Vec<FaultGen> = [FaultKind::CrashPoint, FaultKind::IsolateCrashLeader]
            .into_iter()
            .map(|kind| FaultGen {
                kind,
                rate_per_min: 6.0,
                duration_ms: [1_000, 3_000],
            })
            .collect();
        let mut steps = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let plan = FaultPlan::generate(&gens, shape(3), &mut ChaCha8Rng::seed_from_u64(seed));
            for (i, e) in plan.events.iter().enumerate() {
                match &e.fault {
                    Fault::CrashPoint {
                        server,
                        step,
                        restart_after_ms,
                        ..
                    } => {
                        assert!(server.is_none_or(|s| s < 3));
                        assert!((1_000..=3_000).contains(restart_after_ms));
                        steps.insert(*step);
                    }
                    // Cut off, crashed while cut off, healed, then restarted.
                    Fault::CrashIsolated => {
                        assert!(plan.events[..i]
                            .iter()
                            .any(|p| matches!(p.fault, Fault::IsolateLeader { minority: 0 })));
                        let rest = &plan.events[i..];
                        let heal = rest.iter().position(|p| p.fault == Fault::Heal).unwrap();
                        let restart = (rest.iter()).position(|p| p.fault == Fault::RestartIsolated);
                        assert!(restart.unwrap() > heal);
                    }
                    _ => {}
                }
            }
        }
        assert!(steps.contains(&Step::CurrentEpoch) && steps.contains(&Step::Truncate));
    }

    #[test]
    fn same_seed_same_plan_different_seed_different_plan() {
        let a = FaultPlan::generate(&gens(), shape(5), &mut ChaCha8Rng::seed_from_u64(7));
        let b = FaultPlan::generate(&gens(), shape(5), &mut ChaCha8Rng::seed_from_u64(7));
        let c = FaultPlan::generate(&gens(), shape(5), &mut ChaCha8Rng::seed_from_u64(8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(!a.events.is_empty());
    }

    #[test]
    fn events_sorted_in_range_and_reference_existing_nodes() {
        for seed in 0..50 {
            for n in [1, 3, 5, 7] {
                let plan =
                    FaultPlan::generate(&gens(), shape(n), &mut ChaCha8Rng::seed_from_u64(seed));
                assert!(plan.events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
                for e in &plan.events {
                    assert!(e.at_ms <= 20_000);
                    match &e.fault {
                        Fault::Crash { server, .. }
                        | Fault::Restart { server }
                        | Fault::Pause { server }
                        | Fault::Resume { server } => assert!(*server < n),
                        Fault::ClientPause { client } => assert!(*client < 3),
                        Fault::Partition { cut, .. } => {
                            assert!(!cut.is_empty());
                            for [a, b] in cut {
                                assert_ne!(a, b);
                                for x in [a, b] {
                                    let i: usize = x[1..].parse().unwrap();
                                    assert!(i < if x.starts_with('s') { n } else { 3 });
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    #[test]
    fn rate_zero_generates_nothing_and_max_faults_caps() {
        let mut g = gens();
        for x in &mut g {
            x.rate_per_min = 0.0;
        }
        let plan = FaultPlan::generate(&g, shape(3), &mut ChaCha8Rng::seed_from_u64(1));
        assert!(plan.events.is_empty());
        let mut sh = shape(3);
        sh.max_faults = 2;
        let plan = FaultPlan::generate(&gens(), sh, &mut ChaCha8Rng::seed_from_u64(1));
        let starts = plan
            .events
            .iter()
            .filter(|e| {
                !matches!(
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
                )
            })
            .count();
        assert!(starts <= 2, "{}", plan.describe());
    }

    #[test]
    fn ring_cut_leaves_each_server_two_neighbours() {
        let g = vec![FaultGen {
            kind: FaultKind::MajorityRing,
            rate_per_min: 3.0,
            duration_ms: [100, 200],
        }];
        let plan = FaultPlan::generate(&g, shape(5), &mut ChaCha8Rng::seed_from_u64(3));
        let Fault::Partition { cut, .. } = &plan.events[0].fault else {
            panic!("{:?}", plan.events[0]);
        };
        // 5 servers: 20 directed links, 10 kept (2 neighbours each), 10 cut.
        assert_eq!(cut.len(), 10);
    }

    #[test]
    fn plan_json_round_trip_is_editable_text() {
        let plan = FaultPlan::generate(&gens(), shape(3), &mut ChaCha8Rng::seed_from_u64(2));
        let text = serde_json::to_string_pretty(&plan).unwrap();
        assert!(text.contains("\"op\""));
        let back: FaultPlan = serde_json::from_str(&text).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn restrict_clients_drops_events_of_removed_clients() {
        let plan = FaultPlan {
            events: vec![
                TimedEvent {
                    at_ms: 1,
                    fault: Fault::ClientPause { client: 2 },
                },
                TimedEvent {
                    at_ms: 2,
                    fault: Fault::Partition {
                        label: FaultKind::OneWay,
                        cut: vec![["s0".into(), "c2".into()]],
                    },
                },
                TimedEvent {
                    at_ms: 3,
                    fault: Fault::ClientPause { client: 0 },
                },
            ],
        };
        let r = plan.restrict_clients(1);
        assert_eq!(r.events.len(), 1);
        assert_eq!(r.events[0].fault, Fault::ClientPause { client: 0 });
        assert_eq!(plan.truncate_at(2).events.len(), 1);
        assert_eq!(plan.subset(&[0, 2]).events.len(), 2);
    }
}
