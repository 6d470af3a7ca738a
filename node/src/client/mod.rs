//! An async ZooKeeper client over [`crate::proto::client`], usable under
//! madsim.
//!
//! [`Client::connect`] establishes a session with one of the servers of a
//! connect string (`host:port,host:port[/chroot]`, tried in an order drawn
//! from [`ClientOptions::seed`]) and spawns one background task that owns
//! the connection: it pings when idle, reconnects to another server within
//! the session (sending the last zxid seen, the session id and password),
//! re-sends auth and re-registers watches with setWatches2, and publishes
//! the [`SessionState`] on a `tokio::sync::watch` channel.
//!
//! Operations are typed methods (`create`, `get_data`, ...) returning
//! `Result<T, Error>`; [`Client::submit`] sends any [`Request`] and returns
//! the raw [`Reply`] with its zxid and error code, for callers (like the
//! simulator) that record exactly what the server said.
//!
//! Watch notifications and session state changes arrive on one unbounded
//! `mpsc` receiver ([`Client::take_events`]) as [`WatchedEvent`]s. An event
//! is queued before the reply that follows it on the wire is handed to its
//! caller, so after a read returns, `try_recv` sees every event the server
//! sent before that read's reply.
//!
//! Dropping every `Client` handle stops the task *without* closing the
//! session (the session then expires on the server, as if the client had
//! crashed); call [`Client::close`] to end it cleanly.

pub mod cli;
mod connect_string;
mod session;
mod watches;

#[cfg(test)]
mod live_tests;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, oneshot, watch};

pub use self::connect_string::{Chroot, ConnectString, DEFAULT_PORT};
use self::session::{Command, Op, Session};
use crate::proto::client::DEFAULT_MAX_FRAME_LEN;
pub use crate::proto::client::{
    ClientInfo, CreateRequest, CreateTtlRequest, MultiOp, MultiResult, Request, Response,
};
use crate::types::{Acl, CreateMode, ErrorCode, EventType, SessionId, Stat, Zxid};

/// Errors of client operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A ZooKeeper error: either the server's answer (`NoNode`,
    /// `BadVersion`, ...) or the session's fate (`ConnectionLoss`: the
    /// connection broke with the request in flight, its outcome is unknown;
    /// `SessionExpired`; `AuthFailed`).
    #[error("{0}")]
    Keeper(ErrorCode),
    /// An error code this client does not know.
    #[error("unknown error code {0}")]
    UnknownCode(i32),
    /// The client was closed (or its task stopped).
    #[error("client closed")]
    Closed,
    /// A bad argument, caught before anything was sent.
    #[error("bad arguments: {0}")]
    BadArguments(String),
    /// The server sent something this client cannot decode.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl Error {
    /// The error for a reply header's error code.
    pub fn from_code(code: i32) -> Error {
        match ErrorCode::from_code(code) {
            Some(c) => Error::Keeper(c),
            None => Error::UnknownCode(code),
        }
    }

    /// The ZooKeeper error code, where there is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Keeper(c) => Some(*c),
            Error::BadArguments(_) => Some(ErrorCode::BadArguments),
            Error::Protocol(_) => Some(ErrorCode::MarshallingError),
            Error::UnknownCode(_) | Error::Closed => None,
        }
    }

    /// Whether the operation's outcome is unknown: it may or may not have
    /// taken effect.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(
            self,
            Error::Keeper(
                ErrorCode::ConnectionLoss | ErrorCode::OperationTimeout | ErrorCode::RequestTimeout
            ) | Error::Protocol(_)
        )
    }
}

/// The session's state, as published by [`Client::state_changes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Establishing the first connection.
    Connecting,
    /// Connected to a server.
    Connected,
    /// Connected to a read-only server (the client allowed it with
    /// [`ClientOptions::read_only`]): reads are served, writes fail with NotReadOnly.
    ConnectedReadOnly,
    /// The connection was lost; reconnecting within the session.
    Disconnected,
    /// The session expired (terminal).
    Expired,
    /// Authentication failed (terminal, as in ZooKeeper).
    AuthFailed,
    /// The client was closed (terminal).
    Closed,
}

impl SessionState {
    /// Whether the session can never be used again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            SessionState::Expired | SessionState::AuthFailed | SessionState::Closed
        )
    }
}

/// A watch notification or a session state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    /// What happened; [`EventType::None`] for state changes.
    pub event_type: EventType,
    /// A [`crate::types::keeper_state`] value.
    pub state: i32,
    /// The znode's client path (chroot removed); empty for state changes.
    pub path: String,
}

/// Options of [`Client::connect`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The requested session timeout (the server may negotiate it).
    pub session_timeout: Duration,
    /// How long `connect` waits for the first session; defaults to
    /// `session_timeout`.
    pub connect_timeout: Option<Duration>,
    /// Seed of the rng that orders the servers and jitters reconnects.
    pub seed: u64,
    /// Resume this session (id, password) instead of creating one.
    pub session: Option<(SessionId, Vec<u8>)>,
    /// Accept a read-only server.
    pub read_only: bool,
    /// Largest frame accepted from a server.
    pub max_frame_len: usize,
    /// Longest random pause after every server of the list failed once.
    pub reconnect_delay: Duration,
    /// Most requests held while disconnected; more fail with
    /// `ConnectionLoss`.
    pub max_queued: usize,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            session_timeout: Duration::from_secs(30),
            connect_timeout: None,
            seed: 0,
            session: None,
            read_only: false,
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            reconnect_delay: Duration::from_millis(250),
            max_queued: 10_000,
        }
    }
}

impl ClientOptions {
    /// Default options with this session timeout.
    pub fn with_timeout(session_timeout: Duration) -> ClientOptions {
        ClientOptions {
            session_timeout,
            ..ClientOptions::default()
        }
    }
}

/// A server's raw answer to a request sent with [`Client::submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The reply header's zxid: the txn's zxid for a write, the server's
    /// last applied zxid for a read.
    pub zxid: Zxid,
    /// The reply header's error code (0 for success).
    pub err: i32,
    /// The decoded body ([`Response::Empty`] for errors, except multi).
    pub response: Response,
}

impl Reply {
    /// The response, or the reply's error.
    pub fn into_result(self) -> Result<Response, Error> {
        if self.err == 0 {
            Ok(self.response)
        } else {
            Err(Error::from_code(self.err))
        }
    }
}

/// State shared between the handles and the background task.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) session_id: AtomicI64,
    pub(crate) last_zxid: AtomicI64,
    pub(crate) negotiated_timeout_ms: AtomicI32,
}

/// A ZooKeeper client: a cheap, cloneable handle on one session.
#[derive(Debug, Clone)]
pub struct Client {
    cmd_tx: mpsc::Sender<Command>,
    state_rx: watch::Receiver<SessionState>,
    shared: Arc<Shared>,
    events: Arc<Mutex<Option<mpsc::UnboundedReceiver<WatchedEvent>>>>,
}

fn unexpected(resp: Response) -> Error {
    Error::Protocol(format!("unexpected response {resp:?}"))
}

impl Client {
    /// Connects to one of the servers of `connect_string` and establishes a
    /// session. Returns once connected, or fails with `ConnectionLoss` if no
    /// server accepted within the connect timeout, `SessionExpired` if a
    /// resumed session was refused, or `BadArguments` for a bad connect
    /// string. Must run inside a tokio (or madsim) runtime.
    pub async fn connect(connect_string: &str, options: ClientOptions) -> Result<Client, Error> {
        let cs = ConnectString::parse(connect_string)?;
        if options.session_timeout.is_zero() {
            return Err(Error::BadArguments(
                "session timeout must be positive".into(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let mut hosts = cs.hosts;
        hosts.shuffle(&mut rng);
        let (cmd_tx, cmd_rx) = mpsc::channel(1024);
        let (state_tx, state_rx) = watch::channel(SessionState::Connecting);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let limit = options.connect_timeout.unwrap_or(options.session_timeout);
        let session = Session::new(
            hosts,
            rng,
            Chroot::new(cs.chroot),
            options,
            shared.clone(),
            state_tx,
            events_tx,
            cmd_rx,
        );
        tokio::spawn(session.run());
        let client = Client {
            cmd_tx,
            state_rx,
            shared,
            events: Arc::new(Mutex::new(Some(events_rx))),
        };
        let mut rx = client.state_rx.clone();
        let waited = tokio::time::timeout(limit, async {
            rx.wait_for(|s| *s != SessionState::Connecting)
                .await
                .map(|s| *s)
        })
        .await;
        match waited {
            // Disconnected: the session was established and lost again at once;
            // the task is already reconnecting.
            Ok(Ok(
                SessionState::Connected
                | SessionState::ConnectedReadOnly
                | SessionState::Disconnected,
            )) => Ok(client),
            Ok(Ok(SessionState::Expired)) => Err(Error::Keeper(ErrorCode::SessionExpired)),
            Ok(Ok(SessionState::AuthFailed)) => Err(Error::Keeper(ErrorCode::AuthFailed)),
            Ok(Ok(_)) | Ok(Err(_)) => Err(Error::Closed),
            // Dropping `client` here stops the task.
            Err(_) => Err(Error::Keeper(ErrorCode::ConnectionLoss)),
        }
    }

    /// The current session state.
    pub fn state(&self) -> SessionState {
        *self.state_rx.borrow()
    }

    /// A receiver of session state changes.
    pub fn state_changes(&self) -> watch::Receiver<SessionState> {
        self.state_rx.clone()
    }

    /// The watch event receiver; `Some` only the first time it is asked for.
    pub fn take_events(&self) -> Option<mpsc::UnboundedReceiver<WatchedEvent>> {
        self.events.lock().ok().and_then(|mut e| e.take())
    }

    /// The session id (0 before the first connection).
    pub fn session_id(&self) -> SessionId {
        self.shared.session_id.load(Ordering::Relaxed)
    }

    /// The negotiated session timeout.
    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(
            self.shared
                .negotiated_timeout_ms
                .load(Ordering::Relaxed)
                .max(0) as u64,
        )
    }

    /// The highest zxid seen in a reply.
    pub fn last_zxid_seen(&self) -> Zxid {
        self.shared.last_zxid.load(Ordering::Relaxed)
    }

    fn terminal_error(&self) -> Error {
        match self.state() {
            SessionState::Expired => Error::Keeper(ErrorCode::SessionExpired),
            SessionState::AuthFailed => Error::Keeper(ErrorCode::AuthFailed),
            _ => Error::Closed,
        }
    }

    /// Sends any request and returns the server's raw reply (zxid, error
    /// code, body). `Err` only for connection-level failures:
    /// `ConnectionLoss` (outcome unknown), `SessionExpired`, `Closed`.
    /// Connection-managed requests (ping, auth, setWatches, closeSession)
    /// are refused: use [`Client::add_auth`] and [`Client::close`].
    pub async fn submit(&self, request: Request) -> Result<Reply, Error> {
        if matches!(
            request,
            Request::Ping
                | Request::Auth { .. }
                | Request::SetWatches { .. }
                | Request::SetWatches2 { .. }
                | Request::CloseSession
        ) {
            return Err(Error::BadArguments(format!(
                "opcode {} is managed by the client",
                request.opcode()
            )));
        }
        let (tx, rx) = oneshot::channel();
        if self
            .cmd_tx
            .send(Command::Op(Op::Submit { request, reply: tx }))
            .await
            .is_err()
        {
            return Err(self.terminal_error());
        }
        rx.await.unwrap_or_else(|_| Err(self.terminal_error()))
    }

    /// Sends a request and returns its response, turning error replies into
    /// `Err`.
    pub async fn call(&self, request: Request) -> Result<Response, Error> {
        self.submit(request).await?.into_result()
    }

    /// Creates a node (create2, or createContainer for `Container`) and
    /// returns its actual path (with the sequence suffix) and stat. TTL
    /// modes need [`Client::create_ttl`].
    pub async fn create(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
    ) -> Result<(String, Stat), Error> {
        if mode.is_ttl() {
            return Err(Error::BadArguments("TTL modes need create_ttl".into()));
        }
        let req = CreateRequest {
            path: path.into(),
            data: Some(data.to_vec()),
            acl: acl.to_vec(),
            flags: mode.flag(),
        };
        let req = if mode.is_container() {
            Request::CreateContainer(req)
        } else {
            Request::Create2(req)
        };
        match self.call(req).await? {
            Response::Create2 { path, stat } => Ok((path, stat)),
            other => Err(unexpected(other)),
        }
    }

    /// Creates a node with a time to live (createTTL); `mode` must be a TTL
    /// mode.
    pub async fn create_ttl(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
        ttl: Duration,
    ) -> Result<(String, Stat), Error> {
        if !mode.is_ttl() {
            return Err(Error::BadArguments("create_ttl needs a TTL mode".into()));
        }
        let req = CreateTtlRequest {
            path: path.into(),
            data: Some(data.to_vec()),
            acl: acl.to_vec(),
            flags: mode.flag(),
            ttl: ttl.as_millis().min(i64::MAX as u128) as i64,
        };
        match self.call(Request::CreateTtl(req)).await? {
            Response::Create2 { path, stat } => Ok((path, stat)),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes a node; `version` -1 matches any version.
    pub async fn delete(&self, path: &str, version: i32) -> Result<(), Error> {
        self.call(Request::Delete {
            path: path.into(),
            version,
        })
        .await
        .map(|_| ())
    }

    /// The node's stat, or `None` if it does not exist. With `watch`, sets a
    /// data watch (node exists) or an exist watch (it does not).
    pub async fn exists(&self, path: &str, watch: bool) -> Result<Option<Stat>, Error> {
        let reply = self
            .submit(Request::Exists {
                path: path.into(),
                watch,
            })
            .await?;
        if reply.err == ErrorCode::NoNode.code() {
            return Ok(None);
        }
        match reply.into_result()? {
            Response::Stat { stat } => Ok(Some(stat)),
            other => Err(unexpected(other)),
        }
    }

    /// The node's data (empty when null) and stat, optionally setting a data watch.
    pub async fn get_data(&self, path: &str, watch: bool) -> Result<(Vec<u8>, Stat), Error> {
        let (data, stat) = self.get_data_opt(path, watch).await?;
        Ok((data.unwrap_or_default(), stat))
    }

    /// The node's data (`None` when it is null) and stat.
    pub async fn get_data_opt(
        &self,
        path: &str,
        watch: bool,
    ) -> Result<(Option<Vec<u8>>, Stat), Error> {
        match self
            .call(Request::GetData {
                path: path.into(),
                watch,
            })
            .await?
        {
            Response::GetData { data, stat } => Ok((data, stat)),
            other => Err(unexpected(other)),
        }
    }

    /// Sets the node's data if its version matches (-1: any).
    pub async fn set_data(&self, path: &str, data: &[u8], version: i32) -> Result<Stat, Error> {
        match self
            .call(Request::SetData {
                path: path.into(),
                data: Some(data.to_vec()),
                version,
            })
            .await?
        {
            Response::Stat { stat } => Ok(stat),
            other => Err(unexpected(other)),
        }
    }

    /// The node's ACL and stat.
    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), Error> {
        match self.call(Request::GetAcl { path: path.into() }).await? {
            Response::GetAcl { acl, stat } => Ok((acl, stat)),
            other => Err(unexpected(other)),
        }
    }

    /// Sets the node's ACL if its ACL version matches (-1: any).
    pub async fn set_acl(&self, path: &str, acl: &[Acl], version: i32) -> Result<Stat, Error> {
        match self
            .call(Request::SetAcl {
                path: path.into(),
                acl: acl.to_vec(),
                version,
            })
            .await?
        {
            Response::Stat { stat } => Ok(stat),
            other => Err(unexpected(other)),
        }
    }

    /// The node's children, optionally setting a child watch.
    pub async fn get_children(&self, path: &str, watch: bool) -> Result<Vec<String>, Error> {
        match self
            .call(Request::GetChildren {
                path: path.into(),
                watch,
            })
            .await?
        {
            Response::GetChildren { children } => Ok(children),
            other => Err(unexpected(other)),
        }
    }

    /// The node's children and stat (getChildren2).
    pub async fn get_children2(
        &self,
        path: &str,
        watch: bool,
    ) -> Result<(Vec<String>, Stat), Error> {
        match self
            .call(Request::GetChildren2 {
                path: path.into(),
                watch,
            })
            .await?
        {
            Response::GetChildren2 { children, stat } => Ok((children, stat)),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until the connected server has caught up with the leader.
    pub async fn sync(&self, path: &str) -> Result<(), Error> {
        self.call(Request::Sync { path: path.into() })
            .await
            .map(|_| ())
    }

    /// Runs ops atomically. `Ok` carries one result per op; if the multi
    /// failed, every result is [`MultiResult::Error`] (the failing op with
    /// its code, the others with 0 or `RuntimeInconsistency`).
    pub async fn multi(&self, ops: Vec<MultiOp>) -> Result<Vec<MultiResult>, Error> {
        match self.call(Request::Multi(ops)).await? {
            Response::Multi(results) => Ok(results),
            other => Err(unexpected(other)),
        }
    }

    /// Runs read ops (getData / getChildren) in one request; each result is
    /// independent.
    pub async fn multi_read(&self, ops: Vec<MultiOp>) -> Result<Vec<MultiResult>, Error> {
        match self.call(Request::MultiRead(ops)).await? {
            Response::MultiRead(results) | Response::Multi(results) => Ok(results),
            other => Err(unexpected(other)),
        }
    }

    /// Adds an identity to the session (`digest` with `user:password`, ...);
    /// it is re-sent on every reconnect. A rejected auth ends the session
    /// (state `AuthFailed`), as in ZooKeeper.
    pub async fn add_auth(&self, scheme: &str, auth: &[u8]) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        let op = Op::AddAuth {
            scheme: scheme.into(),
            auth: auth.to_vec(),
            reply: tx,
        };
        if self.cmd_tx.send(Command::Op(op)).await.is_err() {
            return Err(self.terminal_error());
        }
        rx.await.unwrap_or_else(|_| Err(self.terminal_error()))
    }

    /// Adds a persistent (or persistent recursive) watch; `mode` is a
    /// [`crate::types::watch_mode`] value.
    pub async fn add_watch(&self, path: &str, mode: i32) -> Result<(), Error> {
        self.call(Request::AddWatch {
            path: path.into(),
            mode,
        })
        .await
        .map(|_| ())
    }

    /// Removes this session's watches of a [`crate::types::watcher_type`] on
    /// a path (removeWatches); `*WatchRemoved` events follow.
    pub async fn remove_watches(&self, path: &str, watcher_type: i32) -> Result<(), Error> {
        self.call(Request::RemoveWatches {
            path: path.into(),
            watcher_type,
        })
        .await
        .map(|_| ())
    }

    /// Checks that the server holds a watch of that type (checkWatches);
    /// `NoWatcher` if not.
    pub async fn check_watches(&self, path: &str, watcher_type: i32) -> Result<(), Error> {
        self.call(Request::CheckWatches {
            path: path.into(),
            watcher_type,
        })
        .await
        .map(|_| ())
    }

    /// This session's ephemeral nodes under a path prefix.
    pub async fn get_ephemerals(&self, prefix_path: &str) -> Result<Vec<String>, Error> {
        match self
            .call(Request::GetEphemerals {
                prefix_path: prefix_path.into(),
            })
            .await?
        {
            Response::GetEphemerals { ephemerals } => Ok(ephemerals),
            other => Err(unexpected(other)),
        }
    }

    /// The number of descendants of a node.
    pub async fn get_all_children_number(&self, path: &str) -> Result<i32, Error> {
        match self
            .call(Request::GetAllChildrenNumber { path: path.into() })
            .await?
        {
            Response::GetAllChildrenNumber { total } => Ok(total),
            other => Err(unexpected(other)),
        }
    }

    /// The identities the server associates with this session.
    pub async fn who_am_i(&self) -> Result<Vec<ClientInfo>, Error> {
        match self.call(Request::WhoAmI).await? {
            Response::WhoAmI { client_info } => Ok(client_info),
            other => Err(unexpected(other)),
        }
    }

    /// Closes the session (closeSession) and stops the client. Closing an
    /// already ended session is `Ok`.
    pub async fn close(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        if self.cmd_tx.send(Command::Close(tx)).await.is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }
}
