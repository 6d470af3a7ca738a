//! Judging a run: the client history (linearizability of register operations per key) and
//! the global checks over node observations (one leader per epoch, no two servers
//! committing different txns at one zxid, committed zxid never going backwards, a session
//! told "expired" only after its CloseSession was committed).
//!
//! [`judge`] is the single entry point the runner calls. Register linearizability is
//! judged by the `zabkeeper-check` library ([`register_check`]: model `kv`, one part per
//! key, single-threaded, a configuration budget that ends in `unknown`). The sim's own
//! small Wing-Gong/Lowe search ([`simple_register_check`]) stays as a cross-check in tests.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::{EventType, HistoryEvent};

/// The outcome of judging one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// Every check passed.
    Pass,
    /// A safety property was violated.
    Violation {
        /// Which check (e.g. `linearizable`, `one-leader-per-epoch`).
        check: String,
        /// What went wrong, naming the operations or servers involved.
        detail: String,
    },
    /// The check ran out of budget; never a guess.
    Unknown {
        /// Why.
        reason: String,
    },
}

/// An observation a node reports to the harness (the sim's global checks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Virtual ms since the start.
    pub at_ms: u64,
    /// Server index.
    pub server: usize,
    /// What was observed.
    #[serde(flatten)]
    pub what: Observed,
}

/// Node observations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "obs", rename_all = "kebab-case")]
pub enum Observed {
    /// The server established itself as leader of `epoch`.
    Leading {
        /// The epoch.
        epoch: u32,
    },
    /// The server committed (applied) the txn with this zxid and payload hash.
    Committed {
        /// The zxid.
        zxid: i64,
        /// Hash of the txn payload.
        txn_hash: u64,
    },
    /// The server (re)started; its committed zxid after recovery.
    Recovered {
        /// Last committed zxid after recovery.
        zxid: i64,
    },
    /// The server's tree digest right after it applied the committed txn `zxid`.
    Digest {
        /// The zxid.
        zxid: i64,
        /// Digest of the tree.
        digest: u64,
    },
    /// The server refused to start: its storage would not open or its start-up recovery
    /// failed (fail-stop on data it cannot trust).
    RefusedStart {
        /// Why, as the node said it.
        reason: String,
    },
    /// The server applied a committed CloseSession txn (a client's close or an expiry).
    SessionClosed {
        /// The session id, in the history's format (`{:#x}`).
        session: String,
        /// The CloseSession txn's zxid.
        zxid: i64,
    },
    /// The server replaced its whole tree (start-up recovery, the leader's SNAP, or a
    /// reload after TRUNC); the tree is now at `zxid` with `digest`.
    TreeLoaded {
        /// `startup`, `snap` or `trunc`.
        source: String,
        /// The tree's last processed zxid.
        zxid: i64,
        /// Digest of the tree.
        digest: u64,
    },
}

/// Shared sink of node observations for one run.
#[derive(Debug, Clone, Default)]
pub struct Observer {
    events: std::sync::Arc<std::sync::Mutex<Vec<Observation>>>,
}

impl Observer {
    /// Record an observation.
    pub fn observe(&self, at_ms: u64, server: usize, what: Observed) {
        self.events
            .lock()
            .expect("observer lock")
            .push(Observation {
                at_ms,
                server,
                what,
            });
    }

    /// Every observation so far.
    pub fn snapshot(&self) -> Vec<Observation> {
        self.events.lock().expect("observer lock").clone()
    }

    /// Each of `servers` servers' latest tree (see [`latest_trees`]).
    pub fn latest_trees(&self, servers: usize) -> Vec<Option<(i64, u64)>> {
        latest_trees(&self.events.lock().expect("observer lock"), servers)
    }

    /// Whether `server`'s last start at or after `since_ms` was refused
    /// ([`Observed::RefusedStart`], with no tree loaded after it).
    pub fn refused_start_since(&self, server: usize, since_ms: u64) -> bool {
        self.events
            .lock()
            .expect("observer lock")
            .iter()
            .rev()
            .filter(|o| o.server == server && o.at_ms >= since_ms)
            .find_map(|o| match o.what {
                Observed::RefusedStart { .. } => Some(true),
                Observed::TreeLoaded { .. } => Some(false),
                _ => None,
            })
            .unwrap_or(false)
    }

    /// The server that most recently announced leadership, if any.
    pub fn current_leader(&self) -> Option<usize> {
        self.events
            .lock()
            .expect("observer lock")
            .iter()
            .rev()
            .find_map(|o| matches!(o.what, Observed::Leading { .. }).then_some(o.server))
    }
}

/// Per-key register operations budget: beyond this many search steps the verdict is
/// `Unknown`.
pub const SEARCH_BUDGET: usize = 300_000;

/// Judge a run's history and observations. Checks, in order: global observation
/// invariants, session expiry answered only after a committed CloseSession, the queue, lock, membership and watch checks, then linearizability of
/// register operations per key. With `replicated`, plain reads are served by the
/// connected server and may be stale (ZooKeeper's contract), so only reads made after a
/// `sync` (`result.sync`) take part in the linearizability check.
pub fn judge(history: &[HistoryEvent], observations: &[Observation], replicated: bool) -> Verdict {
    let v = check_observations(observations);
    if v != Verdict::Pass {
        return v;
    }
    let v = expiry_check(history, observations);
    if v != Verdict::Pass {
        return v;
    }
    for check in [queue_check, lock_check, membership_check, watch_check] {
        let v = check(history);
        if v != Verdict::Pass {
            return v;
        }
    }
    if replicated {
        let linearizable_reads = |e: &HistoryEvent| {
            e.f != "read"
                || e.kind == EventType::Invoke
                || e.result
                    .as_ref()
                    .and_then(|r| r.get("sync"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
        };
        // Drop stale-able reads whole (invoke and completion).

        let mut keep = vec![true; history.len()];
        let mut open: BTreeMap<u64, usize> = BTreeMap::new();
        for (pos, e) in history.iter().enumerate() {
            if e.f != "read" {
                continue;
            }
            if e.kind == EventType::Invoke {
                open.insert(e.process, pos);
            } else if let Some(inv) = open.remove(&e.process) {
                if !linearizable_reads(e) {
                    keep[inv] = false;
                    keep[pos] = false;
                }
            }
        }
        // Unfinished reads impose nothing either.
        for (_, inv) in open {
            keep[inv] = false;
        }
        let filtered: Vec<HistoryEvent> = history
            .iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(e, _)| e.clone())
            .collect();
        return register_check(&filtered);
    }
    register_check(history)
}

/// Memoized search configurations the checker may use per key before answering `unknown`.
pub const CHECKER_BUDGET: usize = 2_000_000;

/// Linearizability of `read`/`write`/`cas` per key with the `zabkeeper-check` library
/// (model `kv`: read, write, cas, split by key; initial value `null`), deterministically:
/// no threads, no wall-clock limit, a configuration budget ([`CHECKER_BUDGET`]) that ends
/// in [`Verdict::Unknown`]. Operations with other `f` names are not part of this check.
pub fn register_check(history: &[HistoryEvent]) -> Verdict {
    use zabkeeper_check as zc;
    let events: Vec<zc::Event> = history
        .iter()
        .filter(|e| matches!(e.f.as_str(), "read" | "write" | "cas"))
        .map(|e| zc::Event {
            process: e.process,
            kind: match e.kind {
                EventType::Invoke => zc::EventType::Invoke,
                EventType::Ok => zc::EventType::Ok,
                EventType::Fail => zc::EventType::Fail,
                EventType::Info => zc::EventType::Info,
            },
            f: e.f.clone(),
            key: Some(e.key.clone().unwrap_or_default()),
            value: e.value.clone(),
            time: Some(e.time),
            result: e.result.clone(),
            ..zc::Event::default()
        })
        .collect();
    let opts = zc::CheckOptions {
        max_configs: CHECKER_BUDGET,
        time_limit: None,
        threads: 1,
        minimize: true,
        max_minimize_ops: 500,
    };
    let report = zc::check_history(&events, zc::Model::Kv, &opts);
    match report.verdict {
        zc::Verdict::Linearizable => Verdict::Pass,
        zc::Verdict::NotLinearizable => {
            let detail = match report.violations.first() {
                Some(v) => format!(
                    "{}{}: {}{}",
                    v.property,
                    v.part
                        .as_deref()
                        .map(|p| format!(" (key {p})"))
                        .unwrap_or_default(),
                    v.message,
                    if v.details.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", v.details.join("; "))
                    }
                ),
                None => "register operations cannot be linearized (kv model)".to_string(),
            };
            match report.error {
                Some(err) if report.violations.is_empty() => violation("well-formed", err),
                _ => violation("linearizable", detail),
            }
        }
        zc::Verdict::Unknown => Verdict::Unknown {
            reason: report.error.unwrap_or_else(|| {
                format!("checker budget of {CHECKER_BUDGET} configurations exhausted")
            }),
        },
    }
}

/// Pair each completion with its invoke: (invoke position, completion position).
fn completed<'a>(history: &'a [HistoryEvent], f: &str) -> Vec<(usize, usize, &'a HistoryEvent)> {
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (pos, e) in history.iter().enumerate() {
        if e.f != f {
            continue;
        }
        if e.kind == EventType::Invoke {
            open.insert(e.process, pos);
        } else if let Some(inv) = open.remove(&e.process) {
            if e.kind == EventType::Ok {
                out.push((inv, pos, e));
            }
        }
    }
    out
}

/// Sequential-queue checks: every acknowledged `enqueue` (PERSISTENT_SEQUENTIAL create) got
/// a unique name; enqueues that did not overlap got increasing sequence numbers; and every
/// acknowledged item is in every `list` (sync + getChildren) invoked after the last
/// acknowledged enqueue completed.
pub fn queue_check(history: &[HistoryEvent]) -> Verdict {
    let enq: Vec<(usize, usize, String)> = completed(history, "enqueue")
        .into_iter()
        .filter_map(|(i, o, e)| {
            e.result
                .as_ref()
                .and_then(Value::as_str)
                .map(|p| (i, o, p.to_string()))
        })
        .collect();
    let seq = |p: &str| -> Option<u64> { p.rsplit('-').next().and_then(|d| d.parse().ok()) };
    let mut names = BTreeMap::new();
    for (_, o, p) in &enq {
        if let Some(prev) = names.insert(p.clone(), *o) {
            return violation(
                "queue-unique-names",
                format!("{p} returned twice (events {prev} and {o})"),
            );
        }
    }
    for a in &enq {
        for b in &enq {
            if a.1 < b.0 {
                if let (Some(x), Some(y)) = (seq(&a.2), seq(&b.2)) {
                    if x >= y {
                        return violation(
                            "queue-order",
                            format!("{} completed before {} was created, yet has a larger sequence number", a.2, b.2),
                        );
                    }
                }
            }
        }
    }
    let last_ack = enq.iter().map(|e| e.1).max().unwrap_or(0);
    for (inv, _, e) in completed(history, "list") {
        if inv < last_ack {
            continue;
        }
        let children: BTreeSet<String> = e
            .value
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        for (_, _, p) in &enq {
            let name = p.rsplit('/').next().unwrap_or(p);
            if !children.contains(name) {
                return violation(
                    "acked-write-lost",
                    format!("acknowledged {p} missing from a later listing of its queue"),
                );
            }
        }
    }
    Verdict::Pass
}

/// Ephemeral-membership check: once a client has observed its session expire
/// (`SessionExpired`), the member node it created in that session must be absent from
/// every `members` listing (sync + getChildren) invoked afterwards.
pub fn membership_check(history: &[HistoryEvent]) -> Verdict {
    let mut expired_at: BTreeMap<&str, usize> = BTreeMap::new();
    for (pos, e) in history.iter().enumerate() {
        if e.error.as_deref() == Some("SessionExpired") {
            if let Some(s) = e.session.as_deref() {
                expired_at.entry(s).or_insert(pos);
            }
        }
    }
    let joins: Vec<(&str, String)> = completed(history, "join")
        .into_iter()
        .filter_map(|(_, _, e)| {
            let session = e.session.as_deref()?;
            let path = e.result.as_ref()?.as_str()?;
            Some((session, path.rsplit('/').next().unwrap_or(path).to_string()))
        })
        .collect();
    for (inv, _, listing) in completed(history, "members") {
        let children: BTreeSet<&str> = listing
            .value
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for (session, name) in &joins {
            if let Some(&exp) = expired_at.get(session) {
                if exp < inv && children.contains(name.as_str()) {
                    return violation(
                        "ephemeral-outlived-session",
                        format!(
                            "{name} of session {session} still listed (event {inv}) after the session expired (event {exp})"
                        ),
                    );
                }
            }
        }
    }
    Verdict::Pass
}

/// Data-watch check, per session: a `notify` for a key needs a watch set on it (by a
/// `read` invoked with `result.watch`) and not yet fired, so each watch fires at most
/// once; and while a watch set at data version `v` has not fired, no `read` of that key by
/// the session may return a version above `v` (the event comes before the change can be
/// read).
pub fn watch_check(history: &[HistoryEvent]) -> Verdict {
    // (session, key) -> armed: Some(version known from the ok reply) / None (unknown)
    let mut armed: BTreeMap<(String, String), Option<i64>> = BTreeMap::new();
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    for (pos, e) in history.iter().enumerate() {
        let (Some(session), Some(key)) = (e.session.clone(), e.key.clone()) else {
            continue;
        };
        let watch_flag = |e: &HistoryEvent| {
            e.result
                .as_ref()
                .and_then(|r| r.get("watch"))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let version = |e: &HistoryEvent| {
            e.result
                .as_ref()
                .and_then(|r| r.get("version"))
                .and_then(Value::as_i64)
        };
        match (e.f.as_str(), e.kind) {
            ("read", EventType::Invoke) => {
                open.insert(e.process, pos);
                if watch_flag(e) {
                    armed.entry((session, key)).or_insert(None);
                }
            }
            ("read", EventType::Ok) => {
                open.remove(&e.process);
                let k = (session, key);
                if let (Some(Some(v)), Some(seen)) = (armed.get(&k), version(e)) {
                    if seen > *v {
                        return violation(
                            "watch-before-read",
                            format!(
                                "session {} read version {seen} of {} (event {pos}) while its watch set at version {v} had not fired",
                                k.0, k.1
                            ),
                        );
                    }
                }
                if watch_flag(e) {
                    // Armed at the invoke when the session was known then (a first
                    // operation opens the session); the first ok reply pins the version.
                    let slot = armed.entry(k).or_insert(None);
                    if slot.is_none() {
                        *slot = version(e);
                    }
                }
            }
            ("notify", EventType::Invoke)
                if armed.remove(&(session.clone(), key.clone())).is_none() =>
            {
                return violation(
                    "watch-fires-once",
                    format!(
                        "session {session} notified for {key} (event {pos}) without a pending watch"
                    ),
                );
            }
            _ => {}
        }
    }
    Verdict::Pass
}

/// Ephemeral-lock check: a hold runs from its `acquire` (create EPHEMERAL) acknowledgement
/// to the invoke of its `release` (delete); holds whose release was acknowledged prove
/// the node existed throughout, so no two of them may overlap.
pub fn lock_check(history: &[HistoryEvent]) -> Verdict {
    let acquires = completed(history, "acquire");
    let releases = completed(history, "release");
    let mut holds: Vec<(usize, usize, u64)> = Vec::new();
    for (_, a_ok, a) in &acquires {
        // The same process's next release.
        if let Some((r_inv, _, _)) = releases
            .iter()
            .filter(|(r_inv, _, r)| r.process == a.process && r_inv > a_ok)
            .min_by_key(|(r_inv, _, _)| *r_inv)
        {
            holds.push((*a_ok, *r_inv, a.process));
        }
    }
    holds.sort();
    for w in holds.windows(2) {
        if w[1].0 < w[0].1 {
            return violation(
                "lock-mutual-exclusion",
                format!(
                    "process {} acquired the lock (event {}) while process {} held it (events {}..{})",
                    w[1].2, w[1].0, w[0].2, w[0].0, w[0].1
                ),
            );
        }
    }
    Verdict::Pass
}

/// Global invariants over node observations.
pub fn check_observations(obs: &[Observation]) -> Verdict {
    let mut leaders: BTreeMap<u32, usize> = BTreeMap::new();
    let mut txns: BTreeMap<i64, (u64, usize)> = BTreeMap::new();
    let mut last: BTreeMap<usize, i64> = BTreeMap::new();
    let mut digests: BTreeMap<i64, (u64, usize)> = BTreeMap::new();
    for o in obs {
        match &o.what {
            Observed::Leading { epoch } => {
                if let Some(&other) = leaders.get(epoch) {
                    if other != o.server {
                        return violation(
                            "one-leader-per-epoch",
                            format!("s{other} and s{} both lead epoch {epoch}", o.server),
                        );
                    }
                }
                leaders.insert(*epoch, o.server);
            }
            Observed::Committed { zxid, txn_hash } => {
                if let Some(&(h, other)) = txns.get(zxid) {
                    if h != *txn_hash {
                        return violation(
                            "same-txn-per-zxid",
                            format!(
                                "s{other} and s{} committed different txns at zxid {zxid:#x}",
                                o.server
                            ),
                        );
                    }
                }
                txns.insert(*zxid, (*txn_hash, o.server));
                if let Some(&prev) = last.get(&o.server) {
                    if *zxid <= prev {
                        return violation(
                            "committed-zxid-monotonic",
                            format!(
                                "s{} committed {zxid:#x} after {prev:#x} at {}ms",
                                o.server, o.at_ms
                            ),
                        );
                    }
                }
                last.insert(o.server, *zxid);
            }
            Observed::Recovered { zxid } => {
                if let Some(&prev) = last.get(&o.server) {
                    if *zxid < prev {
                        return violation(
                            "committed-zxid-monotonic",
                            format!(
                                "s{} recovered to {zxid:#x} after committing {prev:#x} at {}ms",
                                o.server, o.at_ms
                            ),
                        );
                    }
                }
                last.insert(o.server, *zxid);
            }
            // A tree loaded whole is judged like one advanced by a commit: by ZAB's prefix
            // property every server holding txn `zxid` holds the same txns up to it, so
            // their trees at `zxid` must be equal however they got there (a tree
            // recovered at start-up holds exactly its log's txns up to its zxid).
            Observed::Digest { zxid, digest } | Observed::TreeLoaded { zxid, digest, .. } => {
                if let Some(&(d, other)) = digests.get(zxid) {
                    if d != *digest {
                        return violation(
                            "same-digest-per-zxid",
                            format!("s{other} and s{} differ at zxid {zxid:#x}", o.server),
                        );
                    }
                }
                digests.insert(*zxid, (*digest, o.server));
            }
            Observed::RefusedStart { .. } | Observed::SessionClosed { .. } => {}
        }
    }
    Verdict::Pass
}

/// Session-expiry check: a client is told its session expired (`SessionExpired`) only if
/// some server had applied that session's committed CloseSession by then
/// ([`Observed::SessionClosed`]). A server that answers a reconnect "expired" from a
/// session table that lags behind the ensemble (a learner that has not applied the
/// session's CreateSession yet) ends a live session: its ephemerals vanish and the locks
/// and elections built on them break, with no CloseSession anywhere.
///
/// The history records the expiry when the client's next operation completes, so the
/// recorded time is at or after the server's answer; the answer in turn comes after the
/// commit, so the check never blames a correct server.
pub fn expiry_check(history: &[HistoryEvent], observations: &[Observation]) -> Verdict {
    let mut closed_at: BTreeMap<&str, u64> = BTreeMap::new();
    for o in observations {
        if let Observed::SessionClosed { session, .. } = &o.what {
            closed_at.entry(session.as_str()).or_insert(o.at_ms);
        }
    }
    for (pos, e) in history.iter().enumerate() {
        if e.error.as_deref() != Some("SessionExpired") {
            continue;
        }
        let Some(session) = e.session.as_deref() else {
            continue;
        };
        let told_ms = e.time / 1_000_000;
        match closed_at.get(session) {
            Some(&at) if at <= told_ms => {}
            Some(&at) => {
                return violation(
                    "expired-only-after-close",
                    format!(
                        "session {session} was told it expired (event {pos}, {told_ms}ms) before \
                         any server applied its CloseSession ({at}ms)"
                    ),
                )
            }
            None => {
                return violation(
                    "expired-only-after-close",
                    format!(
                        "session {session} was told it expired (event {pos}, {told_ms}ms) but no \
                         server ever applied its CloseSession"
                    ),
                )
            }
        }
    }
    Verdict::Pass
}

/// A server's tree at the end of a run, as the convergence check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaTree {
    /// Running, with its tree at `zxid` with `digest` (its latest [`Observed::Digest`] or
    /// [`Observed::TreeLoaded`]).
    At {
        /// The tree's last applied zxid.
        zxid: i64,
        /// The tree's digest.
        digest: u64,
    },
    /// Running, but it never reported its tree.
    Unknown,
    /// Not running (it stopped by itself after the heal).
    Down,
    /// Not running because it refused to start on a disk the fault plan rotted at rest:
    /// fail-stop, as ZooKeeper does on a corrupt epoch file or log, and beyond what ZAB
    /// claims to survive (an operator must restore that server). Excused from the check.
    RefusedOnRottedDisk,
}

impl std::fmt::Display for ReplicaTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplicaTree::At { zxid, digest } => write!(f, "({zxid:#x}, {digest:016x})"),
            ReplicaTree::Unknown => f.write_str("(no tree reported)"),
            ReplicaTree::Down => f.write_str("(down)"),
            ReplicaTree::RefusedOnRottedDisk => {
                f.write_str("(refused to start on its rotted disk: excused)")
            }
        }
    }
}

/// Each of `servers` servers' latest tree (zxid, digest) in `obs`: the last
/// [`Observed::Digest`] (after a commit) or [`Observed::TreeLoaded`] it reported, in
/// observation order; `None` for a server that reported neither.
pub fn latest_trees(obs: &[Observation], servers: usize) -> Vec<Option<(i64, u64)>> {
    let mut out = vec![None; servers];
    for o in obs {
        if let (
            Observed::Digest { zxid, digest } | Observed::TreeLoaded { zxid, digest, .. },
            Some(slot),
        ) = (&o.what, out.get_mut(o.server))
        {
            *slot = Some((*zxid, *digest));
        }
    }
    out
}

/// The liveness phase's convergence check: every replica (participants and observers) is
/// running with its tree at the same zxid, with the same digest, and that zxid is at least
/// `floor` (the zxid of a write committed after the heal, so that every replica proves it
/// follows the current leader). Only [`ReplicaTree::RefusedOnRottedDisk`] is excused.
/// Returns that (zxid, digest), or a message listing every server's (zxid, digest).
pub fn convergence(trees: &[ReplicaTree], floor: i64) -> Result<(i64, u64), String> {
    let mut judged = trees
        .iter()
        .filter(|t| **t != ReplicaTree::RefusedOnRottedDisk);
    let agreed = match judged.next() {
        Some(&ReplicaTree::At { zxid, digest })
            if zxid >= floor && judged.all(|t| *t == ReplicaTree::At { zxid, digest }) =>
        {
            Some((zxid, digest))
        }
        _ => None,
    };
    agreed.ok_or_else(|| {
        let each: Vec<String> = trees
            .iter()
            .enumerate()
            .map(|(i, t)| format!("s{i} {t}"))
            .collect();
        format!(
            "replicas did not converge to one (zxid, digest) at or after zxid {floor:#x}: {}",
            each.join(", ")
        )
    })
}

fn violation(check: &str, detail: String) -> Verdict {
    Verdict::Violation {
        check: check.to_string(),
        detail,
    }
}

/// One register operation, paired invoke + completion.
#[derive(Debug, Clone)]
struct Op {
    index: usize,
    f: String,
    value: Value,
    /// `Some(false)`: a cas that ran and did not match.
    cas_matched: Option<bool>,
    read_value: Value,
    inv: usize,
    /// Position of the completion; `usize::MAX` for info / pending.
    ret: usize,
    must: bool,
}

/// Linearizability of `read`/`write`/`cas` per key under the cas-register model (initial
/// value `null`). Operations with other `f` names are ignored by this check.
pub fn simple_register_check(history: &[HistoryEvent]) -> Verdict {
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    let mut by_key: BTreeMap<String, Vec<Op>> = BTreeMap::new();
    let mut pending: BTreeMap<usize, Op> = BTreeMap::new();
    for (pos, e) in history.iter().enumerate() {
        if !matches!(e.f.as_str(), "read" | "write" | "cas") {
            continue;
        }
        match e.kind {
            EventType::Invoke => {
                if open.insert(e.process, pos).is_some() {
                    return violation(
                        "well-formed",
                        format!("process {} invoked twice without completion", e.process),
                    );
                }
                pending.insert(
                    pos,
                    Op {
                        index: pos,
                        f: e.f.clone(),
                        value: e.value.clone(),
                        cas_matched: None,
                        read_value: Value::Null,
                        inv: pos,
                        ret: usize::MAX,
                        must: false,
                    },
                );
            }
            kind => {
                let Some(inv) = open.remove(&e.process) else {
                    return violation(
                        "well-formed",
                        format!("completion at line {pos} without invoke"),
                    );
                };
                let mut op = pending.remove(&inv).expect("pending op for open invoke");
                let key = e.key.clone().unwrap_or_default();
                match kind {
                    EventType::Fail => continue,
                    EventType::Info => {
                        if op.f == "read" {
                            continue;
                        }
                    }
                    _ => {
                        op.ret = pos;
                        op.must = true;
                        op.read_value = e.value.clone();
                        if op.f == "cas" {
                            op.cas_matched = Some(e.result != Some(Value::Bool(false)));
                        }
                    }
                }
                by_key.entry(key).or_default().push(op);
            }
        }
    }
    // Pending invokes: info (reads dropped).
    for (_, op) in pending {
        if op.f != "read" {
            let key = history[op.index].key.clone().unwrap_or_default();
            by_key.entry(key).or_default().push(op);
        }
    }
    for (key, mut ops) in by_key {
        ops.sort_by_key(|o| o.inv);
        match search(&ops) {
            Some(true) => {}
            Some(false) => {
                return violation(
                    "linearizable",
                    format!(
                    "key {key:?}: {} register operations cannot be linearized (cas-register model)",
                    ops.len()
                ),
                )
            }
            None => {
                return Verdict::Unknown {
                    reason: format!("key {key:?}: search budget exhausted"),
                }
            }
        }
    }
    Verdict::Pass
}

/// Apply `op` to `state`; `None` if not allowed.
fn step(state: &Value, op: &Op) -> Option<Value> {
    match op.f.as_str() {
        "read" => (op.read_value == *state).then(|| state.clone()),
        "write" => Some(op.value.clone()),
        "cas" => {
            let expected = op.value.get(0).cloned().unwrap_or(Value::Null);
            let new = op.value.get(1).cloned().unwrap_or(Value::Null);
            match op.cas_matched {
                Some(false) => (expected != *state).then(|| state.clone()),
                _ => (expected == *state).then_some(new),
            }
        }
        _ => Some(state.clone()),
    }
}

/// Depth-first WGL search with memoisation of (linearized set, state). `ops` are sorted by
/// invocation position.
fn search(ops: &[Op]) -> Option<bool> {
    let n = ops.len();
    let words = n.div_ceil(64).max(1);
    let must_total = ops.iter().filter(|o| o.must).count();
    let mut seen: HashSet<(Vec<u64>, String)> = HashSet::new();
    // (linearized set, state, musts linearized, first index not yet linearized)
    let mut stack: Vec<(Vec<u64>, Value, usize, usize)> = vec![(vec![0; words], Value::Null, 0, 0)];
    let mut steps = 0usize;
    while let Some((done, state, musts, mut lo)) = stack.pop() {
        if musts == must_total {
            return Some(true);
        }
        let is_done = |i: usize| done[i / 64] >> (i % 64) & 1 == 1;
        while lo < n && is_done(lo) {
            lo += 1;
        }
        // Earliest return among un-linearized ops that must take effect; only ops invoked
        // before it can be linearized next.
        let mut horizon = usize::MAX;
        for (i, op) in ops.iter().enumerate().skip(lo) {
            if op.inv > horizon {
                break;
            }
            if op.must && !is_done(i) {
                horizon = horizon.min(op.ret);
            }
        }
        for (i, op) in ops.iter().enumerate().skip(lo) {
            if op.inv > horizon {
                break;
            }
            if is_done(i) {
                continue;
            }
            steps += 1;
            if steps > SEARCH_BUDGET {
                return None;
            }
            if let Some(next) = step(&state, op) {
                let mut d = done.clone();
                d[i / 64] |= 1 << (i % 64);
                if seen.insert((d.clone(), next.to_string())) {
                    stack.push((d, next, musts + usize::from(op.must), lo));
                }
            }
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(p: u64, kind: EventType, f: &str, value: Value) -> HistoryEvent {
        HistoryEvent::new(p, kind, f, Some("k"), value)
    }
    use EventType::*;

    /// The checker library's verdict, asserted to agree in kind with the sim's own search.
    fn registers(h: &[HistoryEvent]) -> Verdict {
        let lib = register_check(h);
        let own = simple_register_check(h);
        assert_eq!(
            std::mem::discriminant(&lib),
            std::mem::discriminant(&own),
            "checker library {lib:?} vs the sim's own search {own:?}"
        );
        lib
    }

    #[test]
    fn sequential_history_passes() {
        let h = vec![
            ev(0, Invoke, "write", json!(1)),
            ev(0, Ok, "write", json!(1)),
            ev(1, Invoke, "read", Value::Null),
            ev(1, Ok, "read", json!(1)),
            ev(0, Invoke, "cas", json!([1, 2])),
            ev(0, Ok, "cas", json!([1, 2])),
            ev(1, Invoke, "read", Value::Null),
            ev(1, Ok, "read", json!(2)),
        ];
        assert_eq!(registers(&h), Verdict::Pass);
    }

    #[test]
    fn stale_read_after_completed_write_fails() {
        let h = vec![
            ev(0, Invoke, "write", json!(1)),
            ev(0, Ok, "write", json!(1)),
            ev(0, Invoke, "write", json!(2)),
            ev(0, Ok, "write", json!(2)),
            ev(1, Invoke, "read", Value::Null),
            ev(1, Ok, "read", json!(1)),
        ];
        assert!(matches!(
            registers(&h),
            Verdict::Violation { check, .. } if check == "linearizable"
        ));
    }

    #[test]
    fn concurrent_write_and_info_may_take_effect_late() {
        let h = vec![
            ev(0, Invoke, "write", json!(1)),
            ev(1, Invoke, "read", Value::Null),
            ev(1, Ok, "read", json!(1)),
            ev(0, Ok, "write", json!(1)),
            ev(2, Invoke, "write", json!(3)),
            ev(2, Info, "write", json!(3)),
            ev(1, Invoke, "read", Value::Null),
            ev(1, Ok, "read", json!(1)),
            ev(1, Invoke, "read", Value::Null),
            ev(1, Ok, "read", json!(3)),
        ];
        assert_eq!(registers(&h), Verdict::Pass);
    }

    #[test]
    fn failed_write_must_not_be_seen_and_cas_false_constrains() {
        let h = vec![
            ev(0, Invoke, "write", json!(1)),
            ev(0, Fail, "write", json!(1)),
            ev(1, Invoke, "read", Value::Null),
            ev(1, Ok, "read", json!(1)),
        ];
        assert!(matches!(registers(&h), Verdict::Violation { .. }));
        let mut cas_false = ev(0, Ok, "cas", json!([null, 5]));
        cas_false.result = Some(json!(false));
        let h = vec![ev(0, Invoke, "cas", json!([null, 5])), cas_false];
        // Initial value is null, so a non-matching cas on null is impossible.
        assert!(matches!(registers(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn lost_acknowledged_write_is_a_violation() {
        let h = vec![
            ev(0, Invoke, "write", json!("a")),
            ev(0, Ok, "write", json!("a")),
            ev(0, Invoke, "cas", json!(["a", "b"])),
            ev(0, Ok, "cas", json!(["a", "b"])),
            ev(1, Invoke, "read", Value::Null),
            ev(1, Ok, "read", json!("a")),
        ];
        assert!(matches!(registers(&h), Verdict::Violation { .. }));
    }

    fn with_result(mut e: HistoryEvent, r: Value) -> HistoryEvent {
        e.result = Some(r);
        e
    }

    #[test]
    fn queue_checks() {
        let good = vec![
            ev(0, Invoke, "enqueue", json!("a")),
            with_result(
                ev(0, Ok, "enqueue", json!("a")),
                json!("/q/item-0000000000"),
            ),
            ev(1, Invoke, "enqueue", json!("b")),
            with_result(
                ev(1, Ok, "enqueue", json!("b")),
                json!("/q/item-0000000001"),
            ),
            ev(2, Invoke, "list", Value::Null),
            ev(2, Ok, "list", json!(["item-0000000000", "item-0000000001"])),
        ];
        assert_eq!(queue_check(&good), Verdict::Pass);
        let mut lost = good.clone();
        lost[5] = ev(2, Ok, "list", json!(["item-0000000001"]));
        assert!(
            matches!(queue_check(&lost), Verdict::Violation { check, .. } if check == "acked-write-lost")
        );
        let mut order = good.clone();
        order[3] = with_result(
            ev(1, Ok, "enqueue", json!("b")),
            json!("/q/item-0000000000"),
        );
        assert!(
            matches!(queue_check(&order), Verdict::Violation { check, .. } if check == "queue-unique-names")
        );
        let mut order = good.clone();
        order[1] = with_result(
            ev(0, Ok, "enqueue", json!("a")),
            json!("/q/item-0000000005"),
        );
        order[5] = ev(2, Ok, "list", json!(["item-0000000005", "item-0000000001"]));
        assert!(
            matches!(queue_check(&order), Verdict::Violation { check, .. } if check == "queue-order")
        );
    }

    #[test]
    fn lock_checks() {
        let good = vec![
            ev(0, Invoke, "acquire", json!("c0")),
            ev(0, Ok, "acquire", json!("c0")),
            ev(1, Invoke, "acquire", json!("c1")),
            ev(1, Fail, "acquire", json!("c1")),
            ev(0, Invoke, "release", Value::Null),
            ev(0, Ok, "release", Value::Null),
            ev(1, Invoke, "acquire", json!("c1")),
            ev(1, Ok, "acquire", json!("c1")),
            ev(1, Invoke, "release", Value::Null),
            ev(1, Ok, "release", Value::Null),
        ];
        assert_eq!(lock_check(&good), Verdict::Pass);
        let bad = vec![
            ev(0, Invoke, "acquire", json!("c0")),
            ev(0, Ok, "acquire", json!("c0")),
            ev(1, Invoke, "acquire", json!("c1")),
            ev(1, Ok, "acquire", json!("c1")),
            ev(0, Invoke, "release", Value::Null),
            ev(0, Ok, "release", Value::Null),
            ev(1, Invoke, "release", Value::Null),
            ev(1, Ok, "release", Value::Null),
        ];
        assert!(
            matches!(lock_check(&bad), Verdict::Violation { check, .. } if check == "lock-mutual-exclusion")
        );
    }

    #[test]
    fn membership_checks() {
        let mut join = with_result(ev(0, Ok, "join", json!("c0-1")), json!("/members/c0-1"));
        join.session = Some("0x1".into());
        let mut expired = ev(0, Info, "read", Value::Null);
        expired.session = Some("0x1".into());
        expired.error = Some("SessionExpired".into());
        let h = |listed: Value| {
            vec![
                ev(0, Invoke, "join", json!("c0-1")),
                join.clone(),
                ev(0, Invoke, "read", Value::Null),
                expired.clone(),
                ev(1, Invoke, "members", Value::Null),
                ev(1, Ok, "members", listed),
            ]
        };
        assert_eq!(membership_check(&h(json!([]))), Verdict::Pass);
        assert!(matches!(membership_check(&h(json!(["c0-1"]))),
            Verdict::Violation { check, .. } if check == "ephemeral-outlived-session"));
    }

    #[test]
    fn replicated_runs_judge_only_synced_reads_as_linearizable() {
        let stale = |sync: bool| {
            let mut r = ev(1, Ok, "read", json!(1));
            r.result = Some(json!({"version": 1, "watch": false, "sync": sync}));
            vec![
                ev(0, Invoke, "write", json!(1)),
                ev(0, Ok, "write", json!(1)),
                ev(0, Invoke, "write", json!(2)),
                ev(0, Ok, "write", json!(2)),
                ev(1, Invoke, "read", Value::Null),
                r,
            ]
        };
        assert_eq!(judge(&stale(false), &[], true), Verdict::Pass);
        assert!(matches!(
            judge(&stale(false), &[], false),
            Verdict::Violation { .. }
        ));
        assert!(matches!(
            judge(&stale(true), &[], true),
            Verdict::Violation { .. }
        ));
    }

    #[test]
    fn watch_checks() {
        let s = |mut e: HistoryEvent, r: Option<Value>| {
            e.session = Some("0x1".into());
            e.result = r;
            e
        };
        let set = vec![
            s(
                ev(0, Invoke, "read", Value::Null),
                Some(json!({"watch": true})),
            ),
            s(
                ev(0, Ok, "read", json!("a")),
                Some(json!({"version": 1, "watch": true})),
            ),
        ];
        let notify = vec![
            s(ev(9, Invoke, "notify", json!("NodeDataChanged")), None),
            s(ev(9, Ok, "notify", json!("NodeDataChanged")), None),
        ];
        let read2 = vec![
            s(
                ev(0, Invoke, "read", Value::Null),
                Some(json!({"watch": false})),
            ),
            s(
                ev(0, Ok, "read", json!("b")),
                Some(json!({"version": 2, "watch": false})),
            ),
        ];
        let good = [set.clone(), notify.clone(), read2.clone()].concat();
        assert_eq!(watch_check(&good), Verdict::Pass);
        let late = [set.clone(), read2.clone(), notify.clone()].concat();
        assert!(
            matches!(watch_check(&late), Verdict::Violation { check, .. } if check == "watch-before-read")
        );
        let twice = [set, notify.clone(), notify].concat();
        assert!(
            matches!(watch_check(&twice), Verdict::Violation { check, .. } if check == "watch-fires-once")
        );
    }

    fn obs(at_ms: u64, server: usize, what: Observed) -> Observation {
        Observation {
            at_ms,
            server,
            what,
        }
    }

    #[test]
    fn expiry_checks() {
        let mut expired = ev(0, Info, "read", Value::Null);
        expired.session = Some("0x1".into());
        expired.error = Some("SessionExpired".into());
        expired.time = 5_000_000; // 5 ms
        let h = vec![ev(0, Invoke, "read", Value::Null), expired];
        let closed = |at_ms, session: &str| {
            obs(
                at_ms,
                1,
                Observed::SessionClosed {
                    session: session.into(),
                    zxid: 7,
                },
            )
        };
        let is_violation = |v: Verdict| matches!(v, Verdict::Violation { check, .. } if check == "expired-only-after-close");
        // Closed (by any server) before the client heard of it: fine, also at the same ms.
        assert_eq!(expiry_check(&h, &[closed(3, "0x1")]), Verdict::Pass);
        assert_eq!(expiry_check(&h, &[closed(5, "0x1")]), Verdict::Pass);
        // Never closed, closed only later, or another session closed: a live session was
        // told it expired.
        assert!(is_violation(expiry_check(&h, &[])));
        assert!(is_violation(expiry_check(&h, &[closed(6, "0x1")])));
        assert!(is_violation(expiry_check(&h, &[closed(3, "0x2")])));
        // Other errors, and expiries without a known session, impose nothing.
        let mut lost = h.clone();
        lost[1].error = Some("ConnectionLoss".into());
        assert_eq!(expiry_check(&lost, &[]), Verdict::Pass);
        // The whole judge runs it.
        assert!(is_violation(judge(&h, &[], true)));
    }

    #[test]
    fn observation_checks() {
        let ok = vec![
            obs(1, 0, Observed::Leading { epoch: 1 }),
            obs(
                2,
                0,
                Observed::Committed {
                    zxid: 1,
                    txn_hash: 9,
                },
            ),
            obs(
                3,
                1,
                Observed::Committed {
                    zxid: 1,
                    txn_hash: 9,
                },
            ),
            obs(4, 1, Observed::Recovered { zxid: 1 }),
            obs(5, 1, Observed::Leading { epoch: 2 }),
        ];
        assert_eq!(check_observations(&ok), Verdict::Pass);
        let two_leaders = vec![
            obs(1, 0, Observed::Leading { epoch: 1 }),
            obs(2, 1, Observed::Leading { epoch: 1 }),
        ];
        assert!(matches!(check_observations(&two_leaders),
            Verdict::Violation { check, .. } if check == "one-leader-per-epoch"));
        let diverged = vec![
            obs(
                2,
                0,
                Observed::Committed {
                    zxid: 1,
                    txn_hash: 9,
                },
            ),
            obs(
                3,
                1,
                Observed::Committed {
                    zxid: 1,
                    txn_hash: 8,
                },
            ),
        ];
        assert!(matches!(check_observations(&diverged),
            Verdict::Violation { check, .. } if check == "same-txn-per-zxid"));
        let backwards = vec![
            obs(
                2,
                0,
                Observed::Committed {
                    zxid: 5,
                    txn_hash: 9,
                },
            ),
            obs(3, 0, Observed::Recovered { zxid: 4 }),
        ];
        assert!(matches!(check_observations(&backwards),
            Verdict::Violation { check, .. } if check == "committed-zxid-monotonic"));
    }

    fn loaded(source: &str, zxid: i64, digest: u64) -> Observed {
        Observed::TreeLoaded {
            source: source.into(),
            zxid,
            digest,
        }
    }

    #[test]
    fn a_loaded_tree_takes_part_in_the_digest_check() {
        let agree = vec![
            obs(1, 0, Observed::Digest { zxid: 7, digest: 1 }),
            obs(2, 1, loaded("snap", 7, 1)),
            obs(3, 2, loaded("startup", 9, 2)),
            obs(4, 0, Observed::Digest { zxid: 9, digest: 2 }),
        ];
        assert_eq!(check_observations(&agree), Verdict::Pass);
        for source in ["startup", "snap", "trunc"] {
            let differ = vec![
                obs(1, 0, Observed::Digest { zxid: 7, digest: 1 }),
                obs(2, 1, loaded(source, 7, 3)),
            ];
            assert!(matches!(check_observations(&differ),
                Verdict::Violation { check, .. } if check == "same-digest-per-zxid"));
        }
    }

    #[test]
    fn latest_trees_follow_commits_and_loads() {
        let o = vec![
            obs(1, 0, loaded("startup", 0, 5)),
            obs(
                2,
                0,
                Observed::Committed {
                    zxid: 1,
                    txn_hash: 1,
                },
            ),
            obs(2, 0, Observed::Digest { zxid: 1, digest: 6 }),
            obs(3, 1, Observed::Digest { zxid: 1, digest: 6 }),
            // A TRUNC reload may move a tree back: the latest report wins.
            obs(4, 1, loaded("trunc", 0, 5)),
            obs(5, 9, loaded("startup", 0, 5)),
        ];
        assert_eq!(latest_trees(&o, 3), vec![Some((1, 6)), Some((0, 5)), None]);
    }

    #[test]
    fn convergence_needs_every_replica_at_one_tree_at_or_after_the_floor() {
        let at = |zxid, digest| ReplicaTree::At { zxid, digest };
        assert_eq!(
            convergence(&[at(9, 1), at(9, 1), at(9, 1)], 8),
            Result::Ok((9, 1))
        );
        assert_eq!(convergence(&[at(9, 1), at(9, 1)], 9), Result::Ok((9, 1)));
        // One replica behind (it never applied the final write).
        let behind = convergence(&[at(9, 1), at(8, 4), at(9, 1)], 9).unwrap_err();
        assert!(behind.contains("s1 (0x8, 0000000000000004)"), "{behind}");
        assert!(behind.contains("s0 (0x9, 0000000000000001)"), "{behind}");
        // Same zxid, different trees.
        assert!(convergence(&[at(9, 1), at(9, 2)], 9).is_err());
        // Agreement, but on a tree from before the final write.
        let stale = convergence(&[at(7, 1), at(7, 1)], 9).unwrap_err();
        assert!(stale.contains("at or after zxid 0x9"), "{stale}");
        // A replica that is down or never reported cannot have converged.
        let down = convergence(&[at(9, 1), ReplicaTree::Down], 9).unwrap_err();
        assert!(down.contains("s1 (down)"), "{down}");
        assert!(convergence(&[ReplicaTree::Unknown, at(9, 1)], 9).is_err());
        // Only a server that refused to start on a rotted disk is excused, not all of them.
        let rotted = ReplicaTree::RefusedOnRottedDisk;
        assert_eq!(
            convergence(&[rotted, at(9, 1), at(9, 1)], 9),
            Result::Ok((9, 1))
        );
        let msg = convergence(&[rotted, at(9, 1), at(8, 1)], 9).unwrap_err();
        assert!(msg.contains("s0 (refused to start"), "{msg}");
        assert!(convergence(&[rotted, rotted], 0).is_err());
    }

    #[test]
    fn only_a_refusal_after_the_heal_and_not_followed_by_a_start_counts() {
        let o = Observer::default();
        let refused = || Observed::RefusedStart {
            reason: "bad epoch".into(),
        };
        o.observe(5, 0, refused());
        assert!(
            !o.refused_start_since(0, 10),
            "refused before the heal only"
        );
        o.observe(12, 0, refused());
        assert!(o.refused_start_since(0, 10));
        assert!(!o.refused_start_since(1, 10), "another server");
        o.observe(15, 0, loaded("startup", 3, 1));
        assert!(!o.refused_start_since(0, 10), "started after all");
    }
}
