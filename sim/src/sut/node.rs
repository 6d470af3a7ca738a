//! The real node as the system under test: `zabkeeper::runtime::start` with
//! `FileStorage<SimFs>` and a skewed clock on each simulated server, and
//! `zabkeeper::client::Client` on each simulated client.

use std::sync::Arc;
use std::time::Duration;

use zabkeeper::client::{Client, ClientOptions, Error, Reply, WatchedEvent};
use zabkeeper::proto::client::Request;
use zabkeeper::runtime::{Clock, ServerConfig};
use zabkeeper::storage::{FileStorage, FileStorageOptions, SimFs};
use zabkeeper::types::{Acl, CreateMode, ErrorCode};

use super::{OpError, CLIENT_PORT};
use crate::clock::Clocks;

/// Wall-clock epoch of simulated time 0 (2024-01-01T00:00:00Z), in ms.
pub const EPOCH_MS: i64 = 1_704_067_200_000;

/// Server `index`'s clock: simulated time plus the plan's skew for that server.
pub struct SkewedClock {
    index: usize,
    clocks: Clocks,
    start: madsim::time::Instant,
}

impl Clock for SkewedClock {
    fn now_ms(&self) -> i64 {
        let true_ms = self.start.elapsed().as_millis() as u64;
        EPOCH_MS + self.clocks.read(self.index, true_ms) as i64
    }

    fn timer_permille(&self) -> u32 {
        self.clocks.timer(self.index)
    }
}

/// Timing of the simulated servers.
#[derive(Debug, Clone, Copy)]
pub struct NodeTiming {
    /// tickTime.
    pub tick_ms: u64,
    /// Voting servers of the ensemble (1: standalone).
    pub voters: usize,
    /// Observers of the ensemble.
    pub observers: usize,
    /// `snapCount`.
    pub snap_count: u64,
    /// Autopurge at every start (`autopurge.purgeInterval=1`, `snapRetainCount=3`).
    pub autopurge: bool,
    /// `commitLogCount`.
    pub commit_log_count: usize,
    /// `initLimit` in ticks.
    pub init_limit: u32,
    /// `syncLimit` in ticks.
    pub sync_limit: u32,
    /// `quorumReads`.
    pub quorum_reads: bool,
    /// `globalOutstandingLimit`.
    pub global_outstanding_limit: usize,
    /// Core ticks per tickTime; `None`: derived from tickTime, as a real server does.
    pub core_ticks: Option<u32>,
    /// `zabkeeper.zxidCounterLimit`.
    pub zxid_counter_limit: Option<u32>,
    /// `readonlymode.enabled`.
    pub read_only: bool,
    /// `localSessionsEnabled` (and `localSessionsUpgradingEnabled` when `Some(true)`).
    pub local_sessions: Option<bool>,
}

/// Logs and reports that server `index` refused to start (its storage or recovery
/// refused the data on its disk).
fn refused_start(
    log: &crate::judge::ObservationLog,
    start: madsim::time::Instant,
    index: usize,
    reason: String,
) {
    tracing::warn!(server = index, "{reason}");
    let at_ms = (madsim::time::Instant::now() - start).as_millis() as u64;
    log.observe(
        at_ms,
        index,
        crate::judge::Observed::RefusedStart { reason },
    );
}

/// The ZAB quorum port of every simulated server.
pub const QUORUM_PORT: u16 = 2888;
/// The election port of every simulated server.
pub const ELECTION_PORT: u16 = 3888;

/// Run server `index` on the current simulated node until it is killed or stops (a fatal
/// error such as a failed fsync, or a refused recovery).
pub async fn serve(
    index: usize,
    fs: SimFs,
    clocks: Clocks,
    start: madsim::time::Instant,
    timing: NodeTiming,
    log: crate::judge::ObservationLog,
    crash_points: super::crash_points::CrashPoints,
) {
    let data_dir = format!("/data/s{index}");
    let mut config = ServerConfig::standalone(CLIENT_PORT, &data_dir);
    config.client_port_address = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    config.tick_time_ms = timing.tick_ms;
    config.init_limit = timing.init_limit;
    config.sync_limit = timing.sync_limit;
    config.min_session_timeout_ms = (2 * timing.tick_ms) as i32;
    config.max_session_timeout_ms = (20 * timing.tick_ms) as i32;
    config.max_client_cnxns = 0;
    config.snap_count = timing.snap_count;
    config.commit_log_count = timing.commit_log_count;
    config.quorum_reads = timing.quorum_reads;
    config.global_outstanding_limit = timing.global_outstanding_limit;
    config.core_ticks = timing.core_ticks;
    config.zxid_counter_limit = timing.zxid_counter_limit;
    config.read_only_mode = timing.read_only;
    config.local_sessions_enabled = timing.local_sessions.is_some();
    config.local_sessions_upgrading_enabled = timing.local_sessions == Some(true);
    if timing.autopurge {
        config.purge_interval_hours = 1;
        config.snap_retain_count = 3;
    }
    let total = timing.voters + timing.observers;
    if total > 1 {
        config.servers = (0..total)
            .map(|k| zabkeeper::runtime::ServerSpec {
                id: k as u64 + 1,
                host: super::server_ip(k).to_string(),
                quorum_port: QUORUM_PORT,
                election_port: ELECTION_PORT,
                observer: k >= timing.voters,
                client_addr: None,
            })
            .collect();
        config.my_id = index as u64 + 1;
    }
    let mut opts = FileStorageOptions::new(&data_dir, &data_dir);
    opts.preallocate_bytes = 64 << 10;
    opts.log_roll_bytes = 1 << 20;
    opts.write_buffer_bytes = 4 << 10;
    let storage = match FileStorage::open(fs, opts) {
        Ok(s) => s,
        Err(e) => {
            refused_start(&log, start, index, format!("storage refused to open: {e}"));
            return;
        }
    };
    let storage = super::crash_points::CrashPointStorage::new(storage, index, crash_points);
    let storage = broken::wrap(storage);
    let clock = Arc::new(SkewedClock {
        index,
        clocks,
        start,
    });
    // The node's observation hook feeds the global checks (one leader per epoch, one txn
    // per zxid, committed zxid monotonic, same digest per zxid) and tells the convergence
    // check each server's current tree (after every commit and every tree load).
    let refusals = log.clone();
    let hook: zabkeeper::runtime::ObserverFn = Arc::new(move |o| {
        use crate::judge::Observed;
        use zabkeeper::runtime::Observation;
        let at_ms = (madsim::time::Instant::now() - start).as_millis() as u64;
        match o {
            Observation::Leading { epoch } => {
                log.observe(at_ms, index, Observed::Leading { epoch })
            }
            Observation::Committed {
                zxid,
                txn_hash,
                digest,
            } => {
                log.observe(at_ms, index, Observed::Committed { zxid, txn_hash });
                log.observe(at_ms, index, Observed::Digest { zxid, digest });
            }
            Observation::SessionClosed { session, zxid } => {
                log.observe(at_ms, index, Observed::SessionClosed { session, zxid })
            }
            Observation::LocalSessionMade { session } => {
                log.observe(at_ms, index, Observed::LocalSessionMade { session })
            }
            Observation::SessionCreated { session, zxid } => {
                log.observe(at_ms, index, Observed::SessionCreated { session, zxid })
            }
            Observation::TreeLoaded {
                source,
                zxid,
                digest,
            } => log.observe(
                at_ms,
                index,
                Observed::TreeLoaded {
                    source: source.name().into(),
                    zxid,
                    digest,
                },
            ),
        }
    });
    match zabkeeper::runtime::start_observed(config, storage, clock, Some(hook)).await {
        Ok(handle) => {
            if let Err(e) = handle.wait().await {
                tracing::warn!(server = index, "server stopped: {e:?}");
            }
        }
        Err(e) => {
            refused_start(
                &refusals,
                start,
                index,
                format!("server refused to start: {e:#}"),
            );
        }
    }
}

/// A client session on the real node.
pub struct NodeConn {
    client: Client,
    events: Option<tokio::sync::mpsc::UnboundedReceiver<WatchedEvent>>,
}

/// A client error as the history needs it: `SessionExpired` and lost connections leave
/// the outcome unknown, anything else was refused before it was sent.
fn map_err(e: Error) -> OpError {
    match e {
        Error::Keeper(ErrorCode::SessionExpired) => OpError::Indeterminate("SessionExpired".into()),
        e if e.is_outcome_unknown() => OpError::Indeterminate(format!("{e}")),
        Error::Closed => OpError::Indeterminate("Closed".into()),
        e => OpError::Definite(format!("{e}")),
    }
}

impl NodeConn {
    /// Connect with a session timeout; `timeout` bounds the whole attempt.
    pub async fn connect(
        connect_string: &str,
        session_timeout: Duration,
        seed: u64,
        timeout: Duration,
        read_only: bool,
    ) -> Result<NodeConn, OpError> {
        let mut options = ClientOptions::with_timeout(session_timeout);
        options.seed = seed;
        options.read_only = read_only;
        options.connect_timeout = Some(timeout);
        match madsim::time::timeout(timeout, Client::connect(connect_string, options)).await {
            Err(_) => Err(OpError::Definite("ConnectTimeout".into())),
            Ok(Err(e)) => Err(OpError::Definite(format!("Connect: {e}"))),
            Ok(Ok(client)) => {
                let events = client.take_events();
                Ok(NodeConn { client, events })
            }
        }
    }

    /// Whether the session has ended (expired, closed, auth failed): the connection must
    /// be replaced.
    pub fn is_dead(&self) -> bool {
        self.client.state().is_terminal()
    }

    /// Whether the session is connected to a server right now.
    pub fn is_connected(&self) -> bool {
        matches!(
            self.client.state(),
            zabkeeper::client::SessionState::Connected
                | zabkeeper::client::SessionState::ConnectedReadOnly
        )
    }

    /// The session id.
    pub fn session(&self) -> i64 {
        self.client.session_id()
    }

    /// Notifications received so far (watch events and session state changes), in the
    /// order the client handed them over.
    pub fn drain_events(&mut self) -> Vec<WatchedEvent> {
        let mut out = Vec::new();
        if let Some(rx) = self.events.as_mut() {
            while let Ok(e) = rx.try_recv() {
                out.push(e);
            }
        }
        out
    }

    /// Send one request and wait (at most `timeout`) for the server's raw reply: its
    /// header zxid and error code and its body. A reply with an error code is an answer
    /// (`Ok`); a lost connection, an expired session or the timeout leave the outcome
    /// unknown.
    pub async fn submit(&mut self, request: Request, timeout: Duration) -> Result<Reply, OpError> {
        match madsim::time::timeout(timeout, self.client.submit(request)).await {
            Err(_) => Err(OpError::Indeterminate("Timeout".into())),
            Ok(r) => r.map_err(map_err),
        }
    }

    /// create with a mode: the created path and its zxid, or the error code's name.
    pub async fn create_mode(
        &mut self,
        path: &str,
        data: &str,
        mode: CreateMode,
    ) -> Result<Result<(String, i64), String>, OpError> {
        match self
            .client
            .create(path, data.as_bytes(), &Acl::open_unsafe(), mode)
            .await
        {
            Ok((path, stat)) => Ok(Ok((path, stat.czxid))),
            Err(Error::Keeper(code @ (ErrorCode::NodeExists | ErrorCode::NoNode))) => {
                Ok(Err(format!("{code:?}")))
            }
            Err(e) => Err(map_err(e)),
        }
    }

    /// Close the session.
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

mod broken {
    use zabkeeper::storage::Storage;
    #[cfg(madsim)]
    use zabkeeper::{
        broken::{active, Bug},
        storage::{Recovered, StorageError, StorageLayer},
        types::Zxid,
    };

    /// Box the storage, wrapped if a broken-storage bug is active.
    pub fn wrap<S: Storage + Send + 'static>(inner: S) -> Box<dyn Storage + Send> {
        #[cfg(madsim)]
        if active(Bug::LyingFsync) || active(Bug::RecoveryDropsTail) {
            return Box::new(Broken { inner, syncs: 0 });
        }
        Box::new(inner)
    }

    #[cfg(madsim)]
    struct Broken<S> {
        inner: S,
        syncs: u64,
    }

    #[cfg(madsim)]
    impl<S: Storage> StorageLayer for Broken<S> {
        type Inner = S;
        fn inner(&self) -> &S {
            &self.inner
        }
        fn inner_mut(&mut self) -> &mut S {
            &mut self.inner
        }
        fn fsync(&mut self) -> Result<Zxid, StorageError> {
            self.syncs += 1;
            if active(Bug::LyingFsync) && !self.syncs.is_multiple_of(8) {
                // BUG (deliberate): claim durability without an fsync.
                return Ok(self.inner.last_logged_zxid());
            }
            self.inner.fsync()
        }
        fn recover(&mut self) -> Result<Recovered, StorageError> {
            let mut r = self.inner.recover()?;
            if active(Bug::RecoveryDropsTail) {
                // BUG (deliberate): drop the last logged txn, and forget it on disk too.
                if r.txns.pop().is_some() {
                    let keep = r
                        .txns
                        .last()
                        .map(|(z, _)| *z)
                        .or(r.snapshot.as_ref().map(|(z, _)| *z))
                        .unwrap_or(0);
                    self.inner.truncate_after(keep)?;
                }
            }
            Ok(r)
        }
    }
}
