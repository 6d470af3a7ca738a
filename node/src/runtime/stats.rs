//! Counters reported by the four-letter words.

/// Server-wide counters (`srvr`, `mntr`), reset by `srst`.
#[derive(Clone, Debug, Default)]
pub struct ServerStats {
    /// Packets received from clients.
    pub received: u64,
    /// Packets sent to clients.
    pub sent: u64,
    /// Request latency: from the processor taking a request to its reply being queued.
    pub latency: Latency,
}

impl ServerStats {
    /// `srst`: zero every counter.
    pub fn reset(&mut self) {
        *self = ServerStats::default();
    }
}

/// Min / average / max of request latencies in ms, as ZooKeeper's `ServerStats` reports
/// them (`zk_min_latency`, `zk_avg_latency`, `zk_max_latency`; all 0 before any request).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    count: u64,
    total_ms: u64,
    min_ms: u64,
    max_ms: u64,
}

impl Latency {
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

    /// Requests measured.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_min_avg_max() {
        let mut l = Latency::default();
        assert_eq!((l.min(), l.avg(), l.max()), (0, 0.0, 0));
        for ms in [5, 1, 9, 1] {
            l.record(ms);
        }
        assert_eq!((l.min(), l.avg(), l.max(), l.count()), (1, 4.0, 9, 4));
        let mut s = ServerStats {
            received: 3,
            sent: 2,
            latency: l,
        };
        s.reset();
        assert_eq!((s.received, s.sent, s.latency.count()), (0, 0, 0));
    }
}
