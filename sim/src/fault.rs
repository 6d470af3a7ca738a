//! The fault vocabulary of the simulator: the kinds of fault a scenario generates
//! ([`FaultKind`], [`FaultGen`]), and the concrete faults and repairs a plan holds
//! ([`Fault`], [`DiskFault`]). Scenarios name generators, plans list faults; both speak
//! this module's words and neither imports the other.

use serde::{Deserialize, Serialize};

/// The kinds of fault a scenario can generate (the `kind` of a `[[faults]]` entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// Split the servers into two random halves.
    RandomHalves,
    /// Each server reaches only its ring neighbours (every node sees a majority-ish ring).
    MajorityRing,
    /// Two halves connected only through one bridge server.
    Bridge,
    /// Cut the current leader off from every other server (resolved at run time).
    IsolateLeader,
    /// The old leader plus a minority keep running with their clients while the majority
    /// elects a new leader (resolved at run time, like `isolate-leader` with a minority).
    SplitBrain,
    /// One direction of one link between two servers.
    OneWay,
    /// Crash a server (its disk drops unsynced writes), restart it later.
    Crash,
    /// Crash a server and tear the tail of its last unsynced write.
    CrashTornTail,
    /// Restart every server in turn.
    RollingRestart,
    /// Pause a server (a long GC pause), resume it later.
    Pause,
    /// Skew one server's clock by an offset and drift.
    ClockSkew,
    /// Jump one server's clock forward or backward.
    ClockJump,
    /// Raise message latency.
    Delay,
    /// Drop packets (TCP retransmits: shows as delay).
    Loss,
    /// Writes or syncs fail with EIO with a probability.
    DiskEio,
    /// The next fsync fails (the node must stop).
    FsyncFail,
    /// Flip a bit in durable data at rest.
    BitRot,
    /// The disk runs out of space.
    DiskFull,
    /// Pause a client for longer than its session timeout.
    ClientPause,
}

/// One concrete fault or repair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Fault {
    /// Clog the listed directed links `[from, to]`.
    Partition {
        /// Which generator produced it (for reports).
        label: FaultKind,
        /// Directed links to clog.
        cut: Vec<[String; 2]>,
    },
    /// Cut the current leader off from the other servers; with `minority > 0`, keep that
    /// many other servers on the leader's side (split brain).
    IsolateLeader {
        /// Extra servers that stay with the old leader.
        minority: usize,
    },
    /// Unclog every link.
    Heal,
    /// Kill a server's node; its disk drops unsynced writes.
    Crash {
        /// Server index.
        server: usize,
        /// Leave a torn prefix of the last unsynced write.
        torn_tail: bool,
    },
    /// Restart a crashed server.
    Restart {
        /// Server index.
        server: usize,
    },
    /// Pause a server.
    Pause {
        /// Server index.
        server: usize,
    },
    /// Resume a paused server.
    Resume {
        /// Server index.
        server: usize,
    },
    /// Set one server's clock offset (ms) and drift (parts per million).
    ClockSkew {
        /// Server index.
        server: usize,
        /// Offset from true time.
        offset_ms: i64,
        /// Drift rate.
        drift_ppm: i64,
    },
    /// Jump one server's clock.
    ClockJump {
        /// Server index.
        server: usize,
        /// Signed jump.
        delta_ms: i64,
    },
    /// Reset one server's clock to true time.
    ClockReset {
        /// Server index.
        server: usize,
    },
    /// Message latency range.
    NetDelay {
        /// Lower bound.
        min_ms: u64,
        /// Upper bound.
        max_ms: u64,
    },
    /// Packet loss rate.
    NetLoss {
        /// Probability in `[0, 1)`.
        rate: f64,
    },
    /// Back to normal latency and no loss.
    NetNormal,
    /// Arm a disk fault on one server.
    Disk {
        /// Server index.
        server: usize,
        /// What fails.
        fault: DiskFault,
    },
    /// Disarm every disk fault on one server.
    DiskHeal {
        /// Server index.
        server: usize,
    },
    /// Flip a bit in one server's durable data.
    BitRot {
        /// Server index.
        server: usize,
    },
    /// Pause a client node (longer than its session timeout).
    ClientPause {
        /// Client index.
        client: usize,
    },
    /// Resume a paused client.
    ClientResume {
        /// Client index.
        client: usize,
    },
}

/// Disk faults a server can be given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "kebab-case")]
pub enum DiskFault {
    /// Writes and syncs fail with EIO with this probability.
    Eio {
        /// Probability.
        probability: f64,
    },
    /// The next fsync fails.
    FsyncFail,
    /// No more than this many further bytes fit.
    Full {
        /// Remaining byte budget.
        bytes_left: u64,
    },
}

/// One fault generator: `rate_per_min` events per virtual minute of the safety phase on
/// average, each lasting `duration_ms` (a `[lo, hi]` range) before its paired end event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultGen {
    /// Which fault.
    pub kind: FaultKind,
    /// Mean events per virtual minute.
    pub rate_per_min: f64,
    /// How long the fault lasts, `[lo, hi]` ms.
    #[serde(default = "default_duration")]
    pub duration_ms: [u64; 2],
}

fn default_duration() -> [u64; 2] {
    [500, 5_000]
}
