//! The AdminServer's commands and the Prometheus metrics, as ZooKeeper 3.8 answers them
//! (`/commands/<name>` JSON, the `/commands` list, `/metrics` gauges).
//!
//! A pure formatter, as [`super::fourlw`]: the pipeline takes a [`Status`] snapshot and
//! [`answer`] turns it into the JSON object ZooKeeper's `Commands` build (the keys of
//! each command, `command` and `error` in every answer). The runtime only serves HTTP.

use serde_json::{json, Map, Value};

use super::fourlw::{self, ConnStatus, Needs, Status};
use crate::config::ServerConfig;

/// One AdminServer command: its name, the names it also answers to, and the
/// four-letter word that reads the same state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub word: &'static str,
}

/// The commands zabkeeper's AdminServer answers, in ZooKeeper's `/commands` order.
pub const COMMANDS: &[Command] = &[
    cmd("configuration", &["conf", "config"], "conf"),
    cmd("connection_stat_reset", &["crst"], "crst"),
    cmd("connections", &["cons"], "cons"),
    cmd("dirs", &[], "dirs"),
    cmd("dump", &[], "dump"),
    cmd("environment", &["env", "envi"], "envi"),
    cmd("get_trace_mask", &["gtmk"], "gtmk"),
    cmd("hash", &[], "srvr"),
    cmd("initial_configuration", &["icfg"], "conf"),
    cmd("is_read_only", &["isro"], "isro"),
    cmd("last_snapshot", &["lsnp"], "srvr"),
    cmd("leader", &["lead"], "srvr"),
    cmd("monitor", &["mntr"], "mntr"),
    cmd("observer_connection_stat_reset", &["orst"], "srvr"),
    cmd("observers", &["obsr"], "srvr"),
    cmd("ruok", &[], "ruok"),
    cmd("server_stats", &["srvr"], "srvr"),
    cmd("set_trace_mask", &["stmk"], "gtmk"),
    cmd("stat_reset", &["srst"], "srst"),
    cmd("stats", &["stat"], "stat"),
    cmd("system_properties", &["sysp"], "envi"),
    cmd("voting_view", &[], "srvr"),
    cmd("watch_summary", &["wchs"], "wchs"),
    cmd("watches", &["wchc"], "wchc"),
    cmd("watches_by_path", &["wchp"], "wchp"),
    cmd("zabstate", &[], "srvr"),
];

const fn cmd(name: &'static str, aliases: &'static [&'static str], word: &'static str) -> Command {
    Command {
        name,
        aliases,
        word,
    }
}

/// The command `name` (a primary name or an alias).
pub fn command(name: &str) -> Option<&'static Command> {
    COMMANDS
        .iter()
        .find(|c| c.name == name || c.aliases.contains(&name))
}

/// What [`answer`] reads for `name`.
pub fn needs(name: &str) -> Needs {
    command(name).map_or_else(Needs::default, |c| fourlw::needs(c.word))
}

/// The `/commands` page: a link per command, as ZooKeeper's `CommandListServlet`.
pub fn list_html(command_url: &str) -> String {
    let mut out = String::new();
    for c in COMMANDS {
        out.push_str(&format!(
            "<a href=\"{command_url}/{0}\">{0}</a>\n<br/>\n",
            c.name
        ));
    }
    out
}

/// The JSON answer to the command `name` with the request's query arguments: its
/// fields, then `command` (the primary name) and `error` (null, or why it could not be
/// answered, as ZooKeeper's `CommandResponse`).
pub fn answer(
    config: &ServerConfig,
    status: &Status,
    name: &str,
    args: &[(String, String)],
) -> Value {
    let Some(c) = command(name) else {
        return json!({ "command": name, "error": format!("Unknown command: {name}") });
    };
    let mut out = Map::new();
    let error = if !status.serving && !answered_when_not_serving(c.name) {
        Some("This ZooKeeper instance is not currently serving requests".to_string())
    } else {
        fields(config, status, c.name, args, &mut out)
    };
    out.insert("command".into(), Value::from(c.name));
    out.insert("error".into(), error.map_or(Value::Null, Value::from));
    Value::Object(out)
}

/// Commands ZooKeeper answers while the server is not serving (no quorum yet).
fn answered_when_not_serving(name: &str) -> bool {
    matches!(
        name,
        "configuration"
            | "connection_stat_reset"
            | "dirs"
            | "environment"
            | "get_trace_mask"
            | "is_read_only"
            | "ruok"
            | "set_trace_mask"
            | "stat_reset"
            | "system_properties"
            | "voting_view"
            | "zabstate"
    )
}

/// Fills `out` with the command's fields; `Some(error)` when it has none to give.
fn fields(
    config: &ServerConfig,
    s: &Status,
    name: &str,
    args: &[(String, String)],
    out: &mut Map<String, Value>,
) -> Option<String> {
    let mut put = |k: &str, v: Value| {
        out.insert(k.to_string(), v);
    };
    match name {
        "configuration" => {
            put("client_port", config.client_port.into());
            put(
                "data_dir",
                format!("{}/version-2", config.data_dir.display()).into(),
            );
            put(
                "data_log_dir",
                format!("{}/version-2", config.data_log_dir.display()).into(),
            );
            put("tick_time", config.tick_time_ms.into());
            put("max_client_cnxns", config.max_client_cnxns.into());
            put("min_session_timeout", config.min_session_timeout_ms.into());
            put("max_session_timeout", config.max_session_timeout_ms.into());
            put("server_id", config.my_id.into());
            put("client_port_listen_backlog", (-1).into());
        }
        "connection_stat_reset" | "stat_reset" | "ruok" => {}
        "connections" => {
            put("connections", s.conns.iter().map(connection).collect());
            put("secure_connections", Value::Array(Vec::new()));
        }
        "dirs" => {
            put("datadir_size", s.datadir_size.into());
            put("logdir_size", s.logdir_size.into());
        }
        "dump" => {
            // ZooKeeper groups sessions by expiry bucket; zabkeeper lists each session
            // under its timeout.
            let mut by_timeout: Map<String, Value> = Map::new();
            for (id, timeout) in &s.sessions {
                let e = by_timeout
                    .entry(timeout.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(v) = e {
                    v.push((*id).into());
                }
            }
            put("expiry_time_to_session_ids", Value::Object(by_timeout));
            put(
                "session_id_to_ephemeral_paths",
                s.ephemerals
                    .iter()
                    .map(|(id, paths)| (id.to_string(), json!(paths)))
                    .collect::<Map<_, _>>()
                    .into(),
            );
        }
        "environment" => {
            put("zookeeper.version", fourlw::version().into());
            put("host.name", config.client_port_address.to_string().into());
            put("os.name", std::env::consts::OS.into());
            put("os.arch", std::env::consts::ARCH.into());
            if let Ok(dir) = std::env::current_dir() {
                put("user.dir", dir.display().to_string().into());
            }
        }
        "get_trace_mask" => put("tracemask", s.trace_mask.into()),
        "initial_configuration" => put(
            "initial_configuration",
            config.initial_config.clone().into(),
        ),
        "last_snapshot" => {
            // ZooKeeper's FileSnap.lastSnapshotInfo: hex zxid without 0x, seconds.
            let (zxid, at) = s.last_snapshot.unwrap_or((-1, -1));
            put("zxid", format!("{:x}", zxid as u64).into());
            put("timestamp", at.into());
        }
        "observer_connection_stat_reset" => {}
        "observers" => {
            put("synced_observers", s.synced_observers.len().into());
            put(
                "observers",
                s.synced_observers
                    .iter()
                    .map(|sid| json!({ "sid": sid }))
                    .collect(),
            );
        }
        "set_trace_mask" => {
            let arg = args.iter().find(|(k, _)| k == "traceMask").map(|(_, v)| v);
            let need = "setTraceMask requires long traceMask argument";
            match arg.map(|v| v.parse::<i64>()) {
                None => return Some(need.into()),
                Some(Err(_)) => {
                    return Some(format!("{need}, got {}", arg.map_or("", |v| v.as_str())))
                }
                Some(Ok(mask)) => put("tracemask", mask.into()),
            }
        }
        "system_properties" => {
            // ZooKeeper lists its JVM's system properties; these are the ones that
            // have a meaning for this process.
            let mut props: std::collections::BTreeMap<String, String> = [
                ("file.separator", "/"),
                ("line.separator", "\n"),
                ("path.separator", ":"),
                ("os.name", std::env::consts::OS),
                ("os.arch", std::env::consts::ARCH),
                ("zookeeper.version", &fourlw::version()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
            if let Ok(dir) = std::env::current_dir() {
                props.insert("user.dir".into(), dir.display().to_string());
            }
            for (k, v) in props {
                put(&k, v.into());
            }
        }
        "hash" => put("digests", json!([{ "zxid": s.zxid, "digest": s.digest }])),
        "is_read_only" => put("read_only", s.read_only.into()),
        "leader" => {
            let Some(leader) = s.leader else {
                return Some("server is not initialized".into());
            };
            put("is_leader", (s.mode == "leader").into());
            put("leader_id", leader.into());
            let ip = config
                .servers
                .iter()
                .find(|m| m.id == leader)
                .map(|m| m.host.clone());
            put("leader_ip", ip.into());
        }
        "monitor" => {
            for (k, v) in fourlw::mntr(s) {
                put(k.strip_prefix("zk_").unwrap_or(k), number_or_string(&v));
            }
        }
        "server_stats" | "stats" => {
            put("version", fourlw::version().into());
            put("read_only", s.read_only.into());
            let r = &s.stats.response_size;
            let buffers = json!({
                "last_buffer_size": r.last,
                "min_buffer_size": r.min,
                "max_buffer_size": r.max,
            });
            put(
                "server_stats",
                json!({
                    "packets_sent": s.stats.sent,
                    "packets_received": s.stats.received,
                    "fsync_threshold_exceed_count": 0,
                    "client_response_stats": buffers,
                    "provider_null": false,
                    "data_dir_size": s.datadir_size,
                    "log_dir_size": s.logdir_size,
                    "server_state": s.mode,
                    "last_processed_zxid": s.zxid,
                    "outstanding_requests": s.conns.iter().map(|c| c.queued).sum::<usize>(),
                    "avg_latency": s.stats.latency.avg(),
                    "max_latency": s.stats.latency.max(),
                    "min_latency": s.stats.latency.min(),
                    "num_alive_client_connections": s.conns.len(),
                    "uptime": s.uptime_ms,
                    "auth_failed_count": s.stats.auth_failed,
                }),
            );
            put("client_response", buffers);
            put("node_count", s.node_count.into());
            if name == "stats" {
                // `stat`'s short form: no session fields.
                let brief = |c: &ConnStatus| {
                    connection(&ConnStatus {
                        session: 0,
                        ..c.clone()
                    })
                };
                put("connections", s.conns.iter().map(brief).collect());
                put("secure_connections", Value::Array(Vec::new()));
            }
        }
        "voting_view" => {
            let members: Map<String, Value> = config
                .config_node_data()
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.strip_prefix("server."))
                .filter_map(|l| l.split_once('='))
                .map(|(id, spec)| (id.to_string(), Value::from(spec)))
                .collect();
            put("current_config", Value::Object(members));
        }
        "watch_summary" => {
            put("num_connections", s.watches_by_session.len().into());
            put("num_paths", s.watches_by_path.len().into());
            put("num_total_watches", s.watch_count.into());
        }
        "watches" => put(
            "session_id_to_watched_paths",
            s.watches_by_session
                .iter()
                .map(|(id, paths)| (id.to_string(), json!(paths)))
                .collect::<Map<_, _>>()
                .into(),
        ),
        "watches_by_path" => put(
            "path_to_session_ids",
            s.watches_by_path
                .iter()
                .map(|(path, ids)| (path.clone(), json!(ids)))
                .collect::<Map<_, _>>()
                .into(),
        ),
        "zabstate" => {
            let ensemble = !config.servers.is_empty();
            let voting = ensemble
                && config
                    .servers
                    .iter()
                    .any(|m| m.id == config.my_id && !m.observer);
            put("voting", voting.into());
            let state = match (ensemble, s.mode, s.serving) {
                (false, _, _) => "",
                (true, "looking", _) => "election",
                (true, _, true) => "broadcast",
                (true, _, false) => "synchronization",
            };
            put("zabstate", state.into());
        }
        _ => return Some(format!("Unknown command: {name}")),
    }
    None
}

/// One connection as ZooKeeper's `ServerCnxn.getConnectionInfo` describes it.
fn connection(c: &ConnStatus) -> Value {
    let mut v = json!({
        "remote_socket_address": c.remote.map(|r| r.to_string()),
        "interest_ops": 1,
        "outstanding_requests": c.queued,
        "packets_received": c.received,
        "packets_sent": c.sent,
    });
    if c.session != 0 {
        let m = v.as_object_mut().expect("an object");
        for (k, x) in [
            ("session_id", Value::from(c.session)),
            ("last_operation", c.last_op.into()),
            ("established", c.established_ms.into()),
            ("session_timeout", c.timeout_ms.into()),
            ("last_cxid", c.last_cxid.into()),
            ("last_zxid", c.last_zxid.into()),
            ("last_response_time", c.last_response_ms.into()),
            ("last_latency", c.last_latency_ms.into()),
            ("min_latency", c.latency.min().into()),
            ("avg_latency", (c.latency.avg().round() as u64).into()),
            ("max_latency", c.latency.max().into()),
        ] {
            m.insert(k.into(), x);
        }
    }
    v
}

/// `mntr` values are text; the AdminServer gives numbers as JSON numbers.
fn number_or_string(v: &str) -> Value {
    if let Ok(n) = v.parse::<i64>() {
        return n.into();
    }
    if let Ok(x) = v.parse::<f64>() {
        if x.is_finite() {
            return x.into();
        }
    }
    v.into()
}

/// The Prometheus gauges: every numeric `mntr` key under ZooKeeper's metric name (the
/// key without `zk_`, as ZooKeeper's `PrometheusMetricsProvider` exports its gauges).
pub fn metrics(s: &Status) -> Vec<(&'static str, f64)> {
    fourlw::mntr(s)
        .into_iter()
        .filter_map(|(k, v)| {
            let value = v.parse::<f64>().ok().filter(|x| x.is_finite())?;
            Some((k.strip_prefix("zk_").unwrap_or(k), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerSpec;

    fn serving() -> Status {
        Status {
            mode: "standalone",
            serving: true,
            node_count: 5,
            ..Status::default()
        }
    }

    fn config() -> ServerConfig {
        ServerConfig::standalone(2181, "/var/lib/zk")
    }

    #[test]
    fn every_command_answers_by_name_and_alias_with_command_and_error() {
        for c in COMMANDS {
            for name in std::iter::once(&c.name).chain(c.aliases) {
                let v = answer(&config(), &serving(), name, &[]);
                assert_eq!(v["command"], c.name, "{name}");
                assert!(v.get("error").is_some(), "{name}: {v}");
            }
        }
        let v = answer(&config(), &serving(), "nonexistent", &[]);
        assert_eq!(v["error"], "Unknown command: nonexistent");
    }

    #[test]
    fn monitor_gives_mntr_keys_without_the_prefix_as_numbers() {
        let v = answer(&config(), &serving(), "mntr", &[]);
        assert_eq!(v["command"], "monitor");
        assert_eq!(v["error"], Value::Null);
        assert_eq!(v["znode_count"], 5);
        assert_eq!(v["server_state"], "standalone");
        assert!(v["avg_latency"].is_f64(), "{}", v["avg_latency"]);
        assert!(v.get("zk_znode_count").is_none());
    }

    #[test]
    fn not_serving_answers_only_what_zookeeper_answers() {
        let s = Status {
            mode: "looking",
            serving: false,
            ..Status::default()
        };
        let v = answer(&config(), &s, "monitor", &[]);
        assert_eq!(
            v["error"],
            "This ZooKeeper instance is not currently serving requests"
        );
        assert_eq!(answer(&config(), &s, "ruok", &[])["error"], Value::Null);
    }

    #[test]
    fn leader_and_voting_view_come_from_the_ensemble() {
        let mut c = config();
        c.my_id = 2;
        c.servers = (1..=3)
            .map(|id| ServerSpec {
                id,
                host: "127.0.0.1".into(),
                quorum_port: 2887 + id as u16,
                election_port: 3887 + id as u16,
                observer: false,
                client_addr: None,
            })
            .collect();
        let s = Status {
            mode: "follower",
            serving: true,
            leader: Some(3),
            ..Status::default()
        };
        let v = answer(&c, &s, "leader", &[]);
        assert_eq!(v["is_leader"], false);
        assert_eq!(v["leader_id"], 3);
        assert_eq!(v["leader_ip"], "127.0.0.1");
        let v = answer(&c, &s, "voting_view", &[]);
        assert_eq!(v["current_config"]["1"], "127.0.0.1:2888:3888:participant");
        assert_eq!(v["current_config"].as_object().unwrap().len(), 3);
        let v = answer(&c, &s, "zabstate", &[]);
        assert_eq!(
            (v["voting"].clone(), v["zabstate"].clone()),
            (json!(true), json!("broadcast"))
        );
        // Standalone, ZooKeeper has no leader to name.
        let v = answer(&config(), &serving(), "leader", &[]);
        assert_eq!(v["error"], "server is not initialized");
    }

    #[test]
    fn the_commands_zookeeper_38_added_after_the_four_letter_words() {
        // ZooKeeper 3.8 registers 26 commands.
        assert_eq!(COMMANDS.len(), 26);
        let mut c = config();
        c.initial_config = Some("tickTime=2000\nclientPort=2181\n".into());
        let mut s = serving();
        let v = answer(&c, &s, "icfg", &[]);
        assert_eq!(
            v["initial_configuration"],
            "tickTime=2000\nclientPort=2181\n"
        );
        // No snapshot yet: ZooKeeper's -1, as hex.
        let v = answer(&c, &s, "last_snapshot", &[]);
        assert_eq!(
            (v["zxid"].clone(), v["timestamp"].clone()),
            (json!("ffffffffffffffff"), json!(-1))
        );
        s.last_snapshot = Some((0x1_0000_002a, 1_796_651_041));
        let v = answer(&c, &s, "lsnp", &[]);
        assert_eq!(
            (v["zxid"].clone(), v["timestamp"].clone()),
            (json!("10000002a"), json!(1_796_651_041))
        );
        s.synced_observers = vec![4, 5];
        let v = answer(&c, &s, "observers", &[]);
        assert_eq!(v["synced_observers"], 2);
        assert_eq!(v["observers"], json!([{ "sid": 4 }, { "sid": 5 }]));
        // set_trace_mask takes traceMask, as ZooKeeper's servlet parameter.
        let arg = |v: &str| vec![("traceMask".to_string(), v.to_string())];
        assert_eq!(answer(&c, &s, "stmk", &arg("0"))["tracemask"], 0);
        assert_eq!(
            answer(&c, &s, "set_trace_mask", &[])["error"],
            "setTraceMask requires long traceMask argument"
        );
        assert_eq!(
            answer(&c, &s, "set_trace_mask", &arg("0x1"))["error"],
            "setTraceMask requires long traceMask argument, got 0x1"
        );
        s.trace_mask = 0;
        assert_eq!(answer(&c, &s, "gtmk", &[])["tracemask"], 0);
        let v = answer(&c, &s, "sysp", &[]);
        assert_eq!(v["file.separator"], "/");
        assert_eq!(v["error"], Value::Null);
    }

    #[test]
    fn metrics_are_the_numeric_mntr_keys() {
        let m = metrics(&serving());
        let get = |k: &str| m.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        assert_eq!(get("znode_count"), Some(5.0));
        assert_eq!(get("last_client_response_size"), Some(-1.0));
        assert_eq!(get("version"), None, "text is not a metric");
        assert_eq!(get("last_zxid"), None, "hex text is not a metric");
        assert!(m.iter().all(|(n, _)| !n.starts_with("zk_")));
    }

    #[test]
    fn the_command_list_links_every_command() {
        let html = list_html("/commands");
        assert!(html.contains("<a href=\"/commands/monitor\">monitor</a>"));
        assert_eq!(html.matches("<a href").count(), COMMANDS.len());
    }
}
