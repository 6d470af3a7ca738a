//! Named scenarios: cluster shape, fault generators with rates, workload mix, phase lengths
//! and budgets, read from `scenarios/*.toml` (or `.json`).
//!
//! A scenario is data; [`crate::options::RunOptions::derive`] turns a scenario plus a seed
//! into the concrete options of one run, and [`crate::plan::FaultPlan::generate`] into its
//! fault plan.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::fault::FaultGen;

/// One named scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The scenario's name (the file stem by convention).
    pub name: String,
    /// One or two sentences on what the scenario exercises.
    #[serde(default)]
    pub description: String,
    /// Ensemble and client shape.
    #[serde(default)]
    pub cluster: ClusterShape,
    /// Timing choices (ticks, session timeouts).
    #[serde(default)]
    pub timing: Timing,
    /// Fault generators, each with a rate.
    #[serde(default)]
    pub faults: Vec<FaultGen>,
    /// Workload mix.
    #[serde(default)]
    pub workload: WorkloadMix,
    /// Phase lengths.
    #[serde(default)]
    pub phases: Phases,
    /// Limits on the run.
    #[serde(default)]
    pub budgets: Budgets,
}

/// Ensemble and client shape; one value of each list is picked per seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterShape {
    /// Candidate numbers of voting servers (e.g. `[3, 5, 7]`).
    pub servers: Vec<usize>,
    /// Candidate numbers of observers.
    #[serde(default = "zero_list")]
    pub observers: Vec<usize>,
    /// Candidate numbers of simulated clients.
    pub clients: Vec<usize>,
    /// The scenario only makes sense with replication. Without replication
    /// ([`crate::sut::REPLICATION_AVAILABLE`]), such scenarios derive a standalone server.
    #[serde(default)]
    pub needs_replication: bool,
}

fn zero_list() -> Vec<usize> {
    vec![0]
}

impl Default for ClusterShape {
    fn default() -> Self {
        ClusterShape {
            servers: vec![1],
            observers: vec![0],
            clients: vec![3],
            needs_replication: false,
        }
    }
}

/// Timing choices, each `[lo, hi]` inclusive; one value per seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Server tick length in ms (ZooKeeper's tickTime).
    pub tick_ms: [u64; 2],
    /// Client session timeout in ms (clamped by the server to 2..20 ticks).
    pub session_timeout_ms: [u64; 2],
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            tick_ms: [50, 200],
            session_timeout_ms: [2_000, 6_000],
        }
    }
}

/// Relative weights of the workloads each client draws its operations from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadMix {
    /// Per-znode registers: getData, setData with expected version (CAS), blind setData.
    pub register: u32,
    /// `sync` then getData.
    pub sync_read: u32,
    /// Sequential-node queue: create `PERSISTENT_SEQUENTIAL`, getChildren.
    pub queue: u32,
    /// Ephemeral lock: create EPHEMERAL `/lock`, hold, delete.
    pub lock: u32,
    /// Watches: getData with a watch, then wait for the event.
    pub watch: u32,
    /// Multi transactions touching two registers (all or nothing).
    pub multi: u32,
    /// Number of register keys.
    pub keys: usize,
    /// Think time between a client's operations, `[lo, hi]` ms.
    pub think_ms: [u64; 2],
    /// Per-operation client timeout in ms; a timeout is recorded as `info`.
    pub op_timeout_ms: u64,
}

impl Default for WorkloadMix {
    fn default() -> Self {
        WorkloadMix {
            register: 6,
            sync_read: 1,
            queue: 1,
            lock: 1,
            watch: 1,
            multi: 1,
            keys: 3,
            think_ms: [5, 100],
            op_timeout_ms: 2_000,
        }
    }
}

/// Phase lengths in virtual ms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Phases {
    /// Safety phase: workload under the fault plan, `[lo, hi]` ms.
    pub safety_ms: [u64; 2],
    /// Liveness bound after healing: every client must get answers again within it.
    pub liveness_ms: u64,
}

impl Default for Phases {
    fn default() -> Self {
        Phases {
            safety_ms: [10_000, 30_000],
            liveness_ms: 20_000,
        }
    }
}

/// Limits that keep a run bounded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budgets {
    /// Stop issuing operations after this many per run.
    pub max_ops: usize,
    /// Upper bound on fault events in a plan.
    pub max_faults: usize,
    /// Virtual time limit for the whole run (safety + liveness + slack), ms.
    pub virtual_limit_ms: u64,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            max_ops: 2_000,
            max_faults: 64,
            virtual_limit_ms: 120_000,
        }
    }
}

impl Scenario {
    /// Parse a scenario from TOML or JSON text; `hint` is a file name for errors and
    /// chooses the format by extension (`.json` is JSON, anything else TOML).
    pub fn parse(text: &str, hint: &str) -> Result<Scenario> {
        let scenario: Scenario = if hint.ends_with(".json") {
            serde_json::from_str(text).with_context(|| format!("parsing {hint}"))?
        } else {
            toml::from_str(text).with_context(|| format!("parsing {hint}"))?
        };
        scenario
            .validate()
            .with_context(|| format!("validating {hint}"))?;
        Ok(scenario)
    }

    /// Check ranges and lists; every error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            bail!("name is empty");
        }
        let c = &self.cluster;
        if c.servers.is_empty() || c.servers.contains(&0) {
            bail!("cluster.servers must be a non-empty list of positive sizes");
        }
        if c.observers.is_empty() {
            bail!("cluster.observers must not be empty (use [0])");
        }
        if c.clients.is_empty() || c.clients.contains(&0) {
            bail!("cluster.clients must be a non-empty list of positive counts");
        }
        for (name, r) in [
            ("timing.tick_ms", self.timing.tick_ms),
            ("timing.session_timeout_ms", self.timing.session_timeout_ms),
            ("phases.safety_ms", self.phases.safety_ms),
            ("workload.think_ms", self.workload.think_ms),
        ] {
            if r[0] > r[1] {
                bail!("{name}: lo {} > hi {}", r[0], r[1]);
            }
        }
        if self.timing.tick_ms[0] == 0 {
            bail!("timing.tick_ms must be positive");
        }
        for f in &self.faults {
            if !(f.rate_per_min >= 0.0 && f.rate_per_min.is_finite()) {
                bail!("faults.{:?}: rate_per_min must be finite and >= 0", f.kind);
            }
            if f.duration_ms[0] > f.duration_ms[1] {
                bail!("faults.{:?}: duration_ms lo > hi", f.kind);
            }
        }
        let w = &self.workload;
        if w.register + w.sync_read + w.queue + w.lock + w.watch + w.multi == 0 {
            bail!("workload: all weights are zero");
        }
        if w.keys == 0 {
            bail!("workload.keys must be positive");
        }
        if self.phases.liveness_ms == 0 {
            bail!("phases.liveness_ms must be positive");
        }
        Ok(())
    }

    /// Load one scenario file.
    pub fn load(path: &Path) -> Result<Scenario> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Scenario::parse(&text, &path.display().to_string())
    }
}

/// A regression seed: pinned scenario and seed plus what it once caught.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regression {
    /// Scenario name.
    pub scenario: String,
    /// The pinned seed.
    pub seed: u64,
    /// One line: what this seed caught.
    pub caught: String,
    /// Expected exit class (0 once fixed).
    #[serde(default)]
    pub expect_class: u8,
}

/// The scenarios directory: `$ZABKEEPER_SCENARIOS`, else `scenarios/` found by walking up
/// from the current directory, else the one next to this crate's sources.
pub fn scenarios_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ZABKEEPER_SCENARIOS") {
        return PathBuf::from(dir);
    }
    if let Ok(mut dir) = std::env::current_dir() {
        loop {
            let candidate = dir.join("scenarios");
            if candidate.join("mixed.toml").exists() {
                return candidate;
            }
            if !dir.pop() {
                break;
            }
        }
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios"))
}

/// Every scenario in `dir` (`*.toml`, `*.json`; not subdirectories), sorted by name.
pub fn load_all(dir: &Path) -> Result<Vec<Scenario>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("toml") | Some("json")
                )
        })
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for p in paths {
        out.push(Scenario::load(&p)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Find a scenario by name in `dir`.
pub fn find(dir: &Path, name: &str) -> Result<Scenario> {
    for ext in ["toml", "json"] {
        let p = dir.join(format!("{name}.{ext}"));
        if p.exists() {
            return Scenario::load(&p);
        }
    }
    let known: Vec<String> = load_all(dir)?.into_iter().map(|s| s.name).collect();
    bail!(
        "no scenario {name:?} in {}; known: {}",
        dir.display(),
        known.join(", ")
    )
}

/// Every regression in `dir/regressions/*.toml`, sorted by file name.
pub fn load_regressions(dir: &Path) -> Result<Vec<Regression>> {
    let rdir = dir.join("regressions");
    if !rdir.exists() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&rdir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
[cluster]
servers = [3, 5]
clients = [2]
[[faults]]
kind = "crash"
rate_per_min = 2.0
duration_ms = [100, 200]
"#;

    #[test]
    fn parses_minimal_toml_with_defaults() {
        let s = Scenario::parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(s.cluster.servers, vec![3, 5]);
        assert_eq!(s.cluster.observers, vec![0]);
        assert_eq!(s.faults.len(), 1);
        assert_eq!(s.faults[0].kind, crate::fault::FaultKind::Crash);
        assert_eq!(s.phases, Phases::default());
    }

    #[test]
    fn json_round_trip() {
        let s = Scenario::parse(MINIMAL, "t.toml").unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(Scenario::parse(&json, "t.json").unwrap(), s);
    }

    #[test]
    fn rejects_unknown_fields_and_bad_ranges() {
        let bad = MINIMAL.replace("clients = [2]", "clients = [2]\nbogus = 1");
        assert!(Scenario::parse(&bad, "t.toml").is_err());
        let bad = MINIMAL.replace("[100, 200]", "[300, 200]");
        let err = Scenario::parse(&bad, "t.toml").unwrap_err();
        assert!(format!("{err:#}").contains("duration_ms"), "{err:#}");
        let bad = MINIMAL.replace("servers = [3, 5]", "servers = []");
        assert!(Scenario::parse(&bad, "t.toml").is_err());
    }

    #[test]
    fn shipped_scenarios_parse_and_cover_the_required_names() {
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios"));
        let all = load_all(&dir).unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        for required in [
            "partition",
            "leader-isolation",
            "split-brain",
            "crash-restart",
            "rolling-restart",
            "pause",
            "clock-skew",
            "disk-faults",
            "session-expiry",
            "mixed",
        ] {
            assert!(names.contains(&required), "missing scenario {required}");
        }
        for s in &all {
            let file = dir.join(format!("{}.toml", s.name));
            assert!(
                file.exists(),
                "scenario {} must live in {}",
                s.name,
                file.display()
            );
        }
        for r in load_regressions(&dir).unwrap() {
            assert!(names.contains(&r.scenario.as_str()), "{r:?}");
            assert!(!r.caught.is_empty());
        }
    }
}
