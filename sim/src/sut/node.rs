//! The real node as the system under test: `zabkeeper::runtime::start` with
//! `FileStorage<SimFs>` and a skewed clock on each simulated server, and
//! `zabkeeper::client::Client` on each simulated client.

use std::sync::Arc;
use std::time::Duration;

use zabkeeper::client::{Client, ClientOptions, Error};
use zabkeeper::proto::client::{Request, Response};
use zabkeeper::runtime::{Clock, ServerConfig};
use zabkeeper::storage::{FileStorage, FileStorageOptions, SimFs};
use zabkeeper::types::{Acl, CreateMode, ErrorCode};

use super::{DataReply, OpError, SetReply, CLIENT_PORT};
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
}

/// Logs and reports that server `index` refused to start (its storage or recovery
/// refused the data on its disk).
fn refused_start(
    observer: &crate::judge::Observer,
    start: madsim::time::Instant,
    index: usize,
    reason: String,
) {
    tracing::warn!(server = index, "{reason}");
    let at_ms = (madsim::time::Instant::now() - start).as_millis() as u64;
    observer.observe(
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
    observer: crate::judge::Observer,
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
            refused_start(
                &observer,
                start,
                index,
                format!("storage refused to open: {e}"),
            );
            return;
        }
    };
    let storage = broken::wrap(storage);
    let clock = Arc::new(SkewedClock {
        index,
        clocks,
        start,
    });
    // The node's observation hook feeds the global checks (one leader per epoch, one txn
    // per zxid, committed zxid monotonic, same digest per zxid) and tells the convergence
    // check each server's current tree (after every commit and every tree load).
    let refusals = observer.clone();
    let hook: zabkeeper::runtime::ObserverFn = Arc::new(move |o| {
        use crate::judge::Observed;
        use zabkeeper::runtime::Observation;
        let at_ms = (madsim::time::Instant::now() - start).as_millis() as u64;
        match o {
            Observation::Leading { epoch } => {
                observer.observe(at_ms, index, Observed::Leading { epoch })
            }
            Observation::Committed {
                zxid,
                txn_hash,
                digest,
            } => {
                observer.observe(at_ms, index, Observed::Committed { zxid, txn_hash });
                observer.observe(at_ms, index, Observed::Digest { zxid, digest });
            }
            Observation::SessionClosed { session, zxid } => observer.observe(
                at_ms,
                index,
                Observed::SessionClosed {
                    session: format!("{session:#x}"),
                    zxid,
                },
            ),
            Observation::TreeLoaded {
                source,
                zxid,
                digest,
            } => observer.observe(
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
    events: Option<tokio::sync::mpsc::UnboundedReceiver<zabkeeper::client::WatchedEvent>>,
}

fn map_err(e: Error) -> OpError {
    match e {
        Error::Keeper(ErrorCode::SessionExpired) => OpError::Indeterminate("SessionExpired".into()),
        e if e.is_outcome_unknown() => OpError::Indeterminate(format!("{e}")),
        Error::Closed => OpError::Indeterminate("Closed".into()),
        e => OpError::Definite(format!("{e}")),
    }
}

impl NodeConn {
    /// Open a session to `connect_string` within `timeout`.
    pub async fn connect(
        connect_string: &str,
        session_timeout: Duration,
        seed: u64,
        timeout: Duration,
    ) -> Result<NodeConn, OpError> {
        let mut options = ClientOptions::with_timeout(session_timeout);
        options.seed = seed;
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

    /// Whether the session can never be used again.
    pub fn is_dead(&self) -> bool {
        self.client.state().is_terminal()
    }

    /// Whether the session is connected.
    pub fn is_connected(&self) -> bool {
        self.client.state() == zabkeeper::client::SessionState::Connected
    }

    /// The session id in hex.
    pub fn session(&self) -> String {
        format!("{:#x}", self.client.session_id())
    }

    /// Watch notifications received so far, as `(event type name, path)`; session state
    /// changes are left out.
    pub fn drain_events(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(rx) = self.events.as_mut() {
            while let Ok(e) = rx.try_recv() {
                if e.event_type != zabkeeper::types::EventType::None {
                    out.push((format!("{:?}", e.event_type), e.path));
                }
            }
        }
        out
    }

    /// getData, optionally leaving a data watch.
    pub async fn get_data(&mut self, path: &str, watch: bool) -> Result<DataReply, OpError> {
        let reply = self
            .client
            .submit(Request::GetData {
                path: path.into(),
                watch,
            })
            .await
            .map_err(map_err)?;
        if reply.err == ErrorCode::NoNode.code() {
            return Ok(DataReply {
                data: None,
                version: -1,
                zxid: reply.zxid,
            });
        }
        let zxid = reply.zxid;
        match reply.into_result().map_err(map_err)? {
            Response::GetData { data, stat } => Ok(DataReply {
                data: Some(String::from_utf8_lossy(&data).into_owned()),
                version: stat.version,
                zxid,
            }),
            other => Err(OpError::Indeterminate(format!("unexpected {other:?}"))),
        }
    }

    /// setData with an expected version (-1: any).
    pub async fn set_data(
        &mut self,
        path: &str,
        data: &str,
        version: i32,
    ) -> Result<SetReply, OpError> {
        match self.client.set_data(path, data.as_bytes(), version).await {
            Ok(stat) => Ok(SetReply::Ok {
                version: stat.version,
                zxid: stat.mzxid,
            }),
            Err(Error::Keeper(ErrorCode::BadVersion)) => Ok(SetReply::BadVersion),
            Err(Error::Keeper(ErrorCode::NoNode)) => Ok(SetReply::NoNode),
            Err(e) => Err(map_err(e)),
        }
    }

    /// create (persistent, open ACL); `Ok(false)` if it already existed.
    pub async fn create(&mut self, path: &str, data: &str) -> Result<(bool, i64), OpError> {
        match self
            .client
            .create(
                path,
                data.as_bytes(),
                &Acl::open_unsafe(),
                CreateMode::Persistent,
            )
            .await
        {
            Ok((_, stat)) => Ok((true, stat.czxid)),
            Err(Error::Keeper(ErrorCode::NodeExists)) => Ok((false, 0)),
            Err(e) => Err(map_err(e)),
        }
    }

    /// create with a mode: the actual path (sequential suffix), or the error code name.
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

    /// delete with an expected version: `Ok(None)` when deleted, else the error name.
    pub async fn delete(&mut self, path: &str, version: i32) -> Result<Option<String>, OpError> {
        match self.client.delete(path, version).await {
            Ok(()) => Ok(None),
            Err(Error::Keeper(code @ (ErrorCode::NoNode | ErrorCode::BadVersion))) => {
                Ok(Some(format!("{code:?}")))
            }
            Err(e) => Err(map_err(e)),
        }
    }

    /// A multi of setData ops `(path, data, expected version)`: the new (version, zxid) of
    /// each, or the error code name when the whole multi failed (nothing applied).
    pub async fn multi_set(
        &mut self,
        ops: &[(String, String, i32)],
    ) -> Result<Result<Vec<(i32, i64)>, String>, OpError> {
        use zabkeeper::proto::client::{MultiOp, MultiResult};
        let ops = ops
            .iter()
            .map(|(path, data, version)| MultiOp::SetData {
                path: path.clone(),
                data: data.as_bytes().to_vec(),
                version: *version,
            })
            .collect();
        match self.client.multi(ops).await {
            Ok(results) => {
                // A failed multi answers an error per op (the failing op's code, then
                // RuntimeInconsistency): all or nothing, so any error fails the whole.
                if let Some(err) = results.iter().find_map(|r| match r {
                    MultiResult::Error { err } => Some(*err),
                    _ => None,
                }) {
                    return Ok(Err(format!("multi failed: {}", Error::from_code(err))));
                }
                results
                    .into_iter()
                    .map(|r| match r {
                        MultiResult::SetData { stat } => Ok((stat.version, stat.mzxid)),
                        other => Err(OpError::Indeterminate(format!("unexpected {other:?}"))),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Ok)
            }
            Err(e) if e.is_outcome_unknown() || matches!(e, Error::Closed) => Err(map_err(e)),
            Err(e @ Error::Keeper(ErrorCode::SessionExpired)) => Err(map_err(e)),
            Err(e) => Ok(Err(format!("{e}"))),
        }
    }

    /// getChildren, sorted.
    pub async fn get_children(&mut self, path: &str) -> Result<Vec<String>, OpError> {
        let mut c = self
            .client
            .get_children(path, false)
            .await
            .map_err(map_err)?;
        c.sort();
        Ok(c)
    }

    /// sync.
    pub async fn sync(&mut self, path: &str) -> Result<i64, OpError> {
        self.client.sync(path).await.map_err(map_err)?;
        Ok(self.client.last_zxid_seen())
    }

    /// Close the session (best effort).
    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Deliberately broken storage behaviour for the node, behind cargo features, to prove the
/// testbed catches these bug classes in the real server's pipeline:
///
/// - `broken-node-lying-fsync`: `sync` reports durability without fsyncing (only every
///   8th call really syncs), so the server acknowledges writes before they are durable;
/// - `broken-node-recovery-drops-tail`: recovery silently drops the last logged txn, as a
///   too-eager torn-tail repair would.
///
/// Without those features [`wrap`] returns the storage unchanged.
mod broken {
    use zabkeeper::storage::{Recovered, Storage, StorageError, StorageLayer};
    use zabkeeper::types::Zxid;

    /// Box the storage, wrapped if a broken-node feature is on.
    pub fn wrap<S: Storage + Send + 'static>(inner: S) -> Box<dyn Storage + Send> {
        if cfg!(any(
            feature = "broken-node-lying-fsync",
            feature = "broken-node-recovery-drops-tail"
        )) {
            Box::new(Broken { inner, syncs: 0 })
        } else {
            Box::new(inner)
        }
    }

    struct Broken<S> {
        inner: S,
        syncs: u64,
    }

    impl<S: Storage> StorageLayer for Broken<S> {
        type Inner = S;
        fn inner(&self) -> &S {
            &self.inner
        }
        fn inner_mut(&mut self) -> &mut S {
            &mut self.inner
        }
        fn sync(&mut self) -> Result<Zxid, StorageError> {
            self.syncs += 1;
            if cfg!(feature = "broken-node-lying-fsync") && !self.syncs.is_multiple_of(8) {
                // BUG (deliberate): claim durability without an fsync.
                return Ok(self.inner.last_logged_zxid());
            }
            self.inner.sync()
        }
        fn recover(&mut self) -> Result<Recovered, StorageError> {
            let mut r = self.inner.recover()?;
            if cfg!(feature = "broken-node-recovery-drops-tail") {
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
