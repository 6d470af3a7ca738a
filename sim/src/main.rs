//! `zabkeeper-sim`: seeded fault campaigns, replay, shrinking and determinism checks.
//!
//! Build with `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/madsim cargo build --release
//! -p zabkeeper-sim`; see `zabkeeper-sim --help`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use zabkeeper::broken::Bug;

use zabkeeper_sim::campaign::{
    bug_name, merge_files, run_jobs, run_one_process, shard_seeds, Class, Job, RunRecord,
    SeedRange, Shard, Summary, RESULT_PREFIX,
};
use zabkeeper_sim::options::RunOptions;
use zabkeeper_sim::scenario::{self, Scenario};

#[derive(Parser)]
#[command(
    name = "zabkeeper-sim",
    about = "Deterministic simulation testbed for zabkeeper"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// Directory holding the scenario files (default: ./scenarios found upwards).
    #[arg(long, global = true)]
    scenarios_dir: Option<PathBuf>,
    /// Run ensembles where scenarios ask for them. This is the default now that
    /// `sut::REPLICATION_AVAILABLE` is true; the flag is kept for old replay commands.
    #[arg(long, global = true)]
    replication: bool,
    /// Switch this deliberately broken behaviour on in every server of every run (the
    /// proof that the testbed bites; madsim builds only). Default: none.
    #[arg(long, global = true, value_enum)]
    broken: Option<Bug>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a campaign: one OS process per seed, progress bar and summary table.
    Run {
        /// Scenario name, or `all`.
        #[arg(long, default_value = "all")]
        scenario: String,
        /// Seed range `A..B` (half-open) or a single seed.
        #[arg(long, default_value = "0..100")]
        seeds: SeedRange,
        /// Parallel processes (default: available cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// Only this shard `I/N` of the seed range.
        #[arg(long, default_value = "0/1")]
        shard: Shard,
        /// Also run every pinned regression seed.
        #[arg(long)]
        regressions: bool,
        /// Write the JSON summary here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Run exactly one seed in this process and print one result line (used by `run`).
    #[command(hide = true)]
    RunOne {
        #[arg(long)]
        scenario: String,
        #[arg(long)]
        seed: u64,
        /// Run these options (JSON) instead of deriving them (shrunk runs).
        #[arg(long)]
        options: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Replay one seed with tracing logs; write history, plan and an HTML timeline.
    Replay {
        #[arg(long, default_value = "mixed")]
        scenario: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Replay these options (JSON, e.g. from `shrink`) instead of deriving them.
        #[arg(long)]
        options: Option<PathBuf>,
        /// Report folder (default `sim-reports/<scenario>-<seed>/`).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Delta-debug a failing seed's fault plan, run length and client count.
    Shrink {
        #[arg(long)]
        scenario: String,
        #[arg(long)]
        seed: u64,
        /// Maximum number of candidate runs.
        #[arg(long, default_value_t = 200)]
        budget: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Run seeds twice in two processes and compare the trace hashes.
    CheckDeterminism {
        #[arg(long, default_value = "mixed")]
        scenario: String,
        /// Seed range `A..B` or one seed.
        #[arg(long, default_value = "0")]
        seed: SeedRange,
        #[command(flatten)]
        common: Common,
    },
    /// Merge JSON summaries of shards.
    Merge {
        /// Summary files.
        files: Vec<PathBuf>,
        /// Write the merged JSON summary here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Measure seeds/s and the virtual/wall time ratio on one scenario.
    Bench {
        #[arg(long, default_value = "mixed")]
        scenario: String,
        #[arg(long, default_value = "0..200")]
        seeds: SeedRange,
        #[arg(long)]
        jobs: Option<usize>,
        #[command(flatten)]
        common: Common,
    },
}

fn dir(c: &Common) -> PathBuf {
    c.scenarios_dir
        .clone()
        .unwrap_or_else(scenario::scenarios_dir)
}

fn jobs_default(j: Option<usize>) -> usize {
    j.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

fn exit(class: Class) -> ExitCode {
    ExitCode::from(class as u8)
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn real_main() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run {
            scenario,
            seeds,
            jobs,
            shard,
            regressions,
            json,
            quiet,
            common,
        } => {
            let d = dir(&common);
            let names = scenario_names(&d, &scenario)?;
            let mut list = Vec::new();
            for name in &names {
                for seed in shard_seeds(seeds, shard) {
                    list.push(Job {
                        scenario: name.clone(),
                        seed,
                    });
                }
            }
            if regressions {
                for r in scenario::load_regressions(&d)? {
                    list.push(Job {
                        scenario: r.scenario,
                        seed: r.seed,
                    });
                }
            }
            let exe = std::env::current_exe()?;
            eprintln!(
                "campaign: {} runs ({} scenarios, seeds {}..{}, shard {}/{}), {} jobs",
                list.len(),
                names.len(),
                seeds.start,
                seeds.end,
                shard.index,
                shard.count,
                jobs_default(jobs)
            );
            let (records, elapsed) =
                run_jobs(&exe, &d, list, jobs_default(jobs), &extra(&common), !quiet)?;
            let summary = Summary::from_records(&records, elapsed);
            print!("{}", summary.table());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&summary)?)?;
                eprintln!("summary written to {}", path.display());
            }
            Ok(exit(summary.worst()))
        }
        Cmd::RunOne {
            scenario,
            seed,
            options,
            common,
        } => {
            let opts = load_options(&dir(&common), &scenario, seed, options.as_deref(), &common)?;
            println!("{}", opts.describe());
            let rec = execute(&opts, None)?;
            if rec.class != Class::Pass {
                println!(
                    "FAIL {:?} {}: {}\nreplay: {}",
                    rec.class,
                    rec.check.clone().unwrap_or_default(),
                    rec.detail,
                    match &options {
                        Some(f) => format!("zabkeeper-sim replay --options {}", f.display()),
                        None => rec.repro(),
                    }
                );
            }
            println!("{RESULT_PREFIX}{}", serde_json::to_string(&rec)?);
            Ok(exit(rec.class))
        }
        Cmd::Replay {
            scenario,
            seed,
            options,
            out,
            common,
        } => {
            let opts = load_options(&dir(&common), &scenario, seed, options.as_deref(), &common)?;
            let out = out.unwrap_or_else(|| {
                PathBuf::from(format!("sim-reports/{}-{}", opts.scenario, opts.seed))
            });
            if std::env::var_os("ZABKEEPER_SIM_NO_LOG").is_none() {
                init_tracing();
            }
            println!("{}", opts.describe());
            let rec = execute(&opts, Some(&out))?;
            println!(
                "{:?} {} {}\nreport: {}/timeline.html\ntrace hash {}",
                rec.class,
                rec.check.clone().unwrap_or_default(),
                rec.detail,
                out.display(),
                rec.trace_hash
            );
            Ok(exit(rec.class))
        }
        Cmd::Shrink {
            scenario,
            seed,
            budget,
            common,
        } => shrink(&dir(&common), &scenario, seed, budget, &common),
        Cmd::CheckDeterminism {
            scenario,
            seed,
            common,
        } => {
            let d = dir(&common);
            let exe = std::env::current_exe()?;
            let mut bad = 0;
            for s in seed.start..seed.end {
                let job = Job {
                    scenario: scenario.clone(),
                    seed: s,
                };
                let a = run_one_process(&exe, &d, &job, &extra(&common));
                let b = run_one_process(&exe, &d, &job, &extra(&common));
                let same = a.trace_hash == b.trace_hash && !a.trace_hash.is_empty();
                println!(
                    "{scenario} seed {s}: {} ({} / {}, {:?})",
                    if same { "deterministic" } else { "DIFFERENT" },
                    a.trace_hash,
                    b.trace_hash,
                    a.class
                );
                if !same {
                    bad += 1;
                }
            }
            Ok(ExitCode::from(u8::from(bad > 0)))
        }
        Cmd::Merge { files, json } => {
            let summary = merge_files(&files)?;
            print!("{}", summary.table());
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&summary)?)?;
            }
            Ok(exit(summary.worst()))
        }
        Cmd::Bench {
            scenario,
            seeds,
            jobs,
            common,
        } => {
            let d = dir(&common);
            let exe = std::env::current_exe()?;
            let list: Vec<Job> = (seeds.start..seeds.end)
                .map(|seed| Job {
                    scenario: scenario.clone(),
                    seed,
                })
                .collect();
            let n = list.len();
            let (records, elapsed) =
                run_jobs(&exe, &d, list, jobs_default(jobs), &extra(&common), false)?;
            let virt: u64 = records.iter().map(|r| r.virtual_ms).sum();
            let wall: u64 = records.iter().map(|r| r.wall_ms).sum();
            let ops: u64 = records.iter().map(|r| r.ops).sum();
            println!(
                "bench-sim: scenario {scenario}, {n} seeds, {} jobs: {:.1}s wall, {:.1} seeds/s, \
                 virtual/wall {:.0}x per process ({:.1} virtual s per seed), {:.0} client ops/s",
                jobs_default(jobs),
                elapsed,
                n as f64 / elapsed,
                virt as f64 / (wall as f64).max(1.0),
                virt as f64 / 1000.0 / n.max(1) as f64,
                ops as f64 / elapsed
            );
            let s = Summary::from_records(&records, elapsed);
            Ok(exit(s.worst()))
        }
    }
}

/// Flags every child process needs.
fn extra(c: &Common) -> Vec<String> {
    let mut flags = Vec::new();
    if c.replication {
        flags.push("--replication".into());
    }
    if let Some(b) = c.broken {
        flags.push(format!("--broken={}", bug_name(b)));
    }
    flags
}

fn scenario_names(d: &Path, which: &str) -> Result<Vec<String>> {
    if which == "all" {
        Ok(scenario::load_all(d)?.into_iter().map(|s| s.name).collect())
    } else {
        which
            .split(',')
            .map(|n| scenario::find(d, n).map(|s| s.name))
            .collect()
    }
}

fn load_options(
    d: &Path,
    name: &str,
    seed: u64,
    file: Option<&Path>,
    common: &Common,
) -> Result<RunOptions> {
    let mut opts = if let Some(f) = file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", f.display()))?
    } else {
        let s: Scenario = scenario::find(d, name)?;
        RunOptions::derive(
            &s,
            seed,
            common.replication || zabkeeper_sim::sut::REPLICATION_AVAILABLE,
        )
    };
    if common.broken.is_some() {
        opts.broken = common.broken;
    }
    Ok(opts)
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(madsim)]
fn execute(opts: &RunOptions, report: Option<&Path>) -> Result<RunRecord> {
    let out = zabkeeper_sim::run::run_one(opts);
    if let Some(dir) = report {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("history.jsonl"),
            zabkeeper_sim::history::to_jsonl(&out.history),
        )?;
        std::fs::write(
            dir.join("plan.json"),
            serde_json::to_string_pretty(&opts.plan)?,
        )?;
        std::fs::write(
            dir.join("options.json"),
            serde_json::to_string_pretty(opts)?,
        )?;
        std::fs::write(
            dir.join("observations.json"),
            serde_json::to_string_pretty(&out.observations)?,
        )?;
        std::fs::write(dir.join("notes.txt"), out.notes.join("\n"))?;
        std::fs::write(
            dir.join("result.json"),
            serde_json::to_string_pretty(&out.record)?,
        )?;
        std::fs::write(
            dir.join("timeline.html"),
            zabkeeper_sim::timeline::render(
                &format!(
                    "{} seed {}: {:?}",
                    opts.scenario, opts.seed, out.record.class
                ),
                &out.history,
                &opts.plan,
                out.record.virtual_ms,
            ),
        )?;
    }
    Ok(out.record)
}

#[cfg(not(madsim))]
fn execute(_opts: &RunOptions, _report: Option<&Path>) -> Result<RunRecord> {
    bail!(
        "this zabkeeper-sim was built without the simulator; build it with \
         RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/madsim cargo build --release -p zabkeeper-sim"
    )
}

fn shrink(d: &Path, scenario: &str, seed: u64, budget: usize, common: &Common) -> Result<ExitCode> {
    let flags = extra(common);
    let exe = std::env::current_exe()?;
    let original = load_options(d, scenario, seed, None, common)?;
    let job = Job {
        scenario: scenario.to_string(),
        seed,
    };
    let first = run_one_process(&exe, d, &job, &flags);
    if first.class == Class::Pass {
        bail!("{scenario} seed {seed} passes: nothing to shrink");
    }
    println!(
        "shrinking {scenario} seed {seed}: {:?} {} ({} plan events, {} clients, {}ms)",
        first.class,
        first.check.clone().unwrap_or_default(),
        original.plan.events.len(),
        original.clients,
        original.safety_ms
    );
    let tmp = std::env::temp_dir().join(format!(
        "zabkeeper-sim-shrink-{}-{scenario}-{seed}.json",
        std::process::id()
    ));
    let mut runs = 0usize;
    let shrunk = zabkeeper_sim::shrink::shrink_run(&original, budget, |cand| {
        runs += 1;
        if std::fs::write(&tmp, serde_json::to_string(cand).unwrap_or_default()).is_err() {
            return false;
        }
        let rec = run_one_process(
            &exe,
            d,
            &job,
            &["--options".to_string(), tmp.display().to_string()],
        );
        rec.class == first.class && rec.check == first.check
    });
    let _ = std::fs::remove_file(&tmp);
    let out_dir = PathBuf::from("sim-reports");
    std::fs::create_dir_all(&out_dir)?;
    let path = out_dir.join(format!("shrunk-{scenario}-{seed}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&shrunk)?)?;
    println!(
        "after {runs} runs: {} -> {} plan events, {} -> {} clients, {} -> {}ms safety phase",
        original.plan.events.len(),
        shrunk.plan.events.len(),
        original.clients,
        shrunk.clients,
        original.safety_ms,
        shrunk.safety_ms
    );
    print!("minimal plan:\n{}", shrunk.plan.describe());
    println!("replay: zabkeeper-sim replay --options {}", path.display());
    Ok(exit(first.class))
}
