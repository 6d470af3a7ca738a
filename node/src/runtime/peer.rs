//! The peer transport: one ordered (FIFO) connection per pair of servers,
//! carrying both election notifications and ZAB packets, as ZooKeeper's
//! `QuorumCnxManager` does for its election port.
//!
//! # Connections
//!
//! Both servers of a pair dial each other, and a handshake (magic, protocol
//! version, sender sid) decides which connection lives: **only a connection
//! initiated by the larger sid is kept**. The smaller server's dial is a
//! nudge: the larger server reads its handshake, closes it and dials back at
//! once (ZooKeeper's "connection request from a smaller sid" rule). A second
//! connection initiated by the larger sid (for example after that server
//! restarted) replaces the first, but only if nothing arrived on the first for
//! [`PeerLimits::replace_after_silence`]. The smaller server dials only when it
//! has no connection, so a nudge that finds a connection silent that long
//! means the smaller server closed it and the close did not arrive (across a
//! partition, a clogged link delivers nothing): that connection is replaced
//! too. A connection that is heard from (ZAB pings it every tick) is never
//! displaced by a handshake: without authentication anyone can send one, and
//! a forged "smaller sid" nudge or "larger sid" dial must not cut a live
//! leader off its followers; the newcomer is closed instead.
//!
//! The dialer sends its handshake; the acceptor answers with its own once it
//! accepted the connection, so the dialer also checks that it reached the sid
//! it meant to. A connection from an unknown sid, a bad handshake, an
//! oversized or undecodable frame: the connection is closed, logged and
//! counted in [`PeerStats::dropped_invalid`]; nothing panics.
//!
//! While the transport lives, a server without a connection to a peer keeps
//! dialing it with a bounded exponential backoff
//! ([`PeerLimits::reconnect_initial`] doubling up to
//! [`PeerLimits::reconnect_max`], on `tokio::time`, so virtual under madsim).
//!
//! # Events
//!
//! [`PeerEvent::Connected`] is emitted once a connection's handshake
//! completed, then its [`PeerEvent::Message`]s in arrival order, then exactly
//! one [`PeerEvent::Disconnected`] when it breaks or is replaced. Events of
//! successive connections to one sid never interleave: a new connection's
//! `Connected` follows the previous one's `Disconnected`.
//!
//! # Sending
//!
//! [`PeerHandle::send`] never blocks. Each connection has its own bounded
//! queue ([`PeerLimits::max_queued_messages`]); when it is full the message is
//! **dropped and counted** ([`PeerStats::dropped_full`]) rather than the
//! connection reset: ZAB survives loss through its own gap detection and
//! timeouts, and a peer that does not read will be abandoned by the core's
//! `syncLimit` anyway. A message for a peer without a connection is dropped
//! ([`PeerStats::dropped_unconnected`]): queued messages do not outlive their
//! connection, so a peer never receives, after a reconnection, messages the
//! core sent before it learnt of the disconnection. The core re-sends what it
//! needs on [`PeerEvent::Connected`]. A frame that cannot be written within
//! [`PeerLimits::write_timeout`] (the peer stopped reading) closes the
//! connection.
//!
//! [`PeerHandle::disconnect`] closes a connection on the owner's request
//! (the core gave up on a silent peer) and discards what is queued on it;
//! the connector dials again at once, so that later messages travel on a
//! fresh connection instead of behind a backlog that a partition stalled.
//!
//! # madsim
//!
//! The simulator runs this exact code: only `tokio::net`, `tokio::io::split`,
//! `tokio::time`, `tokio::sync` and `tokio::spawn` are used, every write is
//! flushed, and every `select!` is `biased;`.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::proto::peer::{PeerMessage, Sid};

/// First word of a peer handshake ("ZKPR").
pub const HANDSHAKE_MAGIC: u32 = 0x5A4B_5052;
/// Version of the peer handshake and framing.
pub const HANDSHAKE_VERSION: u32 = 1;
/// Size of a handshake: magic (u32), version (u32), sender sid (u64), big endian.
pub const HANDSHAKE_LEN: usize = 16;
/// Frames queued for one peer are written together up to about this many bytes.
const WRITE_BATCH_BYTES: usize = 256 * 1024;

/// A peer connection's bytes: plain TCP, or TLS over it with `sslQuorum`.
trait PeerIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> PeerIo for T {}
type PeerStream = Box<dyn PeerIo>;

/// How peer connections are secured: nothing (plain TCP, the default and the only kind
/// under madsim), or mutual TLS (`sslQuorum`): a connection whose TLS handshake fails
/// is closed before its peer handshake is read, so an outsider without a certificate
/// from the trust store cannot claim a sid, take a handshake slot past the TLS
/// handshake timeout, or send a frame.
#[derive(Clone, Default)]
pub struct PeerSecurity {
    #[cfg(not(madsim))]
    pub tls: Option<Arc<crate::runtime::tls::QuorumTls>>,
}

/// The bounds of a [`PeerTransport`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerLimits {
    /// Messages queued per connection before new ones are dropped.
    pub max_queued_messages: usize,
    /// Largest frame accepted or sent (length prefix included).
    pub max_frame: usize,
    /// Capacity of the event channel; a full channel stops reading sockets.
    pub max_queued_events: usize,
    /// Inbound connections allowed to be in their handshake at once; more
    /// are closed at once (and counted as invalid).
    pub max_pending_handshakes: usize,
    /// Time allowed to exchange handshakes.
    pub handshake_timeout: Duration,
    /// A connection nothing arrived on for this long may be replaced by a new
    /// handshake for the same sid; one heard from more recently is kept.
    pub replace_after_silence: Duration,
    /// Time allowed for a TCP connect.
    pub connect_timeout: Duration,
    /// Time allowed to write and flush one frame; a peer that stops reading
    /// for longer loses its connection (it reconnects once it reads again).
    pub write_timeout: Duration,
    /// First reconnection delay.
    pub reconnect_initial: Duration,
    /// Largest reconnection delay.
    pub reconnect_max: Duration,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            max_queued_messages: 1000,
            max_frame: 64 << 20,
            max_queued_events: 4096,
            max_pending_handshakes: 64,
            handshake_timeout: Duration::from_secs(5),
            replace_after_silence: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(20),
            reconnect_initial: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
        }
    }
}

impl PeerLimits {
    /// Checks that every bound is usable.
    pub fn validate(&self) -> io::Result<()> {
        let bad = |what: &str| {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                what.to_string(),
            ))
        };
        if self.max_queued_messages == 0 {
            return bad("max_queued_messages must be at least 1");
        }
        if self.max_queued_events == 0 {
            return bad("max_queued_events must be at least 1");
        }
        if self.max_pending_handshakes == 0 {
            return bad("max_pending_handshakes must be at least 1");
        }
        if self.max_frame < 16 {
            return bad("max_frame must be at least 16 bytes");
        }
        if self.handshake_timeout.is_zero()
            || self.connect_timeout.is_zero()
            || self.write_timeout.is_zero()
        {
            return bad("handshake_timeout, connect_timeout and write_timeout must be positive");
        }
        if self.reconnect_initial.is_zero() || self.reconnect_max < self.reconnect_initial {
            return bad("need 0 < reconnect_initial <= reconnect_max");
        }
        Ok(())
    }
}

/// What the transport reports to its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// A connection to this sid completed its handshake (tell the core
    /// `peer_connected`).
    Connected(Sid),
    /// The connection to this sid broke (tell the core `peer_disconnected`).
    Disconnected(Sid),
    /// A message from this sid.
    Message(Sid, PeerMessage),
}

/// Counters of a [`PeerTransport`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Frames written and flushed to a socket.
    pub sent: u64,
    /// Frames received and decoded.
    pub received: u64,
    /// Connections closed for a bad handshake, an unknown sid, or an
    /// oversized or undecodable frame.
    pub dropped_invalid: u64,
    /// Messages dropped because the connection's queue was full.
    pub dropped_full: u64,
    /// Messages dropped because no connection to the peer was up.
    pub dropped_unconnected: u64,
    /// Messages dropped because their frame exceeds [`PeerLimits::max_frame`].
    pub dropped_oversized: u64,
    /// Connections that completed their handshake.
    pub connections: u64,
    /// Connections closed by [`PeerHandle::disconnect`].
    pub disconnects: u64,
    /// Connections replaced because a nudge showed them stale.
    pub stale_replaced: u64,
}

/// What [`PeerHandle::send`] did with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// Queued on the peer's connection.
    Queued,
    /// Dropped: no connection to that peer is up.
    NotConnected,
    /// Dropped: the connection's queue is full.
    QueueFull,
    /// Dropped: the frame exceeds [`PeerLimits::max_frame`].
    TooLarge,
    /// Dropped: the sid is not one of the transport's peers.
    UnknownPeer,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    dropped_invalid: AtomicU64,
    dropped_full: AtomicU64,
    dropped_unconnected: AtomicU64,
    dropped_oversized: AtomicU64,
    connections: AtomicU64,
    disconnects: AtomicU64,
    stale_replaced: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One established connection, as seen by senders.
struct Conn {
    id: u64,
    queue: mpsc::Sender<Bytes>,
    close: Arc<watch::Sender<bool>>,
    /// When a frame last arrived on it (its handshake, at first).
    heard: Arc<Mutex<tokio::time::Instant>>,
}

impl Conn {
    fn silent_for(&self) -> Duration {
        self.heard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }
}

/// Everything the transport knows about one peer.
struct Slot {
    addr: SocketAddr,
    conn: Option<Conn>,
    /// Wakes the peer's connector (connection lost, or a nudge arrived).
    wake: Arc<Notify>,
    /// Becomes true once the last installed connection emitted its last event.
    last_done: Option<watch::Receiver<bool>>,
}

struct Inner {
    slots: BTreeMap<Sid, Slot>,
    next_conn_id: u64,
    shut_down: bool,
    tasks: Vec<JoinHandle<()>>,
    pending_handshakes: usize,
}

struct Shared {
    my_sid: Sid,
    limits: PeerLimits,
    inner: Mutex<Inner>,
    counters: Counters,
    events: mpsc::Sender<PeerEvent>,
    shutdown: watch::Sender<bool>,
    /// The last rate-limited warning and how many were left out since.
    warned: Mutex<(Option<tokio::time::Instant>, u64)>,
    /// Read only where TLS is built (not under madsim).
    #[cfg_attr(madsim, allow(dead_code))]
    security: PeerSecurity,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another task panicked; the data is
        // still consistent (every critical section is a few assignments).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_connected(&self, sid: Sid) -> bool {
        self.lock()
            .slots
            .get(&sid)
            .is_some_and(|s| s.conn.is_some())
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }
}

/// The peer transport of one server. See the module docs.
pub struct PeerTransport;

impl PeerTransport {
    /// Binds `listen` (this server's quorum address) and starts connecting to
    /// `peers` (the other servers' sids and quorum addresses).
    pub async fn start(
        my_sid: Sid,
        listen: SocketAddr,
        peers: Vec<(Sid, SocketAddr)>,
        limits: PeerLimits,
    ) -> io::Result<(PeerHandle, mpsc::Receiver<PeerEvent>)> {
        limits.validate()?;
        Self::start_with_security(my_sid, listen, peers, limits, PeerSecurity::default()).await
    }

    /// As [`PeerTransport::start`], with connections secured by `security`.
    pub async fn start_with_security(
        my_sid: Sid,
        listen: SocketAddr,
        peers: Vec<(Sid, SocketAddr)>,
        limits: PeerLimits,
        security: PeerSecurity,
    ) -> io::Result<(PeerHandle, mpsc::Receiver<PeerEvent>)> {
        limits.validate()?;
        let listener = TcpListener::bind(listen).await?;
        Self::launch(my_sid, listener, peers, limits, security)
    }

    /// As [`PeerTransport::start`], on a listener already bound (useful to
    /// learn ports chosen by the system before starting any transport).
    pub fn start_with_listener(
        my_sid: Sid,
        listener: TcpListener,
        peers: Vec<(Sid, SocketAddr)>,
        limits: PeerLimits,
    ) -> io::Result<(PeerHandle, mpsc::Receiver<PeerEvent>)> {
        Self::launch(my_sid, listener, peers, limits, PeerSecurity::default())
    }

    fn launch(
        my_sid: Sid,
        listener: TcpListener,
        peers: Vec<(Sid, SocketAddr)>,
        limits: PeerLimits,
        security: PeerSecurity,
    ) -> io::Result<(PeerHandle, mpsc::Receiver<PeerEvent>)> {
        limits.validate()?;
        let mut slots = BTreeMap::new();
        for (sid, addr) in peers {
            if sid == my_sid {
                continue;
            }
            let slot = Slot {
                addr,
                conn: None,
                wake: Arc::new(Notify::new()),
                last_done: None,
            };
            if slots.insert(sid, slot).is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("peer sid {sid} listed twice"),
                ));
            }
        }
        let sids: Vec<Sid> = slots.keys().copied().collect();
        let (events, events_rx) = mpsc::channel(limits.max_queued_events);
        let shared = Arc::new(Shared {
            my_sid,
            limits,
            inner: Mutex::new(Inner {
                slots,
                next_conn_id: 1,
                shut_down: false,
                tasks: Vec::new(),
                pending_handshakes: 0,
            }),
            counters: Counters::default(),
            events,
            shutdown: watch::channel(false).0,
            warned: Mutex::new((None, 0)),
            security,
        });
        let mut tasks = vec![tokio::spawn(run_listener(shared.clone(), listener))];
        for sid in sids {
            tasks.push(tokio::spawn(run_connector(shared.clone(), sid)));
        }
        shared.lock().tasks = tasks;
        Ok((PeerHandle { shared }, events_rx))
    }
}

/// A cheap, cloneable handle to a running [`PeerTransport`].
#[derive(Clone)]
pub struct PeerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PeerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerHandle")
            .field("my_sid", &self.shared.my_sid)
            .finish_non_exhaustive()
    }
}

impl PeerHandle {
    /// This server's sid.
    pub fn my_sid(&self) -> Sid {
        self.shared.my_sid
    }

    /// Queues `msg` for `to` without blocking; see the module docs for when
    /// it is dropped instead.
    pub fn send(&self, to: Sid, msg: PeerMessage) -> SendOutcome {
        let c = &self.shared.counters;
        let queue = {
            let inner = self.shared.lock();
            match inner.slots.get(&to) {
                None => {
                    debug!(to, msg = msg.name(), "send to an unknown peer dropped");
                    return SendOutcome::UnknownPeer;
                }
                Some(slot) => match &slot.conn {
                    Some(conn) => conn.queue.clone(),
                    None => {
                        bump(&c.dropped_unconnected);
                        return SendOutcome::NotConnected;
                    }
                },
            }
        };
        let frame = msg.encode();
        if frame.len() > self.shared.limits.max_frame {
            warn!(
                to,
                msg = msg.name(),
                len = frame.len(),
                "peer frame too large, dropped"
            );
            bump(&c.dropped_oversized);
            return SendOutcome::TooLarge;
        }
        match queue.try_send(frame) {
            Ok(()) => SendOutcome::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => {
                debug!(to, msg = msg.name(), "peer queue full, message dropped");
                bump(&c.dropped_full);
                SendOutcome::QueueFull
            }
            // The connection closed between the lookup and now.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                bump(&c.dropped_unconnected);
                SendOutcome::NotConnected
            }
        }
    }

    /// Whether a connection to `sid` is up.
    pub fn is_connected(&self, sid: Sid) -> bool {
        self.shared.is_connected(sid)
    }

    /// The sids with a connection up, ascending.
    pub fn connected_peers(&self) -> Vec<Sid> {
        self.shared
            .lock()
            .slots
            .iter()
            .filter(|(_, s)| s.conn.is_some())
            .map(|(sid, _)| *sid)
            .collect()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PeerStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PeerStats {
            sent: get(&c.sent),
            received: get(&c.received),
            dropped_invalid: get(&c.dropped_invalid),
            dropped_full: get(&c.dropped_full),
            dropped_unconnected: get(&c.dropped_unconnected),
            dropped_oversized: get(&c.dropped_oversized),
            connections: get(&c.connections),
            disconnects: get(&c.disconnects),
            stale_replaced: get(&c.stale_replaced),
        }
    }

    /// Closes the connection to `sid`, if one is up, and discards the
    /// messages queued on it (ZooKeeper's learner closing its socket after a
    /// read timeout). Its [`PeerEvent::Disconnected`] follows, and the
    /// connector dials again at once (the usual backoff if that fails); until
    /// a new connection is up, messages to `sid` are dropped. Returns whether
    /// a connection was closed.
    pub fn disconnect(&self, sid: Sid) -> bool {
        let closed = {
            let mut inner = self.shared.lock();
            let Some(slot) = inner.slots.get_mut(&sid) else {
                return false;
            };
            let Some(conn) = slot.conn.take() else {
                return false;
            };
            conn.close.send_replace(true);
            slot.wake.notify_one();
            conn.id
        };
        bump(&self.shared.counters.disconnects);
        info!(
            my_sid = self.shared.my_sid,
            sid,
            conn = closed,
            "peer connection closed on request"
        );
        true
    }

    /// Stops the transport: closes every connection, stops dialing, and
    /// returns once the listener is closed (its port can be bound again).
    /// `Disconnected` events of the closed connections may still follow.
    pub async fn shutdown(&self) {
        let tasks = {
            let mut inner = self.shared.lock();
            inner.shut_down = true;
            for slot in inner.slots.values_mut() {
                if let Some(conn) = slot.conn.take() {
                    conn.close.send_replace(true);
                }
            }
            std::mem::take(&mut inner.tasks)
        };
        self.shared.shutdown.send_replace(true);
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Waits until `rx` holds true (or its sender is gone).
async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn encode_handshake(sid: Sid) -> [u8; HANDSHAKE_LEN] {
    let mut b = [0u8; HANDSHAKE_LEN];
    b[0..4].copy_from_slice(&HANDSHAKE_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&HANDSHAKE_VERSION.to_be_bytes());
    b[8..16].copy_from_slice(&sid.to_be_bytes());
    b
}

/// Why a handshake was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeError {
    Magic(u32),
    Version(u32),
}

pub fn decode_handshake(b: &[u8; HANDSHAKE_LEN]) -> Result<Sid, HandshakeError> {
    let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if word(0) != HANDSHAKE_MAGIC {
        return Err(HandshakeError::Magic(word(0)));
    }
    if word(4) != HANDSHAKE_VERSION {
        return Err(HandshakeError::Version(word(4)));
    }
    let mut sid = [0u8; 8];
    sid.copy_from_slice(&b[8..16]);
    Ok(u64::from_be_bytes(sid))
}

async fn write_flush<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// Reads a handshake within the timeout; `Ok(None)` on timeout or EOF.
async fn read_handshake<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: Duration,
) -> io::Result<Option<[u8; HANDSHAKE_LEN]>> {
    let mut b = [0u8; HANDSHAKE_LEN];
    match tokio::time::timeout(limit, r.read_exact(&mut b)).await {
        Err(_) => Ok(None),
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Ok(Err(e)) => Err(e),
        Ok(Ok(_)) => Ok(Some(b)),
    }
}

async fn run_listener(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = until_true(&mut shutdown) => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, addr)) => {
                let admitted = {
                    let mut inner = shared.lock();
                    let ok = inner.pending_handshakes < shared.limits.max_pending_handshakes;
                    if ok {
                        inner.pending_handshakes += 1;
                    }
                    ok
                };
                if admitted {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        handle_inbound(&shared, stream, addr).await;
                        shared.lock().pending_handshakes -= 1;
                    });
                } else {
                    rate_limited_warn(
                        &shared,
                        0,
                        &format!("too many peer connections in their handshake: {addr} closed"),
                    );
                    bump(&shared.counters.dropped_invalid);
                }
            }
            Err(e) => {
                warn!(error = %e, "peer accept failed");
                tokio::time::sleep(shared.limits.reconnect_initial).await;
            }
        }
    }
    debug!(sid = shared.my_sid, "peer listener closed");
}

/// Secures an accepted connection as [`PeerSecurity`] asks (None: closed).
async fn secure_inbound(
    shared: &Arc<Shared>,
    stream: TcpStream,
    addr: SocketAddr,
) -> Option<PeerStream> {
    #[cfg(not(madsim))]
    if let Some(tls) = &shared.security.tls {
        let accepted =
            tokio::time::timeout(shared.limits.handshake_timeout, tls.acceptor.accept(stream))
                .await;
        return match accepted {
            Ok(Ok(s)) => Some(Box::new(s)),
            Ok(Err(e)) => {
                rate_limited_warn(
                    shared,
                    0,
                    &format!("TLS handshake with {addr} failed ({e}): peer connection closed"),
                );
                bump(&shared.counters.dropped_invalid);
                None
            }
            Err(_) => {
                rate_limited_warn(
                    shared,
                    0,
                    &format!("TLS handshake with {addr} timed out: peer connection closed"),
                );
                bump(&shared.counters.dropped_invalid);
                None
            }
        };
    }
    let _ = (shared, addr);
    Some(Box::new(stream))
}

/// Secures a dialed connection to `sid` as [`PeerSecurity`] asks (None: closed).
async fn secure_outbound(
    shared: &Arc<Shared>,
    stream: TcpStream,
    sid: Sid,
    addr: SocketAddr,
) -> Option<PeerStream> {
    #[cfg(not(madsim))]
    if let Some(tls) = &shared.security.tls {
        let name = tls.names.get(&sid)?.clone();
        let connected = tokio::time::timeout(
            shared.limits.handshake_timeout,
            tls.connector.connect(name, stream),
        )
        .await;
        return match connected {
            Ok(Ok(s)) => Some(Box::new(s)),
            Ok(Err(e)) => {
                rate_limited_warn(
                    shared,
                    sid,
                    &format!("TLS handshake with server {sid} at {addr} failed: {e}"),
                );
                None
            }
            Err(_) => {
                debug!(sid, %addr, "TLS handshake timed out");
                None
            }
        };
    }
    let _ = (shared, sid, addr);
    Some(Box::new(stream))
}

async fn handle_inbound(shared: &Arc<Shared>, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let Some(stream) = secure_inbound(shared, stream, addr).await else {
        return;
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    let limits = &shared.limits;
    let hello = match read_handshake(&mut rd, limits.handshake_timeout).await {
        Ok(Some(h)) => h,
        Ok(None) | Err(_) => {
            info!(%addr, "peer connection closed without a handshake");
            bump(&shared.counters.dropped_invalid);
            return;
        }
    };
    let sid = match decode_handshake(&hello) {
        Ok(sid) => sid,
        Err(e) => {
            rate_limited_warn(
                shared,
                0,
                &format!("bad peer handshake from {addr} ({e:?}), connection closed"),
            );
            bump(&shared.counters.dropped_invalid);
            return;
        }
    };
    let wake = shared.lock().slots.get(&sid).map(|s| s.wake.clone());
    let Some(wake) = wake else {
        rate_limited_warn(
            shared,
            sid,
            &format!("peer connection from {addr} with an unknown sid, closed"),
        );
        bump(&shared.counters.dropped_invalid);
        return;
    };
    if sid < shared.my_sid {
        // Only connections initiated by the larger sid live: dial back. The
        // smaller sid dials only without a connection to us, so an old one
        // here is stale: replace it (see the module docs).
        let stale = {
            let mut inner = shared.lock();
            inner.slots.get_mut(&sid).and_then(|slot| {
                let old = slot
                    .conn
                    .as_ref()
                    .is_some_and(|c| c.silent_for() > limits.replace_after_silence);
                if old {
                    slot.conn.take()
                } else {
                    None
                }
            })
        };
        if let Some(conn) = stale {
            // Anyone can send this handshake: the log line is rate-limited.
            rate_limited_warn(
                shared,
                sid,
                &format!(
                    "a smaller sid dialed while connected and connection {} is silent: replacing it",
                    conn.id
                ),
            );
            conn.close.send_replace(true);
            bump(&shared.counters.stale_replaced);
        } else {
            debug!(sid, "connection request from a smaller sid, dialing back");
        }
        wake.notify_one();
        return;
    }
    if write_flush(&mut wr, &encode_handshake(shared.my_sid))
        .await
        .is_err()
    {
        return;
    }
    install(shared, sid, rd, wr);
}

/// Keeps one peer connected while the transport lives.
async fn run_connector(shared: Arc<Shared>, sid: Sid) {
    let (addr, wake) = {
        let inner = shared.lock();
        let Some(slot) = inner.slots.get(&sid) else {
            return;
        };
        (slot.addr, slot.wake.clone())
    };
    let mut shutdown = shared.shutdown.subscribe();
    let limits = shared.limits.clone();
    let mut backoff = limits.reconnect_initial;
    loop {
        if shared.is_shut_down() {
            break;
        }
        if shared.is_connected(sid) {
            tokio::select! {
                biased;
                _ = until_true(&mut shutdown) => break,
                _ = wake.notified() => {}
            }
            backoff = limits.reconnect_initial;
            continue;
        }
        let installed = tokio::select! {
            biased;
            _ = until_true(&mut shutdown) => break,
            r = dial(&shared, sid, addr) => r,
        };
        if installed {
            backoff = limits.reconnect_initial;
            continue;
        }
        tokio::select! {
            biased;
            _ = until_true(&mut shutdown) => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(limits.reconnect_max);
    }
}

/// One connection attempt. A larger sid installs the connection (returns
/// true on success); a smaller one only nudges the peer to dial back.
async fn dial(shared: &Arc<Shared>, sid: Sid, addr: SocketAddr) -> bool {
    let limits = &shared.limits;
    let stream = match tokio::time::timeout(limits.connect_timeout, TcpStream::connect(addr)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(sid, %addr, error = %e, "peer connect failed");
            return false;
        }
        Err(_) => {
            debug!(sid, %addr, "peer connect timed out");
            return false;
        }
    };
    let _ = stream.set_nodelay(true);
    let Some(stream) = secure_outbound(shared, stream, sid, addr).await else {
        return false;
    };
    let (mut rd, mut wr) = tokio::io::split(stream);
    if write_flush(&mut wr, &encode_handshake(shared.my_sid))
        .await
        .is_err()
    {
        return false;
    }
    if shared.my_sid < sid {
        // Wait for the larger peer to close this connection, then let the
        // connector sleep; the peer dials back.
        let mut sink = [0u8; 64];
        let _ = tokio::time::timeout(limits.handshake_timeout, async {
            while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        return false;
    }
    let reply = match read_handshake(&mut rd, limits.handshake_timeout).await {
        Ok(Some(b)) => b,
        Ok(None) | Err(_) => {
            debug!(sid, %addr, "peer closed the connection during the handshake");
            return false;
        }
    };
    match decode_handshake(&reply) {
        Ok(got) if got == sid => install(shared, sid, rd, wr),
        Ok(got) => {
            warn!(sid, got, %addr, "peer answered with another sid, connection closed");
            bump(&shared.counters.dropped_invalid);
            false
        }
        Err(e) => {
            warn!(sid, %addr, error = ?e, "bad peer handshake reply, connection closed");
            bump(&shared.counters.dropped_invalid);
            false
        }
    }
}

/// Makes a handshaken connection the one for `sid`, replacing (closing) any
/// previous one, and starts its reader and writer. False if shut down.
fn install(
    shared: &Arc<Shared>,
    sid: Sid,
    rd: ReadHalf<PeerStream>,
    wr: WriteHalf<PeerStream>,
) -> bool {
    let (queue_tx, queue_rx) = mpsc::channel(shared.limits.max_queued_messages);
    let close = Arc::new(watch::channel(false).0);
    let (done_tx, done_rx) = watch::channel(false);
    let heard = Arc::new(Mutex::new(tokio::time::Instant::now()));
    let (id, prev) = {
        let mut inner = shared.lock();
        if inner.shut_down {
            return false;
        }
        let id = inner.next_conn_id;
        inner.next_conn_id += 1;
        let Some(slot) = inner.slots.get_mut(&sid) else {
            return false;
        };
        if slot
            .conn
            .as_ref()
            .is_some_and(|c| c.silent_for() <= shared.limits.replace_after_silence)
        {
            // A live connection is never displaced by a handshake (see the module docs).
            bump(&shared.counters.dropped_invalid);
            drop(inner);
            rate_limited_warn(
                shared,
                sid,
                "a second connection for a peer that is heard from: the new one is closed",
            );
            return false;
        }
        if let Some(old) = slot.conn.take() {
            info!(
                sid,
                old = old.id,
                new = id,
                "newer peer connection replaces the old one"
            );
            old.close.send_replace(true);
        }
        slot.conn = Some(Conn {
            id,
            queue: queue_tx,
            close: close.clone(),
            heard: heard.clone(),
        });
        (id, slot.last_done.replace(done_rx))
    };
    bump(&shared.counters.connections);
    info!(
        my_sid = shared.my_sid,
        sid,
        conn = id,
        "peer connection established"
    );
    tokio::spawn(run_writer(shared.clone(), sid, wr, queue_rx, close.clone()));
    tokio::spawn(run_reader(
        shared.clone(),
        sid,
        id,
        rd,
        close,
        prev,
        done_tx,
        heard,
    ));
    true
}

/// Logs a rejected peer connection at most once a second (anyone can open them: an
/// attacker must not be able to fill the log), with the number left out since.
fn rate_limited_warn(shared: &Shared, sid: Sid, what: &str) {
    let mut w = shared.warned.lock().unwrap_or_else(|e| e.into_inner());
    let now = tokio::time::Instant::now();
    match w.0 {
        Some(at) if now.duration_since(at) < Duration::from_secs(1) => w.1 += 1,
        _ => {
            warn!(sid, suppressed = w.1, "{what}");
            *w = (Some(now), 0);
        }
    }
}

async fn run_writer(
    shared: Arc<Shared>,
    sid: Sid,
    mut wr: WriteHalf<PeerStream>,
    mut queue: mpsc::Receiver<Bytes>,
    close: Arc<watch::Sender<bool>>,
) {
    let mut closed = close.subscribe();
    let mut batch = BytesMut::new();
    loop {
        let frame = tokio::select! {
            biased;
            _ = until_true(&mut closed) => break,
            f = queue.recv() => match f {
                Some(f) => f,
                None => break,
            },
        };
        // Every frame queued behind it goes in the same write (a leader's PROPOSEs and
        // COMMITs of one step), up to WRITE_BATCH_BYTES.
        let mut frames = 1u64;
        let bytes = if queue.is_empty() {
            frame
        } else {
            batch.extend_from_slice(&frame);
            while batch.len() < WRITE_BATCH_BYTES {
                match queue.try_recv() {
                    Ok(f) => {
                        batch.extend_from_slice(&f);
                        frames += 1;
                    }
                    Err(_) => break,
                }
            }
            batch.split().freeze()
        };
        let written = tokio::select! {
            biased;
            _ = until_true(&mut closed) => break,
            r = tokio::time::timeout(shared.limits.write_timeout, write_flush(&mut wr, &bytes)) => r,
        };
        match written {
            Ok(Ok(())) => {
                shared.counters.sent.fetch_add(frames, Ordering::Relaxed);
            }
            Err(_) => {
                warn!(sid, "peer stopped reading, closing the connection");
                close.send_replace(true);
                break;
            }
            Ok(Err(e)) => {
                info!(sid, error = %e, "peer write failed, closing the connection");
                close.send_replace(true);
                break;
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_reader(
    shared: Arc<Shared>,
    sid: Sid,
    id: u64,
    mut rd: ReadHalf<PeerStream>,
    close: Arc<watch::Sender<bool>>,
    prev: Option<watch::Receiver<bool>>,
    done: watch::Sender<bool>,
    heard: Arc<Mutex<tokio::time::Instant>>,
) {
    // The previous connection to this sid emits its Disconnected first.
    if let Some(mut prev) = prev {
        until_true(&mut prev).await;
    }
    let mut closed = close.subscribe();
    let connected =
        !*closed.borrow() && shared.events.send(PeerEvent::Connected(sid)).await.is_ok();
    if connected {
        read_frames(&shared, sid, &mut rd, &mut closed, &heard).await;
    }
    close.send_replace(true);
    {
        let mut inner = shared.lock();
        if let Some(slot) = inner.slots.get_mut(&sid) {
            if slot.conn.as_ref().is_some_and(|c| c.id == id) {
                slot.conn = None;
            }
            slot.wake.notify_one();
        }
    }
    if connected {
        info!(
            my_sid = shared.my_sid,
            sid,
            conn = id,
            "peer connection closed"
        );
        let _ = shared.events.send(PeerEvent::Disconnected(sid)).await;
    }
    done.send_replace(true);
}

/// Reads and forwards frames until the connection ends or must be closed.
async fn read_frames(
    shared: &Shared,
    sid: Sid,
    rd: &mut ReadHalf<PeerStream>,
    closed: &mut watch::Receiver<bool>,
    heard: &Mutex<tokio::time::Instant>,
) {
    let max = shared.limits.max_frame;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    loop {
        // Forward every complete frame buffered.
        loop {
            match PeerMessage::frame_len(&buf, max) {
                Err(e) => {
                    warn!(sid, error = %e, "bad peer frame, connection closed");
                    bump(&shared.counters.dropped_invalid);
                    return;
                }
                Ok(Some(n)) if buf.len() >= n => {
                    let frame = buf.split_to(n);
                    let msg = match PeerMessage::decode(&frame, max) {
                        Ok(m) => m,
                        Err(e) => {
                            warn!(sid, error = %e, "undecodable peer frame, connection closed");
                            bump(&shared.counters.dropped_invalid);
                            return;
                        }
                    };
                    bump(&shared.counters.received);
                    *heard.lock().unwrap_or_else(|e| e.into_inner()) = tokio::time::Instant::now();
                    let sent = tokio::select! {
                        biased;
                        _ = until_true(closed) => return,
                        r = shared.events.send(PeerEvent::Message(sid, msg)) => r,
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                Ok(Some(n)) => {
                    buf.reserve(n - buf.len());
                    break;
                }
                Ok(None) => break,
            }
        }
        if buf.capacity() == buf.len() {
            buf.reserve(8 * 1024);
        }
        let read = tokio::select! {
            biased;
            _ = until_true(closed) => return,
            r = rd.read_buf(&mut buf) => r,
        };
        match read {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                debug!(sid, error = %e, "peer read failed");
                return;
            }
        }
    }
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const WAIT: Duration = Duration::from_secs(10);

    async fn bind() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        (l, a)
    }

    async fn next_event(rx: &mut mpsc::Receiver<PeerEvent>) -> PeerEvent {
        tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("timed out waiting for a peer event")
            .expect("event channel closed")
    }

    /// Asserts that no event arrives within `d`.
    async fn quiet(rx: &mut mpsc::Receiver<PeerEvent>, d: Duration) {
        if let Ok(ev) = tokio::time::timeout(d, rx.recv()).await {
            panic!("unexpected event {ev:?}");
        }
    }

    async fn wait_connected(rx: &mut mpsc::Receiver<PeerEvent>, sids: &[Sid]) {
        let mut want: BTreeSet<Sid> = sids.iter().copied().collect();
        while !want.is_empty() {
            match next_event(rx).await {
                PeerEvent::Connected(s) => assert!(want.remove(&s), "second Connected({s})"),
                other => panic!("unexpected event {other:?} while connecting"),
            }
        }
    }

    /// Transports for sids 1 and 2, connected to each other (both saw `Connected`).
    async fn connected_pair(
        limits: PeerLimits,
    ) -> (
        Vec<SocketAddr>,
        Vec<(PeerHandle, mpsc::Receiver<PeerEvent>)>,
    ) {
        let (addrs, mut ts) = mesh(&[1, 2], limits).await;
        wait_connected(&mut ts[0].1, &[2]).await;
        wait_connected(&mut ts[1].1, &[1]).await;
        (addrs, ts)
    }

    fn commit(zxid: i64) -> PeerMessage {
        PeerMessage::Commit { zxid }
    }

    /// Starts transports for `sids` on pre-bound loopback listeners.
    async fn mesh(
        sids: &[Sid],
        limits: PeerLimits,
    ) -> (
        Vec<SocketAddr>,
        Vec<(PeerHandle, mpsc::Receiver<PeerEvent>)>,
    ) {
        let mut listeners = Vec::new();
        for _ in sids {
            listeners.push(bind().await);
        }
        let addrs: Vec<SocketAddr> = listeners.iter().map(|(_, a)| *a).collect();
        let all: Vec<(Sid, SocketAddr)> = sids.iter().copied().zip(addrs.clone()).collect();
        let mut out = Vec::new();
        for (sid, (l, _)) in sids.iter().zip(listeners) {
            let peers = all.iter().copied().filter(|(s, _)| s != sid).collect();
            out.push(PeerTransport::start_with_listener(*sid, l, peers, limits.clone()).unwrap());
        }
        (addrs, out)
    }

    async fn raw_handshake(addr: SocketAddr, sid: Sid) -> (TcpStream, Option<Sid>) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&encode_handshake(sid)).await.unwrap();
        s.flush().await.unwrap();
        let reply = read_handshake(&mut s, WAIT).await.unwrap();
        (s, reply.map(|b| decode_handshake(&b).unwrap()))
    }

    /// Reads until the peer closes the stream; panics if it stays open.
    async fn expect_closed(s: &mut TcpStream) {
        let mut b = [0u8; 256];
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                match s.read(&mut b).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the transport kept a bad connection open");
    }

    #[test]
    fn handshake_round_trips_and_rejects_garbage() {
        assert_eq!(decode_handshake(&encode_handshake(7)), Ok(7));
        let mut b = encode_handshake(7);
        b[0] ^= 1;
        assert!(matches!(
            decode_handshake(&b),
            Err(HandshakeError::Magic(_))
        ));
        let mut b = encode_handshake(7);
        b[7] = 9;
        assert_eq!(decode_handshake(&b), Err(HandshakeError::Version(9)));
    }

    #[test]
    fn limits_are_validated() {
        assert!(PeerLimits::default().validate().is_ok());
        let l = PeerLimits {
            max_queued_messages: 0,
            ..PeerLimits::default()
        };
        assert!(l.validate().is_err());
        let l = PeerLimits {
            reconnect_max: Duration::from_millis(1),
            ..PeerLimits::default()
        };
        assert!(l.validate().is_err());
    }

    #[tokio::test]
    async fn three_transports_form_a_mesh_and_keep_fifo_order() {
        let sids = [1, 2, 3];
        let (_, mut ts) = mesh(&sids, PeerLimits::default()).await;
        for (i, (_, rx)) in ts.iter_mut().enumerate() {
            let others: Vec<Sid> = sids.iter().copied().filter(|s| *s != sids[i]).collect();
            wait_connected(rx, &others).await;
        }
        for (h, _) in &ts {
            for to in sids.iter().copied().filter(|s| *s != h.my_sid()) {
                for z in 0..50 {
                    assert_eq!(h.send(to, commit(z)), SendOutcome::Queued);
                }
            }
        }
        for (h, rx) in ts.iter_mut() {
            let mut next: BTreeMap<Sid, i64> = BTreeMap::new();
            for _ in 0..100 {
                match next_event(rx).await {
                    PeerEvent::Message(from, PeerMessage::Commit { zxid }) => {
                        let n = next.entry(from).or_insert(0);
                        assert_eq!(zxid, *n, "out of order from {from} at {}", h.my_sid());
                        *n += 1;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(next.values().copied().collect::<Vec<_>>(), vec![50, 50]);
            assert_eq!(h.stats().received, 100);
            assert_eq!(h.connected_peers().len(), 2);
        }
        // Every frame was received, so every frame was written and flushed.
        for (h, _) in &ts {
            let sent = tokio::time::timeout(WAIT, async {
                while h.stats().sent < 100 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            assert!(sent.is_ok());
            assert_eq!(h.stats().sent, 100);
        }
        for (h, _) in &ts {
            h.shutdown().await;
        }
    }

    #[tokio::test]
    async fn both_sides_dial_but_one_connection_survives() {
        let (addrs, mut ts) = connected_pair(PeerLimits::default()).await;
        // Nudges from the smaller sid keep arriving while it reconnects;
        // none may disturb the established connection.
        let (mut nudge, reply) = raw_handshake(addrs[1], 1).await;
        assert_eq!(reply, None, "a connection from the smaller sid is refused");
        expect_closed(&mut nudge).await;
        quiet(&mut ts[0].1, Duration::from_millis(300)).await;
        quiet(&mut ts[1].1, Duration::from_millis(1)).await;
        assert_eq!(ts[0].0.stats().connections, 1);
        assert_eq!(ts[1].0.stats().connections, 1);
        assert_eq!(ts[0].0.stats().dropped_invalid, 0);
        // A second connection claiming the larger sid does not displace the first,
        // which is heard from (anyone can send a handshake).
        let (mut dup, reply) = raw_handshake(addrs[0], 2).await;
        assert_eq!(reply, Some(1));
        expect_closed(&mut dup).await;
        quiet(&mut ts[0].1, Duration::from_millis(300)).await;
        assert_eq!(ts[0].0.send(2, commit(9)), SendOutcome::Queued);
        assert_eq!(
            next_event(&mut ts[1].1).await,
            PeerEvent::Message(1, commit(9))
        );
        for (h, _) in &ts {
            h.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_second_dial_replaces_a_silent_connection_only() {
        let limits = PeerLimits {
            replace_after_silence: Duration::from_millis(200),
            ..PeerLimits::default()
        };
        let (addrs, mut ts) = connected_pair(limits).await;
        // Heard from a moment ago: a dial claiming sid 2 is closed.
        assert_eq!(ts[1].0.send(1, commit(1)), SendOutcome::Queued);
        assert_eq!(
            next_event(&mut ts[0].1).await,
            PeerEvent::Message(2, commit(1))
        );
        let (mut early, _) = raw_handshake(addrs[0], 2).await;
        expect_closed(&mut early).await;
        // Silent past the bound (server 2 restarted and the close was lost, say): the
        // new connection replaces it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (mut dup, reply) = raw_handshake(addrs[0], 2).await;
        assert_eq!(reply, Some(1));
        assert_eq!(next_event(&mut ts[0].1).await, PeerEvent::Disconnected(2));
        assert_eq!(next_event(&mut ts[0].1).await, PeerEvent::Connected(2));
        dup.write_all(&commit(9).encode()).await.unwrap();
        dup.flush().await.unwrap();
        assert_eq!(
            next_event(&mut ts[0].1).await,
            PeerEvent::Message(2, commit(9))
        );
        for (h, _) in &ts {
            h.shutdown().await;
        }
    }

    #[tokio::test]
    async fn disconnect_drops_the_queue_and_a_fresh_connection_follows() {
        let (_, mut ts) = connected_pair(PeerLimits::default()).await;
        // Queued, not yet written (no await since): the disconnect drops them.
        for z in 0..5 {
            assert_eq!(ts[0].0.send(2, commit(z)), SendOutcome::Queued);
        }
        assert!(ts[0].0.disconnect(2));
        assert!(!ts[0].0.disconnect(2), "nothing left to close");
        assert_eq!(ts[0].0.send(2, commit(5)), SendOutcome::NotConnected);
        assert_eq!(ts[0].0.stats().disconnects, 1);
        assert_eq!(next_event(&mut ts[0].1).await, PeerEvent::Disconnected(2));
        assert_eq!(next_event(&mut ts[0].1).await, PeerEvent::Connected(2));
        // The peer saw the connection break, then the new one, and none of
        // the messages queued on the old one.
        assert_eq!(next_event(&mut ts[1].1).await, PeerEvent::Disconnected(1));
        assert_eq!(next_event(&mut ts[1].1).await, PeerEvent::Connected(1));
        assert_eq!(ts[0].0.send(2, commit(6)), SendOutcome::Queued);
        assert_eq!(
            next_event(&mut ts[1].1).await,
            PeerEvent::Message(1, commit(6))
        );
        assert_eq!(ts[1].0.stats().received, 1);
        for (h, _) in &ts {
            h.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_nudge_replaces_a_silent_connection() {
        let limits = PeerLimits {
            replace_after_silence: Duration::from_millis(200),
            ..PeerLimits::default()
        };
        let (addrs, mut ts) = connected_pair(limits).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Sid 1 dials 2 as if it had closed its side and the close was lost.
        let (mut nudge, reply) = raw_handshake(addrs[1], 1).await;
        assert_eq!(reply, None);
        expect_closed(&mut nudge).await;
        assert_eq!(next_event(&mut ts[1].1).await, PeerEvent::Disconnected(1));
        assert_eq!(next_event(&mut ts[1].1).await, PeerEvent::Connected(1));
        assert_eq!(next_event(&mut ts[0].1).await, PeerEvent::Disconnected(2));
        assert_eq!(next_event(&mut ts[0].1).await, PeerEvent::Connected(2));
        assert_eq!(ts[1].0.stats().stale_replaced, 1);
        assert_eq!(ts[1].0.send(1, commit(1)), SendOutcome::Queued);
        assert_eq!(
            next_event(&mut ts[0].1).await,
            PeerEvent::Message(2, commit(1))
        );
        for (h, _) in &ts {
            h.shutdown().await;
        }
    }

    #[tokio::test]
    async fn a_restarted_peer_reconnects() {
        let (addrs, mut ts) = connected_pair(PeerLimits::default()).await;
        let (old2, mut old_rx2) = ts.pop().unwrap();
        old2.shutdown().await;
        assert_eq!(next_event(&mut old_rx2).await, PeerEvent::Disconnected(1));
        assert_eq!(next_event(&mut ts[0].1).await, PeerEvent::Disconnected(2));
        assert_eq!(ts[0].0.send(2, commit(1)), SendOutcome::NotConnected);
        // Server 2 comes back on the same port.
        let (h2, mut rx2) =
            PeerTransport::start(2, addrs[1], vec![(1, addrs[0])], PeerLimits::default())
                .await
                .unwrap();
        wait_connected(&mut rx2, &[1]).await;
        assert_eq!(next_event(&mut ts[0].1).await, PeerEvent::Connected(2));
        assert_eq!(h2.send(1, commit(5)), SendOutcome::Queued);
        assert_eq!(
            next_event(&mut ts[0].1).await,
            PeerEvent::Message(2, commit(5))
        );
        assert_eq!(ts[0].0.send(2, commit(6)), SendOutcome::Queued);
        assert_eq!(next_event(&mut rx2).await, PeerEvent::Message(1, commit(6)));
        assert_eq!(ts[0].0.stats().dropped_unconnected, 1);
        h2.shutdown().await;
        ts[0].0.shutdown().await;
    }

    #[tokio::test]
    async fn bad_connections_are_closed_without_harming_others() {
        let limits = PeerLimits {
            max_frame: 1024,
            ..PeerLimits::default()
        };
        let (fake3, _) = bind().await; // sid 3 exists but never runs
        let fake3_addr = fake3.local_addr().unwrap();
        let (l1, a1) = bind().await;
        let (l2, a2) = bind().await;
        let (h1, mut rx1) = PeerTransport::start_with_listener(
            1,
            l1,
            vec![(2, a2), (3, fake3_addr)],
            limits.clone(),
        )
        .unwrap();
        let (h2, mut rx2) =
            PeerTransport::start_with_listener(2, l2, vec![(1, a1)], limits.clone()).unwrap();
        wait_connected(&mut rx1, &[2]).await;
        wait_connected(&mut rx2, &[1]).await;

        // Garbage instead of a handshake.
        let mut s = TcpStream::connect(a1).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        s.flush().await.unwrap();
        expect_closed(&mut s).await;
        // A valid handshake from a sid that is not a member.
        let (mut s, reply) = raw_handshake(a1, 99).await;
        assert_eq!(reply, None);
        expect_closed(&mut s).await;
        // An oversized frame on an accepted connection (as sid 3).
        let (mut s, reply) = raw_handshake(a1, 3).await;
        assert_eq!(reply, Some(1));
        assert_eq!(next_event(&mut rx1).await, PeerEvent::Connected(3));
        s.write_all(&(1u32 << 20).to_be_bytes()).await.unwrap();
        s.flush().await.unwrap();
        expect_closed(&mut s).await;
        assert_eq!(next_event(&mut rx1).await, PeerEvent::Disconnected(3));
        // An undecodable frame: right length, wrong protocol version.
        let (mut s, _) = raw_handshake(a1, 3).await;
        assert_eq!(next_event(&mut rx1).await, PeerEvent::Connected(3));
        s.write_all(&[0, 0, 0, 2, 0xEE, 4]).await.unwrap();
        s.flush().await.unwrap();
        expect_closed(&mut s).await;
        assert_eq!(next_event(&mut rx1).await, PeerEvent::Disconnected(3));

        assert_eq!(h1.stats().dropped_invalid, 4);
        // The good connection is untouched.
        assert_eq!(h2.send(1, commit(42)), SendOutcome::Queued);
        assert_eq!(
            next_event(&mut rx1).await,
            PeerEvent::Message(2, commit(42))
        );
        assert_eq!(h1.stats().connections, 3);
        assert_eq!(h2.stats().connections, 1);
        // Frames larger than the limit are not sent.
        let big = PeerMessage::Proposal {
            zxid: 1,
            payload: Bytes::from(vec![0u8; 2048]),
        };
        assert_eq!(h1.send(2, big), SendOutcome::TooLarge);
        assert_eq!(h1.send(77, commit(1)), SendOutcome::UnknownPeer);
        assert_eq!(h1.stats().dropped_oversized, 1);
        h1.shutdown().await;
        h2.shutdown().await;
        drop(fake3);
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_loses_its_connection() {
        let limits = PeerLimits {
            write_timeout: Duration::from_millis(300),
            ..PeerLimits::default()
        };
        let (l1, a1) = bind().await;
        let (_l2, a2) = bind().await;
        let (h1, mut rx1) =
            PeerTransport::start_with_listener(1, l1, vec![(2, a2)], limits).unwrap();
        // Connected as sid 2, and then never reads.
        let (_stalled, reply) = raw_handshake(a1, 2).await;
        assert_eq!(reply, Some(1));
        assert_eq!(next_event(&mut rx1).await, PeerEvent::Connected(2));
        let big = PeerMessage::Proposal {
            zxid: 1,
            payload: Bytes::from(vec![7u8; 60 * 1024]),
        };
        // 60 MB: more than loopback socket buffers hold.
        for _ in 0..1000 {
            assert_eq!(h1.send(2, big.clone()), SendOutcome::Queued);
        }
        assert_eq!(next_event(&mut rx1).await, PeerEvent::Disconnected(2));
        assert!(h1.stats().sent < 1000);
        assert_eq!(h1.send(2, big), SendOutcome::NotConnected);
        h1.shutdown().await;
    }

    #[tokio::test]
    async fn pending_handshakes_are_bounded() {
        let limits = PeerLimits {
            max_pending_handshakes: 1,
            ..PeerLimits::default()
        };
        let (l1, a1) = bind().await;
        let (_l2, a2) = bind().await;
        let (h1, _rx1) = PeerTransport::start_with_listener(1, l1, vec![(2, a2)], limits).unwrap();
        let _silent = TcpStream::connect(a1).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut second = TcpStream::connect(a1).await.unwrap();
        expect_closed(&mut second).await;
        assert_eq!(h1.stats().dropped_invalid, 1);
        h1.shutdown().await;
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let limits = PeerLimits {
            max_queued_messages: 4,
            ..PeerLimits::default()
        };
        let (_, mut ts) = connected_pair(limits).await;
        // The writer task cannot run between these sends (current-thread
        // runtime, no await), so the queue holds exactly four.
        let outcomes: Vec<SendOutcome> = (0..10).map(|z| ts[0].0.send(2, commit(z))).collect();
        assert_eq!(&outcomes[..4], &[SendOutcome::Queued; 4]);
        assert_eq!(&outcomes[4..], &[SendOutcome::QueueFull; 6]);
        assert_eq!(ts[0].0.stats().dropped_full, 6);
        for z in 0..4 {
            assert_eq!(
                next_event(&mut ts[1].1).await,
                PeerEvent::Message(1, commit(z))
            );
        }
        quiet(&mut ts[1].1, Duration::from_millis(200)).await;
        // The connection survives and the queue drains.
        assert_eq!(ts[0].0.send(2, commit(10)), SendOutcome::Queued);
        assert_eq!(
            next_event(&mut ts[1].1).await,
            PeerEvent::Message(1, commit(10))
        );
        for (h, _) in &ts {
            h.shutdown().await;
        }
    }
}

#[cfg(all(test, madsim))]
mod sim_tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn commit(zxid: i64) -> PeerMessage {
        PeerMessage::Commit { zxid }
    }

    /// Two simulated servers exchange messages; a link clogged both ways
    /// delays them but breaks nothing, and they arrive in order once unclogged.
    #[madsim::test]
    async fn two_nodes_survive_a_clogged_link() {
        let handle = madsim::runtime::Handle::current();
        let a1: SocketAddr = "10.0.0.1:2888".parse().unwrap();
        let a2: SocketAddr = "10.0.0.2:2888".parse().unwrap();
        let n1 = handle.create_node().name("s1").ip(a1.ip()).build();
        let n2 = handle.create_node().name("s2").ip(a2.ip()).build();
        let delivered = Arc::new(AtomicUsize::new(0));

        let receiver = {
            let delivered = delivered.clone();
            n2.spawn(async move {
                let (h, mut rx) = PeerTransport::start(2, a2, vec![(1, a1)], PeerLimits::default())
                    .await
                    .unwrap();
                let mut events = Vec::new();
                while events.len() < 21 {
                    let ev = rx.recv().await.unwrap();
                    if matches!(ev, PeerEvent::Message(..)) {
                        delivered.fetch_add(1, Ordering::SeqCst);
                    }
                    events.push(ev);
                }
                h.shutdown().await;
                events
            })
        };
        let sender = n1.spawn(async move {
            let (h, mut rx) = PeerTransport::start(1, a1, vec![(2, a2)], PeerLimits::default())
                .await
                .unwrap();
            assert_eq!(rx.recv().await, Some(PeerEvent::Connected(2)));
            for z in 0..10 {
                assert_eq!(h.send(2, commit(z)), SendOutcome::Queued);
            }
            // The link is clogged from t=2s to t=6s.
            tokio::time::sleep(Duration::from_secs(3)).await;
            for z in 10..20 {
                assert_eq!(h.send(2, commit(z)), SendOutcome::Queued);
            }
            // Server 2 shuts down after the 20th message: 1 sees it go.
            let late = rx.recv().await;
            h.shutdown().await;
            (h.stats(), late)
        });

        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(delivered.load(Ordering::SeqCst), 10);
        let net = madsim::net::NetSim::current();
        net.clog_link(n1.id(), n2.id());
        net.clog_link(n2.id(), n1.id());
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(
            delivered.load(Ordering::SeqCst),
            10,
            "clogged link delivered"
        );
        net.unclog_link(n1.id(), n2.id());
        net.unclog_link(n2.id(), n1.id());

        let events = receiver.await.unwrap();
        assert_eq!(events[0], PeerEvent::Connected(1));
        let expected: Vec<PeerEvent> = (0..20).map(|z| PeerEvent::Message(1, commit(z))).collect();
        assert_eq!(&events[1..], &expected[..]);
        let (stats, late) = sender.await.unwrap();
        assert_eq!(stats.sent, 20);
        assert_eq!(stats.connections, 1);
        assert_eq!(late, Some(PeerEvent::Disconnected(2)));
    }

    /// A killed server is seen to go, and once restarted on the same address
    /// it reconnects and both sides see the new connection.
    #[madsim::test]
    async fn a_killed_node_restarts_and_reconnects() {
        let handle = madsim::runtime::Handle::current();
        let a1: SocketAddr = "10.0.0.1:2888".parse().unwrap();
        let a2: SocketAddr = "10.0.0.2:2888".parse().unwrap();
        let (ev1_tx, mut ev1) = mpsc::unbounded_channel();
        let (ev2_tx, mut ev2) = mpsc::unbounded_channel();
        let n1 = handle.create_node().name("s1").ip(a1.ip()).build();
        let n2 = handle
            .create_node()
            .name("s2")
            .ip(a2.ip())
            .init(move || {
                let out = ev2_tx.clone();
                async move {
                    let (h, mut rx) =
                        PeerTransport::start(2, a2, vec![(1, a1)], PeerLimits::default())
                            .await
                            .unwrap();
                    while let Some(ev) = rx.recv().await {
                        if ev == PeerEvent::Connected(1) {
                            h.send(1, commit(7));
                        }
                        let _ = out.send(ev);
                    }
                }
            })
            .build();
        n1.spawn(async move {
            let (_h, mut rx) = PeerTransport::start(1, a1, vec![(2, a2)], PeerLimits::default())
                .await
                .unwrap();
            while let Some(ev) = rx.recv().await {
                let _ = ev1_tx.send(ev);
            }
        });
        let connected = [PeerEvent::Connected(2), PeerEvent::Message(2, commit(7))];
        for want in &connected {
            assert_eq!(ev1.recv().await.as_ref(), Some(want));
        }
        assert_eq!(ev2.recv().await, Some(PeerEvent::Connected(1)));
        handle.kill(n2.id());
        assert_eq!(ev1.recv().await, Some(PeerEvent::Disconnected(2)));
        tokio::time::sleep(Duration::from_secs(5)).await;
        handle.restart(n2.id());
        for want in &connected {
            assert_eq!(ev1.recv().await.as_ref(), Some(want));
        }
        assert_eq!(ev2.recv().await, Some(PeerEvent::Connected(1)));
    }
}
