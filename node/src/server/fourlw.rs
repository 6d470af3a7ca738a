//! Four-letter words on the client port, in ZooKeeper 3.8's output format (monitoring
//! tools parse `mntr`, `srvr`, `cons`).
//!
//! A pure formatter: the pipeline takes a [`Status`] snapshot of what a word needs
//! ([`needs`] says which parts; the runtime reads what only the host knows, such as file
//! descriptors and directory sizes, into [`HostFacts`]) and [`answer`] turns it into
//! text. The words that reset counters (`srst`, `crst`) are carried out by the pipeline;
//! this module only words their answers.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;

use crate::config::ServerConfig;
use crate::core::Role;

use super::stats::{ServerStats, Summary};
use super::{ConnId, HostFacts, Pipeline};
use crate::types::{SessionId, Zxid};

/// The version string reported to clients and tools.
pub fn version() -> String {
    format!(
        "3.8.0-zabkeeper-{}, built on unknown",
        env!("CARGO_PKG_VERSION")
    )
}

/// ZooKeeper's default trace mask (`gtmk`): client ping, request, and the two
/// session-related masks (`ZooTrace`'s default of 306).
pub const DEFAULT_TRACE_MASK: u64 = 306;

/// One client connection as `cons` and `stat` list it.
#[derive(Clone, Debug, Default)]
pub struct ConnStatus {
    pub remote: Option<SocketAddr>,
    /// Requests taken but not answered yet.
    pub queued: usize,
    pub received: u64,
    pub sent: u64,
    /// 0 while the connection has no session (the four-letter word's own connection).
    pub session: SessionId,
    pub last_op: &'static str,
    /// When the connection was established (ms since the epoch).
    pub established_ms: i64,
    pub timeout_ms: i32,
    pub last_cxid: i32,
    pub last_zxid: Zxid,
    /// When the last reply was sent (a monotonic ms reading, as ZooKeeper's).
    pub last_response_ms: i64,
    pub last_latency_ms: u64,
    pub latency: Summary,
}

/// The leader's view of its learners.
#[derive(Clone, Copy, Debug, Default)]
pub struct LearnerStatus {
    pub learners: usize,
    pub synced_followers: usize,
    pub synced_observers: usize,
}

/// What a four-letter word reports, taken from the processor in one step.
#[derive(Clone, Debug, Default)]
pub struct Status {
    pub mode: &'static str,
    /// Whether the server serves clients (an ensemble member has a quorum and is synced,
    /// or serves read-only clients).
    pub serving: bool,
    /// Whether it serves read-only clients only (read-only mode).
    pub read_only: bool,
    pub zxid: Zxid,
    /// Znodes as ZooKeeper counts them (`zk_znode_count`, `Node count`): one more than
    /// there are, the root counted twice.
    pub node_count: usize,
    pub watch_count: usize,
    /// Bytes of the watched paths, one count per watch (`zk_watch_bytes`).
    pub watch_bytes: usize,
    pub ephemerals_count: usize,
    pub approximate_data_size: i64,
    pub global_sessions: usize,
    /// Local sessions (`localSessionsEnabled`, read-only mode) this server holds.
    pub local_sessions: usize,
    pub stats: ServerStats,
    /// Client connections, the asking connection last (as ZooKeeper lists it).
    pub conns: Vec<ConnStatus>,
    pub uptime_ms: i64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    /// Bytes of snapshot files and of log files (`dirs`).
    pub datadir_size: u64,
    pub logdir_size: u64,
    /// Leader only.
    pub learners: Option<LearnerStatus>,
    /// Voting members of the ensemble (`zk_quorum_size`); 0 standalone.
    pub quorum_size: usize,
    /// Ensemble members only: current and accepted epoch.
    pub epochs: Option<(u32, u32)>,
    /// The leader this server follows or is (ensemble members in broadcast).
    pub leader: Option<u64>,
    /// The tree's digest at `zxid`.
    pub digest: u64,
    /// The trace mask (`gtmk`; the AdminServer's `set_trace_mask` sets it).
    pub trace_mask: i64,
    /// The last snapshot written or loaded: zxid, seconds since the epoch.
    pub last_snapshot: Option<(Zxid, i64)>,
    /// Leader only: the observers in broadcast.
    pub synced_observers: Vec<u64>,
    /// The runtime's fsync, snapshot and group-commit summaries.
    pub storage: super::stats::StorageStats,
    /// `wchc` / `wchs`: each session's watched paths. Filled only for those words.
    pub watches_by_session: BTreeMap<SessionId, Vec<String>>,
    /// `wchp` / `wchs`: each path's watching sessions. Filled only for those words.
    pub watches_by_path: BTreeMap<String, Vec<SessionId>>,
    /// `dump`: every session and its timeout. Filled only for `dump`.
    pub sessions: Vec<(SessionId, i32)>,
    /// `dump`: ephemerals by owner. Filled only for `dump`.
    pub ephemerals: BTreeMap<SessionId, Vec<String>>,
}

/// Which expensive parts of a [`Status`] a word needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub watches: bool,
    pub dump: bool,
    pub dirs: bool,
    /// Open and allowed file descriptors (read from /proc).
    pub fds: bool,
}

/// What [`answer`] will read for `cmd`.
pub fn needs(cmd: &str) -> Needs {
    Needs {
        watches: matches!(cmd, "wchs" | "wchc" | "wchp"),
        dump: cmd == "dump",
        dirs: cmd == "dirs",
        fds: cmd == "mntr",
    }
}

/// Words answered even while an ensemble member is not serving.
fn answered_when_not_serving(cmd: &str) -> bool {
    matches!(
        cmd,
        "ruok" | "conf" | "envi" | "isro" | "dirs" | "gtmk" | "srst" | "crst"
    )
}

/// Answers one four-letter word from `status`, or explains that it is not allowed.
pub fn answer(config: &ServerConfig, status: &Status, cmd: &str) -> String {
    if !config.four_letter_word_allowed(cmd) {
        return format!("{cmd} is not executed because it is not in the whitelist.\n");
    }
    if !status.serving && !answered_when_not_serving(cmd) {
        // ZooKeeper's answer while it has no quorum (or is still syncing).
        return "This ZooKeeper instance is not currently serving requests\n".to_string();
    }
    let mut out = String::new();
    match cmd {
        "ruok" => out.push_str("imok"),
        // ZooKeeper's answer: "null" while no server (read-write or read-only) runs.
        "isro" => out.push_str(match (status.read_only, status.serving) {
            (true, _) => "ro",
            (false, true) => "rw",
            (false, false) => "null",
        }),
        "gtmk" => {
            let _ = writeln!(out, "{}", status.trace_mask);
        }
        "srvr" | "stat" => srvr(status, cmd == "stat", &mut out),
        "mntr" => {
            for (k, v) in mntr(status) {
                let _ = writeln!(out, "{k}\t{v}");
            }
        }
        "conf" => conf(config, &mut out),
        "cons" => {
            for c in &status.conns {
                cons_line(c, true, &mut out);
            }
            out.push('\n');
        }
        "envi" => {
            out.push_str("Environment:\n");
            let _ = writeln!(out, "zookeeper.version={}", version());
            let _ = writeln!(out, "host.name={}", config.client_port_address);
            let _ = writeln!(out, "os.name={}", std::env::consts::OS);
            let _ = writeln!(out, "os.arch={}", std::env::consts::ARCH);
            if let Ok(dir) = std::env::current_dir() {
                let _ = writeln!(out, "user.dir={}", dir.display());
            }
        }
        "wchs" => {
            let _ = writeln!(
                out,
                "{} connections watching {} paths",
                status.watches_by_session.len(),
                status.watches_by_path.len()
            );
            let _ = writeln!(out, "Total watches:{}", status.watch_count);
        }
        "wchc" => {
            for (session, paths) in &status.watches_by_session {
                let _ = writeln!(out, "0x{session:x}");
                for path in paths {
                    let _ = writeln!(out, "\t{path}");
                }
            }
            out.push('\n');
        }
        "wchp" => {
            for (path, sessions) in &status.watches_by_path {
                let _ = writeln!(out, "{path}");
                for session in sessions {
                    let _ = writeln!(out, "\t0x{session:x}");
                }
            }
        }
        "dump" => {
            out.push_str("SessionTracker dump:\n");
            let _ = writeln!(out, "Global Sessions({}):", status.sessions.len());
            for (id, timeout) in &status.sessions {
                let _ = writeln!(out, "0x{id:x}\t{timeout}ms");
            }
            out.push_str("ephemeral nodes dump:\n");
            let _ = writeln!(
                out,
                "Sessions with Ephemerals ({}):",
                status.ephemerals.len()
            );
            for (session, paths) in &status.ephemerals {
                let _ = writeln!(out, "0x{session:x}:");
                for path in paths {
                    let _ = writeln!(out, "\t{path}");
                }
            }
        }
        "dirs" => {
            let _ = writeln!(out, "datadir_size: {}", status.datadir_size);
            let _ = writeln!(out, "logdir_size: {}", status.logdir_size);
        }
        "crst" => out.push_str("Connection stats reset.\n"),
        "srst" => out.push_str("Server stats reset.\n"),
        _ => {
            let _ = writeln!(out, "{cmd} is not supported by zabkeeper.");
        }
    }
    out
}

/// One `cons` (full) or `stat` (short) line, as ZooKeeper's `ServerCnxn.dumpConnectionInfo`.
fn cons_line(c: &ConnStatus, full: bool, out: &mut String) {
    let remote = c.remote.map(|r| r.to_string()).unwrap_or_default();
    let _ = write!(
        out,
        " /{remote}[{}](queued={},recved={},sent={}",
        u8::from(c.session != 0),
        c.queued,
        c.received,
        c.sent
    );
    if full && c.session != 0 {
        let _ = write!(
            out,
            ",sid=0x{:x},lop={},est={},to={},lcxid=0x{:x},lzxid=0x{:x},lresp={},llat={},minlat={},avglat={},maxlat={}",
            c.session,
            c.last_op,
            c.established_ms,
            c.timeout_ms,
            c.last_cxid,
            c.last_zxid,
            c.last_response_ms,
            c.last_latency_ms,
            c.latency.min(),
            c.latency.avg().round() as u64,
            c.latency.max()
        );
    }
    out.push_str(")\n");
}

fn srvr(s: &Status, with_clients: bool, out: &mut String) {
    let _ = writeln!(out, "Zookeeper version: {}", version());
    if s.read_only {
        out.push_str("READ-ONLY mode; serving only read-only clients\n");
    }
    if with_clients {
        out.push_str("Clients:\n");
        for c in &s.conns {
            cons_line(c, false, out);
        }
        out.push('\n');
    }
    let l = &s.stats.latency;
    let _ = writeln!(
        out,
        "Latency min/avg/max: {}/{:.4}/{}",
        l.min(),
        l.avg(),
        l.max()
    );
    let _ = writeln!(out, "Received: {}", s.stats.received);
    let _ = writeln!(out, "Sent: {}", s.stats.sent);
    let _ = writeln!(out, "Connections: {}", s.conns.len());
    let _ = writeln!(out, "Outstanding: {}", outstanding(s));
    let _ = writeln!(out, "Zxid: 0x{:x}", s.zxid);
    let _ = writeln!(out, "Mode: {}", s.mode);
    let _ = writeln!(out, "Node count: {}", s.node_count);
    if let Some(l) = s.learners {
        let _ = writeln!(out, "Proposal sizes last/min/max: -1/-1/-1");
        let _ = writeln!(out, "Followers: {}", l.learners);
    }
}

fn outstanding(s: &Status) -> usize {
    s.conns.iter().map(|c| c.queued).sum()
}

/// `mntr`'s keys and values: ZooKeeper 3.8's server-level keys (its per-processor
/// summaries are left out), then the ensemble's.
pub fn mntr(s: &Status) -> Vec<(&'static str, String)> {
    let opt = |v: Option<u64>| v.map_or("-1".to_string(), |v| v.to_string());
    let r = &s.stats.response_size;
    let mut kv: Vec<(&'static str, String)> = vec![
        ("zk_version", version()),
        ("zk_server_state", s.mode.to_string()),
        ("zk_ephemerals_count", s.ephemerals_count.to_string()),
        ("zk_num_alive_connections", s.conns.len().to_string()),
        ("zk_avg_latency", format!("{:.4}", s.stats.latency.avg())),
        ("zk_outstanding_requests", outstanding(s).to_string()),
        ("zk_znode_count", s.node_count.to_string()),
        ("zk_global_sessions", s.global_sessions.to_string()),
        (
            "zk_non_mtls_remote_conn_count",
            s.conns
                .iter()
                .filter(|c| c.remote.is_some_and(|r| !r.ip().is_loopback()))
                .count()
                .to_string(),
        ),
        ("zk_last_client_response_size", r.last.to_string()),
        ("zk_packets_sent", s.stats.sent.to_string()),
        ("zk_packets_received", s.stats.received.to_string()),
        ("zk_max_client_response_size", r.max.to_string()),
        ("zk_connection_drop_probability", "0.0".into()),
        ("zk_watch_count", s.watch_count.to_string()),
        ("zk_auth_failed_count", s.stats.auth_failed.to_string()),
        ("zk_min_latency", s.stats.latency.min().to_string()),
        ("zk_max_file_descriptor_count", opt(s.max_fds)),
        (
            "zk_approximate_data_size",
            s.approximate_data_size.to_string(),
        ),
        ("zk_open_file_descriptor_count", opt(s.open_fds)),
        ("zk_local_sessions", s.local_sessions.to_string()),
        ("zk_uptime", s.uptime_ms.to_string()),
        ("zk_max_latency", s.stats.latency.max().to_string()),
        ("zk_outstanding_tls_handshake", "0".into()),
        ("zk_min_client_response_size", r.min.to_string()),
        (
            "zk_non_mtls_local_conn_count",
            s.conns
                .iter()
                .filter(|c| c.remote.is_some_and(|r| r.ip().is_loopback()))
                .count()
                .to_string(),
        ),
        ("zk_watch_bytes", s.watch_bytes.to_string()),
        ("zk_throttled_ops", "0".into()),
        ("zk_connection_rejected", "0".into()),
        ("zk_looking_count", "0".into()),
        ("zk_last_zxid", format!("0x{:x}", s.zxid)),
    ];
    // ZooKeeper's AvgMinMaxCounter summaries for what zabkeeper measures the same way.
    let summaries = [
        (
            s.storage.fsync_ms,
            [
                "zk_avg_fsynctime",
                "zk_min_fsynctime",
                "zk_max_fsynctime",
                "zk_cnt_fsynctime",
                "zk_sum_fsynctime",
            ],
        ),
        (
            s.storage.snapshot_ms,
            [
                "zk_avg_snapshottime",
                "zk_min_snapshottime",
                "zk_max_snapshottime",
                "zk_cnt_snapshottime",
                "zk_sum_snapshottime",
            ],
        ),
        (
            s.storage.batch_txns,
            [
                "zk_avg_sync_processor_batch_size",
                "zk_min_sync_processor_batch_size",
                "zk_max_sync_processor_batch_size",
                "zk_cnt_sync_processor_batch_size",
                "zk_sum_sync_processor_batch_size",
            ],
        ),
    ];
    for (m, [avg, min, max, cnt, sum]) in summaries {
        kv.push((avg, format!("{:?}", m.avg())));
        kv.push((min, m.min().to_string()));
        kv.push((max, m.max().to_string()));
        kv.push((cnt, m.count().to_string()));
        kv.push((sum, m.sum().to_string()));
    }
    if let Some(l) = s.learners {
        kv.push(("zk_learners", l.learners.to_string()));
        // Before 3.6 ZooKeeper called this zk_followers; older tools still read it.
        kv.push(("zk_followers", l.learners.to_string()));
        kv.push(("zk_synced_followers", l.synced_followers.to_string()));
        kv.push(("zk_synced_non_voting_followers", "0".into()));
        kv.push(("zk_synced_observers", l.synced_observers.to_string()));
        kv.push(("zk_pending_syncs", "0".into()));
    }
    // A read-only server is no quorum member: ZooKeeper prints none of these for it.
    if let Some((current, accepted)) = s.epochs.filter(|_| !s.read_only) {
        // Only a serving ensemble member gets here: it is in broadcast.
        let state = match s.mode {
            "leader" => "leading",
            "follower" => "following",
            _ => "observing",
        };
        kv.push(("zk_peer_state", format!("{state} - broadcast")));
        kv.push(("zk_quorum_size", s.quorum_size.to_string()));
        kv.push(("zk_current_epoch", current.to_string()));
        kv.push(("zk_accepted_epoch", accepted.to_string()));
    }
    kv
}

fn conf(c: &ServerConfig, out: &mut String) {
    let _ = writeln!(out, "clientPort={}", c.client_port);
    let _ = writeln!(out, "clientPortAddress={}", c.client_port_address);
    let _ = writeln!(out, "dataDir={}/version-2", c.data_dir.display());
    let _ = writeln!(out, "dataLogDir={}/version-2", c.data_log_dir.display());
    let _ = writeln!(out, "tickTime={}", c.tick_time_ms);
    let _ = writeln!(out, "maxClientCnxns={}", c.max_client_cnxns);
    let _ = writeln!(out, "minSessionTimeout={}", c.min_session_timeout_ms);
    let _ = writeln!(out, "maxSessionTimeout={}", c.max_session_timeout_ms);
    let _ = writeln!(out, "serverId={}", c.my_id);
    if !c.servers.is_empty() {
        let _ = writeln!(out, "initLimit={}", c.init_limit);
        let _ = writeln!(out, "syncLimit={}", c.sync_limit);
        for s in &c.servers {
            let role = if s.observer {
                "observer"
            } else {
                "participant"
            };
            let _ = writeln!(
                out,
                "server.{}={}:{}:{}:{}",
                s.id, s.host, s.quorum_port, s.election_port, role
            );
        }
    }
}

impl Pipeline {
    /// What the four-letter words report, taken now; `remote` is the asking connection
    /// (a four-letter word's, which ZooKeeper counts and lists among the connections;
    /// none for the AdminServer's HTTP requests).
    pub(super) fn status(
        &self,
        needs: Needs,
        remote: Option<SocketAddr>,
        host: HostFacts,
    ) -> Status {
        let session_of = |conn: &ConnId| self.conns.get(conn).map(|c| c.session).unwrap_or(0);
        let mut conns: Vec<ConnStatus> = self
            .conns
            .values()
            .map(|c| ConnStatus {
                remote: Some(c.remote),
                queued: c.pending.len(),
                received: c.received,
                sent: c.sent,
                session: c.session,
                last_op: c.last_op,
                established_ms: c.established_ms,
                timeout_ms: c.timeout_ms,
                last_cxid: c.last_cxid,
                last_zxid: c.last_zxid,
                last_response_ms: c.last_response_ms,
                last_latency_ms: c.last_latency_ms,
                latency: c.latency,
            })
            .collect();
        if let Some(remote) = remote {
            conns.push(ConnStatus {
                remote: Some(remote),
                received: 1,
                ..Default::default()
            });
        }
        let ensemble = !self.config.servers.is_empty();
        let zab = &self.zab;
        let mut status = Status {
            mode: self.mode_name(),
            serving: zab.is_serving() || self.read_only,
            read_only: self.read_only,
            zxid: self.tree.last_processed_zxid(),
            // ZooKeeper's count: its node map holds the root twice (as "" and "/").
            node_count: self.tree.node_count() + 1,
            watch_count: self.watches.count(),
            watch_bytes: self.watches.watched_path_bytes(),
            ephemerals_count: self.tree.ephemerals_count(),
            approximate_data_size: self.tree.approximate_data_size(),
            global_sessions: self.sessions.len(),
            local_sessions: self.local.len(),
            stats: self.stats.clone(),
            conns,
            uptime_ms: self.now - self.started_ms,
            open_fds: host.open_fds,
            max_fds: host.max_fds,
            datadir_size: host.datadir_size,
            logdir_size: host.logdir_size,
            learners: zab.learner_counts().filter(|_| ensemble).map(
                |(learners, synced_followers, synced_observers)| LearnerStatus {
                    learners,
                    synced_followers,
                    synced_observers,
                },
            ),
            quorum_size: self.config.servers.iter().filter(|s| !s.observer).count(),
            epochs: ensemble.then(|| (zab.current_epoch(), zab.accepted_epoch())),
            leader: match zab.role() {
                _ if !ensemble || !zab.is_serving() => None,
                Role::Leading => Some(self.config.my_id),
                Role::Following { leader } | Role::Observing { leader } => Some(leader),
                Role::Looking => None,
            },
            digest: self.tree.digest(),
            trace_mask: self.trace_mask,
            last_snapshot: host.last_snapshot,
            storage: host.storage,
            synced_observers: if ensemble {
                zab.synced_observers()
            } else {
                Vec::new()
            },
            ..Default::default()
        };
        if needs.watches {
            for (conn, paths) in self.watches.by_session() {
                status.watches_by_session.insert(session_of(&conn), paths);
            }
            for (path, watchers) in self.watches.by_path() {
                status
                    .watches_by_path
                    .insert(path, watchers.iter().map(session_of).collect());
            }
        }
        if needs.dump {
            status.sessions = self.sessions.timeouts();
            status.ephemerals = self.tree.all_ephemerals();
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServerConfig {
        let mut c = ServerConfig::standalone(2181, "/tmp/unused");
        c.four_letter_words = vec!["*".into()];
        c
    }

    fn serving() -> Status {
        Status {
            mode: "standalone",
            serving: true,
            ..Status::default()
        }
    }

    #[test]
    fn cons_lists_sessions_in_full_and_the_asking_connection_short() {
        let mut latency = Summary::default();
        latency.record(1);
        latency.record(3);
        let s = Status {
            conns: vec![
                ConnStatus {
                    remote: Some("127.0.0.1:5000".parse().unwrap()),
                    received: 2,
                    sent: 2,
                    session: 0x1000001fa140005,
                    last_op: "GETD",
                    established_ms: 1796164374407,
                    timeout_ms: 10000,
                    last_cxid: 1,
                    last_zxid: 0x17,
                    last_response_ms: 1796164377000,
                    last_latency_ms: 3,
                    latency,
                    ..ConnStatus::default()
                },
                ConnStatus {
                    remote: Some("127.0.0.1:5001".parse().unwrap()),
                    received: 1,
                    ..ConnStatus::default()
                },
            ],
            ..serving()
        };
        assert_eq!(
            answer(&config(), &s, "cons"),
            " /127.0.0.1:5000[1](queued=0,recved=2,sent=2,sid=0x1000001fa140005,lop=GETD,\
             est=1796164374407,to=10000,lcxid=0x1,lzxid=0x17,lresp=1796164377000,llat=3,\
             minlat=1,avglat=2,maxlat=3)\n /127.0.0.1:5001[0](queued=0,recved=1,sent=0)\n\n"
        );
        let stat = answer(&config(), &s, "stat");
        assert!(stat.contains("Clients:\n /127.0.0.1:5000[1](queued=0,recved=2,sent=2)\n"));
        assert!(stat.contains("Connections: 2\n"), "{stat}");
    }

    #[test]
    fn mntr_has_zookeepers_server_keys_and_the_leaders() {
        let s = Status {
            mode: "leader",
            learners: Some(LearnerStatus {
                learners: 2,
                synced_followers: 2,
                synced_observers: 0,
            }),
            epochs: Some((3, 3)),
            quorum_size: 3,
            open_fds: Some(38),
            max_fds: Some(20000),
            uptime_ms: 6841,
            ..serving()
        };
        let text = answer(&config(), &s, "mntr");
        for want in [
            "zk_open_file_descriptor_count\t38\n",
            "zk_max_file_descriptor_count\t20000\n",
            "zk_uptime\t6841\n",
            "zk_local_sessions\t0\n",
            "zk_auth_failed_count\t0\n",
            "zk_last_client_response_size\t-1\n",
            "zk_watch_bytes\t0\n",
            "zk_connection_drop_probability\t0.0\n",
            "zk_learners\t2\n",
            "zk_quorum_size\t3\n",
            "zk_synced_followers\t2\n",
            "zk_peer_state\tleading - broadcast\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        let keys: Vec<&str> = text
            .lines()
            .map(|l| l.split('\t').next().unwrap())
            .collect();
        let mut unique = keys.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "a key twice: {keys:?}");
    }

    #[test]
    fn mntr_reports_the_storage_summaries_under_zookeepers_names() {
        let mut s = serving();
        s.storage.fsync_ms.record(1);
        s.storage.fsync_ms.record(4);
        s.storage.batch_txns.record(10);
        s.storage.batch_txns.record(30);
        let out = answer(&config(), &s, "mntr");
        for line in [
            "zk_avg_fsynctime\t2.5\n",
            "zk_min_fsynctime\t1\n",
            "zk_max_fsynctime\t4\n",
            "zk_cnt_fsynctime\t2\n",
            "zk_sum_fsynctime\t5\n",
            "zk_avg_sync_processor_batch_size\t20.0\n",
            "zk_cnt_snapshottime\t0\n",
            "zk_avg_snapshottime\t0.0\n",
        ] {
            assert!(out.contains(line), "{line:?} missing from\n{out}");
        }
    }

    #[test]
    fn not_serving_answers_only_the_words_zookeeper_answers() {
        let s = Status {
            serving: false,
            trace_mask: DEFAULT_TRACE_MASK as i64,
            ..serving()
        };
        assert!(answer(&config(), &s, "mntr").contains("not currently serving"));
        assert_eq!(answer(&config(), &s, "ruok"), "imok");
        assert_eq!(answer(&config(), &s, "gtmk"), "306\n");
        let mut c = config();
        c.four_letter_words = vec!["ruok".into()];
        assert!(answer(&c, &serving(), "dump").contains("not in the whitelist"));
    }

    #[test]
    fn dirs_reports_the_sizes_the_runtime_read() {
        let s = Status {
            datadir_size: 123,
            logdir_size: 45,
            ..serving()
        };
        assert_eq!(
            answer(&config(), &s, "dirs"),
            "datadir_size: 123\nlogdir_size: 45\n"
        );
    }
}
