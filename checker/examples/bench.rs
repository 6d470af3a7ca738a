//! `make bench-checker`: generated kv and register histories of 10k, 100k and 1M operations
//! with 10 to 100 processes and a few percent info ops; prints ops/s and peak memory. Then
//! Porcupine-style key-value histories with 10 and 50 clients, linearizable and not: the
//! mean and worst time to decide, and the mean time with minimization (per-seed means over
//! 20 seeds).
//!
//! Usage: `cargo run --release -p zabkeeper-check --example bench [-- --max-ops N --threads T --model M --procs P --time-limit S --out DIR]`
//! Memory: `hist MiB` is the resident size with the generated history loaded (the `Event`
//! structs), `peak MiB` the process peak so far.
//! `--out DIR` also writes each generated history as JSON Lines (to compare other checkers).

use std::time::Instant;
use zabkeeper_check::gen::{generate, GenConfig};
use zabkeeper_check::{check_history, write_jsonl, CheckOptions, Model};

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// Resets the peak-RSS counter (Linux `clear_refs` value 5) so each row reports its own peak.
fn drop_caches_of_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let max_ops: usize = arg("--max-ops")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let threads: usize = arg("--threads")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
    let out = arg("--out");
    let only = arg("--model");
    let info_rate: f64 = arg("--info").and_then(|v| v.parse().ok()).unwrap_or(0.03);
    let procs_only: Option<usize> = arg("--procs").and_then(|v| v.parse().ok());
    let limit: f64 = arg("--time-limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30.0);
    let opts = CheckOptions {
        threads,
        time_limit: Some(std::time::Duration::from_secs_f64(limit)),
        ..CheckOptions::default()
    };
    println!(
        "{:<12} {:>9} {:>6} {:>6} {:>9} {:>10} {:>12} {:>9} {:>9} {:>17}",
        "model",
        "ops",
        "procs",
        "info%",
        "gen s",
        "check s",
        "ops/s",
        "hist MiB",
        "peak MiB",
        "verdict"
    );
    // (model, keys, appends, sizes)
    let rows: &[(Model, usize, bool, &[usize])] = &[
        (Model::Kv, 100, false, &[10_000, 100_000, 1_000_000]),
        (Model::Register, 0, false, &[10_000, 100_000, 1_000_000]),
        (Model::CasRegister, 0, false, &[10_000, 100_000]),
        (Model::Kv, 100, true, &[10_000, 100_000]),
    ];
    for &(model, keys, with_append, sizes) in rows {
        for &n in sizes {
            let name = format!("{model}{}", if with_append { "+append" } else { "" });
            if n > max_ops || only.as_deref().is_some_and(|m| m != name) {
                continue;
            }
            for &procs in &[10usize, 100] {
                if procs_only.is_some_and(|p| p != procs) {
                    continue;
                }
                let cfg = GenConfig {
                    seed: n as u64 + procs as u64,
                    ops: n,
                    processes: procs,
                    keys,
                    info_rate,
                    fail_rate: 0.01,
                    cas: model != Model::Register,
                    append: with_append,
                    values: arg("--values").and_then(|v| v.parse().ok()).unwrap_or(1000),
                    ..GenConfig::default()
                };
                drop_caches_of_peak();
                let t = Instant::now();
                let events = generate(&cfg);
                let gen_s = t.elapsed().as_secs_f64();
                if let Some(dir) = &out {
                    let file = format!("{dir}/{name}-{n}-{procs}.jsonl");
                    let f = std::fs::File::create(&file).expect("create output");
                    write_jsonl(&events, std::io::BufWriter::new(f)).expect("write history");
                }
                let hist = rss_mib();
                let t = Instant::now();
                let r = check_history(&events, model, &opts);
                let s = t.elapsed().as_secs_f64();
                println!(
                    "{:<12} {:>9} {:>6} {:>6.1} {:>9.2} {:>10.3} {:>12.0} {:>9.0} {:>9.0} {:>17}",
                    name,
                    n,
                    procs,
                    cfg.info_rate * 100.0,
                    gen_s,
                    s,
                    n as f64 / s,
                    hist,
                    peak_rss_mib(),
                    r.verdict.to_string()
                );
            }
        }
    }
    // Porcupine-style key-value histories (its `kv` tests: 10 keys, get/put/append with
    // unique values, 10 and 50 clients), linearizable ("ok") and with stale reads ("bad"):
    // the time to decide (no minimization) and the time with a minimal counterexample.
    if only.as_deref().is_none_or(|m| m == "kv-porcupine") {
        println!();
        println!(
            "{:<16} {:>6} {:>6} {:>6} {:>10} {:>12} {:>16} {:>12}",
            "porcupine kv",
            "ops",
            "procs",
            "seeds",
            "decide s",
            "max decide s",
            "with minimize s",
            "verdicts"
        );
        for &(procs, stale, label) in &[
            (10usize, 0.0, "ok"),
            (10, 0.01, "bad"),
            (50, 0.0, "ok"),
            (50, 0.01, "bad"),
        ] {
            let ops = if procs == 10 { 400 } else { 2_000 };
            let seeds = 20u64;
            let (mut total, mut worst, mut total_min) = (0.0f64, 0.0f64, 0.0f64);
            let mut verdicts = std::collections::BTreeMap::<String, usize>::new();
            for seed in 0..seeds {
                let events = generate(&GenConfig::porcupine_kv(seed, procs, ops, stale));
                let decide = CheckOptions {
                    threads: 1,
                    minimize: false,
                    ..opts.clone()
                };
                let t = Instant::now();
                let r = check_history(&events, Model::Kv, &decide);
                let s = t.elapsed().as_secs_f64();
                total += s;
                worst = worst.max(s);
                *verdicts.entry(r.verdict.to_string()).or_default() += 1;
                let t = Instant::now();
                check_history(
                    &events,
                    Model::Kv,
                    &CheckOptions {
                        threads: 1,
                        ..opts.clone()
                    },
                );
                total_min += t.elapsed().as_secs_f64();
            }
            let v: Vec<String> = verdicts.iter().map(|(k, n)| format!("{n} {k}")).collect();
            println!(
                "{:<16} {:>6} {:>6} {:>6} {:>10.4} {:>12.4} {:>16.4} {:>12}",
                format!("c{procs}-{label}"),
                ops,
                procs,
                seeds,
                total / seeds as f64,
                worst,
                total_min / seeds as f64,
                v.join(", ")
            );
        }
    }
}
