//! Storage throughput on the real file system: appends/s and fsyncs/s with group commit
//! of N txns per fsync. Run by `make bench-storage`; each row runs for `--seconds`.
//!
//! ```text
//! cargo run --release -p zabkeeper --example bench_storage -- --seconds 1 --txn-bytes 128
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use zabkeeper::storage::{FileStorage, FileStorageOptions, RealFs, Storage};
use zabkeeper::types::make_zxid;

#[derive(Parser, Debug)]
#[command(about = "Benchmark the txn log: group commit of N txns per fsync on RealFs")]
struct Args {
    /// Seconds per row.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
    /// Bytes per txn.
    #[arg(long, default_value_t = 128)]
    txn_bytes: usize,
    /// Group sizes (txns per fsync) to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,1000")]
    groups: Vec<u64>,
    /// Directory to write in (default: a fresh directory under the system temp dir,
    /// removed afterwards). Put it on the disk you care about.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Skip the forceSync=no row (no fsync, at the largest group size).
    #[arg(long)]
    skip_no_sync: bool,
}

struct Row {
    label: String,
    txns: u64,
    fsyncs: u64,
    elapsed: Duration,
    worst_sync: Duration,
}

fn run(dir: &PathBuf, group: u64, force_sync: bool, args: &Args) -> anyhow::Result<Row> {
    let _ = std::fs::remove_dir_all(dir);
    let mut opts = FileStorageOptions::new(dir, dir);
    opts.force_sync = force_sync;
    let mut st = FileStorage::open(RealFs, opts)?;
    let payload = vec![0xa5u8; args.txn_bytes];
    let budget = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();
    let (mut txns, mut fsyncs, mut counter) = (0u64, 0u64, 0u32);
    let mut worst_sync = Duration::ZERO;
    while start.elapsed() < budget {
        for _ in 0..group {
            counter += 1;
            st.append(make_zxid(1, counter), &payload)?;
        }
        let t = Instant::now();
        st.fsync()?;
        worst_sync = worst_sync.max(t.elapsed());
        txns += group;
        fsyncs += 1;
    }
    let elapsed = start.elapsed();
    drop(st);
    let _ = std::fs::remove_dir_all(dir);
    Ok(Row {
        label: format!("{group}{}", if force_sync { "" } else { " (forceSync=no)" }),
        txns,
        fsyncs,
        elapsed,
        worst_sync,
    })
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("zabkeeper-bench-storage-{}", std::process::id()))
    });
    std::fs::create_dir_all(&root)?;
    let mut rows = Vec::new();
    for &group in &args.groups {
        rows.push(run(
            &root.join(format!("g{group}")),
            group.max(1),
            true,
            &args,
        )?);
    }
    if !args.skip_no_sync {
        let group = args.groups.iter().copied().max().unwrap_or(1).max(1);
        rows.push(run(&root.join("nosync"), group, false, &args)?);
    }
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }

    println!(
        "txn log on {} ({} B txns, 64 MiB preallocation)",
        root.display(),
        args.txn_bytes
    );
    println!(
        "{:>24} {:>12} {:>12} {:>10} {:>14}",
        "txns/fsync", "appends/s", "fsyncs/s", "MiB/s", "worst sync ms"
    );
    for r in rows {
        let secs = r.elapsed.as_secs_f64();
        println!(
            "{:>24} {:>12.0} {:>12.0} {:>10.1} {:>14.2}",
            r.label,
            r.txns as f64 / secs,
            r.fsyncs as f64 / secs,
            (r.txns as f64 * (args.txn_bytes + 16) as f64) / secs / (1 << 20) as f64,
            r.worst_sync.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
