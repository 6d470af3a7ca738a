//! Campaign orchestration (plain std, outside the simulator): seed ranges and shards, one
//! OS process per seed, a progress bar, per-scenario summary tables, JSON summaries and
//! merging of shard summaries.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Exit classes of one run (also the process exit status of `run-one`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Every check passed.
    Pass = 0,
    /// A safety property was violated.
    Safety = 1,
    /// The system did not recover within the liveness bound.
    Liveness = 2,
    /// The run crashed or panicked (or the process died).
    Crash = 3,
}

impl Class {
    /// From a process exit code.
    pub fn from_code(code: i32) -> Class {
        match code {
            0 => Class::Pass,
            1 => Class::Safety,
            2 => Class::Liveness,
            _ => Class::Crash,
        }
    }
}

/// The result of one seed, printed by `run-one` as its last line (`RESULT {json}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Exit class.
    pub class: Class,
    /// The check that failed, if any.
    #[serde(default)]
    pub check: Option<String>,
    /// Details of the failure.
    #[serde(default)]
    pub detail: String,
    /// Virtual time simulated, ms.
    pub virtual_ms: u64,
    /// Wall time of the run, ms (measured by the parent for campaign records).
    pub wall_ms: u64,
    /// Completed client operations.
    pub ops: u64,
    /// Hash of the full trace (history + plan + observations), hex.
    pub trace_hash: String,
    /// The deliberately broken behaviour the run had switched on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<zabkeeper::broken::Bug>,
}

/// A bug's command-line name (`commit-without-quorum`), as `--broken` takes it.
pub fn bug_name(b: zabkeeper::broken::Bug) -> String {
    serde_json::to_value(b)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The prefix of the result line.
pub const RESULT_PREFIX: &str = "RESULT ";

impl RunRecord {
    /// The one-line command that replays this run.
    pub fn repro(&self) -> String {
        let broken = self
            .broken
            .map(|b| format!(" --broken {}", bug_name(b)))
            .unwrap_or_default();
        format!(
            "zabkeeper-sim replay --scenario {} --seed {}{broken}",
            self.scenario, self.seed
        )
    }

    /// Find and parse the result line in a run-one process's stdout.
    pub fn parse_from_output(stdout: &str) -> Option<RunRecord> {
        stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(RESULT_PREFIX))
            .and_then(|j| serde_json::from_str(j).ok())
    }
}

/// A half-open seed range `A..B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedRange {
    /// First seed.
    pub start: u64,
    /// One past the last seed.
    pub end: u64,
}

impl std::str::FromStr for SeedRange {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (a, b) = match s.split_once("..") {
            Some((a, b)) => (a.trim().parse::<u64>()?, b.trim().parse::<u64>()?),
            None => {
                let a = s.trim().parse::<u64>()?;
                (a, a + 1)
            }
        };
        if a > b {
            bail!("empty seed range {s}");
        }
        Ok(SeedRange { start: a, end: b })
    }
}

/// A shard `I/N` (0-based `I`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard's index.
    pub index: u64,
    /// Number of shards.
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (i, n) = s.split_once('/').context("shard must be I/N")?;
        let (index, count) = (i.trim().parse::<u64>()?, n.trim().parse::<u64>()?);
        if count == 0 || index >= count {
            bail!("shard {s}: need 0 <= I < N");
        }
        Ok(Shard { index, count })
    }
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

/// The seeds of `range` that belong to `shard` (striped, so shards stay balanced).
pub fn shard_seeds(range: SeedRange, shard: Shard) -> Vec<u64> {
    (range.start..range.end)
        .filter(|s| (s - range.start) % shard.count == shard.index)
        .collect()
}

/// One job of a campaign.
#[derive(Debug, Clone)]
pub struct Job {
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
}

/// Run every job in its own process (`exe run-one ...`), `jobs` at a time, with a
/// progress bar on stderr. Returns records sorted by (scenario, seed) and the wall time.
pub fn run_jobs(
    exe: &Path,
    scenarios_dir: &Path,
    jobs: Vec<Job>,
    parallel: usize,
    extra_args: &[String],
    show_progress: bool,
) -> Result<(Vec<RunRecord>, f64)> {
    let total = jobs.len() as u64;
    let queue = Arc::new(Mutex::new(jobs.into_iter().collect::<VecDeque<Job>>()));
    let (tx, rx) = mpsc::channel::<RunRecord>();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..parallel.max(1) {
        let queue = Arc::clone(&queue);
        let tx = tx.clone();
        let exe = exe.to_path_buf();
        let dir = scenarios_dir.to_path_buf();
        let extra = extra_args.to_vec();
        workers.push(std::thread::spawn(move || loop {
            let Some(job) = queue.lock().expect("queue lock").pop_front() else {
                break;
            };
            let rec = run_one_process(&exe, &dir, &job, &extra);
            if tx.send(rec).is_err() {
                break;
            }
        }));
    }
    drop(tx);
    let bar = if show_progress {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} seeds {per_sec} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let mut records = Vec::new();
    let mut failures = 0u64;
    for rec in rx {
        if rec.class != Class::Pass {
            failures += 1;
            bar.set_message(format!("{failures} failing"));
            bar.println(format!(
                "FAIL {:?} {} seed {}: {}  -> {}",
                rec.class,
                rec.scenario,
                rec.seed,
                rec.check.clone().unwrap_or_default(),
                rec.repro()
            ));
        }
        records.push(rec);
        bar.inc(1);
    }
    bar.finish_and_clear();
    for w in workers {
        let _ = w.join();
    }
    records.sort_by(|a, b| (&a.scenario, a.seed).cmp(&(&b.scenario, b.seed)));
    Ok((records, started.elapsed().as_secs_f64()))
}

/// Run one seed in a child process and turn its output into a record.
pub fn run_one_process(exe: &Path, dir: &Path, job: &Job, extra: &[String]) -> RunRecord {
    let started = Instant::now();
    let out = Command::new(exe)
        .arg("run-one")
        .arg("--scenario")
        .arg(&job.scenario)
        .arg("--seed")
        .arg(job.seed.to_string())
        .arg("--scenarios-dir")
        .arg(dir)
        .args(extra)
        .env_remove("RUST_LOG")
        .output();
    let wall_ms = started.elapsed().as_millis() as u64;
    let crashed = |detail: String| RunRecord {
        scenario: job.scenario.clone(),
        seed: job.seed,
        class: Class::Crash,
        check: Some("process".into()),
        detail,
        virtual_ms: 0,
        wall_ms,
        ops: 0,
        trace_hash: String::new(),
        // The child was told `--broken=<bug>` in `extra`, if any.
        broken: extra
            .iter()
            .find_map(|f| f.strip_prefix("--broken="))
            .and_then(|b| serde_json::from_value(serde_json::Value::String(b.into())).ok()),
    };
    match out {
        Err(e) => crashed(format!("spawning {}: {e}", exe.display())),
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            match RunRecord::parse_from_output(&stdout) {
                Some(mut rec) => {
                    rec.wall_ms = wall_ms;
                    rec
                }
                None => {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    let tail: String = stderr
                        .lines()
                        .rev()
                        .take(5)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                        .collect::<Vec<_>>()
                        .join(" | ");
                    crashed(format!(
                        "exit {:?}, no result line: {tail}",
                        out.status.code()
                    ))
                }
            }
        }
    }
}

/// Per-scenario totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSummary {
    /// Runs.
    pub runs: u64,
    /// Passing runs.
    pub pass: u64,
    /// Safety violations.
    pub safety: u64,
    /// Liveness failures.
    pub liveness: u64,
    /// Crashes / panics.
    pub crash: u64,
    /// Runs whose history check ran out of budget (`unknown`, never a guess). They are
    /// failures (counted under safety too): a violation the checker could not decide is
    /// not a pass.
    #[serde(default)]
    pub unknown: u64,
    /// Sum of virtual time, ms.
    pub virtual_ms: u64,
    /// Sum of per-run wall time, ms.
    pub wall_ms: u64,
}

/// A campaign summary (one shard, or several merged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Per scenario, by name.
    pub scenarios: BTreeMap<String, ScenarioSummary>,
    /// Failing runs.
    pub failures: Vec<RunRecord>,
    /// Campaign wall time in seconds (max over merged shards, which run in parallel).
    pub elapsed_s: f64,
    /// Number of shards merged into this summary.
    pub shards: u64,
}

impl Summary {
    /// Build from records.
    pub fn from_records(records: &[RunRecord], elapsed_s: f64) -> Summary {
        let mut s = Summary {
            elapsed_s,
            shards: 1,
            ..Summary::default()
        };
        for r in records {
            let e = s.scenarios.entry(r.scenario.clone()).or_default();
            e.runs += 1;
            match r.class {
                Class::Pass => e.pass += 1,
                Class::Safety => {
                    e.safety += 1;
                    if r.check.as_deref() == Some("unknown") {
                        e.unknown += 1;
                    }
                }
                Class::Liveness => e.liveness += 1,
                Class::Crash => e.crash += 1,
            }
            e.virtual_ms += r.virtual_ms;
            e.wall_ms += r.wall_ms;
            if r.class != Class::Pass {
                s.failures.push(r.clone());
            }
        }
        s
    }

    /// Combine shard summaries.
    pub fn merge(parts: &[Summary]) -> Summary {
        let mut out = Summary::default();
        for p in parts {
            for (name, x) in &p.scenarios {
                let e = out.scenarios.entry(name.clone()).or_default();
                e.runs += x.runs;
                e.pass += x.pass;
                e.safety += x.safety;
                e.liveness += x.liveness;
                e.crash += x.crash;
                e.unknown += x.unknown;
                e.virtual_ms += x.virtual_ms;
                e.wall_ms += x.wall_ms;
            }
            out.failures.extend(p.failures.iter().cloned());
            out.elapsed_s = out.elapsed_s.max(p.elapsed_s);
            out.shards += p.shards;
        }
        out.failures
            .sort_by(|a, b| (&a.scenario, a.seed).cmp(&(&b.scenario, b.seed)));
        out
    }

    /// Total runs.
    pub fn runs(&self) -> u64 {
        self.scenarios.values().map(|s| s.runs).sum()
    }

    /// The worst class seen (the campaign's exit status).
    pub fn worst(&self) -> Class {
        self.failures
            .iter()
            .map(|f| f.class)
            .max()
            .unwrap_or(Class::Pass)
    }

    /// The text table: runs, failures by class, seeds/s, virtual/wall ratio; then every
    /// failing seed with its repro command.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<18} {:>6} {:>6} {:>7} {:>9} {:>6} {:>8} {:>9} {:>11}\n",
            "scenario",
            "runs",
            "pass",
            "safety",
            "liveness",
            "crash",
            "unknown",
            "seeds/s",
            "virt/wall"
        );
        let mut total = ScenarioSummary::default();
        for (name, s) in &self.scenarios {
            out.push_str(&row(name, s, self.elapsed_s, self.runs()));
            total.runs += s.runs;
            total.pass += s.pass;
            total.safety += s.safety;
            total.liveness += s.liveness;
            total.crash += s.crash;
            total.unknown += s.unknown;
            total.virtual_ms += s.virtual_ms;
            total.wall_ms += s.wall_ms;
        }
        out.push_str(&row("TOTAL", &total, self.elapsed_s, self.runs()));
        out.push_str(&format!(
            "campaign: {} seeds in {:.1}s wall ({:.1} seeds/s){}\n",
            self.runs(),
            self.elapsed_s,
            self.runs() as f64 / self.elapsed_s.max(1e-9),
            if self.shards > 1 {
                format!(", {} shards merged", self.shards)
            } else {
                String::new()
            }
        ));
        if !self.failures.is_empty() {
            out.push_str(&format!("{} failing seeds:\n", self.failures.len()));
            for f in &self.failures {
                out.push_str(&format!(
                    "  {:?} {}: {}  repro: {}\n",
                    f.class,
                    f.check.clone().unwrap_or_default(),
                    f.detail,
                    f.repro()
                ));
            }
        }
        out
    }
}

fn row(name: &str, s: &ScenarioSummary, elapsed_s: f64, all_runs: u64) -> String {
    // Seeds/s per scenario: its share of the campaign's wall time, by per-run wall time.
    let share = if all_runs == 0 {
        0.0
    } else {
        elapsed_s * s.runs as f64 / all_runs as f64
    };
    format!(
        "{:<18} {:>6} {:>6} {:>7} {:>9} {:>6} {:>8} {:>9.1} {:>10.0}x\n",
        name,
        s.runs,
        s.pass,
        s.safety,
        s.liveness,
        s.crash,
        s.unknown,
        s.runs as f64 / share.max(1e-9),
        s.virtual_ms as f64 / (s.wall_ms as f64).max(1.0)
    )
}

/// Read JSON summaries and merge them.
pub fn merge_files(paths: &[PathBuf]) -> Result<Summary> {
    let mut parts = Vec::new();
    for p in paths {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        parts.push(
            serde_json::from_str::<Summary>(&text)
                .with_context(|| format!("parsing {}", p.display()))?,
        );
    }
    Ok(Summary::merge(&parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(scenario: &str, seed: u64, class: Class) -> RunRecord {
        RunRecord {
            scenario: scenario.into(),
            seed,
            class,
            check: (class != Class::Pass).then(|| "linearizable".into()),
            detail: String::new(),
            virtual_ms: 30_000,
            wall_ms: 10,
            ops: 5,
            trace_hash: "ab".into(),
            broken: None,
        }
    }

    #[test]
    fn the_repro_names_the_broken_behaviour() {
        let mut r = rec("mixed", 4, Class::Safety);
        assert_eq!(r.repro(), "zabkeeper-sim replay --scenario mixed --seed 4");
        r.broken = Some(zabkeeper::broken::Bug::CommitWithoutQuorum);
        assert_eq!(
            r.repro(),
            "zabkeeper-sim replay --scenario mixed --seed 4 --broken commit-without-quorum"
        );
    }

    #[test]
    fn seed_range_and_shard_parsing() {
        assert_eq!(
            "3..10".parse::<SeedRange>().unwrap(),
            SeedRange { start: 3, end: 10 }
        );
        assert_eq!(
            "7".parse::<SeedRange>().unwrap(),
            SeedRange { start: 7, end: 8 }
        );
        assert!("9..3".parse::<SeedRange>().is_err());
        assert_eq!(
            "1/4".parse::<Shard>().unwrap(),
            Shard { index: 1, count: 4 }
        );
        assert!("4/4".parse::<Shard>().is_err());
        assert!("1/0".parse::<Shard>().is_err());
    }

    #[test]
    fn shards_partition_the_range() {
        let range = SeedRange { start: 5, end: 105 };
        for n in 1..7 {
            let mut all: Vec<u64> = (0..n)
                .flat_map(|i| shard_seeds(range, Shard { index: i, count: n }))
                .collect();
            let sizes: Vec<usize> = (0..n)
                .map(|i| shard_seeds(range, Shard { index: i, count: n }).len())
                .collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            all.sort();
            assert_eq!(all, (5..105).collect::<Vec<_>>());
        }
    }

    #[test]
    fn summary_counts_and_merge_equals_whole() {
        let all = vec![
            rec("a", 0, Class::Pass),
            rec("a", 1, Class::Safety),
            rec("b", 0, Class::Liveness),
            rec("b", 1, Class::Pass),
            rec("b", 2, Class::Crash),
        ];
        let whole = Summary::from_records(&all, 2.0);
        assert_eq!(whole.runs(), 5);
        assert_eq!(whole.scenarios["a"].safety, 1);
        assert_eq!(whole.scenarios["b"].crash, 1);
        assert_eq!(whole.worst(), Class::Crash);
        let p1 = Summary::from_records(&all[..2], 2.0);
        let p2 = Summary::from_records(&all[2..], 1.5);
        let merged = Summary::merge(&[p2, p1]);
        assert_eq!(merged.scenarios, whole.scenarios);
        assert_eq!(merged.failures, whole.failures);
        assert_eq!(merged.shards, 2);
        assert_eq!(merged.elapsed_s, 2.0);
        let table = merged.table();
        assert!(table.contains("TOTAL"));
        assert!(table.contains("zabkeeper-sim replay --scenario a --seed 1"));
    }

    /// A run whose history the checker could not decide is a failure, listed with its
    /// replay command, and counted in the `unknown` column.
    #[test]
    fn an_undecided_history_fails_the_campaign() {
        let mut undecided = rec("a", 3, Class::Safety);
        undecided.check = Some("unknown".into());
        let s = Summary::from_records(&[rec("a", 0, Class::Pass), undecided], 1.0);
        assert_eq!(s.scenarios["a"].unknown, 1);
        assert_eq!(s.scenarios["a"].pass, 1);
        assert_eq!(s.worst(), Class::Safety);
        assert_eq!(s.failures.len(), 1);
    }

    #[test]
    fn result_line_round_trip() {
        let r = rec("a", 9, Class::Safety);
        let out = format!(
            "options...\nnoise\n{RESULT_PREFIX}{}\n",
            serde_json::to_string(&r).unwrap()
        );
        assert_eq!(RunRecord::parse_from_output(&out), Some(r));
        assert_eq!(RunRecord::parse_from_output("nothing"), None);
        assert_eq!(Class::from_code(2), Class::Liveness);
        assert_eq!(Class::from_code(101), Class::Crash);
    }
}
