//! The fault executor: carries out the plan's faults on the simulated servers, clients,
//! network, clocks and disks, reaps servers that stop by themselves, and heals everything
//! at the end of the safety phase. It decides nothing: what happens when is the plan's.

use madsim::net::NetSim;
use madsim::task::NodeId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::fault::Moment;
use crate::plan::TimedEvent;
use crate::sut::crash_points::{Armed, Fired};

/// The state the faults change: which servers are down or paused, which clients are
/// paused, which links are clogged.
pub(super) struct Executor {
    sh: Shared,
    handle: Handle,
    net: Arc<NetSim>,
    servers: Vec<NodeId>,
    clients: Vec<NodeId>,
    /// Servers that are down: crashed by the plan, or stopped by themselves (a failed
    /// fsync stops the node) and reaped.
    down: Arc<Mutex<BTreeSet<usize>>>,
    /// Notes of the executor's own tasks (the reaper, crash points), merged into the
    /// run's notes at the heal and at the end.
    reaped: Arc<Mutex<Vec<String>>>,
    /// The server the last `isolate-leader` cut off.
    isolated: Option<usize>,
    /// The server `crash-isolated` crashed, until `restart-isolated` restarts it.
    crashed_isolated: Option<usize>,
    paused: BTreeSet<usize>,
    paused_clients: BTreeSet<usize>,
    /// The leader whose timers a `LeaderTimerRate` changed.
    timer_leader: Option<usize>,
    clogged: Vec<(NodeId, NodeId)>,
}

impl Executor {
    /// Starts executing: spawns the reaper. madsim leaves an exited node's sockets bound,
    /// a real process exit closes them, so the reaper kills exited servers (and their
    /// unsynced writes) like a crash.
    ///
    /// Also spawns the crash-point task: it kills a server the moment one of its crash
    /// points fires (the node has stopped on the failed step), applies the power loss to
    /// its disk (torn for a point inside its step), and restarts it after the point's
    /// delay if the safety phase still runs.
    pub(super) fn start(
        sh: &Shared,
        servers: &[NodeHandle],
        clients: &[NodeHandle],
        mut fired: UnboundedReceiver<Fired>,
    ) -> Self {
        let ex = Executor {
            sh: sh.clone(),
            handle: Handle::current(),
            net: NetSim::current(),
            servers: servers.iter().map(|s| s.id()).collect(),
            clients: clients.iter().map(|c| c.id()).collect(),
            down: Arc::default(),
            reaped: Arc::default(),
            isolated: None,
            crashed_isolated: None,
            paused: BTreeSet::new(),
            paused_clients: BTreeSet::new(),
            timer_leader: None,
            clogged: Vec::new(),
        };
        let (down, notes, crash_sh) = (Arc::clone(&ex.down), Arc::clone(&ex.reaped), sh.clone());
        let (ids, handle) = (ex.servers.clone(), ex.handle.clone());
        let has_points =
            (sh.opts.plan.events.iter()).any(|e| matches!(e.fault, Fault::CrashPoint { .. }));
        // Only a plan with crash points gets the task: the others keep their schedules.
        if has_points {
            madsim::task::spawn(async move {
                let sh = crash_sh;
                while let Some(Fired { server: i, point }) = fired.recv().await {
                    let now_ms = sh.start.elapsed().as_millis() as u64;
                    if down.lock().expect("down").insert(i) {
                        let torn = point.moment == Moment::Torn;
                        let seed = sh.opts.seed ^ now_ms ^ 0xc7a5_4b01;
                        power_off(&handle, ids[i], &sh.disks[i], torn, seed);
                    }
                    notes.lock().expect("notes").push(format!(
                        "{now_ms}ms s{i} crashed at a crash point: {:?} {:?}",
                        point.moment, point.step
                    ));
                    let (down, notes, sh, handle, id) = (
                        Arc::clone(&down),
                        Arc::clone(&notes),
                        sh.clone(),
                        handle.clone(),
                        ids[i],
                    );
                    madsim::task::spawn(async move {
                        madsim::time::sleep(Duration::from_millis(point.restart_after_ms)).await;
                        if sh.phase() == PHASE_SAFETY && down.lock().expect("down").remove(&i) {
                            handle.restart(id);
                            notes.lock().expect("notes").push(format!(
                                "{}ms restarted s{i} after its crash point",
                                sh.start.elapsed().as_millis()
                            ));
                        }
                    });
                }
            });
        }
        let (down, notes, sh) = (Arc::clone(&ex.down), Arc::clone(&ex.reaped), sh.clone());
        let ids = ex.servers.clone();
        let handle = ex.handle.clone();
        madsim::task::spawn(async move {
            loop {
                madsim::time::sleep(Duration::from_millis(20)).await;
                for (i, id) in ids.iter().enumerate() {
                    let mut d = down.lock().expect("down");
                    if !d.contains(&i) && handle.is_exit(*id) {
                        let seed = sh.opts.seed ^ sh.start.elapsed().as_millis() as u64;
                        power_off(&handle, *id, &sh.disks[i], false, seed);
                        d.insert(i);
                        notes.lock().expect("notes").push(format!(
                            "{}ms s{i} stopped by itself (reaped)",
                            sh.start.elapsed().as_millis()
                        ));
                    }
                }
            }
        });
        ex
    }

    /// The node named `s<i>` or `c<j>`, as the plan names them.
    fn node_id(&self, name: &str) -> Option<NodeId> {
        let i: usize = name.get(1..)?.parse().ok()?;
        match name.as_bytes().first()? {
            b's' => self.servers.get(i).copied(),
            b'c' => self.clients.get(i).copied(),
            _ => None,
        }
    }

    /// Carries out one event of the plan; returns what it did, for the notes.
    pub(super) fn execute(&mut self, ev: &TimedEvent) -> String {
        let (opts, n) = (&self.sh.opts, self.servers.len());
        let now_ms = self.sh.start.elapsed().as_millis() as u64;
        match &ev.fault {
            Fault::Partition { cut, .. } => {
                for [a, b] in cut {
                    if let (Some(x), Some(y)) = (self.node_id(a), self.node_id(b)) {
                        self.net.clog_link(x, y);
                        self.clogged.push((x, y));
                    }
                }
                format!("clogged {} links", cut.len())
            }
            Fault::IsolateLeader { minority } => {
                match self.sh.observations.current_leader().filter(|_| n > 1) {
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
                                let (x, y) = (self.servers[a], self.servers[b]);
                                self.net.clog_link(x, y);
                                self.net.clog_link(y, x);
                                self.clogged.push((x, y));
                                self.clogged.push((y, x));
                            }
                        }
                        self.isolated = Some(leader);
                        format!("isolated leader s{leader} with {side:?}")
                    }
                }
            }
            Fault::Heal => {
                for (x, y) in self.clogged.drain(..) {
                    self.net.unclog_link(x, y);
                }
                "healed".into()
            }
            Fault::Crash { server, torn_tail } => {
                if self.crash(*server, *torn_tail, opts.seed ^ now_ms) {
                    format!("crashed s{server} (torn_tail={torn_tail})")
                } else {
                    format!("s{server} already down")
                }
            }
            Fault::Restart { server } => {
                if self.restart(*server) {
                    format!("restarted s{server}")
                } else {
                    format!("s{server} not crashed")
                }
            }
            Fault::Pause { server } => {
                if !self.down.lock().expect("down").contains(server) && self.paused.insert(*server)
                {
                    self.handle.pause(self.servers[*server]);
                }
                format!("paused s{server}")
            }
            Fault::Resume { server } => {
                if self.paused.remove(server) {
                    self.handle.resume(self.servers[*server]);
                }
                format!("resumed s{server}")
            }
            Fault::ClockSkew {
                server,
                offset_ms,
                drift_ppm,
            } => {
                self.sh.clocks.skew(*server, *offset_ms, *drift_ppm, now_ms);
                format!("skewed s{server}")
            }
            Fault::ClockJump { server, delta_ms } => {
                self.sh.clocks.jump(*server, *delta_ms);
                format!("jumped s{server} clock")
            }
            Fault::ClockReset { server } => {
                self.sh.clocks.reset(*server);
                format!("reset s{server} clock")
            }
            Fault::TimerRate { server, permille } => {
                self.sh.clocks.set_timer(*server, *permille);
                format!("s{server} timers at {permille}/1000")
            }
            Fault::TimerReset { server } => {
                self.sh.clocks.reset_timer(*server);
                format!("s{server} timers nominal")
            }
            Fault::LeaderTimerRate { permille } => {
                match self.sh.observations.current_leader().filter(|_| n > 1) {
                    None => "no leader known (or standalone): skipped".to_string(),
                    Some(leader) => {
                        self.sh.clocks.set_timer(leader, *permille);
                        self.timer_leader = Some(leader);
                        format!("leader s{leader} timers at {permille}/1000")
                    }
                }
            }
            Fault::LeaderTimerReset => match self.timer_leader.take() {
                Some(s) => {
                    self.sh.clocks.reset_timer(s);
                    format!("s{s} timers nominal")
                }
                None => "no leader timers to reset".to_string(),
            },
            Fault::NetDelay { min_ms, max_ms } => {
                let (lo, hi) = (*min_ms, (*max_ms).max(*min_ms + 1));
                self.net.update_config(|c| {
                    c.send_latency = Duration::from_millis(lo)..Duration::from_millis(hi)
                });
                "delay".into()
            }
            Fault::NetLoss { rate } => {
                let r = rate.clamp(0.0, 0.9);
                self.net.update_config(|c| c.packet_loss_rate = r);
                "loss".into()
            }
            Fault::NetNormal => {
                self.net
                    .update_config(|c| *c = madsim::net::Config::default());
                "net normal".into()
            }
            Fault::Disk { server, fault } => {
                self.sh.disks[*server].arm(fault);
                format!("armed {fault:?} on s{server}")
            }
            Fault::DiskHeal { server } => {
                self.sh.disks[*server].heal();
                format!("disk healed s{server}")
            }
            Fault::BitRot { server } => {
                if n == 1 {
                    "bit rot skipped: a standalone server cannot survive it".into()
                } else {
                    self.sh.disks[*server].rot(opts.seed ^ now_ms);
                    format!("bit rot on s{server}")
                }
            }
            Fault::ClientPause { client } => {
                if *client < self.clients.len() && self.paused_clients.insert(*client) {
                    self.handle.pause(self.clients[*client]);
                }
                format!("paused c{client}")
            }
            Fault::ClientResume { client } => {
                if self.paused_clients.remove(client) {
                    self.handle.resume(self.clients[*client]);
                }
                format!("resumed c{client}")
            }
            Fault::CrashPoint {
                server,
                step,
                moment,
                restart_after_ms,
            } => {
                let point = Armed {
                    server: server.filter(|&s| s < n),
                    step: *step,
                    moment: *moment,
                    restart_after_ms: *restart_after_ms,
                };
                self.sh.crash_points.arm(point);
                format!("armed crash point {point:?}")
            }
            Fault::CrashIsolated => {
                let (seed, isolated) = (opts.seed ^ now_ms, self.isolated);
                match isolated {
                    Some(s) if self.crash(s, false, seed) => {
                        self.crashed_isolated = Some(s);
                        format!("crashed isolated s{s}")
                    }
                    Some(s) => format!("isolated s{s} already down"),
                    None => "no isolated leader: skipped".into(),
                }
            }
            Fault::RestartIsolated => match self.crashed_isolated.take() {
                Some(s) if self.restart(s) => format!("restarted isolated s{s}"),
                _ => "no crashed isolated server".into(),
            },
        }
    }

    /// Crashes server `s` unless it is down already: kills it, applies the power loss to
    /// its disk (`torn`: the first lost write may leave a torn prefix) and forgets a pause.
    fn crash(&mut self, s: usize, torn: bool, seed: u64) -> bool {
        if !self.down.lock().expect("down").insert(s) {
            return false;
        }
        power_off(&self.handle, self.servers[s], &self.sh.disks[s], torn, seed);
        self.paused.remove(&s);
        true
    }

    /// Restarts server `s` if it is down.
    fn restart(&mut self, s: usize) -> bool {
        let down = self.down.lock().expect("down").remove(&s);
        if down {
            self.handle.restart(self.servers[s]);
        }
        down
    }

    /// Heals everything at the end of the safety phase: unclogs every link, restores the
    /// network, resets every clock, heals every disk, resumes paused servers and clients,
    /// and restarts every server that is down (killing first one that exited by itself); disarms
    /// every crash point.
    pub(super) fn heal(&mut self, notes: &mut Vec<String>) {
        let seed = self.sh.opts.seed;
        self.sh.crash_points.disarm_all();
        for (x, y) in self.clogged.drain(..) {
            self.net.unclog_link(x, y);
        }
        self.net
            .update_config(|c| *c = madsim::net::Config::default());
        for (i, &server) in self.servers.iter().enumerate() {
            self.sh.clocks.reset(i);
            self.sh.clocks.reset_timer(i);
            self.sh.disks[i].heal();
            if self.paused.remove(&i) {
                self.handle.resume(server);
            }
            let was_down = self.down.lock().expect("down").remove(&i);
            if was_down || self.handle.is_exit(server) {
                if !was_down {
                    power_off(
                        &self.handle,
                        server,
                        &self.sh.disks[i],
                        false,
                        seed ^ i as u64,
                    );
                }
                self.handle.restart(server);
                notes.push(format!("heal: restarted s{i}"));
            }
        }
        for j in std::mem::take(&mut self.paused_clients) {
            self.handle.resume(self.clients[j]);
        }
        notes.push("heal: everything".into());
        self.take_reaped(notes);
    }

    /// Moves the reaper's notes into `notes`.
    pub(super) fn take_reaped(&self, notes: &mut Vec<String>) {
        notes.extend(self.reaped.lock().expect("notes").drain(..));
    }

    /// Whether server `i` is down (crashed, reaped, or exited and not yet reaped).
    pub(super) fn is_down(&self, i: usize) -> bool {
        self.down.lock().expect("down").contains(&i) || self.handle.is_exit(self.servers[i])
    }
}

/// A power loss of one server: its node is killed, then its disk loses what was not
/// durable (`torn`: the first lost write may leave a torn prefix).
fn power_off(handle: &Handle, id: NodeId, disk: &Disk, torn: bool, seed: u64) {
    handle.kill(id);
    disk.crash(torn, seed);
}
