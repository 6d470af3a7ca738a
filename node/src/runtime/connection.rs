//! One client connection: framing, the four-letter-word sniff, the
//! handshake, and the reader/writer halves.
//!
//! The reader decodes frames and hands requests to the driver through a
//! bounded channel (so a flood of requests back-pressures the client, as
//! ZooKeeper's throttling does). The writer drains a bounded outbound queue;
//! a client that stops reading fills it and is disconnected. Any malformed,
//! truncated or oversized input closes this connection with a log line and
//! nothing else.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::proto::client::{
    decode_frame, decode_request, four_letter_word, ConnectRequest, Request, RequestHeader,
};
use crate::proto::jute::Reader;
use crate::server::ConnId;

/// Frames queued for one client before it counts as not reading.
pub const OUTBOUND_QUEUE: usize = 4096;
/// Bytes queued for one client before it counts as not reading.
pub const OUTBOUND_BYTES: usize = 64 << 20;

/// Messages from connections to the driver.
pub enum Inbound {
    /// A handshake arrived; replies go to `outbox`.
    Connect {
        conn: ConnId,
        request: ConnectRequest,
        remote: SocketAddr,
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
    /// A four-letter word from `remote`; the answer goes back on `reply`.
    FourLetter {
        cmd: String,
        remote: SocketAddr,
        reply: oneshot::Sender<String>,
    },
    /// An AdminServer command (`/commands/<name>`); the JSON answer goes back on `reply`.
    Admin {
        name: String,
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

/// A connection's outbound queue, as the driver holds it: bounded in frames
/// ([`OUTBOUND_QUEUE`]) and in bytes ([`OUTBOUND_BYTES`]), the byte budget kept here
/// (added on push, given back by the connection's writer once written).
pub struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    queued: Arc<AtomicUsize>,
    closed: watch::Sender<bool>,
}

/// Why a frame could not be queued: the client is not reading its replies.
#[derive(Debug, PartialEq, Eq)]
pub struct Full;

impl Outbox {
    /// Queues a frame; a client that let its queue fill up is not reading.
    pub fn push(&self, frame: Bytes) -> Result<(), Full> {
        let len = frame.len();
        if self.queued.load(Ordering::Relaxed) + len > OUTBOUND_BYTES {
            return Err(Full);
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        if self.tx.try_send(Outgoing::Frame(frame)).is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            return Err(Full);
        }
        Ok(())
    }

    /// Closes the connection after what is queued (its reader reports `Closed`).
    pub fn close(&self) {
        let _ = self.tx.try_send(Outgoing::Close);
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

    let (out_tx, mut out_rx) = mpsc::channel::<Outgoing>(OUTBOUND_QUEUE);
    let queued = Arc::new(AtomicUsize::new(0));
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
            outbox,
        })
        .await
        .is_err()
    {
        return;
    }

    // Writer: drains the outbound queue; a close request or a stuck client ends it.
    let writer_closed = closed_tx.clone();
    let writer = tokio::spawn(async move {
        while let Some(item) = out_rx.recv().await {
            match item {
                Outgoing::Frame(frame) => {
                    let ok = write_frame(&mut wr, &frame).await;
                    queued.fetch_sub(frame.len(), Ordering::Relaxed);
                    if !ok {
                        tracing::info!(%remote, "closing connection: client is not reading");
                        break;
                    }
                }
                Outgoing::Close => break,
            }
        }
        let _ = wr.shutdown().await;
        let _ = writer_closed.send(true);
    });

    // Reader: frames -> requests, until EOF, bad input, or a close.
    let reason = loop {
        loop {
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
    let _ = writer.await;
}

async fn write_frame<W: AsyncWrite + Unpin>(wr: &mut W, frame: &Bytes) -> bool {
    let res = tokio::time::timeout(WRITE_TIMEOUT, async {
        wr.write_all(frame).await?;
        wr.flush().await
    })
    .await;
    matches!(res, Ok(Ok(())))
}
