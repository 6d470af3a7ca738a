//! `zabkeeper-check --model M FILE...`: checks JSON Lines histories.
//! Exit status: 0 linearizable, 1 not linearizable, 2 unknown (or unreadable input).

use clap::Parser;
use std::io::BufReader;
use std::time::Duration;
use zabkeeper_check::{check_history, html, parse_jsonl, CheckOptions, Model, Report, Verdict};

#[derive(Parser, Debug)]
#[command(
    name = "zabkeeper-check",
    about = "Linearizability and ZooKeeper-contract checker"
)]
struct Args {
    /// Model: register, cas-register, kv, zk.
    #[arg(long, short)]
    model: Model,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Write an HTML timeline report to this file.
    #[arg(long)]
    html: Option<std::path::PathBuf>,
    /// Worker threads (default: available cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Wall-clock limit per file in seconds (verdict `unknown` when reached).
    #[arg(long)]
    time_limit: Option<f64>,
    /// Memoized configurations allowed per part.
    #[arg(long, default_value_t = 20_000_000)]
    max_configs: usize,
    /// Do not minimize counterexamples.
    #[arg(long)]
    no_minimize: bool,
    /// History files (JSON Lines).
    #[arg(required = true)]
    files: Vec<std::path::PathBuf>,
}

/// Writes to stdout, ignoring a closed pipe (e.g. `| head`): the exit status still counts.
fn out(s: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(s.as_bytes());
}

fn main() {
    let args = Args::parse();
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let opts = CheckOptions {
        max_configs: args.max_configs,
        time_limit: args.time_limit.map(Duration::from_secs_f64),
        threads,
        minimize: !args.no_minimize,
        ..CheckOptions::default()
    };
    let mut overall = Verdict::Linearizable;
    let mut json_files = Vec::new();
    let mut html_sections = Vec::new();
    for file in &args.files {
        let name = file.display().to_string();
        let parsed = std::fs::File::open(file)
            .map_err(|e| e.to_string())
            .and_then(|f| parse_jsonl(BufReader::new(f)).map_err(|e| e.to_string()));
        let (events, report) = match parsed {
            Ok(events) => {
                let r = check_history(&events, args.model, &opts);
                (events, r)
            }
            Err(e) => (Vec::new(), Report::error(args.model, e)),
        };
        overall = overall.and(report.verdict);
        if args.json {
            let mut v = serde_json::to_value(&report).expect("report serializes");
            v["file"] = serde_json::Value::String(name.clone());
            json_files.push(v);
        } else {
            out(&report.to_text(&name));
        }
        if args.html.is_some() {
            html_sections.push(html::section(&name, &events, &report));
        }
    }
    if args.json {
        let json = serde_json::json!({ "verdict": overall, "files": json_files });
        out(&format!(
            "{}\n",
            serde_json::to_string_pretty(&json).expect("json")
        ));
    } else if args.files.len() > 1 {
        out(&format!("overall: {overall}\n"));
    }
    if let Some(path) = &args.html {
        if let Err(e) = std::fs::write(path, html::page(&html_sections)) {
            eprintln!("cannot write {}: {e}", path.display());
            std::process::exit(2);
        }
    }
    std::process::exit(overall.exit_code());
}
