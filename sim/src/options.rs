//! The options of one run, derived from (scenario, seed). Printed first by every run;
//! serialisable so a shrunk run can be replayed from a file.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::plan::{FaultPlan, PlanShape};
use crate::scenario::{Scenario, WorkloadMix};

/// Everything one run needs, derived from a scenario and a seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    /// Scenario name.
    pub scenario: String,
    /// The seed (also madsim's seed).
    pub seed: u64,
    /// Voting servers.
    pub servers: usize,
    /// Observers (non-voting).
    pub observers: usize,
    /// Simulated clients.
    pub clients: usize,
    /// True if the scenario asked for replication but the node cannot replicate yet, so
    /// the ensemble was reduced to one standalone server.
    pub standalone_forced: bool,
    /// tickTime in ms.
    pub tick_ms: u64,
    /// Requested session timeout in ms.
    pub session_timeout_ms: u64,
    /// The servers' `snapCount` (small, so runs take snapshots while writes go on).
    #[serde(default = "default_snap_count")]
    pub snap_count: u64,
    /// Whether autopurge runs (at every server start: `autopurge.purgeInterval=1`,
    /// `autopurge.snapRetainCount=3`).
    #[serde(default)]
    pub autopurge: bool,
    /// The servers' `commitLogCount`: a small one makes a lagging learner sync by SNAP.
    #[serde(default = "default_commit_log_count")]
    pub commit_log_count: usize,
    /// The servers' `quorumReads`: every read on a learner waits for a quorum-confirmed
    /// sync, so every read (not only sync-then-read) is judged linearizable.
    #[serde(default)]
    pub quorum_reads: bool,
    /// The servers' `globalOutstandingLimit`: requests taken per step, and the bound of
    /// the requests queued for the driver (small ones make every step a batch of one).
    #[serde(default = "default_global_outstanding_limit")]
    pub global_outstanding_limit: usize,
    /// The servers' core ticks per tickTime (`ServerConfig::core_ticks`): `Some(1)` (the
    /// core's timers advance once per tickTime), or `None` for what a real server derives
    /// from tickTime (up to 10 per tickTime, none shorter than 20 ms).
    #[serde(default = "default_core_ticks")]
    pub core_ticks: Option<u32>,
    /// The servers' `zabkeeper.zxidCounterLimit`: with a small one, epochs run out of
    /// zxid counters within a run and the leader forces a new epoch (the rollover).
    #[serde(default)]
    pub zxid_counter_limit: Option<u32>,
    /// The servers' `readonlymode.enabled`, and every other client (the even ones)
    /// allows read-only sessions: a server cut off from its quorum serves them reads and
    /// answers their writes NotReadOnly. Never drawn with `quorumReads` (a read-only
    /// server answers reads from its own tree).
    #[serde(default)]
    pub read_only: bool,
    /// The servers' `localSessionsEnabled`, and whether they upgrade a local session
    /// that creates an ephemeral (`localSessionsUpgradingEnabled`; without it the
    /// workload's ephemerals and locks fail with EphemeralOnLocalSession).
    #[serde(default)]
    pub local_sessions: Option<bool>,
    /// Safety phase length in ms.
    pub safety_ms: u64,
    /// Liveness bound in ms.
    pub liveness_ms: u64,
    /// The servers' `initLimit` (ticks for discovery and sync).
    #[serde(default = "default_init_limit")]
    pub init_limit: u32,
    /// The servers' `syncLimit` (ticks of silence before a learner abandons its leader).
    #[serde(default = "default_sync_limit")]
    pub sync_limit: u32,
    /// Workload mix.
    pub workload: WorkloadMix,
    /// Stop issuing operations after this many.
    pub max_ops: usize,
    /// Virtual time limit for the whole run.
    pub virtual_limit_ms: u64,
    /// The fault plan.
    pub plan: FaultPlan,
    /// A deliberately broken behaviour switched on in every server of the run (the
    /// bite tests and `run --broken`); none in campaigns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<zabkeeper::broken::Bug>,
}

fn default_init_limit() -> u32 {
    10
}

fn default_sync_limit() -> u32 {
    5
}

/// Options files written before runs drew core ticks ran one per tickTime.
fn default_core_ticks() -> Option<u32> {
    Some(1)
}

/// ZooKeeper's default `globalOutstandingLimit`: options files written before runs drew one.
fn default_global_outstanding_limit() -> usize {
    1000
}

/// ZooKeeper's default `snapCount`: options files written before runs drew one.
fn default_snap_count() -> u64 {
    100_000
}

/// ZooKeeper's default `commitLogCount`: options files written before runs drew one.
fn default_commit_log_count() -> usize {
    500
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, xs: &[T]) -> T {
    xs[rng.gen_range(0..xs.len())]
}

impl RunOptions {
    /// Derive the run's options. Deterministic in `(scenario, seed)`; different scenarios
    /// draw from different streams for the same seed.
    pub fn derive(scenario: &Scenario, seed: u64, replication_available: bool) -> RunOptions {
        let mut rng =
            ChaCha8Rng::seed_from_u64(seed ^ zabkeeper::hash::fnv1a(scenario.name.as_bytes()));
        let c = &scenario.cluster;
        let mut servers = pick(&mut rng, &c.servers);
        let mut observers = pick(&mut rng, &c.observers);
        let clients = pick(&mut rng, &c.clients);
        let standalone_forced = !replication_available && (servers + observers > 1);
        if standalone_forced {
            servers = 1;
            observers = 0;
        }
        let t = &scenario.timing;
        let tick_ms = rng.gen_range(t.tick_ms[0]..=t.tick_ms[1]);
        let session_timeout_ms = rng.gen_range(t.session_timeout_ms[0]..=t.session_timeout_ms[1]);
        let p = &scenario.phases;
        let safety_ms = rng.gen_range(p.safety_ms[0]..=p.safety_ms[1]);
        let (init_limit, sync_limit) = (default_init_limit(), default_sync_limit());
        let plan = FaultPlan::generate(
            &scenario.faults,
            PlanShape {
                servers: servers + observers,
                clients,
                safety_ms,
                session_timeout_ms,
                max_faults: scenario.budgets.max_faults,
            },
            &mut rng,
        );
        // Drawn after everything else so that older seeds keep their plans.
        let snap_count = rng.gen_range(16..=256);
        let autopurge = rng.gen_bool(0.5);
        let commit_log_count = pick(&mut rng, &[0, 4, 16, 64, 500]);
        let quorum_reads = rng.gen_bool(0.25);
        let global_outstanding_limit = pick(&mut rng, &[1, 2, 16, 1000, 1000]);
        let core_ticks = pick(&mut rng, &[None, Some(1), Some(1), Some(1)]);
        // One seed in four starts near the zxid counter's end (drawn last of all).
        let zxid_counter_limit = rng.gen_bool(0.25).then(|| rng.gen_range(40..=400));
        // Read-only mode for a third of the ensemble seeds (drawn after that).
        let read_only = rng.gen_bool(0.35) && !quorum_reads && servers + observers > 1;
        // Local sessions for a third of the ensemble seeds, mostly upgrading (drawn last).
        let local_sessions =
            (rng.gen_bool(0.35) && servers + observers > 1).then(|| rng.gen_bool(0.75));
        RunOptions {
            read_only,
            local_sessions,
            zxid_counter_limit,
            core_ticks,
            quorum_reads,
            global_outstanding_limit,
            broken: None,
            scenario: scenario.name.clone(),
            seed,
            servers,
            observers,
            clients,
            standalone_forced,
            tick_ms,
            session_timeout_ms,
            snap_count,
            autopurge,
            commit_log_count,
            safety_ms,
            liveness_ms: p.liveness_ms,
            init_limit,
            sync_limit,
            workload: scenario.workload.clone(),
            max_ops: scenario.budgets.max_ops,
            virtual_limit_ms: scenario.budgets.virtual_limit_ms.max(
                safety_ms
                    + p.liveness_ms
                    + converge_ticks(init_limit, sync_limit) * tick_ms
                    + 10_000,
            ),
            plan,
        }
    }

    /// Total servers (voters + observers).
    pub fn total_servers(&self) -> usize {
        self.servers + self.observers
    }

    /// The convergence bound in ms: after every client was answered again, the final
    /// write and every replica reaching it must fit in [`converge_ticks`] ticks of virtual
    /// time. There is no network allowance: a server that gives up on a silent peer closes
    /// that connection, so messages queued during a partition do not delay the rejoin.
    pub fn converge_ms(&self) -> u64 {
        converge_ticks(self.init_limit, self.sync_limit) * self.tick_ms
    }

    /// A short human summary printed at the start of every run.
    pub fn describe(&self) -> String {
        format!(
            "scenario={} seed={} servers={}{} observers={} clients={} tick={}ms initLimit={} syncLimit={} session_timeout={}ms snap_count={}{} commit_log_count={}{} globalOutstandingLimit={}{}{}{}{} safety={}ms liveness={}ms converge={}ms ({} ticks) faults={}\n{}",
            self.scenario,
            self.seed,
            self.servers,
            if self.standalone_forced { " (standalone: replication not available yet)" } else { "" },
            self.observers,
            self.clients,
            self.tick_ms,
            self.init_limit,
            self.sync_limit,
            self.session_timeout_ms,
            self.snap_count,
            if self.autopurge { " autopurge" } else { "" },
            self.commit_log_count,
            if self.quorum_reads { " quorumReads" } else { "" },
            self.global_outstanding_limit,
            if self.core_ticks.is_none() { " coreTicks=derived" } else { "" },
            self.zxid_counter_limit
                .map(|l| format!(" zxidCounterLimit={l}"))
                .unwrap_or_default(),
            if self.read_only { " readOnly" } else { "" },
            match self.local_sessions {
                Some(true) => " localSessions(upgrading)",
                Some(false) => " localSessions",
                None => "",
            },
            self.safety_ms,
            self.liveness_ms,
            self.converge_ms(),
            converge_ticks(self.init_limit, self.sync_limit),
            self.plan.events.len(),
            self.plan.describe()
        )
    }
}

/// The convergence bound in ticks, from the servers' timeouts. A replica that is not yet
/// in broadcast with the established leader when the final write commits needs at most:
/// `syncLimit` ticks to give up a dead leader connection (and close it), one election
/// resend interval (backed off to at most `electionResendMax` ticks) until its
/// notifications reach the settled ensemble (on fresh connections: a voter that leaves
/// one unanswered for a resend interval is reconnected, so nothing queued during a
/// partition stands in front), `finalizeWait` ticks to decide, and `initLimit` ticks for
/// discovery and sync; then the commits reach it at once. One such attempt may fail (a message lost
/// to a connection replaced at the heal), so the bound is two attempts.
/// `finalizeWait` and `electionResendMax` are the node's defaults (the simulator does not
/// change them).
pub fn converge_ticks(init_limit: u32, sync_limit: u32) -> u64 {
    let zab = zabkeeper::core::ZabConfig::new(1, [1], []);
    2 * (u64::from(sync_limit)
        + u64::from(zab.election_resend_max)
        + u64::from(zab.finalize_wait)
        + u64::from(init_limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        Scenario::parse(
            r#"
name = "x"
[cluster]
servers = [3, 5, 7]
observers = [0, 1]
clients = [2, 4]
needs_replication = true
[[faults]]
kind = "crash"
rate_per_min = 4.0
"#,
            "x.toml",
        )
        .unwrap()
    }

    #[test]
    fn derive_is_deterministic_and_seed_sensitive() {
        let s = scenario();
        assert_eq!(
            RunOptions::derive(&s, 1, true),
            RunOptions::derive(&s, 1, true)
        );
        let distinct: std::collections::BTreeSet<String> = (0..20)
            .map(|seed| serde_json::to_string(&RunOptions::derive(&s, seed, true)).unwrap())
            .collect();
        assert_eq!(distinct.len(), 20);
    }

    #[test]
    fn no_replication_forces_standalone() {
        let s = scenario();
        for seed in 0..20 {
            let o = RunOptions::derive(&s, seed, false);
            assert_eq!((o.servers, o.observers), (1, 0));
            assert!(o.standalone_forced);
            assert!(o.describe().contains("standalone"));
            let o = RunOptions::derive(&s, seed, true);
            assert!([3, 5, 7].contains(&o.servers));
            assert!(!o.standalone_forced);
        }
    }

    #[test]
    fn the_convergence_bound_follows_the_tick_and_the_limits() {
        let s = scenario();
        let mut o = RunOptions::derive(&s, 1, true);
        // 2 x (syncLimit 5 + electionResendMax 30 + finalizeWait 1 + initLimit 10) ticks.
        assert_eq!((o.init_limit, o.sync_limit), (10, 5));
        assert_eq!(o.converge_ms(), 92 * o.tick_ms);
        assert!(
            o.virtual_limit_ms >= o.safety_ms + o.liveness_ms + o.converge_ms(),
            "the run's time limit leaves room for the convergence wait"
        );
        o.tick_ms = 100;
        o.init_limit = 20;
        assert_eq!(o.converge_ms(), 11_200);
        assert!(o.describe().contains("converge=11200ms (112 ticks)"));
        // A plan that clogs links gets the same bound: no network allowance.
        let mut p = scenario();
        p.faults[0].kind = crate::fault::FaultKind::RandomHalves;
        let o = (0..20)
            .map(|seed| RunOptions::derive(&p, seed, true))
            .find(|o| !o.plan.events.is_empty())
            .expect("some seed plans a partition");
        assert_eq!(o.converge_ms(), 92 * o.tick_ms);
        assert!(o.virtual_limit_ms >= o.safety_ms + o.liveness_ms + o.converge_ms());
        // Options saved before these fields existed still load, with the defaults.
        let mut v = serde_json::to_value(RunOptions::derive(&s, 1, true)).unwrap();
        let m = v.as_object_mut().unwrap();
        m.remove("init_limit");
        m.remove("sync_limit");
        let old: RunOptions = serde_json::from_value(v).unwrap();
        assert_eq!((old.init_limit, old.sync_limit), (10, 5));
    }
}
