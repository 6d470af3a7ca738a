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
use crate::history::{Event, EventType, Recorder, ZkStat};
use crate::judge::{convergence, judge, Observation, ObservationLog, ReplicaTree, Verdict};
use crate::options::RunOptions;
use crate::plan::FaultPlan;
use crate::sut::node::{NodeConn, NodeTiming};
use crate::sut::{client_ip, server_ip, Disk, OpError, CLIENT_PORT};
use zabkeeper::client::Reply;
use zabkeeper::proto::client::{CreateRequest, MultiOp, MultiResult, Request, Response};
use zabkeeper::types::{Acl, CreateMode, ErrorCode};

/// A simulated client's session.
type Conn = NodeConn;

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
    let net = NetSim::current();
    let n = opts.total_servers();
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
                        };
                        crate::sut::node::serve(
                            i,
                            sh.disks[i].0.clone(),
                            sh.clocks.clone(),
                            sh.start,
                            timing,
                            sh.observations.clone(),
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
                match shared.observations.current_leader().filter(|_| n > 1) {
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
        (None, Some(client)) if n > 1 => {
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
                        && shared.observations.refused_start_since(i, heal_ms) =>
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
    let observations = shared.observations.snapshot();
    let verdict = judge(&history, &observations);
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
            .observations
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
    let observations = shared.observations.snapshot();
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

/// A client's view of the registers it last read: path -> (data, version).
type Known = std::collections::BTreeMap<String, (String, i32)>;

/// Paths of the register znodes.
fn keys(opts: &RunOptions) -> Vec<String> {
    (0..opts.workload.keys).map(|k| format!("/r{k}")).collect()
}

/// Parent of the sequential queue.
const QUEUE: &str = "/q";
/// The ephemeral lock node.
const LOCK: &str = "/lock";
/// Parent of the ephemeral membership nodes.
const MEMBERS: &str = "/members";

/// Error codes that answer a request whose precondition failed: the operation ran and
/// had no effect (the checker verifies the precondition).
const PRECONDITION_ERRORS: [ErrorCode; 5] = [
    ErrorCode::NoNode,
    ErrorCode::NodeExists,
    ErrorCode::BadVersion,
    ErrorCode::NotEmpty,
    ErrorCode::NoChildrenForEphemerals,
];

fn code_name(err: i32) -> String {
    ErrorCode::from_code(err).map_or_else(|| format!("error {err}"), |c| format!("{c:?}"))
}

fn zk_stat(s: &zabkeeper::types::Stat) -> ZkStat {
    ZkStat {
        czxid: s.czxid,
        mzxid: s.mzxid,
        version: s.version,
        cversion: s.cversion,
        ephemeral_owner: s.ephemeral_owner,
        num_children: s.num_children,
    }
}

/// The completion of `inv` from the server's reply, in the checker's fields: the header
/// zxid, the error code's name, and what the body carries (data and stat of a read,
/// children, the created path, a multi's per-op results).
fn completion(inv: &Event, reply: &Reply, now_ns: u64) -> Event {
    let mut ev = Event {
        kind: EventType::Ok,
        time: Some(now_ns),
        zxid: Some(reply.zxid),
        value: if inv.f == "getData" || inv.f == "getChildren" {
            Value::Null
        } else {
            inv.value.clone()
        },
        ..inv.clone()
    };
    if reply.err != 0 {
        ev.error = Some(code_name(reply.err));
    }
    match &reply.response {
        Response::Create { path } => ev.result = Some(json!(path)),
        Response::Create2 { path, stat } => {
            ev.result = Some(json!(path));
            ev.stat = Some(zk_stat(stat));
        }
        Response::Stat { stat } => ev.stat = Some(zk_stat(stat)),
        Response::GetData { data, stat } => {
            ev.value = json!(String::from_utf8_lossy(data));
            ev.stat = Some(zk_stat(stat));
        }
        Response::GetChildren { children } | Response::GetChildren2 { children, .. } => {
            let mut c = children.clone();
            c.sort();
            ev.value = json!(c);
        }
        Response::Multi(results) => {
            // A failed multi answers an error per op (the failing op's code, then
            // RuntimeInconsistency for the others): all or nothing.
            let failing = results.iter().find_map(|r| match r {
                MultiResult::Error { err }
                    if *err != 0 && *err != ErrorCode::RuntimeInconsistency.code() =>
                {
                    Some(*err)
                }
                _ => None,
            });
            if let Some(err) = failing {
                ev.error = Some(code_name(err));
            }
            ev.result = Some(Value::Array(
                results
                    .iter()
                    .map(|r| match r {
                        MultiResult::Create { path } | MultiResult::Create2 { path, .. } => {
                            json!(path)
                        }
                        _ => Value::Null,
                    })
                    .collect(),
            ));
        }
        _ => {}
    }
    ev
}

struct ClientCtx {
    j: usize,
    sh: Shared,
    rng: ChaCha8Rng,
    conn: Option<Conn>,
    process: u64,
    generation: u64,
    counter: u64,
    known: Known,
    /// The session for which this client's ephemeral member node was created.
    joined: Option<i64>,
    /// The last session whose expiry this client recorded.
    expired: Option<i64>,
}

impl ClientCtx {
    /// An invoke of this client's process and session on `path`.
    fn invoke(&self, f: &str, path: &str, value: Value) -> Event {
        Event {
            process: self.process,
            kind: EventType::Invoke,
            f: f.to_string(),
            path: Some(path.to_string()),
            value,
            time: Some(self.sh.now_ns()),
            session: self.conn.as_ref().map(Conn::session),
            ..Event::default()
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.sh.opts.workload.op_timeout_ms)
    }

    /// Whether reads are linearizable as served: a standalone server serves every read
    /// from the one copy of the tree.
    fn standalone(&self) -> bool {
        self.sh.opts.total_servers() == 1
    }

    async fn conn(&mut self) -> Result<&mut Conn, OpError> {
        if self.conn.is_none() {
            let n = self.sh.opts.total_servers();
            let timeout = self.timeout();
            let connect: Vec<String> = (0..n).map(|i| server_addr(i).to_string()).collect();
            let session = Duration::from_millis(self.sh.opts.session_timeout_ms);
            let seed = self.rng.gen();
            let conn =
                NodeConn::connect(&connect.join(","), session, seed, timeout.max(session)).await?;
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
            .is_some_and(|c| !c.is_connected() && !c.is_dead())
            && t0.elapsed() < deadline
            && self.sh.phase() < PHASE_DONE
        {
            madsim::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// After an indeterminate result, the process is "crashed" (Jepsen): continue with a
    /// fresh process id so one operation is in flight per process.
    fn lost(&mut self) {
        if self.conn.as_ref().is_none_or(Conn::is_dead) {
            self.conn = None;
        }
        self.generation += 1;
        self.process = self.j as u64 + self.sh.opts.clients as u64 * self.generation;
    }

    /// Record that `session` was told it expired (once per session): the checker's
    /// `session` notification, after which none of its ephemerals may be seen.
    fn record_expired(&mut self, session: i64) {
        if self.expired == Some(session) {
            return;
        }
        self.expired = Some(session);
        self.sh.recorder.record(Event {
            process: self.process,
            kind: EventType::Event,
            f: "session".into(),
            event: Some("expired".into()),
            session: Some(session),
            time: Some(self.sh.now_ns()),
            ..Event::default()
        });
    }

    /// Record the notifications the client handed over so far, before the completion
    /// being recorded (the server sends a notification before any later reply; one that
    /// came after this reply may be recorded first, which the checker allows for the
    /// watch this very read set): watch events, and the session's expiry.
    fn record_notifications(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let session = conn.session();
        let events = conn.drain_events();
        for e in events {
            if e.event_type == zabkeeper::types::EventType::None {
                if e.state == zabkeeper::types::keeper_state::EXPIRED {
                    self.record_expired(session);
                }
                continue;
            }
            self.sh.recorder.record(Event {
                process: self.process,
                kind: EventType::Event,
                f: "watch".into(),
                path: Some(e.path),
                event: Some(format!("{:?}", e.event_type)),
                session: Some(session),
                time: Some(self.sh.now_ns()),
                ..Event::default()
            });
        }
    }

    /// Run `requests` in order on one connection as one history operation `inv` (a sync
    /// and the read behind it, or a single request): connect first (a failed connect
    /// issues nothing and records nothing), record the invoke, then the completion made
    /// from the last reply. A precondition error is an answer (`ok` with `error`); an
    /// error of an earlier request fails the operation; a lost connection, an expired
    /// session, a timeout or any other error leave it unknown (`info`). Returns the
    /// recorded completion.
    async fn op(&mut self, mut inv: Event, requests: Vec<Request>) -> Option<Event> {
        let t = self.timeout();
        if let Err(e) = self.conn().await {
            let _ = e;
            return None;
        }
        inv.session = self.conn.as_ref().map(Conn::session);
        inv.time = Some(self.sh.now_ns());
        self.sh.recorder.record(inv.clone());
        let last = requests.len().saturating_sub(1);
        let mut outcome: Result<Reply, OpError> = Err(OpError::Definite("no request".into()));
        for (i, request) in requests.into_iter().enumerate() {
            let conn = self.conn.as_mut().expect("connected");
            outcome = conn.submit(request, t).await;
            match &outcome {
                Ok(reply) if reply.err != 0 && i < last => {
                    outcome = Err(OpError::Definite(code_name(reply.err)));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let now = self.sh.now_ns();
        let session = inv.session.unwrap_or(0);
        let mut ev = match &outcome {
            Ok(reply) => completion(&inv, reply, now),
            Err(_) => Event {
                time: Some(now),
                value: Value::Null,
                ..inv.clone()
            },
        };
        match outcome {
            Ok(reply)
                if reply.err == 0
                    || PRECONDITION_ERRORS.iter().any(|c| c.code() == reply.err)
                    || ev.error.is_some() && inv.f == "multi" => {}
            Ok(reply) => {
                ev.kind = EventType::Info;
                ev.zxid = None;
                ev.stat = None;
                if reply.err == ErrorCode::SessionExpired.code() {
                    self.record_expired(session);
                }
            }
            Err(OpError::Definite(e)) => {
                ev.kind = EventType::Fail;
                ev.error = Some(e);
            }
            Err(OpError::Indeterminate(e)) => {
                ev.kind = EventType::Info;
                if e == "SessionExpired" {
                    self.record_expired(session);
                }
                ev.error = Some(e);
            }
        }
        self.record_notifications();
        self.sh.recorder.record(ev.clone());
        match ev.kind {
            EventType::Ok => {
                self.sh.ops.fetch_add(1, Ordering::SeqCst);
            }
            EventType::Info => self.lost(),
            _ => {
                if self.conn.as_ref().is_none_or(Conn::is_dead) {
                    self.conn = None;
                }
            }
        }
        Some(ev)
    }

    /// getData (after a sync if asked, as one operation), leaving a data watch if asked.
    /// Linearizable (`quorum`) when synced first or served by a standalone server.
    async fn read(&mut self, key: &str, sync_first: bool, watch: bool) -> bool {
        let mut inv = self.invoke("getData", key, Value::Null);
        inv.watch = watch;
        inv.quorum = sync_first || self.standalone();
        let mut requests = Vec::new();
        if sync_first {
            requests.push(Request::Sync { path: key.into() });
        }
        requests.push(Request::GetData {
            path: key.into(),
            watch,
        });
        let Some(ev) = self.op(inv, requests).await else {
            return false;
        };
        if ev.kind != EventType::Ok {
            return false;
        }
        match (ev.value.as_str(), ev.stat) {
            (Some(data), Some(stat)) if ev.error.is_none() => {
                self.known
                    .insert(key.to_string(), (data.to_string(), stat.version));
            }
            _ => {
                self.known.remove(key);
            }
        }
        true
    }

    /// setData: a conditional one (cas) with the last-read version when asked and known,
    /// else a blind one (version -1).
    async fn write(&mut self, key: &str, cas: bool) {
        self.counter += 1;
        let new = format!("c{}-{}", self.j, self.counter);
        let version = match (cas, self.known.get(key)) {
            (true, Some((_, v))) => *v,
            _ => -1,
        };
        let mut inv = self.invoke("setData", key, json!(new));
        inv.version = Some(version);
        let request = Request::SetData {
            path: key.into(),
            data: new.clone().into_bytes(),
            version,
        };
        let ev = self.op(inv, vec![request]).await;
        match ev
            .as_ref()
            .and_then(|e| e.stat.filter(|_| e.error.is_none()))
        {
            Some(stat) => {
                self.known.insert(key.to_string(), (new, stat.version));
            }
            None => {
                self.known.remove(key);
            }
        }
    }

    /// create with a mode; returns the completion.
    async fn create(&mut self, path: &str, data: &str, mode: CreateMode) -> Option<Event> {
        let mut inv = self.invoke("create", path, json!(data));
        inv.mode = Some(
            match mode {
                CreateMode::Persistent => "persistent",
                CreateMode::Ephemeral => "ephemeral",
                CreateMode::PersistentSequential => "persistent_sequential",
                CreateMode::EphemeralSequential => "ephemeral_sequential",
                _ => "persistent",
            }
            .to_string(),
        );
        let request = Request::Create(CreateRequest {
            path: path.into(),
            data: data.as_bytes().to_vec(),
            acl: Acl::open_unsafe(),
            flags: mode.flag(),
        });
        self.op(inv, vec![request]).await
    }

    /// Enqueue: create a PERSISTENT_SEQUENTIAL child of the queue.
    async fn enqueue(&mut self) {
        self.counter += 1;
        let payload = format!("c{}-{}", self.j, self.counter);
        self.create(
            &format!("{QUEUE}/item-"),
            &payload,
            CreateMode::PersistentSequential,
        )
        .await;
    }

    /// List a parent's children after a sync, as one linearizable operation.
    async fn list(&mut self, parent: &str) -> bool {
        let mut inv = self.invoke("getChildren", parent, Value::Null);
        inv.quorum = true;
        let requests = vec![
            Request::Sync {
                path: parent.into(),
            },
            Request::GetChildren {
                path: parent.into(),
                watch: false,
            },
        ];
        self.op(inv, requests)
            .await
            .is_some_and(|e| e.kind == EventType::Ok && e.error.is_none())
    }

    /// Once per session: create this client's ephemeral member node.
    async fn ensure_member(&mut self) {
        let Some(session) = self.conn.as_ref().map(Conn::session) else {
            return;
        };
        if self.joined == Some(session) {
            return;
        }
        self.counter += 1;
        let path = format!("{MEMBERS}/c{}-{}", self.j, self.counter);
        let ev = self.create(&path, "", CreateMode::Ephemeral).await;
        if ev.is_some_and(|e| {
            e.kind == EventType::Ok && e.error.is_none() && e.session == Some(session)
        }) {
            self.joined = Some(session);
        }
    }

    /// A multi setting two registers, each conditional on its last-read version: all or
    /// nothing.
    async fn multi(&mut self, keys: &[String]) {
        let (a, b) = (keys[0].clone(), keys[1].clone());
        let (Some((_, ver_a)), Some((_, ver_b))) =
            (self.known.get(&a).cloned(), self.known.get(&b).cloned())
        else {
            self.read(&a, false, false).await;
            return;
        };
        self.counter += 1;
        let sets = [
            (a.clone(), format!("c{}-{}a", self.j, self.counter), ver_a),
            (b.clone(), format!("c{}-{}b", self.j, self.counter), ver_b),
        ];
        let subs: Vec<Value> = sets
            .iter()
            .map(|(path, data, version)| {
                json!({"op": "setData", "path": path, "value": data, "version": version})
            })
            .collect();
        let inv = self.invoke("multi", &a, Value::Array(subs));
        let request = Request::Multi(
            sets.iter()
                .map(|(path, data, version)| MultiOp::SetData {
                    path: path.clone(),
                    data: data.clone().into_bytes(),
                    version: *version,
                })
                .collect(),
        );
        let done = self
            .op(inv, vec![request])
            .await
            .is_some_and(|e| e.kind == EventType::Ok && e.error.is_none());
        for (path, data, version) in sets {
            if done {
                self.known.insert(path, (data, version + 1));
            } else {
                self.known.remove(&path);
            }
        }
    }

    /// Try to take the ephemeral lock, hold it a while, release it.
    async fn lock_cycle(&mut self) {
        let owner = format!("c{}", self.j);
        let acquired = self
            .create(LOCK, &owner, CreateMode::Ephemeral)
            .await
            .is_some_and(|e| e.kind == EventType::Ok && e.error.is_none());
        if !acquired {
            return;
        }
        let hold = self.rng.gen_range(10..300);
        madsim::time::sleep(Duration::from_millis(hold)).await;
        let mut inv = self.invoke("delete", LOCK, Value::Null);
        inv.version = Some(-1);
        let request = Request::Delete {
            path: LOCK.into(),
            version: -1,
        };
        self.op(inv, vec![request]).await;
    }

    /// Create a persistent znode until the server answers (created, or there already from
    /// an attempt whose reply was lost).
    async fn create_until_answered(&mut self, path: &str, data: &str) {
        loop {
            let answered = self
                .create(path, data, CreateMode::Persistent)
                .await
                .is_some_and(|e| e.kind == EventType::Ok);
            if answered {
                return;
            }
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn client_main(j: usize, sh: Shared) {
    let opts = Arc::clone(&sh.opts);
    let mut cx = ClientCtx {
        j,
        rng: ChaCha8Rng::seed_from_u64(opts.seed.wrapping_mul(31).wrapping_add(j as u64 + 1)),
        sh: sh.clone(),
        conn: None,
        process: j as u64,
        generation: 0,
        counter: 0,
        known: Known::new(),
        joined: None,
        expired: None,
    };
    let keys = keys(&opts);
    if j == 0 {
        // Setup: every register with its initial data, the queue and the members parent.
        for key in &keys {
            cx.create_until_answered(key, "init").await;
        }
        for parent in [QUEUE, MEMBERS] {
            cx.create_until_answered(parent, "").await;
        }
        sh.setup_done.store(1, Ordering::SeqCst);
    }
    while sh.phase() == PHASE_SETUP {
        madsim::time::sleep(Duration::from_millis(5)).await;
    }
    let w = opts.workload.clone();
    let weights = [
        w.register.max(1) * 2,
        w.register,
        w.sync_read,
        w.queue,
        w.lock,
        if keys.len() >= 2 { w.multi } else { 0 },
        w.watch,
    ];
    let total: u32 = weights.iter().sum();
    while sh.phase() == PHASE_SAFETY {
        if sh.ops.load(Ordering::SeqCst) as usize >= opts.max_ops {
            madsim::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        cx.await_connected().await;
        cx.ensure_member().await;
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
                cx.read(&key, false, false).await;
            }
            2 => {
                cx.read(&key, true, false).await;
            }
            3 => cx.enqueue().await,
            4 => cx.lock_cycle().await,
            6 => {
                cx.read(&key, false, true).await;
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
    // Liveness: sync + read every key, then list the queue and the members, retrying
    // until all succeed or the run ends.
    let mut pending: Vec<String> = keys.clone();
    while sh.phase() == PHASE_LIVENESS && !pending.is_empty() {
        cx.await_connected().await;
        let key = pending[0].clone();
        if cx.read(&key, true, false).await {
            pending.remove(0);
        } else {
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut listed = false;
    while sh.phase() == PHASE_LIVENESS && !listed {
        cx.await_connected().await;
        listed = cx.list(QUEUE).await && cx.list(MEMBERS).await;
        if !listed {
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
    }
    if pending.is_empty() && listed {
        sh.live_done.lock().expect("live").insert(j);
    }
    std::future::pending::<()>().await;
}
