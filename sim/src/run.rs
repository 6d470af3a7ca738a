//! One simulated run (madsim builds only): derive nothing here (options come in), start the
//! servers and clients as simulated nodes, execute the fault plan during the safety phase,
//! heal everything, run the liveness phase, and judge.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle, Runtime};
use madsim::time::Instant;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use sha1::{Digest, Sha1};

use crate::campaign::{Class, RunRecord};
use crate::clock::Clocks;
use crate::fault::Fault;
use crate::history::{EventType, HistoryEvent, Recorder};
use crate::judge::{convergence, judge, Observation, Observer, ReplicaTree, Verdict};
use crate::options::RunOptions;
use crate::plan::FaultPlan;
use crate::sut::node::{NodeConn, NodeTiming};
use crate::sut::toy::ToyConn;
use crate::sut::{client_ip, server_ip, Conn, Disk, OpError, SetReply, SutKind, CLIENT_PORT};

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
    pub history: Vec<HistoryEvent>,
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
    observer: Observer,
    clocks: Clocks,
    disks: Vec<Disk>,
    phase: Arc<AtomicU8>,
    setup_done: Arc<AtomicU8>,
    live_done: Arc<Mutex<BTreeSet<usize>>>,
    ops: Arc<AtomicU64>,
    start: Instant,
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
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| rt.block_on(simulate(o))));
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
    let net = NetSim::current();
    let n = opts.total_servers();
    let shared = Shared {
        opts: Arc::new(opts.clone()),
        recorder: Recorder::default(),
        observer: Observer::default(),
        clocks: Clocks::default(),
        disks: (0..n)
            .map(|i| Disk::new(opts.sut, opts.seed ^ (0x5eed_0000 + i as u64)))
            .collect(),
        phase: Arc::new(AtomicU8::new(PHASE_SETUP)),
        setup_done: Arc::new(AtomicU8::new(0)),
        live_done: Arc::default(),
        ops: Arc::default(),
        start: Instant::now(),
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
                        match sh.disks[i].clone() {
                            Disk::Toy(d) => {
                                crate::sut::toy::serve(i, d, sh.observer.clone(), sh.start).await
                            }
                            Disk::Node(fs) => {
                                let timing = NodeTiming {
                                    tick_ms: sh.opts.tick_ms,
                                    voters: sh.opts.servers,
                                    observers: sh.opts.observers,
                                    snap_count: sh.opts.snap_count,
                                    autopurge: sh.opts.autopurge,
                                    commit_log_count: sh.opts.commit_log_count,
                                    init_limit: sh.opts.init_limit,
                                    sync_limit: sh.opts.sync_limit,
                                };
                                crate::sut::node::serve(
                                    i,
                                    fs,
                                    sh.clocks.clone(),
                                    sh.start,
                                    timing,
                                    sh.observer.clone(),
                                )
                                .await
                            }
                        }
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
    let node_id = |name: &str| -> Option<madsim::task::NodeId> {
        let i: usize = name.get(1..)?.parse().ok()?;
        match name.as_bytes().first()? {
            b's' => servers.get(i).map(|h| h.id()),
            b'c' => clients.get(i).map(|h| h.id()),
            _ => None,
        }
    };

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
    // Servers that are down: crashed by the plan, or stopped by themselves (a failed fsync
    // stops the node) and reaped: madsim leaves an exited node's sockets bound, a real
    // process exit closes them, so the reaper kills exited nodes (and their unsynced
    // writes) like a crash.
    let down: Arc<Mutex<BTreeSet<usize>>> = Arc::default();
    let shared_notes: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let (down, notes, sh) = (Arc::clone(&down), Arc::clone(&shared_notes), shared.clone());
        let ids: Vec<madsim::task::NodeId> = servers.iter().map(|s| s.id()).collect();
        let handle = handle.clone();
        madsim::task::spawn(async move {
            loop {
                madsim::time::sleep(Duration::from_millis(20)).await;
                for (i, id) in ids.iter().enumerate() {
                    let mut d = down.lock().expect("down");
                    if !d.contains(&i) && handle.is_exit(*id) {
                        handle.kill(*id);
                        sh.disks[i]
                            .crash(false, sh.opts.seed ^ sh.start.elapsed().as_millis() as u64);
                        d.insert(i);
                        notes.lock().expect("notes").push(format!(
                            "{}ms s{i} stopped by itself (reaped)",
                            sh.start.elapsed().as_millis()
                        ));
                    }
                }
            }
        });
    }
    let mut paused: BTreeSet<usize> = BTreeSet::new();
    let mut paused_clients: BTreeSet<usize> = BTreeSet::new();
    let mut clogged: Vec<(madsim::task::NodeId, madsim::task::NodeId)> = Vec::new();
    for ev in &opts.plan.events {
        let at = Duration::from_millis(ev.at_ms);
        let elapsed = safety_start.elapsed();
        if at > elapsed {
            madsim::time::sleep(at - elapsed).await;
        }
        let now_ms = shared.start.elapsed().as_millis() as u64;
        let note = match &ev.fault {
            Fault::Partition { cut, .. } => {
                for [a, b] in cut {
                    if let (Some(x), Some(y)) = (node_id(a), node_id(b)) {
                        net.clog_link(x, y);
                        clogged.push((x, y));
                    }
                }
                format!("clogged {} links", cut.len())
            }
            Fault::IsolateLeader { minority } => {
                match shared.observer.current_leader().filter(|_| n > 1) {
                    None => "no leader known (or standalone): skipped".to_string(),
                    Some(leader) => {
                        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ ev.at_ms);
                        let mut others: Vec<usize> = (0..n).filter(|&i| i != leader).collect();
                        let mut side = vec![leader];
                        for _ in 0..*minority {
                            if others.is_empty() {
                                break;
                            }
                            side.push(others.remove(rng.gen_range(0..others.len())));
                        }
                        for &a in &side {
                            for &b in &others {
                                let (x, y) = (servers[a].id(), servers[b].id());
                                net.clog_link(x, y);
                                net.clog_link(y, x);
                                clogged.push((x, y));
                                clogged.push((y, x));
                            }
                        }
                        format!("isolated leader s{leader} with {side:?}")
                    }
                }
            }
            Fault::Heal => {
                for (x, y) in clogged.drain(..) {
                    net.unclog_link(x, y);
                }
                "healed".into()
            }
            Fault::Crash { server, torn_tail } => {
                if down.lock().expect("down").insert(*server) {
                    handle.kill(servers[*server].id());
                    shared.disks[*server].crash(*torn_tail, opts.seed ^ now_ms);
                    paused.remove(server);
                    format!("crashed s{server} (torn_tail={torn_tail})")
                } else {
                    format!("s{server} already down")
                }
            }
            Fault::Restart { server } => {
                if down.lock().expect("down").remove(server) {
                    handle.restart(servers[*server].id());
                    format!("restarted s{server}")
                } else {
                    format!("s{server} not crashed")
                }
            }
            Fault::Pause { server } => {
                if !down.lock().expect("down").contains(server) && paused.insert(*server) {
                    handle.pause(servers[*server].id());
                }
                format!("paused s{server}")
            }
            Fault::Resume { server } => {
                if paused.remove(server) {
                    handle.resume(servers[*server].id());
                }
                format!("resumed s{server}")
            }
            Fault::ClockSkew {
                server,
                offset_ms,
                drift_ppm,
            } => {
                shared.clocks.skew(*server, *offset_ms, *drift_ppm, now_ms);
                format!("skewed s{server}")
            }
            Fault::ClockJump { server, delta_ms } => {
                shared.clocks.jump(*server, *delta_ms);
                format!("jumped s{server} clock")
            }
            Fault::ClockReset { server } => {
                shared.clocks.reset(*server);
                format!("reset s{server} clock")
            }
            Fault::NetDelay { min_ms, max_ms } => {
                let (lo, hi) = (*min_ms, (*max_ms).max(*min_ms + 1));
                net.update_config(|c| {
                    c.send_latency = Duration::from_millis(lo)..Duration::from_millis(hi)
                });
                "delay".into()
            }
            Fault::NetLoss { rate } => {
                let r = rate.clamp(0.0, 0.9);
                net.update_config(|c| c.packet_loss_rate = r);
                "loss".into()
            }
            Fault::NetNormal => {
                net.update_config(|c| *c = madsim::net::Config::default());
                "net normal".into()
            }
            Fault::Disk { server, fault } => {
                shared.disks[*server].arm(fault);
                format!("armed {fault:?} on s{server}")
            }
            Fault::DiskHeal { server } => {
                shared.disks[*server].heal();
                format!("disk healed s{server}")
            }
            Fault::BitRot { server } => {
                if n == 1 {
                    "bit rot skipped: a standalone server cannot survive it".into()
                } else {
                    shared.disks[*server].rot(opts.seed ^ now_ms);
                    format!("bit rot on s{server}")
                }
            }
            Fault::ClientPause { client } => {
                if *client < clients.len() && paused_clients.insert(*client) {
                    handle.pause(clients[*client].id());
                }
                format!("paused c{client}")
            }
            Fault::ClientResume { client } => {
                if paused_clients.remove(client) {
                    handle.resume(clients[*client].id());
                }
                format!("resumed c{client}")
            }
        };
        notes.push(format!("{}ms {}", ev.at_ms, note));
    }
    let safety = Duration::from_millis(opts.safety_ms);
    let elapsed = safety_start.elapsed();
    if safety > elapsed {
        madsim::time::sleep(safety - elapsed).await;
    }

    // Heal everything.
    let heal_ms = shared.start.elapsed().as_millis() as u64;
    for (x, y) in clogged.drain(..) {
        net.unclog_link(x, y);
    }
    net.update_config(|c| *c = madsim::net::Config::default());
    for (i, server) in servers.iter().enumerate() {
        shared.clocks.reset(i);
        shared.disks[i].heal();
        if paused.remove(&i) {
            handle.resume(server.id());
        }
        let was_down = down.lock().expect("down").remove(&i);
        if was_down || handle.is_exit(server.id()) {
            if !was_down {
                handle.kill(server.id());
                shared.disks[i].crash(false, opts.seed ^ i as u64);
            }
            handle.restart(server.id());
            notes.push(format!("heal: restarted s{i}"));
        }
    }
    for j in std::mem::take(&mut paused_clients) {
        handle.resume(clients[j].id());
    }
    notes.push("heal: everything".into());
    notes.extend(shared_notes.lock().expect("notes").drain(..));

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
        (None, Some(client)) if n > 1 && opts.sut == SutKind::Node => {
            let server_ids: Vec<madsim::task::NodeId> = servers.iter().map(|s| s.id()).collect();
            let rotted: BTreeSet<usize> = opts
                .plan
                .events
                .iter()
                .filter_map(|e| match e.fault {
                    Fault::BitRot { server } => Some(server),
                    _ => None,
                })
                .collect();
            let down_state = |i: usize| {
                let down = down.lock().expect("down").contains(&i) || handle.is_exit(server_ids[i]);
                match down {
                    false => None,
                    true if rotted.contains(&i)
                        && shared.observer.refused_start_since(i, heal_ms) =>
                    {
                        Some(ReplicaTree::RefusedOnRottedDisk)
                    }
                    true => Some(ReplicaTree::Down),
                }
            };
            await_convergence(&shared, client, down_state, &mut notes).await
        }
        (liveness, _) => liveness,
    };
    notes.extend(shared_notes.lock().expect("notes").drain(..));
    let history = shared.recorder.snapshot();
    let observations = shared.observer.snapshot();
    let verdict = judge(&history, &observations, n > 1);
    finish(&shared, verdict, liveness, notes)
}

/// The path prefix of the final write's PERSISTENT_SEQUENTIAL marker nodes.
const CONVERGE_MARKER: &str = "/converge-";

/// The last step of the liveness phase, for ensembles, once every client was answered
/// again: every replica (participants and observers) must reach the same tree, with the
/// same digest at the same zxid, within [`RunOptions::converge_ms`] of virtual time.
///
/// Method: a quiet ensemble still commits (session expiries and closes), so an agreement
/// seen at one instant could be on an old tree that a replica cut off from the leader
/// happens to share. Instead a fresh session first drives one final write through the
/// leader (a PERSISTENT_SEQUENTIAL create under `/`, outside every checked path) and closes;
/// its zxid is the floor. Then the harness polls each server's latest tree, known from the
/// node's observations (the digest after every commit, and every tree load: start-up
/// recovery, SNAP, TRUNC reload), and passes as soon as every server is running with the
/// same (zxid, digest) at or above the floor: every replica then applied the final write,
/// so it follows the current leader, and their trees are equal. Later commits (the
/// marker session's close, expiries) only delay that instant: they reach every replica in
/// the same order. The harness reads state only; polling on the virtual clock adds no
/// nondeterminism.
///
/// Every server was restarted at the heal, so each must be running. The one exception is
/// a server that refused to start on a disk the plan rotted at rest (a corrupt epoch file
/// or log: fail-stop, as in ZooKeeper, where an operator must restore it); it is excused
/// and named in the notes. A server down for any other reason fails the check.
///
/// Returns the liveness failure, if any: the final write not acknowledged in time, or the
/// replicas not converged, listing every server's (zxid, digest).
async fn await_convergence(
    sh: &Shared,
    client: &NodeHandle,
    down_state: impl Fn(usize) -> Option<ReplicaTree>,
    notes: &mut Vec<String>,
) -> Option<(Class, String, String)> {
    let bound = Duration::from_millis(sh.opts.converge_ms());
    let t0 = Instant::now();
    let n = sh.opts.total_servers();
    let mut writer = client.spawn(final_write(Arc::clone(&sh.opts)));
    let floor = match madsim::time::timeout(bound, &mut writer).await {
        Ok(Ok(zxid)) => zxid,
        _ => {
            writer.abort();
            return Some((
                Class::Liveness,
                "converged".into(),
                format!(
                    "the final write was not acknowledged within the convergence bound of {}ms",
                    bound.as_millis()
                ),
            ));
        }
    };
    notes.push(format!(
        "converge: final write committed at zxid {floor:#x} after {}ms",
        t0.elapsed().as_millis()
    ));
    loop {
        let trees: Vec<ReplicaTree> = sh
            .observer
            .latest_trees(n)
            .into_iter()
            .enumerate()
            .map(|(i, t)| match (down_state(i), t) {
                (Some(down), _) => down,
                (None, Some((zxid, digest))) => ReplicaTree::At { zxid, digest },
                (None, None) => ReplicaTree::Unknown,
            })
            .collect();
        match convergence(&trees, floor) {
            Ok((zxid, digest)) => {
                let excused: Vec<String> = trees
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| **t == ReplicaTree::RefusedOnRottedDisk)
                    .map(|(i, _)| format!("s{i}"))
                    .collect();
                notes.push(format!(
                    "converge: {} of {n} replicas at ({zxid:#x}, {digest:016x}) after {}ms{}",
                    n - excused.len(),
                    t0.elapsed().as_millis(),
                    if excused.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "; excused (refused to start on a rotted disk): {}",
                            excused.join(",")
                        )
                    }
                ));
                return None;
            }
            Err(detail) if t0.elapsed() >= bound => {
                return Some((
                    Class::Liveness,
                    "converged".into(),
                    format!(
                        "{detail} (within the convergence bound of {}ms after every client was answered)",
                        bound.as_millis()
                    ),
                ))
            }
            Err(_) => madsim::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The convergence step's final write, run on a client node: a fresh session creates a
/// [`CONVERGE_MARKER`] node and closes. Returns the create's zxid. Retries (a new
/// session when the old one is gone) until the caller's bound cancels it.
async fn final_write(opts: Arc<RunOptions>) -> i64 {
    let connect: Vec<String> = (0..opts.total_servers())
        .map(|i| server_addr(i).to_string())
        .collect();
    let connect = connect.join(",");
    let session = Duration::from_millis(opts.session_timeout_ms);
    let timeout = Duration::from_millis(opts.workload.op_timeout_ms);
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        let seed = opts.seed ^ 0xc04e_e6e5 ^ attempt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut conn = match NodeConn::connect(&connect, session, seed, timeout.max(session)).await
        {
            Ok(c) => c,
            Err(_) => {
                madsim::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while !conn.is_dead() {
            let create = conn.create_mode(
                CONVERGE_MARKER,
                "",
                zabkeeper::types::CreateMode::PersistentSequential,
            );
            if let Ok(Ok(Ok((_, zxid)))) = madsim::time::timeout(timeout, create).await {
                let _ = madsim::time::timeout(timeout, conn.close()).await;
                return zxid;
            }
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn finish(
    shared: &Shared,
    verdict: Verdict,
    liveness: Option<(Class, String, String)>,
    notes: Vec<String>,
) -> RunOutput {
    let history = shared.recorder.snapshot();
    let observations = shared.observer.snapshot();
    let (class, check, detail) = match verdict {
        Verdict::Violation { check, detail } => (Class::Safety, Some(check), detail),
        Verdict::Unknown { reason } => (Class::Pass, Some("unknown".into()), reason),
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
    history: &[HistoryEvent],
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

/// A client's view of the registers it last read: key -> (value, version).
type Known = std::collections::BTreeMap<String, (Value, i32)>;

/// Names of the register keys.
fn keys(opts: &RunOptions) -> Vec<String> {
    (0..opts.workload.keys).map(|k| format!("/r{k}")).collect()
}

struct ClientCtx {
    j: usize,
    sh: Shared,
    rng: ChaCha8Rng,
    conn: Option<Conn>,
    server: usize,
    process: u64,
    generation: u64,
    counter: u64,
    known: Known,
    /// The session for which this client's ephemeral member node was created.
    joined: Option<String>,
}

impl ClientCtx {
    fn event(&self, kind: EventType, f: &str, key: &str, value: Value) -> HistoryEvent {
        let mut e = HistoryEvent::new(self.process, kind, f, Some(key), value);
        e.time = self.sh.now_ns();
        e.session = self.conn.as_ref().and_then(Conn::session);
        e.node = Some(format!("s{}", self.server));
        e
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.sh.opts.workload.op_timeout_ms)
    }

    async fn conn(&mut self) -> Result<&mut Conn, OpError> {
        if self.conn.is_none() {
            let n = self.sh.opts.total_servers();
            let timeout = self.timeout();
            let conn = match self.sh.opts.sut {
                SutKind::Toy => {
                    self.server = self.rng.gen_range(0..n);
                    Conn::Toy(ToyConn::connect(server_addr(self.server), timeout).await?)
                }
                SutKind::Node => {
                    let connect: Vec<String> = (0..n).map(|i| server_addr(i).to_string()).collect();
                    let session = Duration::from_millis(self.sh.opts.session_timeout_ms);
                    let seed = self.rng.gen();
                    Conn::Node(
                        NodeConn::connect(&connect.join(","), session, seed, timeout.max(session))
                            .await?,
                    )
                }
            };
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connected"))
    }

    /// After a lost connection, wait (bounded by the session timeout) until the session is
    /// connected again before issuing more operations, as a well-behaved client does. A
    /// session that ended (a server answered its reconnect "expired") is not waited for:
    /// the next operation reports the expiry at once, close to the server's answer.
    async fn await_connected(&mut self) {
        let deadline = Duration::from_millis(self.sh.opts.session_timeout_ms);
        let t0 = Instant::now();
        while self
            .conn
            .as_ref()
            .is_some_and(|c| !c.is_connected() && !c.replace_after_loss())
            && t0.elapsed() < deadline
            && self.sh.phase() < PHASE_DONE
        {
            madsim::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// After an indeterminate result, the process is "crashed" (Jepsen): continue with a
    /// fresh process id so one operation is in flight per process.
    fn lost(&mut self) {
        if self.conn.as_ref().is_none_or(Conn::replace_after_loss) {
            self.conn = None;
        }
        self.generation += 1;
        self.process = self.j as u64 + self.sh.opts.clients as u64 * self.generation;
    }

    fn complete(&mut self, mut ev: HistoryEvent, res: Result<(), OpError>) {
        match res {
            Ok(()) => {
                self.sh.ops.fetch_add(1, Ordering::SeqCst);
            }
            Err(OpError::Definite(e)) => {
                ev.kind = EventType::Fail;
                ev.error = Some(e);
                if self.conn.as_ref().is_none_or(Conn::replace_after_loss) {
                    self.conn = None;
                }
            }
            Err(OpError::Indeterminate(e)) => {
                ev.kind = EventType::Info;
                ev.error = Some(e);
            }
        }
        let lost = ev.kind == EventType::Info;
        self.record_notifications();
        self.sh.recorder.record(ev);
        if lost {
            self.lost();
        }
    }

    /// Record the watch notifications delivered so far, each as an instantaneous `notify`
    /// operation of a per-client pseudo-process, before the completion being recorded (the
    /// client library queues an event before it completes any later reply).
    fn record_notifications(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let events = conn.drain_events();
        let process = 2_000_000 + self.j as u64;
        for (kind, path) in events {
            for t in [EventType::Invoke, EventType::Ok] {
                let mut e = self.event(t, "notify", &path, json!(kind.clone()));
                e.process = process;
                self.sh.recorder.record(e);
            }
        }
    }

    async fn read(&mut self, key: &str, sync_first: bool) -> bool {
        self.read_watch(key, sync_first, false).await
    }

    /// getData (after `sync` if asked), leaving a data watch if asked; the ok event's
    /// `result` carries the data version and whether a watch was set.
    async fn read_watch(&mut self, key: &str, sync_first: bool, watch: bool) -> bool {
        let f = "read";
        let mut inv = self.event(EventType::Invoke, f, key, Value::Null);
        if watch {
            inv.result = Some(json!({ "watch": true }));
        }
        self.sh.recorder.record(inv);
        let t = self.timeout();
        let res = async {
            let c = self.conn().await?;
            if sync_first {
                c.sync(key, t).await?;
            }
            c.get_data(key, watch, t).await
        }
        .await;
        let mut ev = self.event(EventType::Ok, f, key, Value::Null);
        let ok = res.is_ok();
        let res = res.map(|r| {
            let v = r.data.map_or(Value::Null, Value::String);
            self.known.insert(key.to_string(), (v.clone(), r.version));
            ev.value = v;
            ev.zxid = Some(r.zxid);
            ev.result = Some(json!({ "version": r.version, "watch": watch, "sync": sync_first }));
        });
        self.complete(ev, res);
        ok
    }

    async fn write(&mut self, key: &str, cas: bool) {
        self.counter += 1;
        let new = Value::String(format!("c{}-{}", self.j, self.counter));
        let (f, arg, version) = match (cas, self.known.get(key).cloned()) {
            (true, Some((old, version))) => ("cas", json!([old, new]), version),
            _ => ("write", new.clone(), -1),
        };
        self.sh
            .recorder
            .record(self.event(EventType::Invoke, f, key, arg.clone()));
        let data = new.as_str().unwrap_or_default().to_string();
        let t = self.timeout();
        let res = async {
            let c = self.conn().await?;
            c.set_data(key, &data, version, t).await
        }
        .await;
        let mut ev = self.event(EventType::Ok, f, key, arg);
        let res = res.and_then(|r| match r {
            SetReply::Ok { version, zxid } => {
                self.known.insert(key.to_string(), (new.clone(), version));
                ev.zxid = Some(zxid);
                Ok(())
            }
            SetReply::BadVersion if cas => {
                self.known.remove(key);
                ev.result = Some(Value::Bool(false));
                Ok(())
            }
            SetReply::BadVersion => Err(OpError::Definite("BadVersion".into())),
            SetReply::NoNode => Err(OpError::Definite("NoNode".into())),
        });
        self.complete(ev, res);
    }
}

/// Parent of the sequential queue.
const QUEUE: &str = "/q";
/// The ephemeral lock node.
const LOCK: &str = "/lock";
/// Parent of the ephemeral membership nodes.
const MEMBERS: &str = "/members";

impl ClientCtx {
    /// Run one operation recorded as invoke + completion; `op` returns the ok event's
    /// value and result, or an error.
    async fn recorded<F>(&mut self, f: &str, key: &str, arg: Value, op: F) -> Result<Value, OpError>
    where
        F: for<'a> FnOnce(
            &'a mut Conn,
            Duration,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = Result<(Value, Option<Value>, Option<i64>), OpError>,
                    > + 'a,
            >,
        >,
    {
        self.sh
            .recorder
            .record(self.event(EventType::Invoke, f, key, arg.clone()));
        let t = self.timeout();
        let res = match self.conn().await {
            Ok(c) => op(c, t).await,
            Err(e) => Err(e),
        };
        let mut ev = self.event(EventType::Ok, f, key, arg);
        let out = res.clone().map(|(v, _, _)| v);
        let res = res.map(|(v, result, zxid)| {
            ev.value = v;
            ev.result = result;
            ev.zxid = zxid;
        });
        self.complete(ev, res);
        out
    }

    /// Enqueue: create a PERSISTENT_SEQUENTIAL child of the queue.
    async fn enqueue(&mut self) {
        self.counter += 1;
        let payload = format!("c{}-{}", self.j, self.counter);
        let _ = self
            .recorded("enqueue", QUEUE, json!(payload.clone()), move |c, t| {
                Box::pin(async move {
                    match c
                        .create_mode(
                            &format!("{QUEUE}/item-"),
                            &payload,
                            zabkeeper::types::CreateMode::PersistentSequential,
                            t,
                        )
                        .await?
                    {
                        Ok((path, zxid)) => Ok((json!(payload), Some(json!(path)), Some(zxid))),
                        Err(code) => Err(OpError::Definite(code)),
                    }
                })
            })
            .await;
    }

    /// List a parent's children (sync first), recorded as `f`.
    async fn list(&mut self, f: &str, parent: &'static str) -> bool {
        self.recorded(f, parent, Value::Null, move |c, t| {
            Box::pin(async move {
                let zxid = c.sync(parent, t).await?;
                let children = c.get_children(parent, t).await?;
                Ok((json!(children), None, Some(zxid)))
            })
        })
        .await
        .is_ok()
    }

    /// Once per session: create this client's ephemeral member node (`join`).
    async fn ensure_member(&mut self) {
        let Some(session) = self.conn.as_ref().and_then(Conn::session) else {
            return;
        };
        if self.joined.as_deref() == Some(session.as_str()) {
            return;
        }
        self.counter += 1;
        let name = format!("c{}-{}", self.j, self.counter);
        let joined = self
            .recorded("join", MEMBERS, json!(name.clone()), move |c, t| {
                Box::pin(async move {
                    let path = format!("{MEMBERS}/{name}");
                    match c
                        .create_mode(&path, "", zabkeeper::types::CreateMode::Ephemeral, t)
                        .await?
                    {
                        Ok((path, zxid)) => Ok((json!(name), Some(json!(path)), Some(zxid))),
                        Err(code) => Err(OpError::Definite(code)),
                    }
                })
            })
            .await
            .is_ok();
        if joined {
            self.joined = Some(session);
        }
    }

    /// A multi setting two registers with their last-read versions, recorded as two `cas`
    /// operations (one per key, each under its own fresh pseudo-process) that share one
    /// invocation and one completion: all or nothing, so a failed multi is a `fail` of
    /// both, and a partially applied one shows up in the per-key checks.
    async fn multi(&mut self, keys: &[String]) {
        let (a, b) = (keys[0].clone(), keys[1].clone());
        let (Some((old_a, ver_a)), Some((old_b, ver_b))) =
            (self.known.get(&a).cloned(), self.known.get(&b).cloned())
        else {
            self.read(&a, false).await;
            return;
        };
        self.counter += 1;
        let new_a = format!("c{}-{}a", self.j, self.counter);
        let new_b = format!("c{}-{}b", self.j, self.counter);
        let base = 1_000_000 + 2 * (self.j as u64 * 1_000_000 + self.counter);
        let mut invokes = Vec::new();
        for (i, (key, old, new)) in [(&a, &old_a, &new_a), (&b, &old_b, &new_b)]
            .into_iter()
            .enumerate()
        {
            let mut e = self.event(EventType::Invoke, "cas", key, json!([old, new]));
            e.process = base + i as u64;
            self.sh.recorder.record(e.clone());
            invokes.push(e);
        }
        let ops = vec![
            (a.clone(), new_a.clone(), ver_a),
            (b.clone(), new_b.clone(), ver_b),
        ];
        let t = self.timeout();
        let res = match self.conn().await {
            Ok(c) => c.multi_set(&ops, t).await,
            Err(e) => Err(e),
        };
        let now = self.sh.now_ns();
        let versions: Option<Vec<i32>> = match &res {
            Ok(Ok(r)) => Some(r.iter().map(|(v, _)| *v).collect()),
            _ => None,
        };
        let done = |inv: &HistoryEvent, kind: EventType, zxid: Option<i64>, err: Option<String>| {
            let mut e = inv.clone();
            e.kind = kind;
            e.time = now;
            e.zxid = zxid;
            e.error = err;
            e.f = "cas".into();
            self.sh.recorder.record(e);
        };
        let mut lost = false;
        match res {
            Ok(Ok(results)) => {
                for (inv, (_, zxid)) in invokes.iter().zip(&results) {
                    done(inv, EventType::Ok, Some(*zxid), None);
                }
                self.sh.ops.fetch_add(1, Ordering::SeqCst);
            }
            Ok(Err(code)) => {
                for inv in &invokes {
                    done(inv, EventType::Fail, None, Some(code.clone()));
                }
            }
            Err(OpError::Definite(e)) => {
                for inv in &invokes {
                    done(inv, EventType::Fail, None, Some(e.clone()));
                }
            }
            Err(OpError::Indeterminate(e)) => {
                for inv in &invokes {
                    done(inv, EventType::Info, None, Some(e.clone()));
                }
                lost = true;
            }
        }
        if let Some(versions) = versions {
            for ((key, new, _), version) in ops.iter().zip(versions) {
                self.known.insert(key.clone(), (json!(new), version));
            }
        } else {
            self.known.remove(&a);
            self.known.remove(&b);
        }
        if lost && self.conn.as_ref().is_none_or(Conn::replace_after_loss) {
            self.conn = None;
        }
    }

    /// Try to take the ephemeral lock, hold it a while, release it.
    async fn lock_cycle(&mut self) {
        let owner = format!("c{}", self.j);
        let acquired = self
            .recorded("acquire", LOCK, json!(owner.clone()), move |c, t| {
                Box::pin(async move {
                    match c
                        .create_mode(LOCK, &owner, zabkeeper::types::CreateMode::Ephemeral, t)
                        .await?
                    {
                        Ok((_, zxid)) => Ok((json!(owner), None, Some(zxid))),
                        Err(code) => Err(OpError::Definite(code)),
                    }
                })
            })
            .await
            .is_ok();
        if !acquired {
            return;
        }
        let hold = self.rng.gen_range(10..300);
        madsim::time::sleep(Duration::from_millis(hold)).await;
        let _ = self
            .recorded("release", LOCK, Value::Null, |c, t| {
                Box::pin(async move {
                    match c.delete(LOCK, -1, t).await? {
                        None => Ok((Value::Null, None, None)),
                        Some(code) => Err(OpError::Definite(code)),
                    }
                })
            })
            .await;
    }
}

async fn client_main(j: usize, sh: Shared) {
    let opts = Arc::clone(&sh.opts);
    let mut cx = ClientCtx {
        j,
        rng: ChaCha8Rng::seed_from_u64(opts.seed.wrapping_mul(31).wrapping_add(j as u64 + 1)),
        sh: sh.clone(),
        conn: None,
        server: 0,
        process: j as u64,
        generation: 0,
        counter: 0,
        known: Known::new(),
        joined: None,
    };
    let keys = keys(&opts);
    if j == 0 {
        // Setup: create every register with an initial value (recorded as writes).
        for key in &keys {
            loop {
                cx.sh
                    .recorder
                    .record(cx.event(EventType::Invoke, "write", key, json!("init")));
                let t = cx.timeout();
                let res = async {
                    let c = cx.conn().await?;
                    c.create(key, "init", t).await
                }
                .await;
                let mut ev = cx.event(EventType::Ok, "write", key, json!("init"));
                match res {
                    Ok((true, zxid)) => {
                        ev.zxid = Some(zxid);
                        cx.complete(ev, Ok(()));
                        break;
                    }
                    Ok((false, _)) => {
                        // Created by an earlier attempt whose reply was lost: keep the
                        // earlier invoke as the write; this one did nothing.
                        cx.complete(ev, Err(OpError::Definite("NodeExists".into())));
                        break;
                    }
                    Err(e) => {
                        cx.complete(ev, Err(e));
                        madsim::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        }
        for parent in [QUEUE, MEMBERS]
            .into_iter()
            .filter(|_| opts.sut == SutKind::Node)
        {
            loop {
                let r = cx
                    .recorded("create", parent, Value::Null, move |c, t| {
                        Box::pin(async move {
                            match c.create(parent, "", t).await? {
                                (true, zxid) => Ok((Value::Null, None, Some(zxid))),
                                (false, _) => Ok((Value::Null, Some(json!("exists")), None)),
                            }
                        })
                    })
                    .await;
                if r.is_ok() {
                    break;
                }
                madsim::time::sleep(Duration::from_millis(50)).await;
            }
        }
        sh.setup_done.store(1, Ordering::SeqCst);
    }
    while sh.phase() == PHASE_SETUP {
        madsim::time::sleep(Duration::from_millis(5)).await;
    }
    let w = opts.workload.clone();
    let node = opts.sut == SutKind::Node;
    let weights = [
        w.register.max(1) * 2,
        w.register,
        w.sync_read,
        if node { w.queue } else { 0 },
        if node { w.lock } else { 0 },
        if node && keys.len() >= 2 { w.multi } else { 0 },
        if node { w.watch } else { 0 },
    ];
    let total: u32 = weights.iter().sum();
    while sh.phase() == PHASE_SAFETY {
        if sh.ops.load(Ordering::SeqCst) as usize >= opts.max_ops {
            madsim::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        cx.await_connected().await;
        if node {
            cx.ensure_member().await;
        }
        let key = keys[cx.rng.gen_range(0..keys.len())].clone();
        let mut pick = cx.rng.gen_range(0..total);
        let choice = weights
            .iter()
            .position(|&wt| {
                if pick < wt {
                    true
                } else {
                    pick -= wt;
                    false
                }
            })
            .unwrap_or(0);
        match choice {
            0 => {
                let cas = cx.rng.gen_bool(0.7);
                cx.write(&key, cas).await
            }
            1 => {
                cx.read(&key, false).await;
            }
            2 => {
                cx.read(&key, true).await;
            }
            3 => cx.enqueue().await,
            4 => cx.lock_cycle().await,
            6 => {
                cx.read_watch(&key, false, true).await;
            }
            _ => {
                let mut two = keys.clone();
                let first = cx.rng.gen_range(0..two.len());
                two.swap(0, first);
                let second = cx.rng.gen_range(1..two.len());
                two.swap(1, second);
                cx.multi(&two).await
            }
        }
        let think = cx.rng.gen_range(w.think_ms[0]..=w.think_ms[1]);
        madsim::time::sleep(Duration::from_millis(think)).await;
    }
    // Liveness: sync + read every key, retrying until all succeed or the run ends.
    let mut pending: Vec<String> = keys.clone();
    while sh.phase() == PHASE_LIVENESS && !pending.is_empty() {
        cx.await_connected().await;
        let key = pending[0].clone();
        if cx.read(&key, true).await {
            pending.remove(0);
        } else {
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut listed = !node;
    while sh.phase() == PHASE_LIVENESS && !listed {
        cx.await_connected().await;
        listed = cx.list("list", QUEUE).await && cx.list("members", MEMBERS).await;
        if !listed {
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if pending.is_empty() && listed {
        sh.live_done.lock().expect("live").insert(j);
    }
    std::future::pending::<()>().await;
}
