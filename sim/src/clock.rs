//! Per-node wall clocks with offset, drift and jumps, fed to each simulated node's clock
//! input (madsim has one global clock, so skew must come from here).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Clock state of one server: `now = true_now + offset + drift_ppm * (true_now - since) / 1e6`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skew {
    /// Constant offset, ms.
    pub offset_ms: i64,
    /// Drift in parts per million since `since_ms`.
    pub drift_ppm: i64,
    /// True time at which drift started, ms.
    pub since_ms: u64,
}

impl Skew {
    /// The skewed reading for a true time in ms (never negative).
    pub fn apply(&self, true_ms: u64) -> u64 {
        let elapsed = true_ms.saturating_sub(self.since_ms) as i128;
        let drift = elapsed * self.drift_ppm as i128 / 1_000_000;
        (true_ms as i128 + self.offset_ms as i128 + drift).max(0) as u64
    }
}

/// The skews of every server of a run, shared between the fault executor and the nodes.
#[derive(Debug, Clone, Default)]
pub struct Clocks {
    skews: Arc<Mutex<BTreeMap<usize, Skew>>>,
    /// Timer rates (thousandths of nominal) of servers whose timers drift.
    timers: Arc<Mutex<BTreeMap<usize, u32>>>,
}

impl Clocks {
    /// Set server `i`'s skew from true time `now_ms`.
    pub fn skew(&self, i: usize, offset_ms: i64, drift_ppm: i64, now_ms: u64) {
        self.skews.lock().expect("clock lock").insert(
            i,
            Skew {
                offset_ms,
                drift_ppm,
                since_ms: now_ms,
            },
        );
    }

    /// Jump server `i`'s clock by `delta_ms`.
    pub fn jump(&self, i: usize, delta_ms: i64) {
        self.skews
            .lock()
            .expect("clock lock")
            .entry(i)
            .or_default()
            .offset_ms += delta_ms;
    }

    /// Back to true time.
    pub fn reset(&self, i: usize) {
        self.skews.lock().expect("clock lock").remove(&i);
    }

    /// Server `i`'s timers run at `permille` thousandths of their rate (0 stalls them).
    pub fn set_timer(&self, i: usize, permille: u32) {
        self.timers.lock().expect("clock lock").insert(i, permille);
    }

    /// Server `i`'s timers back to their nominal rate.
    pub fn reset_timer(&self, i: usize) {
        self.timers.lock().expect("clock lock").remove(&i);
    }

    /// Server `i`'s timer rate in thousandths.
    pub fn timer(&self, i: usize) -> u32 {
        self.timers
            .lock()
            .expect("clock lock")
            .get(&i)
            .copied()
            .unwrap_or(1000)
    }

    /// Server `i`'s reading at true time `true_ms`.
    pub fn read(&self, i: usize, true_ms: u64) -> u64 {
        self.skews
            .lock()
            .expect("clock lock")
            .get(&i)
            .map_or(true_ms, |s| s.apply(true_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skew_offset_drift_jump_reset() {
        let c = Clocks::default();
        assert_eq!(c.read(0, 1_000), 1_000);
        c.skew(0, 500, 100_000, 1_000); // +500ms, +10%
        assert_eq!(c.read(0, 1_000), 1_500);
        assert_eq!(c.read(0, 11_000), 11_000 + 500 + 1_000);
        assert_eq!(c.read(1, 11_000), 11_000);
        c.jump(0, -20_000);
        assert_eq!(c.read(0, 11_000), 0, "never negative");
        c.reset(0);
        assert_eq!(c.read(0, 11_000), 11_000);
        c.jump(2, 7);
        assert_eq!(c.read(2, 1), 8);
    }
}
