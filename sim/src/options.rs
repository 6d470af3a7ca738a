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
    /// Safety phase length in ms.
    pub safety_ms: u64,
    /// Liveness bound in ms.
    pub liveness_ms: u64,
    /// Workload mix.
    pub workload: WorkloadMix,
    /// Stop issuing operations after this many.
    pub max_ops: usize,
    /// Virtual time limit for the whole run.
    pub virtual_limit_ms: u64,
    /// The system under test.
    #[serde(default)]
    pub sut: crate::sut::SutKind,
    /// The fault plan.
    pub plan: FaultPlan,
}

/// A stable 64-bit FNV-1a hash (std's hasher is randomly keyed per process).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// ZooKeeper's default `snapCount`: options files written before runs drew one.
fn default_snap_count() -> u64 {
    100_000
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, xs: &[T]) -> T {
    xs[rng.gen_range(0..xs.len())]
}

impl RunOptions {
    /// Derive the run's options. Deterministic in `(scenario, seed)`; different scenarios
    /// draw from different streams for the same seed.
    pub fn derive(scenario: &Scenario, seed: u64, replication_available: bool) -> RunOptions {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(scenario.name.as_bytes()));
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
        RunOptions {
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
            safety_ms,
            liveness_ms: p.liveness_ms,
            workload: scenario.workload.clone(),
            max_ops: scenario.budgets.max_ops,
            virtual_limit_ms: scenario
                .budgets
                .virtual_limit_ms
                .max(safety_ms + p.liveness_ms + 10_000),
            sut: scenario.sut,
            plan,
        }
    }

    /// Total servers (voters + observers).
    pub fn total_servers(&self) -> usize {
        self.servers + self.observers
    }

    /// A short human summary printed at the start of every run.
    pub fn describe(&self) -> String {
        format!(
            "sut={:?} scenario={} seed={} servers={}{} observers={} clients={} tick={}ms session_timeout={}ms snap_count={}{} safety={}ms liveness={}ms faults={}\n{}",
            self.sut,
            self.scenario,
            self.seed,
            self.servers,
            if self.standalone_forced { " (standalone: replication not available yet)" } else { "" },
            self.observers,
            self.clients,
            self.tick_ms,
            self.session_timeout_ms,
            self.snap_count,
            if self.autopurge { " autopurge" } else { "" },
            self.safety_ms,
            self.liveness_ms,
            self.plan.events.len(),
            self.plan.describe()
        )
    }
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
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
