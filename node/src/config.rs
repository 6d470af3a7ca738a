//! Server configuration: ZooKeeper's `zoo.cfg` keys, validated.
//!
//! `zoo.cfg` is a Java properties file: `key=value` (or `key: value`) lines,
//! `#` / `!` comments. Keys zabkeeper does not know are logged and ignored,
//! as ZooKeeper turns them into system properties; a known key with an
//! invalid value refuses the start with a message naming the key.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// ZooKeeper's default `tickTime` in milliseconds.
pub const DEFAULT_TICK_TIME_MS: u64 = 3000;
/// ZooKeeper's default `jute.maxbuffer`: 0xfffff bytes.
pub const DEFAULT_JUTE_MAX_BUFFER: usize = 0xfffff;

/// A member of the ensemble: `server.N=host:quorumPort:electionPort[:participant|observer][;clientAddr]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSpec {
    pub id: u64,
    pub host: String,
    pub quorum_port: u16,
    pub election_port: u16,
    pub observer: bool,
    /// The client address given after `;`, if any.
    pub client_addr: Option<String>,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}: malformed line (expected key=value): {text:?}")]
    Syntax {
        file: String,
        line: usize,
        text: String,
    },
    #[error("invalid value for {key}: {value:?}: {why}")]
    Invalid {
        key: String,
        value: String,
        why: String,
    },
    #[error("{0}")]
    Inconsistent(String),
}

fn invalid(key: &str, value: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        why: why.into(),
    }
}

/// Everything a server needs to start, validated.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub tick_time_ms: u64,
    pub data_dir: PathBuf,
    pub data_log_dir: PathBuf,
    pub client_port: u16,
    pub client_port_address: IpAddr,
    /// Connections allowed per client IP; 0 = unlimited.
    pub max_client_cnxns: usize,
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// The largest znode payload and (plus headroom) the largest frame.
    pub jute_max_buffer: usize,
    /// Four-letter words allowed; contains "*" for all.
    pub four_letter_words: Vec<String>,
    /// `forceSync`: fsync the log before acknowledging (default yes).
    pub force_sync: bool,
    /// Txns between snapshots (`snapCount`).
    pub snap_count: u64,
    /// Committed txns kept in memory to sync a learner by DIFF rather than SNAP
    /// (`commitLogCount`, ZooKeeper's `zookeeper.commitLogCount`, 500).
    pub commit_log_count: usize,
    /// `autopurge.snapRetainCount` (at least 3).
    pub snap_retain_count: usize,
    /// `autopurge.purgeInterval` in hours; 0 disables purging.
    pub purge_interval_hours: u64,
    /// Requests queued in the server before it stops reading from clients.
    pub global_outstanding_limit: usize,
    pub init_limit: u32,
    pub sync_limit: u32,
    /// The ensemble; empty for a standalone server.
    pub servers: Vec<ServerSpec>,
    /// This server's id (`myid` in dataDir); 0 when standalone.
    pub my_id: u64,
    /// How often containers and TTL nodes are checked for expiry
    /// (`znode.container.checkIntervalMs`, default one minute).
    pub container_check_interval_ms: u64,
    /// zabkeeper's own option: reads confirmed by a quorum (linearizable reads).
    pub quorum_reads: bool,
    /// ZooKeeper's `zookeeper.extendedTypesEnabled` (in zoo.cfg as `extendedTypesEnabled`,
    /// which ZooKeeper turns into that system property): TTL nodes are refused with
    /// Unimplemented unless it is on, as ZooKeeper refuses them. Off by default.
    pub extended_types_enabled: bool,
    /// ZooKeeper's `readonlymode.enabled` (a Java system property there, a zoo.cfg key
    /// here): an ensemble member that has been looking for a quorum for
    /// max(2 s, tickTime) serves reads to clients that allow read-only sessions. Off by
    /// default.
    pub read_only_mode: bool,
    /// ZooKeeper's `localSessionsEnabled`: a new session is held by the server it
    /// connects to only (no CreateSession txn), and becomes global when it creates an
    /// ephemeral. Off by default.
    pub local_sessions_enabled: bool,
    /// ZooKeeper's `localSessionsUpgradingEnabled`: a local session that creates an
    /// ephemeral is upgraded to a global one; off (the default of the running Apache
    /// ZooKeeper 3.8), the create fails with EphemeralOnLocalSession.
    pub local_sessions_upgrading_enabled: bool,
    /// zabkeeper's own option `zabkeeper.zxidCounterLimit`: the largest zxid counter an
    /// epoch may reach before the leader forces a new epoch (`None`: 0xffffffff, as
    /// ZooKeeper). Small values exercise the counter rollover in tests and the simulator.
    pub zxid_counter_limit: Option<u32>,
    /// How many times per tickTime the ZAB core's timers advance (`None`: derived from
    /// tickTime by [`ServerConfig::core_ticks_per_tick`]). Finer core ticks let a
    /// follower notice a silent leader after syncLimit x tickTime, as ZooKeeper's socket
    /// timeout does, rather than at the next whole tick, and an election's finalize wait
    /// last ZooKeeper's 200 ms rather than a tick; limits keep their meaning in time.
    pub core_ticks: Option<u32>,
    /// The AdminServer (`admin.enableServer`, `admin.serverAddress`, `admin.serverPort`,
    /// `admin.commandURL`): `None` when disabled.
    pub admin: Option<AdminConfig>,
    /// Prometheus metrics on `http://{metricsProvider.httpHost}:{metricsProvider.httpPort}/metrics`,
    /// when `metricsProvider.className` names ZooKeeper's `PrometheusMetricsProvider`.
    pub metrics: Option<SocketAddr>,
    /// TLS clients on `secureClientPort`, with ZooKeeper's `ssl.*` keys.
    pub tls: Option<TlsConfig>,
    /// TLS between the servers (`sslQuorum`), with ZooKeeper's `ssl.quorum.*` keys.
    pub quorum_tls: Option<QuorumTlsConfig>,
    /// `user:base64(sha1(user:password))` whose digest authentication is the superuser
    /// (ZooKeeper's `zookeeper.DigestAuthenticationProvider.superDigest`).
    pub super_digest: Option<String>,
    /// Keys present in the file that zabkeeper does not use.
    pub ignored_keys: Vec<String>,
    /// The text of the zoo.cfg the server was started with (the AdminServer's
    /// `initial_configuration`); `None` when started from command-line flags.
    pub initial_config: Option<String>,
    /// The version of the membership (a zxid: the hex that ends the name of ZooKeeper's
    /// `dynamicConfigFile`, `zoo.cfg.dynamic.100000000`; 0 for `server.N` lines in
    /// zoo.cfg itself): the tail of
    /// `/zookeeper/config` and that node's mzxid.
    pub config_version: u64,
}

/// Whether TLS clients must, may or must not present a certificate (`ssl.clientAuth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Want,
    Need,
}

/// The secure client port and its key material (PEM files, as ZooKeeper's
/// `ssl.keyStore.type=PEM`: the key store holds the private key and the certificate
/// chain, the trust store the CA certificates client certificates are checked against).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    pub address: SocketAddr,
    pub key_store: PathBuf,
    pub trust_store: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// Authenticated quorum connections (`sslQuorum=true` with ZooKeeper's `ssl.quorum.*`
/// keys, PEM files): every peer connection is mutual TLS, each side's certificate
/// checked against the trust store, and the dialed server's certificate against its
/// `server.N` host unless `ssl.quorum.hostnameVerification=false`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumTlsConfig {
    pub key_store: PathBuf,
    pub trust_store: PathBuf,
    pub hostname_verification: bool,
}

/// Where the AdminServer listens and the URL prefix of its commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    pub address: SocketAddr,
    /// `admin.commandURL`, `/commands` by default.
    pub command_url: String,
}

/// ZooKeeper's Prometheus metrics provider, as `metricsProvider.className` names it.
pub const PROMETHEUS_PROVIDER: &str =
    "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider";
/// ZooKeeper's default metrics provider (metrics only in `mntr` and the AdminServer).
const DEFAULT_PROVIDER: &str = "org.apache.zookeeper.metrics.impl.DefaultMetricsProvider";

/// ZooKeeper's `finalizeWait`: how long an election waits for a better vote once a
/// quorum agrees.
const FINALIZE_WAIT_MS: u64 = 200;

impl ServerConfig {
    /// A standalone server's defaults, for `--port P --data-dir D`.
    pub fn standalone(client_port: u16, data_dir: impl Into<PathBuf>) -> ServerConfig {
        let data_dir = data_dir.into();
        let tick = DEFAULT_TICK_TIME_MS;
        ServerConfig {
            tick_time_ms: tick,
            data_log_dir: data_dir.clone(),
            data_dir,
            client_port,
            client_port_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            max_client_cnxns: 60,
            min_session_timeout_ms: (2 * tick) as i32,
            max_session_timeout_ms: (20 * tick) as i32,
            jute_max_buffer: DEFAULT_JUTE_MAX_BUFFER,
            four_letter_words: vec!["srvr".to_string()],
            force_sync: true,
            snap_count: 100_000,
            commit_log_count: crate::core::DEFAULT_COMMITTED_LOG_WINDOW,
            snap_retain_count: 3,
            purge_interval_hours: 0,
            global_outstanding_limit: 1000,
            init_limit: 10,
            sync_limit: 5,
            servers: Vec::new(),
            my_id: 0,
            container_check_interval_ms: 60_000,
            quorum_reads: false,
            zxid_counter_limit: None,
            extended_types_enabled: false,
            read_only_mode: false,
            local_sessions_enabled: false,
            local_sessions_upgrading_enabled: false,
            core_ticks: None,
            admin: None,
            metrics: None,
            tls: None,
            quorum_tls: None,
            super_digest: None,
            ignored_keys: Vec::new(),
            initial_config: None,
            config_version: 0,
        }
    }

    /// How many core ticks make one tickTime: the configured count, or tickTime / 20 ms
    /// clamped to 1..=10 (a core tick is never shorter than 20 ms; tickTime=2000 gives
    /// 200 ms core ticks, tickTime=500 50 ms ones).
    pub fn core_ticks_per_tick(&self) -> u32 {
        self.core_ticks
            .unwrap_or_else(|| (self.tick_time_ms / 20).clamp(1, 10) as u32)
            .max(1)
    }

    /// The length of one core tick in ms (at least 1).
    pub fn core_tick_ms(&self) -> u64 {
        (self.tick_time_ms / u64::from(self.core_ticks_per_tick())).max(1)
    }

    /// Sets the core's timers, counted in core ticks: initLimit and syncLimit keep their
    /// length in time, the election's finalize wait is ZooKeeper's 200 ms (never more
    /// than a tickTime), the notification resend interval keeps its length in time.
    pub fn set_core_timers(&self, zc: &mut crate::core::ZabConfig) {
        let k = self.core_ticks_per_tick();
        let defaults = crate::core::ZabConfig::new(zc.my_sid, [], []);
        zc.init_limit = self.init_limit.saturating_mul(k);
        zc.sync_limit = self.sync_limit.saturating_mul(k);
        zc.finalize_wait = (FINALIZE_WAIT_MS.div_ceil(self.core_tick_ms()) as u32).clamp(1, k);
        zc.election_resend = defaults.election_resend.saturating_mul(k);
        zc.election_resend_max = defaults.election_resend_max.saturating_mul(k);
    }

    /// The largest frame accepted from a client: jute.maxbuffer, for the whole
    /// frame (ZooKeeper's `NIOServerCnxn.readLength` closes the connection for a
    /// longer one), so data that was stored can always be read back.
    pub fn max_frame_len(&self) -> usize {
        self.jute_max_buffer
    }

    /// What `/zookeeper/config` holds on an ensemble (ZooKeeper's
    /// `QuorumVerifier.toString`): a `server.N=host:quorumPort:electionPort:role[;client]`
    /// line per member, then `version=0` (the static configuration); `None` standalone.
    pub fn config_node_data(&self) -> Option<String> {
        if self.servers.is_empty() {
            return None;
        }
        let mut out = String::new();
        for s in &self.servers {
            let role = if s.observer {
                "observer"
            } else {
                "participant"
            };
            out.push_str(&format!(
                "server.{}={}:{}:{}:{role}",
                s.id, s.host, s.quorum_port, s.election_port
            ));
            if let Some(c) = &s.client_addr {
                if c.contains(':') {
                    out.push_str(&format!(";{c}"));
                } else {
                    out.push_str(&format!(";0.0.0.0:{c}"));
                }
            }
            out.push('\n');
        }
        out.push_str(&format!("version={:x}", self.config_version));
        Some(out)
    }

    /// Whether the four-letter word `cmd` is allowed.
    pub fn four_letter_word_allowed(&self, cmd: &str) -> bool {
        self.four_letter_words.iter().any(|w| w == "*" || w == cmd)
    }

    /// Negotiates a client's requested session timeout into the allowed range.
    pub fn negotiate_session_timeout(&self, requested_ms: i32) -> i32 {
        requested_ms.clamp(self.min_session_timeout_ms, self.max_session_timeout_ms)
    }

    /// Reads and validates a zoo.cfg file (and `myid` for an ensemble).
    pub fn from_file(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut props = parse_properties(&path.display().to_string(), &text)?;
        let config_version = read_dynamic_config(path, &mut props)?;
        let mut cfg = ServerConfig::from_properties(&props)?;
        cfg.initial_config = Some(text);
        cfg.config_version = config_version;
        if !cfg.servers.is_empty() {
            let myid_path = cfg.data_dir.join("myid");
            let myid = std::fs::read_to_string(&myid_path).map_err(|source| ConfigError::Io {
                path: myid_path.clone(),
                source,
            })?;
            cfg.my_id = myid
                .trim()
                .parse()
                .map_err(|_| invalid("myid", myid.trim(), "expected a server id number"))?;
            if !cfg.servers.iter().any(|s| s.id == cfg.my_id) {
                return Err(ConfigError::Inconsistent(format!(
                    "myid {} is not among the configured server.N entries",
                    cfg.my_id
                )));
            }
        }
        Ok(cfg)
    }

    /// Builds a configuration from parsed properties.
    pub fn from_properties(props: &BTreeMap<String, String>) -> Result<ServerConfig, ConfigError> {
        let data_dir = props
            .get("dataDir")
            .ok_or_else(|| ConfigError::Inconsistent("dataDir is not set".to_string()))?;
        let mut cfg = ServerConfig::standalone(2181, PathBuf::from(data_dir));
        cfg.client_port_address = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let mut min_set = false;
        let mut max_set = false;
        // ZooKeeper's defaults: the AdminServer on 0.0.0.0:8080, metrics (when enabled)
        // on 0.0.0.0:7000.
        let mut admin_enabled = true;
        let mut admin_host: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let mut admin_port: u16 = 8080;
        let mut command_url = "/commands".to_string();
        let mut prometheus = false;
        let mut ssl_quorum = false;
        let mut quorum_key_store: (Option<String>, Option<String>) = (None, None);
        let mut quorum_trust_store: (Option<String>, Option<String>) = (None, None);
        let mut quorum_hostname_verification = true;
        let mut metrics_host: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let mut metrics_port: u16 = 7000;
        let mut secure_port: Option<u16> = None;
        let mut secure_host: Option<IpAddr> = None;
        // Location and type of the key store and of the trust store.
        let mut key_store: (Option<String>, Option<String>) = (None, None);
        let mut trust_store: (Option<String>, Option<String>) = (None, None);
        let mut client_auth = ClientAuth::Need;
        for (key, value) in props {
            let v = value.as_str();
            match key.as_str() {
                "dataDir" => {}
                "dataLogDir" => cfg.data_log_dir = PathBuf::from(v),
                "tickTime" => cfg.tick_time_ms = parse_num(key, v, 1, 3_600_000)?,
                "clientPort" => cfg.client_port = parse_num(key, v, 0, 65535)? as u16,
                "clientPortAddress" => {
                    cfg.client_port_address = v
                        .parse()
                        .map_err(|_| invalid(key, v, "expected an IP address"))?
                }
                "maxClientCnxns" => cfg.max_client_cnxns = parse_num(key, v, 0, 1 << 20)? as usize,
                "minSessionTimeout" => {
                    cfg.min_session_timeout_ms = parse_num(key, v, 0, i32::MAX as u64)? as i32;
                    min_set = true;
                }
                "maxSessionTimeout" => {
                    cfg.max_session_timeout_ms = parse_num(key, v, 0, i32::MAX as u64)? as i32;
                    max_set = true;
                }
                "jute.maxbuffer" => {
                    cfg.jute_max_buffer = parse_num(key, v, 1024, 256 << 20)? as usize
                }
                "4lw.commands.whitelist" => {
                    cfg.four_letter_words = v
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                }
                "forceSync" => cfg.force_sync = parse_yes_no(key, v)?,
                "snapCount" => cfg.snap_count = parse_num(key, v, 2, u32::MAX as u64)?,
                "commitLogCount" | "zookeeper.commitLogCount" => {
                    cfg.commit_log_count = parse_num(key, v, 0, 1_000_000)? as usize
                }
                "autopurge.snapRetainCount" => {
                    cfg.snap_retain_count = (parse_num(key, v, 1, 1 << 20)? as usize).max(3)
                }
                "autopurge.purgeInterval" => {
                    cfg.purge_interval_hours = parse_num(key, v, 0, 1 << 20)?
                }
                "globalOutstandingLimit" => {
                    cfg.global_outstanding_limit = parse_num(key, v, 1, 1 << 24)? as usize
                }
                "znode.container.checkIntervalMs" => {
                    cfg.container_check_interval_ms = parse_num(key, v, 1, 1 << 40)?
                }
                "initLimit" => cfg.init_limit = parse_num(key, v, 1, 1 << 20)? as u32,
                "syncLimit" => cfg.sync_limit = parse_num(key, v, 1, 1 << 20)? as u32,
                "zabkeeper.quorumReads" | "quorumReads" => cfg.quorum_reads = parse_yes_no(key, v)?,
                "extendedTypesEnabled" | "zookeeper.extendedTypesEnabled" => {
                    cfg.extended_types_enabled = parse_yes_no(key, v)?
                }
                "readonlymode.enabled" => cfg.read_only_mode = parse_yes_no(key, v)?,
                "localSessionsEnabled" => cfg.local_sessions_enabled = parse_yes_no(key, v)?,
                "localSessionsUpgradingEnabled" => {
                    cfg.local_sessions_upgrading_enabled = parse_yes_no(key, v)?
                }
                "zabkeeper.zxidCounterLimit" => {
                    cfg.zxid_counter_limit = Some(parse_num(key, v, 2, u32::MAX as u64)? as u32)
                }
                // read by `from_file` (`read_dynamic_config`), which merged its servers
                "dynamicConfigFile" => {}
                k if k.starts_with("server.") => {
                    let id: u64 = k["server.".len()..]
                        .parse()
                        .map_err(|_| invalid(key, v, "server.N needs a numeric N"))?;
                    cfg.servers.push(parse_server_spec(key, id, v)?);
                }
                "admin.enableServer" => admin_enabled = parse_yes_no(key, v)?,
                "admin.serverAddress" => admin_host = parse_ip(key, v)?,
                "admin.serverPort" => admin_port = parse_num(key, v, 0, 65535)? as u16,
                "admin.commandURL" => {
                    if !v.starts_with('/') {
                        return Err(invalid(key, v, "expected a URL path starting with /"));
                    }
                    command_url = v.trim_end_matches('/').to_string();
                }
                "metricsProvider.className" => prometheus = parse_provider(key, v)?,
                // ZooKeeper turns a zoo.cfg key it does not know into the system property
                // `zookeeper.<key>`: both spellings reach the digest provider.
                "DigestAuthenticationProvider.superDigest"
                | "zookeeper.DigestAuthenticationProvider.superDigest" => {
                    if v.split(':').filter(|p| !p.is_empty()).count() != 2 {
                        return Err(invalid(
                            key,
                            "(hidden)",
                            "expected user:base64(sha1(user:password))",
                        ));
                    }
                    cfg.super_digest = Some(v.trim().to_string());
                }
                "secureClientPort" => secure_port = Some(parse_num(key, v, 0, 65535)? as u16),
                "secureClientPortAddress" => secure_host = Some(parse_ip(key, v)?),
                "ssl.keyStore.location" => key_store.0 = Some(v.to_string()),
                "ssl.keyStore.type" => key_store.1 = Some(v.to_string()),
                "ssl.trustStore.location" => trust_store.0 = Some(v.to_string()),
                "ssl.trustStore.type" => trust_store.1 = Some(v.to_string()),
                "sslQuorum" => ssl_quorum = parse_yes_no(key, v)?,
                "ssl.quorum.keyStore.location" => quorum_key_store.0 = Some(v.to_string()),
                "ssl.quorum.keyStore.type" => quorum_key_store.1 = Some(v.to_string()),
                "ssl.quorum.trustStore.location" => quorum_trust_store.0 = Some(v.to_string()),
                "ssl.quorum.trustStore.type" => quorum_trust_store.1 = Some(v.to_string()),
                "ssl.quorum.hostnameVerification" => {
                    quorum_hostname_verification = parse_yes_no(key, v)?
                }
                "ssl.quorum.protocol" | "ssl.quorum.enabledProtocols" => {
                    if v.split(',')
                        .any(|p| !matches!(p.trim(), "TLSv1.2" | "TLSv1.3" | "TLS"))
                    {
                        return Err(invalid(key, v, "zabkeeper speaks TLSv1.2 and TLSv1.3"));
                    }
                }
                "ssl.keyStore.password"
                | "ssl.trustStore.password"
                | "ssl.quorum.keyStore.password"
                | "ssl.quorum.trustStore.password" => {
                    if !v.is_empty() {
                        return Err(invalid(
                            key,
                            "(hidden)",
                            "zabkeeper reads unencrypted PEM files only; leave the password empty",
                        ));
                    }
                }
                "ssl.clientAuth" => {
                    client_auth = match v.trim().to_ascii_lowercase().as_str() {
                        "need" => ClientAuth::Need,
                        "want" => ClientAuth::Want,
                        "none" => ClientAuth::None,
                        _ => return Err(invalid(key, v, "expected need, want or none")),
                    }
                }
                "ssl.protocol" | "ssl.enabledProtocols" => {
                    if v.split(',')
                        .any(|p| !matches!(p.trim(), "TLSv1.2" | "TLSv1.3" | "TLS"))
                    {
                        return Err(invalid(key, v, "zabkeeper speaks TLSv1.2 and TLSv1.3"));
                    }
                }
                "metricsProvider.httpHost" => metrics_host = parse_ip(key, v)?,
                "metricsProvider.httpPort" => metrics_port = parse_num(key, v, 0, 65535)? as u16,
                "standaloneEnabled"
                | "reconfigEnabled"
                | "admin.idleTimeout"
                | "metricsProvider.exportJvmInfo"
                | "peerType"
                | "electionAlg"
                | "maxCnxns"
                | "preAllocSize"
                | "syncEnabled"
                | "quorumListenOnAllIPs" => cfg.ignored_keys.push(key.clone()),
                _ => cfg.ignored_keys.push(key.clone()),
            }
        }
        if admin_enabled {
            cfg.admin = Some(AdminConfig {
                address: SocketAddr::new(admin_host, admin_port),
                command_url,
            });
        }
        if prometheus {
            cfg.metrics = Some(SocketAddr::new(metrics_host, metrics_port));
        }
        if let Some(port) = secure_port {
            let key_location = key_store.0.filter(|l| !l.is_empty()).ok_or_else(|| {
                ConfigError::Inconsistent(
                    "secureClientPort needs ssl.keyStore.location (a PEM file)".into(),
                )
            })?;
            pem_store("ssl.keyStore", &key_location, key_store.1.as_deref())?;
            let trust_store = match trust_store.0.filter(|l| !l.is_empty()) {
                Some(path) => {
                    pem_store("ssl.trustStore", &path, trust_store.1.as_deref())?;
                    Some(PathBuf::from(path))
                }
                None if client_auth != ClientAuth::None => {
                    return Err(ConfigError::Inconsistent(
                        "ssl.clientAuth=need or want needs ssl.trustStore.location (the CA \
                         certificates, PEM) to check client certificates against"
                            .into(),
                    ))
                }
                None => None,
            };
            cfg.tls = Some(TlsConfig {
                address: SocketAddr::new(secure_host.unwrap_or(cfg.client_port_address), port),
                key_store: PathBuf::from(key_location),
                trust_store,
                client_auth,
            });
        }
        if ssl_quorum {
            let store = |prefix: &str, (location, kind): (Option<String>, Option<String>)| {
                let location = location.filter(|l| !l.is_empty()).ok_or_else(|| {
                    ConfigError::Inconsistent(format!(
                        "sslQuorum=true needs {prefix}.location (a PEM file)"
                    ))
                })?;
                pem_store(prefix, &location, kind.as_deref())?;
                Ok::<PathBuf, ConfigError>(PathBuf::from(location))
            };
            cfg.quorum_tls = Some(QuorumTlsConfig {
                key_store: store("ssl.quorum.keyStore", quorum_key_store)?,
                trust_store: store("ssl.quorum.trustStore", quorum_trust_store)?,
                hostname_verification: quorum_hostname_verification,
            });
        }
        if !min_set {
            cfg.min_session_timeout_ms = (2 * cfg.tick_time_ms) as i32;
        }
        if !max_set {
            cfg.max_session_timeout_ms = (20 * cfg.tick_time_ms) as i32;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the cross-key rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.min_session_timeout_ms > self.max_session_timeout_ms {
            return Err(ConfigError::Inconsistent(format!(
                "minSessionTimeout ({}) must not be larger than maxSessionTimeout ({})",
                self.min_session_timeout_ms, self.max_session_timeout_ms
            )));
        }
        let mut ids: Vec<u64> = self.servers.iter().map(|s| s.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError::Inconsistent(
                "a server.N id appears twice".to_string(),
            ));
        }
        if !self.servers.is_empty() && self.servers.iter().all(|s| s.observer) {
            return Err(ConfigError::Inconsistent(
                "an ensemble needs at least one participant".into(),
            ));
        }
        Ok(())
    }
}

/// A key or trust store must be PEM (by its type key, or ZooKeeper's guess from the
/// file name when the type is not given).
fn pem_store(prefix: &str, path: &str, kind: Option<&str>) -> Result<(), ConfigError> {
    let kind = match kind {
        Some(k) => k.to_ascii_uppercase(),
        None if path.ends_with(".jks") => "JKS".into(),
        None if path.ends_with(".p12") || path.ends_with(".pfx") => "PKCS12".into(),
        None => "PEM".into(),
    };
    if kind != "PEM" {
        return Err(invalid(
            &format!("{prefix}.type"),
            &kind,
            "zabkeeper reads PEM files (convert with `openssl pkcs12 -nodes -in store.p12`)",
        ));
    }
    Ok(())
}

/// Whether `metricsProvider.className` asks for Prometheus; other providers are refused.
fn parse_provider(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim() {
        PROMETHEUS_PROVIDER => Ok(true),
        DEFAULT_PROVIDER => Ok(false),
        _ => Err(invalid(
            key,
            v,
            format!("zabkeeper provides {PROMETHEUS_PROVIDER} and {DEFAULT_PROVIDER}"),
        )),
    }
}

fn parse_ip(key: &str, v: &str) -> Result<IpAddr, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| invalid(key, v, "expected an IP address"))
}

fn parse_num(key: &str, v: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    let n: u64 = v
        .trim()
        .parse()
        .map_err(|_| invalid(key, v, "expected a whole number"))?;
    if n < min || n > max {
        return Err(invalid(key, v, format!("must be between {min} and {max}")));
    }
    Ok(n)
}

fn parse_yes_no(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(true),
        "no" | "false" => Ok(false),
        _ => Err(invalid(key, v, "expected yes or no")),
    }
}

/// ZooKeeper 3.5+'s `dynamicConfigFile`: the membership (`server.N` lines; its version
/// is the hex zxid that ends the file's name) lives in a file of its own, which Apache ZooKeeper writes when
/// `reconfigEnabled` is on (and then points zoo.cfg at). Its `server.N` lines are merged
/// into `props`; the version is returned (0 without such a file). Refused as ZooKeeper
/// refuses them: `server.N` in zoo.cfg beside a dynamic file, and keys other than
/// `server.N` in it (`version` among them). Refused here as well: hierarchical quorums
/// (`group.N`, `weight.N`), which zabkeeper does not count, and a `zoo.cfg.dynamic.next`
/// beside zoo.cfg (a reconfiguration ZooKeeper had not finished, which zabkeeper cannot
/// finish for it).
/// Hierarchical quorums are refused, not ignored: zabkeeper counts a majority.
fn hierarchical(what: &str) -> ConfigError {
    ConfigError::Inconsistent(format!(
        "{what}: hierarchical quorums (group.N, weight.N) are not supported; \
         zabkeeper counts a majority of the participants"
    ))
}

fn read_dynamic_config(
    cfg_path: &Path,
    props: &mut BTreeMap<String, String>,
) -> Result<u64, ConfigError> {
    for key in props.keys() {
        if key.starts_with("group.") || key.starts_with("weight.") {
            return Err(hierarchical(key));
        }
    }
    let mut next = cfg_path.as_os_str().to_owned();
    next.push(".dynamic.next");
    let next = PathBuf::from(next);
    if next.exists() {
        return Err(ConfigError::Inconsistent(format!(
            "{} exists: Apache ZooKeeper stopped in the middle of a reconfiguration, \
             which zabkeeper cannot complete; finish it with ZooKeeper or remove the file",
            next.display()
        )));
    }
    let Some(file) = props.get("dynamicConfigFile").cloned() else {
        return Ok(0);
    };
    if let Some(key) = props.keys().find(|k| k.starts_with("server.")) {
        return Err(ConfigError::Inconsistent(format!(
            "parameter: {key} must be in a separate dynamic config file ({file})"
        )));
    }
    let file = PathBuf::from(file.trim());
    let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Io {
        path: file.clone(),
        source,
    })?;
    let dynamic = parse_properties(&file.display().to_string(), &text)?;
    for (key, v) in dynamic {
        if key == "version" {
            // ZooKeeper's own refusal: the version is the file name's
            return Err(ConfigError::Inconsistent(format!(
                "{}: dynamic file shouldn't have version inside",
                file.display()
            )));
        } else if key.starts_with("group.") || key.starts_with("weight.") {
            return Err(hierarchical(&format!("{key} in {}", file.display())));
        } else if key.starts_with("server.") {
            props.insert(key, v);
        } else {
            return Err(invalid(
                &key,
                &v,
                format!(
                    "unrecognised parameter in the dynamic config file {}: \
                     it holds only server.N lines",
                    file.display()
                ),
            ));
        }
    }
    // As ZooKeeper's `getVersionFromFilename`: the hex after the name's last dot
    // (`zoo.cfg.dynamic.100000000`), 0 when that is not hex.
    let name = file.to_string_lossy();
    let version = name
        .rsplit_once('.')
        .and_then(|(_, hex)| u64::from_str_radix(hex, 16).ok())
        .unwrap_or(0);
    Ok(version)
}

fn parse_server_spec(key: &str, id: u64, v: &str) -> Result<ServerSpec, ConfigError> {
    let (addr, client) = match v.split_once(';') {
        Some((a, c)) => (a.trim(), Some(c.trim().to_string())),
        None => (v.trim(), None),
    };
    let parts: Vec<&str> = addr.split(':').collect();
    if parts.len() < 3 || parts.len() > 4 {
        return Err(invalid(
            key,
            v,
            "expected host:quorumPort:electionPort[:participant|observer]",
        ));
    }
    let port = |s: &str| -> Result<u16, ConfigError> {
        s.parse()
            .map_err(|_| invalid(key, v, format!("bad port {s:?}")))
    };
    let observer = match parts.get(3).copied() {
        None | Some("participant") => false,
        Some("observer") => true,
        Some(other) => return Err(invalid(key, v, format!("unknown role {other:?}"))),
    };
    Ok(ServerSpec {
        id,
        host: parts[0].to_string(),
        quorum_port: port(parts[1])?,
        election_port: port(parts[2])?,
        observer,
        client_addr: client,
    })
}

/// Parses Java-properties text into key -> value (last one wins).
pub fn parse_properties(file: &str, text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    let mut pending = String::new();
    let mut start_line = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if pending.is_empty() {
            start_line = i + 1;
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
        }
        // A trailing backslash continues the line.
        if let Some(stripped) = line.strip_suffix('\\') {
            pending.push_str(stripped);
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        let sep = full.find(['=', ':']);
        let Some(pos) = sep else {
            return Err(ConfigError::Syntax {
                file: file.to_string(),
                line: start_line,
                text: full,
            });
        };
        let key = full[..pos].trim();
        if key.is_empty() {
            return Err(ConfigError::Syntax {
                file: file.to_string(),
                line: start_line,
                text: full,
            });
        }
        out.insert(key.to_string(), full[pos + 1..].trim().to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_node_lists_members_as_zookeeper_does() {
        let text = "tickTime=2000\ndataDir=/tmp/x\nclientPort=2181\n\
                    server.1=127.0.0.1:2888:3888\n\
                    server.2=127.0.0.1:2889:3889;2182\n\
                    server.3=127.0.0.1:2890:3890:observer;127.0.0.1:2183\n";
        let cfg =
            ServerConfig::from_properties(&parse_properties("zoo.cfg", text).unwrap()).unwrap();
        assert_eq!(
            cfg.config_node_data().unwrap(),
            "server.1=127.0.0.1:2888:3888:participant\n\
             server.2=127.0.0.1:2889:3889:participant;0.0.0.0:2182\n\
             server.3=127.0.0.1:2890:3890:observer;127.0.0.1:2183\n\
             version=0"
        );
        let standalone = "tickTime=2000\ndataDir=/tmp/x\nclientPort=2181\n";
        let cfg = ServerConfig::from_properties(&parse_properties("zoo.cfg", standalone).unwrap())
            .unwrap();
        assert_eq!(cfg.config_node_data(), None);
    }

    #[test]
    fn admin_server_and_metrics_keys_as_zookeeper_reads_them() {
        let parse = |extra: &str| {
            let text = format!("dataDir=/tmp/x\n{extra}");
            ServerConfig::from_properties(&parse_properties("zoo.cfg", &text).unwrap())
        };
        // ZooKeeper's defaults: the AdminServer on 0.0.0.0:8080, no Prometheus.
        let cfg = parse("").unwrap();
        assert_eq!(
            cfg.admin,
            Some(AdminConfig {
                address: "0.0.0.0:8080".parse().unwrap(),
                command_url: "/commands".into()
            })
        );
        assert_eq!(cfg.metrics, None);
        assert_eq!(parse("admin.enableServer=false\n").unwrap().admin, None);
        let cfg = parse(
            "admin.serverAddress=127.0.0.1\nadmin.serverPort=9090\nadmin.commandURL=/cmd/\n\
             metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider\n\
             metricsProvider.httpHost=127.0.0.1\nmetricsProvider.httpPort=7001\n",
        )
        .unwrap();
        let admin = cfg.admin.unwrap();
        assert_eq!(admin.address, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(admin.command_url, "/cmd");
        assert_eq!(cfg.metrics, Some("127.0.0.1:7001".parse().unwrap()));
        // A provider zabkeeper does not have is refused, not silently ignored.
        let err = parse("metricsProvider.className=com.example.Mine\n").unwrap_err();
        assert!(
            err.to_string().contains("PrometheusMetricsProvider"),
            "{err}"
        );
        assert!(parse("admin.serverAddress=nowhere\n").is_err());
        // The command-line standalone server has neither.
        let flags = ServerConfig::standalone(2181, "/tmp/x");
        assert_eq!((flags.admin, flags.metrics), (None, None));
    }

    #[test]
    fn secure_client_port_with_pem_stores() {
        let parse = |extra: &str| {
            let text = format!("dataDir=/tmp/x\nclientPortAddress=127.0.0.1\n{extra}");
            ServerConfig::from_properties(&parse_properties("zoo.cfg", &text).unwrap())
        };
        let cfg = parse(
            "secureClientPort=2281\nssl.keyStore.location=/k/server.pem\n\
             ssl.trustStore.location=/k/ca.pem\nssl.trustStore.type=PEM\n",
        )
        .unwrap();
        assert_eq!(
            cfg.tls,
            Some(TlsConfig {
                address: "127.0.0.1:2281".parse().unwrap(),
                key_store: "/k/server.pem".into(),
                trust_store: Some("/k/ca.pem".into()),
                client_auth: ClientAuth::Need,
            })
        );
        assert_eq!(parse("").unwrap().tls, None);
        // Refused, each with its reason: no key store, a JKS store (by type or by
        // name), an encrypted store, a client certificate to check with no CA.
        for (extra, why) in [
            ("secureClientPort=2281\n", "ssl.keyStore.location"),
            ("secureClientPort=2281\nssl.keyStore.location=/k/s.jks\nssl.clientAuth=none\n", "PEM"),
            ("secureClientPort=2281\nssl.keyStore.location=/k/s.pem\nssl.keyStore.type=PKCS12\nssl.clientAuth=none\n", "PEM"),
            ("ssl.keyStore.password=secret\n", "unencrypted"),
            ("secureClientPort=2281\nssl.keyStore.location=/k/s.pem\n", "trustStore"),
            ("ssl.clientAuth=sometimes\n", "need, want or none"),
            ("ssl.protocol=SSLv3\n", "TLSv1.2"),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(err.contains(why), "{extra}: {err}");
        }
        let cfg = parse(
            "secureClientPort=2281\nsecureClientPortAddress=10.0.0.1\n\
             ssl.keyStore.location=/k/s.pem\nssl.clientAuth=none\n",
        )
        .unwrap()
        .tls
        .unwrap();
        assert_eq!(cfg.address, "10.0.0.1:2281".parse().unwrap());
        assert_eq!((cfg.client_auth, cfg.trust_store), (ClientAuth::None, None));
    }

    const SAMPLE: &str = "\
# The number of milliseconds of each tick
tickTime=2000
initLimit=10
syncLimit=5
dataDir=/var/lib/zookeeper
clientPort=2181
maxClientCnxns=60
4lw.commands.whitelist=ruok, srvr,mntr
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
server.1=127.0.0.1:2888:3888
server.2=127.0.0.1:2889:3889:participant
server.3=127.0.0.1:2890:3890:observer;127.0.0.1:2183
someUnknownKey=1
";

    #[test]
    fn core_timers_keep_their_length_in_time() {
        let mut cfg = ServerConfig::standalone(2181, "/d");
        cfg.tick_time_ms = 2000;
        let timers = |cfg: &ServerConfig| {
            let mut zc = crate::core::ZabConfig::new(1, [1], []);
            cfg.set_core_timers(&mut zc);
            (
                cfg.core_tick_ms(),
                zc.init_limit,
                zc.sync_limit,
                zc.finalize_wait,
                zc.election_resend,
            )
        };
        // tickTime=2000: 200 ms core ticks; syncLimit=5 is 50 of them (10 s); the
        // finalize wait is one core tick (200 ms, ZooKeeper's finalizeWait).
        assert_eq!(timers(&cfg), (200, 100, 50, 1, 20));
        // tickTime=500: 50 ms core ticks, a 200 ms finalize wait.
        cfg.tick_time_ms = 500;
        assert_eq!(timers(&cfg), (50, 100, 50, 4, 20));
        // Short ticks: a core tick is never under 20 ms, the finalize wait never over a tick.
        cfg.tick_time_ms = 50;
        assert_eq!(timers(&cfg), (25, 20, 10, 2, 4));
        // One core tick per tickTime: the core counts in tickTimes, as before.
        cfg.core_ticks = Some(1);
        cfg.tick_time_ms = 2000;
        assert_eq!(timers(&cfg), (2000, 10, 5, 1, 2));
    }

    /// A zoo.cfg as Apache ZooKeeper rewrites it with `reconfigEnabled`: no server lines,
    /// `dynamicConfigFile` naming `zoo.cfg.dynamic.<version>`.
    fn dynamic_dir(test: &str, static_extra: &str, dynamic: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("zabkeeper-dyncfg-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("myid"), "2\n").unwrap();
        let dynamic_path = dir.join("zoo.cfg.dynamic.100000000");
        std::fs::write(&dynamic_path, dynamic).unwrap();
        std::fs::write(
            dir.join("zoo.cfg"),
            format!(
                "tickTime=2000\ndataDir={}\nreconfigEnabled=true\n{static_extra}dynamicConfigFile={}\n",
                dir.display(),
                dynamic_path.display()
            ),
        )
        .unwrap();
        dir
    }

    const DYNAMIC: &str = "server.1=127.0.0.1:2888:3888:participant;127.0.0.1:2181\n\
                           server.2=127.0.0.1:2889:3889:participant;127.0.0.1:2182\n\
                           server.3=127.0.0.1:2890:3890:observer;127.0.0.1:2183\n";

    #[test]
    fn reads_the_membership_from_a_dynamic_config_file() {
        let dir = dynamic_dir("reads", "", DYNAMIC);
        let cfg = ServerConfig::from_file(&dir.join("zoo.cfg")).unwrap();
        assert_eq!(cfg.my_id, 2);
        assert_eq!(cfg.servers.len(), 3);
        assert!(cfg.servers[2].observer);
        assert_eq!(cfg.config_version, 0x1_0000_0000);
        assert!(!cfg.ignored_keys.iter().any(|k| k == "dynamicConfigFile"));
        // /zookeeper/config as ZooKeeper shows it: the members, then the version in hex.
        assert_eq!(
            cfg.config_node_data().unwrap(),
            format!("{DYNAMIC}version=100000000")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_what_zookeeper_refuses_in_a_dynamic_configuration() {
        let err = |test: &str, static_extra: &str, dynamic: &str| {
            let dir = dynamic_dir(test, static_extra, dynamic);
            let e = ServerConfig::from_file(&dir.join("zoo.cfg"))
                .unwrap_err()
                .to_string();
            std::fs::remove_dir_all(&dir).unwrap();
            e
        };
        // server lines in zoo.cfg beside a dynamic file (ZooKeeper's own message)
        let e = err("both", "server.4=127.0.0.1:2891:3891\n", DYNAMIC);
        assert!(
            e.contains("server.4 must be in a separate dynamic config file"),
            "{e}"
        );
        // other keys in the dynamic file
        let e = err("other", "", &format!("{DYNAMIC}tickTime=100\n"));
        assert!(e.contains("unrecognised parameter"), "{e}");
        // a version inside (ZooKeeper's own message): the file's name carries it
        let e = err("version", "", &format!("{DYNAMIC}version=100000000\n"));
        assert!(
            e.contains("dynamic file shouldn't have version inside"),
            "{e}"
        );
        // hierarchical quorums are not counted by zabkeeper: refused, not ignored
        let e = err("group", "", &format!("{DYNAMIC}group.1=1:2:3\n"));
        assert!(e.contains("hierarchical quorums"), "{e}");
        // a reconfiguration ZooKeeper left unfinished
        let dir = dynamic_dir("next", "", DYNAMIC);
        std::fs::write(dir.join("zoo.cfg.dynamic.next"), DYNAMIC).unwrap();
        let e = ServerConfig::from_file(&dir.join("zoo.cfg"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("zoo.cfg.dynamic.next exists"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
        // a dynamic file that is missing
        let dir = dynamic_dir("missing", "", DYNAMIC);
        std::fs::remove_file(dir.join("zoo.cfg.dynamic.100000000")).unwrap();
        assert!(ServerConfig::from_file(&dir.join("zoo.cfg")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn quorum_tls_as_zookeeper_spells_it() {
        let parse = |extra: &str| {
            let text = format!("tickTime=2000\ndataDir=/d\n{extra}");
            ServerConfig::from_properties(&parse_properties("zoo.cfg", &text).unwrap())
        };
        let cfg = parse(
            "sslQuorum=true\nssl.quorum.keyStore.location=/k/s1.pem\n\
             ssl.quorum.keyStore.type=PEM\nssl.quorum.trustStore.location=/k/ca.pem\n\
             ssl.quorum.hostnameVerification=false\nssl.quorum.protocol=TLSv1.3\n",
        )
        .unwrap();
        assert_eq!(
            cfg.quorum_tls,
            Some(QuorumTlsConfig {
                key_store: "/k/s1.pem".into(),
                trust_store: "/k/ca.pem".into(),
                hostname_verification: false,
            })
        );
        // off by default, and the ssl.quorum.* keys alone do not turn it on
        assert_eq!(
            parse("ssl.quorum.keyStore.location=/k/s1.pem\n")
                .unwrap()
                .quorum_tls,
            None
        );
        for (extra, why) in [
            ("sslQuorum=true\n", "ssl.quorum.keyStore.location"),
            ("sslQuorum=true\nssl.quorum.keyStore.location=/k/s.pem\n", "ssl.quorum.trustStore.location"),
            ("sslQuorum=true\nssl.quorum.keyStore.location=/k/s.jks\nssl.quorum.trustStore.location=/k/ca.pem\n", "PEM"),
            ("ssl.quorum.keyStore.password=secret\n", "unencrypted"),
            ("sslQuorum=maybe\n", "yes or no"),
        ] {
            let e = parse(extra).unwrap_err().to_string();
            assert!(e.contains(why), "{extra}: {e}");
        }
    }

    #[test]
    fn parses_a_debian_style_zoo_cfg() {
        let props = parse_properties("zoo.cfg", SAMPLE).unwrap();
        let cfg = ServerConfig::from_properties(&props).unwrap();
        assert_eq!(cfg.tick_time_ms, 2000);
        assert_eq!(cfg.min_session_timeout_ms, 4000);
        assert_eq!(cfg.max_session_timeout_ms, 40000);
        assert_eq!(cfg.data_log_dir, PathBuf::from("/var/lib/zookeeper"));
        assert_eq!(cfg.four_letter_words, vec!["ruok", "srvr", "mntr"]);
        assert!(cfg.four_letter_word_allowed("mntr"));
        assert!(!cfg.four_letter_word_allowed("dump"));
        assert_eq!(cfg.servers.len(), 3);
        assert!(cfg.servers[2].observer);
        assert_eq!(
            cfg.servers[2].client_addr.as_deref(),
            Some("127.0.0.1:2183")
        );
        assert_eq!(cfg.servers[1].quorum_port, 2889);
        assert_eq!(cfg.ignored_keys, vec!["someUnknownKey".to_string()]);
        assert_eq!(cfg.negotiate_session_timeout(100), 4000);
        assert_eq!(cfg.negotiate_session_timeout(10_000), 10_000);
        assert_eq!(cfg.negotiate_session_timeout(1_000_000), 40000);
    }

    #[test]
    fn extended_types_as_zookeeper_reads_them() {
        let parse = |extra: &str| {
            let text = format!("dataDir=/tmp/x\n{extra}");
            ServerConfig::from_properties(&parse_properties("zoo.cfg", &text).unwrap()).unwrap()
        };
        assert!(!parse("").extended_types_enabled);
        assert!(parse("extendedTypesEnabled=true\n").extended_types_enabled);
        assert!(parse("zookeeper.extendedTypesEnabled=true\n").extended_types_enabled);
        assert!(!parse("extendedTypesEnabled=false\n").extended_types_enabled);
    }

    #[test]
    fn read_only_mode_as_zookeepers_property() {
        let parse = |extra: &str| {
            let text = format!("dataDir=/tmp/x\n{extra}");
            ServerConfig::from_properties(&parse_properties("zoo.cfg", &text).unwrap()).unwrap()
        };
        assert!(!parse("").read_only_mode);
        assert!(parse("readonlymode.enabled=true\n").read_only_mode);
        assert!(!parse("readonlymode.enabled=false\n").read_only_mode);
        let local = parse("localSessionsEnabled=true\nlocalSessionsUpgradingEnabled=true\n");
        assert!(local.local_sessions_enabled && local.local_sessions_upgrading_enabled);
        assert!(!parse("").local_sessions_enabled && !parse("").local_sessions_upgrading_enabled);
        assert!(ServerConfig::from_properties(
            &parse_properties("zoo.cfg", "dataDir=/x\nreadonlymode.enabled=maybe\n").unwrap()
        )
        .is_err());
    }

    #[test]
    fn zxid_counter_limit_is_zabkeepers_own_key() {
        let parse = |extra: &str| {
            let text = format!("dataDir=/tmp/x\n{extra}");
            ServerConfig::from_properties(&parse_properties("zoo.cfg", &text).unwrap())
        };
        assert_eq!(parse("").unwrap().zxid_counter_limit, None);
        let cfg = parse("zabkeeper.zxidCounterLimit=100\n").unwrap();
        assert_eq!(cfg.zxid_counter_limit, Some(100));
        let err = parse("zabkeeper.zxidCounterLimit=1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("zxidCounterLimit"), "{err}");
    }

    #[test]
    fn refuses_bad_values_naming_the_key() {
        let mut props = parse_properties("zoo.cfg", "dataDir=/tmp/x\ntickTime=soon\n").unwrap();
        let err = ServerConfig::from_properties(&props)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tickTime"), "{err}");
        props.insert("tickTime".into(), "100".into());
        props.insert("minSessionTimeout".into(), "9000".into());
        props.insert("maxSessionTimeout".into(), "1000".into());
        let err = ServerConfig::from_properties(&props)
            .unwrap_err()
            .to_string();
        assert!(err.contains("minSessionTimeout"), "{err}");
        let err = parse_properties("zoo.cfg", "justakey\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("zoo.cfg:1"), "{err}");
        let props = parse_properties("zoo.cfg", "clientPort=2181\n").unwrap();
        assert!(ServerConfig::from_properties(&props)
            .unwrap_err()
            .to_string()
            .contains("dataDir"));
        let props =
            parse_properties("zoo.cfg", "dataDir=/x\nserver.1=host:12:34:leader\n").unwrap();
        assert!(ServerConfig::from_properties(&props)
            .unwrap_err()
            .to_string()
            .contains("role"));
    }

    #[test]
    fn commit_log_count_is_read_under_either_name() {
        let cfg = |text: &str| {
            ServerConfig::from_properties(&parse_properties("zoo.cfg", text).unwrap()).unwrap()
        };
        assert_eq!(cfg("dataDir=/tmp/x\n").commit_log_count, 500);
        assert_eq!(
            cfg("dataDir=/tmp/x\ncommitLogCount=32\n").commit_log_count,
            32
        );
        assert_eq!(
            cfg("dataDir=/tmp/x\nzookeeper.commitLogCount=7\n").commit_log_count,
            7
        );
        let bad = parse_properties("zoo.cfg", "dataDir=/tmp/x\ncommitLogCount=-1\n").unwrap();
        let err = ServerConfig::from_properties(&bad).unwrap_err().to_string();
        assert!(err.contains("commitLogCount"), "{err}");
    }

    #[test]
    fn continuation_lines_and_colon_separators() {
        let p = parse_properties("f", "a: 1\nb=x\\\n  y\n! comment\n").unwrap();
        assert_eq!(p["a"], "1");
        assert_eq!(p["b"], "xy");
    }
}
