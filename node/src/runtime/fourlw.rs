//! Four-letter words on the client port, in ZooKeeper 3.8's output format
//! (monitoring tools parse `mntr` and `srvr`).

use std::fmt::Write;

use super::processor::Processor;

/// The version string reported to clients and tools.
pub fn version() -> String {
    format!(
        "3.8.0-zabkeeper-{}, built on unknown",
        env!("CARGO_PKG_VERSION")
    )
}

/// Answers one four-letter word, or explains that it is not allowed.
pub fn answer(p: &mut Processor, cmd: &str) -> String {
    if !p.config.four_letter_word_allowed(cmd) {
        return format!("{cmd} is not executed because it is not in the whitelist.\n");
    }
    let mode = p.mode_name();
    let mut out = String::new();
    let serving = p.zab().is_none_or(|z| z.is_serving());
    if !serving && !matches!(cmd, "ruok" | "conf" | "envi" | "isro" | "dirs") {
        // ZooKeeper's answer while it has no quorum (or is still syncing).
        return "This ZooKeeper instance is not currently serving requests\n".to_string();
    }
    match cmd {
        "ruok" => out.push_str("imok"),
        "isro" => out.push_str("rw"),
        "srvr" | "stat" => {
            let _ = writeln!(out, "Zookeeper version: {}", version());
            if cmd == "stat" {
                out.push_str("Clients:\n");
                for c in p.conns.values() {
                    let _ = writeln!(
                        out,
                        " /{}[1](queued=0,recved={},sent={})",
                        c.remote, c.received, c.sent
                    );
                }
                out.push('\n');
            }
            let l = &p.stats.latency;
            let _ = writeln!(
                out,
                "Latency min/avg/max: {}/{:.4}/{}",
                l.min(),
                l.avg(),
                l.max()
            );
            let _ = writeln!(out, "Received: {}", p.stats.received);
            let _ = writeln!(out, "Sent: {}", p.stats.sent);
            let _ = writeln!(out, "Connections: {}", p.conns.len());
            let _ = writeln!(out, "Outstanding: 0");
            let _ = writeln!(out, "Zxid: 0x{:x}", p.tree.last_processed_zxid());
            let _ = writeln!(out, "Mode: {mode}");
            let _ = writeln!(out, "Node count: {}", p.tree.node_count());
            if let Some((followers, _, _)) = p.zab().and_then(|z| z.learner_counts()) {
                let _ = writeln!(out, "Proposal sizes last/min/max: -1/-1/-1");
                let _ = writeln!(out, "Followers: {followers}");
            }
        }
        "mntr" => {
            let kv: Vec<(&str, String)> = vec![
                ("zk_version", version()),
                ("zk_server_state", mode.to_string()),
                ("zk_avg_latency", format!("{:.4}", p.stats.latency.avg())),
                ("zk_max_latency", p.stats.latency.max().to_string()),
                ("zk_min_latency", p.stats.latency.min().to_string()),
                ("zk_packets_received", p.stats.received.to_string()),
                ("zk_packets_sent", p.stats.sent.to_string()),
                ("zk_num_alive_connections", p.conns.len().to_string()),
                ("zk_outstanding_requests", "0".into()),
                ("zk_znode_count", p.tree.node_count().to_string()),
                ("zk_watch_count", p.watches.count().to_string()),
                (
                    "zk_ephemerals_count",
                    p.tree
                        .all_ephemerals()
                        .values()
                        .map(Vec::len)
                        .sum::<usize>()
                        .to_string(),
                ),
                (
                    "zk_approximate_data_size",
                    p.tree.approximate_data_size().to_string(),
                ),
                ("zk_global_sessions", p.sessions.len().to_string()),
                (
                    "zk_last_zxid",
                    format!("0x{:x}", p.tree.last_processed_zxid()),
                ),
            ];
            let mut kv = kv;
            if let Some((followers, synced, observers)) = p.zab().and_then(|z| z.learner_counts()) {
                kv.push(("zk_followers", followers.to_string()));
                kv.push(("zk_synced_followers", synced.to_string()));
                kv.push(("zk_synced_observers", observers.to_string()));
                kv.push(("zk_pending_syncs", "0".into()));
            }
            if let Some(z) = p.zab() {
                // Only a serving ensemble member gets here: it is in broadcast.
                let state = match mode {
                    "leader" => "leading",
                    "follower" => "following",
                    _ => "observing",
                };
                kv.push(("zk_peer_state", format!("{state} - broadcast")));
                kv.push(("zk_current_epoch", z.current_epoch().to_string()));
                kv.push(("zk_accepted_epoch", z.accepted_epoch().to_string()));
            }
            for (k, v) in kv {
                let _ = writeln!(out, "{k}\t{v}");
            }
        }
        "conf" => {
            let c = &p.config;
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
        "cons" => {
            for c in p.conns.values() {
                let _ = writeln!(
                    out,
                    " /{}[1](queued=0,recved={},sent={},sid=0x{:x},lop={},est=0,to={},lcxid=0x0,lzxid=0x{:x},lresp=0,llat=0,minlat=0,avglat=0,maxlat=0)",
                    c.remote, c.received, c.sent, c.session, c.last_op, c.timeout_ms, c.last_zxid
                );
            }
            out.push('\n');
        }
        "envi" => {
            out.push_str("Environment:\n");
            let _ = writeln!(out, "zookeeper.version={}", version());
            let _ = writeln!(out, "host.name={}", p.config.client_port_address);
            let _ = writeln!(out, "os.name={}", std::env::consts::OS);
            let _ = writeln!(out, "os.arch={}", std::env::consts::ARCH);
            if let Ok(dir) = std::env::current_dir() {
                let _ = writeln!(out, "user.dir={}", dir.display());
            }
        }
        "wchs" => {
            let by_conn = p.watches.by_session();
            let paths = p.watches.by_path();
            let _ = writeln!(
                out,
                "{} connections watching {} paths",
                by_conn.len(),
                paths.len()
            );
            let _ = writeln!(out, "Total watches:{}", p.watches.count());
        }
        "wchc" => {
            for (conn, paths) in p.watches.by_session() {
                let session = p.conns.get(&conn).map(|c| c.session).unwrap_or(0);
                let _ = writeln!(out, "0x{session:x}");
                for path in paths {
                    let _ = writeln!(out, "\t{path}");
                }
            }
            out.push('\n');
        }
        "wchp" => {
            for (path, conns) in p.watches.by_path() {
                let _ = writeln!(out, "{path}");
                for conn in conns {
                    let session = p.conns.get(&conn).map(|c| c.session).unwrap_or(0);
                    let _ = writeln!(out, "\t0x{session:x}");
                }
            }
        }
        "dump" => {
            out.push_str("SessionTracker dump:\n");
            let _ = writeln!(out, "Global Sessions({}):", p.sessions.len());
            for s in p.sessions.sessions() {
                let _ = writeln!(out, "0x{:x}\t{}ms", s.id, s.timeout_ms);
            }
            out.push_str("ephemeral nodes dump:\n");
            let eph = p.tree.all_ephemerals();
            let _ = writeln!(out, "Sessions with Ephemerals ({}):", eph.len());
            for (session, paths) in eph {
                let _ = writeln!(out, "0x{session:x}:");
                for path in paths {
                    let _ = writeln!(out, "\t{path}");
                }
            }
        }
        "dirs" => {
            let _ = writeln!(out, "datadir_size: 0");
            let _ = writeln!(out, "logdir_size: 0");
        }
        "crst" => {
            for c in p.conns.values_mut() {
                c.received = 0;
                c.sent = 0;
                c.last_zxid = 0;
                c.last_op = "NA";
            }
            out.push_str("Connection stats reset.\n");
        }
        "srst" => {
            p.stats.reset();
            out.push_str("Server stats reset.\n");
        }
        _ => {
            let _ = writeln!(out, "{cmd} is not supported by zabkeeper.");
        }
    }
    out
}
