//! The ensemble half of bench-compare: each server implementation as a 3-server ensemble
//! (or `--ensemble-size` servers) on 127.0.0.1, one implementation at a time, in the order
//! of `--servers` (ABBA by default in `make bench-compare`).
//!
//! Every member has its own data directory under the same base directory (the same disk)
//! and the same zoo.cfg but for dataDir and clientPort: tickTime, initLimit=10,
//! syncLimit=5, forceSync=yes, the same server.N lines. Once every member answers `srvr`
//! as leader or follower, `--ensemble-keys` znodes of 100 bytes are loaded, and then, for
//! each session count of `--ensemble-sessions`, that many sessions are opened, spread
//! round-robin over all members, and run a closed loop (one request outstanding each):
//! unmeasured mixed warm-up, then create (persistent, unique paths), setData and getData
//! of random loaded znodes, and 90% reads. For every phase: ops/s, latency percentiles,
//! and the CPU share of each member and of this load generator (from /proc/<pid>/stat),
//! so a row that the generator bounds says so.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;
use zookeeper_client::Client;

use super::{
    connect, four_letter, free_port, load, load_average, phase, Args, PhaseResult, ServerKind,
    ServerProcess, TempDir, Workload,
};

/// The phases measured per session count, in this order.
pub const PHASES: [Workload; 4] = [
    Workload::Create,
    Workload::SetData,
    Workload::Reads,
    Workload::Mixed,
];

/// One measured phase on one ensemble.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EnsemblePhase {
    pub sessions: usize,
    pub workload: String,
    pub result: PhaseResult,
    /// CPU used by each member during the phase, in cores (1.0 = one core busy), in
    /// server id order.
    pub server_cpu: Vec<f64>,
    /// The load generator's (this process's) CPU during the phase, in cores.
    pub generator_cpu: f64,
}

/// Everything measured on one ensemble.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EnsembleResult {
    pub server: String,
    pub version: String,
    /// Members' ids in order, and which one led (index into `server_cpu`).
    pub members: usize,
    pub leader_index: Option<usize>,
    /// From the first member's start until every member serves a read.
    pub start_ms: f64,
    pub phases: Vec<EnsemblePhase>,
    pub load_average_before: f64,
    pub load_average_after: f64,
}

/// The zoo.cfg of member `id`: identical for every member of every implementation but
/// for the data dir and the client port.
pub fn ensemble_cfg(
    tick_time: u64,
    data_dir: &Path,
    client_port: u16,
    members: &[(u16, u16)],
) -> String {
    let mut cfg = super::zoo_cfg(tick_time, data_dir, client_port);
    cfg.push_str("initLimit=10\nsyncLimit=5\n");
    for (i, (quorum, election)) in members.iter().enumerate() {
        let _ = writeln!(cfg, "server.{}=127.0.0.1:{quorum}:{election}", i + 1);
    }
    cfg
}

/// CPU time (user + system) a process has used so far, in seconds; 0 if unreadable.
fn cpu_seconds(pid: u32, clock_ticks: f64) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .map_or(0.0, |s| parse_stat_cpu(&s) as f64 / clock_ticks)
}

/// utime + stime (clock ticks) from a /proc/<pid>/stat line: fields 14 and 15, counted
/// after the `(comm)` field, which may itself hold spaces.
fn parse_stat_cpu(stat: &str) -> u64 {
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0;
    };
    // rest starts at field 3 (state): utime is field 14, i.e. index 11 of rest.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux unless told).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The `Mode:` of a `srvr` answer (leader, follower, standalone, ...).
pub fn srvr_mode(srvr: &str) -> Option<&str> {
    srvr.lines()
        .find_map(|l| l.strip_prefix("Mode:"))
        .map(str::trim)
}

pub struct Member {
    pub process: ServerProcess,
    pub addr: SocketAddr,
}

/// Waits until every member answers `srvr` as leader or follower and a new session on
/// each reads `/`; returns the index of the leader.
async fn wait_serving(members: &mut [Member], started: Instant) -> anyhow::Result<usize> {
    let deadline = started + Duration::from_secs(180);
    loop {
        let mut leader = None;
        let mut ready = 0;
        for (i, m) in members.iter_mut().enumerate() {
            m.process.check_alive()?;
            if let Ok(srvr) = four_letter(m.addr, "srvr").await {
                match srvr_mode(&srvr) {
                    Some("leader") => {
                        leader = Some(i);
                        ready += 1;
                    }
                    Some("follower") => ready += 1,
                    _ => {}
                }
            }
        }
        if let (Some(leader), true) = (leader, ready == members.len()) {
            let mut read = 0;
            for m in members.iter() {
                if let Ok(c) = connect(m.addr).await {
                    if c.get_data("/").await.is_ok() {
                        read += 1;
                    }
                }
            }
            if read == members.len() {
                return Ok(leader);
            }
        }
        if Instant::now() > deadline {
            bail!("the ensemble did not serve within 180 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts `--ensemble-size` members of `kind` under `run_dir` (data dirs `s<id>`, configs
/// `zoo<id>.cfg`, logs `<kind>-<id>.log`) with this tickTime and waits until all serve;
/// returns them in server id order and the index of the leader.
pub async fn start_ensemble(
    kind: ServerKind,
    args: &Args,
    run_dir: &Path,
    tick_time: u64,
) -> anyhow::Result<(Vec<Member>, usize)> {
    let n = args.ensemble_size;
    let ports: Vec<(u16, u16, u16)> = (0..n)
        .map(|_| Ok((free_port()?, free_port()?, free_port()?)))
        .collect::<anyhow::Result<_>>()?;
    let quorum: Vec<(u16, u16)> = ports.iter().map(|&(_, q, e)| (q, e)).collect();
    let started = Instant::now();
    let mut members = Vec::with_capacity(n);
    for (i, &(client, _, _)) in ports.iter().enumerate() {
        let id = i + 1;
        let data: PathBuf = run_dir.join(format!("s{id}"));
        std::fs::create_dir_all(&data)?;
        std::fs::write(data.join("myid"), format!("{id}\n"))?;
        let cfg = run_dir.join(format!("zoo{id}.cfg"));
        std::fs::write(&cfg, ensemble_cfg(tick_time, &data, client, &quorum))?;
        let name = format!("{}-{id}", kind.name());
        let process = ServerProcess::spawn_named(kind, args, run_dir, &cfg, &name, true)?;
        members.push(Member {
            process,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, client)),
        });
    }
    let leader = wait_serving(&mut members, started).await?;
    Ok((members, leader))
}

/// The whole measurement of one implementation as an ensemble.
pub async fn bench_ensemble(
    kind: ServerKind,
    run: usize,
    args: &Args,
    base: &Path,
) -> anyhow::Result<EnsembleResult> {
    let run_dir = TempDir {
        path: base.join(format!("{}-ensemble-{run}", kind.name())),
        keep: args.keep,
    };
    let mut result = EnsembleResult {
        server: kind.name().to_string(),
        members: args.ensemble_size,
        load_average_before: load_average(),
        ..EnsembleResult::default()
    };
    println!(
        "== {} as a {}-server ensemble, data in {}",
        kind.label(),
        args.ensemble_size,
        run_dir.path.display()
    );
    let started = Instant::now();
    let (mut members, leader) = start_ensemble(kind, args, &run_dir.path, args.tick_time).await?;
    result.start_ms = started.elapsed().as_secs_f64() * 1e3;
    result.leader_index = Some(leader);
    result.version = four_letter(members[0].addr, "srvr")
        .await?
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    println!(
        "   {} (serving in {:.0} ms; server {} leads)",
        result.version,
        result.start_ms,
        leader + 1
    );
    let addrs: Vec<SocketAddr> = members.iter().map(|m| m.addr).collect();
    let payload = Arc::new(vec![b'x'; args.data_bytes]);
    {
        let clients = connect_spread(
            &addrs,
            args.ensemble_sessions.iter().copied().max().unwrap_or(8),
        )
        .await?;
        load(
            &clients,
            args.ensemble_keys,
            args.load_depth,
            payload.clone(),
        )
        .await
        .context("loading the keys")?;
    }
    let ticks = clock_ticks();
    let me = std::process::id();
    for (round, &sessions) in args.ensemble_sessions.iter().enumerate() {
        let clients = connect_spread(&addrs, sessions).await?;
        let seed = args.seed.wrapping_add(1000 * (round as u64 + 1));
        if args.ensemble_warmup > 0 {
            phase(
                &clients,
                Workload::Mixed,
                args.ensemble_warmup,
                args.ensemble_keys,
                &payload,
                seed,
            )
            .await?;
        }
        for (i, w) in PHASES.into_iter().enumerate() {
            for m in members.iter_mut() {
                m.process.check_alive()?;
            }
            let before: Vec<f64> = members
                .iter()
                .map(|m| cpu_seconds(m.process.pid(), ticks))
                .collect();
            let gen_before = cpu_seconds(me, ticks);
            let r = phase(
                &clients,
                w,
                args.ensemble_seconds,
                args.ensemble_keys,
                &payload,
                seed + 1 + i as u64,
            )
            .await?;
            let secs = r.seconds.max(1e-9);
            let server_cpu: Vec<f64> = members
                .iter()
                .zip(&before)
                .map(|(m, b)| (cpu_seconds(m.process.pid(), ticks) - b) / secs)
                .collect();
            let generator_cpu = (cpu_seconds(me, ticks) - gen_before) / secs;
            println!(
                "   {sessions:>3} sessions {:<7} {:>8.0} ops/s  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  CPU {} / generator {:.0}%{}",
                w.name(),
                r.ops_per_sec,
                r.p50_ms,
                r.p99_ms,
                r.max_ms,
                cpu_cell(&server_cpu, Some(leader)),
                generator_cpu * 100.0,
                if r.errors > 0 {
                    format!("  ({} errors)", r.errors)
                } else {
                    String::new()
                }
            );
            result.phases.push(EnsemblePhase {
                sessions,
                workload: w.name().to_string(),
                result: r,
                server_cpu,
                generator_cpu,
            });
        }
    }
    for m in members.iter_mut() {
        m.process.stop(Duration::from_secs(30)).await?;
    }
    result.load_average_after = load_average();
    Ok(result)
}

/// `n` sessions, session `i` on member `i mod members`.
async fn connect_spread(addrs: &[SocketAddr], n: usize) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(n);
    for i in 0..n {
        clients.push(connect(addrs[i % addrs.len()]).await?);
    }
    Ok(clients)
}

/// Members' CPU as `L 95% 40% 38%` (the leader first, marked).
fn cpu_cell(cpu: &[f64], leader: Option<usize>) -> String {
    let mut order: Vec<usize> = (0..cpu.len()).collect();
    if let Some(l) = leader {
        order.retain(|&i| i != l);
        order.insert(0, l);
    }
    order
        .iter()
        .map(|&i| {
            let mark = if Some(i) == leader { "L " } else { "" };
            format!("{mark}{:.0}%", cpu[i] * 100.0)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The load generator is the limit when it uses this share of a core or more.
const GENERATOR_BOUND: f64 = 0.9;

/// The side-by-side table: one row per (session count, phase), a column per run, the
/// ratio of zabkeeper's mean to ZooKeeper's mean, and CPU per run.
pub fn ensemble_table(results: &[EnsembleResult]) -> String {
    let mut out = String::new();
    let Some(first) = results.first() else {
        return out;
    };
    let heads = super::column_names(results.iter().map(|r| r.server.as_str()));
    let _ = write!(out, "| {}-server ensemble |", first.members);
    for h in &heads {
        let _ = write!(out, " {h} ops/s (p99 ms) |");
    }
    out.push_str(" zabkeeper / ZooKeeper |");
    for h in &heads {
        let _ = write!(out, " {h} CPU: servers (L = leader) / generator |");
    }
    out.push('\n');
    out.push_str("|---|");
    for _ in 0..heads.len() * 2 + 1 {
        out.push_str("---:|");
    }
    out.push('\n');
    for (row, p) in first.phases.iter().enumerate() {
        let _ = write!(out, "| {} sessions, {} |", p.sessions, p.workload);
        let mut sums = [(0.0, 0u32); 2];
        let mut bound = false;
        for r in results {
            let Some(q) = r.phases.get(row) else {
                out.push_str(" - |");
                continue;
            };
            let _ = write!(
                out,
                " {} ({:.1}){} |",
                thousands(q.result.ops_per_sec),
                q.result.p99_ms,
                if q.result.errors > 0 {
                    format!(", {} errors", q.result.errors)
                } else {
                    String::new()
                }
            );
            let k = usize::from(r.server == "zabkeeper");
            sums[k].0 += q.result.ops_per_sec;
            sums[k].1 += 1;
            bound |= q.generator_cpu >= GENERATOR_BOUND;
        }
        let mean = |(s, n): (f64, u32)| if n > 0 { s / f64::from(n) } else { 0.0 };
        let (zk, zab) = (mean(sums[0]), mean(sums[1]));
        let ratio = if zk > 0.0 && zab > 0.0 {
            format!("{:.2}x", zab / zk)
        } else {
            "-".to_string()
        };
        let _ = write!(
            out,
            " {ratio}{} |",
            if bound { " (generator-bound)" } else { "" }
        );
        for r in results {
            match r.phases.get(row) {
                Some(q) => {
                    let _ = write!(
                        out,
                        " {} / {:.0}% |",
                        cpu_cell(&q.server_cpu, r.leader_index),
                        q.generator_cpu * 100.0
                    );
                }
                None => out.push_str(" - |"),
            }
        }
        out.push('\n');
    }
    out
}

/// `12,345` for 12345.4.
pub fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_from_proc_stat() {
        // comm with spaces and parentheses, as the kernel writes it.
        let stat = "1234 (java (x) y) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 40";
        assert_eq!(parse_stat_cpu(stat), 325);
        assert!(cpu_seconds(std::process::id(), clock_ticks()) >= 0.0);
        assert_eq!(parse_stat_cpu("garbage"), 0);
    }

    #[test]
    fn every_member_gets_the_same_quorum_lines() {
        let members = [(2888, 3888), (2889, 3889), (2890, 3890)];
        let a = ensemble_cfg(2000, Path::new("/d1"), 2181, &members);
        let b = ensemble_cfg(2000, Path::new("/d2"), 2182, &members);
        for line in [
            "initLimit=10",
            "syncLimit=5",
            "forceSync=yes",
            "server.1=127.0.0.1:2888:3888",
            "server.3=127.0.0.1:2890:3890",
        ] {
            assert!(a.lines().any(|l| l == line), "{line} missing from\n{a}");
        }
        let differ: Vec<_> = a.lines().zip(b.lines()).filter(|(x, y)| x != y).collect();
        assert_eq!(differ.len(), 2, "{differ:?}");
        // zabkeeper reads the very same file as an ensemble member.
        let dir = std::env::temp_dir().join(format!("bench-ens-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("myid"), "2\n").unwrap();
        let path = dir.join("zoo.cfg");
        std::fs::write(&path, ensemble_cfg(2000, &dir, 2182, &members)).unwrap();
        let parsed = zabkeeper::runtime::ServerConfig::from_file(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(parsed.my_id, 2);
        assert_eq!(parsed.servers.len(), 3);
    }

    #[test]
    fn table_has_ratio_and_leader_first_cpu() {
        let phase = |ops: f64, gen: f64| EnsemblePhase {
            sessions: 8,
            workload: "create".into(),
            result: PhaseResult {
                ops_per_sec: ops,
                p99_ms: 4.0,
                ..Default::default()
            },
            server_cpu: vec![0.1, 0.9, 0.2],
            generator_cpu: gen,
        };
        let run = |server: &str, ops: f64, gen: f64| EnsembleResult {
            server: server.into(),
            members: 3,
            leader_index: Some(1),
            phases: vec![phase(ops, gen)],
            ..Default::default()
        };
        let t = ensemble_table(&[
            run("zookeeper", 1000.0, 0.2),
            run("zabkeeper", 3000.0, 0.3),
            run("zabkeeper", 5000.0, 0.95),
            run("zookeeper", 3000.0, 0.2),
        ]);
        let row = t.lines().nth(2).unwrap();
        assert!(row.contains("| 8 sessions, create |"), "{row}");
        assert!(
            row.contains("1,000 (4.0)") && row.contains("5,000 (4.0)"),
            "{row}"
        );
        assert!(row.contains("2.00x (generator-bound)"), "{row}");
        assert!(row.contains("L 90% 10% 20% / 95%"), "{row}");
        assert!(t.lines().next().unwrap().contains("ZooKeeper #2"), "{t}");
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(
            srvr_mode("Zookeeper version: x\nMode: follower\n"),
            Some("follower")
        );
    }
}
