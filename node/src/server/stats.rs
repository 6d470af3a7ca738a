//! Counters reported by the four-letter words.

/// Server-wide counters (`srvr`, `mntr`), reset by `srst`.
#[derive(Clone, Debug, Default)]
pub struct ServerStats {
    /// Packets received from clients.
    pub received: u64,
    /// Packets sent to clients.
    pub sent: u64,
    /// Request latency: from the processor taking a request to its reply being queued.
    pub latency: Summary,
    /// Failed `addauth` requests (`zk_auth_failed_count`).
    pub auth_failed: u64,
    /// Sizes of the replies sent (`zk_{min,last,max}_client_response_size`).
    pub response_size: ResponseSize,
}

/// Reply sizes in bytes, as ZooKeeper's `BufferStats` (-1 before any reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseSize {
    /// The last reply's size.
    pub last: i64,
    /// The smallest reply.
    pub min: i64,
    /// The largest reply.
    pub max: i64,
}

impl Default for ResponseSize {
    fn default() -> Self {
        ResponseSize {
            last: -1,
            min: -1,
            max: -1,
        }
    }
}

impl ResponseSize {
    /// Adds one reply of `bytes` bytes.
    pub fn record(&mut self, bytes: usize) {
        let b = bytes as i64;
        self.last = b;
        self.min = if self.min < 0 { b } else { self.min.min(b) };
        self.max = self.max.max(b);
    }
}

impl ServerStats {
    /// `srst`: zero every counter.
    pub fn reset(&mut self) {
        *self = ServerStats::default();
    }
}

/// Min / average / max / count / sum of measured values (ms, or counts), as ZooKeeper's
/// `ServerStats` reports request latency (`zk_min_latency`, `zk_avg_latency`,
/// `zk_max_latency`) and its `AvgMinMaxCounter` summaries (`zk_avg_fsynctime`...); all 0
/// before anything was measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Summary {
    count: u64,
    total_ms: u64,
    min_ms: u64,
    max_ms: u64,
}

impl Summary {
    /// Adds one request's latency.
    pub fn record(&mut self, ms: u64) {
        self.min_ms = if self.count == 0 {
            ms
        } else {
            self.min_ms.min(ms)
        };
        self.max_ms = self.max_ms.max(ms);
        self.total_ms = self.total_ms.saturating_add(ms);
        self.count += 1;
    }

    /// The smallest latency, in ms.
    pub fn min(&self) -> u64 {
        self.min_ms
    }

    /// The largest latency, in ms.
    pub fn max(&self) -> u64 {
        self.max_ms
    }

    /// The average latency, in ms.
    pub fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ms as f64 / self.count as f64
        }
    }

    /// Values measured.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The sum of the values measured.
    pub fn sum(&self) -> u64 {
        self.total_ms
    }
}

/// What the runtime measured of its storage, reported by `mntr` under ZooKeeper's
/// summary names: each log fsync's duration (`fsynctime`, ms), each snapshot's
/// serialization and write (`snapshottime`, ms), and the txns each fsync made durable
/// (`sync_processor_batch_size`: group commit at work).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StorageStats {
    pub fsync_ms: Summary,
    pub snapshot_ms: Summary,
    pub batch_txns: Summary,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_min_avg_max() {
        let mut l = Summary::default();
        assert_eq!((l.min(), l.avg(), l.max()), (0, 0.0, 0));
        for ms in [5, 1, 9, 1] {
            l.record(ms);
        }
        assert_eq!((l.min(), l.avg(), l.max(), l.count()), (1, 4.0, 9, 4));
        let mut s = ServerStats {
            received: 3,
            sent: 2,
            latency: l,
            auth_failed: 1,
            response_size: ResponseSize::default(),
        };
        s.response_size.record(40);
        s.reset();
        assert_eq!((s.received, s.sent, s.latency.count()), (0, 0, 0));
        assert_eq!((s.auth_failed, s.response_size.max), (0, -1));
    }

    #[test]
    fn response_sizes_min_last_max() {
        let mut r = ResponseSize::default();
        assert_eq!((r.min, r.last, r.max), (-1, -1, -1));
        for b in [16, 100, 40] {
            r.record(b);
        }
        assert_eq!((r.min, r.last, r.max), (16, 40, 100));
    }
}
