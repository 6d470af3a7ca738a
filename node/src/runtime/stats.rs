//! Counters reported by the four-letter words.

/// Server-wide counters (`srvr`, `mntr`).
#[derive(Clone, Debug, Default)]
pub struct ServerStats {
    pub received: u64,
    pub sent: u64,
}
