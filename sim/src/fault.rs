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
    /// One server's timers run slow, stalled, or fast (its ticks, not its wall clock).
    TimerDrift,
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
    /// Arm a crash point: the next time a server (a given one, or any) reaches a storage
    /// step of the ZAB protocol, crash it right before, right after, or inside that step;
    /// restart it later. Weighted toward the synchronization phase's steps.
    CrashPoint,
    /// Cut the current leader off while clients keep writing to it (it logs txns it can
    /// never commit), crash it while it is cut off, heal, and restart it: it must drop
    /// what the new leader does not have (TRUNC, then a reload of its tree).
    IsolateCrashLeader,
}

/// A storage step of the node, where a crash point fires. Each is one persist action of
/// a ZAB step, as the node's `Storage` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// A txn appended to the log: a PROPOSE, or one txn of a DIFF.
    Append,
    /// The log fsynced: the end of a step that appended.
    Fsync,
    /// acceptedEpoch written: a learner taking LEADERINFO, a leader its NEWEPOCH.
    AcceptedEpoch,
    /// currentEpoch written: a learner taking NEWLEADER, a leader its own.
    CurrentEpoch,
    /// The log truncated: TRUNC, or the suffix above a leader's SNAP.
    Truncate,
    /// The leader's SNAP saved as the learner's snapshot.
    Snap,
}

/// Where, relative to its step, a crash point crashes the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Moment {
    /// The step never happens.
    Before,
    /// The step is done (for an fsync, durable), and nothing after it.
    After,
    /// Inside the step: its writes (and the log's buffered records) reach the file, then
    /// the power fails before an fsync covers them, so a random prefix of them survives
    /// and the first lost one may leave a torn prefix (for the fsync step: the records it
    /// was to make durable; for the steps that sync themselves, `after` plus a torn tail
    /// of whatever the log had not synced).
    Torn,
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
    /// One server's timers run at `permille` thousandths of their rate.
    TimerRate {
        /// Server index.
        server: usize,
        /// Rate in thousandths (0: stalled).
        permille: u32,
    },
    /// One server's timers back to their nominal rate.
    TimerReset {
        /// Server index.
        server: usize,
    },
    /// The current leader's timers run at `permille` thousandths of their rate
    /// (resolved at run time; the server is remembered for [`Fault::LeaderTimerReset`]).
    LeaderTimerRate {
        /// Rate in thousandths (0: stalled).
        permille: u32,
    },
    /// The timers slowed by [`Fault::LeaderTimerRate`] back to their nominal rate.
    LeaderTimerReset,
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
    /// Arm a crash point: the first of the named servers (all when `server` is `None`) to
    /// reach `step` afterwards is crashed at `moment`, and restarted `restart_after_ms`
    /// later. It stays armed until it fires or everything heals.
    CrashPoint {
        /// Server index, or any server.
        server: Option<usize>,
        /// The storage step.
        step: Step,
        /// Before, after or inside it.
        moment: Moment,
        /// How long the server stays down once the point fires.
        restart_after_ms: u64,
    },
    /// Crash the server the last `isolate-leader` cut off (if it is up).
    CrashIsolated,
    /// Restart the server `crash-isolated` crashed.
    RestartIsolated,
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
