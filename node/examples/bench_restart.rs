//! Restart time with a large tree: by default 1,000,000 znodes of 100 bytes, held as a
//! snapshot plus a 100,000-txn log after it (as a server that snapshots every 100,000 txns
//! would leave it). Run by `make bench-storage`.
//!
//! The state is built directly with `DataTree` + `FileStorage` (the txns are the ones the
//! server would log: `Create` txns encoded as ZooKeeper's TxnHeader + CreateTxn), then each
//! restart phase is timed: opening the storage (scanning the logs), `Storage::recover`
//! (reading and checking the snapshot and log), decoding the snapshot, and the whole
//! `runtime::recovery::recover` a starting server runs before it listens. The files were
//! just written, so this is a warm page cache: a cold start adds the time to read them.
//!
//! ```text
//! cargo run --release -p zabkeeper --example bench_restart -- --znodes 1000000 --log-txns 100000
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use zabkeeper::core::session::SessionTracker;
use zabkeeper::runtime::recovery;
use zabkeeper::state::tree::DataTree;
use zabkeeper::state::txn::{Txn, TxnBody};
use zabkeeper::storage::{FileStorage, FileStorageOptions, RealFs, Storage};
use zabkeeper::types::{Acl, Zxid};

#[derive(Parser, Debug)]
#[command(about = "Benchmark a restart: snapshot load plus log replay on RealFs")]
struct Args {
    /// Leaf znodes in total (the snapshot holds all but the last `--log-txns` of them).
    #[arg(long, default_value_t = 1_000_000)]
    znodes: u64,
    /// Create txns in the log after the snapshot.
    #[arg(long, default_value_t = 100_000)]
    log_txns: u64,
    /// Bytes of data per znode.
    #[arg(long, default_value_t = 100)]
    data_bytes: usize,
    /// Leaves per parent znode (`/bench/p<i>/n<j>`).
    #[arg(long, default_value_t = 1000)]
    fanout: u64,
    /// Txns per fsync while writing the log.
    #[arg(long, default_value_t = 1000)]
    group: u64,
    /// Restarts to time (the table shows the best and the worst).
    #[arg(long, default_value_t = 2)]
    runs: u32,
    /// Directory to write in (default: a fresh directory under the system temp dir,
    /// removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Builds txns with consecutive zxids and applies them to a tree.
struct Builder {
    tree: DataTree,
    zxid: Zxid,
    acl: Vec<Acl>,
    data: Vec<u8>,
}

impl Builder {
    fn create(&mut self, path: String) -> Txn {
        self.zxid += 1;
        Txn {
            zxid: self.zxid,
            time: 1_700_000_000_000 + self.zxid,
            session: 0,
            cxid: 0,
            body: TxnBody::Create {
                path,
                data: Some(self.data.clone()),
                acl: self.acl.clone(),
                ephemeral_owner: 0,
                parent_cversion: -1,
            },
        }
    }

    fn apply(&mut self, txn: &Txn) -> anyhow::Result<()> {
        if let Err(e) = self.tree.apply(txn).result {
            anyhow::bail!("txn 0x{:x} failed: {e:?}", txn.zxid);
        }
        Ok(())
    }
}

fn leaf_path(i: u64, fanout: u64) -> String {
    format!("/bench/p{:04}/n{:06}", i / fanout, i % fanout)
}

fn dir_bytes(dir: &Path, prefix: &str) -> u64 {
    std::fs::read_dir(dir.join("version-2"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Writes the snapshot and the log; returns the expected znode count and last zxid.
fn build(dir: &Path, args: &Args) -> anyhow::Result<(usize, Zxid)> {
    let opts = FileStorageOptions::new(dir, dir);
    let mut storage = FileStorage::open(RealFs, opts)?;
    let mut b = Builder {
        tree: DataTree::new(),
        zxid: 0,
        acl: Acl::open_unsafe(),
        data: vec![b'x'; args.data_bytes],
    };
    let fanout = args.fanout.max(1);
    let parents = args.znodes.div_ceil(fanout);
    let in_snapshot = args.znodes.saturating_sub(args.log_txns);

    let root = b.create("/bench".into());
    b.apply(&root)?;
    for p in 0..parents {
        let txn = b.create(format!("/bench/p{p:04}"));
        b.apply(&txn)?;
    }
    for i in 0..in_snapshot {
        let txn = b.create(leaf_path(i, fanout));
        b.apply(&txn)?;
    }
    let snap = recovery::encode_snapshot(&b.tree, &SessionTracker::new(2000));
    storage.write_snapshot(b.zxid, &snap)?;

    let mut pending = 0;
    for i in in_snapshot..args.znodes {
        let txn = b.create(leaf_path(i, fanout));
        storage.append(txn.zxid, &txn.encode())?;
        b.apply(&txn)?;
        pending += 1;
        if pending == args.group.max(1) {
            storage.fsync()?;
            pending = 0;
        }
    }
    storage.fsync()?;
    Ok((b.tree.node_count(), b.zxid))
}

#[derive(Default)]
struct Timing {
    open: Vec<Duration>,
    storage_recover: Vec<Duration>,
    decode_snapshot: Vec<Duration>,
    restart: Vec<Duration>,
}

fn time_restart(dir: &Path, expect: (usize, Zxid), t: &mut Timing) -> anyhow::Result<()> {
    let opts = || FileStorageOptions::new(dir, dir);

    // The storage layer alone: open (scan logs), then read and check snapshot + log.
    let start = Instant::now();
    let mut storage = FileStorage::open(RealFs, opts())?;
    t.open.push(start.elapsed());
    let start = Instant::now();
    let rec = storage.recover()?;
    t.storage_recover.push(start.elapsed());
    let (_, body) = rec
        .snapshot
        .ok_or_else(|| anyhow::anyhow!("no snapshot recovered"))?;
    let start = Instant::now();
    let (tree, _) = recovery::decode_snapshot(&body).map_err(anyhow::Error::msg)?;
    t.decode_snapshot.push(start.elapsed());
    drop((tree, body, rec.txns, storage));

    // What a starting server does before it listens.
    let start = Instant::now();
    let mut storage = FileStorage::open(RealFs, opts())?;
    let recovered = recovery::recover(&mut storage).map_err(anyhow::Error::msg)?;
    t.restart.push(start.elapsed());
    anyhow::ensure!(
        (recovered.tree.node_count(), recovered.last_logged) == expect,
        "recovered {} znodes at 0x{:x}, expected {} at 0x{:x}",
        recovered.tree.node_count(),
        recovered.last_logged,
        expect.0,
        expect.1
    );
    Ok(())
}

fn row(name: &str, d: &[Duration]) {
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    println!(
        "{name:>42} {:>10.0} {:>10.0}",
        ms(d.iter().min()),
        ms(d.iter().max())
    );
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.log_txns <= args.znodes, "--log-txns exceeds --znodes");
    let root = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("zabkeeper-bench-restart-{}", std::process::id()))
    });
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root)?;

    let start = Instant::now();
    let expect = build(&root, &args)?;
    let build_time = start.elapsed();
    let mut timing = Timing::default();
    for _ in 0..args.runs.max(1) {
        time_restart(&root, expect, &mut timing)?;
    }
    let (snap_bytes, log_bytes) = (dir_bytes(&root, "snapshot."), dir_bytes(&root, "log."));
    if args.dir.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }

    println!(
        "restart with {} znodes ({} B data each): snapshot of {} znodes ({:.1} MiB) + log of {} txns ({:.1} MiB on disk, preallocated); built in {:.1} s; warm page cache",
        expect.0,
        args.data_bytes,
        expect.0 as u64 - args.log_txns,
        snap_bytes as f64 / (1 << 20) as f64,
        args.log_txns,
        log_bytes as f64 / (1 << 20) as f64,
        build_time.as_secs_f64()
    );
    println!("{:>42} {:>10} {:>10}", "phase", "best ms", "worst ms");
    row("FileStorage::open (scan logs)", &timing.open);
    row(
        "Storage::recover (read + check files)",
        &timing.storage_recover,
    );
    row("decode snapshot into a DataTree", &timing.decode_snapshot);
    row("full restart (open + recovery::recover)", &timing.restart);
    Ok(())
}
