//! Wall-clock input. The runtime reads wall time only to stamp txns
//! (ctime/mtime) and session ids; the simulator supplies a skewed clock, and the rate
//! of the server's timers (a crystal that runs fast or slow, a starved timer thread).

use std::sync::Arc;

/// A source of wall-clock milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;

    /// How fast the server's timers run, in thousandths of their nominal rate: the
    /// driver takes this many thousandths of a core tick per timer period (1000: one
    /// tick per period; 500: every other period; 3000: three ticks at once).
    fn timer_permille(&self) -> u32 {
        1000
    }
}

/// The host's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;
