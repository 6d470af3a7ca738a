//! One client connection: framing, the four-letter-word sniff, the
//! handshake, and the reader/writer halves.
//!
//! The reader decodes frames and hands requests to the driver through a
//! bounded channel (so a flood of requests back-pressures the client, as
//! ZooKeeper's throttling does). The writer drains the outbound queue and
//! reports what it wrote ([`Inbound::Delivered`]): the pipeline builds replies
//! only while the connection has credit ([`crate::server::OUTBOUND_CREDIT`]),
//! and the reader stops reading while the queue is that full, so a client
//! that does not read its replies is not read either (backpressure). Only
//! watch events can grow the queue further; past [`OUTBOUND_BYTES`] the
//! client is disconnected. Any malformed, truncated or oversized input closes
//! this connection with a log line and nothing else.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::proto::client::{
    decode_frame, decode_request, four_letter_word, ConnectRequest, Request, RequestHeader,
};
use crate::proto::jute::Reader;
use crate::server::ConnId;

/// Bytes queued for one client (frames plus [`FRAME_OVERHEAD`] each) before it counts as
/// not reading and is disconnected: only watch events get this far (a slow watcher keeps
/// about a million events, as ZooKeeper keeps them while memory allows).
pub const OUTBOUND_BYTES: usize = 64 << 20;
/// What a queued frame costs beyond its bytes (its handle and queue slot), counted so
/// that many small frames are bounded as well as a few large ones.
const FRAME_OVERHEAD: usize = 64;
/// The writer reports delivered bytes to the driver in steps of at least this much
/// (a request-reply client never waits for a report: its credit lasts).
pub const DELIVERY_REPORT: usize = 256 << 10;
/// The reader reads no further requests while this much is queued: then the pipeline
/// may be out of credit (it holds requests until a report), so reading on would only
/// pile requests up in it.
const READ_PAUSE: usize = crate::server::OUTBOUND_CREDIT - DELIVERY_REPORT;

/// Messages from connections to the driver.
pub enum Inbound {
    /// A handshake arrived; replies go to `outbox`.
    Connect {
        conn: ConnId,
        request: ConnectRequest,
        remote: SocketAddr,
        /// The subject of a TLS client's certificate, if it presented one.
        x509: Option<String>,
        outbox: Outbox,
    },
    /// A decoded request on an established connection.
    Request {
        conn: ConnId,
        xid: i32,
        opcode: i32,
        req: Request,
    },
    /// A request whose header was read but whose body could not be decoded.
    Undecodable { conn: ConnId, xid: i32 },
    /// The connection has ended.
    Closed { conn: ConnId },
    /// The connection's writer wrote `bytes` more of its frames to the socket.
    Delivered { conn: ConnId, bytes: usize },
    /// A four-letter word from `remote`; the answer goes back on `reply`.
    FourLetter {
        cmd: String,
        remote: SocketAddr,
        reply: oneshot::Sender<String>,
    },
    /// An AdminServer command (`/commands/<name>?k=v...`); the JSON answer goes back on
    /// `reply`.
    Admin {
        name: String,
        args: Vec<(String, String)>,
        reply: oneshot::Sender<serde_json::Value>,
    },
    /// A Prometheus scrape: the gauges go back on `reply`.
    Metrics {
        reply: oneshot::Sender<Vec<(&'static str, f64)>>,
    },
}

/// What a connection's writer drains.
enum Outgoing {
    Frame(Bytes),
    Close,
}

/// A connection's outbound queue, as the driver holds it: bounded in bytes
/// ([`OUTBOUND_BYTES`]), the byte budget kept here (added on push, given back by the
/// connection's writer once written).
pub struct Outbox {
    tx: mpsc::UnboundedSender<Outgoing>,
    queued: Arc<AtomicUsize>,
    closed: watch::Sender<bool>,
}

/// Why a frame could not be queued: the client is not reading its replies.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

impl Outbox {
    /// Queues a frame; a client that let its queue fill up is not reading.
    pub fn push(&self, frame: Bytes) -> Result<(), Full> {
        let cost = frame.len() + FRAME_OVERHEAD;
        if self.queued.load(Ordering::Relaxed) + cost > OUTBOUND_BYTES {
            return Err(Full);
        }
        self.queued.fetch_add(cost, Ordering::Relaxed);
        if self.tx.send(Outgoing::Frame(frame)).is_err() {
            self.queued.fetch_sub(cost, Ordering::Relaxed);
            return Err(Full);
        }
        Ok(())
    }

    /// Closes the connection after what is queued (its reader reports `Closed`).
    pub fn close(&self) {
        let _ = self.tx.send(Outgoing::Close);
        let _ = self.closed.send(true);
    }
}

/// How long one write to a client may block before the client is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits for one connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub max_frame_len: usize,
    /// How long a new connection may take to send its ConnectRequest.
    pub handshake_timeout: Duration,
}

/// Serves one accepted connection until it closes.
pub async fn serve_connection<S>(
    stream: S,
    remote: SocketAddr,
    conn: ConnId,
    limits: ConnLimits,
    x509: Option<String>,
    to_driver: mpsc::Sender<Inbound>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(4096);

    // The first four bytes are either a frame length or a four-letter word.
    let first = tokio::time::timeout(limits.handshake_timeout, async {
        while buf.len() < 4 {
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
        true
    })
    .await;
    if !matches!(first, Ok(true)) {
        tracing::debug!(%remote, "connection closed before its first request");
        return;
    }
    let head = [buf[0], buf[1], buf[2], buf[3]];
    if let Some(cmd) = four_letter_word(&head) {
        let (tx, rx) = oneshot::channel();
        if to_driver
            .send(Inbound::FourLetter {
                cmd: cmd.to_string(),
                remote,
                reply: tx,
            })
            .await
            .is_ok()
        {
            if let Ok(text) = rx.await {
                let _ = wr.write_all(text.as_bytes()).await;
                let _ = wr.flush().await;
            }
        }
        let _ = wr.shutdown().await;
        return;
    }

    // Handshake: one ConnectRequest frame.
    let connect = tokio::time::timeout(limits.handshake_timeout, async {
        loop {
            match decode_frame(&mut buf, limits.max_frame_len) {
                Ok(Some(frame)) => {
                    return ConnectRequest::decode(&frame).map_err(|e| e.to_string())
                }
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            match rd.read_buf(&mut buf).await {
                Ok(0) => return Err("closed during handshake".to_string()),
                Err(e) => return Err(e.to_string()),
                Ok(_) => {}
            }
        }
    })
    .await;
    let request = match connect {
        Ok(Ok(r)) => r,
        Ok(Err(why)) => {
            tracing::info!(%remote, "closing connection: bad ConnectRequest: {why}");
            return;
        }
        Err(_) => {
            tracing::info!(%remote, "closing connection: no ConnectRequest in time");
            return;
        }
    };

    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let queued = Arc::new(AtomicUsize::new(0));
    let drained = Arc::new(Notify::new());
    let (closed_tx, mut closed_rx) = watch::channel(false);
    let outbox = Outbox {
        tx: out_tx,
        queued: queued.clone(),
        closed: closed_tx.clone(),
    };
    if to_driver
        .send(Inbound::Connect {
            conn,
            request,
            remote,
            x509,
            outbox,
        })
        .await
        .is_err()
    {
        return;
    }

    // Writer: drains the outbound queue and reports what it wrote; a close request or a
    // stuck client ends it.
    let writer_closed = closed_tx.clone();
    let writer_queued = queued.clone();
    let writer_drained = drained.clone();
    let reports = to_driver.clone();
    let writer = tokio::spawn(async move {
        let mut unreported = 0;
        let mut peak = 0;
        while let Some(item) = out_rx.recv().await {
            match item {
                Outgoing::Frame(frame) => {
                    peak = peak.max(writer_queued.load(Ordering::Relaxed));
                    let ok = write_frame(&mut wr, &frame).await;
                    writer_queued.fetch_sub(frame.len() + FRAME_OVERHEAD, Ordering::Relaxed);
                    writer_drained.notify_one();
                    if !ok {
                        tracing::info!(%remote, "closing connection: client is not reading");
                        break;
                    }
                    unreported += frame.len();
                    if unreported >= DELIVERY_REPORT {
                        let report = Inbound::Delivered {
                            conn,
                            bytes: std::mem::take(&mut unreported),
                        };
                        if reports.send(report).await.is_err() {
                            break;
                        }
                    }
                }
                Outgoing::Close => break,
            }
        }
        let _ = wr.shutdown().await;
        let _ = writer_closed.send(true);
        peak
    });

    // Reader: frames -> requests, until EOF, bad input, or a close; no further request
    // while the client leaves its replies unread.
    let reason = 'conn: loop {
        loop {
            while queued.load(Ordering::Relaxed) >= READ_PAUSE {
                if *closed_rx.borrow() {
                    break 'conn "closed";
                }
                tokio::select! {
                    biased;
                    _ = closed_rx.changed() => break 'conn "closed by server",
                    _ = drained.notified() => {}
                }
            }
            match decode_frame(&mut buf, limits.max_frame_len) {
                Ok(Some(frame)) => match decode_request(&frame) {
                    // An unknown opcode is answered Unimplemented and then closed by the
                    // driver, in order with the session's other replies (as ZooKeeper).
                    Ok((header, req)) => {
                        let msg = Inbound::Request {
                            conn,
                            xid: header.xid,
                            opcode: header.opcode,
                            req,
                        };
                        if to_driver.send(msg).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => match RequestHeader::read(&mut Reader::new(&frame)) {
                        // A readable header with an undecodable body: ZooKeeper answers
                        // MarshallingError and keeps the connection.
                        Ok(header) => {
                            tracing::debug!(%remote, "undecodable request body: {e}");
                            let msg = Inbound::Undecodable {
                                conn,
                                xid: header.xid,
                            };
                            if to_driver.send(msg).await.is_err() {
                                break;
                            }
                        }
                        Err(_) => {
                            tracing::info!(%remote, "closing connection: malformed request: {e}");
                            let _ = closed_tx.send(true);
                            break;
                        }
                    },
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(%remote, "closing connection: {e}");
                    let _ = closed_tx.send(true);
                    break;
                }
            }
        }
        if *closed_rx.borrow() {
            break "closed";
        }
        tokio::select! {
            biased;
            _ = closed_rx.changed() => break "closed by server",
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break "client closed the connection",
                Ok(_) => {}
                Err(_) => break "read error",
            },
        }
    };
    tracing::debug!(%remote, conn, "connection ended: {reason}");
    let _ = to_driver.send(Inbound::Closed { conn }).await;
    let _ = closed_tx.send(true);
    if let Ok(peak) = writer.await {
        if peak >= RELEASE_AFTER {
            release_memory();
        }
    }
}

/// A connection that had this much queued gives the memory back when it ends.
const RELEASE_AFTER: usize = 1 << 20;

/// Returns freed heap memory to the system (glibc keeps it otherwise: a burst of large
/// replies would stay resident after the clients are gone): half a second after the
/// last such connection ended, once for all that ended meanwhile.
#[cfg(all(not(madsim), target_os = "linux", target_env = "gnu"))]
fn release_memory() {
    use std::sync::atomic::AtomicBool;
    static PENDING: AtomicBool = AtomicBool::new(false);
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    tokio::spawn(async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        PENDING.store(false, Ordering::Release);
        // SAFETY: malloc_trim only walks the allocator's free memory and releases it.
        unsafe {
            libc::malloc_trim(0);
        }
    });
}

#[cfg(not(all(not(madsim), target_os = "linux", target_env = "gnu")))]
fn release_memory() {}

async fn write_frame<W: AsyncWrite + Unpin>(wr: &mut W, frame: &Bytes) -> bool {
    let res = tokio::time::timeout(WRITE_TIMEOUT, async {
        wr.write_all(frame).await?;
        wr.flush().await
    })
    .await;
    matches!(res, Ok(Ok(())))
}
