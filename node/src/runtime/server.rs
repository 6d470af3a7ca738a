//! Starting a server: recovery, the ZAB core (an ensemble of one when standalone), the
//! peer transport, the client listener, and the driver task.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::storage::Storage;

use super::clock::SharedClock;
use super::connection::{serve_connection, ConnLimits};
use super::driver::Driver;
use super::peer::{PeerEvent, PeerHandle, PeerLimits, PeerSecurity, PeerTransport};
use super::recovery::{recover_keeping, Recovered};
use crate::config::ServerConfig;
use crate::core::{PersistedState, Zab, ZabConfig};
use crate::proto::peer::SNAP_PART_BYTES;
use crate::server::{Fatal, Pipeline};

/// A running server.
pub struct ServerHandle {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    driver: JoinHandle<Result<(), Fatal>>,
    acceptor: JoinHandle<()>,
    /// The AdminServer and the metrics endpoint, where configured and bound.
    admin_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    secure_addr: Option<SocketAddr>,
    /// The HTTP and TLS listeners.
    http: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the AdminServer listens, when it is enabled and its port could be bound.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Where TLS clients connect (`secureClientPort`), when configured.
    pub fn secure_addr(&self) -> Option<SocketAddr> {
        self.secure_addr
    }

    /// Where Prometheus scrapes `/metrics`, when the provider is configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A handle that asks the server to stop, usable from another task.
    pub fn stopper(&self) -> Stopper {
        Stopper(self.shutdown.clone())
    }

    /// Stops accepting, closes every connection, and waits for the driver.
    pub async fn shutdown(self) -> Result<(), Fatal> {
        let _ = self.shutdown.send(true);
        self.acceptor.abort();
        self.http.iter().for_each(JoinHandle::abort);
        match self.driver.await {
            Ok(r) => r,
            Err(e) => Err(Fatal(format!("driver task failed: {e}"))),
        }
    }

    /// Waits until the server stops (a [`Stopper`] or a fatal error).
    pub async fn wait(self) -> Result<(), Fatal> {
        let res = match self.driver.await {
            Ok(r) => r,
            Err(e) => Err(Fatal(format!("driver task failed: {e}"))),
        };
        self.acceptor.abort();
        self.http.iter().for_each(JoinHandle::abort);
        res
    }
}

/// Asks a server to stop.
#[derive(Clone)]
pub struct Stopper(watch::Sender<bool>);

impl Stopper {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

/// Connections per client IP (`maxClientCnxns`).
#[derive(Clone, Default)]
struct IpCounts(Arc<Mutex<BTreeMap<IpAddr, usize>>>);

impl IpCounts {
    fn try_acquire(&self, ip: IpAddr, max: usize) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn release(&self, ip: IpAddr) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// Admission of client connections, plain and TLS alike: one connection-id sequence and
/// one `maxClientCnxns` count per client IP.
#[derive(Clone)]
struct Admission {
    counts: IpCounts,
    next_conn: Arc<AtomicU64>,
    max_cnxns: usize,
}

impl Admission {
    /// The next connection on `listener` that its client IP may open, with its id (failed
    /// accepts are retried, connections over the limit closed).
    async fn accept(&self, listener: &TcpListener) -> (TcpStream, SocketAddr, u64) {
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            if !self.counts.try_acquire(remote.ip(), self.max_cnxns) {
                tracing::warn!(
                    "too many connections from {} - max is {}; closing the new one",
                    remote.ip(),
                    self.max_cnxns
                );
                continue;
            }
            let _ = stream.set_nodelay(true);
            return (
                stream,
                remote,
                self.next_conn.fetch_add(1, Ordering::Relaxed),
            );
        }
    }

    /// The connection from `remote` has ended.
    fn release(&self, remote: SocketAddr) {
        self.counts.release(remote.ip());
    }
}

/// Resolves `host:port` (an IP literal needs no resolver, as in the simulator).
fn resolve(host: &str, port: u16) -> anyhow::Result<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("cannot resolve {host}"))
}

/// Builds ZAB from the configuration and the recovered state: a standalone server (no
/// `server.N` lines) is an ensemble of one voter, which leads at once.
fn build_zab(
    config: &ServerConfig,
    storage: &(dyn Storage + Send),
    recovered: &Recovered,
) -> anyhow::Result<Zab> {
    let (voters, observers): (Vec<u64>, Vec<u64>) = if config.servers.is_empty() {
        (vec![config.my_id], Vec::new())
    } else {
        if !config.servers.iter().any(|s| s.id == config.my_id) {
            anyhow::bail!("myid {} has no server.N line", config.my_id);
        }
        let ids = |observer: bool| {
            config
                .servers
                .iter()
                .filter(|s| s.observer == observer)
                .map(|s| s.id)
                .collect()
        };
        (ids(false), ids(true))
    };
    let mut zc = ZabConfig::new(config.my_id, voters, observers);
    config.set_core_timers(&mut zc);
    zc.committed_log_window = config.commit_log_count;
    zc.quorum_reads = config.quorum_reads;
    if let Some(limit) = config.zxid_counter_limit {
        zc.zxid_counter_limit = limit;
    }
    zc.max_txn_bytes = config.max_frame_len() * 2;
    zc.max_frame_bytes = max_peer_frame(config);
    zc.validate()
        .map_err(|e| anyhow::anyhow!("invalid ensemble configuration: {e}"))?;
    let epochs = storage.epochs();
    let persisted = PersistedState {
        accepted_epoch: epochs.accepted_epoch,
        current_epoch: epochs.current_epoch,
        last_logged_zxid: recovered.last_logged,
        last_committed_zxid: recovered.tree.last_processed_zxid(),
        log_tail_base: recovered.log_tail_base,
        log_tail: recovered.log_tail.clone(),
    };
    Zab::new(zc, persisted).map_err(|e| anyhow::anyhow!("cannot start ZAB: {e}"))
}

/// Starts the peer transport on this server's quorum port.
async fn start_peers(
    config: &ServerConfig,
) -> anyhow::Result<(PeerHandle, mpsc::Receiver<PeerEvent>)> {
    let me = config
        .servers
        .iter()
        .find(|s| s.id == config.my_id)
        .ok_or_else(|| anyhow::anyhow!("myid {} has no server.N line", config.my_id))?;
    let listen = resolve(&me.host, me.quorum_port)?;
    let mut peers = Vec::new();
    for s in config.servers.iter().filter(|s| s.id != config.my_id) {
        peers.push((s.id, resolve(&s.host, s.quorum_port)?));
    }
    // ZAB pings each connection every tick, and the core gives up on a peer silent for
    // syncLimit ticks: a connection silent that long may be replaced by a handshake.
    let limits = PeerLimits {
        max_frame: max_peer_frame(config),
        replace_after_silence: std::time::Duration::from_millis(
            config.tick_time_ms * u64::from(config.sync_limit).max(2),
        ),
        ..PeerLimits::default()
    };
    #[allow(unused_mut)]
    let mut security = PeerSecurity::default();
    #[cfg(not(madsim))]
    if let Some(tls) = &config.quorum_tls {
        let hosts: Vec<(u64, String)> = config
            .servers
            .iter()
            .filter(|s| s.id != config.my_id)
            .map(|s| (s.id, s.host.clone()))
            .collect();
        security.tls = Some(std::sync::Arc::new(super::tls::quorum(tls, &hosts)?));
    }
    let (handle, rx) =
        PeerTransport::start_with_security(config.my_id, listen, peers, limits, security).await?;
    tracing::info!(
        "server {} in an ensemble of {}: quorum traffic on {listen}{}",
        config.my_id,
        config.servers.len(),
        if config.quorum_tls.is_some() {
            " (TLS, sslQuorum)"
        } else {
            ""
        }
    );
    Ok((handle, rx))
}

/// The largest peer frame. A txn is about as large as the request that made it (at most
/// jute.maxbuffer, as ZooKeeper bounds a QuorumPacket's buffer), a SNAP travels in parts
/// of [`SNAP_PART_BYTES`], and a PING carries one touch (12 bytes) per session active
/// since the last one: twice the larger of the two plus 16 MiB holds every honest frame,
/// and a forged length claim (from anyone who says a member's sid without `sslQuorum`)
/// is refused past it, where it used to be 1 GiB.
fn max_peer_frame(config: &ServerConfig) -> usize {
    2 * config.jute_max_buffer.max(SNAP_PART_BYTES) + (16 << 20)
}

/// Recovers state from `storage`, binds the client port, and starts serving.
pub async fn start(
    config: ServerConfig,
    storage: Box<dyn Storage + Send>,
    clock: SharedClock,
) -> anyhow::Result<ServerHandle> {
    start_observed(config, storage, clock, None).await
}

/// [`start`] with an observation hook (test harnesses: the simulator's global checks),
/// called on the driver's task for each established leadership, applied commit and
/// tree load (the first one: the tree recovered at start-up).
pub async fn start_observed(
    config: ServerConfig,
    mut storage: Box<dyn Storage + Send>,
    clock: SharedClock,
    observer: Option<super::observe::ObserverFn>,
) -> anyhow::Result<ServerHandle> {
    config.validate()?;
    let recovered = recover_keeping(storage.as_mut(), config.commit_log_count)
        .map_err(|e| anyhow::anyhow!("recovery failed: {e}"))?;
    let listener = TcpListener::bind((config.client_port_address, config.client_port)).await?;
    let local_addr = listener.local_addr()?;
    tracing::info!("serving clients on {local_addr}");

    let (tx, rx) = mpsc::channel(config.global_outstanding_limit.max(16));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let limits = ConnLimits {
        max_frame_len: config.max_frame_len(),
        // ZooKeeper's zookeeper.nio.sessionlessCnxnTimeout (10 s).
        handshake_timeout: Duration::from_secs(10),
    };
    let max_cnxns = config.max_client_cnxns;
    let zab = build_zab(&config, storage.as_ref(), &recovered)?;
    // The loaded snapshot, dated by its file (the AdminServer's last_snapshot).
    let last_snapshot = recovered.snapshot_zxid.map(|zxid| {
        let file = config
            .data_dir
            .join("version-2")
            .join(crate::storage::format::snapshot_name(zxid));
        let written = std::fs::metadata(file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(|| clock.now_ms() / 1000, |d| d.as_secs() as i64);
        (zxid, written)
    });
    let (peers, peer_rx) = if config.servers.is_empty() {
        (None, None)
    } else {
        let (handle, peer_rx) = start_peers(&config).await?;
        (Some(handle), Some(peer_rx))
    };
    let pipeline = Pipeline::new(
        config.clone(),
        zab,
        recovered.tree,
        recovered.sessions,
        clock.now_ms(),
        observer.is_some(),
    );
    let (admin_addr, metrics_addr, mut http) = start_http(&config, &tx).await?;
    let admission = Admission {
        counts: IpCounts::default(),
        next_conn: Arc::new(AtomicU64::new(1)),
        max_cnxns,
    };
    let secure_addr = start_tls(&config, &tx, &admission, limits, &mut http).await?;
    let driver = Driver::new(
        config,
        clock,
        pipeline,
        storage,
        peers,
        observer,
        last_snapshot,
    );
    let driver = tokio::spawn(driver.run(rx, peer_rx, shutdown_rx));

    let plain = admission.clone();
    let acceptor = tokio::spawn(async move {
        loop {
            let (stream, remote, conn) = plain.accept(&listener).await;
            let (tx, plain) = (tx.clone(), plain.clone());
            tokio::spawn(async move {
                serve_connection(stream, remote, conn, limits, None, tx).await;
                plain.release(remote);
            });
        }
    });
    Ok(ServerHandle {
        local_addr,
        shutdown,
        driver,
        acceptor,
        admin_addr,
        metrics_addr,
        secure_addr,
        http,
    })
}

/// Starts the TLS listener on `secureClientPort` when configured: each connection does
/// its TLS handshake (within the handshake timeout) and is then served as any other,
/// its client certificate's subject as its `x509` identity. Key material that cannot
/// be read refuses the start.
#[cfg(not(madsim))]
async fn start_tls(
    config: &ServerConfig,
    driver: &mpsc::Sender<super::connection::Inbound>,
    admission: &Admission,
    limits: ConnLimits,
    tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Option<SocketAddr>> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let acceptor = super::tls::acceptor(tls)?;
    let listener = TcpListener::bind(tls.address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on secureClientPort {}: {e}", tls.address))?;
    let addr = listener.local_addr()?;
    tracing::info!("serving TLS clients on {addr}");
    let (driver, admission) = (driver.clone(), admission.clone());
    tasks.push(tokio::spawn(async move {
        loop {
            let (stream, remote, conn) = admission.accept(&listener).await;
            let (driver, admission, acceptor) =
                (driver.clone(), admission.clone(), acceptor.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream)).await
                {
                    Ok(Ok(stream)) => {
                        let x509 = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(super::tls::x509_identity);
                        serve_connection(stream, remote, conn, limits, x509, driver).await;
                    }
                    Ok(Err(e)) => tracing::info!(%remote, "TLS handshake failed: {e}"),
                    Err(_) => tracing::info!(%remote, "TLS handshake not done in time"),
                }
                admission.release(remote);
            });
        }
    }));
    Ok(Some(addr))
}

#[cfg(madsim)]
async fn start_tls(
    config: &ServerConfig,
    _driver: &mpsc::Sender<super::connection::Inbound>,
    _admission: &Admission,
    _limits: ConnLimits,
    _tasks: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Option<SocketAddr>> {
    if config.tls.is_some() {
        tracing::warn!("TLS is not served under the simulator");
    }
    Ok(None)
}

type HttpListeners = (Option<SocketAddr>, Option<SocketAddr>, Vec<JoinHandle<()>>);

/// Starts the AdminServer and the Prometheus endpoint where configured. As ZooKeeper's
/// QuorumPeer, a server whose AdminServer port cannot be bound serves without it (and
/// says so); a metrics port that cannot be bound refuses the start, as ZooKeeper's
/// Prometheus provider does.
#[cfg(not(madsim))]
async fn start_http(
    config: &ServerConfig,
    driver: &mpsc::Sender<super::connection::Inbound>,
) -> anyhow::Result<HttpListeners> {
    use super::http::{serve, Endpoint};
    let mut tasks = Vec::new();
    let mut admin_addr = None;
    if let Some(admin) = &config.admin {
        let endpoint = Endpoint::Admin {
            command_url: admin.command_url.clone(),
        };
        match serve(admin.address, endpoint, driver.clone()).await {
            Ok((addr, task)) => {
                tracing::info!(
                    "AdminServer on http://{addr}{}/ (admin.enableServer=false turns it off)",
                    admin.command_url
                );
                admin_addr = Some(addr);
                tasks.push(task);
            }
            Err(e) => tracing::warn!(
                "cannot start the AdminServer on {}: {e}; serving without it",
                admin.address
            ),
        }
    }
    let mut metrics_addr = None;
    if let Some(addr) = config.metrics {
        let (addr, task) = serve(addr, Endpoint::Metrics, driver.clone())
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve Prometheus metrics on {addr}: {e}"))?;
        tracing::info!("Prometheus metrics on http://{addr}/metrics");
        metrics_addr = Some(addr);
        tasks.push(task);
    }
    Ok((admin_addr, metrics_addr, tasks))
}

/// The simulator has no HTTP: its servers never configure it.
#[cfg(madsim)]
async fn start_http(
    config: &ServerConfig,
    _driver: &mpsc::Sender<super::connection::Inbound>,
) -> anyhow::Result<HttpListeners> {
    if config.admin.is_some() || config.metrics.is_some() {
        tracing::warn!("the AdminServer and metrics are not served under the simulator");
    }
    Ok((None, None, Vec::new()))
}
