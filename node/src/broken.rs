//! Deliberately broken behaviours, for the simulator's proof that it bites
//! (`zabkeeper-sim`'s `tests/bites.rs` and `zabkeeper-sim run --broken <bug>`).
//!
//! The names ([`Bug`]) exist in every build, so the simulator's options can carry one; the
//! switch ([`active`], [`set`]) and every call site exist only in the madsim build
//! (`--cfg madsim`): the shipped node cannot contain a broken behaviour. One bug at most is
//! active per simulation thread; a run sets it before it starts its servers, so one
//! simulator binary proves every bug without a rebuild. Each call site reads it as
//! `crate::broken::active(Bug::X)` under `#[cfg(madsim)]`.

#[cfg(madsim)]
use std::cell::Cell;

/// One deliberately broken behaviour, named after what it gets wrong.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Bug {
    /// The leader commits a proposal on its own ACK (`core/broadcast.rs`).
    CommitWithoutQuorum,
    /// A learner ignores TRUNC and keeps txns the leader does not have (`core/synchronization.rs`).
    SkipTrunc,
    /// A learner truncates its log on TRUNC but keeps the tree it had applied, txns above
    /// the TRUNC point included (`core/synchronization.rs`): what a restarted ex-leader
    /// replayed from its log but the new leader never had stays in its tree.
    TruncWithoutReload,
    /// An observer that lost its leader stops hearing its peers and stays looking
    /// (`server/replicate.rs`).
    ObserverNeverRejoins,
    /// A learner answers a reconnect "expired" from its own, possibly lagging, session
    /// table (`server/session.rs`).
    LearnerTrustsOwnSessions,
    /// A learner resumes a session its table holds without asking the leader, and the
    /// leader takes writes of any session (`server/session.rs`, `server/replicate.rs`).
    SessionsNotValidated,
    /// Every conditional op (setData, delete, setACL, check) ignores its expected version
    /// (`state/prep.rs`).
    LostCasCheck,
    /// A learner answers `sync` at once instead of after the leader's SYNC
    /// (`server/replicate.rs`): a read after sync may be stale.
    SyncWithoutLeader,
    /// Storage reports an fsync done without doing it, seven times in eight (the
    /// simulator's storage wrapper).
    LyingFsync,
    /// Recovery drops the last committed txn of the log (the simulator's storage wrapper).
    RecoveryDropsTail,
    /// Recovery takes a torn tail of the last log (a crash inside an append or an fsync)
    /// for corruption and refuses to start (`storage/file.rs`).
    TornTailRefused,
    /// A read-only server serves a client that has seen a later zxid than it has
    /// (`server/session.rs`): the client's session goes back in time.
    ReadOnlyIgnoresSeenZxid,
    /// A local session's ephemeral create goes to the leader without the session's
    /// upgrade, and the leader takes it (`server/local.rs`, `server/replicate.rs`): the
    /// ephemeral's owner is a session no leader will ever expire.
    EphemeralWithoutUpgrade,
}

#[cfg(madsim)]
thread_local! {
    static ACTIVE: Cell<Option<Bug>> = const { Cell::new(None) };
}

#[cfg(madsim)]
/// Whether `bug` is the active one on this thread.
pub fn active(bug: Bug) -> bool {
    ACTIVE.with(|a| a.get() == Some(bug))
}

#[cfg(madsim)]
/// Makes `bug` (or none) the active one on this thread.
pub fn set(bug: Option<Bug>) {
    ACTIVE.with(|a| a.set(bug));
}
