//! The failover half of bench-compare (`make bench-failover`): how long acknowledged writes
//! stop when an ensemble's leader fails, each implementation as a 3-server ensemble (or
//! `--ensemble-size`) on 127.0.0.1, one at a time, in the order of `--servers`.
//!
//! One run: a fresh ensemble with the fault's tickTime (the same zoo.cfg as the ensemble
//! benchmark otherwise: initLimit=10, syncLimit=5, forceSync=yes); `--failover-sessions`
//! writers, each with a session on a follower (never the leader, whose clients would lose
//! their server as well), setData in a closed loop for 2 s; then the fault:
//!
//! - `kill`: SIGKILL of the leader (tickTime `--failover-kill-tick`, 200 ms by default);
//! - `stop`: SIGSTOP of the leader, which keeps its sockets open, so the followers learn of
//!   it only from silence (tickTime `--failover-stop-tick`, 500 ms); the closest loopback
//!   gets to a leader cut off by the network without a network namespace.
//!
//! The gap is the time from the fault to the first acknowledged write that was sent after
//! it. A writer whose request fails or gets no answer within 500 ms drops its session and
//! opens a new one on the next follower, so the client library's reconnect back-off does
//! not count: the gap is the servers' (election, synchronization, session revalidation).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::ValueEnum;
use serde::Serialize;
use zookeeper_client::Client;

use super::ensemble::{srvr_mode, start_ensemble, Member};
use super::{connect_within, four_letter, Args, ServerKind, TempDir};

/// How the leader fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fault {
    /// SIGKILL: the process is gone, its sockets are closed by the kernel.
    Kill,
    /// SIGSTOP: the process is paused with its sockets open (resumed after the run).
    Stop,
}

impl Fault {
    fn describe(self) -> &'static str {
        match self {
            Fault::Kill => "leader kill -9",
            Fault::Stop => "leader SIGSTOP",
        }
    }
}

/// One measured failover.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverRun {
    pub server: String,
    pub fault: Fault,
    pub tick_time: u64,
    /// Acknowledged writes in the 2 s before the fault.
    pub writes_before: u64,
    /// From the fault to the first acknowledged write sent after it; None if none came
    /// within `--failover-timeout` seconds.
    pub gap_ms: Option<f64>,
    /// Server id of the leader that failed and of the one that followed (from `srvr`).
    pub old_leader: usize,
    pub new_leader: Option<usize>,
}

/// What the writers share with the run.
struct Shared {
    stop: AtomicBool,
    /// The fault's instant, once it happened.
    fault_at: Mutex<Option<Instant>>,
    /// Writes acknowledged before the fault, and the first acknowledged after it (among
    /// those sent after it).
    before: Mutex<u64>,
    first_after: Mutex<Option<Instant>>,
}

/// A new session on `addr` that gives up quickly (the writers move on to the next follower).
async fn quick_connect(addr: SocketAddr) -> anyhow::Result<Client> {
    connect_within(addr, Duration::from_secs(10), Duration::from_secs(1)).await
}

/// One writer: setData of its own znode in a closed loop, over the followers in turn.
async fn writer(shared: Arc<Shared>, followers: Vec<SocketAddr>, start: usize, path: String) {
    let payload = vec![b'f'; 100];
    let mut next = start;
    let mut client: Option<Client> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let c = match client.take() {
            Some(c) => c,
            None => {
                let addr = followers[next % followers.len()];
                next += 1;
                match quick_connect(addr).await {
                    Ok(c) => c,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    }
                }
            }
        };
        let sent = Instant::now();
        let acked = matches!(
            tokio::time::timeout(
                Duration::from_millis(500),
                c.set_data(&path, &payload, None)
            )
            .await,
            Ok(Ok(_))
        );
        if !acked {
            // Drop the session's client (its library would back off before reconnecting).
            continue;
        }
        let fault_at = *shared.fault_at.lock().unwrap();
        match fault_at {
            None => *shared.before.lock().unwrap() += 1,
            Some(at) if sent >= at => {
                let mut first = shared.first_after.lock().unwrap();
                if first.is_none() {
                    *first = Some(Instant::now());
                }
            }
            Some(_) => {}
        }
        client = Some(c);
    }
}

/// The leader's server id (1-based) among `members`, from `srvr`.
async fn leader_of(members: &[Member], skip: usize) -> Option<usize> {
    for (i, m) in members.iter().enumerate() {
        if i == skip {
            continue;
        }
        if let Ok(srvr) = four_letter(m.addr, "srvr").await {
            if srvr_mode(&srvr) == Some("leader") {
                return Some(i + 1);
            }
        }
    }
    None
}

/// One failover of `kind`'s ensemble under `fault`.
pub async fn failover_run(
    kind: ServerKind,
    fault: Fault,
    run: usize,
    args: &Args,
    base: &Path,
) -> anyhow::Result<FailoverRun> {
    let tick_time = match fault {
        Fault::Kill => args.failover_kill_tick,
        Fault::Stop => args.failover_stop_tick,
    };
    let run_dir = TempDir {
        path: base.join(format!("{}-failover-{run}", kind.name())),
        keep: args.keep,
    };
    std::fs::create_dir_all(&run_dir.path)?;
    let (mut members, leader) = start_ensemble(kind, args, &run_dir.path, tick_time).await?;
    let followers: Vec<SocketAddr> = members
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != leader)
        .map(|(_, m)| m.addr)
        .collect();
    {
        let c = quick_connect(followers[0]).await?;
        for w in 0..args.failover_sessions {
            c.create(
                &format!("/failover-{w}"),
                b"",
                &zookeeper_client::CreateMode::Persistent
                    .with_acls(zookeeper_client::Acls::anyone_all()),
            )
            .await
            .context("creating the writers' znodes")?;
        }
    }
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        fault_at: Mutex::new(None),
        before: Mutex::new(0),
        first_after: Mutex::new(None),
    });
    let writers: Vec<_> = (0..args.failover_sessions)
        .map(|w| {
            tokio::spawn(writer(
                shared.clone(),
                followers.clone(),
                w,
                format!("/failover-{w}"),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    match fault {
        Fault::Kill => members[leader].process.kill()?,
        Fault::Stop => members[leader].process.signal("-STOP")?,
    }
    // The fault counts from when the signal was sent (`kill` has exited), not from before
    // it: a write sent in between may still be acknowledged by the leader.
    let at = Instant::now();
    *shared.fault_at.lock().unwrap() = Some(at);
    let deadline = at + Duration::from_secs(args.failover_timeout);
    let first = loop {
        if let Some(t) = *shared.first_after.lock().unwrap() {
            break Some(t);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    shared.stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = tokio::time::timeout(Duration::from_secs(2), w).await;
    }
    let new_leader = leader_of(&members, leader).await;
    if fault == Fault::Stop {
        members[leader].process.signal("-CONT")?;
    }
    let writes_before = *shared.before.lock().unwrap();
    for (i, m) in members.iter_mut().enumerate() {
        if i != leader || fault == Fault::Stop {
            m.process.check_alive()?;
        }
        m.process.stop(Duration::from_secs(30)).await?;
    }
    if writes_before == 0 {
        bail!(
            "{}: no write was acknowledged before the fault",
            kind.label()
        );
    }
    let gap_ms = first.map(|t| (t - at).as_secs_f64() * 1e3);
    println!(
        "   {:<9} {} (tickTime {tick_time}): writes resumed after {}; server {} led, then {}",
        kind.label(),
        fault.describe(),
        gap_ms.map_or("never".to_string(), |g| format!("{g:.0} ms")),
        leader + 1,
        new_leader.map_or("none".to_string(), |l| format!("server {l}"))
    );
    Ok(FailoverRun {
        server: kind.name().to_string(),
        fault,
        tick_time,
        writes_before,
        gap_ms,
        old_leader: leader + 1,
        new_leader,
    })
}

/// min / median / max of the gaps (ms) of the runs that resumed, and how many did not.
fn spread(gaps: &[Option<f64>]) -> Option<(f64, f64, f64, usize)> {
    let mut got: Vec<f64> = gaps.iter().flatten().copied().collect();
    let missing = gaps.len() - got.len();
    if got.is_empty() {
        return None;
    }
    got.sort_by(f64::total_cmp);
    let n = got.len();
    let median = if n % 2 == 1 {
        got[n / 2]
    } else {
        (got[n / 2 - 1] + got[n / 2]) / 2.0
    };
    Some((got[0], median, got[n - 1], missing))
}

/// The side-by-side table: a row per fault, min/median/max per implementation and the
/// ratio of the medians.
pub fn failover_table(runs: &[FailoverRun], faults: &[Fault]) -> String {
    let mut out = String::new();
    out.push_str(
        "| fault | ZooKeeper gap ms min / median / max (runs) | zabkeeper gap ms min / median / max (runs) | zabkeeper median / ZooKeeper median |\n",
    );
    out.push_str("|---|---:|---:|---:|\n");
    for &fault in faults {
        let tick = runs
            .iter()
            .find(|r| r.fault == fault)
            .map_or(0, |r| r.tick_time);
        let _ = write!(out, "| {} (tickTime {tick}) |", fault.describe());
        let mut medians = [None, None];
        for (k, server) in ["zookeeper", "zabkeeper"].iter().enumerate() {
            let gaps: Vec<Option<f64>> = runs
                .iter()
                .filter(|r| r.fault == fault && r.server == *server)
                .map(|r| r.gap_ms)
                .collect();
            match spread(&gaps) {
                Some((min, median, max, missing)) => {
                    medians[k] = Some(median);
                    let _ = write!(
                        out,
                        " {min:.0} / {median:.0} / {max:.0} ({}{}) |",
                        gaps.len(),
                        if missing > 0 {
                            format!(", {missing} never resumed")
                        } else {
                            String::new()
                        }
                    );
                }
                None if gaps.is_empty() => out.push_str(" - |"),
                None => {
                    let _ = write!(out, " never resumed ({}) |", gaps.len());
                }
            }
        }
        match medians {
            [Some(zk), Some(zab)] if zk > 0.0 => {
                let _ = writeln!(out, " {:.2}x |", zab / zk);
            }
            _ => out.push_str(" - |\n"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(server: &str, fault: Fault, gap: Option<f64>) -> FailoverRun {
        FailoverRun {
            server: server.to_string(),
            fault,
            tick_time: 200,
            writes_before: 10,
            gap_ms: gap,
            old_leader: 3,
            new_leader: Some(2),
        }
    }

    #[test]
    fn spread_takes_the_median_of_the_runs_that_resumed() {
        assert_eq!(
            spread(&[Some(30.0), Some(10.0), None, Some(20.0)]),
            Some((10.0, 20.0, 30.0, 1))
        );
        assert_eq!(spread(&[Some(4.0), Some(2.0)]), Some((2.0, 3.0, 4.0, 0)));
        assert_eq!(spread(&[None]), None);
    }

    #[test]
    fn the_table_has_a_row_per_fault_and_the_ratio_of_medians() {
        let runs = vec![
            run("zookeeper", Fault::Kill, Some(1000.0)),
            run("zabkeeper", Fault::Kill, Some(500.0)),
            run("zabkeeper", Fault::Kill, Some(700.0)),
            run("zookeeper", Fault::Kill, Some(1200.0)),
            run("zookeeper", Fault::Stop, Some(3000.0)),
            run("zabkeeper", Fault::Stop, None),
        ];
        let t = failover_table(&runs, &[Fault::Kill, Fault::Stop]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert_eq!(
            lines[2],
            "| leader kill -9 (tickTime 200) | 1000 / 1100 / 1200 (2) | 500 / 600 / 700 (2) | 0.55x |"
        );
        assert_eq!(
            lines[3],
            "| leader SIGSTOP (tickTime 200) | 3000 / 3000 / 3000 (1) | never resumed (1) | - |"
        );
    }
}
