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
}

/// Run server `index` on the current simulated node until it is killed or stops (a fatal
/// error such as a failed fsync, or a refused recovery).
pub async fn serve(
    index: usize,
    fs: SimFs,
    clocks: Clocks,
    start: madsim::time::Instant,
    timing: NodeTiming,
) {
    let data_dir = format!("/data/s{index}");
    let mut config = ServerConfig::standalone(CLIENT_PORT, &data_dir);
    config.client_port_address = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
    config.tick_time_ms = timing.tick_ms;
    config.min_session_timeout_ms = (2 * timing.tick_ms) as i32;
    config.max_session_timeout_ms = (20 * timing.tick_ms) as i32;
    config.max_client_cnxns = 0;
    let mut opts = FileStorageOptions::new(&data_dir, &data_dir);
    opts.preallocate_bytes = 64 << 10;
    opts.log_roll_bytes = 1 << 20;
    opts.write_buffer_bytes = 4 << 10;
    let storage = match FileStorage::open(fs, opts) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(server = index, "storage refused to open: {e}");
            return;
        }
    };
    let clock = Arc::new(SkewedClock {
        index,
        clocks,
        start,
    });
    match zabkeeper::runtime::start(config, Box::new(storage), clock).await {
        Ok(handle) => {
            if let Err(e) = handle.wait().await {
                tracing::warn!(server = index, "server stopped: {e:?}");
            }
        }
        Err(e) => tracing::warn!(server = index, "server refused to start: {e:#}"),
    }
}

/// A client session on the real node.
pub struct NodeConn {
    client: Client,
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
            Ok(Ok(client)) => Ok(NodeConn { client }),
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

    /// getData.
    pub async fn get_data(&mut self, path: &str) -> Result<DataReply, OpError> {
        let reply = self
            .client
            .submit(Request::GetData {
                path: path.into(),
                watch: false,
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
