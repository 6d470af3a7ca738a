//! zabkeeper against Apache ZooKeeper 3.8, same client load, side by side. Run by
//! `make bench-compare`.
//!
//! Starts each server in turn (never both at once) as a child process, standalone on
//! 127.0.0.1 with a fresh data directory, real fsyncs, and one and the same zoo.cfg
//! (tickTime, forceSync=yes, the default snapCount, a 4lw whitelist; only dataDir and
//! clientPort differ). Against each it runs the same load through the same client library
//! (the `zookeeper-client` crate), from N concurrent sessions, one request outstanding per
//! session (a closed loop):
//!
//! 1. load: N znodes (default 100,000) of 100 bytes, from N sessions with a few requests in
//!    flight each; then the server's resident memory;
//! 2. restart: a clean stop, start again on exactly that data, and time from the process's
//!    start until `ruok` answers `imok` and until a new session reads the last loaded znode;
//! 3. warm-up (not measured): the mixed load, so that the JVM's JIT has compiled the paths;
//! 4. writes: create (persistent sequential) and setData alternately, 100-byte payloads;
//! 5. reads: getData of random loaded znodes;
//! 6. mixed: 90% reads, 10% writes;
//!
//! with ops/s, latency p50/p99/p99.9/max and RSS for each of 4-6.
//!
//! Then each server as a 3-server ensemble (see `ensemble.rs`): sessions spread over all
//! members, 8 and 32 of them, create / setData / getData / mixed, with the CPU share of
//! each member and of the load generator.
//!
//! With `--failover-runs N` (`make bench-failover`), each server as a 3-server ensemble
//! again, N times per fault (see `failover.rs`): writers on the followers, then the leader
//! killed with SIGKILL or stopped with SIGSTOP, and the time from the fault until a write
//! sent after it is acknowledged.
//!
//! Prints one side-by-side table and optionally writes the numbers as JSON. Both servers are
//! stopped and the data directories removed at the end, on error and on Ctrl-C/SIGTERM.
//!
//! ```text
//! cargo build --release -p zabkeeper --bin zabkeeper
//! cargo run --release -p zabkeeper --example bench_compare -- --seconds 20 --json out.json
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};
use clap::{Parser, ValueEnum};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zookeeper_client::{Acls, Client, CreateMode};

mod ensemble;
mod failover;

/// The server implementations this benchmark can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ServerKind {
    /// Apache ZooKeeper (Debian's `zookeeper` package), `ZooKeeperServerMain`.
    Zookeeper,
    /// This project's `zabkeeper server --config zoo.cfg`.
    Zabkeeper,
}

impl ServerKind {
    fn label(self) -> &'static str {
        match self {
            ServerKind::Zookeeper => "ZooKeeper",
            ServerKind::Zabkeeper => "zabkeeper",
        }
    }

    fn name(self) -> &'static str {
        match self {
            ServerKind::Zookeeper => "zookeeper",
            ServerKind::Zabkeeper => "zabkeeper",
        }
    }
}

#[derive(Parser, Debug, Clone)]
#[command(about = "zabkeeper against Apache ZooKeeper 3.8 under the same client load")]
struct Args {
    /// Servers to measure, in this order, one at a time; a server may be named more than once
    /// (zookeeper,zabkeeper,zabkeeper,zookeeper evens out background load on a shared machine).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "zookeeper,zabkeeper"
    )]
    servers: Vec<ServerKind>,
    /// Concurrent client sessions (one outstanding request each).
    #[arg(long, default_value_t = 8)]
    sessions: usize,
    /// Seconds per measured phase (writes, reads, mixed).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds of unmeasured mixed load before the measured phases.
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Znodes loaded before the phases (memory and restart are measured with them).
    #[arg(long, default_value_t = 100_000)]
    znodes: u64,
    /// Payload bytes of every create and setData.
    #[arg(long, default_value_t = 100)]
    data_bytes: usize,
    /// Requests in flight per session while loading (loading only; the phases keep one).
    #[arg(long, default_value_t = 8)]
    load_depth: usize,
    /// zoo.cfg tickTime (ms), the same for both servers.
    #[arg(long, default_value_t = 2000)]
    tick_time: u64,
    /// The zabkeeper binary (default: `zabkeeper` next to this example's target dir).
    #[arg(long)]
    zabkeeper_bin: Option<PathBuf>,
    /// RUST_LOG of the zabkeeper servers (their logs are kept with --keep). ZooKeeper runs
    /// with Debian's classpath, which has no SLF4J binding, so it logs nothing; the default
    /// keeps zabkeeper to warnings to do comparable work.
    #[arg(long, default_value = "warn")]
    zabkeeper_log: String,
    /// The java executable for ZooKeeper.
    #[arg(long, default_value = "/usr/bin/java")]
    java: PathBuf,
    /// ZooKeeper's classpath as Debian's zkEnv.sh builds it (the jar's manifest names its
    /// dependencies).
    #[arg(
        long,
        default_value = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
    )]
    zookeeper_classpath: String,
    /// ZooKeeper's -Xmx in MiB (upstream zkEnv.sh's ZK_SERVER_HEAP default is 1000; Debian's
    /// sets none); 0 leaves the JVM's default (a quarter of RAM).
    #[arg(long, default_value_t = 1000)]
    zk_heap_mb: u64,
    /// Directory under which the servers' temporary data directories are made (default: the
    /// system temp dir). Both servers use it, so both fsync on the same disk.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the data directories and server logs afterwards.
    #[arg(long)]
    keep: bool,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seed of the clients' choice of znodes and of reads versus writes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Skip the standalone measurement (only the ensembles).
    #[arg(long)]
    skip_standalone: bool,
    /// Memory only (`make bench-memory`): the standalone load, a clean restart and the
    /// memory of each (RSS, peak RSS, snapshot size); no warm-up, no phases, no ensembles.
    #[arg(long)]
    memory_only: bool,
    /// Session counts of the ensemble measurement, each a round of phases; `0` skips the
    /// ensembles.
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    ensemble_sessions: Vec<usize>,
    /// Members of each ensemble.
    #[arg(long, default_value_t = 3)]
    ensemble_size: usize,
    /// Seconds per measured ensemble phase (create, setData, getData, mixed).
    #[arg(long, default_value_t = 10)]
    ensemble_seconds: u64,
    /// Seconds of unmeasured mixed load before each round of ensemble phases.
    #[arg(long, default_value_t = 3)]
    ensemble_warmup: u64,
    /// Znodes loaded into each ensemble (setData and getData pick among them).
    #[arg(long, default_value_t = 10_000)]
    ensemble_keys: u64,
    /// Failover runs per server and fault (each a fresh ensemble); 0 skips failover
    /// (`make bench-failover` sets it).
    #[arg(long, default_value_t = 0)]
    failover_runs: usize,
    /// The faults of the failover runs.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "kill,stop")]
    failover_faults: Vec<failover::Fault>,
    /// tickTime (ms) of the ensembles whose leader is killed.
    #[arg(long, default_value_t = 200)]
    failover_kill_tick: u64,
    /// tickTime (ms) of the ensembles whose leader is paused.
    #[arg(long, default_value_t = 500)]
    failover_stop_tick: u64,
    /// Writer sessions (on the followers) of a failover run.
    #[arg(long, default_value_t = 4)]
    failover_sessions: usize,
    /// Seconds a failover run waits for writes to resume before it says they never did.
    #[arg(long, default_value_t = 60)]
    failover_timeout: u64,
}

/// The three measured workloads (and the warm-up, which is `Mixed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    /// create (persistent sequential) and setData alternately.
    Writes,
    /// getData of random loaded znodes.
    Reads,
    /// 90% reads, 10% writes (as `Writes`).
    Mixed,
    /// create of persistent znodes at unique paths (the ensemble's create row).
    Create,
    /// setData of random loaded znodes (the ensemble's setData row).
    SetData,
    /// Create, then delete, a child of [`BIG_PARENT`], which holds [`BIG_PARENT_BYTES`] of
    /// data: what a write costs when its parent's data is large.
    BigParent,
}

/// The parent of the `big-parent` phase's children.
const BIG_PARENT: &str = "/bench/big";
/// Its data: 1 MB, just under ZooKeeper's default jute.maxbuffer.
const BIG_PARENT_BYTES: usize = 1_000_000;

impl Workload {
    const MEASURED: [Workload; 4] = [
        Workload::Writes,
        Workload::Reads,
        Workload::Mixed,
        Workload::BigParent,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::Writes => "writes",
            Workload::Reads => "reads",
            Workload::Mixed => "mixed",
            Workload::Create => "create",
            Workload::SetData => "setData",
            Workload::BigParent => "big-parent",
        }
    }
}

/// One phase's throughput and latency distribution.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
struct PhaseResult {
    ops: u64,
    errors: u64,
    seconds: f64,
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    /// The server's RSS at the end of the phase and its peak so far (VmHWM), KiB.
    rss_kib: u64,
    peak_rss_kib: u64,
}

impl PhaseResult {
    /// Summarises per-request latencies (nanoseconds, any order) over `elapsed`.
    fn from_latencies(mut nanos: Vec<u64>, errors: u64, elapsed: Duration) -> PhaseResult {
        nanos.sort_unstable();
        let ms = |n: u64| n as f64 / 1e6;
        let secs = elapsed.as_secs_f64();
        PhaseResult {
            ops: nanos.len() as u64,
            errors,
            seconds: secs,
            ops_per_sec: if secs > 0.0 {
                nanos.len() as f64 / secs
            } else {
                0.0
            },
            p50_ms: ms(percentile(&nanos, 0.50)),
            p99_ms: ms(percentile(&nanos, 0.99)),
            p999_ms: ms(percentile(&nanos, 0.999)),
            max_ms: ms(nanos.last().copied().unwrap_or(0)),
            rss_kib: 0,
            peak_rss_kib: 0,
        }
    }
}

/// Everything measured on one server.
#[derive(Clone, Debug, Default, Serialize)]
struct ServerResult {
    server: String,
    /// First line of the server's `srvr` answer.
    version: String,
    /// Fresh start (empty data dir): process start until a session reads `/`.
    start_ms: f64,
    load_seconds: f64,
    load_creates_per_sec: f64,
    rss_after_load_kib: u64,
    /// Peak RSS from the start through the load and its snapshots (VmHWM after the load).
    peak_rss_during_load_kib: u64,
    /// The newest snapshot after the load and a clean stop, bytes.
    snapshot_bytes: u64,
    /// Peak RSS from the restart through the first read (VmHWM then).
    peak_rss_restart_kib: u64,
    rss_after_phases_kib: u64,
    /// Peak RSS since the restart (VmHWM), through warm-up and phases.
    peak_rss_kib: u64,
    phases: BTreeMap<String, PhaseResult>,
    /// Znodes the server reported (`mntr` zk_znode_count) after the load, restarted with.
    znode_count: Option<u64>,
    restart_to_imok_ms: f64,
    restart_to_first_read_ms: f64,
    rss_after_restart_kib: u64,
    /// Znodes after the phases (the writes add sequential znodes at each server's own rate,
    /// so memory after the phases is not for the same tree).
    znode_count_after_phases: Option<u64>,
    /// Snapshot files in the data dir at the end (autopurge is off): how many snapshots
    /// the server took, including any at start-up.
    snapshots: usize,
    /// The machine's 1-minute load average before and after this server's run.
    load_average_before: f64,
    load_average_after: f64,
}

/// The nearest-rank percentile of sorted values; 0 for none.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The path of loaded znode `i`: 1,000 children per parent, as in `bench_snapshot`.
fn znode_path(i: u64) -> String {
    format!("/bench/p{:04}/n{:06}", i / 1000, i % 1000)
}

fn parent_path(p: u64) -> String {
    format!("/bench/p{p:04}")
}

/// The zoo.cfg both servers are given: identical but for the data dir and the port.
fn zoo_cfg(tick_time: u64, data_dir: &Path, port: u16) -> String {
    format!(
        "tickTime={tick_time}\n\
         dataDir={}\n\
         clientPort={port}\n\
         clientPortAddress=127.0.0.1\n\
         maxClientCnxns=60\n\
         forceSync=yes\n\
         snapCount=100000\n\
         autopurge.purgeInterval=0\n\
         4lw.commands.whitelist=ruok,srvr,mntr\n\
         admin.enableServer=false\n",
        data_dir.display()
    )
}

/// `VmRSS` and `VmHWM` (KiB) from a /proc/<pid>/status text.
fn parse_status_memory(status: &str) -> (u64, u64) {
    (kib_field(status, "VmRSS:"), kib_field(status, "VmHWM:"))
}

fn memory_of(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(parse_status_memory(&status))
}

/// A value of a `mntr` answer.
fn mntr_value(mntr: &str, key: &str) -> Option<u64> {
    mntr.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(key))
            .then(|| parts.next()?.parse().ok())
            .flatten()
    })
}

/// UTC date and time as `YYYY-MM-DD HH:MM` (no calendar dependency for one line).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = zabkeeper::client::cli::civil_from_days((secs / 86_400) as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs % 86_400 / 3600,
        secs % 3600 / 60
    )
}

/// A description of this machine for the report.
fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .map(|s| kib_field(&s, "MemTotal:") as f64 / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    format!("{cpus} cores ({model}), {mem_gib:.0} GiB RAM, Linux {kernel}")
}

/// The number after `name` on its line of a /proc file (`VmRSS:  1234 kB`), or 0.
fn kib_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A port free on 127.0.0.1 right now (the server binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// A directory removed when dropped (unless kept).
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A server child process, killed when dropped (also when the benchmark is interrupted).
struct ServerProcess {
    kind: ServerKind,
    child: Child,
    started: Instant,
    log: PathBuf,
}

impl ServerProcess {
    /// A standalone server of `kind` (its log `<kind>.log` in `run_dir`).
    fn spawn(kind: ServerKind, args: &Args, run_dir: &Path, cfg: &Path) -> anyhow::Result<Self> {
        Self::spawn_named(kind, args, run_dir, cfg, kind.name(), false)
    }

    /// A server of `kind` logging to `<name>.log` in `run_dir`; `quorum` starts
    /// ZooKeeper's `QuorumPeerMain` (an ensemble member) instead of `ZooKeeperServerMain`.
    fn spawn_named(
        kind: ServerKind,
        args: &Args,
        run_dir: &Path,
        cfg: &Path,
        name: &str,
        quorum: bool,
    ) -> anyhow::Result<Self> {
        let log = run_dir.join(format!("{name}.log"));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let err = out.try_clone()?;
        let mut cmd = match kind {
            ServerKind::Zookeeper => {
                let mut c = Command::new(&args.java);
                if args.zk_heap_mb > 0 {
                    c.arg(format!("-Xmx{}m", args.zk_heap_mb));
                }
                c.arg("-cp")
                    .arg(&args.zookeeper_classpath)
                    .arg(if quorum {
                        "org.apache.zookeeper.server.quorum.QuorumPeerMain"
                    } else {
                        "org.apache.zookeeper.server.ZooKeeperServerMain"
                    })
                    .arg(cfg);
                c
            }
            ServerKind::Zabkeeper => {
                let mut c = Command::new(zabkeeper_bin(args)?);
                c.env("RUST_LOG", &args.zabkeeper_log)
                    .arg("server")
                    .arg("--config")
                    .arg(cfg);
                c
            }
        };
        cmd.current_dir(run_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}: {cmd:?}", kind.label()))?;
        Ok(ServerProcess {
            kind,
            child,
            started,
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reaps the process.
    fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Sends a signal (`-STOP`, `-CONT`, ...) with kill(1).
    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()?;
        if !status.success() {
            bail!("kill {signal} {} failed", self.pid());
        }
        Ok(())
    }

    /// Fails with the end of the server's log if it has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "{} exited ({status}); end of {}:\n{}",
                self.kind.label(),
                self.log.display(),
                tail.join("\n")
            );
        }
        Ok(())
    }

    /// The usual clean stop (ZooKeeper: SIGTERM, as `zkServer.sh stop` sends; zabkeeper:
    /// SIGINT, which it handles), then SIGKILL if it has not exited within `grace`.
    async fn stop(&mut self, grace: Duration) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let signal = match self.kind {
            ServerKind::Zookeeper => "-TERM",
            ServerKind::Zabkeeper => "-INT",
        };
        let _ = Command::new("kill")
            .arg(signal)
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        eprintln!(
            "{} did not stop within {grace:?} of SIGTERM; killing it",
            self.kind.label()
        );
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn zabkeeper_bin(args: &Args) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.zabkeeper_bin {
        return Ok(p.clone());
    }
    // This example runs from <target>/release/examples/; the binary is <target>/release/.
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("zabkeeper"))
        .ok_or_else(|| anyhow!("cannot locate the zabkeeper binary; pass --zabkeeper-bin"))?;
    if !bin.exists() {
        bail!(
            "{} not found: run `cargo build --release -p zabkeeper --bin zabkeeper` or pass \
             --zabkeeper-bin",
            bin.display()
        );
    }
    Ok(bin)
}

/// Sends a four-letter word and returns the whole answer.
async fn four_letter(addr: SocketAddr, cmd: &str) -> anyhow::Result<String> {
    tokio::time::timeout(Duration::from_secs(2), async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(cmd.as_bytes()).await?;
        s.flush().await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(String::from_utf8_lossy(&buf).into_owned())
    })
    .await
    .map_err(|_| anyhow!("{cmd}: no answer within 2 s"))?
}

/// A new session (the same settings for every server and every session).
async fn connect(addr: SocketAddr) -> anyhow::Result<Client> {
    connect_within(addr, Duration::from_secs(20), Duration::from_secs(5)).await
}

/// A new session with this session timeout, given up if not established within `wait`.
async fn connect_within(
    addr: SocketAddr,
    session_timeout: Duration,
    wait: Duration,
) -> anyhow::Result<Client> {
    let cluster = addr.to_string();
    let connect = Client::connector()
        .with_session_timeout(session_timeout)
        .with_fail_eagerly()
        .connect(&cluster);
    Ok(tokio::time::timeout(wait, connect)
        .await
        .map_err(|_| anyhow!("session to {addr}: no answer within {wait:?}"))??)
}

/// Waits until the server answers `ruok` with `imok`, then until a new session reads
/// `probe`; returns both times since the process started.
async fn wait_ready(
    server: &mut ServerProcess,
    addr: SocketAddr,
    probe: &str,
) -> anyhow::Result<(Duration, Duration)> {
    let deadline = server.started + Duration::from_secs(180);
    let imok = loop {
        server.check_alive()?;
        if let Ok(answer) = four_letter(addr, "ruok").await {
            if answer == "imok" {
                break server.started.elapsed();
            }
        }
        if Instant::now() > deadline {
            bail!("{} did not answer ruok within 180 s", server.kind.label());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let read = loop {
        server.check_alive()?;
        if let Ok(client) = connect(addr).await {
            if client.get_data(probe).await.is_ok() {
                break server.started.elapsed();
            }
        }
        if Instant::now() > deadline {
            bail!("{} did not serve {probe} within 180 s", server.kind.label());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    Ok((imok, read))
}

fn persistent() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::Persistent.with_acls(Acls::anyone_all())
}

fn sequential() -> zookeeper_client::CreateOptions<'static> {
    CreateMode::PersistentSequential.with_acls(Acls::anyone_all())
}

/// Creates the parents and `znodes` znodes of `payload`, `depth` requests in flight per
/// session.
async fn load(
    clients: &[Client],
    znodes: u64,
    depth: usize,
    payload: Arc<Vec<u8>>,
) -> anyhow::Result<()> {
    let first = &clients[0];
    for path in ["/bench", "/bench/seq"] {
        first.create(path, b"", &persistent()).await?;
    }
    first
        .create(BIG_PARENT, &vec![b'b'; BIG_PARENT_BYTES], &persistent())
        .await?;
    for p in 0..znodes.div_ceil(1000) {
        first.create(&parent_path(p), b"", &persistent()).await?;
    }
    let workers = (clients.len() * depth.max(1)) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let client = clients[(w as usize) % clients.len()].clone();
        let payload = payload.clone();
        tasks.spawn(async move {
            let mut i = w;
            while i < znodes {
                client
                    .create(&znode_path(i), &payload, &persistent())
                    .await
                    .with_context(|| format!("create {}", znode_path(i)))?;
                i += workers;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(())
}

/// What one session measured in a phase.
struct SessionStats {
    nanos: Vec<u64>,
    errors: u64,
}

/// One session's closed loop: one request at a time until `until`.
async fn session_loop(
    client: Client,
    session: usize,
    workload: Workload,
    znodes: u64,
    payload: Arc<Vec<u8>>,
    until: Instant,
    seed: u64,
) -> SessionStats {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ((session as u64) << 32));
    // Unique per phase (the seed) and session, so that no two creates collide.
    let seq_prefix = format!("/bench/seq/s{session}-{seed}-");
    let mut writes = 0u64;
    let mut stats = SessionStats {
        nanos: Vec::with_capacity(1 << 16),
        errors: 0,
    };
    while Instant::now() < until {
        let write = match workload {
            Workload::Writes | Workload::Create | Workload::SetData | Workload::BigParent => true,
            Workload::Reads => false,
            Workload::Mixed => rng.gen_bool(0.1),
        };
        let path = znode_path(rng.gen_range(0..znodes));
        let start = Instant::now();
        writes += u64::from(write);
        let op = async {
            match workload {
                // Unique per phase, session and write: never an existing path.
                Workload::Create => client
                    .create(&format!("{seq_prefix}{writes}"), &payload, &persistent())
                    .await
                    .map(|_| ()),
                Workload::SetData => client.set_data(&path, &payload, None).await.map(|_| ()),
                // Odd writes create child n, even ones delete it again.
                Workload::BigParent => {
                    let child = format!("{BIG_PARENT}/s{session}-{seed}-{}", writes.div_ceil(2));
                    if writes % 2 == 1 {
                        client
                            .create(&child, &payload, &persistent())
                            .await
                            .map(|_| ())
                    } else {
                        client.delete(&child, None).await
                    }
                }
                // Writes and mixed: create (sequential) and setData alternately.
                _ if write && writes % 2 == 1 => client
                    .create(&seq_prefix, &payload, &sequential())
                    .await
                    .map(|_| ()),
                _ if write => client.set_data(&path, &payload, None).await.map(|_| ()),
                _ => client.get_data(&path).await.map(|_| ()),
            }
        };
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(10), op).await,
            Ok(Ok(()))
        );
        if ok {
            stats.nanos.push(start.elapsed().as_nanos() as u64);
        } else {
            stats.errors += 1;
        }
    }
    stats
}

/// Runs `workload` from every session for `seconds`.
async fn phase(
    clients: &[Client],
    workload: Workload,
    seconds: u64,
    znodes: u64,
    payload: &Arc<Vec<u8>>,
    seed: u64,
) -> anyhow::Result<PhaseResult> {
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(s, c)| {
            tokio::spawn(session_loop(
                c.clone(),
                s,
                workload,
                znodes,
                payload.clone(),
                until,
                seed,
            ))
        })
        .collect();
    let mut nanos = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let s = t.await?;
        nanos.extend(s.nanos);
        errors += s.errors;
    }
    Ok(PhaseResult::from_latencies(
        nanos,
        errors,
        started.elapsed(),
    ))
}

/// The whole measurement of one server: fresh start, load, memory, restart on that data,
/// warm-up, measured phases.
async fn bench_server(
    kind: ServerKind,
    run: usize,
    args: &Args,
    base: &Path,
) -> anyhow::Result<ServerResult> {
    // Declared before the server so that it is dropped (removed) after the server is killed.
    let run_dir = TempDir {
        path: base.join(format!("{}-{run}", kind.name())),
        keep: args.keep,
    };
    let data_dir = run_dir.path.join("data");
    std::fs::create_dir_all(&data_dir)?;
    let port = free_port()?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let cfg = run_dir.path.join("zoo.cfg");
    std::fs::write(&cfg, zoo_cfg(args.tick_time, &data_dir, port))?;
    let mut result = ServerResult {
        server: kind.name().to_string(),
        load_average_before: load_average(),
        ..ServerResult::default()
    };
    let payload = Arc::new(vec![b'x'; args.data_bytes]);

    println!(
        "== {} on {addr}, data in {}",
        kind.label(),
        data_dir.display()
    );
    let mut server = ServerProcess::spawn(kind, args, &run_dir.path, &cfg)?;
    let (_, start) = wait_ready(&mut server, addr, "/").await?;
    result.start_ms = start.as_secs_f64() * 1e3;
    result.version = four_letter(addr, "srvr")
        .await?
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    println!("   {} (ready in {:.0} ms)", result.version, result.start_ms);

    let clients = connect_all(addr, args.sessions).await?;
    let t = Instant::now();
    load(&clients, args.znodes, args.load_depth, payload.clone()).await?;
    result.load_seconds = t.elapsed().as_secs_f64();
    result.load_creates_per_sec = args.znodes as f64 / result.load_seconds;
    drop(clients);
    // Let the server settle (group commit drained, sessions closed) before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    (result.rss_after_load_kib, result.peak_rss_during_load_kib) = memory_of(server.pid())?;
    result.znode_count = mntr_value(&four_letter(addr, "mntr").await?, "zk_znode_count");
    println!(
        "   loaded {} znodes in {:.1} s ({:.0} creates/s, cold); RSS {:.0} MiB",
        args.znodes,
        result.load_seconds,
        result.load_creates_per_sec,
        result.rss_after_load_kib as f64 / 1024.0
    );

    // Restart on exactly the loaded data (before the phases add znodes at each server's
    // own rate).
    server.stop(Duration::from_secs(60)).await?;
    result.snapshot_bytes = zabkeeper::storage::snapshot_files_in(&data_dir)?
        .last()
        .map_or(Ok(0), |p| std::fs::metadata(p).map(|m| m.len()))?;
    let last = znode_path(args.znodes - 1);
    let mut server = ServerProcess::spawn(kind, args, &run_dir.path, &cfg)?;
    let (imok, read) = wait_ready(&mut server, addr, &last).await?;
    result.restart_to_imok_ms = imok.as_secs_f64() * 1e3;
    result.restart_to_first_read_ms = read.as_secs_f64() * 1e3;
    tokio::time::sleep(Duration::from_secs(1)).await;
    (result.rss_after_restart_kib, result.peak_rss_restart_kib) = memory_of(server.pid())?;
    println!(
        "   restart with {} znodes (newest snapshot {:.0} MiB): imok after {:.0} ms, first \
         read after {:.0} ms; RSS {:.0} MiB, peak {:.0} MiB",
        result
            .znode_count
            .map_or_else(|| "?".to_string(), |n| n.to_string()),
        result.snapshot_bytes as f64 / (1 << 20) as f64,
        result.restart_to_imok_ms,
        result.restart_to_first_read_ms,
        result.rss_after_restart_kib as f64 / 1024.0,
        result.peak_rss_restart_kib as f64 / 1024.0
    );
    if args.memory_only {
        server.stop(Duration::from_secs(60)).await?;
        result.load_average_after = load_average();
        return Ok(result);
    }

    let clients = connect_all(addr, args.sessions).await?;
    if args.warmup > 0 {
        println!("   warm-up: {} s of mixed load (not measured)", args.warmup);
        phase(
            &clients,
            Workload::Mixed,
            args.warmup,
            args.znodes,
            &payload,
            args.seed.wrapping_add(100),
        )
        .await?;
    }
    for (i, w) in Workload::MEASURED.into_iter().enumerate() {
        server.check_alive()?;
        let mut r = phase(
            &clients,
            w,
            args.seconds,
            args.znodes,
            &payload,
            args.seed + i as u64,
        )
        .await?;
        (r.rss_kib, r.peak_rss_kib) = memory_of(server.pid())?;
        println!(
            "   {:<6} {:>8.0} ops/s  p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms{}",
            w.name(),
            r.ops_per_sec,
            r.p50_ms,
            r.p99_ms,
            r.p999_ms,
            r.max_ms,
            if r.errors > 0 {
                format!("  ({} errors)", r.errors)
            } else {
                String::new()
            }
        );
        result.phases.insert(w.name().to_string(), r);
    }
    (result.rss_after_phases_kib, result.peak_rss_kib) = memory_of(server.pid())?;
    result.znode_count_after_phases =
        mntr_value(&four_letter(addr, "mntr").await?, "zk_znode_count");
    result.snapshots = zabkeeper::storage::snapshot_files_in(&data_dir).map_or(0, |f| f.len());
    println!(
        "   {} znodes; RSS after the phases {:.0} MiB, peak since restart {:.0} MiB",
        result
            .znode_count_after_phases
            .map_or_else(|| "?".to_string(), |n| n.to_string()),
        result.rss_after_phases_kib as f64 / 1024.0,
        result.peak_rss_kib as f64 / 1024.0
    );
    drop(clients);
    server.stop(Duration::from_secs(30)).await?;
    result.load_average_after = load_average();
    Ok(result)
}

/// `make bench-memory`'s table: memory and restart with the loaded znodes, a column per
/// run and zabkeeper's mean over ZooKeeper's.
fn memory_table(results: &[ServerResult]) -> String {
    type Cell = fn(&ServerResult) -> f64;
    fn mib(k: u64) -> f64 {
        k as f64 / 1024.0
    }
    let rows: [(&str, Cell); 9] = [
        ("load, creates/s", |r| r.load_creates_per_sec),
        ("RSS after the load, MiB", |r| mib(r.rss_after_load_kib)),
        ("peak RSS during the load, MiB", |r| {
            mib(r.peak_rss_during_load_kib)
        }),
        ("peak / RSS after the load", |r| {
            r.peak_rss_during_load_kib as f64 / r.rss_after_load_kib.max(1) as f64
        }),
        ("newest snapshot, MiB", |r| {
            r.snapshot_bytes as f64 / (1 << 20) as f64
        }),
        ("restart to first read, ms", |r| r.restart_to_first_read_ms),
        ("RSS after restart, MiB", |r| mib(r.rss_after_restart_kib)),
        ("peak RSS during restart, MiB", |r| {
            mib(r.peak_rss_restart_kib)
        }),
        ("peak / RSS after restart", |r| {
            r.peak_rss_restart_kib as f64 / r.rss_after_restart_kib.max(1) as f64
        }),
    ];
    let mut out = String::new();
    let names = column_names(results.iter().map(|r| r.server.as_str()));
    let _ = write!(out, "| |");
    for n in &names {
        let _ = write!(out, " {n} |");
    }
    out.push_str(" zabkeeper / ZooKeeper |\n|---|");
    for _ in &names {
        out.push_str("---:|");
    }
    out.push_str("---:|\n");
    for (label, cell) in rows {
        let _ = write!(out, "| {label} |");
        for r in results {
            let v = cell(r);
            let _ = if v < 10.0 {
                write!(out, " {v:.2} |")
            } else {
                write!(out, " {v:.0} |")
            };
        }
        let mean = |kind: &str| {
            let v: Vec<f64> = results
                .iter()
                .filter(|r| r.server == kind)
                .map(cell)
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        };
        let _ = match (mean("zabkeeper"), mean("zookeeper")) {
            (Some(a), Some(b)) if b > 0.0 => write!(out, " {:.2}x |", a / b),
            _ => write!(out, " |"),
        };
        out.push('\n');
    }
    out
}

/// Opens `n` sessions.
async fn connect_all(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(connect(addr).await?);
    }
    Ok(clients)
}

/// The 1-minute load average (other work on the machine skews every number).
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Column heads for runs of these servers: a server measured more than once (e.g.
/// --servers zookeeper,zabkeeper,zabkeeper,zookeeper to even out background load) gets
/// numbered columns.
fn column_names<'a>(servers: impl Iterator<Item = &'a str>) -> Vec<String> {
    let all: Vec<&str> = servers.collect();
    all.iter()
        .enumerate()
        .map(|(i, &s)| {
            let label = if s == "zookeeper" { "ZooKeeper" } else { s };
            if all.iter().filter(|&&o| o == s).count() > 1 {
                let n = all[..=i].iter().filter(|&&o| o == s).count();
                format!("{label} #{n}")
            } else {
                label.to_string()
            }
        })
        .collect()
}

/// The side-by-side table.
fn table(results: &[ServerResult], args: &Args) -> String {
    let mib = |k: u64| format!("{:.0}", k as f64 / 1024.0);
    let f0 = |v: f64| format!("{v:.0}");
    let phase = |r: &ServerResult, w: &str| r.phases.get(w).cloned().unwrap_or_default();
    type Cell = Box<dyn Fn(&ServerResult) -> String>;
    let mut rows: Vec<(String, Cell)> = vec![
        (
            "fresh start to first read, ms".into(),
            Box::new(move |r| f0(r.start_ms)),
        ),
        (
            format!("load {} znodes (cold), creates/s", args.znodes),
            Box::new(move |r| f0(r.load_creates_per_sec)),
        ),
        (
            "RSS after load, MiB".into(),
            Box::new(move |r| mib(r.rss_after_load_kib)),
        ),
        (
            "znodes (mntr)".into(),
            Box::new(move |r| r.znode_count.map_or("?".into(), |n| n.to_string())),
        ),
        (
            "restart to imok, ms".into(),
            Box::new(move |r| f0(r.restart_to_imok_ms)),
        ),
        (
            "restart to first read, ms".into(),
            Box::new(move |r| f0(r.restart_to_first_read_ms)),
        ),
        (
            "RSS after restart, MiB".into(),
            Box::new(move |r| mib(r.rss_after_restart_kib)),
        ),
    ];
    for w in Workload::MEASURED {
        let name = w.name();
        type PhaseCell = fn(&PhaseResult) -> String;
        let cells: [(&str, PhaseCell); 7] = [
            ("ops/s", |p| format!("{:.0}", p.ops_per_sec)),
            ("p50 ms", |p| format!("{:.2}", p.p50_ms)),
            ("p99 ms", |p| format!("{:.2}", p.p99_ms)),
            ("p99.9 ms", |p| format!("{:.2}", p.p999_ms)),
            ("max ms", |p| format!("{:.2}", p.max_ms)),
            ("errors", |p| p.errors.to_string()),
            ("RSS / peak MiB", |p| {
                format!(
                    "{:.0} / {:.0}",
                    p.rss_kib as f64 / 1024.0,
                    p.peak_rss_kib as f64 / 1024.0
                )
            }),
        ];
        for (what, cell) in cells {
            rows.push((
                format!("{name} {what}"),
                Box::new(move |r| cell(&phase(r, name))),
            ));
        }
    }
    rows.push((
        "znodes after phases (mntr)".into(),
        Box::new(move |r| {
            r.znode_count_after_phases
                .map_or("?".into(), |n| n.to_string())
        }),
    ));
    rows.push((
        "snapshot files at the end".into(),
        Box::new(move |r| r.snapshots.to_string()),
    ));
    rows.push((
        "RSS after phases, MiB".into(),
        Box::new(move |r| mib(r.rss_after_phases_kib)),
    ));
    rows.push((
        "peak RSS after restart, MiB".into(),
        Box::new(move |r| mib(r.peak_rss_kib)),
    ));
    rows.push((
        "machine load average before/after".into(),
        Box::new(move |r| format!("{:.1}/{:.1}", r.load_average_before, r.load_average_after)),
    ));

    let label_width = rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let col = 12;
    let mut out = String::new();
    let _ = write!(out, "| {:<label_width$} |", "");
    for name in column_names(results.iter().map(|r| r.server.as_str())) {
        let _ = write!(out, " {name:>col$} |");
    }
    out.push('\n');
    let _ = write!(out, "|{}|", "-".repeat(label_width + 2));
    for _ in results {
        let _ = write!(out, "{}:|", "-".repeat(col + 1));
    }
    out.push('\n');
    for (label, cell) in &rows {
        let _ = write!(out, "| {label:<label_width$} |");
        for r in results {
            let _ = write!(out, " {:>col$} |", cell(r));
        }
        out.push('\n');
    }
    out
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.sessions == 0 || args.znodes == 0 || args.servers.is_empty() {
        bail!("--sessions, --znodes and --servers must be non-empty");
    }
    if args.ensemble_size == 0 || args.ensemble_keys == 0 {
        bail!("--ensemble-size and --ensemble-keys must be at least 1");
    }
    if args.servers.contains(&ServerKind::Zookeeper) {
        let jar = args
            .zookeeper_classpath
            .split(':')
            .find(|p| p.ends_with(".jar"))
            .unwrap_or("");
        if !Path::new(jar).exists() || !args.java.exists() {
            bail!(
                "Apache ZooKeeper not found ({jar}, {}): `apt-get install zookeeper`, or pass \
                 --zookeeper-classpath/--java, or --servers zabkeeper",
                args.java.display()
            );
        }
    }
    if args.servers.contains(&ServerKind::Zabkeeper) {
        zabkeeper_bin(&args)?;
    }
    let base = TempDir {
        path: args
            .dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .join(format!("zabkeeper-bench-compare-{}", std::process::id())),
        keep: args.keep,
    };
    std::fs::create_dir_all(&base.path)?;
    let date = utc_now();
    let machine = machine();
    println!("bench-compare {date}, {machine}");
    if args.skip_standalone {
        println!("data under {}", base.path.display());
    } else if args.memory_only {
        println!(
            "memory: standalone, {} sessions load {} znodes of {} bytes, forceSync=yes, data \
             under {}",
            args.sessions,
            args.znodes,
            args.data_bytes,
            base.path.display()
        );
    } else {
        println!(
        "standalone: {} sessions, {} s per phase after {} s warm-up, {} znodes of {} bytes, forceSync=yes, \
         data under {}",
        args.sessions,
        args.seconds,
        args.warmup,
        args.znodes,
        args.data_bytes,
        base.path.display()
    );
    }
    let mut results = Vec::new();
    if !args.skip_standalone {
        for (run, &kind) in args.servers.iter().enumerate() {
            results.push(bench_server(kind, run, &args, &base.path).await?);
        }
    }
    let rounds: Vec<usize> = args
        .ensemble_sessions
        .iter()
        .copied()
        .filter(|&n| n > 0)
        .collect();
    let mut ensembles = Vec::new();
    if !rounds.is_empty() && !args.memory_only {
        let ens_args = Args {
            ensemble_sessions: rounds,
            ..args.clone()
        };
        println!(
            "{}-server ensembles: sessions {:?}, {} s per phase after {} s warm-up, {} keys",
            args.ensemble_size,
            ens_args.ensemble_sessions,
            args.ensemble_seconds,
            args.ensemble_warmup,
            args.ensemble_keys
        );
        for (run, &kind) in args.servers.iter().enumerate() {
            ensembles.push(ensemble::bench_ensemble(kind, run, &ens_args, &base.path).await?);
        }
    }
    let mut failovers = Vec::new();
    if args.failover_runs > 0 {
        println!(
            "{}-server ensembles, failover: {:?}, {} run(s) per server and fault, {} writer \
             sessions on the followers",
            args.ensemble_size, args.failover_faults, args.failover_runs, args.failover_sessions
        );
        for _ in 0..args.failover_runs {
            for &fault in &args.failover_faults {
                for &kind in &args.servers {
                    let n = failovers.len();
                    failovers
                        .push(failover::failover_run(kind, fault, n, &args, &base.path).await?);
                }
            }
        }
    }
    println!();
    println!("{date}, {machine}");
    for r in &results {
        println!("{}: {}", r.server, r.version);
    }
    if !results.is_empty() && args.memory_only {
        println!(
            "\nmemory: {} znodes of {} bytes loaded by {} sessions, standalone:",
            args.znodes, args.data_bytes, args.sessions
        );
        print!("{}", memory_table(&results));
    } else if !results.is_empty() {
        println!("\nstandalone, {} sessions:", args.sessions);
        print!("{}", table(&results, &args));
    }
    if !ensembles.is_empty() {
        println!();
        print!("{}", ensemble::ensemble_table(&ensembles));
    }
    if !failovers.is_empty() {
        println!();
        print!(
            "{}",
            failover::failover_table(&failovers, &args.failover_faults)
        );
    }
    if let Some(path) = &args.json {
        let doc = serde_json::json!({
            "date": date,
            "machine": machine,
            "settings": {
                "sessions": args.sessions,
                "seconds_per_phase": args.seconds,
                "warmup_seconds": args.warmup,
                "znodes": args.znodes,
                "data_bytes": args.data_bytes,
                "tick_time": args.tick_time,
                "force_sync": true,
                "zookeeper_heap_mb": args.zk_heap_mb,
                "zoo_cfg": zoo_cfg(args.tick_time, Path::new("<dataDir>"), 0),
            },
            "results": results,
            "ensemble_settings": {
                "members": args.ensemble_size,
                "sessions": args.ensemble_sessions,
                "seconds_per_phase": args.ensemble_seconds,
                "warmup_seconds": args.ensemble_warmup,
                "keys": args.ensemble_keys,
                "zoo_cfg": ensemble::ensemble_cfg(args.tick_time, Path::new("<dataDir>"), 0,
                    &[(0, 0); 3]),
            },
            "ensembles": ensembles,
            "failover_settings": {
                "members": args.ensemble_size,
                "runs_per_server_and_fault": args.failover_runs,
                "writer_sessions": args.failover_sessions,
                "kill_tick_time": args.failover_kill_tick,
                "stop_tick_time": args.failover_stop_tick,
            },
            "failovers": failovers,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    use tokio::signal::unix::{signal, SignalKind};
    let args = Args::parse();
    let (Ok(mut terminate), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        eprintln!("error: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    // An interrupted run drops `run`'s future: its guards kill the server and remove the
    // temp dirs.
    let stopped = tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = terminate.recv() => "terminated",
        _ = hangup.recv() => "hung up",
        r = run(args) => match r {
            Ok(()) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
    };
    eprintln!("{stopped}: servers stopped, temp dirs removed");
    ExitCode::from(130)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_is_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), 500);
        assert_eq!(percentile(&v, 0.99), 990);
        assert_eq!(percentile(&v, 0.999), 999);
        assert_eq!(percentile(&v, 1.0), 1000);
        assert_eq!(percentile(&[7], 0.999), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[test]
    fn phase_result_sorts_and_rates() {
        let r = PhaseResult::from_latencies(
            vec![3_000_000, 1_000_000, 2_000_000, 4_000_000],
            1,
            Duration::from_secs(2),
        );
        assert_eq!(r.ops, 4);
        assert_eq!(r.errors, 1);
        assert_eq!(r.ops_per_sec, 2.0);
        assert_eq!(r.p50_ms, 2.0);
        assert_eq!(r.max_ms, 4.0);
    }

    #[test]
    fn both_servers_get_the_same_settings() {
        let cfg = zoo_cfg(2000, Path::new("/d"), 2182);
        for line in [
            "tickTime=2000",
            "dataDir=/d",
            "clientPort=2182",
            "clientPortAddress=127.0.0.1",
            "forceSync=yes",
            "snapCount=100000",
            "4lw.commands.whitelist=ruok,srvr,mntr",
            "admin.enableServer=false",
        ] {
            assert!(cfg.lines().any(|l| l == line), "{line} missing from\n{cfg}");
        }
        // zabkeeper reads the very same file with these settings.
        let dir = std::env::temp_dir().join(format!("bench-compare-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("zoo.cfg");
        std::fs::write(&path, zoo_cfg(2000, &dir, 2182)).unwrap();
        let parsed = zabkeeper::runtime::ServerConfig::from_file(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(parsed.tick_time_ms, 2000);
        assert_eq!(parsed.client_port, 2182);
        assert!(parsed.client_port_address.is_loopback());
        assert!(parsed.force_sync);
        assert_eq!(parsed.snap_count, 100_000);
        assert!(parsed.four_letter_word_allowed("ruok"));
        assert!(parsed.four_letter_word_allowed("mntr"));
    }

    #[test]
    fn reads_rss_from_proc_status() {
        let status = "Name:\tjava\nVmHWM:\t  523400 kB\nVmRSS:\t  401212 kB\nThreads:\t40\n";
        assert_eq!(parse_status_memory(status), (401_212, 523_400));
        let (rss, hwm) = memory_of(std::process::id()).unwrap();
        assert!(rss > 0 && hwm >= rss);
    }

    #[test]
    fn reads_mntr_values() {
        let mntr = "zk_version\t3.8.0\nzk_znode_count\t100107\nzk_watch_count\t0\n";
        assert_eq!(mntr_value(mntr, "zk_znode_count"), Some(100_107));
        assert_eq!(mntr_value(mntr, "zk_missing"), None);
    }

    #[test]
    fn znode_paths_have_parents() {
        assert_eq!(znode_path(0), "/bench/p0000/n000000");
        assert_eq!(znode_path(99_999), "/bench/p0099/n000999");
        assert!(znode_path(12_345).starts_with(&parent_path(12)));
    }

    #[test]
    fn table_has_a_column_per_server() {
        let mut a = ServerResult {
            server: "zookeeper".into(),
            ..Default::default()
        };
        a.phases.insert(
            "writes".into(),
            PhaseResult {
                ops_per_sec: 1234.4,
                ..Default::default()
            },
        );
        let b = ServerResult {
            server: "zabkeeper".into(),
            ..Default::default()
        };
        let args = Args::parse_from(["bench_compare"]);
        let t = table(&[a, b], &args);
        let header = t.lines().next().unwrap();
        assert!(header.contains("ZooKeeper") && header.contains("zabkeeper"));
        let writes = t.lines().find(|l| l.contains("writes ops/s")).unwrap();
        assert!(writes.contains("1234"), "{writes}");
        let zk = ServerResult {
            server: "zookeeper".into(),
            ..Default::default()
        };
        let twice = table(&[zk.clone(), zk], &args);
        let header = twice.lines().next().unwrap();
        assert!(
            header.contains("ZooKeeper #1") && header.contains("ZooKeeper #2"),
            "{header}"
        );
    }
}
