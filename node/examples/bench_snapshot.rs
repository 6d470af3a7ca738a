//! Do writes stop while a snapshot is taken? Run by `make bench-storage`.
//!
//! Builds a tree of (by default) 1,000,000 znodes of 100 bytes as a snapshot on disk, starts
//! a real standalone server on it (in-process, 127.0.0.1, real fsyncs) with a small
//! `snapCount`, and runs several real ZooKeeper clients (the `zookeeper-client` crate) doing
//! setData as fast as they can. Snapshots of the 1M-znode tree are then taken again and
//! again while the clients write. The report compares the write latency distribution with
//! the time one snapshot takes to serialize and write (what a write would wait for if
//! snapshots were taken inline): the maximum write latency should stay far below it.
//!
//! ```text
//! cargo run --release -p zabkeeper --example bench_snapshot -- --znodes 1000000 --seconds 20
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use zabkeeper::core::session::SessionTracker;
use zabkeeper::runtime::{self, recovery, ServerConfig, SystemClock};
use zabkeeper::state::tree::DataTree;
use zabkeeper::state::txn::{Txn, TxnBody};
use zabkeeper::storage::{snapshot_files_in, FileStorage, FileStorageOptions, RealFs, Storage};
use zabkeeper::types::{Acl, Zxid};

#[derive(Parser, Debug)]
#[command(about = "Write latency while snapshots of a large tree are taken")]
struct Args {
    /// Leaf znodes in the tree.
    #[arg(long, default_value_t = 1_000_000)]
    znodes: u64,
    /// Bytes of data per znode.
    #[arg(long, default_value_t = 100)]
    data_bytes: usize,
    /// Concurrent writing clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// How long the clients write.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// The server's snapCount (a snapshot every snapCount/2 .. snapCount txns).
    #[arg(long, default_value_t = 4000)]
    snap_count: u64,
    /// Directory to write in (default: a fresh directory under the system temp dir,
    /// removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Builds the tree directly (the txns a server would have applied) and writes it as the
/// only snapshot; returns the time one inline snapshot of it takes (encode + write).
fn build(dir: &Path, args: &Args) -> anyhow::Result<(Zxid, Duration)> {
    let mut storage = FileStorage::open(RealFs, FileStorageOptions::new(dir, dir))?;
    let mut tree = DataTree::new();
    let mut zxid: Zxid = 0;
    let data = vec![b'x'; args.data_bytes];
    let mut create = |tree: &mut DataTree, path: String| -> anyhow::Result<()> {
        zxid += 1;
        let txn = Txn {
            zxid,
            time: 1_700_000_000_000 + zxid,
            session: 0,
            cxid: 0,
            body: TxnBody::Create {
                path,
                data: Some(data.clone()),
                acl: Acl::open_unsafe(),
                ephemeral_owner: 0,
                parent_cversion: -1,
            },
        };
        if let Err(e) = tree.apply(&txn).result {
            anyhow::bail!("txn 0x{zxid:x} failed: {e:?}");
        }
        Ok(())
    };
    create(&mut tree, "/bench".into())?;
    for p in 0..args.znodes.div_ceil(1000) {
        create(&mut tree, format!("/bench/p{p:04}"))?;
    }
    for i in 0..args.znodes {
        create(
            &mut tree,
            format!("/bench/p{:04}/n{:06}", i / 1000, i % 1000),
        )?;
    }
    for w in 0..args.clients {
        create(&mut tree, format!("/w{w}"))?;
    }
    storage.set_current_epoch(0)?;
    let start = Instant::now();
    let snap = recovery::encode_snapshot(&tree, &SessionTracker::new(2000));
    let last = tree.last_processed_zxid();
    storage.write_snapshot(last, &snap)?;
    Ok((last, start.elapsed()))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn writer(addr: String, w: usize, until: Instant) -> anyhow::Result<Vec<Duration>> {
    let client = zookeeper_client::Client::connect(&addr).await?;
    let path = format!("/w{w}");
    let mut lat = Vec::new();
    while Instant::now() < until {
        let start = Instant::now();
        client.set_data(&path, b"value", None).await?;
        lat.push(start.elapsed());
    }
    Ok(lat)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (dir, remove) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("zabkeeper-bench-snapshot-{}", std::process::id())),
            true,
        ),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    println!(
        "building {} znodes of {} bytes in {} ...",
        args.znodes,
        args.data_bytes,
        dir.display()
    );
    let (zxid, inline) = build(&dir, &args)?;
    println!(
        "one snapshot of this tree (encode + write + fsync) takes {:.0} ms",
        inline.as_secs_f64() * 1e3
    );

    let mut config = ServerConfig::standalone(0, &dir);
    config.snap_count = args.snap_count;
    let storage = FileStorage::open(RealFs, FileStorageOptions::new(&dir, &dir))?;
    let server = runtime::start(config, Box::new(storage), Arc::new(SystemClock)).await?;
    let addr = server.local_addr().to_string();
    let before = snapshot_files_in(&dir).map_or(0, |f| f.len());

    let until = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.clients)
        .map(|w| tokio::spawn(writer(addr.clone(), w, until)))
        .collect();
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let elapsed = started.elapsed();
    server.shutdown().await?;
    let taken = snapshot_files_in(&dir)
        .map_or(0, |f| f.len())
        .saturating_sub(before);

    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{} clients, {} setData in {:.1} s ({:.0} writes/s) from zxid 0x{zxid:x}, snapCount {}",
        args.clients,
        lat.len(),
        elapsed.as_secs_f64(),
        lat.len() as f64 / elapsed.as_secs_f64(),
        args.snap_count
    );
    println!("snapshots of the tree written while the clients wrote: {taken}");
    println!(
        "write latency ms: p50 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (one inline snapshot: {:.0})",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.99)),
        ms(percentile(&lat, 0.999)),
        ms(lat.last().copied().unwrap_or_default()),
        ms(inline)
    );
    if remove {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
