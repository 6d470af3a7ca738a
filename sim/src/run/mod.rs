//! One simulated run (madsim builds only): derive nothing here (options come in), start the
//! servers and clients as simulated nodes, execute the fault plan during the safety phase,
//! heal everything, run the liveness phase, and judge.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::runtime::{Handle, NodeHandle, Runtime};
use madsim::time::Instant;
use sha1::{Digest, Sha1};

use crate::campaign::{Class, RunRecord};
use crate::clock::Clocks;
use crate::fault::Fault;
use crate::history::{Event, Recorder};
use crate::judge::{judge, Observation, ObservationLog, ReplicaTree, Verdict};
use crate::options::RunOptions;
use crate::plan::FaultPlan;
use crate::sut::crash_points::CrashPoints;
use crate::sut::node::{NodeConn, NodeTiming};
use crate::sut::{client_ip, server_ip, Disk, CLIENT_PORT};

/// A simulated client's session.
type Conn = NodeConn;

mod client;
mod convergence;
mod executor;

use client::client_main;
use convergence::await_convergence;
use executor::Executor;

/// Phases of a run, shared with the client tasks.
const PHASE_SETUP: u8 = 0;
const PHASE_SAFETY: u8 = 1;
const PHASE_LIVENESS: u8 = 2;
const PHASE_DONE: u8 = 3;

/// Everything a run produces.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// The record (class, check, hash, ...).
    pub record: RunRecord,
    /// The client history.
    pub history: Vec<Event>,
    /// Node observations.
    pub observations: Vec<Observation>,
    /// Notes from the fault executor (what it did, in order).
    pub notes: Vec<String>,
}

/// State shared by the supervisor, the servers and the clients of one run.
#[derive(Clone)]
struct Shared {
    opts: Arc<RunOptions>,
    recorder: Recorder,
    observations: ObservationLog,
    clocks: Clocks,
    disks: Vec<Disk>,
    phase: Arc<AtomicU8>,
    setup_done: Arc<AtomicU8>,
    live_done: Arc<Mutex<BTreeSet<usize>>>,
    ops: Arc<AtomicU64>,
    start: Instant,
    crash_points: CrashPoints,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
    fn phase(&self) -> u8 {
        self.phase.load(Ordering::SeqCst)
    }
}

/// Run one seed's options to completion and judge it. Panics inside the simulation are
/// caught and classed as crashes.
pub fn run_one(opts: &RunOptions) -> RunOutput {
    let mut rt = Runtime::with_seed_and_config(opts.seed, madsim::Config::default());
    rt.set_time_limit(Duration::from_millis(opts.virtual_limit_ms));
    let o = opts.clone();
    // madsim runs every simulated server on this thread: the switch reaches them all.
    zabkeeper::broken::set(opts.broken);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(simulate(o))));
    zabkeeper::broken::set(None);
    match result {
        Ok(out) => out,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            let class = if msg.contains("time limit") {
                Class::Liveness
            } else {
                Class::Crash
            };
            RunOutput {
                record: RunRecord {
                    scenario: opts.scenario.clone(),
                    seed: opts.seed,
                    class,
                    check: Some(if class == Class::Liveness {
                        "virtual-time-limit".into()
                    } else {
                        "panic".into()
                    }),
                    detail: msg,
                    virtual_ms: opts.virtual_limit_ms,
                    wall_ms: 0,
                    ops: 0,
                    trace_hash: String::new(),
                    broken: opts.broken,
                },
                history: Vec::new(),
                observations: Vec::new(),
                notes: Vec::new(),
            }
        }
    }
}

fn server_addr(i: usize) -> SocketAddr {
    SocketAddr::new(server_ip(i), CLIENT_PORT)
}

async fn simulate(opts: RunOptions) -> RunOutput {
    let handle = Handle::current();
    let n = opts.total_servers();
    let (crash_points, fired) = CrashPoints::new();
    let shared = Shared {
        opts: Arc::new(opts.clone()),
        recorder: Recorder::default(),
        observations: ObservationLog::default(),
        clocks: Clocks::default(),
        disks: (0..n)
            .map(|i| Disk::new(opts.seed ^ (0x5eed_0000 + i as u64)))
            .collect(),
        phase: Arc::new(AtomicU8::new(PHASE_SETUP)),
        setup_done: Arc::new(AtomicU8::new(0)),
        live_done: Arc::default(),
        ops: Arc::default(),
        start: Instant::now(),
        crash_points,
    };
    let servers: Vec<NodeHandle> = (0..n)
        .map(|i| {
            let sh = shared.clone();
            handle
                .create_node()
                .name(format!("s{i}"))
                .ip(server_ip(i))
                .init(move || {
                    let sh = sh.clone();
                    async move {
                        let timing = NodeTiming {
                            tick_ms: sh.opts.tick_ms,
                            voters: sh.opts.servers,
                            observers: sh.opts.observers,
                            snap_count: sh.opts.snap_count,
                            autopurge: sh.opts.autopurge,
                            commit_log_count: sh.opts.commit_log_count,
                            init_limit: sh.opts.init_limit,
                            sync_limit: sh.opts.sync_limit,
                            quorum_reads: sh.opts.quorum_reads,
                            global_outstanding_limit: sh.opts.global_outstanding_limit,
                            core_ticks: sh.opts.core_ticks,
                            zxid_counter_limit: sh.opts.zxid_counter_limit,
                            read_only: sh.opts.read_only,
                            local_sessions: sh.opts.local_sessions,
                        };
                        crate::sut::node::serve(
                            i,
                            sh.disks[i].0.clone(),
                            sh.clocks.clone(),
                            sh.start,
                            timing,
                            sh.observations.clone(),
                            sh.crash_points.clone(),
                        )
                        .await
                    }
                })
                .build()
        })
        .collect();
    let clients: Vec<NodeHandle> = (0..opts.clients)
        .map(|j| {
            let sh = shared.clone();
            handle
                .create_node()
                .name(format!("c{j}"))
                .ip(client_ip(j))
                .init(move || client_main(j, sh.clone()))
                .build()
        })
        .collect();
    // Setup: client 0 creates the registers; wait for it (bounded).
    let setup_deadline = Duration::from_millis(opts.liveness_ms);
    let t0 = Instant::now();
    while shared.setup_done.load(Ordering::SeqCst) == 0 && t0.elapsed() < setup_deadline {
        madsim::time::sleep(Duration::from_millis(10)).await;
    }
    let mut notes = Vec::new();
    if shared.setup_done.load(Ordering::SeqCst) == 0 {
        return finish(
            &shared,
            Verdict::Pass,
            Some((
                Class::Liveness,
                "setup".into(),
                "registers not created in time".into(),
            )),
            notes,
        );
    }

    // Safety phase: workload + fault plan.
    shared.phase.store(PHASE_SAFETY, Ordering::SeqCst);
    let safety_start = Instant::now();
    let mut executor = Executor::start(&shared, &servers, &clients, fired);
    for ev in &opts.plan.events {
        let at = Duration::from_millis(ev.at_ms);
        let elapsed = safety_start.elapsed();
        if at > elapsed {
            madsim::time::sleep(at - elapsed).await;
        }
        let note = executor.execute(ev);
        notes.push(format!("{}ms {}", ev.at_ms, note));
    }
    let safety = Duration::from_millis(opts.safety_ms);
    let elapsed = safety_start.elapsed();
    if safety > elapsed {
        madsim::time::sleep(safety - elapsed).await;
    }

    // Heal everything.
    let heal_ms = shared.start.elapsed().as_millis() as u64;
    executor.heal(&mut notes);

    // Liveness phase: every client must complete a sync + read of every key.
    shared.phase.store(PHASE_LIVENESS, Ordering::SeqCst);
    let live_start = Instant::now();
    let bound = Duration::from_millis(opts.liveness_ms);
    while shared.live_done.lock().expect("live").len() < opts.clients
        && live_start.elapsed() < bound
    {
        madsim::time::sleep(Duration::from_millis(20)).await;
    }
    shared.phase.store(PHASE_DONE, Ordering::SeqCst);
    let done = shared.live_done.lock().expect("live").clone();
    let liveness = (done.len() < opts.clients).then(|| {
        let missing: Vec<String> = (0..opts.clients)
            .filter(|j| !done.contains(j))
            .map(|j| format!("c{j}"))
            .collect();
        (
            Class::Liveness,
            "clients-served".to_string(),
            format!(
                "{} did not get answers within {}ms after healing",
                missing.join(","),
                opts.liveness_ms
            ),
        )
    });
    // Convergence (ensembles): every replica reaches one tree at or after a final write.
    let liveness = match (liveness, clients.first()) {
        (None, Some(client)) if n > 1 => {
            let rotted: BTreeSet<usize> = opts
                .plan
                .events
                .iter()
                .filter_map(|e| match e.fault {
                    Fault::BitRot { server } => Some(server),
                    _ => None,
                })
                .collect();
            let down_state = |i: usize| match executor.is_down(i) {
                false => None,
                true if rotted.contains(&i)
                    && shared.observations.refused_start_since(i, heal_ms) =>
                {
                    Some(ReplicaTree::RefusedOnRottedDisk)
                }
                true => Some(ReplicaTree::Down),
            };
            await_convergence(&shared, client, down_state, &mut notes).await
        }
        (liveness, _) => liveness,
    };
    executor.take_reaped(&mut notes);
    let history = shared.recorder.snapshot();
    let observations = shared.observations.snapshot();
    let verdict = judge(&history, &observations);
    finish(&shared, verdict, liveness, notes)
}

fn finish(
    shared: &Shared,
    verdict: Verdict,
    liveness: Option<(Class, String, String)>,
    notes: Vec<String>,
) -> RunOutput {
    let history = shared.recorder.snapshot();
    let observations = shared.observations.snapshot();
    let (class, check, detail) = match verdict {
        Verdict::Violation { check, detail } => (Class::Safety, Some(check), detail),
        // A history the checker could not decide within its budget fails the run: a
        // violation it could not find is not a pass.
        Verdict::Unknown { reason } => (Class::Safety, Some("unknown".into()), reason),
        Verdict::Pass => match liveness {
            Some((c, check, detail)) => (c, Some(check), detail),
            None => (Class::Pass, None, String::new()),
        },
    };
    let record = RunRecord {
        scenario: shared.opts.scenario.clone(),
        seed: shared.opts.seed,
        class,
        check,
        detail,
        virtual_ms: shared.start.elapsed().as_millis() as u64,
        wall_ms: 0,
        ops: shared.ops.load(Ordering::SeqCst),
        trace_hash: trace_hash(&shared.opts.plan, &history, &observations, &notes),
        broken: shared.opts.broken,
    };
    RunOutput {
        record,
        history,
        observations,
        notes,
    }
}

/// SHA-1 over the plan, the history, the observations and the executor's notes.
pub fn trace_hash(
    plan: &FaultPlan,
    history: &[Event],
    observations: &[Observation],
    notes: &[String],
) -> String {
    let mut h = Sha1::new();
    h.update(serde_json::to_vec(plan).expect("plan serialises"));
    h.update(crate::history::to_jsonl(history).as_bytes());
    h.update(serde_json::to_vec(observations).expect("observations serialise"));
    h.update(notes.join("\n").as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
