//! What the pipeline knows about one client connection.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::proto::client::Request;
use crate::types::{Id, SessionId, Zxid};

use super::stats::Summary;

/// Requests a connection may send before its session is established.
pub(super) const EARLY_REQUESTS: usize = 1024;

/// Requests held on a connection whose replies are not being read; more closes it (its
/// reader stops reading long before, so only a runtime that ignores the credit gets here).
pub(super) const HELD_REQUESTS: usize = 65_536;

/// Requests per connection whose arrival time is kept for the latency statistics; beyond
/// this, the oldest are no longer measured.
const LATENCY_TRACKED: usize = 1024;

/// One client connection.
#[derive(Debug)]
pub struct Conn {
    pub remote: SocketAddr,
    /// 0 until the session is established.
    pub session: SessionId,
    pub timeout_ms: i32,
    /// The connection's auth ids (`ip` first, then those `addauth` added).
    pub auth: Vec<Id>,
    pub received: u64,
    pub sent: u64,
    pub last_zxid: Zxid,
    pub last_op: &'static str,
    /// Whether the client sent the readOnly byte (and so expects it back).
    pub read_only_present: bool,
    /// Requests not answered yet: xid and the time they were taken (ms), for the latency
    /// statistics. Replies come in request order.
    pub pending: VecDeque<(i32, u64)>,
    /// Requests taken but held back, in arrival order: those behind the ConnectRequest
    /// until the session is established (a client may pipeline them, as ZooKeeper
    /// allows; at most [`EARLY_REQUESTS`]), and those that arrive while the connection
    /// has no [`Conn::credit`] left (at most [`HELD_REQUESTS`]); more closes it.
    pub held: VecDeque<(i32, i32, Request)>,
    /// Bytes of frames this connection may still be sent before its requests are held:
    /// [`super::OUTBOUND_CREDIT`] less the bytes sent and not yet reported delivered
    /// (written to the socket) by the runtime. Replies are built only while it is
    /// positive, so a client that does not read makes the server hold its small
    /// requests, not their large replies; watch events are sent regardless.
    pub credit: i64,
    /// When the connection was established (ms since the epoch), for `cons`.
    pub established_ms: i64,
    /// The xid of the last request answered, and when (ms since the server started).
    pub last_cxid: i32,
    pub last_response_ms: i64,
    /// This connection's request latencies (`cons`: llat, minlat/avglat/maxlat).
    pub last_latency_ms: u64,
    pub latency: Summary,
}

impl Conn {
    pub(super) fn new(remote: SocketAddr, read_only_present: bool, now_ms: i64) -> Conn {
        Conn {
            remote,
            session: 0,
            timeout_ms: 0,
            auth: vec![Id::new("ip", &remote.ip().to_string())],
            // The ConnectRequest.
            received: 1,
            sent: 0,
            last_zxid: 0,
            last_op: "NA",
            read_only_present,
            pending: VecDeque::new(),
            held: VecDeque::new(),
            credit: super::OUTBOUND_CREDIT as i64,
            established_ms: now_ms,
            last_cxid: 0,
            last_response_ms: 0,
            last_latency_ms: 0,
            latency: Summary::default(),
        }
    }

    /// Counts a request taken from this connection at `now_ms` and keeps its xid for the
    /// latency statistics (the oldest is dropped past [`LATENCY_TRACKED`]).
    pub(super) fn took(&mut self, xid: i32, now_ms: u64) {
        self.received += 1;
        if self.pending.len() == LATENCY_TRACKED {
            self.pending.pop_front();
        }
        self.pending.push_back((xid, now_ms));
    }

    /// Records the answer to request `xid` at `now_ms`; returns its latency if it was
    /// measured (requests ahead of it that were never answered are not).
    pub(super) fn answered(&mut self, xid: i32, now_ms: u64, started_ms: i64) -> Option<u64> {
        let mut measured = None;
        while let Some((pending, since)) = self.pending.pop_front() {
            if pending == xid {
                let ms = now_ms.saturating_sub(since);
                self.latency.record(ms);
                self.last_latency_ms = ms;
                measured = Some(ms);
                break;
            }
        }
        if xid > 0 {
            self.last_cxid = xid;
        }
        // As ZooKeeper's lresp: a monotonic reading (here ms since start), not wall time.
        self.last_response_ms = (now_ms as i64 - started_ms).max(1);
        measured
    }

    /// `crst`: the connection's counters start again.
    pub(super) fn reset_counters(&mut self) {
        self.received = 0;
        self.sent = 0;
        self.last_zxid = 0;
        self.last_op = "NA";
        self.last_cxid = 0;
        self.last_response_ms = 0;
        self.last_latency_ms = 0;
        self.latency = Summary::default();
    }
}
