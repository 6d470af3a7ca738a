//! The background task that owns a client's connection: handshake,
//! request/reply matching, pings, watch events, reconnects.
//!
//! One task per [`super::Client`]. It only uses what madsim simulates:
//! `tokio::net::TcpStream`, `tokio::io::split`, `tokio::time`,
//! `tokio::sync`; every `select!` is `biased`; randomness comes from a
//! seeded ChaCha rng; every write is followed by a flush.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::proto::client::{
    decode_event, decode_frame, decode_reply, decode_response, ConnectRequest, ConnectResponse,
    Request, Response,
};
use crate::types::{keeper_state, opcode, xid, ErrorCode, EventType};

use super::connect_string::Chroot;
use super::watches::{WatchRegistration, WatchRegistry};
use super::{ClientOptions, Error, Reply, SessionState, Shared, WatchedEvent};

/// What the task is asked to do by client handles.
pub(crate) enum Command {
    /// A request or an auth, sent as soon as a connection is up.
    Op(Op),
    /// Close the session.
    Close(oneshot::Sender<Result<(), Error>>),
}

/// A command that goes on the wire.
pub(crate) enum Op {
    Submit {
        request: Request,
        reply: oneshot::Sender<Result<Reply, Error>>,
    },
    AddAuth {
        scheme: String,
        auth: Vec<u8>,
        reply: oneshot::Sender<Result<(), Error>>,
    },
}

impl Op {
    fn fail(self, e: Error) {
        match self {
            Op::Submit { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Op::AddAuth { reply, .. } => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

/// A request sent and not yet answered.
struct Pending {
    xid: i32,
    opcode: i32,
    watch: WatchRegistration,
    reply: Option<oneshot::Sender<Result<Reply, Error>>>,
}

/// Why a connection (or the whole task) ended.
#[derive(Debug)]
enum End {
    /// The connection broke; reconnect within the session.
    Lost(String),
    /// The server refused the session (or said it expired).
    Expired,
    /// Authentication failed; terminal, as in ZooKeeper.
    AuthFailed,
    /// `close()` completed (or was asked while disconnected).
    Closed,
    /// Every client handle is gone: stop without closing the session.
    HandleDropped,
}

/// The connection a handshake produced.
struct Connection {
    stream: TcpStream,
    rbuf: BytesMut,
    resp: ConnectResponse,
}

/// The background task's state.
pub(crate) struct Session {
    pub(crate) hosts: Vec<(String, u16)>,
    pub(crate) next_host: usize,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) chroot: Chroot,
    pub(crate) opts: ClientOptions,
    pub(crate) session_id: i64,
    pub(crate) passwd: Vec<u8>,
    pub(crate) negotiated: Duration,
    pub(crate) last_zxid: i64,
    pub(crate) next_xid: i32,
    pub(crate) shared: Arc<Shared>,
    pub(crate) state_tx: watch::Sender<SessionState>,
    pub(crate) events_tx: mpsc::UnboundedSender<WatchedEvent>,
    pub(crate) cmd_rx: mpsc::Receiver<Command>,
    pub(crate) queued: VecDeque<Op>,
    pending: VecDeque<Pending>,
    /// Auth replies expected, in order; `None` for auths re-sent on
    /// reconnect, which nobody waits for.
    auth_waiters: VecDeque<Option<oneshot::Sender<Result<(), Error>>>>,
    auth_info: Vec<(String, Vec<u8>)>,
    watches: WatchRegistry,
    closing: Option<oneshot::Sender<Result<(), Error>>>,
    /// Whether a read-write server ever took this session. Until one has, the session
    /// is a read-only server's local one, which no other server knows: every handshake
    /// asks for a new session (ZooKeeper's `seenRwServerBefore`), so a client that began
    /// read-only gets a real session from the first read-write server it reaches.
    seen_rw: bool,
}

impl Session {
    /// A task for the given (already shuffled) hosts.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        hosts: Vec<(String, u16)>,
        rng: ChaCha8Rng,
        chroot: Chroot,
        opts: ClientOptions,
        shared: Arc<Shared>,
        state_tx: watch::Sender<SessionState>,
        events_tx: mpsc::UnboundedSender<WatchedEvent>,
        cmd_rx: mpsc::Receiver<Command>,
    ) -> Session {
        let (session_id, passwd) = opts.session.clone().unwrap_or((0, vec![0; 16]));
        Session {
            hosts,
            next_host: 0,
            rng,
            chroot,
            negotiated: opts.session_timeout,
            last_zxid: 0,
            opts,
            session_id,
            passwd,
            next_xid: 1,
            shared,
            state_tx,
            events_tx,
            cmd_rx,
            queued: VecDeque::new(),
            pending: VecDeque::new(),
            auth_waiters: VecDeque::new(),
            auth_info: Vec::new(),
            watches: WatchRegistry::default(),
            closing: None,
            // A session given to resume was made by a read-write server.
            seen_rw: session_id != 0,
        }
    }

    /// Runs until the session ends (expired, closed, auth failed) or every
    /// handle is dropped.
    pub(crate) async fn run(mut self) {
        loop {
            let conn = match self.establish().await {
                Ok(c) => c,
                Err(end) => return self.finish(end),
            };
            match self.serve(conn).await {
                End::Lost(why) => {
                    tracing::debug!(session = self.session_id, %why, "connection lost");
                    self.on_lost();
                }
                end => return self.finish(end),
            }
        }
    }

    fn set_state(&mut self, s: SessionState) {
        self.state_tx.send_replace(s);
        let state = match s {
            SessionState::Connecting => return,
            SessionState::Connected => keeper_state::SYNC_CONNECTED,
            SessionState::ConnectedReadOnly => keeper_state::CONNECTED_READ_ONLY,
            SessionState::Disconnected => keeper_state::DISCONNECTED,
            SessionState::Expired => keeper_state::EXPIRED,
            SessionState::AuthFailed => keeper_state::AUTH_FAILED,
            SessionState::Closed => keeper_state::CLOSED,
        };
        let _ = self.events_tx.send(WatchedEvent {
            event_type: EventType::None,
            state,
            path: String::new(),
        });
    }

    fn next_xid(&mut self) -> i32 {
        let x = self.next_xid;
        self.next_xid = if x == i32::MAX { 1 } else { x + 1 };
        x
    }

    fn enqueue(&mut self, op: Op) {
        if self.queued.len() >= self.opts.max_queued {
            op.fail(Error::Keeper(ErrorCode::ConnectionLoss));
        } else {
            self.queued.push_back(op);
        }
    }

    /// Handles a command while no connection is up. Returns an end if the
    /// task must stop.
    fn on_command_disconnected(&mut self, cmd: Option<Command>) -> Option<End> {
        match cmd {
            None => Some(End::HandleDropped),
            Some(Command::Close(reply)) => {
                let _ = reply.send(Ok(()));
                Some(End::Closed)
            }
            Some(Command::Op(op)) => {
                self.enqueue(op);
                None
            }
        }
    }

    /// Tries servers in order until one accepts the session.
    async fn establish(&mut self) -> Result<Connection, End> {
        let n = self.hosts.len();
        let per_host = (self.negotiated / n as u32).max(Duration::from_millis(1));
        loop {
            let host = self.hosts[self.next_host].clone();
            self.next_host = (self.next_host + 1) % n;
            let req = ConnectRequest {
                protocol_version: 0,
                last_zxid_seen: self.last_zxid,
                timeout: self.opts.session_timeout.as_millis().min(i32::MAX as u128) as i32,
                session_id: if self.seen_rw { self.session_id } else { 0 },
                passwd: if self.seen_rw {
                    self.passwd.clone()
                } else {
                    vec![0; 16]
                },
                read_only: self.opts.read_only,
                read_only_present: true,
            };
            let attempt = handshake(host.clone(), req, per_host, self.opts.max_frame_len);
            tokio::pin!(attempt);
            let result = loop {
                tokio::select! {
                    biased;
                    res = &mut attempt => break res,
                    cmd = self.cmd_rx.recv() => {
                        if let Some(end) = self.on_command_disconnected(cmd) {
                            return Err(end);
                        }
                    }
                }
            };
            match result {
                Ok(conn) if conn.resp.timeout <= 0 => {
                    tracing::debug!(session = self.session_id, ?host, "session refused: expired");
                    return Err(End::Expired);
                }
                Ok(conn) => return Ok(conn),
                Err(e) => {
                    tracing::debug!(?host, error = %e, "connect attempt failed");
                    for op in std::mem::take(&mut self.queued) {
                        op.fail(Error::Keeper(ErrorCode::ConnectionLoss));
                    }
                    if self.next_host == 0 {
                        let max = self.opts.reconnect_delay.as_millis() as u64;
                        let delay = Duration::from_millis(if max == 0 {
                            0
                        } else {
                            self.rng.gen_range(0..=max)
                        });
                        self.pause(delay).await?;
                    }
                }
            }
        }
    }

    /// Sleeps while still answering commands.
    async fn pause(&mut self, d: Duration) -> Result<(), End> {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                biased;
                _ = &mut sleep => return Ok(()),
                cmd = self.cmd_rx.recv() => {
                    if let Some(end) = self.on_command_disconnected(cmd) {
                        return Err(end);
                    }
                }
            }
        }
    }

    /// Puts one op on the wire (into `out`).
    fn send_op(&mut self, op: Op, out: &mut BytesMut) {
        match op {
            Op::Submit { request, reply } => {
                let watch = WatchRegistration::for_request(&request);
                let request = self.chroot.prefix_request(request);
                let xid = self.next_xid();
                out.extend_from_slice(&request.encode(xid));
                self.pending.push_back(Pending {
                    xid,
                    opcode: request.opcode(),
                    watch,
                    reply: Some(reply),
                });
            }
            Op::AddAuth {
                scheme,
                auth,
                reply,
            } => {
                out.extend_from_slice(
                    &Request::Auth {
                        auth_type: 0,
                        scheme: scheme.clone(),
                        auth: auth.clone(),
                    }
                    .encode(xid::AUTH),
                );
                self.auth_info.push((scheme, auth));
                self.auth_waiters.push_back(Some(reply));
            }
        }
    }

    /// Serves one established connection until it ends.
    async fn serve(&mut self, conn: Connection) -> End {
        let Connection {
            stream,
            mut rbuf,
            resp,
        } = conn;
        self.session_id = resp.session_id;
        self.passwd = resp.passwd;
        self.seen_rw |= !resp.read_only;
        self.negotiated = Duration::from_millis(resp.timeout as u64);
        self.shared
            .session_id
            .store(self.session_id, Ordering::Relaxed);
        self.shared
            .negotiated_timeout_ms
            .store(resp.timeout, Ordering::Relaxed);
        // As ZooKeeper's client: give up on a silent server after 2/3 of the
        // session timeout, ping after 1/3 of it without sending.
        let read_timeout = (self.negotiated * 2 / 3).max(Duration::from_millis(2));
        let ping_interval = (self.negotiated / 3).max(Duration::from_millis(1));
        let (mut rd, mut wr) = tokio::io::split(stream);

        // Re-authenticate, re-register watches, then send what was queued.
        let mut out = BytesMut::new();
        for (scheme, auth) in &self.auth_info {
            out.extend_from_slice(
                &Request::Auth {
                    auth_type: 0,
                    scheme: scheme.clone(),
                    auth: auth.clone(),
                }
                .encode(xid::AUTH),
            );
            self.auth_waiters.push_back(None);
        }
        for req in self.watches.set_watches_requests(self.last_zxid) {
            out.extend_from_slice(&self.chroot.prefix_request(req).encode(xid::SET_WATCHES));
        }
        for op in std::mem::take(&mut self.queued) {
            self.send_op(op, &mut out);
        }
        self.set_state(if resp.read_only {
            SessionState::ConnectedReadOnly
        } else {
            SessionState::Connected
        });
        if let Err(e) = write_out(&mut wr, &out).await {
            return End::Lost(format!("write: {e}"));
        }
        let mut last_send = Instant::now();
        let mut last_recv = Instant::now();
        loop {
            loop {
                match decode_frame(&mut rbuf, self.opts.max_frame_len) {
                    Ok(Some(frame)) => {
                        if let Some(end) = self.on_frame(&frame) {
                            return end;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return End::Lost(format!("bad frame: {e}")),
                }
            }
            let ping_at = last_send + ping_interval;
            let dead_at = last_recv + read_timeout;
            let closing = self.closing.is_some();
            tokio::select! {
                biased;
                r = rd.read_buf(&mut rbuf) => match r {
                    Ok(0) => return if closing { self.closed_ok() } else { End::Lost("connection closed by server".into()) },
                    Ok(_) => last_recv = Instant::now(),
                    Err(e) => return if closing { self.closed_ok() } else { End::Lost(format!("read: {e}")) },
                },
                cmd = self.cmd_rx.recv(), if !closing => {
                    let mut out = BytesMut::new();
                    match cmd {
                        None => return End::HandleDropped,
                        Some(Command::Close(reply)) => {
                            let xid = self.next_xid();
                            out.extend_from_slice(&Request::CloseSession.encode(xid));
                            self.pending.push_back(Pending {
                                xid,
                                opcode: opcode::CLOSE_SESSION,
                                watch: WatchRegistration::None,
                                reply: None,
                            });
                            self.closing = Some(reply);
                        }
                        Some(Command::Op(op)) => self.send_op(op, &mut out),
                    }
                    if let Err(e) = write_out(&mut wr, &out).await {
                        return if self.closing.is_some() { self.closed_ok() } else { End::Lost(format!("write: {e}")) };
                    }
                    last_send = Instant::now();
                }
                _ = tokio::time::sleep_until(ping_at) => {
                    if let Err(e) = write_out(&mut wr, &Request::Ping.encode(xid::PING)).await {
                        return End::Lost(format!("write: {e}"));
                    }
                    last_send = Instant::now();
                }
                _ = tokio::time::sleep_until(dead_at) => {
                    return if closing { self.closed_ok() } else { End::Lost("read timeout".into()) };
                }
            }
        }
    }

    /// Ends a close: the caller of `close()` is told it is done.
    fn closed_ok(&mut self) -> End {
        if let Some(c) = self.closing.take() {
            let _ = c.send(Ok(()));
        }
        End::Closed
    }

    fn update_zxid(&mut self, zxid: i64) {
        if zxid > self.last_zxid {
            self.last_zxid = zxid;
            self.shared.last_zxid.store(zxid, Ordering::Relaxed);
        }
    }

    /// Handles one server frame. Returns an end if the connection (or the
    /// session) is over.
    fn on_frame(&mut self, frame: &[u8]) -> Option<End> {
        let (h, body) = match decode_reply(frame) {
            Ok(x) => x,
            Err(e) => return Some(End::Lost(format!("bad reply header: {e}"))),
        };
        match h.xid {
            xid::NOTIFICATION => {
                let ev = match decode_event(body) {
                    Ok(ev) => ev,
                    Err(e) => return Some(End::Lost(format!("bad watcher event: {e}"))),
                };
                let Some(event_type) = EventType::from_code(ev.event_type) else {
                    tracing::warn!(code = ev.event_type, "unknown watch event type dropped");
                    return None;
                };
                let path = self.chroot.strip(&ev.path);
                self.watches.on_event(event_type, &path);
                let _ = self.events_tx.send(WatchedEvent {
                    event_type,
                    state: ev.state,
                    path,
                });
                None
            }
            xid::PING | xid::SET_WATCHES => None,
            xid::AUTH => {
                let waiter = self.auth_waiters.pop_front().flatten();
                if h.err == ErrorCode::AuthFailed.code() {
                    if let Some(w) = waiter {
                        let _ = w.send(Err(Error::Keeper(ErrorCode::AuthFailed)));
                    }
                    return Some(End::AuthFailed);
                }
                if let Some(w) = waiter {
                    let _ = w.send(if h.err == 0 {
                        Ok(())
                    } else {
                        Err(Error::from_code(h.err))
                    });
                }
                None
            }
            _ => {
                let Some(p) = self.pending.pop_front() else {
                    return Some(End::Lost(format!(
                        "reply with xid {} and nothing pending",
                        h.xid
                    )));
                };
                if p.xid != h.xid {
                    let why = format!("reply xid {} out of order (expected {})", h.xid, p.xid);
                    if let Some(r) = p.reply {
                        let _ = r.send(Err(Error::Keeper(ErrorCode::ConnectionLoss)));
                    }
                    return Some(End::Lost(why));
                }
                if h.zxid > 0 {
                    self.update_zxid(h.zxid);
                }
                if p.opcode == opcode::CLOSE_SESSION {
                    return Some(self.closed_ok());
                }
                let multi = p.opcode == opcode::MULTI || p.opcode == opcode::MULTI_READ;
                let response = if h.err == 0 || (multi && !body.is_empty()) {
                    match decode_response(p.opcode, body) {
                        Ok(r) => self.chroot.strip_response(r),
                        Err(e) => {
                            let why = format!("bad reply to opcode {}: {e}", p.opcode);
                            if let Some(r) = p.reply {
                                let _ = r.send(Err(Error::Protocol(why.clone())));
                            }
                            return Some(End::Lost(why));
                        }
                    }
                } else {
                    Response::Empty
                };
                for ev in self.watches.on_reply(&p.watch, h.err) {
                    let _ = self.events_tx.send(ev);
                }
                if let Some(r) = p.reply {
                    let _ = r.send(Ok(Reply {
                        zxid: h.zxid,
                        err: h.err,
                        response,
                    }));
                }
                None
            }
        }
    }

    /// After a lost connection: every request in flight has an unknown
    /// outcome.
    fn on_lost(&mut self) {
        for p in std::mem::take(&mut self.pending) {
            if let Some(r) = p.reply {
                let _ = r.send(Err(Error::Keeper(ErrorCode::ConnectionLoss)));
            }
        }
        for w in std::mem::take(&mut self.auth_waiters).into_iter().flatten() {
            let _ = w.send(Err(Error::Keeper(ErrorCode::ConnectionLoss)));
        }
        self.set_state(SessionState::Disconnected);
    }

    /// Ends the task: publishes the final state and fails what is left.
    fn finish(mut self, end: End) {
        let (state, err) = match end {
            End::Expired => (
                SessionState::Expired,
                Error::Keeper(ErrorCode::SessionExpired),
            ),
            End::AuthFailed => (
                SessionState::AuthFailed,
                Error::Keeper(ErrorCode::AuthFailed),
            ),
            End::Closed | End::HandleDropped | End::Lost(_) => {
                (SessionState::Closed, Error::Closed)
            }
        };
        tracing::debug!(session = self.session_id, ?state, "session ended");
        self.set_state(state);
        if let Some(c) = self.closing.take() {
            let _ = c.send(Ok(()));
        }
        for p in std::mem::take(&mut self.pending) {
            if let Some(r) = p.reply {
                let _ = r.send(Err(err.clone()));
            }
        }
        for w in std::mem::take(&mut self.auth_waiters).into_iter().flatten() {
            let _ = w.send(Err(err.clone()));
        }
        for op in std::mem::take(&mut self.queued) {
            op.fail(err.clone());
        }
        // Commands sent before the receiver closes get the same answer.
        self.cmd_rx.close();
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            match cmd {
                Command::Op(op) => op.fail(err.clone()),
                Command::Close(reply) => {
                    let _ = reply.send(Ok(()));
                }
            }
        }
    }
}

async fn write_out<W: AsyncWriteExt + Unpin>(wr: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    wr.write_all(bytes).await?;
    wr.flush().await
}

/// Connects to one server and performs the session handshake.
async fn handshake(
    host: (String, u16),
    req: ConnectRequest,
    limit: Duration,
    max_frame_len: usize,
) -> std::io::Result<Connection> {
    use std::io::{Error as IoError, ErrorKind};
    let attempt = async {
        let mut stream = TcpStream::connect((host.0.as_str(), host.1)).await?;
        write_out(&mut stream, &req.encode()).await?;
        let mut rbuf = BytesMut::with_capacity(256);
        loop {
            let frame = decode_frame(&mut rbuf, max_frame_len)
                .map_err(|e| IoError::new(ErrorKind::InvalidData, e.to_string()))?;
            if let Some(frame) = frame {
                let resp = ConnectResponse::decode(&frame)
                    .map_err(|e| IoError::new(ErrorKind::InvalidData, e.to_string()))?;
                return Ok(Connection { stream, rbuf, resp });
            }
            if stream.read_buf(&mut rbuf).await? == 0 {
                return Err(IoError::new(
                    ErrorKind::UnexpectedEof,
                    "closed during handshake",
                ));
            }
        }
    };
    match tokio::time::timeout(limit, attempt).await {
        Ok(r) => r,
        Err(_) => Err(IoError::new(ErrorKind::TimedOut, "handshake timed out")),
    }
}
